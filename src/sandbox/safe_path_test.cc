#include "sandbox/safe_path.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <atomic>

#include "common/ids.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

bool HasErrno(const Status& s, int err) { return s.message().find(std::strerror(err)) != std::string::npos; }

bool Exists(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

class SafePathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = "/tmp/warren-safepath-" + NewId("", 8);
    tree_ = base_ + "/tree";
    outside_ = base_ + "/outside";
    ASSERT_TRUE(MkdirAll(tree_ + "/a/b").ok());
    ASSERT_TRUE(MkdirAll(outside_).ok());
    ASSERT_TRUE(WriteStringToFile(outside_ + "/secret", "host").ok());
    dir_ = UniqueFd(open(tree_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir_);
  }
  void TearDown() override {
    dir_.reset();
    (void)RemoveTree(base_);
  }
  std::string base_, tree_, outside_;
  UniqueFd dir_;
};

TEST_F(SafePathTest, SplitRelativeRejectsEscapes) {
  EXPECT_FALSE(SplitRelative("../x").ok());
  EXPECT_FALSE(SplitRelative("a/../../x").ok());
  EXPECT_FALSE(SplitRelative("/etc").ok());
  EXPECT_FALSE(SplitRelative(std::string("a\0b", 3)).ok());
  auto ok = SplitRelative("a//./b/");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, (std::vector<std::string>{"a", "b"}));
}

TEST_F(SafePathTest, OpenBeneathRefusesEverySymlink) {
  // The link would resolve (its target exists), so only the no-follow rule
  // can stop it: ELOOP.
  ASSERT_EQ(symlink(outside_.c_str(), (tree_ + "/abs").c_str()), 0);
  ASSERT_EQ(symlink("a", (tree_ + "/inside").c_str()), 0);  // even one that stays inside
  auto abs = OpenBeneath(dir_.get(), "abs");
  ASSERT_FALSE(abs.ok());
  EXPECT_TRUE(HasErrno(abs.status(), ELOOP)) << abs.status().ToString();
  auto in = OpenBeneath(dir_.get(), "inside/b");
  ASSERT_FALSE(in.ok());
  EXPECT_TRUE(HasErrno(in.status(), ELOOP)) << in.status().ToString();
  EXPECT_TRUE(OpenBeneath(dir_.get(), "a/b").ok());
}

TEST_F(SafePathTest, OpenBeneathRefusesMagicLinksAndMounts) {
  // /proc/self/root is a magic link to "/": refused (ELOOP/EXDEV) rather
  // than followed out of the tree.
  UniqueFd proc(open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(proc);
  auto r = OpenBeneath(proc.get(), "root");
  EXPECT_FALSE(r.ok());
  // "/" -> "proc" crosses onto another mount: EXDEV.
  UniqueFd root(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  auto x = OpenBeneath(root.get(), "proc/self");
  ASSERT_FALSE(x.ok());
  EXPECT_TRUE(HasErrno(x.status(), EXDEV)) << x.status().ToString();
}

TEST_F(SafePathTest, MkdirBeneathCreatesWithTheModeAndStopsAtSymlinks) {
  mode_t old = umask(077);  // the requested mode wins over the umask
  auto d = MkdirBeneath(dir_.get(), "new/deep/dir", 0751);
  umask(old);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  struct stat st, top;
  ASSERT_EQ(stat((tree_ + "/new/deep/dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0751u);
  ASSERT_EQ(stat((tree_ + "/new").c_str(), &top), 0);
  EXPECT_EQ(top.st_mode & 07777, 0751u);
  // The returned fd is the directory itself.
  struct stat fst;
  ASSERT_EQ(fstat(d->get(), &fst), 0);
  EXPECT_EQ(fst.st_ino, st.st_ino);

  // A symlink component is never followed, and nothing is created behind it.
  ASSERT_EQ(symlink(outside_.c_str(), (tree_ + "/link").c_str()), 0);
  auto bad = MkdirBeneath(dir_.get(), "link/created", 0755);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(HasErrno(bad.status(), ELOOP)) << bad.status().ToString();
  EXPECT_FALSE(Exists(outside_ + "/created"));
  EXPECT_FALSE(MkdirBeneath(dir_.get(), "a/../../outside", 0755).ok());
}

TEST_F(SafePathTest, MkdirBeneathLastComponentSymlinkIsRefused) {
  ASSERT_EQ(symlink(outside_.c_str(), (tree_ + "/last").c_str()), 0);
  auto bad = MkdirBeneath(dir_.get(), "last", 0755);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(HasErrno(bad.status(), ELOOP)) << bad.status().ToString();
}

TEST_F(SafePathTest, RemoveTreeAtDoesNotFollowLinks) {
  ASSERT_EQ(symlink(outside_.c_str(), (tree_ + "/a/b/tohost").c_str()), 0);
  ASSERT_EQ(symlink((outside_ + "/secret").c_str(), (tree_ + "/a/filelink").c_str()), 0);
  ASSERT_EQ(link((outside_ + "/secret").c_str(), (tree_ + "/a/hard").c_str()), 0);
  ASSERT_TRUE(WriteStringToFile(tree_ + "/a/b/f", "x").ok());
  UniqueFd base(open(base_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(RemoveTreeAt(base.get(), "tree").ok());
  EXPECT_FALSE(Exists(tree_));
  EXPECT_EQ(*ReadFileToString(outside_ + "/secret"), "host");  // links removed, targets untouched
  EXPECT_TRUE(RemoveTreeAt(base.get(), "tree").ok());         // already gone: fine
  EXPECT_FALSE(RemoveTreeAt(base.get(), "..").ok());
}

TEST_F(SafePathTest, RemoveTreeOfASymlinkRemovesOnlyTheLink) {
  std::string l = base_ + "/toout";
  ASSERT_EQ(symlink(outside_.c_str(), l.c_str()), 0);
  ASSERT_TRUE(RemoveTree(l).ok());
  EXPECT_FALSE(Exists(l));
  EXPECT_TRUE(Exists(outside_ + "/secret"));
}

TEST_F(SafePathTest, RemoveTreeRacingSymlinkSwapNeverTouchesOutside) {
  // A writer keeps swapping a directory for a symlink to `outside_` while
  // the tree is removed over and over: the outside file must survive.
  for (int round = 0; round < 30; ++round) {
    ASSERT_TRUE(MkdirAll(tree_ + "/d/sub").ok());
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(WriteStringToFile(tree_ + "/d/sub/f" + std::to_string(i), "x").ok());
    std::atomic<bool> stop{false};
    std::thread swapper([&] {
      std::string d = tree_ + "/d/sub", tmp = tree_ + "/d/tmp";
      while (!stop.load()) {
        if (rename(d.c_str(), tmp.c_str()) == 0) {
          (void)symlink(outside_.c_str(), d.c_str());
          unlink(d.c_str());
          (void)rename(tmp.c_str(), d.c_str());
        }
      }
    });
    UniqueFd base(open(base_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    for (int i = 0; i < 5; ++i) (void)RemoveTreeAt(base.get(), "tree");
    stop = true;
    swapper.join();
    ASSERT_EQ(*ReadFileToString(outside_ + "/secret"), "host") << "round " << round;
    (void)RemoveTreeAt(base.get(), "tree");
  }
}

TEST(MkdirAllTest, HonoursMode) {
  std::string base = "/tmp/warren-mkdirall-" + NewId("", 8);
  mode_t old = umask(022);
  ASSERT_TRUE(MkdirAll(base + "/x/y", 0700).ok());
  umask(old);
  struct stat st;
  ASSERT_EQ(stat((base + "/x/y").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(stat((base + "/x").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_TRUE(MkdirAll(base + "/x/y", 0755).ok());  // existing: unchanged
  ASSERT_EQ(stat((base + "/x/y").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_TRUE(WriteStringToFile(base + "/file", "").ok());
  EXPECT_FALSE(MkdirAll(base + "/file", 0755).ok());
  ASSERT_TRUE(RemoveTree(base).ok());
}

}  // namespace
}  // namespace warren::sandbox
