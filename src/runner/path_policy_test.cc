#include "runner/path_policy.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace warren::runner {
namespace {

class PathPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/warren-pp-XXXXXX";
    root_ = mkdtemp(tmpl);
    work_ = root_ + "/work";
    other_ = root_ + "/other";
    mkdir(work_.c_str(), 0755);
    mkdir(other_.c_str(), 0755);
    std::ofstream(work_ + "/f.txt") << "x";
    symlink("/etc", (work_ + "/etc").c_str());
    symlink("f.txt", (work_ + "/lnk").c_str());
    symlink((other_ + "/later.txt").c_str(), (work_ + "/dangling-out").c_str());
    symlink("missing", (work_ + "/dangling-in").c_str());
  }
  void TearDown() override { system(("rm -rf " + root_).c_str()); }
  std::string root_, work_, other_;
};

TEST(LexicalResolve, CollapsesDots) {
  EXPECT_EQ(LexicalResolve("/a/b", "c/../d/./e/"), "/a/b/d/e");
  EXPECT_EQ(LexicalResolve("/a/b", "/x/../y"), "/y");
  EXPECT_EQ(LexicalResolve("/", "../.."), "/");
  EXPECT_TRUE(IsWithin("/a", "/a/b"));
  EXPECT_FALSE(IsWithin("/a", "/ab"));
  EXPECT_TRUE(IsWithin("/", "/x"));
}

TEST_F(PathPolicyTest, ResolvesInsideAndFollowsLinks) {
  PathPolicy p(work_, {}, {});
  std::string out, err;
  ASSERT_TRUE(p.Resolve("lnk", &out, &err)) << err;
  EXPECT_EQ(out, work_ + "/f.txt");
  ASSERT_TRUE(p.Resolve("dangling-in", &out, &err)) << err;
  EXPECT_EQ(out, work_ + "/missing");
  ASSERT_TRUE(p.Resolve("new/dir/file", &out, &err));
  EXPECT_EQ(out, work_ + "/new/dir/file");
}

TEST_F(PathPolicyTest, RejectsEscapesIncludingDanglingLinks) {
  PathPolicy p(work_, {}, {});
  std::string out, err;
  EXPECT_FALSE(p.Resolve("etc/passwd", &out, &err));
  EXPECT_EQ(err, "path \"etc/passwd\" is outside the session's working directory");
  EXPECT_FALSE(p.Resolve("dangling-out", &out, &err));
  EXPECT_FALSE(p.Resolve("../other/x", &out, &err));
}

TEST_F(PathPolicyTest, AllowedAndReadOnlyRoots) {
  PathPolicy p(work_, {other_}, {other_});
  std::string out, err;
  ASSERT_TRUE(p.Resolve("dangling-out", &out, &err)) << err;
  EXPECT_EQ(out, other_ + "/later.txt");
  EXPECT_EQ(p.ReadOnlyRootFor(out), other_);
  EXPECT_EQ(p.ReadOnlyRootFor(work_ + "/f.txt"), "");
  EXPECT_FALSE(p.Resolve("/etc/hostname", &out, &err));
  EXPECT_EQ(err,
            "path \"/etc/hostname\" is outside the session's working directory and its other "
            "permitted directories");
}

TEST_F(PathPolicyTest, SymlinkLoopIsAnError) {
  symlink("b", (work_ + "/a").c_str());
  symlink("a", (work_ + "/b").c_str());
  PathPolicy p(work_, {}, {});
  std::string out, err;
  EXPECT_FALSE(p.Resolve("a", &out, &err));
  EXPECT_EQ(err, "path \"a\": too many levels of symbolic links");
  EXPECT_EQ(FsErrorMessage(EEXIST, "x"), "x: i/o error (EEXIST)");
}

}  // namespace
}  // namespace warren::runner
