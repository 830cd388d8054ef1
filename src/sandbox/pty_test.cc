#include "sandbox/pty.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ids.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

// OpenPtyIn must only ever open a devpts ptmx found inside the given root:
// planted files and symlinks (absolute or relative, to the host's ptmx or
// elsewhere) are refused.
class PtyPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = "/tmp/warren-pty-" + NewId("", 8);
    ASSERT_TRUE(MkdirAll(root_ + "/dev").ok());
  }
  void TearDown() override { (void)RemoveTree(root_); }
  std::string root_;
};

TEST_F(PtyPathTest, RegularFileIsNotAPtmx) {
  ASSERT_TRUE(MkdirAll(root_ + "/dev/pts").ok());
  ASSERT_TRUE(WriteStringToFile(root_ + "/dev/pts/ptmx", "").ok());
  auto p = OpenPtyIn(root_, 24, 80);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kFailedPrecondition) << p.status().ToString();
}

TEST_F(PtyPathTest, AbsoluteSymlinkToHostPtmxStaysInsideTheRoot) {
  ASSERT_TRUE(MkdirAll(root_ + "/dev/pts").ok());
  ASSERT_EQ(symlink("/dev/ptmx", (root_ + "/dev/pts/ptmx").c_str()), 0);
  EXPECT_FALSE(OpenPtyIn(root_, 24, 80).ok());  // <root>/dev/ptmx does not exist
}

TEST_F(PtyPathTest, SymlinkedPtsDirectoryStaysInsideTheRoot) {
  ASSERT_EQ(symlink("/dev/pts", (root_ + "/dev/pts").c_str()), 0);
  EXPECT_FALSE(OpenPtyIn(root_, 24, 80).ok());
  ASSERT_EQ(unlink((root_ + "/dev/pts").c_str()), 0);
  ASSERT_EQ(symlink("../../../../../../dev/pts", (root_ + "/dev/pts").c_str()), 0);
  EXPECT_FALSE(OpenPtyIn(root_, 24, 80).ok());
}

TEST_F(PtyPathTest, MissingRoot) { EXPECT_FALSE(OpenPtyIn(root_ + "/nope", 24, 80).ok()); }

TEST(PtySizeTest, ZeroSizeIsRejected) {
  EXPECT_EQ(SetWindowSize(-1, 0, 80).code(), Code::kInvalidArgument);
  EXPECT_EQ(SetWindowSize(-1, 24, 0).code(), Code::kInvalidArgument);
  EXPECT_FALSE(SetWindowSize(-1, 24, 80).ok());  // EBADF
}

}  // namespace
}  // namespace warren::sandbox
