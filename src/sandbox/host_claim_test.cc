#include "sandbox/host_claim.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "common/ids.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

// The registry and the data dirs live in a private temp tree: no root needed,
// nothing shared with a real /run/warren/runtimes.
class HostClaimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = "/tmp/warren-hostclaim-" + NewId("", 8);
    reg_ = base_ + "/run/warren/runtimes";  // created by the claim
    a_ = base_ + "/a";
    b_ = base_ + "/b";
    ASSERT_TRUE(MkdirAll(a_).ok());
    ASSERT_TRUE(MkdirAll(b_).ok());
  }
  void TearDown() override { (void)RemoveTree(base_); }
  std::string base_, reg_, a_, b_;
};

TEST_F(HostClaimTest, SecondDataDirWithTheSamePrefixIsRefusedWhileTheFirstExists) {
  ASSERT_TRUE(ClaimCgroupPrefix(reg_, "warren", a_).ok());
  // The registry is root-only.
  struct stat st;
  ASSERT_EQ(stat(reg_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // The same data dir again (the CLI beside the server): fine.
  EXPECT_TRUE(ClaimCgroupPrefix(reg_, "warren", a_).ok());
  EXPECT_TRUE(ClaimCgroupPrefix(reg_, "warren", a_ + "/.").ok()) << "the same directory by another spelling";
  // Another data dir: refused, naming the holder and the way out.
  Status s = ClaimCgroupPrefix(reg_, "warren", b_);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("'warren'"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(a_), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("sandbox.cgroup_prefix"), std::string::npos) << s.ToString();
  // Another prefix for it: fine, and independent.
  EXPECT_TRUE(ClaimCgroupPrefix(reg_, "warren-b", b_).ok());
  EXPECT_EQ(ClaimCgroupPrefix(reg_, "warren-b", a_).code(), Code::kFailedPrecondition);
}

TEST_F(HostClaimTest, AClaimWhoseDataDirIsGoneIsTakenOver) {
  ASSERT_TRUE(ClaimCgroupPrefix(reg_, "p", a_).ok());
  ASSERT_EQ(ClaimCgroupPrefix(reg_, "p", b_).code(), Code::kFailedPrecondition);
  // A is gone: its cgroups and veths, if any are left, are orphans now.
  ASSERT_TRUE(RemoveTree(a_).ok());
  EXPECT_TRUE(ClaimCgroupPrefix(reg_, "p", b_).ok());
  // Now B holds it; once B is gone, a new A takes it.
  ASSERT_TRUE(MkdirAll(a_).ok());
  EXPECT_EQ(ClaimCgroupPrefix(reg_, "p", a_).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(RemoveTree(b_).ok());
  EXPECT_TRUE(ClaimCgroupPrefix(reg_, "p", a_).ok());
}

TEST_F(HostClaimTest, AMovedDataDirKeepsItsClaim) {
  ASSERT_TRUE(ClaimCgroupPrefix(reg_, "p", a_).ok());
  const std::string moved = base_ + "/moved";
  ASSERT_EQ(rename(a_.c_str(), moved.c_str()), 0);
  EXPECT_TRUE(ClaimCgroupPrefix(reg_, "p", moved).ok()) << "same device and inode";
  EXPECT_EQ(ClaimCgroupPrefix(reg_, "p", b_).code(), Code::kFailedPrecondition) << "the claim follows the new path";
}

TEST_F(HostClaimTest, APlantedLinkInTheRegistryIsRefusedWithEloop) {
  ASSERT_TRUE(ClaimCgroupPrefix(reg_, "p", a_).ok());
  // Replace the entry by a symlink to a file elsewhere: the claim must not
  // read or write through it.
  std::string entry;
  for (const auto& e : std::filesystem::directory_iterator(reg_)) entry = e.path();
  ASSERT_FALSE(entry.empty());
  ASSERT_TRUE(WriteStringToFile(base_ + "/target", "{}").ok());
  ASSERT_EQ(unlink(entry.c_str()), 0);
  ASSERT_EQ(symlink((base_ + "/target").c_str(), entry.c_str()), 0);
  Status s = ClaimCgroupPrefix(reg_, "p", b_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(std::strerror(ELOOP)), std::string::npos) << s.ToString();
  // The registry directory itself as a link: O_DIRECTORY|O_NOFOLLOW on a
  // symlink fails with ENOTDIR.
  const std::string reg2 = base_ + "/reg2";
  ASSERT_EQ(symlink(reg_.c_str(), reg2.c_str()), 0);
  s = ClaimCgroupPrefix(reg2, "q", a_);
  EXPECT_NE(s.message().find(std::strerror(ENOTDIR)), std::string::npos) << s.ToString();
}

TEST_F(HostClaimTest, AMalformedClaimIsRewritten) {
  ASSERT_TRUE(ClaimCgroupPrefix(reg_, "p", a_).ok());
  std::string entry;
  for (const auto& e : std::filesystem::directory_iterator(reg_)) entry = e.path();
  ASSERT_TRUE(WriteStringToFile(entry, "not json").ok());
  EXPECT_TRUE(ClaimCgroupPrefix(reg_, "p", b_).ok());
  EXPECT_EQ(ClaimCgroupPrefix(reg_, "p", a_).code(), Code::kFailedPrecondition);
}

TEST_F(HostClaimTest, ClaimsOfDataDirsThatAreGoneArePruned) {
  ASSERT_TRUE(ClaimCgroupPrefix(reg_, "p1", a_).ok());
  ASSERT_TRUE(ClaimCgroupPrefix(reg_, "p2", b_).ok());
  auto count = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(reg_)) n += e.path().filename().string().rfind("prefix-", 0) == 0;
    return n;
  };
  EXPECT_EQ(count(), 2);
  ASSERT_TRUE(RemoveTree(b_).ok());
  ASSERT_TRUE(ClaimCgroupPrefix(reg_, "p1", a_).ok()) << "an unchanged claim writes nothing, prunes nothing";
  EXPECT_EQ(count(), 2);
  const std::string c = base_ + "/c";
  ASSERT_TRUE(MkdirAll(c).ok());
  ASSERT_TRUE(ClaimCgroupPrefix(reg_, "p3", c).ok());
  EXPECT_EQ(count(), 2) << "p2's data dir is gone: its claim went, p1 and p3 stay";
}

}  // namespace
}  // namespace warren::sandbox
