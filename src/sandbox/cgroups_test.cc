#include "sandbox/cgroups.h"

#include <gtest/gtest.h>

#include "common/ids.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

// The backends against a fake cgroup root (plain directories): checks the
// files each one writes; kernel behaviour is covered by the root tests.
class FakeCgroupRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = "/tmp/warren-cgfake-" + NewId("", 8);
    for (const char* c : {"cpu", "memory", "pids", "freezer"}) ASSERT_TRUE(MkdirAll(root_ + "/" + c).ok());
  }
  void TearDown() override { (void)RemoveTree(root_); }
  std::string Read(const std::string& p) { return ReadFileToString(root_ + p).value_or("<missing>"); }
  std::string root_;
};

TEST_F(FakeCgroupRoot, V1WritesLimits) {
  auto cg = NewCgroupV1(root_, "warren");
  EXPECT_EQ(cg->Version(), "v1");
  ASSERT_TRUE(cg->Create("sb1", Resources{1.5, 256 << 20, 64, 0}).ok());
  EXPECT_EQ(Read("/cpu/warren/sb1/cpu.cfs_quota_us"), "150000");
  EXPECT_EQ(Read("/cpu/warren/sb1/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(Read("/memory/warren/sb1/memory.limit_in_bytes"), std::to_string(256 << 20));
  EXPECT_EQ(Read("/pids/warren/sb1/pids.max"), "64");
  EXPECT_TRUE(cg->Exists("sb1"));
  auto files = cg->ProcsFiles("sb1");
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files[3], root_ + "/freezer/warren/sb1/cgroup.procs");
  ASSERT_TRUE(cg->Update("sb1", Resources{0, 0, 0, 0}).ok());
  EXPECT_EQ(Read("/pids/warren/sb1/pids.max"), "max");
  auto names = cg->List();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"sb1"});
}

TEST_F(FakeCgroupRoot, V2WritesLimits) {
  auto cg = NewCgroupV2(root_, "warren");
  EXPECT_EQ(cg->Version(), "v2");
  ASSERT_TRUE(cg->Create("sb2", Resources{2, 1 << 30, 100, 0}).ok());
  EXPECT_EQ(Read("/warren/sb2/cpu.max"), "200000 100000");
  EXPECT_EQ(Read("/warren/sb2/memory.max"), std::to_string(1 << 30));
  EXPECT_EQ(Read("/warren/sb2/memory.swap.max"), "0");
  EXPECT_EQ(Read("/warren/sb2/memory.oom.group"), "1");
  EXPECT_EQ(Read("/warren/sb2/pids.max"), "100");
  // Freeze writes cgroup.freeze and waits for cgroup.events.
  ASSERT_TRUE(WriteStringToFile(root_ + "/warren/sb2/cgroup.events", "populated 1\nfrozen 1\n").ok());
  ASSERT_TRUE(cg->Freeze("sb2", std::chrono::milliseconds(100)).ok());
  EXPECT_EQ(Read("/warren/sb2/cgroup.freeze"), "1");
  EXPECT_TRUE(*cg->IsFrozen("sb2"));
  ASSERT_TRUE(WriteStringToFile(root_ + "/warren/sb2/cgroup.events", "populated 1\nfrozen 0\n").ok());
  EXPECT_EQ(cg->Freeze("sb2", std::chrono::milliseconds(20)).code(), Code::kTimeout);
  EXPECT_EQ(Read("/warren/sb2/cgroup.freeze"), "0");  // thawed again after the timeout
}

TEST_F(FakeCgroupRoot, PidsCoverSubCgroups) {
  // A shell session's cgroup lives below its sandbox's; both backends list
  // the whole subtree (what KillAll and the stop grace loop rely on).
  for (auto* make : {&NewCgroupV1, &NewCgroupV2}) {
    auto cg = (*make)(root_, "warren");
    ASSERT_TRUE(cg->Create("sb", Resources{}).ok());
    ASSERT_TRUE(cg->Create("sb/session-a", Resources{}).ok());
    bool v1 = cg->Version() == "v1";
    std::string base = root_ + (v1 ? "/freezer" : "") + "/warren/sb";
    ASSERT_TRUE(WriteStringToFile(base + "/cgroup.procs", "10\n").ok());
    ASSERT_TRUE(WriteStringToFile(base + "/session-a/cgroup.procs", "11\n12\n").ok());
    auto all = cg->Pids("sb");
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    EXPECT_EQ(*all, (std::vector<pid_t>{11, 12, 10}));  // children first
    auto sub = cg->Pids("sb/session-a");
    ASSERT_TRUE(sub.ok());
    EXPECT_EQ(*sub, (std::vector<pid_t>{11, 12}));
    (void)RemoveTree(root_ + "/warren");
    (void)RemoveTree(root_ + "/freezer/warren");
  }
}

}  // namespace
}  // namespace warren::sandbox
