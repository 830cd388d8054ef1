// The Store conformance suite (store.h contract): every Store implementation
// must pass it. Value-parameterised over factories; a PostgreSQL store is
// added as one more StoreFactory in INSTANTIATE_TEST_SUITE_P below.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "store/memory_store.h"
#include "store/sqlite_store.h"

namespace warren::store {
namespace {

struct StoreFactory {
  std::string name;
  // A fresh, empty store in `dir` (a new temp dir) on `clock`, discarding
  // `abort_attempts` attempts of every mutating transaction.
  std::function<Result<std::unique_ptr<Store>>(const std::string& dir, Clock* clock, int abort_attempts)> make;
};

constexpr int64_t kSec = 1'000'000;

// Migrations log at info for every store the suite opens.
[[maybe_unused]] const bool kQuietLogs = [] {
  log::SetLevel(log::Level::kWarn);
  return true;
}();

class StoreConformance : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/warren_conf_XXXXXX";
    dir_ = mkdtemp(tmpl);
    store_ = Make(0);
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Store> Make(int abort_attempts) {
    std::string sub = dir_ + "/" + std::to_string(made_++);
    std::filesystem::create_directories(sub);
    auto r = GetParam().make(sub, &clock_, abort_attempts);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  std::string Ts(int64_t offset_sec = 0) const { return FormatRfc3339(clock_.NowMicros() + offset_sec * kSec); }

  Json Agent(const std::string& id, int version = 1, int64_t created_offset = 0) const {
    return Json{{"id", id}, {"type", "agent"}, {"name", "a"}, {"version", version},
                {"created_at", Ts(created_offset)}, {"archived_at", nullptr}};
  }
  static Json Env(const std::string& id, const std::string& name) {
    return Json{{"id", id}, {"type", "environment"}, {"name", name}, {"archived_at", nullptr},
                {"config", {{"type", "self_hosted"}}}};
  }
  Json Session(const std::string& id, const std::string& env = "env_1", const std::string& status = "idle",
               const std::string& agent = "agent_1", int agent_version = 1, int64_t created_offset = 0) const {
    return Json{{"id", id},
                {"type", "session"},
                {"status", status},
                {"environment_id", env},
                {"agent", {{"id", agent}, {"version", agent_version}}},
                {"resources", Json::array()},
                {"created_at", Ts(created_offset)},
                {"archived_at", nullptr}};
  }
  static Json Ev(const std::string& id, const std::string& type = "agent.message", Json processed_at = nullptr) {
    return Json{{"id", id}, {"type", type}, {"processed_at", processed_at}};
  }
  static WorkRecord Work(const std::string& id, const std::string& env, const std::string& session,
                         int64_t created_at = 0) {
    WorkRecord w;
    w.id = id;
    w.environment_id = env;
    w.session_id = session;
    w.state = "queued";
    w.created_at = created_at;
    w.body = {{"id", id}, {"type", "work"}, {"state", "queued"}, {"secret", nullptr}};
    return w;
  }
  void MakeSession(const std::string& id, const std::string& env = "env_1", const std::string& status = "idle") {
    ASSERT_TRUE(store_->CreateSession(Session(id, env, status), {}, nullptr).ok());
  }
  std::vector<std::string> Ids(const Page& p) const {
    std::vector<std::string> out;
    for (const Json& j : p.items) out.push_back(j["id"].get<std::string>());
    return out;
  }
  std::vector<std::string> AllEventIds(const std::string& sid) {
    auto r = store_->EventsAfter(sid, 0, 100000);
    EXPECT_TRUE(r.ok());
    std::vector<std::string> out;
    for (const auto& e : *r) out.push_back(e.body["id"].get<std::string>());
    return out;
  }

  FakeClock clock_;
  std::string dir_;
  int made_ = 0;
  std::unique_ptr<Store> store_;
};

// ------------------------------------------------------------------ agents

TEST_P(StoreConformance, AgentCreateGet) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  auto a = store_->GetAgent("agent_a", std::nullopt);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)["id"], "agent_a");
  EXPECT_EQ((*a)["version"], 1);
  EXPECT_EQ((*store_->GetAgent("agent_a", 1))["version"], 1);
}

TEST_P(StoreConformance, AgentDuplicateIdConflict) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  EXPECT_EQ(store_->CreateAgent(Agent("agent_a")).code(), Code::kConflict);
}

TEST_P(StoreConformance, AgentNotFound) {
  EXPECT_EQ(store_->GetAgent("agent_zz", std::nullopt).status().code(), Code::kNotFound);
  EXPECT_EQ(store_->GetAgent("agent_zz", 1).status().code(), Code::kNotFound);
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  EXPECT_EQ(store_->GetAgent("agent_a", 2).status().code(), Code::kNotFound);
  EXPECT_EQ(store_->ListAgentVersions("agent_zz", PageSpec{}).status().code(), Code::kNotFound);
  auto up = store_->UpdateAgent("agent_zz", [](const Json& c) -> Result<Json> { return c; });
  EXPECT_EQ(up.status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, AgentUpdateMakesVersion) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  auto up = store_->UpdateAgent("agent_a", [](const Json& cur) -> Result<Json> {
    Json n = cur;
    n["version"] = cur["version"].get<int>() + 1;
    n["name"] = "b";
    return n;
  });
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_EQ((*store_->GetAgent("agent_a", std::nullopt))["version"], 2);
  EXPECT_EQ((*store_->GetAgent("agent_a", 1))["name"], "a");
  EXPECT_EQ((*store_->GetAgent("agent_a", 2))["name"], "b");
  auto versions = store_->ListAgentVersions("agent_a", PageSpec{10, Order::kAsc});
  ASSERT_TRUE(versions.ok());
  ASSERT_EQ(versions->items.size(), 2u);
  EXPECT_EQ(versions->items[0]["version"], 1);
  EXPECT_EQ(versions->items[1]["version"], 2);
}

TEST_P(StoreConformance, AgentNoopUpdateWritesNoVersion) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  auto up = store_->UpdateAgent("agent_a", [](const Json& cur) -> Result<Json> { return cur; });
  ASSERT_TRUE(up.ok());
  EXPECT_EQ((*store_->ListAgentVersions("agent_a", PageSpec{})).items.size(), 1u);
}

TEST_P(StoreConformance, AgentOptimisticVersionConflictWritesNothing) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  const int64_t expected = 7;  // a stale version, as a client would send
  auto up = store_->UpdateAgent("agent_a", [&](const Json& cur) -> Result<Json> {
    if (cur["version"].get<int64_t>() != expected) return Status::Conflict("stale");
    Json n = cur;
    n["version"] = expected + 1;
    return n;
  });
  EXPECT_EQ(up.status().code(), Code::kConflict);
  EXPECT_EQ((*store_->GetAgent("agent_a", std::nullopt))["version"], 1);
  EXPECT_EQ((*store_->ListAgentVersions("agent_a", PageSpec{})).items.size(), 1u);
}

TEST_P(StoreConformance, AgentVersionMustFollowLatest) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  auto up = store_->UpdateAgent("agent_a", [](const Json& cur) -> Result<Json> {
    Json n = cur;
    n["version"] = 3;
    return n;
  });
  EXPECT_EQ(up.status().code(), Code::kConflict);
  EXPECT_EQ((*store_->GetAgent("agent_a", std::nullopt))["version"], 1);
}

TEST_P(StoreConformance, AgentArchivalCarriesToPastVersionsAndFiltersLists) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_b")).ok());
  ASSERT_TRUE(store_->UpdateAgent("agent_a", [&](const Json& cur) -> Result<Json> {
                      Json n = cur;
                      n["archived_at"] = Ts();
                      return n;
                    }).ok());
  EXPECT_FALSE((*store_->GetAgent("agent_a", 1))["archived_at"].is_null());
  EXPECT_EQ(Ids(*store_->ListAgents(AgentFilter{}, PageSpec{10, Order::kAsc})), std::vector<std::string>{"agent_b"});
  AgentFilter all;
  all.include_archived = true;
  EXPECT_EQ(Ids(*store_->ListAgents(all, PageSpec{10, Order::kAsc})),
            (std::vector<std::string>{"agent_a", "agent_b"}));
}

TEST_P(StoreConformance, AgentCreatedRangeFilter) {
  for (int i = 0; i < 5; i++) ASSERT_TRUE(store_->CreateAgent(Agent("agent_" + std::to_string(i), 1, i * 10)).ok());
  const int64_t t0 = clock_.NowMicros();
  AgentFilter f;
  f.created.gte = t0 + 10 * kSec;
  f.created.lt = t0 + 40 * kSec;
  EXPECT_EQ(Ids(*store_->ListAgents(f, PageSpec{10, Order::kAsc})),
            (std::vector<std::string>{"agent_1", "agent_2", "agent_3"}));
  AgentFilter g;
  g.created.gt = t0 + 10 * kSec;
  g.created.lte = t0 + 40 * kSec;
  EXPECT_EQ(Ids(*store_->ListAgents(g, PageSpec{10, Order::kAsc})),
            (std::vector<std::string>{"agent_2", "agent_3", "agent_4"}));
}

TEST_P(StoreConformance, MalformedObjectsAreInvalidArgumentNotCrash) {
  EXPECT_EQ(store_->CreateAgent(Json{{"id", "agent_x"}}).code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->CreateAgent(Json{{"id", 5}, {"version", 1}}).code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->CreateEnvironment(Json::array()).code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->CreateSession(Json{{"id", "s"}, {"status", "idle"}}, {}, nullptr).status().code(),
            Code::kInvalidArgument);
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  auto up = store_->UpdateAgent("agent_a", [](const Json&) -> Result<Json> { return Json("not an object"); });
  EXPECT_EQ(up.status().code(), Code::kInvalidArgument);
  EXPECT_EQ((*store_->GetAgent("agent_a", std::nullopt))["version"], 1);
  MakeSession("sesn_1");
  auto st = store_->StepSession("sesn_1", [](const Json& cur, Store::SessionStep* step) -> Result<Json> {
    step->append.push_back(Json{{"id", "e"}, {"type", nullptr}});
    return cur;
  }, nullptr);
  EXPECT_EQ(st.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(AllEventIds("sesn_1").empty());
}

// ------------------------------------------------------------ environments

// ---- vaults and credentials (spec 6)

TEST_P(StoreConformance, VaultCrudArchiveAndDelete) {
  Json v = {{"id", "vlt_a"}, {"type", "vault"}, {"display_name", "a"}, {"archived_at", nullptr}};
  ASSERT_TRUE(store_->CreateVault(v).ok());
  EXPECT_EQ(store_->CreateVault(v).code(), Code::kConflict);
  ASSERT_TRUE(store_->CreateVault({{"id", "vlt_b"}, {"archived_at", nullptr}}).ok());
  EXPECT_EQ((*store_->GetVault("vlt_a"))["display_name"], "a");
  EXPECT_EQ(store_->GetVault("vlt_zz").status().code(), Code::kNotFound);
  EXPECT_EQ(*store_->CountVaults(), 2);
  ASSERT_TRUE(store_->UpdateVault("vlt_a", [&](const Json& cur) -> Result<Json> {
                      Json n = cur;
                      n["archived_at"] = Ts();
                      return n;
                    }).ok());
  PageSpec spec;
  EXPECT_EQ(store_->ListVaults(false, spec)->items.size(), 1u);
  EXPECT_EQ(store_->ListVaults(true, spec)->items.size(), 2u);
  ASSERT_TRUE(store_->CreateCredential({{{"id", "vcrd_1"}, {"vault_id", "vlt_b"}, {"archived_at", nullptr}}, "s1"}, 20).ok());
  ASSERT_TRUE(store_->DeleteVault("vlt_b").ok());
  EXPECT_EQ(store_->DeleteVault("vlt_b").code(), Code::kNotFound);
  EXPECT_EQ(store_->GetCredential("vlt_b", "vcrd_1").status().code(), Code::kNotFound);
  EXPECT_EQ(*store_->CountVaults(), 1);
}

TEST_P(StoreConformance, CredentialLimitSealedAndScope) {
  ASSERT_TRUE(store_->CreateVault({{"id", "vlt_a"}, {"archived_at", nullptr}}).ok());
  ASSERT_TRUE(store_->CreateVault({{"id", "vlt_b"}, {"archived_at", nullptr}}).ok());
  auto cred = [](const std::string& id, const std::string& vault) {
    return CredentialRecord{{{"id", id}, {"vault_id", vault}, {"archived_at", nullptr}}, std::string("\x01\x00sealed", 8)};
  };
  EXPECT_EQ(store_->CreateCredential(cred("vcrd_x", "vlt_zz"), 3).code(), Code::kNotFound);
  for (int i = 0; i < 3; i++) ASSERT_TRUE(store_->CreateCredential(cred("vcrd_" + std::to_string(i), "vlt_a"), 3).ok());
  Status full = store_->CreateCredential(cred("vcrd_9", "vlt_a"), 3);
  EXPECT_EQ(full.code(), Code::kConflict);
  EXPECT_EQ(full.detail_code(), "vault_credential_limit");
  EXPECT_EQ(store_->CreateCredential(cred("vcrd_0", "vlt_b"), 3).code(), Code::kConflict);  // ids are global
  // The sealed bytes come back exactly (binary-safe); another vault's id does not reach it.
  EXPECT_EQ(store_->GetCredential("vlt_a", "vcrd_1")->sealed, std::string("\x01\x00sealed", 8));
  EXPECT_EQ(store_->GetCredential("vlt_b", "vcrd_1").status().code(), Code::kNotFound);
  // Archiving frees a slot.
  ASSERT_TRUE(store_->UpdateCredential("vlt_a", "vcrd_1", [&](CredentialRecord* r) {
                      r->body["archived_at"] = Ts();
                      r->sealed = "new";
                      return Status::Ok();
                    }).ok());
  EXPECT_EQ(store_->GetCredential("vlt_a", "vcrd_1")->sealed, "new");
  PageSpec spec;
  spec.order = Order::kAsc;
  EXPECT_EQ(store_->ListCredentials("vlt_a", false, spec)->items.size(), 2u);
  EXPECT_EQ(store_->ListCredentials("vlt_a", true, spec)->items.size(), 3u);
  EXPECT_EQ(store_->ListCredentials("vlt_a", true, spec)->items[0]["id"], "vcrd_0");
  EXPECT_TRUE(store_->CreateCredential(cred("vcrd_9", "vlt_a"), 3).ok());
  EXPECT_EQ(store_->DeleteCredential("vlt_b", "vcrd_9").code(), Code::kNotFound);
  EXPECT_TRUE(store_->DeleteCredential("vlt_a", "vcrd_9").ok());
  EXPECT_EQ(store_->GetCredential("vlt_a", "vcrd_9").status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, EnvironmentCreateGet) {
  ASSERT_TRUE(store_->CreateEnvironment(Env("env_a", "alpha")).ok());
  EXPECT_EQ((*store_->GetEnvironment("env_a"))["name"], "alpha");
  EXPECT_EQ(store_->GetEnvironment("env_zz").status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, EnvironmentNameAndIdConflict) {
  ASSERT_TRUE(store_->CreateEnvironment(Env("env_a", "alpha")).ok());
  EXPECT_EQ(store_->CreateEnvironment(Env("env_b", "alpha")).code(), Code::kConflict);
  EXPECT_EQ(store_->CreateEnvironment(Env("env_a", "beta")).code(), Code::kConflict);
  EXPECT_TRUE(store_->GetEnvironment("env_b").status().code() == Code::kNotFound);
}

TEST_P(StoreConformance, EnvironmentRenameConflictAndNotFound) {
  ASSERT_TRUE(store_->CreateEnvironment(Env("env_a", "alpha")).ok());
  ASSERT_TRUE(store_->CreateEnvironment(Env("env_b", "beta")).ok());
  auto up = store_->UpdateEnvironment("env_b", [](const Json& cur) -> Result<Json> {
    Json n = cur;
    n["name"] = "alpha";
    return n;
  });
  EXPECT_EQ(up.status().code(), Code::kConflict);
  EXPECT_EQ((*store_->GetEnvironment("env_b"))["name"], "beta");
  auto ok = store_->UpdateEnvironment("env_b", [](const Json& cur) -> Result<Json> {
    Json n = cur;
    n["name"] = "gamma";
    return n;
  });
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*store_->GetEnvironment("env_b"))["name"], "gamma");
  EXPECT_EQ(store_->UpdateEnvironment("env_zz", [](const Json& c) -> Result<Json> { return c; }).status().code(),
            Code::kNotFound);
}

TEST_P(StoreConformance, EnvironmentArchivedFilter) {
  ASSERT_TRUE(store_->CreateEnvironment(Env("env_a", "alpha")).ok());
  ASSERT_TRUE(store_->CreateEnvironment(Env("env_b", "beta")).ok());
  ASSERT_TRUE(store_->UpdateEnvironment("env_a", [&](const Json& cur) -> Result<Json> {
                      Json n = cur;
                      n["archived_at"] = Ts();
                      return n;
                    }).ok());
  EXPECT_EQ(Ids(*store_->ListEnvironments(false, PageSpec{10, Order::kAsc})), std::vector<std::string>{"env_b"});
  EXPECT_EQ(Ids(*store_->ListEnvironments(true, PageSpec{10, Order::kAsc})),
            (std::vector<std::string>{"env_a", "env_b"}));
}

TEST_P(StoreConformance, EnvironmentDeleteRemovesKeysAndFreesName) {
  ASSERT_TRUE(store_->CreateEnvironment(Env("env_a", "alpha")).ok());
  ASSERT_TRUE(store_->PutKey("h_env", KeyRecord{KeyKind::kEnvironment, "env_a", "", ""}).ok());
  ASSERT_TRUE(store_->PutKey("h_api", KeyRecord{KeyKind::kApi, "", "", ""}).ok());
  ASSERT_TRUE(store_->DeleteEnvironment("env_a").ok());
  EXPECT_EQ(store_->GetEnvironment("env_a").status().code(), Code::kNotFound);
  EXPECT_FALSE(store_->LookupKey("h_env")->has_value());
  EXPECT_TRUE(store_->LookupKey("h_api")->has_value());
  EXPECT_TRUE(store_->CreateEnvironment(Env("env_c", "alpha")).ok());
  EXPECT_EQ(store_->DeleteEnvironment("env_a").code(), Code::kNotFound);
}

// ---------------------------------------------------------------- sessions

TEST_P(StoreConformance, SessionCreateWithInitialEventsRunsHook) {
  std::vector<StoredEvent> seen;
  auto r = store_->CreateSession(Session("sesn_1"), {Ev("e1", "session.status_idle"), Ev("e2")},
                                 [&](const std::vector<StoredEvent>& evs) { seen = evs; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_GT((*r)[0].seq, 0);
  EXPECT_LT((*r)[0].seq, (*r)[1].seq);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].seq, (*r)[1].seq);
  EXPECT_EQ((*store_->GetSession("sesn_1"))["status"], "idle");
  EXPECT_EQ(AllEventIds("sesn_1"), (std::vector<std::string>{"e1", "e2"}));
}

TEST_P(StoreConformance, SessionDuplicateConflictAndNotFound) {
  MakeSession("sesn_1");
  EXPECT_EQ(store_->CreateSession(Session("sesn_1"), {}, nullptr).status().code(), Code::kConflict);
  EXPECT_EQ(store_->GetSession("sesn_zz").status().code(), Code::kNotFound);
  EXPECT_EQ(store_->UpdateSession("sesn_zz", [](const Json& c, std::vector<Json>*) -> Result<Json> { return c; },
                                  nullptr)
                .status()
                .code(),
            Code::kNotFound);
  EXPECT_EQ(store_->StepSession("sesn_zz", [](const Json& c, Store::SessionStep*) -> Result<Json> { return c; },
                                nullptr)
                .status()
                .code(),
            Code::kNotFound);
}

TEST_P(StoreConformance, SessionCreateFailureIsAtomic) {
  auto r = store_->CreateSession(Session("sesn_1"), {Ev("e1"), Ev("e1")}, nullptr);
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_EQ(store_->GetSession("sesn_1").status().code(), Code::kNotFound);
  EXPECT_TRUE(AllEventIds("sesn_1").empty());
}

TEST_P(StoreConformance, UpdateSessionAppendsEventsAndRunsHook) {
  MakeSession("sesn_1");
  int hooks = 0;
  auto r = store_->UpdateSession(
      "sesn_1",
      [](const Json& cur, std::vector<Json>* events) -> Result<Json> {
        Json n = cur;
        n["title"] = "t";
        events->push_back(Ev("e_upd", "session.updated"));
        return n;
      },
      [&](const std::vector<StoredEvent>& evs) {
        hooks++;
        ASSERT_EQ(evs.size(), 1u);
        EXPECT_GT(evs[0].seq, 0);
      });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["title"], "t");
  EXPECT_EQ((*store_->GetSession("sesn_1"))["title"], "t");
  EXPECT_EQ(hooks, 1);
  EXPECT_EQ(AllEventIds("sesn_1"), std::vector<std::string>{"e_upd"});
}

TEST_P(StoreConformance, FailedSessionMutatorWritesNothingAndNoHook) {
  MakeSession("sesn_1");
  int hooks = 0;
  auto r = store_->UpdateSession(
      "sesn_1",
      [](const Json& cur, std::vector<Json>* events) -> Result<Json> {
        events->push_back(Ev("e_x"));
        (void)cur;
        return Status::Conflict("no");
      },
      [&](const std::vector<StoredEvent>&) { hooks++; });
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_EQ(hooks, 0);
  EXPECT_TRUE(AllEventIds("sesn_1").empty());
}

TEST_P(StoreConformance, StepSessionReplaceThenAppendHookOrder) {
  ASSERT_TRUE(store_->CreateSession(Session("sesn_1"), {Ev("u1", "user.message")}, nullptr).ok());
  auto before = store_->GetEvent("sesn_1", "u1");
  ASSERT_TRUE(before.ok() && before->has_value());
  std::vector<StoredEvent> seen;
  const std::string now = Ts(5);
  auto r = store_->StepSession(
      "sesn_1",
      [&](const Json& cur, Store::SessionStep* step) -> Result<Json> {
        Json n = cur;
        n["status"] = "running";
        Json done = Ev("u1", "user.message", now);
        step->replace.push_back(done);
        step->append.push_back(Ev("a1", "session.status_running"));
        step->append.push_back(Ev("a2", "span.model_request_start"));
        return n;
      },
      [&](const std::vector<StoredEvent>& evs) { seen = evs; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].seq, 0);
  EXPECT_EQ(seen[0].body["id"], "u1");
  EXPECT_EQ(seen[1].body["id"], "a1");
  EXPECT_EQ(seen[2].body["id"], "a2");
  EXPECT_GT(seen[1].seq, (*before)->seq);
  EXPECT_LT(seen[1].seq, seen[2].seq);
  auto after = store_->GetEvent("sesn_1", "u1");
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_EQ((*after)->seq, (*before)->seq);  // replaced in place
  EXPECT_EQ((*after)->body["processed_at"], now);
  EXPECT_EQ(AllEventIds("sesn_1"), (std::vector<std::string>{"u1", "a1", "a2"}));
  EXPECT_EQ((*store_->GetSession("sesn_1"))["status"], "running");
}

TEST_P(StoreConformance, StepSessionReplacingUnknownEventAbortsWhole) {
  MakeSession("sesn_1");
  MakeSession("sesn_2");
  ASSERT_TRUE(store_->AppendEvents("sesn_2", nullptr, {Ev("other")}, nullptr).ok());
  auto r = store_->StepSession(
      "sesn_1",
      [](const Json& cur, Store::SessionStep* step) -> Result<Json> {
        Json n = cur;
        n["status"] = "running";
        step->append.push_back(Ev("a1"));
        step->replace.push_back(Ev("other", "agent.message", "2026-01-01T00:00:00Z"));  // another session's
        return n;
      },
      nullptr);
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_EQ((*store_->GetSession("sesn_1"))["status"], "idle");
  EXPECT_TRUE(AllEventIds("sesn_1").empty());
  EXPECT_TRUE((*store_->GetEvent("sesn_2", "other"))->body["processed_at"].is_null());
}

TEST_P(StoreConformance, ListSessionsFilters) {
  Json a = Session("sesn_a", "env_1", "idle", "agent_1", 1);
  Json b = Session("sesn_b", "env_2", "running", "agent_1", 2);
  b["deployment_id"] = "dep_1";
  Json c = Session("sesn_c", "env_1", "terminated", "agent_2", 1);
  c["resources"] = Json::array({{{"type", "memory_store"}, {"memory_store_id", "memstore_x"}}, {{"type", "file"}}});
  for (const Json& s : {a, b, c}) ASSERT_TRUE(store_->CreateSession(s, {}, nullptr).ok());
  auto list = [&](const SessionFilter& f) { return Ids(*store_->ListSessions(f, PageSpec{10, Order::kAsc})); };
  SessionFilter f;
  f.agent_id = "agent_1";
  EXPECT_EQ(list(f), (std::vector<std::string>{"sesn_a", "sesn_b"}));
  f.agent_version = 2;
  EXPECT_EQ(list(f), std::vector<std::string>{"sesn_b"});
  SessionFilter e;
  e.environment_id = "env_1";
  EXPECT_EQ(list(e), (std::vector<std::string>{"sesn_a", "sesn_c"}));
  SessionFilter d;
  d.deployment_id = "dep_1";
  EXPECT_EQ(list(d), std::vector<std::string>{"sesn_b"});
  SessionFilter m;
  m.memory_store_id = "memstore_x";
  EXPECT_EQ(list(m), std::vector<std::string>{"sesn_c"});
  SessionFilter st;
  st.statuses = {"running", "terminated"};
  EXPECT_EQ(list(st), (std::vector<std::string>{"sesn_b", "sesn_c"}));
  st.environment_id = "env_1";
  EXPECT_EQ(list(st), std::vector<std::string>{"sesn_c"});
}

TEST_P(StoreConformance, ListSessionsArchivedAndCreatedRange) {
  for (int i = 0; i < 4; i++)
    ASSERT_TRUE(store_->CreateSession(Session("sesn_" + std::to_string(i), "env_1", "idle", "agent_1", 1, i * 10), {},
                                      nullptr)
                    .ok());
  ASSERT_TRUE(store_->UpdateSession("sesn_1",
                                    [&](const Json& cur, std::vector<Json>*) -> Result<Json> {
                                      Json n = cur;
                                      n["archived_at"] = Ts();
                                      return n;
                                    },
                                    nullptr)
                  .ok());
  SessionFilter f;
  EXPECT_EQ(Ids(*store_->ListSessions(f, PageSpec{10, Order::kAsc})),
            (std::vector<std::string>{"sesn_0", "sesn_2", "sesn_3"}));
  f.include_archived = true;
  f.created.gte = clock_.NowMicros() + 10 * kSec;
  f.created.lte = clock_.NowMicros() + 20 * kSec;
  EXPECT_EQ(Ids(*store_->ListSessions(f, PageSpec{10, Order::kAsc})), (std::vector<std::string>{"sesn_1", "sesn_2"}));
}

TEST_P(StoreConformance, MemoryStoreFilterFollowsResourceUpdates) {
  MakeSession("sesn_1");
  SessionFilter m;
  m.memory_store_id = "memstore_y";
  EXPECT_TRUE(store_->ListSessions(m, PageSpec{})->items.empty());
  ASSERT_TRUE(store_->UpdateSession("sesn_1",
                                    [](const Json& cur, std::vector<Json>*) -> Result<Json> {
                                      Json n = cur;
                                      n["resources"] = Json::array({{{"memory_store_id", "memstore_y"}}});
                                      return n;
                                    },
                                    nullptr)
                  .ok());
  EXPECT_EQ(Ids(*store_->ListSessions(m, PageSpec{})), std::vector<std::string>{"sesn_1"});
  ASSERT_TRUE(store_->UpdateSession("sesn_1",
                                    [](const Json& cur, std::vector<Json>*) -> Result<Json> {
                                      Json n = cur;
                                      n["resources"] = Json::array();
                                      return n;
                                    },
                                    nullptr)
                  .ok());
  EXPECT_TRUE(store_->ListSessions(m, PageSpec{})->items.empty());
}

TEST_P(StoreConformance, SessionsNeedingEngine) {
  MakeSession("s_idle");
  MakeSession("s_running", "env_1", "running");
  MakeSession("s_resched", "env_1", "rescheduling");
  MakeSession("s_user");
  MakeSession("s_system");
  MakeSession("s_done");
  MakeSession("s_agent");
  ASSERT_TRUE(store_->AppendEvents("s_user", nullptr, {Ev("u1", "user.message")}, nullptr).ok());
  ASSERT_TRUE(store_->AppendEvents("s_system", nullptr, {Ev("m1", "system.message")}, nullptr).ok());
  ASSERT_TRUE(store_->AppendEvents("s_done", nullptr, {Ev("u2", "user.message", Ts())}, nullptr).ok());
  ASSERT_TRUE(store_->AppendEvents("s_agent", nullptr, {Ev("a1", "agent.message")}, nullptr).ok());
  auto ids = store_->SessionsNeedingEngine();
  ASSERT_TRUE(ids.ok());
  std::set<std::string> got(ids->begin(), ids->end());
  EXPECT_EQ(got.size(), ids->size()) << "each id once";
  EXPECT_EQ(got, (std::set<std::string>{"s_running", "s_resched", "s_user", "s_system"}));
}

TEST_P(StoreConformance, SessionsNeedingEngineClearsWhenProcessed) {
  ASSERT_TRUE(store_->CreateSession(Session("sesn_1"), {Ev("u1", "user.message"), Ev("u2", "user.interrupt")},
                                    nullptr)
                  .ok());
  EXPECT_EQ(*store_->SessionsNeedingEngine(), std::vector<std::string>{"sesn_1"});
  ASSERT_TRUE(store_->StepSession("sesn_1",
                                  [&](const Json& cur, Store::SessionStep* step) -> Result<Json> {
                                    step->replace.push_back(Ev("u1", "user.message", Ts()));
                                    return cur;
                                  },
                                  nullptr)
                  .ok());
  EXPECT_EQ(*store_->SessionsNeedingEngine(), std::vector<std::string>{"sesn_1"});  // u2 still waits
  ASSERT_TRUE(store_->StepSession("sesn_1",
                                  [&](const Json& cur, Store::SessionStep* step) -> Result<Json> {
                                    step->replace.push_back(Ev("u2", "user.interrupt", Ts()));
                                    return cur;
                                  },
                                  nullptr)
                  .ok());
  EXPECT_TRUE(store_->SessionsNeedingEngine()->empty());
}

TEST_P(StoreConformance, DeleteSessionRemovesEventsAndKeys) {
  ASSERT_TRUE(store_->CreateSession(Session("sesn_1"), {Ev("u1", "user.message")}, nullptr).ok());
  MakeSession("sesn_2");
  ASSERT_TRUE(store_->PutKey("h1", KeyRecord{KeyKind::kSession, "env_1", "sesn_1", "work_1"}).ok());
  ASSERT_TRUE(store_->PutKey("h2", KeyRecord{KeyKind::kSession, "env_1", "sesn_2", "work_2"}).ok());
  ASSERT_TRUE(store_->DeleteSession("sesn_1").ok());
  EXPECT_EQ(store_->GetSession("sesn_1").status().code(), Code::kNotFound);
  EXPECT_TRUE(AllEventIds("sesn_1").empty());
  EXPECT_FALSE(store_->GetEvent("sesn_1", "u1")->has_value());
  EXPECT_FALSE(store_->LookupKey("h1")->has_value());
  EXPECT_TRUE(store_->LookupKey("h2")->has_value());
  EXPECT_TRUE(store_->SessionsNeedingEngine()->empty());
  EXPECT_EQ(store_->DeleteSession("sesn_1").code(), Code::kNotFound);
}

// ------------------------------------------------------------------ events

TEST_P(StoreConformance, AppendEventsCheckRejectsAtomically) {
  MakeSession("sesn_1");
  int hooks = 0;
  auto r = store_->AppendEvents(
      "sesn_1", [](const Json& s) { return s["status"] == "idle" ? Status::Conflict("busy") : Status::Ok(); },
      {Ev("e1"), Ev("e2")}, [&](const std::vector<StoredEvent>&) { hooks++; });
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_EQ(hooks, 0);
  EXPECT_TRUE(AllEventIds("sesn_1").empty());
  EXPECT_EQ(store_->AppendEvents("sesn_zz", nullptr, {Ev("e1")}, nullptr).status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, AppendEventsDuplicateIdConflictAtomic) {
  MakeSession("sesn_1");
  MakeSession("sesn_2");
  ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("e1")}, nullptr).ok());
  auto r = store_->AppendEvents("sesn_1", nullptr, {Ev("e2"), Ev("e1")}, nullptr);
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_EQ(AllEventIds("sesn_1"), std::vector<std::string>{"e1"});
  EXPECT_TRUE(store_->AppendEvents("sesn_2", nullptr, {Ev("e1")}, nullptr).ok()) << "ids are per session";
}

TEST_P(StoreConformance, AToolCallIsAnsweredAtMostOnce) {
  MakeSession("sesn_a");
  MakeSession("sesn_b");
  auto answer = [](const std::string& id, const char* type, const char* field, const std::string& call) {
    Json e = Ev(id, type);
    e[field] = call;
    return e;
  };
  ASSERT_TRUE(store_->AppendEvents("sesn_a", nullptr, {answer("r1", "user.tool_result", "tool_use_id", "use")}, nullptr).ok());
  auto again = store_->AppendEvents(
      "sesn_a", nullptr, {Ev("m", "user.message"), answer("r2", "user.tool_result", "tool_use_id", "use")}, nullptr);
  EXPECT_EQ(again.status().code(), Code::kConflict);
  EXPECT_EQ(again.status().detail_code(), kAlreadyAnswered);
  EXPECT_FALSE(store_->GetEvent("sesn_a", "m")->has_value());
  auto twice = store_->AppendEvents("sesn_a", nullptr,
                                    {answer("c1", "user.custom_tool_result", "custom_tool_use_id", "cu"),
                                     answer("c2", "user.custom_tool_result", "custom_tool_use_id", "cu")},
                                    nullptr);
  EXPECT_EQ(twice.status().detail_code(), kAlreadyAnswered);
  EXPECT_TRUE(store_->AppendEvents("sesn_a", nullptr, {answer("c3", "user.custom_tool_result", "custom_tool_use_id", "use")},
                                   nullptr)
                  .ok());
  EXPECT_TRUE(store_->AppendEvents("sesn_b", nullptr, {answer("r1", "user.tool_result", "tool_use_id", "use")}, nullptr).ok());
}

TEST_P(StoreConformance, EventSeqsIncreaseAcrossWrites) {
  MakeSession("sesn_1");
  int64_t last = 0;
  for (int i = 0; i < 5; i++) {
    auto r = store_->AppendEvents("sesn_1", nullptr, {Ev("e" + std::to_string(i))}, nullptr);
    ASSERT_TRUE(r.ok());
    EXPECT_GT((*r)[0].seq, last);
    last = (*r)[0].seq;
  }
}

TEST_P(StoreConformance, ListEventsTypeFilterAndPaging) {
  MakeSession("sesn_1");
  for (int i = 0; i < 6; i++)
    ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("e" + std::to_string(i), i % 2 ? "user.message" : "agent.message")},
                                     nullptr)
                    .ok());
  EventFilter f;
  f.types = {"user.message"};
  auto p = store_->ListEvents("sesn_1", f, PageSpec{2, Order::kAsc});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(Ids(*p), (std::vector<std::string>{"e1", "e3"}));
  EXPECT_TRUE(p->more_after);
  EXPECT_FALSE(p->more_before);
  auto p2 = store_->ListEvents("sesn_1", f, PageSpec{2, Order::kAsc, p->seqs.back()});
  EXPECT_EQ(Ids(*p2), std::vector<std::string>{"e5"});
  EXPECT_FALSE(p2->more_after);
  EXPECT_TRUE(p2->more_before);
  EXPECT_TRUE(store_->ListEvents("sesn_zz", EventFilter{}, PageSpec{})->items.empty());
}

TEST_P(StoreConformance, EventTimeIsProcessedAtOrTheInjectedClock) {
  MakeSession("sesn_1");
  const int64_t t0 = clock_.NowMicros();
  ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("early", "agent.message", FormatRfc3339(t0 - 100 * kSec))},
                                   nullptr)
                  .ok());
  clock_.Advance(50 * kSec);
  ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("pending", "user.message")}, nullptr).ok());
  EventFilter f;
  f.processed.gte = t0 + 50 * kSec;
  f.processed.lt = t0 + 51 * kSec;
  EXPECT_EQ(Ids(*store_->ListEvents("sesn_1", f, PageSpec{10, Order::kAsc})), std::vector<std::string>{"pending"});
  EventFilter g;
  g.processed.lt = t0;
  EXPECT_EQ(Ids(*store_->ListEvents("sesn_1", g, PageSpec{10, Order::kAsc})), std::vector<std::string>{"early"});
  // Processing moves the event's time to its processed_at.
  ASSERT_TRUE(store_->StepSession("sesn_1",
                                  [&](const Json& cur, Store::SessionStep* step) -> Result<Json> {
                                    step->replace.push_back(Ev("pending", "user.message", FormatRfc3339(t0 - 200 * kSec)));
                                    return cur;
                                  },
                                  nullptr)
                  .ok());
  EXPECT_EQ(Ids(*store_->ListEvents("sesn_1", g, PageSpec{10, Order::kAsc})),
            (std::vector<std::string>{"early", "pending"}));
}

TEST_P(StoreConformance, EventsAfterAscendingWithLimit) {
  MakeSession("sesn_1");
  std::vector<int64_t> seqs;
  for (int i = 0; i < 5; i++) seqs.push_back((*store_->AppendEvents("sesn_1", nullptr, {Ev("e" + std::to_string(i))}, nullptr))[0].seq);
  auto r = store_->EventsAfter("sesn_1", seqs[1], 2);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].seq, seqs[2]);
  EXPECT_EQ((*r)[1].seq, seqs[3]);
  EXPECT_TRUE(store_->EventsAfter("sesn_1", seqs[4], 10)->empty());
  EXPECT_TRUE(store_->EventsAfter("sesn_zz", 0, 10)->empty());
}

TEST_P(StoreConformance, GetEventPresentAndAbsent) {
  MakeSession("sesn_1");
  MakeSession("sesn_2");
  ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("e1")}, nullptr).ok());
  auto e = store_->GetEvent("sesn_1", "e1");
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->body["id"], "e1");
  EXPECT_FALSE(store_->GetEvent("sesn_2", "e1")->has_value());
  EXPECT_FALSE(store_->GetEvent("sesn_1", "nope")->has_value());
}

// ------------------------------------------------------------------ paging

TEST_P(StoreConformance, PagingDescendingForwardAndBack) {
  for (int i = 0; i < 7; i++) ASSERT_TRUE(store_->CreateAgent(Agent("agent_" + std::to_string(i))).ok());
  auto p1 = store_->ListAgents(AgentFilter{}, PageSpec{3, Order::kDesc});
  ASSERT_TRUE(p1.ok());
  EXPECT_EQ(Ids(*p1), (std::vector<std::string>{"agent_6", "agent_5", "agent_4"}));
  EXPECT_TRUE(p1->more_after);
  EXPECT_FALSE(p1->more_before);
  auto p2 = store_->ListAgents(AgentFilter{}, PageSpec{3, Order::kDesc, p1->seqs.back()});
  EXPECT_EQ(Ids(*p2), (std::vector<std::string>{"agent_3", "agent_2", "agent_1"}));
  EXPECT_TRUE(p2->more_after);
  EXPECT_TRUE(p2->more_before);
  auto p3 = store_->ListAgents(AgentFilter{}, PageSpec{3, Order::kDesc, p2->seqs.back()});
  EXPECT_EQ(Ids(*p3), std::vector<std::string>{"agent_0"});
  EXPECT_FALSE(p3->more_after);
  EXPECT_TRUE(p3->more_before);
  // Back from page 3: page 2 again, in the listing order.
  PageSpec back{3, Order::kDesc};
  back.before = p3->seqs.front();
  auto b2 = store_->ListAgents(AgentFilter{}, back);
  EXPECT_EQ(Ids(*b2), Ids(*p2));
  EXPECT_TRUE(b2->more_before);
  EXPECT_TRUE(b2->more_after);
  back.before = b2->seqs.front();
  auto b1 = store_->ListAgents(AgentFilter{}, back);
  EXPECT_EQ(Ids(*b1), Ids(*p1));
  EXPECT_FALSE(b1->more_before);
  EXPECT_TRUE(b1->more_after);
}

TEST_P(StoreConformance, PagingAscendingForwardAndBack) {
  for (int i = 0; i < 5; i++) ASSERT_TRUE(store_->CreateAgent(Agent("agent_" + std::to_string(i))).ok());
  auto p1 = store_->ListAgents(AgentFilter{}, PageSpec{2, Order::kAsc});
  EXPECT_EQ(Ids(*p1), (std::vector<std::string>{"agent_0", "agent_1"}));
  EXPECT_TRUE(p1->more_after);
  EXPECT_FALSE(p1->more_before);
  auto p2 = store_->ListAgents(AgentFilter{}, PageSpec{2, Order::kAsc, p1->seqs.back()});
  EXPECT_EQ(Ids(*p2), (std::vector<std::string>{"agent_2", "agent_3"}));
  EXPECT_TRUE(p2->more_after);
  EXPECT_TRUE(p2->more_before);
  PageSpec back{2, Order::kAsc};
  back.before = p2->seqs.front();
  auto b1 = store_->ListAgents(AgentFilter{}, back);
  EXPECT_EQ(Ids(*b1), Ids(*p1));
  EXPECT_FALSE(b1->more_before);
  EXPECT_TRUE(b1->more_after);
  // `before` the last row of the list: the two rows just ahead of it.
  back.before = (*store_->ListAgents(AgentFilter{}, PageSpec{1, Order::kDesc})).seqs[0];
  EXPECT_EQ(Ids(*store_->ListAgents(AgentFilter{}, back)), (std::vector<std::string>{"agent_2", "agent_3"}));
}

TEST_P(StoreConformance, PagingEmptyPagesAndLimits) {
  auto empty = store_->ListAgents(AgentFilter{}, PageSpec{});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->items.empty());
  EXPECT_FALSE(empty->more_after);
  EXPECT_FALSE(empty->more_before);
  for (int i = 0; i < 3; i++) ASSERT_TRUE(store_->CreateAgent(Agent("agent_" + std::to_string(i))).ok());
  auto all = store_->ListAgents(AgentFilter{}, PageSpec{10, Order::kAsc});
  auto past = store_->ListAgents(AgentFilter{}, PageSpec{10, Order::kAsc, all->seqs.back()});
  EXPECT_TRUE(past->items.empty());
  EXPECT_TRUE(past->more_before);
  EXPECT_FALSE(past->more_after);
  auto one = store_->ListAgents(AgentFilter{}, PageSpec{0, Order::kAsc});  // clamped to 1
  EXPECT_EQ(Ids(*one), std::vector<std::string>{"agent_0"});
  EXPECT_TRUE(one->more_after);
}

TEST_P(StoreConformance, PagingNeitherRepeatsNorSkipsAcrossInsertsAndDeletes) {
  for (int i = 0; i < 4; i++) MakeSession("sesn_" + std::to_string(i));
  auto p1 = store_->ListSessions(SessionFilter{}, PageSpec{2, Order::kAsc});
  EXPECT_EQ(Ids(*p1), (std::vector<std::string>{"sesn_0", "sesn_1"}));
  MakeSession("sesn_4");
  ASSERT_TRUE(store_->DeleteSession("sesn_0").ok());
  auto p2 = store_->ListSessions(SessionFilter{}, PageSpec{10, Order::kAsc, p1->seqs.back()});
  EXPECT_EQ(Ids(*p2), (std::vector<std::string>{"sesn_2", "sesn_3", "sesn_4"}));
}

TEST_P(StoreConformance, ListAgentVersionsPagesBothWays) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  for (int v = 2; v <= 5; v++)
    ASSERT_TRUE(store_->UpdateAgent("agent_a", [v](const Json& cur) -> Result<Json> {
                        Json n = cur;
                        n["version"] = v;
                        return n;
                      }).ok());
  auto p = store_->ListAgentVersions("agent_a", PageSpec{2, Order::kDesc});
  ASSERT_EQ(p->items.size(), 2u);
  EXPECT_EQ(p->items[0]["version"], 5);
  auto n = store_->ListAgentVersions("agent_a", PageSpec{2, Order::kDesc, p->seqs.back()});
  EXPECT_EQ(n->items[0]["version"], 3);
  EXPECT_EQ(n->items[1]["version"], 2);
  EXPECT_TRUE(n->more_after);
}

// -------------------------------------------------------------------- keys

TEST_P(StoreConformance, KeysPutLookupCountConflict) {
  ASSERT_TRUE(store_->PutKey("h1", KeyRecord{KeyKind::kApi, "", "", ""}).ok());
  ASSERT_TRUE(store_->PutKey("h2", KeyRecord{KeyKind::kEnvironment, "env_1", "", ""}).ok());
  ASSERT_TRUE(store_->PutKey("h3", KeyRecord{KeyKind::kSession, "env_1", "sesn_1", "work_1"}).ok());
  ASSERT_TRUE(store_->PutKey("h4", KeyRecord{KeyKind::kApi, "", "", ""}).ok());
  EXPECT_EQ(store_->PutKey("h1", KeyRecord{KeyKind::kEnvironment, "env_2", "", ""}).code(), Code::kConflict);
  EXPECT_EQ(*store_->CountKeys(KeyKind::kApi), 2);
  EXPECT_EQ(*store_->CountKeys(KeyKind::kEnvironment), 1);
  EXPECT_EQ(*store_->CountKeys(KeyKind::kSession), 1);
  auto k = store_->LookupKey("h3");
  ASSERT_TRUE(k.ok() && k->has_value());
  EXPECT_EQ((*k)->kind, KeyKind::kSession);
  EXPECT_EQ((*k)->environment_id, "env_1");
  EXPECT_EQ((*k)->session_id, "sesn_1");
  EXPECT_EQ((*k)->work_id, "work_1");
  EXPECT_EQ((*store_->LookupKey("h1"))->kind, KeyKind::kApi);
  EXPECT_FALSE(store_->LookupKey("nope")->has_value());
}

// ------------------------------------------------------------- concurrency

// Contract 2: many writers append to one session while readers tail it with
// EventsAfter; no reader ever skips an event, and hooks come in seq order.
TEST_P(StoreConformance, ConcurrentWritersReadersNeverSkip) {
  MakeSession("sesn_1");
  constexpr int kWriters = 6, kPerWriter = 40, kTotal = kWriters * kPerWriter;
  std::mutex hook_mu;
  std::vector<int64_t> hook_seqs;
  std::atomic<bool> done{false};
  std::vector<std::vector<int64_t>> seen(2);
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; r++) {
    readers.emplace_back([&, r] {
      int64_t last = 0;
      for (;;) {
        bool finished = done.load();
        auto evs = store_->EventsAfter("sesn_1", last, 7);
        ASSERT_TRUE(evs.ok());
        for (const auto& e : *evs) {
          seen[r].push_back(e.seq);
          last = e.seq;
        }
        if (finished && evs->empty()) return;
      }
    });
  }
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; w++) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; i++) {
        std::string id = "w" + std::to_string(w) + "_" + std::to_string(i);
        Status s;
        if (i % 2) {
          s = store_->AppendEvents("sesn_1", nullptr, {Ev(id)}, [&](const std::vector<StoredEvent>& evs) {
                    std::lock_guard<std::mutex> l(hook_mu);
                    for (const auto& e : evs) hook_seqs.push_back(e.seq);
                  }).status();
        } else {
          s = store_->StepSession("sesn_1",
                                  [&](const Json& cur, Store::SessionStep* step) -> Result<Json> {
                                    step->append.push_back(Ev(id));
                                    return cur;
                                  },
                                  [&](const std::vector<StoredEvent>& evs) {
                                    std::lock_guard<std::mutex> l(hook_mu);
                                    for (const auto& e : evs) hook_seqs.push_back(e.seq);
                                  })
                  .status();
        }
        ASSERT_TRUE(s.ok()) << s.ToString();
      }
    });
  }
  for (auto& t : writers) t.join();
  done = true;
  for (auto& t : readers) t.join();
  auto all = store_->EventsAfter("sesn_1", 0, 100000);
  ASSERT_EQ(all->size(), static_cast<size_t>(kTotal));
  std::vector<int64_t> expect;
  for (const auto& e : *all) expect.push_back(e.seq);
  EXPECT_TRUE(std::is_sorted(expect.begin(), expect.end()));
  EXPECT_EQ(std::set<int64_t>(expect.begin(), expect.end()).size(), expect.size());
  for (int r = 0; r < 2; r++) EXPECT_EQ(seen[r], expect) << "reader " << r << " skipped or repeated an event";
  EXPECT_EQ(hook_seqs, expect) << "hooks must run in commit (= seq) order";
}

TEST_P(StoreConformance, ConcurrentReadModifyWriteLosesNoUpdate) {
  Json s = Session("sesn_1");
  s["n"] = 0;
  ASSERT_TRUE(store_->CreateSession(s, {}, nullptr).ok());
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++)
    ts.emplace_back([&] {
      for (int i = 0; i < 25; i++)
        ASSERT_TRUE(store_->UpdateSession("sesn_1",
                                          [](const Json& cur, std::vector<Json>*) -> Result<Json> {
                                            Json n = cur;
                                            n["n"] = cur["n"].get<int>() + 1;
                                            return n;
                                          },
                                          nullptr)
                        .ok());
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ((*store_->GetSession("sesn_1"))["n"], 100);
}

TEST_P(StoreConformance, ConcurrentClaimsNeverShareADelivery) {
  for (int i = 0; i < 40; i++) ASSERT_TRUE(store_->CreateWork(Work("work_" + std::to_string(i), "env_1", "")).ok());
  std::mutex mu;
  std::vector<std::string> got;
  std::vector<std::thread> ts;
  const int64_t now = clock_.NowMicros();
  for (int t = 0; t < 4; t++)
    ts.emplace_back([&] {
      for (;;) {
        auto c = store_->ClaimWork("env_1", now, now - 60 * kSec);
        ASSERT_TRUE(c.ok());
        if (!c->has_value()) return;
        std::lock_guard<std::mutex> l(mu);
        got.push_back((*c)->id);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(got.size(), 40u);
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), 40u);
}

// ----------------------------------------------------------------- retries

// Contract 4: a mutating transaction may run its mutator more than once; the
// discarded attempts leave no effect. The store is made with abort_attempts=2.
TEST_P(StoreConformance, RetriedAgentUpdateHasOneEffect) {
  auto store = Make(2);
  ASSERT_TRUE(store->CreateAgent(Agent("agent_a")).ok());
  int runs = 0;
  auto r = store->UpdateAgent("agent_a", [&](const Json& cur) -> Result<Json> {
    runs++;
    EXPECT_EQ(cur["version"], 1) << "every attempt sees the committed state";
    Json n = cur;
    n["version"] = cur["version"].get<int>() + 1;
    return n;
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(runs, 3);
  EXPECT_EQ((*store->GetAgent("agent_a", std::nullopt))["version"], 2);
  EXPECT_EQ(store->ListAgentVersions("agent_a", PageSpec{})->items.size(), 2u);
}

TEST_P(StoreConformance, RetriedStepSessionHasOneEffectAndOneHook) {
  auto store = Make(2);
  ASSERT_TRUE(store->CreateSession(Session("sesn_1"), {Ev("u1", "user.message")}, nullptr).ok());
  int runs = 0, hooks = 0;
  std::vector<StoredEvent> seen;
  auto r = store->StepSession(
      "sesn_1",
      [&](const Json& cur, Store::SessionStep* step) -> Result<Json> {
        runs++;
        EXPECT_TRUE(step->append.empty() && step->replace.empty()) << "fresh step per attempt";
        Json n = cur;
        n["count"] = cur.value("count", 0) + 1;
        step->replace.push_back(Ev("u1", "user.message", Ts()));
        step->append.push_back(Ev("a" + std::to_string(runs)));
        return n;
      },
      [&](const std::vector<StoredEvent>& evs) {
        hooks++;
        seen = evs;
      });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(hooks, 1);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].body["id"], "a3");
  EXPECT_EQ((*store->GetSession("sesn_1"))["count"], 1);
  auto all = store->EventsAfter("sesn_1", 0, 100);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].body["id"], "a3");
  EXPECT_EQ((*all)[1].seq, seen[1].seq);
}

TEST_P(StoreConformance, RetriedUpdateSessionStartsWithEmptyEvents) {
  auto store = Make(2);
  ASSERT_TRUE(store->CreateSession(Session("sesn_1"), {}, nullptr).ok());
  int runs = 0;
  auto r = store->UpdateSession("sesn_1",
                                [&](const Json& cur, std::vector<Json>* events) -> Result<Json> {
                                  runs++;
                                  EXPECT_TRUE(events->empty());
                                  events->push_back(Ev("e" + std::to_string(runs)));
                                  return cur;
                                },
                                nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(runs, 3);
  auto all = store->EventsAfter("sesn_1", 0, 100);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].body["id"], "e3");
}

TEST_P(StoreConformance, RetriedAppendEventsChecksEachAttemptAppendsOnce) {
  auto store = Make(2);
  ASSERT_TRUE(store->CreateSession(Session("sesn_1"), {}, nullptr).ok());
  int checks = 0, hooks = 0;
  auto r = store->AppendEvents("sesn_1",
                               [&](const Json&) {
                                 checks++;
                                 return Status::Ok();
                               },
                               {Ev("e1"), Ev("e2")}, [&](const std::vector<StoredEvent>&) { hooks++; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(checks, 3);
  EXPECT_EQ(hooks, 1);
  EXPECT_EQ(store->EventsAfter("sesn_1", 0, 100)->size(), 2u);
}

TEST_P(StoreConformance, RetriedUpdateWorkHasOneEffect) {
  auto store = Make(2);
  ASSERT_TRUE(store->CreateWork(Work("work_1", "env_1", "sesn_1")).ok());
  ASSERT_TRUE(store->PutKey("tok", KeyRecord{KeyKind::kSession, "env_1", "sesn_1", "work_1"}).ok());
  int runs = 0;
  auto r = store->UpdateWork("work_1", [&](WorkRecord* w) -> Status {
    runs++;
    EXPECT_EQ(w->deliveries, 0);
    w->deliveries++;
    w->state = "stopped";
    return Status::Ok();
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(store->GetWork("work_1")->deliveries, 1);
  EXPECT_FALSE(store->LookupKey("tok")->has_value());
}

TEST_P(StoreConformance, RetriedEnvironmentUpdateHasOneEffect) {
  auto store = Make(2);
  Json env = Env("env_a", "alpha");
  env["n"] = 0;
  ASSERT_TRUE(store->CreateEnvironment(env).ok());
  int runs = 0;
  ASSERT_TRUE(store->UpdateEnvironment("env_a", [&](const Json& cur) -> Result<Json> {
                     runs++;
                     Json n = cur;
                     n["n"] = cur["n"].get<int>() + 1;
                     return n;
                   }).ok());
  EXPECT_EQ(runs, 3);
  EXPECT_EQ((*store->GetEnvironment("env_a"))["n"], 1);
}

TEST_P(StoreConformance, RetriedMutatorErrorAbortsWithNoEffect) {
  auto store = Make(2);
  ASSERT_TRUE(store->CreateSession(Session("sesn_1"), {}, nullptr).ok());
  int runs = 0, hooks = 0;
  auto r = store->StepSession(
      "sesn_1",
      [&](const Json& cur, Store::SessionStep* step) -> Result<Json> {
        if (++runs == 2) return Status::Conflict("changed meanwhile");
        step->append.push_back(Ev("e" + std::to_string(runs)));
        return cur;
      },
      [&](const std::vector<StoredEvent>&) { hooks++; });
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(hooks, 0);
  EXPECT_TRUE(store->EventsAfter("sesn_1", 0, 100)->empty());
}

// -------------------------------------------------------------- work queue

TEST_P(StoreConformance, WorkCreateGetAndNotFound) {
  WorkRecord w = Work("work_1", "env_1", "sesn_1", 123);
  w.ttl_seconds = 30;
  ASSERT_TRUE(store_->CreateWork(w).ok());
  auto g = store_->GetWork("work_1");
  ASSERT_TRUE(g.ok());
  EXPECT_GT(g->seq, 0);
  EXPECT_EQ(g->environment_id, "env_1");
  EXPECT_EQ(g->session_id, "sesn_1");
  EXPECT_EQ(g->state, "queued");
  EXPECT_EQ(g->created_at, 123);
  EXPECT_EQ(g->ttl_seconds, 30);
  EXPECT_FALSE(g->delivered_at.has_value());
  EXPECT_FALSE(g->last_heartbeat.has_value());
  EXPECT_EQ(g->body["id"], "work_1");
  EXPECT_EQ(store_->GetWork("work_zz").status().code(), Code::kNotFound);
  EXPECT_EQ(store_->UpdateWork("work_zz", [](WorkRecord*) { return Status::Ok(); }).status().code(), Code::kNotFound);
  EXPECT_EQ(store_->CreateWork(Work("work_1", "env_1", "")).code(), Code::kConflict);
}

TEST_P(StoreConformance, WorkOneLiveItemPerSession) {
  ASSERT_TRUE(store_->CreateWork(Work("work_1", "env_1", "sesn_1")).ok());
  EXPECT_EQ(store_->CreateWork(Work("work_2", "env_1", "sesn_1")).code(), Code::kConflict);
  ASSERT_TRUE(store_->CreateWork(Work("work_3", "env_1", "")).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_4", "env_1", "")).ok()) << "items without a session are not limited";
  ASSERT_TRUE(store_->UpdateWork("work_1", [](WorkRecord* w) {
                      w->state = "stopping";
                      return Status::Ok();
                    }).ok());
  EXPECT_EQ(store_->CreateWork(Work("work_2", "env_1", "sesn_1")).code(), Code::kConflict) << "stopping is live";
  ASSERT_TRUE(store_->UpdateWork("work_1", [](WorkRecord* w) {
                      w->state = "stopped";
                      return Status::Ok();
                    }).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_2", "env_1", "sesn_1")).ok());
  // Back to live while work_2 is live: conflict, nothing written.
  auto r = store_->UpdateWork("work_1", [](WorkRecord* w) {
    w->state = "queued";
    return Status::Ok();
  });
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_EQ(store_->GetWork("work_1")->state, "stopped");
}

TEST_P(StoreConformance, WorkUpdateKeepsIdentityFieldsAndErrorsWriteNothing) {
  ASSERT_TRUE(store_->CreateWork(Work("work_1", "env_1", "sesn_1", 5)).ok());
  auto r = store_->UpdateWork("work_1", [](WorkRecord* w) {
    w->id = "other";
    w->environment_id = "env_x";
    w->session_id = "sesn_x";
    w->created_at = 999;
    w->seq = 12345;
    w->last_heartbeat = "hb1";
    w->deadline = 77;
    w->body["metadata"] = {{"k", "v"}};
    return Status::Ok();
  });
  ASSERT_TRUE(r.ok());
  auto g = store_->GetWork("work_1");
  EXPECT_EQ(g->environment_id, "env_1");
  EXPECT_EQ(g->session_id, "sesn_1");
  EXPECT_EQ(g->created_at, 5);
  EXPECT_NE(g->seq, 12345);
  EXPECT_EQ(g->last_heartbeat, std::optional<std::string>("hb1"));
  EXPECT_EQ(g->deadline, std::optional<int64_t>(77));
  EXPECT_EQ(g->body["metadata"]["k"], "v");
  EXPECT_EQ(store_->GetWork("other").status().code(), Code::kNotFound);
  auto bad = store_->UpdateWork("work_1", [](WorkRecord* w) {
    w->state = "active";
    return Status::FailedPrecondition("heartbeat mismatch");
  });
  EXPECT_EQ(bad.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(store_->GetWork("work_1")->state, "queued");
}

TEST_P(StoreConformance, WorkClaimOldestFirstAndRedeliver) {
  ASSERT_TRUE(store_->CreateWork(Work("work_1", "env_1", "sesn_1")).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_2", "env_1", "sesn_2")).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_o", "env_2", "sesn_3")).ok());
  const int64_t t = 1000 * kSec;
  auto c1 = store_->ClaimWork("env_1", t, t - 30 * kSec);
  ASSERT_TRUE(c1.ok() && c1->has_value());
  EXPECT_EQ((*c1)->id, "work_1");
  EXPECT_EQ((*c1)->delivered_at, std::optional<int64_t>(t));
  EXPECT_EQ((*c1)->deliveries, 1);
  auto c2 = store_->ClaimWork("env_1", t + kSec, t + kSec - 30 * kSec);
  EXPECT_EQ((*c2)->id, "work_2");
  EXPECT_FALSE(store_->ClaimWork("env_1", t + 2 * kSec, t + 2 * kSec - 30 * kSec)->has_value());
  // Not acknowledged within the window: delivered again, the oldest first.
  auto c3 = store_->ClaimWork("env_1", t + 40 * kSec, t + 10 * kSec);
  EXPECT_EQ((*c3)->id, "work_1");
  EXPECT_EQ((*c3)->deliveries, 2);
  EXPECT_EQ(store_->GetWork("work_1")->deliveries, 2);
  EXPECT_EQ(store_->GetWork("work_1")->delivered_at, std::optional<int64_t>(t + 40 * kSec));
}

TEST_P(StoreConformance, WorkClaimSkipsNonQueuedAndOtherEnvironments) {
  ASSERT_TRUE(store_->CreateWork(Work("work_1", "env_1", "sesn_1")).ok());
  ASSERT_TRUE(store_->UpdateWork("work_1", [](WorkRecord* w) {
                      w->state = "active";
                      return Status::Ok();
                    }).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_2", "env_2", "sesn_2")).ok());
  EXPECT_FALSE(store_->ClaimWork("env_1", 10, 10)->has_value());
  EXPECT_FALSE(store_->ClaimWork("env_zz", 10, 10)->has_value());
}

TEST_P(StoreConformance, WorkSessionTokensRevokedOnStop) {
  ASSERT_TRUE(store_->CreateWork(Work("work_1", "env_1", "sesn_1")).ok());
  ASSERT_TRUE(store_->PutKey("tok_1", KeyRecord{KeyKind::kSession, "env_1", "sesn_1", "work_1"}).ok());
  ASSERT_TRUE(store_->PutKey("tok_other", KeyRecord{KeyKind::kSession, "env_1", "sesn_1", "work_9"}).ok());
  ASSERT_TRUE(store_->PutKey("env_key", KeyRecord{KeyKind::kEnvironment, "env_1", "", ""}).ok());
  ASSERT_TRUE(store_->UpdateWork("work_1", [](WorkRecord* w) {
                      w->state = "starting";
                      return Status::Ok();
                    }).ok());
  EXPECT_TRUE(store_->LookupKey("tok_1")->has_value()) << "acknowledging keeps the token";
  ASSERT_TRUE(store_->UpdateWork("work_1", [](WorkRecord* w) {
                      w->state = "stopped";
                      return Status::Ok();
                    }).ok());
  EXPECT_FALSE(store_->LookupKey("tok_1")->has_value());
  EXPECT_TRUE(store_->LookupKey("tok_other")->has_value());
  EXPECT_TRUE(store_->LookupKey("env_key")->has_value());
}

TEST_P(StoreConformance, WorkSessionTokensRevokedOnLeaseLoss) {
  for (const char* from : {"starting", "active", "stopping"}) {
    std::string id = std::string("work_") + from;
    ASSERT_TRUE(store_->CreateWork(Work(id, "env_1", std::string("sesn_") + from)).ok());
    ASSERT_TRUE(store_->UpdateWork(id, [&](WorkRecord* w) {
                        w->state = from;
                        return Status::Ok();
                      }).ok());
    ASSERT_TRUE(store_->PutKey("tok_" + id, KeyRecord{KeyKind::kSession, "env_1", "", id}).ok());
    ASSERT_TRUE(store_->UpdateWork(id, [](WorkRecord* w) {
                        w->state = "queued";
                        return Status::Ok();
                      }).ok());
    EXPECT_FALSE(store_->LookupKey("tok_" + id)->has_value()) << from;
  }
  // queued -> queued (a redelivery) keeps the token.
  ASSERT_TRUE(store_->CreateWork(Work("work_q", "env_1", "sesn_q")).ok());
  ASSERT_TRUE(store_->PutKey("tok_q", KeyRecord{KeyKind::kSession, "env_1", "sesn_q", "work_q"}).ok());
  ASSERT_TRUE(store_->UpdateWork("work_q", [](WorkRecord* w) {
                      w->deliveries++;
                      return Status::Ok();
                    }).ok());
  EXPECT_TRUE(store_->LookupKey("tok_q")->has_value());
}

TEST_P(StoreConformance, WorkDueByDeadlineStateAndEnvironment) {
  auto lease = [&](const std::string& id, const std::string& env, const std::string& state, int64_t deadline) {
    ASSERT_TRUE(store_->CreateWork(Work(id, env, "")).ok());
    ASSERT_TRUE(store_->UpdateWork(id, [&](WorkRecord* w) {
                        w->state = state;
                        w->deadline = deadline;
                        return Status::Ok();
                      }).ok());
  };
  lease("w_late", "env_1", "active", 300);
  lease("w_early", "env_1", "starting", 100);
  lease("w_stop", "env_2", "stopping", 200);
  lease("w_future", "env_1", "active", 1000);
  lease("w_queued", "env_1", "queued", 50);  // a queued item's deadline is not a lease
  lease("w_tie", "env_1", "active", 300);
  EXPECT_EQ(*store_->DueWork("", 500, 10), (std::vector<std::string>{"w_early", "w_stop", "w_late", "w_tie"}));
  EXPECT_EQ(*store_->DueWork("env_1", 500, 10), (std::vector<std::string>{"w_early", "w_late", "w_tie"}));
  EXPECT_EQ(*store_->DueWork("", 500, 2), (std::vector<std::string>{"w_early", "w_stop"}));
  EXPECT_EQ(*store_->DueWork("", 500, 0), std::vector<std::string>{"w_early"});
  EXPECT_EQ(*store_->DueWork("", 300, 10), (std::vector<std::string>{"w_early", "w_stop"})) << "deadline < now";
}

TEST_P(StoreConformance, WorkUnstoppedForSessionOldestFirst) {
  // Items with another state than `queued` at creation are not live-limited
  // only when stopped; a stopped one first, then two unstopped.
  WorkRecord old = Work("work_0", "env_1", "sesn_1");
  old.state = "stopped";
  ASSERT_TRUE(store_->CreateWork(old).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_a", "env_1", "sesn_1")).ok());
  ASSERT_TRUE(store_->UpdateWork("work_a", [](WorkRecord* w) {
                      w->state = "stopping";
                      return Status::Ok();
                    }).ok());
  WorkRecord b = Work("work_b", "env_1", "sesn_1");
  b.state = "stopped";
  ASSERT_TRUE(store_->CreateWork(b).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_c", "env_1", "sesn_2")).ok());
  ASSERT_TRUE(store_->UpdateWork("work_b", [](WorkRecord* w) {
                      w->state = "queued";  // a stopped item re-queued beside a live one
                      return Status::Ok();
                    }).status().code() == Code::kConflict);
  auto items = store_->UnstoppedWorkForSession("sesn_1");
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].id, "work_a");
  ASSERT_TRUE(store_->UpdateWork("work_a", [](WorkRecord* w) {
                      w->state = "stopped";
                      return Status::Ok();
                    }).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_c2", "env_1", "sesn_1")).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_d", "env_1", "sesn_9")).ok());
  items = store_->UnstoppedWorkForSession("sesn_1");
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].id, "work_c2");
  EXPECT_TRUE(store_->UnstoppedWorkForSession("sesn_zz")->empty());
}

TEST_P(StoreConformance, WorkListPagesByEnvironment) {
  for (int i = 0; i < 5; i++) ASSERT_TRUE(store_->CreateWork(Work("work_" + std::to_string(i), "env_1", "")).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_x", "env_2", "")).ok());
  auto p1 = store_->ListWork("env_1", PageSpec{3, Order::kDesc});
  ASSERT_TRUE(p1.ok());
  EXPECT_EQ(Ids(*p1), (std::vector<std::string>{"work_4", "work_3", "work_2"}));
  EXPECT_TRUE(p1->more_after);
  auto p2 = store_->ListWork("env_1", PageSpec{3, Order::kDesc, p1->seqs.back()});
  EXPECT_EQ(Ids(*p2), (std::vector<std::string>{"work_1", "work_0"}));
  EXPECT_FALSE(p2->more_after);
  EXPECT_TRUE(store_->ListWork("env_zz", PageSpec{})->items.empty());
}

TEST_P(StoreConformance, WorkCountsDepthPendingOldest) {
  ASSERT_TRUE(store_->CreateWork(Work("work_1", "env_1", "", 500)).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_2", "env_1", "", 300)).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_3", "env_1", "", 100)).ok());
  ASSERT_TRUE(store_->UpdateWork("work_3", [](WorkRecord* w) {
                      w->state = "active";
                      return Status::Ok();
                    }).ok());
  ASSERT_TRUE(store_->CreateWork(Work("work_4", "env_2", "", 50)).ok());
  ASSERT_TRUE(store_->ClaimWork("env_1", 1000, 0)->has_value());  // work_1 now pending
  auto c = store_->CountWork("env_1", 0);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->depth, 1);
  EXPECT_EQ(c->pending, 1);
  EXPECT_EQ(c->oldest_queued_at, std::optional<int64_t>(300));
  auto empty = store_->CountWork("env_zz", 0);
  EXPECT_EQ(empty->depth, 0);
  EXPECT_FALSE(empty->oldest_queued_at.has_value());
}

TEST_P(StoreConformance, WorkWorkersPollingWindow) {
  const int64_t t = 100'000 * kSec;
  ASSERT_TRUE(store_->RecordWorkerPoll("env_1", "wk_a", t).ok());
  ASSERT_TRUE(store_->RecordWorkerPoll("env_1", "wk_b", t - 100 * kSec).ok());
  ASSERT_TRUE(store_->RecordWorkerPoll("env_1", "wk_b", t - 200 * kSec).ok());  // an older poll does not win
  ASSERT_TRUE(store_->RecordWorkerPoll("env_2", "wk_c", t).ok());
  EXPECT_EQ(store_->CountWork("env_1", t - 150 * kSec)->workers, 2);
  EXPECT_EQ(store_->CountWork("env_1", t - 50 * kSec)->workers, 1);
  EXPECT_EQ(store_->CountWork("env_2", t - 50 * kSec)->workers, 1);
  EXPECT_EQ(store_->CountWork("env_3", 0)->workers, 0);
}

// The environment's orchestrator: taken when free, renewed by the same id
// (host updated, acquired_at kept, seen_at never goes back), refused to
// another id while the holder is fresh, taken over once it is stale.
TEST_P(StoreConformance, EnvironmentHolderCompareAndSet) {
  const int64_t t = 100'000 * kSec;
  auto hold = [&](const std::string& env, const std::string& id, const std::string& host, int64_t now) {
    auto r = store_->HoldEnvironment(env, id, host, now, now - 30 * kSec);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : EnvironmentHolder();
  };
  // Take a free environment.
  EnvironmentHolder h = hold("env_1", "orch_a", "host-a", t);
  EXPECT_EQ(h.environment_id, "env_1");
  EXPECT_EQ(h.orchestrator_id, "orch_a");
  EXPECT_EQ(h.host, "host-a");
  EXPECT_EQ(h.acquired_at, t);
  EXPECT_EQ(h.seen_at, t);
  // Renew: the same id is always accepted; acquired_at stays.
  h = hold("env_1", "orch_a", "host-a2", t + 10 * kSec);
  EXPECT_EQ(h.orchestrator_id, "orch_a");
  EXPECT_EQ(h.host, "host-a2");
  EXPECT_EQ(h.acquired_at, t);
  EXPECT_EQ(h.seen_at, t + 10 * kSec);
  // An older renewal does not move seen_at back.
  h = hold("env_1", "orch_a", "host-a2", t + 5 * kSec);
  EXPECT_EQ(h.seen_at, t + 10 * kSec);
  // Refused while fresh (seen 29 s ago with a 30 s TTL): the holder is
  // returned unchanged and nothing is written.
  h = hold("env_1", "orch_b", "host-b", t + 39 * kSec);
  EXPECT_EQ(h.orchestrator_id, "orch_a");
  EXPECT_EQ(h.host, "host-a2");
  EXPECT_EQ(h.seen_at, t + 10 * kSec);
  // The same id is accepted even long after (an upgrade on the same data dir).
  h = hold("env_1", "orch_a", "host-a", t + 30 * kSec);
  EXPECT_EQ(h.orchestrator_id, "orch_a");
  EXPECT_EQ(h.seen_at, t + 30 * kSec);
  // Exactly at the TTL the holder is still fresh (stale = seen before
  // now - TTL); one microsecond later it is taken over.
  h = hold("env_1", "orch_b", "host-b", t + 60 * kSec);
  EXPECT_EQ(h.orchestrator_id, "orch_a");
  h = hold("env_1", "orch_b", "host-b", t + 60 * kSec + 1);
  EXPECT_EQ(h.orchestrator_id, "orch_b");
  EXPECT_EQ(h.host, "host-b");
  EXPECT_EQ(h.acquired_at, t + 60 * kSec + 1);
  EXPECT_EQ(h.seen_at, t + 60 * kSec + 1);
  // Now the old holder is the one refused.
  h = hold("env_1", "orch_a", "host-a", t + 61 * kSec);
  EXPECT_EQ(h.orchestrator_id, "orch_b");
  // Environments are independent.
  h = hold("env_2", "orch_a", "host-a", t + 61 * kSec);
  EXPECT_EQ(h.orchestrator_id, "orch_a");
  EXPECT_EQ(h.acquired_at, t + 61 * kSec);
}

// Deleting an environment forgets its holder: a later orchestrator takes a
// re-used id at once instead of waiting out the old holder's TTL, and no row
// is left behind per deleted environment.
TEST_P(StoreConformance, DeletedEnvironmentForgetsItsHolder) {
  const int64_t t = 100'000 * kSec;
  ASSERT_TRUE(store_->CreateEnvironment(Env("env_h", "holder")).ok());
  auto held = store_->HoldEnvironment("env_h", "orch_a", "host-a", t, t - 30 * kSec);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_EQ(held->orchestrator_id, "orch_a");
  // While orch_a is fresh, orch_b is refused.
  EXPECT_EQ(store_->HoldEnvironment("env_h", "orch_b", "host-b", t + kSec, t - 29 * kSec)->orchestrator_id, "orch_a");
  ASSERT_TRUE(store_->DeleteEnvironment("env_h").ok());
  // Still fresh by time, but the record went with the environment.
  held = store_->HoldEnvironment("env_h", "orch_b", "host-b", t + 2 * kSec, t - 28 * kSec);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_EQ(held->orchestrator_id, "orch_b");
  EXPECT_EQ(held->acquired_at, t + 2 * kSec);
}

// The engine's state and transcript ride in StepSession's transaction: the
// record is replaced, rows are appended, a duplicate row aborts the whole
// step (nothing of it kept), and both go with the session. Secrets too.
TEST_P(StoreConformance, EngineStateTranscriptAndSecretsFollowTheSession) {
  MakeSession("sesn_e");
  EXPECT_FALSE(store_->GetEngineState("sesn_e")->has_value());
  EXPECT_EQ(store_->GetEngineState("sesn_missing").status().code(), Code::kNotFound);
  auto step = [&](int64_t first_idx, int rows, const std::string& phase) {
    return store_->StepSession(
        "sesn_e",
        [&](const Json& cur, Store::SessionStep* out) -> Result<Json> {
          EngineRecord r = out->engine_in.value_or(EngineRecord());
          r.phase = phase;
          r.consumed_seq += 1;
          for (int i = 0; i < rows; i++)
            out->transcript.push_back({first_idx + i, i % 2 ? "assistant" : "user",
                                       Json::array({{{"type", "text"}, {"text", "m" + std::to_string(first_idx + i)}}})});
          r.transcript_next = first_idx + rows;
          out->engine = r;
          return cur;
        },
        nullptr);
  };
  ASSERT_TRUE(step(0, 2, "model").ok());
  ASSERT_TRUE(step(2, 1, "tools").ok());
  EXPECT_EQ(step(2, 1, "idle").status().code(), Code::kConflict);
  auto st = store_->GetEngineState("sesn_e");
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_EQ((*st)->phase, "tools");
  EXPECT_EQ((*st)->consumed_seq, 2);
  EXPECT_EQ((*st)->transcript_next, 3);
  auto rows = store_->ReadTranscript("sesn_e", 1, 10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].role, "assistant");
  EXPECT_EQ((*rows)[1].content[0]["text"], "m2");
  EXPECT_EQ(store_->ReadTranscript("sesn_e", 0, 1)->size(), 1u);
  ASSERT_TRUE(store_->PutSessionSecrets("sesn_e", {{"a", std::string("x\0y", 3)}}).ok());
  EXPECT_EQ(store_->GetSessionSecrets("sesn_e")->at("a"), std::string("x\0y", 3));
  ASSERT_TRUE(store_->DeleteSession("sesn_e").ok());
  MakeSession("sesn_e");
  EXPECT_FALSE(store_->GetEngineState("sesn_e")->has_value());
  EXPECT_TRUE(store_->ReadTranscript("sesn_e", 0, 10)->empty());
  EXPECT_TRUE(store_->GetSessionSecrets("sesn_e")->empty());
}

// ------------------------------------------------------------------ webhook outbox

namespace {
// One message per event of a type ending in "_w", for two endpoints; plus
// the session.created / session.deleted pseudo events.
OutboxRule TestRule() {
  return [](const std::string& session_id, const Json& event) {
    std::vector<OutboxMessage> out;
    const std::string type = event.value("type", "");
    const bool wanted = type == "session.created" || type == "session.deleted" ||
                        (type.size() > 2 && type.substr(type.size() - 2) == "_w");
    if (!wanted) return out;
    const std::string id = "msg_" + session_id + "_" + (event.contains("id") ? event["id"].get<std::string>() : type);
    for (const char* ep : {"a", "b"}) out.push_back(OutboxMessage{id, ep, type, session_id, "{\"id\":\"" + id + "\"}"});
    return out;
  };
}
}  // namespace

TEST_P(StoreConformance, OutboxRowsCommitWithTheirEvents) {
  store_->SetOutboxRule(TestRule());
  MakeSession("sesn_1");
  ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("e1", "x_w"), Ev("e2", "agent.message")}, nullptr).ok());
  // A failed transaction leaves no outbox row.
  auto dup = store_->AppendEvents("sesn_1", nullptr, {Ev("e3", "y_w"), Ev("e1", "x_w")}, nullptr);
  EXPECT_FALSE(dup.ok());
  ASSERT_TRUE(store_->StepSession("sesn_1", [&](const Json& cur, Store::SessionStep* step) -> Result<Json> {
    step->append.push_back(Ev("e4", "z_w"));
    return cur;
  }, nullptr).ok());
  ASSERT_TRUE(store_->DeleteSession("sesn_1").ok());
  PageSpec all;
  all.limit = 100;
  all.order = Order::kAsc;
  auto page = store_->ListDeliveries({}, all);
  ASSERT_TRUE(page.ok());
  std::vector<std::string> got;
  for (const Json& j : page->items) got.push_back(j["webhook_id"].get<std::string>() + "/" + j["endpoint"].get<std::string>());
  EXPECT_EQ(got, (std::vector<std::string>{"msg_sesn_1_session.created/a", "msg_sesn_1_session.created/b", "msg_sesn_1_e1/a",
                                           "msg_sesn_1_e1/b", "msg_sesn_1_e4/a", "msg_sesn_1_e4/b",
                                           "msg_sesn_1_session.deleted/a", "msg_sesn_1_session.deleted/b"}));
  auto only_b = store_->ListDeliveries({"b", "", ""}, all);
  ASSERT_TRUE(only_b.ok());
  EXPECT_EQ(only_b->items.size(), 4u);
  auto one = store_->ListDeliveries({"", "", "msg_sesn_1_e4"}, all);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->items.size(), 2u);
  EXPECT_EQ(one->items[0]["state"], "pending");
  EXPECT_EQ(one->items[0]["attempts"], 0);
}

TEST_P(StoreConformance, OutboxRowsSurviveRetriedTransactionsOnce) {
  auto store = Make(2);
  ASSERT_NE(store, nullptr);
  store->SetOutboxRule(TestRule());
  ASSERT_TRUE(store->CreateSession(Session("sesn_r"), {}, nullptr).ok());
  ASSERT_TRUE(store->AppendEvents("sesn_r", nullptr, {Ev("e1", "x_w")}, nullptr).ok());
  auto page = store->ListDeliveries({}, PageSpec{100, Order::kAsc, std::nullopt, std::nullopt});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->items.size(), 4u);  // created x2, e1 x2: none doubled by the retries
}

TEST_P(StoreConformance, OutboxClaimLeaseAndFinish) {
  store_->SetOutboxRule(TestRule());
  MakeSession("sesn_1");
  const int64_t now = clock_.NowMicros();
  auto c1 = store_->ClaimDeliveries(now, now + 10 * kSec, 1);
  ASSERT_TRUE(c1.ok());
  ASSERT_EQ(c1->size(), 1u);
  auto c2 = store_->ClaimDeliveries(now, now + 10 * kSec, 10);
  ASSERT_TRUE(c2.ok());
  ASSERT_EQ(c2->size(), 1u);  // the other endpoint's row only
  EXPECT_NE((*c1)[0].seq, (*c2)[0].seq);
  EXPECT_TRUE(store_->ClaimDeliveries(now, now + 10 * kSec, 10)->empty());
  // Claimed rows are due again when the lease ends.
  auto again = store_->ClaimDeliveries(now + 10 * kSec, now + 20 * kSec, 10);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 2u);
  DeliveryAttempt fail;
  fail.status = 503;
  fail.error = "HTTP 503";
  fail.at = now + 11 * kSec;
  fail.retry_at = now + 15 * kSec;
  auto f = store_->FinishDelivery((*c1)[0].seq, fail);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->delivery.state, "pending");
  EXPECT_EQ(f->delivery.attempts, 1);
  EXPECT_EQ(f->delivery.next_attempt_at, now + 15 * kSec);
  EXPECT_EQ(f->endpoint.consecutive_failures, 1);
  EXPECT_FALSE(f->disabled_endpoint);
  DeliveryAttempt ok;
  ok.delivered = true;
  ok.status = 200;
  ok.at = now + 16 * kSec;
  auto d = store_->FinishDelivery((*c1)[0].seq, ok);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->delivery.state, "delivered");
  EXPECT_EQ(d->delivery.attempts, 2);
  EXPECT_EQ(d->endpoint.consecutive_failures, 0);
  EXPECT_EQ(store_->FinishDelivery((*c1)[0].seq, ok).status().code(), Code::kConflict);
  DeliveryAttempt give_up;
  give_up.at = now + 16 * kSec;
  give_up.error = "connection refused";
  auto g = store_->FinishDelivery((*c2)[0].seq, give_up);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->delivery.state, "failed");
  EXPECT_EQ(store_->FinishDelivery(999999, ok).status().code(), Code::kNotFound);
  auto got = store_->GetDelivery((*c1)[0].seq);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->message.payload, (*c1)[0].message.payload);
  EXPECT_EQ(got->ToJson()["delivered_at"], FormatRfc3339(now + 16 * kSec));
  EXPECT_TRUE(store_->ClaimDeliveries(now + 100 * kSec, now + 200 * kSec, 10)->empty());
}

namespace {
// Records every object change as one message for endpoint "a", whose id
// names the change.
ObjectOutboxRule TestObjectRule() {
  return [](const ObjectChange& c) {
    const std::string id = c.type + "/" + c.id + (c.parent_id.empty() ? "" : "@" + c.parent_id) +
                           (c.change_id.empty() ? "" : "#");
    return std::vector<OutboxMessage>{OutboxMessage{id + (c.change_id.empty() ? "" : c.change_id), "a", c.type, "",
                                                    "{}", c.id}};
  };
}

// The object changes in the outbox, in order, without their change ids.
std::vector<std::string> ObjectChanges(Store* store) {
  PageSpec all;
  all.limit = 1000;
  all.order = Order::kAsc;
  auto page = store->ListDeliveries({}, all);
  EXPECT_TRUE(page.ok());
  std::vector<std::string> out;
  if (!page.ok()) return out;
  for (const Json& j : page->items) {
    std::string id = j["webhook_id"].get<std::string>();
    if (auto h = id.find('#'); h != std::string::npos) id = id.substr(0, h + 1);
    out.push_back(id);
  }
  return out;
}
}  // namespace

TEST_P(StoreConformance, ObjectChangesCommitWithTheirWrites) {
  store_->SetObjectOutboxRule(TestObjectRule());
  store_->SetOutboxRule(TestRule());
  auto set = [](const char* field, Json value) {
    return [field, value](const Json& cur) -> Result<Json> {
      Json next = cur;
      next[field] = value;
      return next;
    };
  };
  // Agents: created; a new version is an update; an in-place rewrite
  // reports nothing; archival; a failed write reports nothing.
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_1")).ok());
  EXPECT_FALSE(store_->CreateAgent(Agent("agent_1")).ok());
  ASSERT_TRUE(store_->UpdateAgent("agent_1", [](const Json& cur) -> Result<Json> {
    Json next = cur;
    next["version"] = 2;
    next["name"] = "b";
    return next;
  }).ok());
  ASSERT_TRUE(store_->UpdateAgent("agent_1", set("description", "in place")).ok());
  ASSERT_TRUE(store_->UpdateAgent("agent_1", set("archived_at", Ts())).ok());
  ASSERT_TRUE(store_->UpdateAgent("agent_1", [](const Json& cur) -> Result<Json> { return cur; }).ok());
  // Environments.
  ASSERT_TRUE(store_->CreateEnvironment(Env("env_1", "one")).ok());
  ASSERT_TRUE(store_->UpdateEnvironment("env_1", set("description", "x")).ok());
  ASSERT_TRUE(store_->UpdateEnvironment("env_1", set("description", "y")).ok());
  EXPECT_FALSE(store_->UpdateEnvironment("env_1", [](const Json&) -> Result<Json> {
    return Status::Conflict("no");
  }).ok());
  ASSERT_TRUE(store_->UpdateEnvironment("env_1", set("archived_at", Ts())).ok());
  ASSERT_TRUE(store_->DeleteEnvironment("env_1").ok());
  EXPECT_FALSE(store_->DeleteEnvironment("env_1").ok());
  // Vaults and credentials: updates other than archival report nothing.
  ASSERT_TRUE(store_->CreateVault({{"id", "vlt_1"}, {"archived_at", nullptr}}).ok());
  ASSERT_TRUE(store_->UpdateVault("vlt_1", set("display_name", "v")).ok());
  ASSERT_TRUE(store_->CreateCredential({{{"id", "vcrd_1"}, {"vault_id", "vlt_1"}, {"archived_at", nullptr}}, "s1"}, 20).ok());
  ASSERT_TRUE(store_->UpdateCredential("vlt_1", "vcrd_1", [](CredentialRecord* r) {
    r->sealed = "s2";
    return Status::Ok();
  }).ok());
  ASSERT_TRUE(store_->UpdateCredential("vlt_1", "vcrd_1", [&](CredentialRecord* r) {
    r->body["archived_at"] = Ts();
    return Status::Ok();
  }).ok());
  ASSERT_TRUE(store_->DeleteCredential("vlt_1", "vcrd_1").ok());
  ASSERT_TRUE(store_->UpdateVault("vlt_1", set("archived_at", Ts())).ok());
  ASSERT_TRUE(store_->DeleteVault("vlt_1").ok());
  // A change with no write of its own.
  ASSERT_TRUE(store_->RecordObjectChange({"vault_credential.refresh_failed", "vcrd_2", "vlt_2", "c1", Ts()}).ok());
  ASSERT_TRUE(store_->RecordObjectChange({"vault_credential.refresh_failed", "vcrd_2", "vlt_2", "c2", Ts()}).ok());
  // Session archival goes through the event rule as a pseudo event.
  store_->SetOutboxRule([](const std::string& sid, const Json& ev) {
    std::vector<OutboxMessage> out;
    if (ev.value("type", "") == "session.archived")
      out.push_back(OutboxMessage{"session.archived/" + sid + "/" + ev.value("processed_at", ""), "a",
                                  "session.archived", sid, "{}"});
    return out;
  });
  MakeSession("sesn_1");
  const std::string archived_at = Ts();
  ASSERT_TRUE(store_->UpdateSession("sesn_1", [&](const Json& cur, std::vector<Json>*) -> Result<Json> {
    Json next = cur;
    next["archived_at"] = archived_at;
    return next;
  }, nullptr).ok());
  ASSERT_TRUE(store_->UpdateSession("sesn_1", [&](const Json& cur, std::vector<Json>*) -> Result<Json> {
    Json next = cur;
    next["status"] = "idle";
    return next;
  }, nullptr).ok());
  EXPECT_EQ(ObjectChanges(store_.get()),
            (std::vector<std::string>{"agent.created/agent_1", "agent.updated/agent_1#", "agent.archived/agent_1",
                                      "environment.created/env_1", "environment.updated/env_1#",
                                      "environment.updated/env_1#", "environment.archived/env_1",
                                      "environment.deleted/env_1", "vault.created/vlt_1",
                                      "vault_credential.created/vcrd_1@vlt_1", "vault_credential.archived/vcrd_1@vlt_1",
                                      "vault_credential.deleted/vcrd_1@vlt_1", "vault.archived/vlt_1",
                                      "vault.deleted/vlt_1", "vault_credential.refresh_failed/vcrd_2@vlt_2#",
                                      "vault_credential.refresh_failed/vcrd_2@vlt_2#",
                                      "session.archived/sesn_1/" + archived_at}));
  // Each update is its own message; agent updates are told apart by version.
  PageSpec all{1000, Order::kAsc, std::nullopt, std::nullopt};
  auto page = store_->ListDeliveries({}, all);
  ASSERT_TRUE(page.ok());
  std::set<std::string> ids;
  for (const Json& j : page->items) ids.insert(j["webhook_id"].get<std::string>());
  EXPECT_EQ(ids.size(), page->items.size());
  EXPECT_TRUE(ids.count("agent.updated/agent_1#v2"));
  EXPECT_EQ(page->items[0]["object_id"], "agent_1");
}

// Deleting a vault deletes its credentials, archived or not, and reports
// each of them in the same transaction, then the vault.
TEST_P(StoreConformance, DeletingAVaultReportsEachOfItsCredentials) {
  store_->SetObjectOutboxRule(TestObjectRule());
  ASSERT_TRUE(store_->CreateVault({{"id", "vlt_d"}, {"archived_at", nullptr}}).ok());
  ASSERT_TRUE(store_->CreateVault({{"id", "vlt_other"}, {"archived_at", nullptr}}).ok());
  ASSERT_TRUE(store_->CreateCredential({{{"id", "vcrd_b"}, {"vault_id", "vlt_d"}, {"archived_at", nullptr}}, "s"}, 20).ok());
  ASSERT_TRUE(store_->CreateCredential({{{"id", "vcrd_a"}, {"vault_id", "vlt_d"}, {"archived_at", Ts()}}, "s"}, 20).ok());
  ASSERT_TRUE(store_->CreateCredential({{{"id", "vcrd_o"}, {"vault_id", "vlt_other"}, {"archived_at", nullptr}}, "s"}, 20).ok());
  ASSERT_TRUE(store_->DeleteVault("vlt_d").ok());
  EXPECT_EQ(ObjectChanges(store_.get()),
            (std::vector<std::string>{"vault.created/vlt_d", "vault.created/vlt_other", "vault_credential.created/vcrd_b@vlt_d",
                                      "vault_credential.created/vcrd_a@vlt_d", "vault_credential.created/vcrd_o@vlt_other",
                                      "vault_credential.deleted/vcrd_a@vlt_d", "vault_credential.deleted/vcrd_b@vlt_d",
                                      "vault.deleted/vlt_d"}));
  EXPECT_TRUE(store_->GetCredential("vlt_other", "vcrd_o").ok());
  EXPECT_EQ(store_->GetCredential("vlt_d", "vcrd_a").status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, ObjectChangesSurviveRetriedTransactionsOnce) {
  auto store = Make(2);
  ASSERT_NE(store, nullptr);
  store->SetObjectOutboxRule(TestObjectRule());
  ASSERT_TRUE(store->CreateAgent(Agent("agent_r")).ok());
  ASSERT_TRUE(store->CreateEnvironment(Env("env_r", "r")).ok());
  ASSERT_TRUE(store->UpdateEnvironment("env_r", [](const Json& cur) -> Result<Json> {
    Json next = cur;
    next["description"] = "changed";
    return next;
  }).ok());
  ASSERT_TRUE(store->CreateVault({{"id", "vlt_r"}, {"archived_at", nullptr}}).ok());
  EXPECT_EQ(ObjectChanges(store.get()),
            (std::vector<std::string>{"agent.created/agent_r", "environment.created/env_r", "environment.updated/env_r#",
                                      "vault.created/vlt_r"}));
}

TEST_P(StoreConformance, OutboxListenerHearsCommitsThatAddRows) {
  store_->SetOutboxRule(TestRule());
  std::atomic<int> heard{0};
  store_->SetOutboxListener([&] { heard++; });
  MakeSession("sesn_1");  // session.created rows
  EXPECT_EQ(heard.load(), 1);
  ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("e1", "agent.message")}, nullptr).ok());
  EXPECT_EQ(heard.load(), 1);  // no rows, no call
  EXPECT_FALSE(store_->AppendEvents("sesn_1", nullptr, {Ev("e2", "x_w"), Ev("e1", "x_w")}, nullptr).ok());
  EXPECT_EQ(heard.load(), 1);  // a failed transaction: no call
  ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("e3", "x_w")}, nullptr).ok());
  EXPECT_EQ(heard.load(), 2);
  store_->SetObjectOutboxRule(TestObjectRule());
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_1")).ok());
  EXPECT_EQ(heard.load(), 3);
  store_->SetOutboxListener({});
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_2")).ok());
  EXPECT_EQ(heard.load(), 3);
}

TEST_P(StoreConformance, AFailingEndpointIsDisabledAndItsRowsHeldUntilEnabled) {
  store_->SetOutboxRule(TestRule());
  MakeSession("sesn_1");  // session.created for endpoints a and b
  ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("e1", "x_w")}, nullptr).ok());
  const int64_t now = clock_.NowMicros();
  auto claimed = store_->ClaimDeliveries(now, now + 10 * kSec, 10);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 4u);
  std::vector<int64_t> a_rows;
  for (const auto& d : *claimed)
    if (d.message.endpoint == "a") a_rows.push_back(d.seq);
  ASSERT_EQ(a_rows.size(), 2u);
  DeliveryAttempt fail;
  fail.status = 503;
  fail.error = "HTTP 503";
  fail.at = now + kSec;
  fail.retry_at = now + 2 * kSec;
  fail.disable_endpoint_after = 2;
  auto f1 = store_->FinishDelivery(a_rows[0], fail);
  ASSERT_TRUE(f1.ok());
  EXPECT_FALSE(f1->disabled_endpoint);
  EXPECT_EQ(f1->delivery.next_attempt_at, now + 2 * kSec);
  // The second consecutive failure of endpoint a (another row) disables it:
  // its row is held, not failed, even with no retry left.
  fail.retry_at.reset();
  auto f2 = store_->FinishDelivery(a_rows[1], fail);
  ASSERT_TRUE(f2.ok());
  EXPECT_TRUE(f2->disabled_endpoint);
  EXPECT_EQ(f2->endpoint.consecutive_failures, 2);
  EXPECT_EQ(f2->endpoint.disabled_at, now + kSec);
  EXPECT_EQ(f2->delivery.state, "pending");
  EXPECT_TRUE(f2->delivery.held());
  EXPECT_TRUE(f2->delivery.ToJson()["next_attempt_at"].is_null());
  auto states = store_->ListEndpointStates();
  ASSERT_TRUE(states.ok());
  ASSERT_EQ(states->size(), 1u);
  EXPECT_EQ((*states)[0].name, "a");
  EXPECT_TRUE((*states)[0].disabled_at.has_value());
  // New rows of a are written, and never claimed while it is disabled; b's are.
  ASSERT_TRUE(store_->AppendEvents("sesn_1", nullptr, {Ev("e2", "x_w")}, nullptr).ok());
  auto later = store_->ClaimDeliveries(now + 100 * kSec, now + 110 * kSec, 10);
  ASSERT_TRUE(later.ok());
  for (const auto& d : *later) EXPECT_EQ(d.message.endpoint, "b");
  // b's two claimed rows (lease ended) and its new one.
  EXPECT_EQ(later->size(), 3u);
  // Held rows are not "due": the next due time is b's lease.
  auto due = store_->NextDeliveryDue();
  ASSERT_TRUE(due.ok());
  ASSERT_TRUE(due->has_value());
  EXPECT_EQ(**due, now + 110 * kSec);
  auto held = store_->ListDeliveries({"a", "pending", ""}, PageSpec{100, Order::kAsc, std::nullopt, std::nullopt});
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held->items.size(), 3u);
  for (const Json& j : held->items) EXPECT_TRUE(j["next_attempt_at"].is_null()) << j.dump();
  // Enable: every held row of a is due at once; the count starts afresh.
  auto en = store_->EnableEndpoint("a", now + 200 * kSec);
  ASSERT_TRUE(en.ok());
  EXPECT_FALSE(en->disabled_at.has_value());
  EXPECT_EQ(en->consecutive_failures, 0);
  auto again = store_->ClaimDeliveries(now + 200 * kSec, now + 210 * kSec, 10);
  ASSERT_TRUE(again.ok());
  int a_claimed = 0;
  for (const auto& d : *again) a_claimed += d.message.endpoint == "a";
  EXPECT_EQ(a_claimed, 3);
  DeliveryAttempt ok;
  ok.delivered = true;
  ok.status = 204;
  ok.at = now + 201 * kSec;
  ok.disable_endpoint_after = 2;
  for (const auto& d : *again) {
    auto r = store_->FinishDelivery(d.seq, ok);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->delivery.state, "delivered");
  }
  EXPECT_EQ(store_->ListDeliveries({"", "pending", ""}, PageSpec{})->items.size(), 0u);
  // Enabling an endpoint without a state is a no-op that answers a fresh state.
  auto fresh = store_->EnableEndpoint("never_failed", now);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->consecutive_failures, 0);
}

TEST_P(StoreConformance, PruneDeletesOldFinishedRowsNeverPendingOnes) {
  store_->SetOutboxRule(TestRule());
  for (int i = 0; i < 5; i++) MakeSession("sesn_" + std::to_string(i));  // 10 rows
  const int64_t t0 = clock_.NowMicros();
  auto claimed = store_->ClaimDeliveries(t0, t0 + kSec, 100);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 10u);
  // 4 delivered at t0+1s, 2 failed at t0+2s, 2 delivered at t0+50s, 2 left pending.
  for (size_t i = 0; i < 8; i++) {
    DeliveryAttempt a;
    a.at = t0 + (i < 4 ? 1 : i < 6 ? 2 : 50) * kSec;
    a.delivered = i < 4 || i >= 6;
    a.status = a.delivered ? 200 : 500;
    ASSERT_TRUE(store_->FinishDelivery((*claimed)[i].seq, a).ok());
  }
  auto n = store_->PruneDeliveries(t0 + 10 * kSec, 3);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3);
  n = store_->PruneDeliveries(t0 + 10 * kSec, 3);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3);
  n = store_->PruneDeliveries(t0 + 10 * kSec, 3);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
  PageSpec all{100, Order::kAsc, std::nullopt, std::nullopt};
  auto left = store_->ListDeliveries({}, all);
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->items.size(), 4u);
  EXPECT_EQ(store_->ListDeliveries({"", "pending", ""}, all)->items.size(), 2u);
  EXPECT_EQ(store_->ListDeliveries({"", "delivered", ""}, all)->items.size(), 2u);
  // Even a cut-off in the far future never takes a pending row.
  ASSERT_TRUE(store_->PruneDeliveries(t0 + 1000 * kSec, 100).ok());
  EXPECT_EQ(store_->ListDeliveries({"", "pending", ""}, all)->items.size(), 2u);
  EXPECT_EQ(store_->ListDeliveries({}, all)->items.size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(
    Stores, StoreConformance,
    ::testing::Values(
        StoreFactory{"Sqlite",
                     [](const std::string& dir, Clock* clock, int abort_attempts) -> Result<std::unique_ptr<Store>> {
                       SqliteOptions o;
                       o.path = dir + "/warren.db";
                       o.synchronous = "NORMAL";
                       o.abort_attempts = abort_attempts;
                       auto s = SqliteStore::Open(o, clock);
                       if (!s.ok()) return s.status();
                       return std::unique_ptr<Store>(std::move(s).value());
                     }},
        StoreFactory{"Memory",
                     [](const std::string&, Clock* clock, int abort_attempts) -> Result<std::unique_ptr<Store>> {
                       return std::unique_ptr<Store>(std::make_unique<MemoryStore>(clock, MemoryStoreOptions{abort_attempts}));
                     }}),
    [](const ::testing::TestParamInfo<StoreFactory>& info) { return info.param.name; });

}  // namespace
}  // namespace warren::store
