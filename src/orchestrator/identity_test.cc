// The orchestrator's stable id in its data dir (identity.h).
#include "orchestrator/identity.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace warren::orchestrator {
namespace {

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/warren_identity_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string File() const { return dir_ + "/" + kIdentityFile; }
  std::string dir_;
};

// Created once (0600, one line), then the same id at every load: a
// replacement process on the same data dir is the same orchestrator.
TEST_F(IdentityTest, CreatedOnceThenStable) {
  auto a = LoadIdentity(dir_);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->id.rfind("orch_", 0), 0u) << a->id;
  EXPECT_TRUE(ValidOrchestratorId(a->id));
  struct stat st;
  ASSERT_EQ(::lstat(File().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto b = LoadIdentity(dir_);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->id, a->id);
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(b->host, host);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) files += e.path().filename() != kIdentityFile ? 1 : 0;
  EXPECT_EQ(files, 0);
  // Another data dir (another host) is another orchestrator.
  char tmpl[] = "/tmp/warren_identity_XXXXXX";
  std::string other = mkdtemp(tmpl);
  auto c = LoadIdentity(other);
  std::filesystem::remove_all(other);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->id, a->id);
}

// A link in place of the file is refused (O_NOFOLLOW: ELOOP), not followed.
TEST_F(IdentityTest, SymlinkIsRefused) {
  const std::string target = dir_ + "/elsewhere";
  { std::ofstream(target) << "orch_stolen\n"; }
  ASSERT_EQ(::symlink(target.c_str(), File().c_str()), 0);
  auto r = LoadIdentity(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("ELOOP"), std::string::npos) << r.status().ToString();
}

TEST_F(IdentityTest, GarbageIsRefusedWithTheFileNamed) {
  { std::ofstream(File()) << "not an id\n"; }
  auto r = LoadIdentity(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find(File()), std::string::npos);
  std::filesystem::remove(File());
  ASSERT_TRUE(std::filesystem::create_directory(File()));
  EXPECT_EQ(LoadIdentity(dir_).status().code(), Code::kFailedPrecondition);  // a directory
}

TEST_F(IdentityTest, ValidIds) {
  EXPECT_TRUE(ValidOrchestratorId("orch_abc"));
  EXPECT_TRUE(ValidOrchestratorId("a.b:c-d_e"));
  EXPECT_FALSE(ValidOrchestratorId(""));
  EXPECT_FALSE(ValidOrchestratorId("a b"));
  EXPECT_FALSE(ValidOrchestratorId("a\n"));
  EXPECT_FALSE(ValidOrchestratorId(std::string(129, 'a')));
  EXPECT_TRUE(ValidOrchestratorId(std::string(128, 'a')));
}

}  // namespace
}  // namespace warren::orchestrator
