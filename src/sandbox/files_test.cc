#include "sandbox/files.h"

#include <gtest/gtest.h>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ids.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = "/tmp/warren-files-" + NewId("", 8);
    root_ = base_ + "/root";
    ASSERT_TRUE(MkdirAll(root_ + "/etc").ok());
    ASSERT_TRUE(WriteStringToFile(base_ + "/outside", "secret").ok());
    ASSERT_TRUE(WriteStringToFile(root_ + "/etc/inside", "inside").ok());
    ASSERT_EQ(symlink((base_ + "/outside").c_str(), (root_ + "/abs").c_str()), 0);
    ASSERT_EQ(symlink("../../../../outside", (root_ + "/rel").c_str()), 0);
    ASSERT_EQ(symlink("/etc/inside", (root_ + "/good").c_str()), 0);
    auto fs = RootFs::Open(root_);
    ASSERT_TRUE(fs.ok());
    fs_ = std::make_unique<RootFs>(std::move(*fs));
  }
  void TearDown() override { (void)RemoveTree(base_); }
  std::string base_, root_;
  std::unique_ptr<RootFs> fs_;
};

TEST_F(FilesTest, SymlinksResolveInsideTheRoot) {
  EXPECT_EQ(*fs_->ReadFile("/good"), "inside");  // absolute link resolved against the root
  EXPECT_EQ(fs_->ReadFile("/abs").status().code(), Code::kNotFound);
  EXPECT_EQ(fs_->ReadFile("/rel").status().code(), Code::kNotFound);
  EXPECT_EQ(fs_->ReadFile("../outside").status().code(), Code::kNotFound);
  // Resolves to <root><base>/outside, whose parent does not exist inside.
  EXPECT_EQ(fs_->WriteFile("/abs", "x").code(), Code::kNotFound);
  EXPECT_EQ(*ReadFileToString(base_ + "/outside"), "secret");
}

// ReplaceFileNoFollow (tool outputs the host leaves in a sandbox): a
// directory symlink planted on the way fails with ELOOP and writes nothing
// anywhere; a symlink planted at the file's own name is replaced by the new
// file, its target untouched; a ".." never leaves the root.
TEST_F(FilesTest, ReplaceFileNoFollowRefusesPlantedLinks) {
  ASSERT_TRUE(MkdirAll(base_ + "/hostdir").ok());
  ASSERT_EQ(symlink((base_ + "/hostdir").c_str(), (root_ + "/tmp").c_str()), 0);  // /tmp -> a host dir
  Status viaDir = fs_->ReplaceFileNoFollow("/tmp/warren/mcp/a.txt", "payload");
  EXPECT_FALSE(viaDir.ok());
  EXPECT_NE(viaDir.message().find(strerror(ELOOP)), std::string::npos) << viaDir.ToString();
  struct stat st;
  EXPECT_NE(lstat((base_ + "/hostdir/warren").c_str(), &st), 0) << "nothing created through the link";
  // A link inside the root to a directory inside the root is refused too.
  ASSERT_EQ(unlink((root_ + "/tmp").c_str()), 0);
  ASSERT_EQ(symlink("/etc", (root_ + "/tmp").c_str()), 0);
  Status inside = fs_->ReplaceFileNoFollow("/tmp/x.txt", "payload");
  EXPECT_NE(inside.message().find(strerror(ELOOP)), std::string::npos) << inside.ToString();
  ASSERT_EQ(unlink((root_ + "/tmp").c_str()), 0);
  // A symlink at the final name (to a host file): replaced, never followed.
  ASSERT_TRUE(MkdirAll(root_ + "/tmp/warren/mcp").ok());
  ASSERT_EQ(symlink((base_ + "/outside").c_str(), (root_ + "/tmp/warren/mcp/b.txt").c_str()), 0);
  ASSERT_TRUE(fs_->ReplaceFileNoFollow("/tmp/warren/mcp/b.txt", "new output", 0644).ok());
  EXPECT_EQ(*ReadFileToString(base_ + "/outside"), "secret");
  ASSERT_EQ(lstat((root_ + "/tmp/warren/mcp/b.txt").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(*ReadFileToString(root_ + "/tmp/warren/mcp/b.txt"), "new output");
  // Writing again replaces the file (a call made again after a crash).
  ASSERT_TRUE(fs_->ReplaceFileNoFollow("/tmp/warren/mcp/b.txt", "again").ok());
  EXPECT_EQ(*ReadFileToString(root_ + "/tmp/warren/mcp/b.txt"), "again");
  // Missing directories are created with the mode asked for; no temp file is left.
  ASSERT_TRUE(fs_->ReplaceFileNoFollow("/var/out/c.txt", "c", 0600, 0711).ok());
  ASSERT_EQ(stat((root_ + "/var/out").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  auto names = fs_->List("/var/out");
  ASSERT_TRUE(names.ok());
  ASSERT_EQ(names->size(), 1u);
  EXPECT_EQ((*names)[0].name, "c.txt");
  EXPECT_FALSE(fs_->ReplaceFileNoFollow("/../outside", "x").ok());
  EXPECT_EQ(*ReadFileToString(base_ + "/outside"), "secret");
}

TEST_F(FilesTest, CrudOperations) {
  ASSERT_TRUE(fs_->Mkdir("/a/b/c", true).ok());
  EXPECT_EQ(fs_->Mkdir("/a", false).code(), Code::kConflict);
  ASSERT_TRUE(fs_->WriteFile("/a/b/c/f.txt", "data", 0600).ok());
  auto st = fs_->Stat("/a/b/c/f.txt");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->type, "file");
  EXPECT_EQ(st->size, 4);
  EXPECT_EQ(st->mode, 0600u);
  ASSERT_TRUE(fs_->Chmod("/a/b/c/f.txt", 0644).ok());
  EXPECT_EQ(fs_->Stat("/a/b/c/f.txt")->mode, 0644u);
  ASSERT_TRUE(fs_->Move("/a/b/c/f.txt", "/a/g.txt").ok());
  auto list = fs_->List("/a");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "b");
  EXPECT_EQ((*list)[1].name, "g.txt");
  auto link = fs_->Stat("/abs");
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->type, "symlink");
  EXPECT_EQ(fs_->Delete("/a", false).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(fs_->Delete("/a", true).ok());
  EXPECT_EQ(fs_->Stat("/a").status().code(), Code::kNotFound);
  EXPECT_EQ(fs_->ReadFile("/etc").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(fs_->ReadFile("/etc/inside", 3).status().code(), Code::kTooLarge);
  EXPECT_FALSE(fs_->Delete("/", true).ok());
}

TEST_F(FilesTest, DeleteDoesNotFollowLinks) {
  ASSERT_TRUE(fs_->Delete("/abs", false).ok());
  EXPECT_TRUE(ReadFileToString(base_ + "/outside").ok());
  ASSERT_EQ(symlink(base_.c_str(), (root_ + "/dirlink").c_str()), 0);
  ASSERT_TRUE(fs_->Delete("/dirlink", true).ok());
  EXPECT_TRUE(ReadFileToString(base_ + "/outside").ok());
}

}  // namespace
}  // namespace warren::sandbox
