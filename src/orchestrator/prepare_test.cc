// Unit tests of the Preparer's pure parts (the root integration tests in
// tests/integration/orchestrator/prepare_test.cc drive the real runtime).
#include "orchestrator/prepare.h"

#include <gtest/gtest.h>

namespace warren::orchestrator {
namespace {

sandbox::SandboxRecord Rec(std::map<std::string, std::string> labels) {
  sandbox::SandboxRecord r;
  r.id = "sbx_1";
  r.state = sandbox::SandboxState::kStopped;
  r.labels = std::move(labels);
  return r;
}

TEST(PreparerTest, CheckPreparedChecksModeAndEnvironment) {
  EXPECT_TRUE(Preparer::CheckPrepared(Rec({{"warren.mode", "prepared"}, {"warren.environment_id", "env_a"}}), "env_a").ok());
  EXPECT_EQ(Preparer::CheckPrepared(Rec({{"warren.mode", "prepared"}, {"warren.environment_id", "env_a"}}), "env_b").code(),
            Code::kPermissionDenied);
  EXPECT_EQ(Preparer::CheckPrepared(Rec({{"warren.mode", "prepared"}}), "env_a").code(), Code::kPermissionDenied);
  EXPECT_EQ(Preparer::CheckPrepared(Rec({{"warren.mode", "session"}, {"warren.environment_id", "env_a"}}), "env_a").code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(Preparer::CheckPrepared(Rec({}), "env_a").code(), Code::kFailedPrecondition);
  auto gone = Rec({{"warren.mode", "prepared"}, {"warren.environment_id", "env_a"}});
  gone.deleted = true;
  EXPECT_EQ(Preparer::CheckPrepared(gone, "env_a").code(), Code::kNotFound);
}

TEST(PreparerTest, ResultJsonNeverCarriesValues) {
  PrepareResult r;
  r.repos.push_back({"https://example.com/r.git", "/workspace", "0123456789abcdef0123456789abcdef01234567"});
  r.datasets.push_back("/data");
  r.credentials.push_back({"API_KEY", "env", "", 1'780'000'000'000'000});
  r.credentials.push_back({"k", "file", "/run/warren/credentials/k", 1'780'000'000'000'000});
  Json j = r.ToJson();
  EXPECT_EQ(j["repositories"][0]["path"], "/workspace");
  EXPECT_EQ(j["credentials"][0], (Json{{"name", "API_KEY"}, {"type", "env"}, {"expires_at", "2026-05-28T20:26:40.000000Z"}}));
  EXPECT_EQ(j["credentials"][1]["path"], "/run/warren/credentials/k");
  EXPECT_EQ(j["datasets"][0]["path"], "/data");
}

}  // namespace
}  // namespace warren::orchestrator
