// The embedded work source's one-orchestrator-per-environment check
// (local_work_source.h, docs/ORCHESTRATOR.md "Several orchestrators"): an
// environment held by another orchestrator is skipped while the others are
// served, and taken once the holder has been quiet for the TTL.
#include "orchestrator/local_work_source.h"

#include <gtest/gtest.h>

#include <map>

#include "api/auth.h"
#include "common/clock.h"
#include "common/ids.h"
#include "orchestrator/identity.h"
#include "store/memory_store.h"

namespace warren::orchestrator {
namespace {

constexpr int64_t kSec = 1'000'000;

class LocalWorkSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* id : {"env_held", "env_free"})
      ASSERT_TRUE(store_.CreateEnvironment(Json{{"type", "environment"}, {"id", id}, {"name", id},
                                                {"config", {{"type", "self_hosted"}}},
                                                {"created_at", FormatRfc3339(clock_.NowMicros())}})
                      .ok());
  }
  std::string Enqueue(const std::string& env) {
    store::WorkRecord w;
    w.id = NewId(idprefix::kWork);
    w.environment_id = env;
    w.session_id = NewId(idprefix::kSession);
    w.state = "queued";
    w.created_at = clock_.NowMicros();
    w.ttl_seconds = 90;
    w.body = {{"type", "work"}, {"id", w.id}, {"environment_id", env},
              {"data", {{"type", "session"}, {"id", w.session_id}}}, {"state", "queued"},
              {"metadata", Json::object()}, {"secret", nullptr}, {"created_at", FormatRfc3339(w.created_at)}};
    EXPECT_TRUE(store_.CreateWork(w).ok());
    return w.id;
  }

  FakeClock clock_;
  store::MemoryStore store_{&clock_};
  api::Authenticator auth_{&store_};
  queue::WorkQueue queue_{&store_, &auth_, &clock_, [] {
                            queue::WorkQueueOptions o;
                            o.orchestrator_ttl_ms = 30000;
                            o.sweep_interval = std::chrono::milliseconds(0);
                            return o;
                          }()};
};

TEST_F(LocalWorkSourceTest, RefusedEnvironmentIsSkippedThenTakenAfterTheTtl) {
  static_assert(std::string_view(queue::kEnvironmentHeldCode) == kEnvironmentHeldCode);
  // Another orchestrator (a standalone one on another host) holds env_held.
  ASSERT_TRUE(queue_.HoldEnvironment("env_held", "orch_other", "host-b").ok());
  const std::string held_item = Enqueue("env_held");
  const std::string free_item = Enqueue("env_free");
  LocalWorkSourceOptions o;
  o.serve_cloud = false;
  o.self_hosted = {"env_held", "env_free"};
  o.orchestrator_id = "orch_me";
  o.orchestrator_host = "host-a";
  o.refused_retry = std::chrono::milliseconds(0);  // ask again at every pass (the store decides)
  LocalWorkSource src(&queue_, &store_, o);
  // Only env_free's item: env_held is refused and skipped.
  auto first = src.Poll(0, 2000);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ((*first)->id, free_item);
  auto none = src.Poll(0, 2000);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value()) << "env_held's item is not claimed while another orchestrator holds it";
  // env_free is now held by this orchestrator: another one is refused there.
  EXPECT_EQ(queue_.HoldEnvironment("env_free", "orch_other", "host-b").code(), Code::kConflict);
  // The holder of env_held goes quiet past the TTL: taken over, item claimed.
  clock_.Advance(31 * kSec);
  auto later = src.Poll(0, 2000);
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  ASSERT_TRUE(later->has_value());
  EXPECT_EQ((*later)->id, held_item);
  Status back = queue_.HoldEnvironment("env_held", "orch_other", "host-b");
  EXPECT_EQ(back.code(), Code::kConflict);
  EXPECT_NE(back.message().find("orch_me"), std::string::npos) << back.ToString();
}

// Without an orchestrator id nothing is checked (and nothing is held).
TEST_F(LocalWorkSourceTest, NoIdNoCheck) {
  ASSERT_TRUE(queue_.HoldEnvironment("env_held", "orch_other", "host-b").ok());
  const std::string item = Enqueue("env_held");
  LocalWorkSourceOptions o;
  o.serve_cloud = false;
  o.self_hosted = {"env_held"};
  LocalWorkSource src(&queue_, &store_, o);
  auto r = src.Poll(0, 2000);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->id, item);
}

// Only a cloud environment's items are marked sole_worker (the queue serves
// cloud environments to no one else); a self-hosted one may have other
// workers polling it, so its runner must prove a lease before it takes it
// over (docs/ORCHESTRATOR.md, "Supervise").
TEST_F(LocalWorkSourceTest, OnlyCloudItemsAreSoleWorkerItems) {
  ASSERT_TRUE(store_.CreateEnvironment(Json{{"type", "environment"}, {"id", "env_cloud"}, {"name", "env_cloud"},
                                            {"config", {{"type", "cloud"}}},
                                            {"created_at", FormatRfc3339(clock_.NowMicros())}})
                  .ok());
  const std::string cloud_item = Enqueue("env_cloud");
  const std::string self_item = Enqueue("env_free");
  LocalWorkSourceOptions o;
  o.serve_cloud = true;
  o.self_hosted = {"env_free"};
  LocalWorkSource src(&queue_, &store_, o);
  std::map<std::string, bool> sole;
  for (int i = 0; i < 2; ++i) {
    auto r = src.Poll(0, 2000);
    ASSERT_TRUE(r.ok() && r->has_value()) << r.status().ToString();
    sole[(*r)->id] = (*r)->sole_worker;
    ASSERT_TRUE(src.Ack(**r).ok());
  }
  EXPECT_EQ(sole, (std::map<std::string, bool>{{cloud_item, true}, {self_item, false}}));
  // The restart resume (held items, reissued tokens) covers cloud items only.
  auto held = src.HeldItems();
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  ASSERT_EQ(held->size(), 1u);
  EXPECT_EQ((*held)[0].id, cloud_item);
  EXPECT_TRUE((*held)[0].sole_worker);
}

}  // namespace
}  // namespace warren::orchestrator
