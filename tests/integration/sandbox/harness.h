// Test harness for root integration tests of the sandbox runtime: a fresh
// data dir (own storage pool: loop-mounted btrfs, or overlay) and cgroup
// prefix per test, torn down afterwards with leak checks (mounts, loop
// devices, cgroups, veths and the runtime's nftables table).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "common/ids.h"
#include "sandbox/netfilter.h"
#include "sandbox/network.h"
#include "sandbox/runtime.h"
#include "sandbox/sys.h"

namespace warren::sandbox::testing {

// `s` without trailing newlines and spaces.
inline std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

inline std::string SkipReason() {
  if (geteuid() != 0) return "needs root";
  if (access("/sys/fs/cgroup/freezer", F_OK) != 0 && access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0) {
    return "no cgroup freezer";
  }
  if (access("/bin/busybox", X_OK) != 0 && access("/usr/bin/busybox", X_OK) != 0) return "busybox-static missing";
  return "";
}

// Lines of /proc/self/mountinfo whose mount point is under `dir`.
inline std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string a, b, c, d, mp;
    ls >> a >> b >> c >> d >> mp;
    if (mp == dir || mp.rfind(dir + "/", 0) == 0) out.push_back(line);
  }
  return out;
}

// Loop devices whose backing file is `file`.
inline std::vector<std::string> LoopsBacking(const std::string& file) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/block", ec)) {
    std::string name = e.path().filename();
    if (name.rfind("loop", 0) != 0) continue;
    std::ifstream in(e.path() / "loop" / "backing_file");
    std::string b;
    if (std::getline(in, b) && (b == file || b.rfind(file + " ", 0) == 0)) out.push_back(name);
  }
  return out;
}

inline std::vector<std::string> CgroupDirs(const std::string& prefix) {
  std::vector<std::string> out;
  for (const char* c : {"cpu", "memory", "pids", "freezer"}) {
    std::string d = std::string("/sys/fs/cgroup/") + c + "/" + prefix;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(d, ec)) {
      if (e.is_directory()) out.push_back(e.path());
    }
  }
  return out;
}

// Host interfaces whose name starts with `prefix` (/sys/class/net).
inline std::vector<std::string> LinksWithPrefix(const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/class/net", ec)) {
    std::string name = e.path().filename();
    if (name.rfind(prefix, 0) == 0) out.push_back(name);
  }
  return out;
}

// Whether nftables holds table `inet <table>` (asks the nft tool).
inline bool NftTableExists(const std::string& table) {
  std::string out;
  auto rc = RunCommand({"nft", "list", "table", "inet", table}, &out);
  return rc.ok() && *rc == 0;
}

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = SkipReason();
    if (!why.empty()) GTEST_SKIP() << why;
    data_dir_ = data_root_ + "/warren-it-" + NewId("", 10);
    prefix_ = "warren-it-" + NewId("", 8);
    // A /24 of the default pool per test (not .0, which the CLI tests'
    // default pool hands out first), so concurrent runtimes do not collide.
    network_pool_ = "10.213." + std::to_string(1 + std::hash<std::string>{}(prefix_) % 254) + ".0/24";
    auto rt = Open();
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    rt_ = std::move(*rt);
  }

  Result<std::unique_ptr<SandboxRuntime>> Open() {
    RuntimeOptions o;
    o.data_dir = data_dir_;
    o.pool_file_bytes = 16LL << 30;
    o.cgroup_prefix = prefix_;
    o.network_pool = network_pool_;
    o.pool_kind = pool_kind_;
    if (!mkfs_btrfs_.empty()) o.mkfs_btrfs = mkfs_btrfs_;
    o.stop_grace = std::chrono::milliseconds(1000);
    o.clock = clock_;
    o.test_hook = test_hook_;
    o.egress_proxy = egress_proxy_;
    o.egress = egress_;
    return SandboxRuntime::Open(o);
  }

  void TearDown() override {
    if (!rt_) return;
    auto list = rt_->List();
    if (list.ok()) {
      for (const auto& r : *list) EXPECT_TRUE(rt_->Delete(r.id).ok());
    }
    EXPECT_TRUE(rt_->UnmountPoolIfIdle().ok());
    rt_.reset();
    EXPECT_TRUE(MountsUnder(data_dir_).empty()) << "leaked mount under " << data_dir_;
    // The kernel frees an autoclear loop device once the last reference to
    // the pool's filesystem is gone; under load (two root suites at once)
    // the last dying sandbox process can hold it for a while after the
    // runtime's own bounded wait. A leak is a device that never goes away:
    // give the release another bounded minute before calling it one.
    for (int i = 0; i < 600 && !LoopsBacking(data_dir_ + "/pool.img").empty(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_TRUE(LoopsBacking(data_dir_ + "/pool.img").empty()) << "leaked loop device";
    EXPECT_TRUE(CgroupDirs(prefix_).empty()) << "leaked cgroup";
    EXPECT_TRUE(LinksWithPrefix(NetIfPrefix(prefix_)).empty()) << "leaked veth";
    EXPECT_FALSE(NftTableExists(FirewallTableName(prefix_))) << "leaked nft table";
    for (const char* c : {"cpu", "memory", "pids", "freezer"}) {
      rmdir((std::string("/sys/fs/cgroup/") + c + "/" + prefix_).c_str());
    }
    (void)RemoveTree(data_dir_);
  }

  // Runs `script` with /bin/sh -c in sandbox `id`.
  ExecResult Sh(const std::string& id, const std::string& script, std::chrono::milliseconds timeout =
                                                                      std::chrono::milliseconds(30000)) {
    ExecRequest req;
    req.argv = {"/bin/sh", "-c", script};
    req.timeout = timeout;
    auto r = rt_->Exec(id, req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ExecResult{};
  }

  SandboxRecord MustCreate(CreateOptions o = {}) {
    auto r = rt_->Create(o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : SandboxRecord{};
  }

  std::string data_dir_, prefix_, network_pool_;
  // Where per-test data dirs go: $WARREN_IT_DATA_ROOT (e.g. a directory
  // below a 0700 one, like /root/x) or /var/tmp. Set before SetUp.
  std::string data_root_ = getenv("WARREN_IT_DATA_ROOT") ? getenv("WARREN_IT_DATA_ROOT") : "/var/tmp";
  std::string pool_kind_;   // "" = auto (btrfs-loop here); set before SetUp
  std::string mkfs_btrfs_;  // "" = default; set before SetUp
  Clock* clock_ = nullptr;  // set before SetUp for fake time
  std::function<void(const std::string&, const std::string&)> test_hook_;  // RuntimeOptions::test_hook
  bool egress_proxy_ = false;  // RuntimeOptions::egress_proxy / egress; set before SetUp
  EgressProxyOptions egress_;
  std::unique_ptr<SandboxRuntime> rt_;
};

// RuntimeTest run once per pool kind: "" (auto: btrfs-loop on these hosts)
// and "overlay".
class PoolTest : public RuntimeTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    pool_kind_ = GetParam();
    RuntimeTest::SetUp();
  }
  bool overlay() const { return GetParam() == "overlay"; }
};

inline std::string PoolName(const ::testing::TestParamInfo<std::string>& p) {
  return p.param.empty() ? "btrfs" : p.param;
}

}  // namespace warren::sandbox::testing
