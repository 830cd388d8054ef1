#include "sandbox/egress_sniff.h"

#include "common/host_names.h"

#include <algorithm>
#include <cctype>

namespace warren::sandbox {

namespace {

char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

uint32_t Be16(std::string_view d, size_t i) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(d[i])) << 8) | static_cast<uint8_t>(d[i + 1]);
}
uint32_t Be24(std::string_view d, size_t i) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(d[i])) << 16) | Be16(d, i + 1);
}

std::optional<uint16_t> ParsePort(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

// "host[:port]" -> canonical host (name or IPv4 literal) and port (0 when
// absent). IPv6 literals and anything else are refused.
bool SplitAuthority(std::string_view a, std::string* host, uint16_t* port) {
  *port = 0;
  if (a.empty() || a.front() == '[') return false;
  if (a.find('@') != std::string_view::npos) return false;  // no user info
  size_t colon = a.rfind(':');
  std::string_view h = a;
  if (colon != std::string_view::npos) {
    auto p = ParsePort(a.substr(colon + 1));
    if (!p) return false;
    *port = *p;
    h = a.substr(0, colon);
  }
  if (IsIpv4Literal(h)) {
    *host = std::string(h);
    return true;
  }
  auto c = CanonicalHostName(h);
  if (!c) return false;
  *host = *c;
  return true;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return Lower(x) == Lower(y); });
}

}  // namespace

std::optional<std::string> CanonicalHostName(std::string_view s) { return warren::CanonicalHostName(s); }

bool IsIpv4Literal(std::string_view s) { return warren::IsIpv4Literal(s); }

Result<HostAllowlist> HostAllowlist::Parse(const std::vector<std::string>& entries, size_t max_entries) {
  if (entries.size() > max_entries) {
    return Status::InvalidArgument("at most " + std::to_string(max_entries) + " allowed hosts");
  }
  HostAllowlist l;
  for (const auto& raw : entries) {
    WARREN_ASSIGN_OR_RETURN(std::string canon, CanonicalHostPattern(raw));
    if (std::find(l.entries_.begin(), l.entries_.end(), canon) == l.entries_.end()) l.entries_.push_back(canon);
  }
  return l;
}

bool HostAllowlist::Allows(std::string_view host) const {
  std::string h;
  if (IsIpv4Literal(host)) {
    h = std::string(host);
  } else {
    auto c = CanonicalHostName(host);
    if (!c) return false;
    h = *c;
  }
  for (const auto& e : entries_) {
    if (e.size() > 2 && e[0] == '*' && e[1] == '.') {
      std::string_view suffix = std::string_view(e).substr(1);  // ".example.com"
      if (h.size() > suffix.size() && std::string_view(h).substr(h.size() - suffix.size()) == suffix &&
          !IsIpv4Literal(h)) {
        return true;
      }
    } else if (e == h) {
      return true;
    }
  }
  return false;
}

TlsSniff SniffClientHello(std::string_view data) {
  TlsSniff out;
  auto bad = [&](std::string why) {
    out.state = SniffState::kMalformed;
    out.reason = std::move(why);
    return out;
  };
  // Reassemble the handshake bytes from consecutive handshake records.
  std::string hs;
  size_t pos = 0;
  size_t need = 0;  // total handshake message length once known
  while (true) {
    if (need && hs.size() >= need) break;
    if (data.size() - pos < 5) return out;  // need more
    if (static_cast<uint8_t>(data[pos]) != 22) {
      return bad(pos == 0 ? "not a TLS handshake record" : "ClientHello interrupted by another record type");
    }
    if (static_cast<uint8_t>(data[pos + 1]) != 3) return bad("not a TLS record version");
    size_t len = Be16(data, pos + 3);
    if (len == 0) return bad("empty TLS record");
    if (len > kMaxTlsRecord) return bad("TLS record too large");
    if (data.size() - pos - 5 < len) return out;  // need more
    hs.append(data.substr(pos + 5, len));
    pos += 5 + len;
    if (!need && hs.size() >= 4) {
      if (static_cast<uint8_t>(hs[0]) != 1) return bad("first handshake message is not a ClientHello");
      need = 4 + Be24(hs, 1);
      if (need - 4 > kMaxClientHello) return bad("ClientHello too large");
      if (need - 4 < 38) return bad("ClientHello too short");
    }
    if (hs.size() > kMaxClientHello + 4 + kMaxTlsRecord) return bad("ClientHello too large");
  }
  std::string_view m = std::string_view(hs).substr(4, need - 4);
  size_t i = 2 + 32;  // legacy_version, random
  if (m.size() < i + 1) return bad("ClientHello truncated");
  size_t sid = static_cast<uint8_t>(m[i]);
  if (sid > 32) return bad("bad session id length");
  i += 1 + sid;
  if (m.size() < i + 2) return bad("ClientHello truncated");
  size_t cs = Be16(m, i);
  if (cs < 2 || cs % 2) return bad("bad cipher suites length");
  i += 2 + cs;
  if (m.size() < i + 1) return bad("ClientHello truncated");
  size_t comp = static_cast<uint8_t>(m[i]);
  if (comp < 1) return bad("bad compression methods length");
  i += 1 + comp;
  if (m.size() < i) return bad("ClientHello truncated");
  out.state = SniffState::kDone;
  if (m.size() == i) return out;  // no extensions: no SNI
  if (m.size() < i + 2) return bad("ClientHello truncated");
  size_t ext_len = Be16(m, i);
  i += 2;
  if (m.size() - i != ext_len) return bad("extensions length mismatch");
  bool seen_sni = false;
  while (i < m.size()) {
    if (m.size() - i < 4) return bad("extension header truncated");
    uint32_t type = Be16(m, i);
    size_t len = Be16(m, i + 2);
    i += 4;
    if (m.size() - i < len) return bad("extension truncated");
    std::string_view e = m.substr(i, len);
    i += len;
    if (type != 0) continue;
    // server_name: a proxy and a server reading different names is the
    // attack, so anything ambiguous is refused.
    if (seen_sni) return bad("two server_name extensions");
    seen_sni = true;
    if (e.size() < 2 || Be16(e, 0) != e.size() - 2) return bad("server_name list length mismatch");
    size_t j = 2;
    std::string name;
    while (j < e.size()) {
      if (e.size() - j < 3) return bad("server_name entry truncated");
      uint8_t nt = static_cast<uint8_t>(e[j]);
      size_t nl = Be16(e, j + 1);
      j += 3;
      if (e.size() - j < nl) return bad("server_name entry truncated");
      if (nt == 0) {
        if (!name.empty()) return bad("two host names in server_name");
        auto c = CanonicalHostName(e.substr(j, nl));
        if (!c) return bad("server_name is not a valid host name");
        name = *c;
      }
      j += nl;
    }
    if (name.empty()) return bad("server_name without a host name");
    out.sni = name;
  }
  return out;
}

std::optional<bool> LooksLikeHttp(std::string_view data) {
  size_t n = 0;
  for (; n < data.size() && n < 16; ++n) {
    char c = data[n];
    if (c == ' ') return n > 0;
    if (c < 'A' || c > 'Z') return false;
  }
  if (n >= 16) return false;
  return std::nullopt;
}

HttpSniff SniffHttpHead(std::string_view data) {
  HttpSniff out;
  auto bad = [&](std::string why) {
    out.state = SniffState::kMalformed;
    out.reason = std::move(why);
    return out;
  };
  // A server that splits lines on a bare LF (or CR) would see header lines
  // the proxy does not: refuse both, anywhere in what is read so far.
  size_t end = data.find("\r\n\r\n");
  std::string_view seen = data.substr(0, end == std::string_view::npos ? data.size() : end + 4);
  for (size_t k = 0; k < seen.size(); ++k) {
    if (seen[k] == '\n' && (k == 0 || seen[k - 1] != '\r')) return bad("bare LF in request head");
    if (seen[k] == '\r' && k + 1 < seen.size() && seen[k + 1] != '\n') return bad("bare CR in request head");
  }
  size_t eol = data.find("\r\n");
  if (eol == std::string_view::npos) {
    if (data.size() >= kMaxHttpHead) return bad("request head too large");
    return out;
  }
  std::string_view line = data.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return bad("malformed request line");
  }
  out.method = std::string(line.substr(0, sp1));
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return bad("not HTTP/1.x");
  for (char c : out.method) {
    if (c < 'A' || c > 'Z') return bad("malformed method");
  }
  if (end == std::string_view::npos) {
    if (data.size() >= kMaxHttpHead) return bad("request head too large");
    out.method.clear();
    return out;  // the request line is fine: need the rest of the head
  }
  if (end + 4 > kMaxHttpHead) return bad("request head too large");
  out.head_len = end + 4;
  std::string_view head = data.substr(0, end + 2);  // keep the last CRLF
  // Headers: exactly one Host when present; no line folding; no NULs;
  // body framing a server cannot read differently.
  std::optional<std::string_view> host_header;
  std::optional<std::string_view> content_length, transfer_encoding;
  size_t i = eol + 2;
  while (i < head.size()) {
    size_t e = head.find("\r\n", i);
    std::string_view h = head.substr(i, e - i);
    i = e + 2;
    if (h.empty()) break;
    if (h.front() == ' ' || h.front() == '\t') return bad("obsolete header line folding");
    if (h.find('\0') != std::string_view::npos) return bad("NUL in header");
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return bad("malformed header line");
    std::string_view name = h.substr(0, colon);
    if (name.find(' ') != std::string_view::npos || name.find('\t') != std::string_view::npos) {
      return bad("whitespace in header name");
    }
    // A token only: a server that strips odd bytes from a name
    // ("Transfer-Encoding\x0b") must not see a header the proxy did not.
    for (char c : name) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
        return bad("bad character in header name");
      }
    }
    std::string_view value = TrimOws(h.substr(colon + 1));
    if (IEquals(name, "host")) {
      if (host_header) return bad("two Host headers");
      host_header = value;
    } else if (IEquals(name, "content-length")) {
      if (content_length) return bad("two Content-Length headers");
      content_length = value;
    } else if (IEquals(name, "transfer-encoding")) {
      if (transfer_encoding) return bad("two Transfer-Encoding headers");
      transfer_encoding = value;
    } else if (IEquals(name, "upgrade")) {
      out.upgrade = true;
    }
  }
  if (content_length && transfer_encoding) return bad("both Content-Length and Transfer-Encoding");
  if (transfer_encoding) {
    if (version == "HTTP/1.0") return bad("Transfer-Encoding in an HTTP/1.0 request");
    if (!IEquals(*transfer_encoding, "chunked")) {
      return bad("unsupported Transfer-Encoding: " + std::string(transfer_encoding->substr(0, 64)));
    }
    out.chunked = true;
  }
  if (content_length) {
    if (content_length->empty() || content_length->size() > 15) return bad("bad Content-Length");
    for (char c : *content_length) {
      if (c < '0' || c > '9') return bad("bad Content-Length");
      out.content_length = out.content_length * 10 + static_cast<uint64_t>(c - '0');
    }
  }
  if (out.method == "CONNECT") {
    out.connect = true;
    if (!SplitAuthority(target, &out.host, &out.port) || out.port == 0) return bad("CONNECT needs host:port");
  } else if (target.size() > 7 && IEquals(target.substr(0, 7), "http://")) {
    out.absolute = true;
    std::string_view rest = target.substr(7);
    size_t slash = rest.find_first_of("/?#");
    std::string_view auth = rest.substr(0, slash);
    if (!SplitAuthority(auth, &out.host, &out.port)) return bad("bad host in absolute URL");
    if (out.port == 0) out.port = 80;
  } else if (!target.empty() && (target.front() == '/' || target == "*")) {
    if (!host_header) return bad("no Host header");
    uint16_t ignored = 0;  // the port dialed counts, not the header's
    if (!SplitAuthority(*host_header, &out.host, &ignored)) return bad("bad Host header");
  } else {
    return bad("unsupported request target");
  }
  out.state = SniffState::kDone;
  return out;
}

HttpRequestFramer::Step HttpRequestFramer::Next(std::string_view data) {
  Step st;
  auto bad = [&](std::string why) {
    st.kind = Step::kMalformed;
    st.reason = std::move(why);
    return st;
  };
  auto body = [&](size_t n) {
    st.kind = Step::kBody;
    st.len = n;
    return st;
  };
  if (data.empty()) return st;
  switch (state_) {
    case State::kHead: {
      auto http = LooksLikeHttp(data);
      if (!http.has_value()) return st;
      if (!*http) return bad("bytes that are not an HTTP/1.x request where a request should start");
      HttpSniff h = SniffHttpHead(data);
      if (h.state == SniffState::kNeedMore) return st;
      if (h.state == SniffState::kMalformed) return bad("malformed request: " + h.reason);
      if (h.chunked) {
        state_ = State::kChunkSize;
      } else if (h.content_length > 0) {
        state_ = State::kFixed;
        remaining_ = h.content_length;
      }
      st.kind = Step::kHead;
      st.len = h.head_len;
      st.head = std::move(h);
      return st;
    }
    case State::kFixed:
    case State::kChunkData: {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
      remaining_ -= n;
      if (remaining_ == 0) state_ = state_ == State::kFixed ? State::kHead : State::kChunkCrlf;
      return body(n);
    }
    case State::kChunkCrlf: {
      if (data[0] != '\r' || (data.size() >= 2 && data[1] != '\n')) return bad("chunk data not followed by CRLF");
      if (data.size() < 2) return st;
      state_ = State::kChunkSize;
      return body(2);
    }
    case State::kChunkSize: {
      // chunk-size [ BWS ";" chunk-ext ] CRLF
      size_t i = 0;
      uint64_t size = 0;
      for (; i < data.size() && std::isxdigit(static_cast<unsigned char>(data[i])); ++i) {
        if (i >= 15) return bad("chunk size too large");
        char c = Lower(data[i]);
        size = size * 16 + static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
      }
      if (i == data.size()) return data.size() >= kMaxChunkLine ? bad("chunk-size line too long") : st;
      if (i == 0) return bad("bad chunk size");
      size_t j = i;
      while (j < data.size() && (data[j] == ' ' || data[j] == '\t')) ++j;
      if (j < data.size() && data[j] == ';') {
        for (++j; j < data.size() && data[j] != '\r'; ++j) {
          char c = data[j];
          if (c != '\t' && (c < 0x20 || c == 0x7f)) return bad("bad chunk extension");
        }
      }
      if (j >= kMaxChunkLine) return bad("chunk-size line too long");
      if (j == data.size()) return st;
      if (data[j] != '\r') return bad("bad chunk-size line");
      if (j + 1 == data.size()) return st;
      if (data[j + 1] != '\n') return bad("bare CR in chunk-size line");
      if (size == 0) {
        state_ = State::kTrailer;
        trailer_bytes_ = 0;
      } else {
        state_ = State::kChunkData;
        remaining_ = size;
      }
      return body(j + 2);
    }
    case State::kTrailer: {
      // Trailer field lines, then an empty line.
      size_t eol = data.find("\r\n");
      std::string_view line = data.substr(0, eol == std::string_view::npos ? data.size() : eol);
      for (size_t k = 0; k < line.size(); ++k) {
        if (line[k] == '\n' || (line[k] == '\r' && k + 1 < line.size())) return bad("bare CR or LF in trailers");
      }
      if (eol == std::string_view::npos || trailer_bytes_ + eol + 2 > kMaxHttpHead) {
        return trailer_bytes_ + data.size() >= kMaxHttpHead ? bad("trailers too large") : st;
      }
      trailer_bytes_ += eol + 2;
      if (eol == 0) state_ = State::kHead;
      return body(eol + 2);
    }
  }
  return st;
}

std::optional<std::string> AnswerDnsQuery(std::string_view q, uint32_t answer, uint32_t ttl) {
  if (q.size() < 12 || q.size() > 512) return std::nullopt;
  uint8_t flags1 = static_cast<uint8_t>(q[2]);
  if (flags1 & 0x80) return std::nullopt;  // a response, not a query
  int opcode = (flags1 >> 3) & 0x0f;
  uint32_t qd = Be16(q, 4), an = Be16(q, 6), ns = Be16(q, 8);
  if (qd != 1 || an != 0 || ns != 0) return std::nullopt;
  // QNAME: plain labels only (no compression pointers in a question).
  size_t i = 12;
  std::string name;
  while (true) {
    if (i >= q.size()) return std::nullopt;
    size_t l = static_cast<uint8_t>(q[i]);
    if (l == 0) {
      ++i;
      break;
    }
    if (l > 63) return std::nullopt;
    if (i + 1 + l > q.size()) return std::nullopt;
    if (!name.empty()) name += '.';
    name.append(q.substr(i + 1, l));
    i += 1 + l;
    if (name.size() > 253) return std::nullopt;
  }
  if (q.size() < i + 4) return std::nullopt;
  uint32_t qtype = Be16(q, i), qclass = Be16(q, i + 2);
  size_t qend = i + 4;
  std::string r;
  r.append(q.substr(0, 2));  // id
  uint8_t rd = flags1 & 0x01;
  int rcode = 0;
  bool give_a = false;
  if (opcode != 0) {
    rcode = 4;  // NOTIMP
  } else if (!CanonicalHostName(name)) {
    rcode = 3;  // NXDOMAIN
  } else if (qtype == 1 && qclass == 1) {
    give_a = true;
  }
  r += static_cast<char>(0x80 | (opcode << 3) | rd);  // QR, opcode, RD
  r += static_cast<char>(0x80 | rcode);                // RA, rcode
  r += std::string("\x00\x01", 2);                     // QDCOUNT
  r += std::string(give_a ? "\x00\x01" : "\x00\x00", 2);
  r += std::string(4, '\0');  // NSCOUNT, ARCOUNT
  r.append(q.substr(12, qend - 12));
  if (give_a) {
    r += std::string("\xc0\x0c\x00\x01\x00\x01", 6);  // name pointer, A, IN
    for (int s = 24; s >= 0; s -= 8) r += static_cast<char>((ttl >> s) & 0xff);
    r += std::string("\x00\x04", 2);
    for (int s = 24; s >= 0; s -= 8) r += static_cast<char>((answer >> s) & 0xff);
  }
  return r;
}

}  // namespace warren::sandbox
