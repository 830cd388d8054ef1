// Root integration test of the `limited` network: a sandbox whose egress
// goes through the runtime's egress proxy (sandbox/egress_proxy.h).
//
// The test makes its own "internet": a network namespace joined to the host
// by a veth, holding allowed.test (a TEST-NET-2 address), denied.test (a
// TEST-NET-3 address) and internal.test (a 10.x address), each an HTTP
// server on :80 that says which address it was reached at, plus a raw
// server on :443. The names resolve only through the proxy's hosts
// override (a test-only setting). Everything it adds (netns, veth, routes)
// is removed, and the harness checks that no veth or nft table of the
// runtime is left.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>

#include "harness.h"

namespace warren::sandbox::testing {
namespace {

using std::chrono::milliseconds;

int Sh0(const std::string& cmd) {
  auto rc = RunCommand({"/bin/sh", "-c", cmd});
  return rc.ok() ? *rc : -1;
}

// HTTP on 0.0.0.0:80 ("hello from <address the client reached>"), a raw
// answer on 0.0.0.0:443 ("tls-port local=<address> got=<bytes>"), and a
// keep-alive HTTP/1.1 server on 0.0.0.0:8080 that answers every request on
// a connection with "<request line> via <address>" (Content-Length framed)
// and records each request line it served, inside network namespace
// `netns`.
class Hosts final {
 public:
  std::vector<std::string> served() {
    std::lock_guard<std::mutex> l(mu_);
    return served_;
  }

  ~Hosts() { Stop(); }
  bool Start(const std::string& netns) {
    std::atomic<int> ready{0};
    thread_ = std::thread([this, &ready, netns] { Serve(netns, &ready); });
    while (ready.load() == 0) std::this_thread::sleep_for(milliseconds(1));
    return ready.load() == 1;
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  static int Listen(int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(s, 16) != 0) {
      close(s);
      return -1;
    }
    return s;
  }
  void Serve(const std::string& netns, std::atomic<int>* ready) {
    UniqueFd ns(open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns || setns(ns.get(), CLONE_NEWNET) != 0) {
      ready->store(2);
      return;
    }
    UniqueFd http(Listen(80)), tls(Listen(443)), keep(Listen(8080));
    if (!http || !tls || !keep) {
      ready->store(2);
      return;
    }
    ready->store(1);
    while (!stop_) {
      pollfd p[3] = {{http.get(), POLLIN, 0}, {tls.get(), POLLIN, 0}, {keep.get(), POLLIN, 0}};
      if (poll(p, 3, 50) <= 0) continue;
      for (int i = 0; i < 3; ++i) {
        if (!(p[i].revents & POLLIN)) continue;
        UniqueFd c(accept4(p[i].fd, nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) continue;
        sockaddr_in local{};
        socklen_t len = sizeof(local);
        getsockname(c.get(), reinterpret_cast<sockaddr*>(&local), &len);
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &local.sin_addr, ip, sizeof(ip));
        if (i == 2) {
          KeepAlive(c.get(), ip);
          continue;
        }
        std::string got;
        char buf[4096];
        while (got.size() < 65536 && (i == 1 ? got.empty() : got.find("\r\n\r\n") == std::string::npos)) {
          pollfd r{c.get(), POLLIN, 0};
          if (poll(&r, 1, 2000) <= 0) break;
          ssize_t n = read(c.get(), buf, sizeof(buf));
          if (n <= 0) break;
          got.append(buf, static_cast<size_t>(n));
        }
        std::string msg = i == 0 ? "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from " + std::string(ip) + "\n"
                                 : "tls-port local=" + std::string(ip) + " got=" + std::to_string(got.size()) + "\n";
        (void)WriteAll(c.get(), msg.data(), msg.size());
      }
    }
  }
  // Requests without bodies, one after another, until the client closes
  // (or says nothing for 10 s).
  void KeepAlive(int c, const char* ip) {
    std::string got;
    char buf[4096];
    while (!stop_) {
      size_t end = got.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::string line = got.substr(0, got.find("\r\n"));
        got.erase(0, end + 4);
        {
          std::lock_guard<std::mutex> l(mu_);
          served_.push_back(line);
        }
        std::string body = line + " via " + ip + "\n";
        std::string msg = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        if (WriteAll(c, msg.data(), msg.size()) != 0) return;
        continue;
      }
      pollfd r{c, POLLIN, 0};
      if (poll(&r, 1, 10000) <= 0) return;
      ssize_t n = read(c, buf, sizeof(buf));
      if (n <= 0) return;
      got.append(buf, static_cast<size_t>(n));
    }
  }
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> served_;
};

class EgressNet final {
 public:
  EgressNet() {
    std::mt19937 rng(std::random_device{}());
    char hex[8];
    snprintf(hex, sizeof(hex), "%06x", static_cast<unsigned>(rng() & 0xffffff));
    name_ = std::string("we") + hex;
    k_ = static_cast<int>(rng() % 30) + 31;  // 31..60; network_test (run alongside by ctest -j) takes 1..30
    host_ip_ = "198.51.100." + std::to_string(4 * k_ + 1);
    allowed_ip_ = "198.51.100." + std::to_string(4 * k_ + 2);
    denied_ip_ = "203.0.113." + std::to_string(4 * k_ + 2);
    internal_ip_ = "10.98." + std::to_string(k_) + ".2";
  }
  ~EgressNet() { Down(); }

  bool Up() {
    std::string h = name_ + "h", p = name_ + "p", ns = "ip netns exec " + name_ + " ";
    std::string cmds[] = {
        "ip netns add " + name_,
        "ip link add " + h + " type veth peer name " + p,
        "ip link set " + p + " netns " + name_,
        "ip addr add " + host_ip_ + "/30 dev " + h,
        "ip link set " + h + " up",
        // An uplink like any other: forwarding on so NATed replies (the
        // isolated sandbox's) can pass.
        "echo 1 > /proc/sys/net/ipv4/conf/" + h + "/forwarding",
        ns + "ip addr add " + allowed_ip_ + "/30 dev " + p,
        ns + "ip addr add " + denied_ip_ + "/32 dev " + p,
        ns + "ip addr add " + internal_ip_ + "/32 dev " + p,
        ns + "ip link set lo up",
        ns + "ip link set " + p + " up",
        ns + "ip route add default via " + host_ip_,
        "ip route add " + denied_ip_ + "/32 dev " + h,
        "ip route add " + internal_ip_ + "/32 dev " + h,
    };
    up_ = true;
    for (const auto& c : cmds) {
      if (Sh0(c) != 0) {
        ADD_FAILURE() << "setup failed: " << c;
        return false;
      }
    }
    return hosts_.Start(name_);
  }
  void Down() {
    hosts_.Stop();
    if (!up_) return;
    Sh0("ip link del " + name_ + "h 2>/dev/null");  // the routes go with it
    Sh0("ip netns del " + name_ + " 2>/dev/null");
    up_ = false;
  }
  const std::string& name() const { return name_; }
  std::vector<std::string> served() { return hosts_.served(); }
  std::map<std::string, std::string> Names() const {
    return {{"allowed.test", allowed_ip_}, {"denied.test", denied_ip_}, {"internal.test", internal_ip_}};
  }
  std::string allowed_ip_, denied_ip_, internal_ip_;

 private:
  std::string name_, host_ip_;
  int k_ = 0;
  bool up_ = false;
  Hosts hosts_;
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

class EgressTest : public RuntimeTest {
 protected:
  void SetUp() override {
    egress_proxy_ = true;
    egress_.hosts_override = net_.Names();
    RuntimeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (!rt_->features().network_isolated) GTEST_SKIP() << "isolated network unavailable: " << rt_->features().network_reason;
    if (access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0) GTEST_SKIP() << "iproute2 missing";
    ASSERT_NE(rt_->egress_proxy(), nullptr);
    ASSERT_TRUE(net_.Up());
  }
  void TearDown() override {
    RuntimeTest::TearDown();
    std::string name = net_.name();
    net_.Down();
    EXPECT_FALSE(std::filesystem::exists("/run/netns/" + name)) << "leaked netns";
    EXPECT_FALSE(std::filesystem::exists("/sys/class/net/" + name + "h")) << "leaked veth";
  }
  SandboxRecord Limited(std::vector<std::string> hosts, std::vector<std::string> cidrs = {}) {
    CreateOptions o;
    o.network = "limited";
    o.allow_hosts = std::move(hosts);
    o.allow_cidrs = std::move(cidrs);
    return MustCreate(o);
  }
  // A raw HTTP/1.0 request with `host` in its Host header, sent with nc to
  // `dial` (a name or an address) port 80.
  std::string Get(const std::string& id, const std::string& dial, const std::string& host) {
    return Sh(id, "printf 'GET / HTTP/1.0\\r\\nHost: " + host + "\\r\\n\\r\\n' | nc -w 5 " + dial + " 80").stdout_data;
  }
  // Sends a ClientHello naming `sni` to `dial`:443 and returns the answer in hex.
  std::string Tls(const std::string& id, const std::string& dial, const std::string& sni) {
    auto fs = rt_->Files(id);
    EXPECT_TRUE(fs.ok());
    if (!fs.ok()) return "";
    EXPECT_TRUE(fs->WriteFile("/tmp/hello-" + sni, ClientHello(sni), 0644).ok());
    return Trim(Sh(id, "nc -w 5 " + dial + " 443 < /tmp/hello-" + sni + " | od -An -c | tr -s ' \\n' ' '").stdout_data);
  }
  EgressNet net_;
};

TEST_F(EgressTest, AllowedHostReachableOthersRefusedWithTheReason) {
  auto sb = Limited({"allowed.test", "internal.test"});
  ASSERT_FALSE(sb.ip.empty());
  // DNS is the proxy's, on the gateway.
  std::string gw = Trim(Sh(sb.id, "sed -n 's/^nameserver //p' /etc/resolv.conf").stdout_data);
  EXPECT_EQ(gw.substr(0, gw.rfind('.')), sb.ip.substr(0, sb.ip.rfind('.')));

  // The allowed host answers, by name, with an ordinary client (busybox wget).
  EXPECT_EQ(Sh(sb.id, "wget -q -O - http://allowed.test/").stdout_data, "hello from " + net_.allowed_ip_ + "\n");
  // The other one is refused, with the reason, by name and by address.
  std::string denied = Get(sb.id, "denied.test", "denied.test");
  EXPECT_EQ(denied.rfind("HTTP/1.1 403 Forbidden", 0), 0u) << denied;
  EXPECT_NE(denied.find("warren egress: host denied.test is not in this sandbox's allowed hosts"), std::string::npos)
      << denied;
  std::string by_ip = Get(sb.id, net_.denied_ip_, "denied.test");
  EXPECT_NE(by_ip.find("host denied.test is not in this sandbox's allowed hosts"), std::string::npos) << by_ip;
  auto wget = Sh(sb.id, "wget -q -O - http://denied.test/; echo rc=$?");
  EXPECT_EQ(wget.stdout_data, "rc=1\n");
  EXPECT_NE(wget.stderr_data.find("403"), std::string::npos) << wget.stderr_data;
  // The dialed address does not count: a request for allowed.test sent to
  // denied.test's address reaches allowed.test's own address.
  std::string cross = Get(sb.id, net_.denied_ip_, "allowed.test");
  EXPECT_NE(cross.find("hello from " + net_.allowed_ip_ + "\n"), std::string::npos) << cross;
  // An allowed name that resolves to a private address is refused (SSRF).
  std::string internal = Get(sb.id, "internal.test", "internal.test");
  EXPECT_NE(internal.find("host internal.test resolves only to blocked addresses (" + net_.internal_ip_ + ")"),
            std::string::npos)
      << internal;

  // TLS: the SNI decides. Allowed: the bytes reach allowed.test's :443.
  auto fs = rt_->Files(sb.id);
  ASSERT_TRUE(fs.ok());
  ASSERT_TRUE(fs->WriteFile("/tmp/hello-allowed", ClientHello("allowed.test"), 0644).ok());
  std::string tls_ok = Sh(sb.id, "nc -w 5 " + net_.denied_ip_ + " 443 < /tmp/hello-allowed").stdout_data;
  EXPECT_EQ(tls_ok.rfind("tls-port local=" + net_.allowed_ip_ + " got=", 0), 0u) << tls_ok;
  // Denied: a fatal TLS alert, access_denied (0x15 0x03 0x03 0x00 0x02 0x02 0x31 = '1').
  std::string alert = Tls(sb.id, "denied.test", "denied.test");
  EXPECT_EQ(Trim(alert.substr(alert.find_first_not_of(' '))), "025 003 003 \\0 002 002 1") << alert;

  auto stats = rt_->egress_proxy()->stats();
  EXPECT_GE(stats.allowed, 3);
  EXPECT_GE(stats.denied, 5);
  EXPECT_GE(stats.dns_answers, 3);
}

// Every request on a kept-alive connection is checked: from the sandbox,
// four pipelined requests on one connection to allowed.test:8080; the
// third names denied.test. The first two are answered, the third gets the
// 403 and the connection ends; the server never sees the third or fourth.
TEST_F(EgressTest, EveryRequestOnAKeptAliveConnectionIsChecked) {
  auto sb = Limited({"allowed.test", "denied.test"});
  std::string req;
  for (std::string host : {"allowed.test", "allowed.test", "denied.test", "allowed.test"}) {
    req += "GET /" + std::to_string(req.size()) + " HTTP/1.1\\r\\nHost: " + host + "\\r\\n\\r\\n";
  }
  std::string out = Sh(sb.id, "printf '" + req + "' | nc -w 10 allowed.test 8080").stdout_data;
  std::vector<std::string> served = net_.served();
  ASSERT_EQ(served.size(), 2u) << out;
  EXPECT_NE(out.find(served[0] + " via " + net_.allowed_ip_ + "\n"), std::string::npos) << out;
  EXPECT_NE(out.find(served[1] + " via " + net_.allowed_ip_ + "\n"), std::string::npos) << out;
  size_t refusal = out.find("HTTP/1.1 403 Forbidden\r\n");
  ASSERT_NE(refusal, std::string::npos) << out;
  EXPECT_GT(refusal, out.find(served[1] + " via "));
  // denied.test is allowed too, but not on a connection opened for allowed.test.
  EXPECT_NE(out.find("warren egress: request for denied.test on a connection opened for allowed.test"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("200 OK", refusal), std::string::npos) << out;
}

TEST_F(EgressTest, NothingElseLeavesAndOtherSandboxesCannotUseTheProxy) {
  auto limited = Limited({"allowed.test"});
  // Bytes that are neither TLS nor HTTP, to the allowed host's own address
  // on a port whose server answers anything: the proxy cannot name the
  // destination, so it cuts the connection.
  std::string raw = Sh(limited.id, "echo hi | nc -w 3 " + net_.allowed_ip_ + " 443; echo rc=$?").stdout_data;
  EXPECT_EQ(raw.find("tls-port"), std::string::npos) << raw;
  // An isolated sandbox reaches the internet directly but not the proxy
  // (the host's input chain drops it), so it cannot borrow another
  // sandbox's policy.
  CreateOptions o;
  o.network = "isolated";
  auto iso = MustCreate(o);
  std::string gw = iso.ip.substr(0, iso.ip.rfind('.')) + "." + std::to_string(std::stoi(iso.ip.substr(iso.ip.rfind('.') + 1)) - 1);
  std::string port = std::to_string(rt_->egress_proxy()->tcp_port());
  // The proxy itself would refuse an unknown source too, and count it: an
  // unchanged count proves the connection never reached it.
  int64_t denied_before = rt_->egress_proxy()->stats().denied;
  auto probe = Sh(iso.id, "printf 'CONNECT allowed.test:80 HTTP/1.1\\r\\n\\r\\n' | nc -w 3 " + gw + " " + port + "; echo rc=$?");
  EXPECT_EQ(probe.stdout_data.find("200"), std::string::npos) << probe.stdout_data;
  EXPECT_EQ(rt_->egress_proxy()->stats().denied, denied_before);
  // (That sandbox does have egress, directly.)
  EXPECT_EQ(Sh(iso.id, "wget -q -O - http://" + net_.allowed_ip_ + "/").stdout_data,
            "hello from " + net_.allowed_ip_ + "\n");
  // Stop and start: the policy and redirect come back.
  ASSERT_TRUE(rt_->Stop(limited.id).ok());
  ASSERT_TRUE(rt_->Start(limited.id).ok());
  EXPECT_EQ(Sh(limited.id, "wget -q -O - http://allowed.test/").stdout_data, "hello from " + net_.allowed_ip_ + "\n");
}

// SetNetwork on a running sandbox: no restart (same init), new
// connections see the new policy at once, and the record keeps it.
TEST_F(EgressTest, LivePolicyUpdateWithoutRestart) {
  auto sb = Limited({"allowed.test"});
  const pid_t init = sb.init_pid;
  const std::string hello_allowed = "hello from " + net_.allowed_ip_ + "\n";
  const std::string hello_denied = "hello from " + net_.denied_ip_ + "\n";
  EXPECT_EQ(Sh(sb.id, "wget -q -O - http://allowed.test/").stdout_data, hello_allowed);
  EXPECT_NE(Get(sb.id, "denied.test", "denied.test").find("host denied.test is not in this sandbox's allowed hosts"),
            std::string::npos);

  // Allowed -> refused (HTTP 403 from the proxy), and the reverse.
  NetworkPolicy p;
  p.network = "limited";
  p.allow_hosts = {"Denied.test"};
  auto up = rt_->SetNetwork(sb.id, p);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_EQ(up->allow_hosts, std::vector<std::string>{"denied.test"});
  EXPECT_EQ(up->init_pid, init) << "not restarted";
  EXPECT_EQ(up->ip, sb.ip);
  std::string now_denied = Get(sb.id, "allowed.test", "allowed.test");
  EXPECT_EQ(now_denied.rfind("HTTP/1.1 403 Forbidden", 0), 0u) << now_denied;
  EXPECT_NE(now_denied.find("host allowed.test is not in this sandbox's allowed hosts"), std::string::npos) << now_denied;
  EXPECT_EQ(Sh(sb.id, "wget -q -O - http://denied.test/").stdout_data, hello_denied);
  EXPECT_EQ(rt_->Get(sb.id)->allow_hosts, std::vector<std::string>{"denied.test"}) << "persisted";

  // limited -> isolated: straight out through NAT; the proxy sees nothing.
  p = NetworkPolicy{};
  p.network = "isolated";
  ASSERT_TRUE(rt_->SetNetwork(sb.id, p).ok());
  int64_t allowed_before = rt_->egress_proxy()->stats().allowed;
  EXPECT_EQ(Sh(sb.id, "wget -q -O - http://" + net_.allowed_ip_ + "/").stdout_data, hello_allowed);
  EXPECT_EQ(rt_->egress_proxy()->stats().allowed, allowed_before);

  // -> none: the veth is gone (connect fails with ENETUNREACH), loopback stays.
  p = NetworkPolicy{};
  ASSERT_TRUE(rt_->SetNetwork(sb.id, p).ok());
  EXPECT_EQ(rt_->Get(sb.id)->ip, "");
  EXPECT_EQ(Sh(sb.id, "grep -c eth0 /proc/net/dev").stdout_data, "0\n");
  auto cut = Sh(sb.id, "nc -w 3 " + net_.allowed_ip_ + " 80 </dev/null; echo rc=$?");
  EXPECT_EQ(cut.stdout_data, "rc=1\n");
  EXPECT_NE(cut.stderr_data.find("Network is unreachable"), std::string::npos) << cut.stderr_data;

  // none -> limited again, still without a restart: veth, rules, the
  // proxy's DNS in resolv.conf.
  p.network = "limited";
  p.allow_hosts = {"allowed.test"};
  auto back = rt_->SetNetwork(sb.id, p);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->init_pid, init);
  EXPECT_FALSE(back->ip.empty());
  EXPECT_EQ(Sh(sb.id, "wget -q -O - http://allowed.test/").stdout_data, hello_allowed);
  EXPECT_NE(Get(sb.id, "denied.test", "denied.test").find("host denied.test is not in this sandbox's allowed hosts"),
            std::string::npos);

  // Bad policies are refused and change nothing.
  p.allow_hosts = {"*.test"};
  EXPECT_EQ(rt_->SetNetwork(sb.id, p).status().code(), Code::kInvalidArgument);
  p.network = "isolated";
  p.allow_hosts = {"allowed.test"};
  EXPECT_EQ(rt_->SetNetwork(sb.id, p).status().code(), Code::kInvalidArgument);
  p.network = "open";
  p.allow_hosts = {};
  EXPECT_EQ(rt_->SetNetwork(sb.id, p).status().code(), Code::kInvalidArgument);
  p.network = "isolated";
  p.allow_cidrs = {"10.0.0.1/8"};
  EXPECT_EQ(rt_->SetNetwork(sb.id, p).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(rt_->SetNetwork("sbx_nosuch", NetworkPolicy{}).status().code(), Code::kNotFound);
  EXPECT_EQ(rt_->Get(sb.id)->network, "limited");
  EXPECT_EQ(Sh(sb.id, "wget -q -O - http://allowed.test/").stdout_data, hello_allowed);

  // A stopped sandbox takes the policy at its next start.
  ASSERT_TRUE(rt_->Stop(sb.id).ok());
  p = NetworkPolicy{};
  p.network = "limited";
  p.allow_hosts = {"denied.test"};
  ASSERT_TRUE(rt_->SetNetwork(sb.id, p).ok());
  ASSERT_TRUE(rt_->Start(sb.id).ok());
  EXPECT_EQ(Sh(sb.id, "wget -q -O - http://denied.test/").stdout_data, hello_denied);
  EXPECT_NE(Get(sb.id, "allowed.test", "allowed.test").find("host allowed.test is not in this sandbox's allowed hosts"),
            std::string::npos);
}

TEST_F(EgressTest, BadPoliciesRefused) {
  CreateOptions o;
  o.network = "limited";
  o.allow_hosts = {"http://allowed.test/"};
  EXPECT_EQ(rt_->Create(o).status().code(), Code::kInvalidArgument);
  o.allow_hosts = {"*.test"};
  EXPECT_EQ(rt_->Create(o).status().code(), Code::kInvalidArgument);
  o.network = "isolated";
  o.allow_hosts = {"allowed.test"};
  EXPECT_EQ(rt_->Create(o).status().code(), Code::kInvalidArgument);
}

// A snapshot build's RUN steps get the `limited` network when asked
// (BuildOptions): their hosts only, through the same proxy and its DNS; the
// step's resolv.conf and CA file are binds that never land in the
// snapshot; and after each step, succeeded or failed, no veth, nft rule,
// build record or file of its network is left.
TEST_F(EgressTest, BuildRunStepsReachTheirHostsOnlyAndLeaveNothing) {
  ASSERT_TRUE(rt_->BuildNetworkStatus().ok()) << rt_->BuildNetworkStatus().ToString();
  const std::string ca = data_dir_ + "-ca.pem";  // any readable file shows the bind
  ASSERT_TRUE(WriteStringToFile(ca, "test-ca\n").ok());
  BuildOptions bo;
  bo.allow_hosts = {"allowed.test"};
  bo.ca_bundle = ca;
  const std::string if_prefix = NetIfPrefix(prefix_);
  const std::string table = FirewallTableName(prefix_);
  size_t links_during = 0;
  bool table_during = false;
  std::vector<std::string> log;
  auto sink = [&](std::string_view l) {
    log.emplace_back(l);
    if (l == "probe-now") {  // printed by the RUN step: its network is up
      links_during = LinksWithPrefix(if_prefix).size();
      table_during = NftTableExists(table);
    }
  };
  int64_t denied_before = rt_->egress_proxy()->stats().denied;
  auto snap = rt_->BuildSnapshot("netbuild",
                                 "FROM builtin:minimal\n"
                                 "RUN wget -q -O /allowed.txt http://allowed.test/ && cat /etc/resolv.conf > /resolv.txt "
                                 "&& cat \"$SSL_CERT_FILE\" \"$NODE_EXTRA_CA_CERTS\" > /ca.txt && "
                                 "if wget -q -O - http://denied.test/ >/dev/null; then exit 3; fi && echo probe-now\n",
                                 "", bo, sink);
  ASSERT_TRUE(snap.ok()) << snap.status().ToString() << "\n" << ::testing::PrintToString(log);
  EXPECT_EQ(links_during, 1u) << "the step had its veth";
  EXPECT_TRUE(table_during) << "and its rules";
  EXPECT_NE(std::find(log.begin(), log.end(), "  network: limited to allowed.test (egress proxy)"), log.end());
  EXPECT_GT(rt_->egress_proxy()->stats().denied, denied_before) << "denied.test was refused by the proxy";
  // Nothing of the network is left once the build is done.
  EXPECT_TRUE(LinksWithPrefix(if_prefix).empty()) << "veth left after the build";
  EXPECT_FALSE(NftTableExists(table)) << "nft rules left after the build";
  EXPECT_TRUE(std::filesystem::is_empty(data_dir_ + "/builds")) << "build record or network files left";

  // What the step fetched is in the snapshot; how it fetched it is not.
  CreateOptions o;
  o.snapshot = "netbuild";
  auto sb = MustCreate(o);
  EXPECT_EQ(Sh(sb.id, "cat /allowed.txt").stdout_data, "hello from " + net_.allowed_ip_ + "\n");
  std::string resolv = Sh(sb.id, "cat /resolv.txt").stdout_data;
  EXPECT_EQ(resolv.rfind("nameserver 10.213.", 0), 0u) << "the proxy's DNS on the gateway: " << resolv;
  EXPECT_EQ(Sh(sb.id, "cat /ca.txt").stdout_data, "test-ca\ntest-ca\n");
  EXPECT_EQ(Sh(sb.id, "cat /etc/resolv.conf").stdout_data, "") << "the image's own resolv.conf is untouched";
  EXPECT_EQ(Sh(sb.id, "test -e /.warren-build-ca.pem; echo $?").stdout_data, "1\n") << "the CA mount point is gone";
  EXPECT_EQ(Sh(sb.id, "echo \"$SSL_CERT_FILE\"").stdout_data, "\n") << "the step's env is not the image's";
  ASSERT_TRUE(rt_->Delete(sb.id).ok());

  // A failing step tears its network down too.
  auto failed = rt_->BuildSnapshot("netfail", "FROM builtin:minimal\nRUN wget -q -O - http://allowed.test/ && exit 7\n",
                                   "", bo, nullptr);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("exited with 7"), std::string::npos) << failed.status().ToString();
  EXPECT_TRUE(LinksWithPrefix(if_prefix).empty()) << "veth left after a failed step";
  EXPECT_FALSE(NftTableExists(table)) << "nft rules left after a failed step";
  EXPECT_TRUE(std::filesystem::is_empty(data_dir_ + "/builds"));

  // Without BuildOptions a RUN step has no network at all (not even by
  // address), and bad options are refused before anything runs.
  auto offline = rt_->BuildSnapshot("nonet", "FROM builtin:minimal\nRUN wget -q -T 3 -O - http://" + net_.allowed_ip_ + "/\n",
                                    "", nullptr);
  EXPECT_FALSE(offline.ok());
  BuildOptions bad;
  bad.allow_hosts = {"*"};
  EXPECT_EQ(rt_->BuildSnapshot("badnet", "FROM builtin:minimal\nRUN true\n", "", bad, nullptr).status().code(),
            Code::kInvalidArgument);
  bad.allow_hosts = {"allowed.test"};
  bad.ca_bundle = data_dir_ + "-no-such-ca.pem";
  EXPECT_FALSE(rt_->BuildSnapshot("badnet", "FROM builtin:minimal\nRUN true\n", "", bad, nullptr).ok());
  unlink(ca.c_str());
}

}  // namespace
}  // namespace warren::sandbox::testing
