// Root integration tests of the `isolated` network policy. They only reach
// addresses on this machine or in namespaces they create: a test netns
// ("internet") holds a public-looking TEST-NET-2 address plus a private
// 10.x, a 192.168.x and the cloud metadata address 169.254.169.254, all
// routed from the host over a test veth, with a TCP server that tells each
// client the source address it saw.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/log.h"
#include "harness.h"

namespace warren::sandbox::testing {
namespace {

using std::chrono::milliseconds;

int Sh0(const std::string& cmd) {
  auto rc = RunCommand({"/bin/sh", "-c", cmd});
  return rc.ok() ? *rc : -1;
}

// A TCP server on 0.0.0.0:`port` (0 = any) in network namespace `netns`
// ("" = the host's) that answers every client "peer=<source address>\n"
// and closes.
class PeerServer final {
 public:
  PeerServer() = default;
  ~PeerServer() { Stop(); }
  PeerServer(const PeerServer&) = delete;
  PeerServer& operator=(const PeerServer&) = delete;

  // Returns once the socket listens; false on failure.
  bool Start(const std::string& netns, int port) {
    std::atomic<int> ready{0};
    thread_ = std::thread([this, &ready, netns, port] { Serve(netns, port, &ready); });
    while (ready.load() == 0) std::this_thread::sleep_for(milliseconds(1));
    return ready.load() == 1;
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }

 private:
  void Serve(const std::string& netns, int port, std::atomic<int>* ready) {
    if (!netns.empty()) {
      UniqueFd ns(open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC));
      if (!ns || setns(ns.get(), CLONE_NEWNET) != 0) {
        ready->store(2);
        return;
      }
    }
    UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    socklen_t alen = sizeof(a);
    if (bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(s.get(), 16) != 0 ||
        getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &alen) != 0) {
      ready->store(2);
      return;
    }
    port_ = ntohs(a.sin_port);
    ready->store(1);
    while (!stop_) {
      pollfd p{s.get(), POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      sockaddr_in peer{};
      socklen_t len = sizeof(peer);
      UniqueFd c(accept4(s.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
      if (!c) continue;
      char buf[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &peer.sin_addr, buf, sizeof(buf));
      std::string msg = std::string("peer=") + buf + "\n";
      (void)WriteAll(c.get(), msg.data(), msg.size());
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> port_{0};
  std::thread thread_;
};

// A network namespace with one veth to the host and a PeerServer on
// 0.0.0.0:8080 inside.
class TestNet final {
 public:
  TestNet() {
    std::mt19937 rng(std::random_device{}());
    char hex[8];
    snprintf(hex, sizeof(hex), "%06x", static_cast<unsigned>(rng() & 0xffffff));
    name_ = std::string("wt") + hex;
    k_ = static_cast<int>(rng() % 30) + 1;  // 1..30; egress_test (run alongside by ctest -j) takes 31..60
    host_ip_ = "198.51.100." + std::to_string(4 * k_ + 1);
    public_ip_ = "198.51.100." + std::to_string(4 * k_ + 2);
    private10_ = "10.99." + std::to_string(k_) + ".2";
    private192_ = "192.168." + std::to_string(200 + k_ % 50) + ".2";
  }
  ~TestNet() { Down(); }
  TestNet(const TestNet&) = delete;
  TestNet& operator=(const TestNet&) = delete;

  bool Up() {
    std::string h = name_ + "h", p = name_ + "p", ns = "ip netns exec " + name_ + " ";
    std::string cmds[] = {
        "ip netns add " + name_,
        "ip link add " + h + " type veth peer name " + p,
        "ip link set " + p + " netns " + name_,
        "ip addr add " + host_ip_ + "/30 dev " + h,
        "ip link set " + h + " up",
        // An uplink like any other: forwarding on so NATed replies can pass.
        "echo 1 > /proc/sys/net/ipv4/conf/" + h + "/forwarding",
        ns + "ip addr add " + public_ip_ + "/30 dev " + p,
        ns + "ip addr add " + private10_ + "/32 dev " + p,
        ns + "ip addr add " + private192_ + "/32 dev " + p,
        ns + "ip addr add 169.254.169.254/32 dev " + p,
        ns + "ip link set lo up",
        ns + "ip link set " + p + " up",
        ns + "ip route add default via " + host_ip_,
        "ip route add " + private10_ + "/32 dev " + h,
        "ip route add " + private192_ + "/32 dev " + h,
        "ip route replace 169.254.169.254/32 dev " + h,
    };
    up_ = true;
    for (const auto& c : cmds) {
      if (Sh0(c) != 0) {
        ADD_FAILURE() << "setup failed: " << c;
        return false;
      }
    }
    return server_.Start(name_, 8080);
  }

  void Down() {
    server_.Stop();
    if (!up_) return;
    Sh0("ip route del 169.254.169.254/32 dev " + name_ + "h 2>/dev/null");
    Sh0("ip link del " + name_ + "h 2>/dev/null");
    Sh0("ip netns del " + name_ + " 2>/dev/null");
    up_ = false;
  }

  const std::string& host_ip() const { return host_ip_; }
  const std::string& public_ip() const { return public_ip_; }
  const std::string& private10() const { return private10_; }
  const std::string& private192() const { return private192_; }
  std::string private10_cidr() const { return "10.99." + std::to_string(k_) + ".0/24"; }

 private:
  std::string name_, host_ip_, public_ip_, private10_, private192_;
  int k_ = 0;
  bool up_ = false;
  PeerServer server_;
};

// Connects from the host (its own netns) to ip:port; true on success.
bool HostConnects(const std::string& ip, int port) {
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{s.get(), POLLOUT, 0};
  if (poll(&p, 1, 3000) != 1) return false;
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err == 0;
}

class NetworkTest : public RuntimeTest {
 protected:
  void SetUp() override {
    RuntimeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (!rt_->features().network_isolated) GTEST_SKIP() << "isolated network unavailable: " << rt_->features().network_reason;
    if (access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0) GTEST_SKIP() << "iproute2 missing";
  }

  SandboxRecord Isolated(std::vector<std::string> allow = {}, bool block_all = false) {
    CreateOptions o;
    o.network = "isolated";
    o.allow_cidrs = std::move(allow);
    o.block_all = block_all;
    return MustCreate(o);
  }

  // What the test server answered the sandbox ("" when unreachable).
  std::string Fetch(const std::string& id, const std::string& ip, int port = 8080) {
    auto r = Sh(id, "nc -w 2 " + ip + " " + std::to_string(port) + " </dev/null");
    return Trim(r.stdout_data);
  }
  // A fetch that must get `want`: under load the first connection over a
  // fresh veth can take longer than nc's 2 s, so it is retried (bounded)
  // until the answer arrives. Only positive checks use it: a blocked
  // destination never answers, so a retry cannot turn a block into a pass.
  std::string FetchExpect(const std::string& id, const std::string& ip, const std::string& want, int port = 8080) {
    std::string got;
    for (int i = 0; i < 10 && got != want; ++i) got = Fetch(id, ip, port);
    return got;
  }

  std::string IfName(const SandboxRecord& r) {
    char hex[16];
    snprintf(hex, sizeof(hex), "%x", static_cast<unsigned>(r.id_slot));
    return NetIfPrefix(prefix_) + hex;
  }
};

TEST_F(NetworkTest, NoneHasOnlyLoopback) {
  auto sb = MustCreate();
  EXPECT_EQ(Trim(Sh(sb.id, "ls /sys/class/net").stdout_data), "lo");
  EXPECT_EQ(sb.ip, "");
  EXPECT_TRUE(LinksWithPrefix(NetIfPrefix(prefix_)).empty());
}

TEST_F(NetworkTest, IsolatedReachesInternetThroughNat) {
  TestNet net;
  ASSERT_TRUE(net.Up());
  auto sb = Isolated();
  ASSERT_FALSE(sb.ip.empty());
  EXPECT_EQ(Trim(Sh(sb.id, "ls /sys/class/net | tr '\\n' ' '").stdout_data), "eth0 lo");
  EXPECT_NE(Sh(sb.id, "ip -4 addr show eth0 2>/dev/null || cat /proc/net/fib_trie").stdout_data.find(sb.ip),
            std::string::npos);
  // The server sees the host's address on that link: NAT, not the sandbox's.
  EXPECT_EQ(FetchExpect(sb.id, net.public_ip(), "peer=" + net.host_ip()), "peer=" + net.host_ip());
  EXPECT_TRUE(std::filesystem::exists("/sys/class/net/" + IfName(sb)));
  EXPECT_TRUE(NftTableExists(FirewallTableName(prefix_)));
}

TEST_F(NetworkTest, HostPrivateAndMetadataBlocked) {
  TestNet net;
  ASSERT_TRUE(net.Up());
  // A server on the host itself, on every host address.
  PeerServer host;
  ASSERT_TRUE(host.Start("", 0));
  ASSERT_TRUE(HostConnects(net.host_ip(), host.port()));  // the listener works

  auto sb = Isolated();
  ASSERT_EQ(FetchExpect(sb.id, net.public_ip(), "peer=" + net.host_ip()), "peer=" + net.host_ip());  // control: egress works
  std::string gw = FormatIpv4(*ParseIpv4(sb.ip) - 1);
  std::vector<std::string> host_ips = {net.host_ip(), gw};
  std::string out;
  ASSERT_EQ(*RunCommand({"ip", "-4", "-o", "addr", "show", "scope", "global"}, &out), 0);
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    auto inet = line.find(" inet ");
    if (inet != std::string::npos) host_ips.push_back(line.substr(inet + 6, line.find('/', inet) - inet - 6));
  }
  for (const auto& ip : host_ips) EXPECT_EQ(Fetch(sb.id, ip, host.port()), "") << "host reachable at " << ip;
  EXPECT_EQ(Fetch(sb.id, net.private10()), "") << "10/8 reachable";
  EXPECT_EQ(Fetch(sb.id, net.private192()), "") << "192.168/16 reachable";
  EXPECT_EQ(Fetch(sb.id, "169.254.169.254"), "") << "metadata reachable";
  // The same addresses are reachable from the host: the blocks are the policy.
  EXPECT_TRUE(HostConnects(net.private10(), 8080));
  EXPECT_TRUE(HostConnects("169.254.169.254", 8080));
}

TEST_F(NetworkTest, AllowCidrsOpenExactlyTheListedRange) {
  TestNet net;
  ASSERT_TRUE(net.Up());
  auto sb = Isolated({net.private10_cidr()});
  EXPECT_EQ(FetchExpect(sb.id, net.private10(), "peer=" + net.host_ip()), "peer=" + net.host_ip());
  EXPECT_EQ(Fetch(sb.id, net.private192()), "");
  EXPECT_EQ(Fetch(sb.id, "169.254.169.254"), "");
  EXPECT_EQ(FetchExpect(sb.id, net.public_ip(), "peer=" + net.host_ip()), "peer=" + net.host_ip());
  // block_all: only the allow list.
  auto locked = Isolated({net.private10_cidr()}, /*block_all=*/true);
  EXPECT_EQ(FetchExpect(locked.id, net.private10(), "peer=" + net.host_ip()), "peer=" + net.host_ip());
  EXPECT_EQ(Fetch(locked.id, net.public_ip()), "");
}

TEST_F(NetworkTest, SandboxesCannotReachEachOther) {
  auto a = Isolated({"10.0.0.0/8"});  // even with the pool allowed
  auto b = Isolated({"10.0.0.0/8"});
  ASSERT_NE(a.ip, b.ip);
  // The exec returns once the listener is up (9000 = 0x2328, state 0A =
  // LISTEN), not after a fixed sleep that a loaded machine can outlast.
  Sh(a.id, "(echo from-a | nc -l -p 9000) >/dev/null 2>&1 & "
           "until cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ':2328 [0-9A-F]*:0000 0A'; do sleep 0.01; done");
  EXPECT_EQ(Fetch(b.id, a.ip, 9000), "");
  // Control: the listener is there (the host may connect to sandboxes).
  EXPECT_TRUE(HostConnects(a.ip, 9000));
}

TEST_F(NetworkTest, StopStartAndForkKeepWorking) {
  TestNet net;
  ASSERT_TRUE(net.Up());
  auto sb = Isolated();
  std::string ifname = IfName(sb);
  ASSERT_TRUE(rt_->Stop(sb.id).ok());
  EXPECT_FALSE(std::filesystem::exists("/sys/class/net/" + ifname));
  EXPECT_FALSE(NftTableExists(FirewallTableName(prefix_)));  // last isolated sandbox gone
  EXPECT_EQ(rt_->Get(sb.id)->ip, "");
  auto started = rt_->Start(sb.id);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  EXPECT_EQ(started->ip, sb.ip);
  EXPECT_EQ(FetchExpect(sb.id, net.public_ip(), "peer=" + net.host_ip()), "peer=" + net.host_ip());

  auto kids = rt_->Fork(sb.id, 2);
  ASSERT_TRUE(kids.ok()) << kids.status().ToString();
  ASSERT_EQ(kids->size(), 2u);
  std::set<std::string> ips{sb.ip};
  for (const auto& k : *kids) {
    EXPECT_EQ(k.network, "isolated");
    EXPECT_TRUE(ips.insert(k.ip).second) << "fork child reuses " << k.ip;
    EXPECT_EQ(FetchExpect(k.id, net.public_ip(), "peer=" + net.host_ip()), "peer=" + net.host_ip());
    EXPECT_EQ(Fetch(k.id, net.private10()), "");
  }
  EXPECT_EQ(FetchExpect(sb.id, net.public_ip(), "peer=" + net.host_ip()), "peer=" + net.host_ip());
  EXPECT_EQ(LinksWithPrefix(NetIfPrefix(prefix_)).size(), 3u);
  // Deleting the parent leaves the children's links.
  ASSERT_TRUE(rt_->Delete(sb.id).ok());
  EXPECT_EQ(LinksWithPrefix(NetIfPrefix(prefix_)).size(), 2u);
  EXPECT_EQ(FetchExpect((*kids)[0].id, net.public_ip(), "peer=" + net.host_ip()), "peer=" + net.host_ip());
}

TEST_F(NetworkTest, DeleteAndRecoverLeaveNothing) {
  auto a = Isolated();
  auto b = Isolated();
  ASSERT_TRUE(rt_->Delete(a.id).ok());
  EXPECT_EQ(LinksWithPrefix(NetIfPrefix(prefix_)).size(), 1u);
  ASSERT_TRUE(rt_->Delete(b.id).ok());
  EXPECT_TRUE(LinksWithPrefix(NetIfPrefix(prefix_)).empty());
  EXPECT_FALSE(NftTableExists(FirewallTableName(prefix_)));

  // Crash 1: the runtime died mid-start (record still "starting", init and
  // veth alive). Crash 2: a record lost while its sandbox ran. Plus a stray
  // veth under the runtime's prefix.
  auto c = Isolated();
  auto d = Isolated();
  auto e = Isolated();
  {
    auto j = JsonDir(data_dir_ + "/sandboxes").Get(c.id);
    ASSERT_TRUE(j.ok());
    (*j)["state"] = "starting";
    ASSERT_TRUE(JsonDir(data_dir_ + "/sandboxes").Put(c.id, *j).ok());
  }
  ASSERT_TRUE(JsonDir(data_dir_ + "/sandboxes").Remove(d.id).ok());
  std::string stray = NetIfPrefix(prefix_) + "fff";
  ASSERT_EQ(Sh0("ip link add " + stray + " type veth peer name " + stray + "p"), 0);
  rt_.reset();  // the runtime's view is gone; the kernel objects are not
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  rt_ = std::move(*reopened);
  auto links = LinksWithPrefix(NetIfPrefix(prefix_));
  ASSERT_EQ(links.size(), 1u);  // only the adopted sandbox e
  EXPECT_EQ(links[0], IfName(e));
  EXPECT_EQ(rt_->Get(c.id)->state, SandboxState::kStopped);
  EXPECT_EQ(Sh(e.id, "ls /sys/class/net | tr '\\n' ' '").stdout_data, "eth0 lo ");
  std::string out;
  ASSERT_EQ(*RunCommand({"nft", "list", "table", "inet", FirewallTableName(prefix_)}, &out), 0);
  EXPECT_NE(out.find("sbx_" + std::to_string(e.id_slot)), std::string::npos);
  EXPECT_EQ(out.find("sbx_" + std::to_string(c.id_slot) + " "), std::string::npos) << out;
  EXPECT_EQ(out.find("sbx_" + std::to_string(d.id_slot) + " "), std::string::npos) << out;
  // c can be started again on its old slot.
  auto restarted = rt_->Start(c.id);
  ASSERT_TRUE(restarted.ok()) << restarted.status().ToString();
  EXPECT_EQ(restarted->ip, c.ip);
  // TearDown deletes the rest and checks for leaks.
}

TEST_F(NetworkTest, FailedSetupLeavesNothingRunning) {
  // A pool with room for one /30: slot 0 fits, slot 1 does not.
  rt_.reset();
  auto cfg = JsonDir(data_dir_).Get("config");
  ASSERT_TRUE(cfg.ok());
  network_pool_ = (*cfg)["network_pool"].get<std::string>();
  network_pool_ = network_pool_.substr(0, network_pool_.rfind('/')) + "/30";
  (*cfg)["network_pool"] = network_pool_;
  ASSERT_TRUE(JsonDir(data_dir_).Put("config", *cfg).ok());
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  rt_ = std::move(*reopened);
  EXPECT_EQ(rt_->options().network_pool, network_pool_);

  auto first = Isolated();
  EXPECT_EQ(first.id_slot, 0);
  CreateOptions o;
  o.network = "isolated";
  auto second = rt_->Create(o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kResourceExhausted) << second.status().ToString();
  auto list = rt_->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  for (const auto& r : *list) {
    if (r.id == first.id) continue;
    EXPECT_EQ(r.state, SandboxState::kStopped);
    EXPECT_NE(r.error.find("no room"), std::string::npos) << r.error;
    EXPECT_EQ(r.ip, "");
  }
  // Only the first sandbox's link and cgroup exist; it still works.
  EXPECT_EQ(LinksWithPrefix(NetIfPrefix(prefix_)), std::vector<std::string>{IfName(first)});
  EXPECT_EQ(CgroupDirs(prefix_).size(), 4u);
  EXPECT_EQ(Trim(Sh(first.id, "ls /sys/class/net | tr '\\n' ' '").stdout_data), "eth0 lo");
}

TEST_F(NetworkTest, BadInputIsRejected) {
  auto bad = [&](CreateOptions o) {
    auto r = rt_->Create(o);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().ToString();
  };
  CreateOptions o;
  o.network = "bridge";
  EXPECT_NE(bad(o).find("unknown network policy"), std::string::npos);
  o = {};
  o.allow_cidrs = {"8.8.8.0/24"};
  EXPECT_NE(bad(o).find("need network 'isolated'"), std::string::npos);
  o = {};
  o.network = "isolated";
  for (std::string c : {"10.1.2.3/24", "10.0.0.0/33", "300.1.1.1/32", "10.0.0/8", "::1/128", "", "1.2.3.4/"}) {
    o.allow_cidrs = {c};
    EXPECT_FALSE(rt_->Create(o).ok()) << c;
  }
  EXPECT_NE(bad([&] { o.allow_cidrs = {"10.1.2.3/24"}; return o; }()).find("host bits"), std::string::npos);
  o.allow_cidrs.clear();
  for (int i = 0; i < 11; ++i) o.allow_cidrs.push_back("203.0.113." + std::to_string(i) + "/32");
  EXPECT_NE(bad(o).find("at most 10"), std::string::npos);
  o.allow_cidrs.clear();
  o.dns = {"not-an-ip"};
  EXPECT_FALSE(rt_->Create(o).ok());
  auto list = rt_->List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_F(NetworkTest, DnsIsWrittenOnlyWhenAsked) {
  auto plain = Isolated();
  std::string before = Sh(plain.id, "cat /etc/resolv.conf 2>/dev/null").stdout_data;
  EXPECT_EQ(before.find("nameserver 192.0.2.53"), std::string::npos);
  CreateOptions o;
  o.network = "isolated";
  o.dns = {"192.0.2.53", "198.51.100.53"};
  auto sb = MustCreate(o);
  EXPECT_EQ(Sh(sb.id, "cat /etc/resolv.conf").stdout_data, "nameserver 192.0.2.53\nnameserver 198.51.100.53\n");
}

// Not a pass/fail check: prints what the isolated policy adds to Start, for
// the first isolated sandbox (creates the table) and with another one
// already running (the common case: one chain/set/map entry added).
TEST_F(NetworkTest, SetupCost) {
  auto time_starts = [&](const std::string& network) {
    CreateOptions o;
    o.network = network;
    o.start = false;
    auto sb = MustCreate(o);
    std::vector<double> ms;
    for (int i = 0; i < 7; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      EXPECT_TRUE(rt_->Start(sb.id).ok());
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      EXPECT_TRUE(rt_->Stop(sb.id, true).ok());
    }
    std::sort(ms.begin(), ms.end());
    EXPECT_TRUE(rt_->Delete(sb.id).ok());
    return ms[ms.size() / 2];
  };
  double none = time_starts("none");
  log::SetLevel(log::Level::kDebug);  // per-phase timings of the network setup
  double first = time_starts("isolated");
  auto other = Isolated();
  double steady = time_starts("isolated");
  log::SetLevel(log::Level::kInfo);
  printf("start median: none %.1f ms, isolated first %.1f ms (+%.1f), isolated next %.1f ms (+%.1f)\n", none, first,
         first - none, steady, steady - none);
  RecordProperty("start_none_ms", std::to_string(none));
  RecordProperty("start_isolated_first_ms", std::to_string(first));
  RecordProperty("start_isolated_next_ms", std::to_string(steady));
}

}  // namespace
}  // namespace warren::sandbox::testing
