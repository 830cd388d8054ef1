// The egress proxy's parsers and matcher against hostile input: truncated,
// fragmented, oversized and ambiguous ClientHellos; malformed HTTP heads;
// allowlist edge cases; DNS queries.
#include "sandbox/egress_sniff.h"

#include <gtest/gtest.h>

#include <random>

#include "sandbox/egress_proxy.h"

namespace warren::sandbox {
namespace {

std::string U16(size_t v) { return std::string{static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)}; }
std::string U24(size_t v) { return static_cast<char>((v >> 16) & 0xff) + U16(v); }

std::string SniExt(const std::vector<std::string>& names) {
  std::string list;
  for (const auto& n : names) list += std::string(1, '\0') + U16(n.size()) + n;
  std::string body = U16(list.size()) + list;
  return U16(0) + U16(body.size()) + body;
}

// A ClientHello handshake message (type, length, body).
std::string Hello(const std::string& extensions, bool with_ext_block = true) {
  std::string b = "\x03\x03" + std::string(32, 'r');  // version, random
  b += std::string(1, 32) + std::string(32, 's');      // session id
  b += U16(4) + std::string("\x13\x01\x13\x02", 4);    // cipher suites
  b += std::string("\x01\x00", 2);                      // compression: null
  if (with_ext_block) {
    std::string other = U16(0x002b) + U16(3) + std::string("\x02\x03\x04", 3);  // supported_versions
    std::string exts = other + extensions;
    b += U16(exts.size()) + exts;
  }
  return std::string(1, 1) + U24(b.size()) + b;
}

// Wraps handshake bytes into TLS records of at most `chunk` bytes each.
std::string Records(const std::string& hs, size_t chunk = 16384) {
  std::string out;
  for (size_t i = 0; i < hs.size(); i += chunk) {
    std::string part = hs.substr(i, chunk);
    out += std::string("\x16\x03\x01", 3) + U16(part.size()) + part;
  }
  return out;
}

TEST(EgressSniffTest, ClientHelloSni) {
  auto t = SniffClientHello(Records(Hello(SniExt({"Allowed.Test."}))));
  ASSERT_EQ(t.state, SniffState::kDone) << t.reason;
  EXPECT_EQ(t.sni, "allowed.test");
}

TEST(EgressSniffTest, EveryTruncationNeedsMoreNeverDecides) {
  std::string full = Records(Hello(SniExt({"pypi.org"})));
  for (size_t n = 0; n < full.size(); ++n) {
    auto t = SniffClientHello(std::string_view(full).substr(0, n));
    ASSERT_EQ(t.state, SniffState::kNeedMore) << "prefix " << n << ": " << t.reason;
  }
  EXPECT_EQ(SniffClientHello(full).sni, "pypi.org");
}

TEST(EgressSniffTest, FragmentedAcrossRecords) {
  std::string hs = Hello(SniExt({"files.pythonhosted.org"}));
  for (size_t chunk : {1, 2, 5, 37, 100}) {
    auto t = SniffClientHello(Records(hs, chunk));
    ASSERT_EQ(t.state, SniffState::kDone) << chunk << ": " << t.reason;
    EXPECT_EQ(t.sni, "files.pythonhosted.org");
  }
}

TEST(EgressSniffTest, NoSni) {
  auto none = SniffClientHello(Records(Hello("", false)));
  EXPECT_EQ(none.state, SniffState::kDone);
  EXPECT_EQ(none.sni, "");
  auto other = SniffClientHello(Records(Hello("")));
  EXPECT_EQ(other.state, SniffState::kDone);
  EXPECT_EQ(other.sni, "");
}

TEST(EgressSniffTest, HostileHellosRefused) {
  auto refused = [](const std::string& bytes) {
    auto t = SniffClientHello(bytes);
    return t.state == SniffState::kMalformed;
  };
  // Huge records and handshake messages are refused before buffering them.
  EXPECT_TRUE(refused(std::string("\x16\x03\x01\xff\xff", 5)));
  EXPECT_TRUE(refused(Records(std::string(1, 1) + U24(1 << 20) + std::string(100, 'x'))));
  // Not a handshake / not a ClientHello / not TLS.
  EXPECT_TRUE(refused(std::string("\x17\x03\x03\x00\x05hello", 10)));
  EXPECT_TRUE(refused(Records(std::string(1, 2) + U24(40) + std::string(40, 'x'))));
  EXPECT_TRUE(refused(std::string("\x16\x02\x00\x00\x05", 5) + "hello"));
  EXPECT_TRUE(refused(std::string("\x16\x03\x01\x00\x00", 5)));
  // A ClientHello interrupted by another record type.
  std::string hs = Hello(SniExt({"a.test"}));
  std::string split = Records(hs.substr(0, 10)) + std::string("\x15\x03\x03\x00\x02\x01\x00", 7) + Records(hs.substr(10));
  EXPECT_TRUE(refused(split));
  // Ambiguity: two SNI extensions, two host names, a name the proxy and a
  // server could read differently.
  EXPECT_TRUE(refused(Records(Hello(SniExt({"allowed.test"}) + SniExt({"evil.test"})))));
  EXPECT_TRUE(refused(Records(Hello(SniExt({"allowed.test", "evil.test"})))));
  EXPECT_TRUE(refused(Records(Hello(SniExt({std::string("allowed.test\0.evil.test", 23)})))));
  EXPECT_TRUE(refused(Records(Hello(SniExt({"allowed test"})))));
  EXPECT_TRUE(refused(Records(Hello(SniExt({"1.2.3.4"})))));
  EXPECT_TRUE(refused(Records(Hello(SniExt({""})))));
  // Lengths that disagree.
  std::string bad_list = U16(0) + U16(8) + U16(100) + std::string(1, '\0') + U16(3) + "a.b";
  EXPECT_TRUE(refused(Records(Hello(bad_list))));
  std::string h = Hello(SniExt({"a.test"}));
  h[h.size() - 1] = 'x';  // still well-formed bytes-wise, but change an extension length:
  std::string lied = h;
  lied[4 + 2 + 32 + 1 + 32 + 2 + 4 + 2] ^= 0x01;  // extensions length
  EXPECT_TRUE(refused(Records(lied)));
}

TEST(EgressSniffTest, RandomMutationsNeverCrashOrOverread) {
  std::mt19937 rng(42);
  std::string base = Records(Hello(SniExt({"registry.npmjs.org"})), 50);
  for (int i = 0; i < 20000; ++i) {
    std::string m = base;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) m[rng() % m.size()] = static_cast<char>(rng() & 0xff);
    if (rng() % 3 == 0) m.resize(rng() % m.size());
    auto t = SniffClientHello(m);
    if (t.state == SniffState::kDone && !t.sni.empty()) {
      // Whatever it found is a canonical host name.
      EXPECT_EQ(CanonicalHostName(t.sni).value_or(""), t.sni);
    }
  }
}

TEST(EgressSniffTest, HttpHeads) {
  auto h = SniffHttpHead("GET /simple/ HTTP/1.1\r\nHost: PyPI.org\r\nAccept: */*\r\n\r\nbody");
  ASSERT_EQ(h.state, SniffState::kDone) << h.reason;
  EXPECT_EQ(h.host, "pypi.org");
  EXPECT_EQ(h.port, 0);
  EXPECT_EQ(h.head_len, std::string("GET /simple/ HTTP/1.1\r\nHost: PyPI.org\r\nAccept: */*\r\n\r\n").size());
  // The Host header's port does not choose the upstream port: the dialed one does.
  EXPECT_EQ(SniffHttpHead("GET / HTTP/1.1\r\nhost:a.test:8080\r\n\r\n").port, 0);
  auto abs = SniffHttpHead("GET http://deb.debian.org:8080/debian/ HTTP/1.1\r\nHost: other.test\r\n\r\n");
  ASSERT_EQ(abs.state, SniffState::kDone);
  EXPECT_TRUE(abs.absolute);
  EXPECT_EQ(abs.host, "deb.debian.org");  // the URL names the target, not Host
  EXPECT_EQ(abs.port, 8080);
  auto con = SniffHttpHead("CONNECT registry.npmjs.org:443 HTTP/1.1\r\nHost: registry.npmjs.org:443\r\n\r\n");
  ASSERT_EQ(con.state, SniffState::kDone);
  EXPECT_TRUE(con.connect);
  EXPECT_EQ(con.host, "registry.npmjs.org");
  EXPECT_EQ(con.port, 443);
  auto ip = SniffHttpHead("GET / HTTP/1.0\r\nHost: 198.51.100.7\r\n\r\n");
  EXPECT_EQ(ip.host, "198.51.100.7");

  EXPECT_EQ(SniffHttpHead("GET / HTTP/1.1\r\nHost: a.test\r\n").state, SniffState::kNeedMore);
  auto malformed = [](const std::string& s) { return SniffHttpHead(s).state == SniffState::kMalformed; };
  EXPECT_TRUE(malformed("GET / HTTP/1.1\r\n\r\n"));                                    // no Host
  EXPECT_TRUE(malformed("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"));    // two
  EXPECT_TRUE(malformed("GET / HTTP/1.1\r\nHost: a.test\r\n x: folded\r\n\r\n"));
  EXPECT_TRUE(malformed("GET / HTTP/2.0\r\nHost: a.test\r\n\r\n"));
  EXPECT_TRUE(malformed("GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n"));
  EXPECT_TRUE(malformed("GET / HTTP/1.1\r\nHost : a.test\r\n\r\n"));
  EXPECT_TRUE(malformed("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n"));
  EXPECT_TRUE(malformed("GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n"));
  EXPECT_TRUE(malformed("GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n"));
  EXPECT_TRUE(malformed("CONNECT a.test HTTP/1.1\r\n\r\n"));  // no port
  EXPECT_TRUE(malformed("GET https://a.test/ HTTP/1.1\r\n\r\n"));
  EXPECT_TRUE(malformed(std::string("GET / HTTP/1.1\r\nHost: a.test\0x\r\n\r\n", 34)));
  EXPECT_TRUE(malformed("GET / HTTP/1.1\r\nX: " + std::string(kMaxHttpHead, 'a')));
  EXPECT_TRUE(malformed("get / HTTP/1.1\r\nHost: a.test\r\n\r\n"));

  EXPECT_EQ(LooksLikeHttp("GE"), std::nullopt);
  EXPECT_EQ(LooksLikeHttp("GET "), true);
  EXPECT_EQ(LooksLikeHttp("SSH-2.0-OpenSSH"), false);
  EXPECT_EQ(LooksLikeHttp(std::string("\x00\x01", 2)), false);
  EXPECT_EQ(LooksLikeHttp(" GET"), false);
}

TEST(EgressSniffTest, HttpHeadFraming) {
  auto chunked = SniffHttpHead("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: Chunked\r\n\r\n");
  ASSERT_EQ(chunked.state, SniffState::kDone) << chunked.reason;
  EXPECT_TRUE(chunked.chunked);
  auto cl = SniffHttpHead("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length:  42 \r\n\r\n");
  ASSERT_EQ(cl.state, SniffState::kDone) << cl.reason;
  EXPECT_EQ(cl.content_length, 42u);
  EXPECT_FALSE(cl.chunked);
  EXPECT_TRUE(SniffHttpHead("GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n\r\n").upgrade);
  auto reason = [](const std::string& s) {
    auto h = SniffHttpHead(s);
    return h.state == SniffState::kMalformed ? h.reason : std::string("not malformed");
  };
  EXPECT_EQ(reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "both Content-Length and Transfer-Encoding");
  EXPECT_EQ(reason("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            "unsupported Transfer-Encoding: gzip, chunked");
  EXPECT_EQ(reason("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding in an HTTP/1.0 request");
  EXPECT_EQ(reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
            "two Content-Length headers");
  EXPECT_EQ(reason("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "two Transfer-Encoding headers");
  for (const char* bad_cl : {"+5", "-1", "1 2", "0x10", "", "9999999999999999"}) {
    EXPECT_EQ(reason(std::string("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ") + bad_cl + "\r\n\r\n"), "bad Content-Length")
        << bad_cl;
  }
  // A server splitting lines on a bare LF would see a second Host.
  EXPECT_EQ(reason("GET / HTTP/1.1\r\nX: y\nHost: b.test\r\nHost: a.test\r\n\r\n"), "bare LF in request head");
  EXPECT_EQ(reason("GET / HTTP/1.1\nHost: a.test\r\n\r\n"), "bare LF in request head");
  EXPECT_EQ(reason("GET / HTTP/1.1\r\nX: y\rHost: b.test\r\nHost: a.test\r\n\r\n"), "bare CR in request head");
  EXPECT_EQ(reason("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\x0b: chunked\r\n\r\n"), "bad character in header name");
  // A bad request line is refused at once, without waiting for a blank line.
  EXPECT_EQ(reason("EHLO mail.test\r\n"), "malformed request line");
  EXPECT_EQ(SniffHttpHead("GET / HTTP/1.1\r\n").state, SniffState::kNeedMore);
  EXPECT_EQ(SniffHttpHead("GET / HTTP/1.1\r").state, SniffState::kNeedMore);
}

// What a framer makes of `in` when it arrives in pieces of `piece` bytes:
// the heads it found ("METHOD host"), the body bytes, the error, and how
// much it consumed.
struct Framed {
  std::vector<std::string> heads;
  std::string bodies;
  std::string error;
  size_t consumed = 0;
  bool operator==(const Framed& o) const {
    return heads == o.heads && bodies == o.bodies && error == o.error && consumed == o.consumed;
  }
};
Framed Frame(const std::string& in, size_t piece) {
  HttpRequestFramer f;
  Framed out;
  std::string pending;
  size_t fed = 0;
  while (true) {
    auto st = f.Next(pending);
    if (st.kind == HttpRequestFramer::Step::kNeedMore) {
      if (fed == in.size()) break;
      size_t n = std::min(piece, in.size() - fed);
      pending.append(in, fed, n);
      fed += n;
      continue;
    }
    if (st.kind == HttpRequestFramer::Step::kMalformed) {
      out.error = st.reason;
      break;
    }
    EXPECT_GT(st.len, 0u);
    EXPECT_LE(st.len, pending.size());
    if (st.kind == HttpRequestFramer::Step::kHead) {
      out.heads.push_back(st.head.method + " " + st.head.host);
    } else {
      out.bodies += pending.substr(0, st.len);
    }
    out.consumed += st.len;
    pending.erase(0, st.len);
  }
  return out;
}

TEST(EgressSniffTest, FramerFindsEveryHeadAndNoneInBodies) {
  const std::string fake = "GET / HTTP/1.1\r\nHost: denied.test\r\n\r\n";
  std::string hex;
  for (size_t v = fake.size(); v; v /= 16) hex.insert(hex.begin(), "0123456789abcdef"[v % 16]);
  const std::string chunks = "5;name=\"v\"\r\nhello\r\n" + hex + "\r\n" + fake + "\r\n0\r\nX-Trailer: 1\r\n\r\n";
  const std::string stream = "GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n"
                             "POST /2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: " +
                             std::to_string(fake.size()) + "\r\n\r\n" + fake +
                             "POST /3 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks +
                             "GET http://a.test/4 HTTP/1.1\r\n\r\n"
                             "PUT /5 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n";
  Framed whole = Frame(stream, stream.size());
  EXPECT_EQ(whole.error, "");
  EXPECT_EQ(whole.heads, (std::vector<std::string>{"GET a.test", "POST a.test", "POST a.test", "GET a.test", "PUT a.test"}));
  EXPECT_EQ(whole.bodies, fake + chunks);
  EXPECT_EQ(whole.consumed, stream.size());
  for (size_t piece : {1, 2, 3, 7, 64}) {
    EXPECT_TRUE(Frame(stream, piece) == whole) << "piece " << piece;
  }
  // Every prefix: never an error, never a head that is not one of the five.
  for (size_t n = 0; n < stream.size(); ++n) {
    Framed p = Frame(stream.substr(0, n), 5);
    EXPECT_EQ(p.error, "") << n;
    EXPECT_LE(p.heads.size(), 5u);
  }
}

TEST(EgressSniffTest, FramerRefusesWhatAServerCouldReadDifferently) {
  auto error = [](const std::string& s) {
    Framed f = Frame(s, s.size());
    return f.error;
  };
  const std::string post = "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(error(post + "zz\r\n"), "bad chunk size");
  EXPECT_EQ(error(post + "5\r\nhelloXX0\r\n\r\n"), "chunk data not followed by CRLF");
  EXPECT_EQ(error(post + "5\nhello\r\n"), "bad chunk-size line");
  EXPECT_EQ(error(post + "5\r\rhello\r\n"), "bare CR in chunk-size line");
  EXPECT_EQ(error(post + "5;a\nb\r\nhello\r\n"), "bad chunk extension");
  EXPECT_EQ(error(post + "1000000000000000\r\n"), "chunk size too large");
  EXPECT_EQ(error(post + "5;" + std::string(kMaxChunkLine, 'x')), "chunk-size line too long");
  EXPECT_EQ(error(post + "0\r\nX: a\nY: b\r\n\r\n"), "bare CR or LF in trailers");
  EXPECT_EQ(error(post + "0\r\nX: " + std::string(kMaxHttpHead, 'a')), "trailers too large");
  // After a body, the next bytes must be a head.
  EXPECT_EQ(error("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nhi\r\nGET / HTTP/1.1\r\n"),
            "bytes that are not an HTTP/1.x request where a request should start");
  EXPECT_EQ(error("GET / HTTP/1.1\r\nHost: a.test\r\n\r\nSSH-2.0-x\r\n"),
            "bytes that are not an HTTP/1.x request where a request should start");
  EXPECT_EQ(error("GET / HTTP/1.1\r\nHost: a.test\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            "malformed request: two Host headers");
  EXPECT_EQ(error("GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "malformed request: both Content-Length and Transfer-Encoding");
  // Incomplete input is never an error: it waits.
  EXPECT_EQ(error(post + "5\r\nhel"), "");
  EXPECT_EQ(error(post + "0\r\nX: a"), "");
}

TEST(EgressSniffTest, Allowlist) {
  auto l = HostAllowlist::Parse({"Example.COM", "*.pythonhosted.org", "203.0.113.7", "example.com."});
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->entries(), (std::vector<std::string>{"example.com", "*.pythonhosted.org", "203.0.113.7"}));
  EXPECT_TRUE(l->Allows("example.com"));
  EXPECT_TRUE(l->Allows("EXAMPLE.com."));
  EXPECT_FALSE(l->Allows("www.example.com"));  // exact means exact
  EXPECT_FALSE(l->Allows("example.com.evil.net"));
  EXPECT_FALSE(l->Allows("evilexample.com"));
  EXPECT_TRUE(l->Allows("files.pythonhosted.org"));
  EXPECT_TRUE(l->Allows("a.b.files.pythonhosted.org"));
  EXPECT_FALSE(l->Allows("pythonhosted.org"));  // the wildcard is not the apex
  EXPECT_FALSE(l->Allows("evilpythonhosted.org"));
  EXPECT_FALSE(l->Allows("pythonhosted.org.evil.net"));
  EXPECT_TRUE(l->Allows("203.0.113.7"));
  EXPECT_FALSE(l->Allows("203.0.113.8"));
  EXPECT_FALSE(l->Allows(""));
  EXPECT_FALSE(l->Allows(std::string_view("example.com\0", 12)));
  EXPECT_FALSE(l->Allows(std::string("example.com\0.evil", 17)));

  for (const char* bad : {"", "*", "*.com", "a.*.com", "*example.com", "http://a.com", "a.com/x", "a.com:443",
                          "[::1]", "a..com", "-a.com", "a b.com", "*.", "1.2.3"}) {
    EXPECT_FALSE(HostAllowlist::Parse({bad}).ok()) << bad;
  }
  EXPECT_FALSE(HostAllowlist::Parse(std::vector<std::string>(1025, "a.com")).ok());
  EXPECT_TRUE(HostAllowlist::Parse(std::vector<std::string>(1024, "a.com")).ok());
  EXPECT_TRUE(HostAllowlist::Parse({}).ok());  // limited with no hosts: nothing is reachable
  EXPECT_FALSE(HostAllowlist::Parse({})->Allows("a.com"));
}

TEST(EgressSniffTest, DnsAnswers) {
  auto query = [](const std::string& name, uint16_t type, uint8_t flags1 = 0x01) {
    std::string q = std::string("\xab\xcd", 2) + static_cast<char>(flags1) + std::string("\x00\x00\x01\x00\x00\x00\x00\x00\x00", 9);
    size_t i = 0;
    while (i <= name.size()) {
      size_t j = name.find('.', i);
      if (j == std::string::npos) j = name.size();
      q += static_cast<char>(j - i) + name.substr(i, j - i);
      i = j + 1;
    }
    return q + std::string(1, '\0') + U16(type) + U16(1);
  };
  uint32_t gw = 0x0AD50001;
  auto a = AnswerDnsQuery(query("allowed.test", 1), gw);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->substr(0, 2), "\xab\xcd");
  EXPECT_EQ(static_cast<uint8_t>((*a)[3]) & 0x0f, 0);  // NOERROR
  EXPECT_EQ(U16(1), a->substr(6, 2));                  // one answer
  EXPECT_EQ(a->substr(a->size() - 4), std::string("\x0a\xd5\x00\x01", 4));
  auto aaaa = AnswerDnsQuery(query("allowed.test", 28), gw);
  ASSERT_TRUE(aaaa.has_value());
  EXPECT_EQ(aaaa->substr(6, 2), U16(0));
  auto nx = AnswerDnsQuery(query("bad_-.x-", 1), gw);
  ASSERT_TRUE(nx.has_value());
  EXPECT_EQ(static_cast<uint8_t>((*nx)[3]) & 0x0f, 3);
  EXPECT_FALSE(AnswerDnsQuery(query("a.test", 1, 0x81), gw).has_value());  // a response
  std::string q = query("allowed.test", 1);
  for (size_t n = 0; n < q.size(); ++n) EXPECT_FALSE(AnswerDnsQuery(q.substr(0, n), gw).has_value()) << n;
  std::string ptr = std::string("\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", 18);
  EXPECT_FALSE(AnswerDnsQuery(ptr, gw).has_value());  // compression pointer in a question
}

TEST(EgressSniffTest, TargetsBlocked) {
  std::vector<uint32_t> host = {0x7F000001, 0xC6336401};  // 127.0.0.1, 198.51.100.1
  EXPECT_TRUE(EgressTargetBlocked(0x7F000001, {}, host));
  EXPECT_TRUE(EgressTargetBlocked(0x7F000002, {}, host));   // loopback range
  EXPECT_TRUE(EgressTargetBlocked(0xA9FEA9FE, {}, host));   // metadata
  EXPECT_TRUE(EgressTargetBlocked(0x0A630102, {}, host));   // 10.99.1.2
  EXPECT_TRUE(EgressTargetBlocked(0xC6336401, {}, host));   // a host address, though public
  EXPECT_FALSE(EgressTargetBlocked(0xC6336402, {}, host));  // 198.51.100.2
  EXPECT_FALSE(EgressTargetBlocked(0x0A630102, {Ipv4Cidr{0x0A630000, 16}}, host));
  EXPECT_TRUE(EgressTargetBlocked(0x7F000001, {Ipv4Cidr{0x7F000000, 8}}, host));  // the host stays blocked
}

}  // namespace
}  // namespace warren::sandbox
