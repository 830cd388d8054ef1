// DetectCriu: reasons for a missing binary, a failing check (first stderr
// line), a passing one, and a hung one (timeout). Fake `criu` scripts stand
// in for the real binary.
#include "sandbox/criu.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ids.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

class CriuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/criu-" + NewId("", 8);
    ASSERT_TRUE(MkdirAll(dir_).ok());
  }
  void TearDown() override { (void)RemoveTree(dir_); }
  std::string Script(const std::string& name, const std::string& body) {
    std::string p = dir_ + "/" + name;
    EXPECT_TRUE(WriteStringToFile(p, "#!/bin/sh\n" + body).ok());
    chmod(p.c_str(), 0755);
    return p;
  }
  std::string dir_;
};

TEST_F(CriuTest, MissingBinary) {
  auto s = DetectCriu(std::chrono::milliseconds(2000), dir_ + "/no-such-criu");
  EXPECT_FALSE(s.available);
  EXPECT_EQ(s.reason, "criu is not installed");
}

TEST_F(CriuTest, FailingCheckReportsFirstStderrLine) {
  auto s = DetectCriu(std::chrono::milliseconds(5000),
                      Script("criu", "echo 'Looks bad.'\necho >&2\necho 'Error (criu/x.c:1): first' >&2\n"
                                     "echo 'Error: second' >&2\nexit 1\n"));
  EXPECT_FALSE(s.available);
  EXPECT_EQ(s.reason, "Error (criu/x.c:1): first");
}

TEST_F(CriuTest, PassingCheck) {
  auto s = DetectCriu(std::chrono::milliseconds(5000), Script("criu", "[ \"$1\" = check ] && echo 'Looks good.'\n"));
  EXPECT_TRUE(s.available);
  EXPECT_EQ(s.reason, "criu check passed");
}

TEST_F(CriuTest, HungCheckTimesOut) {
  auto s = DetectCriu(std::chrono::milliseconds(200), Script("criu", "exec sleep 30\n"));
  EXPECT_FALSE(s.available);
  EXPECT_EQ(s.reason, "criu check timed out after 200 ms");
}

}  // namespace
}  // namespace warren::sandbox
