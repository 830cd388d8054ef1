// The egress proxy over loopback, without root and without nftables: the
// test's own connections play the sandbox (the lookup maps 127.0.0.1 to a
// policy), an upstream on 127.0.0.2 plays an allowed host (reachable only
// because the policy's allow_cidrs open 127/8 for it), and the hosts
// override names the targets. Every refusal is checked for its reason.
#include "sandbox/egress_proxy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "common/unique_fd.h"

namespace warren::sandbox {
namespace {

sockaddr_in Addr(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

// An upstream on 127.0.0.2: answers each chunk it reads with
// "upstream saw: <first line of the chunk>\n" and keeps the connection open
// until the client closes. It records every byte each connection received;
// WaitClosed waits until that many connections have ended (their records
// are final then).
class Upstream final {
 public:
  Upstream() {
    fd_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = Addr("127.0.0.2", 0);
    socklen_t len = sizeof(a);
    bool ok = bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && listen(fd_.get(), 16) == 0 &&
              getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0;
    if (!ok) return;
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~Upstream() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (auto& t : conns_) t.join();
  }
  uint16_t port() const { return port_; }
  bool WaitClosed(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(60), [&] { return closed_ >= n; });
  }
  std::vector<std::string> received() {
    std::lock_guard<std::mutex> l(mu_);
    return received_;
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int c = accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      size_t idx;
      {
        std::lock_guard<std::mutex> l(mu_);
        idx = received_.size();
        received_.emplace_back();
      }
      conns_.emplace_back([this, c, idx] {
        char buf[4096];
        while (!stop_) {
          pollfd p{c, POLLIN, 0};
          if (poll(&p, 1, 50) <= 0) continue;
          ssize_t n = read(c, buf, sizeof(buf));
          if (n <= 0) break;
          std::string s(buf, static_cast<size_t>(n));
          {
            std::lock_guard<std::mutex> l(mu_);
            received_[idx] += s;
          }
          std::string msg = "upstream saw: " + s.substr(0, s.find_first_of("\r\n")) + "\n";
          (void)!write(c, msg.data(), msg.size());
        }
        close(c);
        std::lock_guard<std::mutex> l(mu_);
        ++closed_;
        cv_.notify_all();
      });
    }
  }
  UniqueFd fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> conns_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> received_;
  size_t closed_ = 0;
};

// A client connection to the proxy from 127.0.0.1.
class Client final {
 public:
  explicit Client(uint16_t port) {
    fd_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = Addr("127.0.0.1", port);
    connected_ = connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  bool connected() const { return connected_; }
  void Send(const std::string& s) { (void)!write(fd_.get(), s.data(), s.size()); }
  // Reads until `want` appears, EOF or a reset (then eof() is true), or 60 s
  // without a byte (a generous bound: CI runs on 2 loaded cores).
  std::string Read(const std::string& want = "") {
    std::string out;
    char buf[4096];
    while (want.empty() || out.find(want) == std::string::npos) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (poll(&p, 1, 60000) <= 0) break;
      ssize_t n = read(fd_.get(), buf, sizeof(buf));
      if (n <= 0) {
        eof_ = true;
        reset_ = n < 0 && errno == ECONNRESET;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  bool eof() const { return eof_; }
  bool reset() const { return reset_; }

 private:
  UniqueFd fd_;
  bool connected_ = false, eof_ = false, reset_ = false;
};

std::string U16(size_t v) { return std::string{static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)}; }

std::string ClientHello(const std::string& sni) {
  std::string list = std::string(1, '\0') + U16(sni.size()) + sni;
  std::string ext = U16(0) + U16(list.size() + 2) + U16(list.size()) + list;
  std::string b = "\x03\x03" + std::string(32, 'r') + std::string(1, '\0') + U16(2) + std::string("\x13\x01", 2) +
                  std::string("\x01\x00", 2) + U16(ext.size()) + ext;
  std::string hs = std::string(1, 1) + std::string(1, '\0') + U16(b.size()) + b;
  return std::string("\x16\x03\x01", 3) + U16(hs.size()) + hs;
}

class EgressProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(upstream_.port(), 0) << "cannot listen on 127.0.0.2";
    Start(opts_);
  }
  void Start(EgressProxyOptions o, bool known_source = true) {
    o.hosts_override = {{"allowed.test", "127.0.0.2"}, {"ssrf.test", "10.1.2.3"}, {"self.test", "127.0.0.1"}};
    auto p = EgressProxy::Start(o, [this, known_source](uint32_t addr) -> std::optional<EgressPolicy> {
      if (!known_source || addr != 0x7F000001) return std::nullopt;
      EgressPolicy pol;
      pol.sandbox_id = "sbx_test";
      std::lock_guard<std::mutex> l(hosts_mu_);
      pol.hosts = *HostAllowlist::Parse(hosts_);
      pol.allow_cidrs = {Ipv4Cidr{0x7F000000, 8}};
      pol.gateway = 0x0AD50001;
      return pol;
    });
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    proxy_ = std::move(*p);
  }
  std::string Port() const { return std::to_string(upstream_.port()); }

  // What the policy allows now (the lookup runs at every check).
  void SetHosts(std::vector<std::string> h) {
    std::lock_guard<std::mutex> l(hosts_mu_);
    hosts_ = std::move(h);
  }
  std::string Abs(const std::string& path) const { return "http://allowed.test:" + Port() + path; }

  std::mutex hosts_mu_;
  std::vector<std::string> hosts_{"allowed.test", "ssrf.test", "self.test"};
  Upstream upstream_;
  EgressProxyOptions opts_;
  std::unique_ptr<EgressProxy> proxy_;
};

TEST_F(EgressProxyTest, ConnectToAnAllowedHostIsSpliced) {
  Client c(proxy_->tcp_port());
  ASSERT_TRUE(c.connected());
  c.Send("CONNECT allowed.test:" + Port() + " HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
  EXPECT_EQ(c.Read("\r\n\r\n"), "HTTP/1.1 200 Connection Established\r\n\r\n");
  c.Send("ping\n");
  EXPECT_EQ(c.Read("\n"), "upstream saw: ping\n");
  EXPECT_EQ(proxy_->stats().allowed, 1);
}

TEST_F(EgressProxyTest, AbsoluteFormRequestIsForwardedAsIs) {
  Client c(proxy_->tcp_port());
  c.Send("GET http://allowed.test:" + Port() + "/simple/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
  EXPECT_EQ(c.Read("\n"), "upstream saw: GET http://allowed.test:" + Port() + "/simple/ HTTP/1.1\n");
}

TEST_F(EgressProxyTest, DeniedHostGets403WithTheReason) {
  Client c(proxy_->tcp_port());
  c.Send("GET http://denied.test:" + Port() + "/ HTTP/1.1\r\nHost: denied.test\r\n\r\n");
  std::string r = c.Read();
  EXPECT_EQ(r.rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("warren egress: host denied.test is not in this sandbox's allowed hosts"), std::string::npos) << r;
  EXPECT_TRUE(c.eof());
  EXPECT_EQ(proxy_->stats().denied, 1);
  EXPECT_EQ(proxy_->stats().allowed, 0);
}

TEST_F(EgressProxyTest, ConnectToADeniedHostGets403) {
  Client c(proxy_->tcp_port());
  c.Send("CONNECT denied.test:443 HTTP/1.1\r\n\r\n");
  std::string r = c.Read();
  EXPECT_EQ(r.rfind("HTTP/1.1 403", 0), 0u) << r;
  EXPECT_NE(r.find("host denied.test is not in this sandbox's allowed hosts"), std::string::npos);
}

TEST_F(EgressProxyTest, AllowedNameResolvingToBlockedAddressesIsRefused) {
  // ssrf.test is allowed by name but resolves to 10.1.2.3: private, not in
  // allow_cidrs. self.test resolves to the host's own address, which stays
  // blocked even though allow_cidrs cover it.
  for (auto [host, addr] : {std::pair{"ssrf.test", "10.1.2.3"}, std::pair{"self.test", "127.0.0.1"}}) {
    Client c(proxy_->tcp_port());
    c.Send(std::string("GET http://") + host + ":" + Port() + "/ HTTP/1.1\r\n\r\n");
    std::string r = c.Read();
    EXPECT_EQ(r.rfind("HTTP/1.1 403", 0), 0u) << r;
    EXPECT_NE(r.find(std::string("host ") + host + " resolves only to blocked addresses (" + addr + ")"),
              std::string::npos)
        << r;
  }
}

TEST_F(EgressProxyTest, TlsToADeniedNameGetsAnAccessDeniedAlert) {
  Client c(proxy_->tcp_port());
  c.Send(ClientHello("denied.test"));
  EXPECT_EQ(c.Read(), std::string("\x15\x03\x03\x00\x02\x02\x31", 7));
  EXPECT_TRUE(c.eof());
}

TEST_F(EgressProxyTest, TlsWithoutSniAndOtherProtocolsAreCut) {
  Client garbage(proxy_->tcp_port());
  garbage.Send("SSH-2.0-OpenSSH_9.2\r\n");
  EXPECT_EQ(garbage.Read(), "");
  EXPECT_TRUE(garbage.eof());
  EXPECT_TRUE(garbage.reset());
  Client malformed(proxy_->tcp_port());
  malformed.Send("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  std::string r = malformed.Read();
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
  EXPECT_NE(r.find("two Host headers"), std::string::npos);
}

TEST_F(EgressProxyTest, UnknownSourcesAreCut) {
  proxy_.reset();
  Start(opts_, /*known_source=*/false);
  Client c(proxy_->tcp_port());
  c.Send("CONNECT allowed.test:" + Port() + " HTTP/1.1\r\n\r\n");
  EXPECT_EQ(c.Read(), "");
  EXPECT_TRUE(c.eof());
  EXPECT_EQ(proxy_->stats().allowed, 0);
}

TEST_F(EgressProxyTest, IdleConnectionsAreClosed) {
  proxy_.reset();
  EgressProxyOptions o;
  o.idle_timeout = std::chrono::milliseconds(300);
  Start(o);
  Client c(proxy_->tcp_port());
  c.Send("CONNECT allowed.test:" + Port() + " HTTP/1.1\r\n\r\n");
  EXPECT_EQ(c.Read("\r\n\r\n"), "HTTP/1.1 200 Connection Established\r\n\r\n");
  // The upstream keeps the connection open; only the proxy's idle timeout
  // can end it.
  EXPECT_EQ(c.Read(), "");
  EXPECT_TRUE(c.eof());
}

TEST_F(EgressProxyTest, ConnectionsPerSandboxAreBounded) {
  proxy_.reset();
  EgressProxyOptions o;
  o.max_connections_per_sandbox = 2;
  Start(o);
  std::vector<std::unique_ptr<Client>> held;
  for (int i = 0; i < 2; ++i) {
    held.push_back(std::make_unique<Client>(proxy_->tcp_port()));
    held.back()->Send("CONNECT allowed.test:" + Port() + " HTTP/1.1\r\n\r\n");
    ASSERT_EQ(held.back()->Read("\r\n\r\n"), "HTTP/1.1 200 Connection Established\r\n\r\n");
  }
  Client third(proxy_->tcp_port());
  third.Send("CONNECT allowed.test:" + Port() + " HTTP/1.1\r\n\r\n");
  EXPECT_EQ(third.Read(), "");
  EXPECT_TRUE(third.eof());
  held.clear();  // frees the slots
  for (int tries = 0; tries < 100 && proxy_->stats().active > 0; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Client again(proxy_->tcp_port());
  again.Send("CONNECT allowed.test:" + Port() + " HTTP/1.1\r\n\r\n");
  EXPECT_EQ(again.Read("\r\n\r\n"), "HTTP/1.1 200 Connection Established\r\n\r\n");
}

// Keep-alive and pipelining on plain HTTP: every request head is checked,
// not only the first (docs/SANDBOX.md "How `limited` is built").

TEST_F(EgressProxyTest, TwoAllowedRequestsOnOneConnectionPass) {
  Client c(proxy_->tcp_port());
  const std::string one = "GET " + Abs("/one") + " HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
  const std::string two = "GET /two HTTP/1.1\r\nHost: allowed.test:" + Port() + "\r\n\r\n";
  c.Send(one);
  EXPECT_EQ(c.Read("\n"), "upstream saw: GET " + Abs("/one") + " HTTP/1.1\n");
  c.Send(two);
  EXPECT_EQ(c.Read("\n"), "upstream saw: GET /two HTTP/1.1\n");
  EXPECT_EQ(proxy_->stats().allowed, 1);  // one connection
  EXPECT_EQ(proxy_->stats().http_requests, 2);
  EXPECT_EQ(proxy_->stats().denied, 0);
}

TEST_F(EgressProxyTest, ASecondRequestForAnotherHostIsRefusedAndNeverReachesTheUpstream) {
  // denied.test is not allowed at all; ssrf.test is allowed, but not on a
  // connection opened for allowed.test (it would reach allowed.test's
  // server, whose virtual hosting would decide).
  for (std::string other : {"denied.test", "ssrf.test"}) {
    Upstream up;  // a fresh one: its records are this connection's only
    Client c(proxy_->tcp_port());
    const std::string one = "GET http://allowed.test:" + std::to_string(up.port()) + "/one HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
    c.Send(one);
    EXPECT_EQ(c.Read("\n").rfind("upstream saw: GET ", 0), 0u);
    c.Send("GET /evil HTTP/1.1\r\nHost: " + other + "\r\n\r\n");
    std::string r = c.Read();  // to the end
    EXPECT_TRUE(c.eof());
    EXPECT_EQ(r.rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u) << r;
    EXPECT_NE(r.find("X-Warren-Egress: denied\r\n"), std::string::npos) << r;
    EXPECT_NE(r.find("warren egress: request for " + other + " on a connection opened for allowed.test"), std::string::npos)
        << r;
    ASSERT_TRUE(up.WaitClosed(1));
    EXPECT_EQ(up.received(), std::vector<std::string>{one});
  }
  EXPECT_EQ(proxy_->stats().denied, 2);
}

TEST_F(EgressProxyTest, APolicyChangeAppliesToTheNextRequestOnAnOpenConnection) {
  Client c(proxy_->tcp_port());
  c.Send("GET " + Abs("/one") + " HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
  EXPECT_EQ(c.Read("\n").rfind("upstream saw: GET ", 0), 0u);
  SetHosts({"ssrf.test"});
  c.Send("GET /two HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
  std::string r = c.Read();
  EXPECT_EQ(r.rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("warren egress: host allowed.test is not in this sandbox's allowed hosts"), std::string::npos) << r;
  ASSERT_TRUE(upstream_.WaitClosed(1));
  EXPECT_EQ(upstream_.received().at(0).find("/two"), std::string::npos);
}

TEST_F(EgressProxyTest, PipelinedRequestsAreCheckedOneByOne) {
  const std::string r1 = "GET " + Abs("/1") + " HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
  const std::string r2 = "GET /2 HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
  const std::string r3 = "GET /3 HTTP/1.1\r\nHost: denied.test\r\n\r\n";
  const std::string r4 = "GET /4 HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
  Client c(proxy_->tcp_port());
  c.Send(r1 + r2 + r3 + r4);
  std::string r = c.Read();
  EXPECT_TRUE(c.eof());
  // The upstream's answers to 1 and 2 come first, then the refusal of 3.
  EXPECT_EQ(r.rfind("upstream saw: GET " + Abs("/1") + " HTTP/1.1\n", 0), 0u) << r;
  size_t refusal = r.find("HTTP/1.1 403 Forbidden\r\n");
  ASSERT_NE(refusal, std::string::npos) << r;
  EXPECT_EQ(r.find("upstream saw", refusal), std::string::npos) << r;
  EXPECT_NE(r.find("request for denied.test on a connection opened for allowed.test"), std::string::npos) << r;
  ASSERT_TRUE(upstream_.WaitClosed(1));
  EXPECT_EQ(upstream_.received(), std::vector<std::string>{r1 + r2});
  EXPECT_EQ(proxy_->stats().http_requests, 3);  // 4 was never parsed
}

TEST_F(EgressProxyTest, HeadLikeTextInsideBodiesIsNotTakenForAHead) {
  // A body that looks like a request for denied.test, chunked and with a
  // Content-Length, sent whole and in 7-byte pieces: the proxy frames the
  // bodies, so the fake heads pass as body bytes, the real heads around
  // them are checked, and the real request for denied.test at the end is
  // refused.
  const std::string fake = "GET / HTTP/1.1\r\nHost: denied.test\r\n\r\n";
  char hex[16];
  snprintf(hex, sizeof(hex), "%zx", fake.size());
  for (size_t piece : {size_t{0}, size_t{7}}) {
    Upstream up;
    const std::string p = std::to_string(up.port());
    const std::string r1 = "POST http://allowed.test:" + p + "/chunked HTTP/1.1\r\nHost: allowed.test\r\n" +
                           "Transfer-Encoding: chunked\r\n\r\n" + std::string(hex) + "\r\n" + fake + "\r\n0\r\n\r\n";
    const std::string r2 = "POST /length HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: " + std::to_string(fake.size()) +
                           "\r\n\r\n" + fake;
    const std::string r3 = "GET /after HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
    const std::string r4 = "GET /evil HTTP/1.1\r\nHost: denied.test\r\n\r\n";
    const std::string all = r1 + r2 + r3 + r4;
    int64_t checked_before = proxy_->stats().http_requests;
    Client c(proxy_->tcp_port());
    if (piece == 0) {
      c.Send(all);
    } else {
      for (size_t i = 0; i < all.size(); i += piece) c.Send(all.substr(i, piece));
    }
    std::string r = c.Read();
    EXPECT_NE(r.find("HTTP/1.1 403 Forbidden\r\n"), std::string::npos) << r;
    EXPECT_NE(r.find("request for denied.test on a connection opened for allowed.test"), std::string::npos) << r;
    ASSERT_TRUE(up.WaitClosed(1));
    std::string got;
    for (const auto& g : up.received()) got += g;
    EXPECT_EQ(got, r1 + r2 + r3) << "piece " << piece;
    EXPECT_EQ(proxy_->stats().http_requests - checked_before, 4) << "piece " << piece;
  }
}

TEST_F(EgressProxyTest, WhatCannotBeFramedSafelyIsRefused) {
  struct Case {
    std::string second;
    std::string status;
    std::string reason;
  };
  std::vector<Case> cases = {
      {"GET /ws HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "403",
       "HTTP Upgrade is not carried on plain HTTP"},
      {"POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "400",
       "malformed request: both Content-Length and Transfer-Encoding"},
      {"POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: gzip\r\n\r\n", "400",
       "malformed request: unsupported Transfer-Encoding: gzip"},
      {"CONNECT denied.test:443 HTTP/1.1\r\n\r\n", "403", "CONNECT inside a connection already open to allowed.test"},
      {"SSH-2.0-OpenSSH_9.2\r\n", "400", "bytes that are not an HTTP/1.x request where a request should start"},
  };
  for (const auto& k : cases) {
    Upstream up;
    const std::string one = "GET http://allowed.test:" + std::to_string(up.port()) + "/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
    Client c(proxy_->tcp_port());
    c.Send(one);
    EXPECT_EQ(c.Read("\n").rfind("upstream saw: GET ", 0), 0u);
    c.Send(k.second);
    std::string r = c.Read();
    EXPECT_EQ(r.rfind("HTTP/1.1 " + k.status + " ", 0), 0u) << r;
    EXPECT_NE(r.find("warren egress: " + k.reason), std::string::npos) << r;
    ASSERT_TRUE(up.WaitClosed(1));
    EXPECT_EQ(up.received(), std::vector<std::string>{one}) << k.second;
  }
  // The first request is framed the same way.
  Client up_first(proxy_->tcp_port());
  up_first.Send("GET " + Abs("/ws") + " HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: h2c\r\n\r\n");
  std::string r = up_first.Read();
  EXPECT_NE(r.find("HTTP Upgrade is not carried on plain HTTP"), std::string::npos) << r;
}

TEST_F(EgressProxyTest, PlainHttpInsideAConnectTunnelIsCheckedToo) {
  Client c(proxy_->tcp_port());
  c.Send("CONNECT allowed.test:" + Port() + " HTTP/1.1\r\n\r\n");
  EXPECT_EQ(c.Read("\r\n\r\n"), "HTTP/1.1 200 Connection Established\r\n\r\n");
  c.Send("GET /in HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
  EXPECT_EQ(c.Read("\n"), "upstream saw: GET /in HTTP/1.1\n");
  c.Send("GET /evil HTTP/1.1\r\nHost: denied.test\r\n\r\n");
  std::string r = c.Read();
  EXPECT_EQ(r.rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("request for denied.test on a connection opened for allowed.test"), std::string::npos) << r;
  ASSERT_TRUE(upstream_.WaitClosed(1));
  EXPECT_EQ(upstream_.received(), std::vector<std::string>{"GET /in HTTP/1.1\r\nHost: allowed.test\r\n\r\n"});
}

TEST_F(EgressProxyTest, DnsAnswersEveryNameWithTheGateway) {
  UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = Addr("127.0.0.1", proxy_->dns_port());
  std::string q = std::string("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12) + "\x04pypi\x03org" +
                  std::string("\x00\x00\x01\x00\x01", 5);
  ASSERT_EQ(sendto(s.get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)),
            static_cast<ssize_t>(q.size()));
  pollfd p{s.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  char buf[512];
  ssize_t n = recv(s.get(), buf, sizeof(buf), 0);
  ASSERT_GT(n, 4);
  std::string r(buf, static_cast<size_t>(n));
  EXPECT_EQ(r.substr(0, 2), "\x12\x34");
  EXPECT_EQ(r.substr(r.size() - 4), std::string("\x0a\xd5\x00\x01", 4));
  EXPECT_EQ(proxy_->stats().dns_answers, 1);
}

}  // namespace
}  // namespace warren::sandbox
