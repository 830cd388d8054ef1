#include "store/sqlite_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/clock.h"

namespace warren::store {
namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/warren_store_XXXXXX";
    dir_ = mkdtemp(tmpl);
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto r = SqliteStore::Open({dir_ + "/warren.db"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    store_ = std::move(r).value();
  }
  static Json Agent(const std::string& id, int version = 1) {
    return Json{{"id", id}, {"type", "agent"}, {"name", "a"}, {"version", version},
                {"created_at", FormatRfc3339(Clock::Real()->NowMicros())}, {"archived_at", nullptr}};
  }
  static Json Session(const std::string& id, const std::string& env, const std::string& status = "idle") {
    return Json{{"id", id},
                {"type", "session"},
                {"status", status},
                {"environment_id", env},
                {"agent", {{"id", "agent_1"}, {"version", 1}}},
                {"resources", Json::array({{{"type", "memory_store"}, {"memory_store_id", "memstore_x"}}})},
                {"created_at", FormatRfc3339(Clock::Real()->NowMicros())},
                {"archived_at", nullptr}};
  }
  static Json Event(const std::string& id, const std::string& type) {
    return Json{{"id", id}, {"type", type}, {"processed_at", nullptr}};
  }
  std::string dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(SqliteStoreTest, AgentVersions) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  auto up = store_->UpdateAgent("agent_a", [](const Json& cur) -> Result<Json> {
    Json n = cur;
    n["version"] = cur["version"].get<int>() + 1;
    n["name"] = "b";
    return n;
  });
  ASSERT_TRUE(up.ok());
  EXPECT_EQ((*store_->GetAgent("agent_a", std::nullopt))["version"], 2);
  EXPECT_EQ((*store_->GetAgent("agent_a", 1))["name"], "a");
  EXPECT_EQ((*store_->GetAgent("agent_a", 2))["name"], "b");
  EXPECT_EQ(store_->GetAgent("agent_a", 3).status().code(), Code::kNotFound);
  EXPECT_EQ(store_->GetAgent("agent_zz", std::nullopt).status().code(), Code::kNotFound);
  auto versions = store_->ListAgentVersions("agent_a", PageSpec{10, Order::kAsc});
  ASSERT_TRUE(versions.ok());
  ASSERT_EQ(versions->items.size(), 2u);
  EXPECT_EQ(versions->items[0]["version"], 1);
}

TEST_F(SqliteStoreTest, FailedMutatorWritesNothing) {
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_a")).ok());
  auto up = store_->UpdateAgent("agent_a", [](const Json&) -> Result<Json> { return Status::Conflict("stale"); });
  EXPECT_EQ(up.status().code(), Code::kConflict);
  EXPECT_EQ((*store_->GetAgent("agent_a", std::nullopt))["version"], 1);
}

TEST_F(SqliteStoreTest, PagingBothDirections) {
  for (int i = 0; i < 7; i++) ASSERT_TRUE(store_->CreateAgent(Agent("agent_" + std::to_string(i))).ok());
  PageSpec spec{3, Order::kDesc};
  auto p1 = store_->ListAgents({}, spec);
  ASSERT_TRUE(p1.ok());
  ASSERT_EQ(p1->items.size(), 3u);
  EXPECT_EQ(p1->items[0]["id"], "agent_6");
  EXPECT_TRUE(p1->more_after);
  EXPECT_FALSE(p1->more_before);
  spec.after = p1->seqs.back();
  auto p2 = store_->ListAgents({}, spec);
  ASSERT_EQ(p2->items[0]["id"], "agent_3");
  EXPECT_TRUE(p2->more_after);
  EXPECT_TRUE(p2->more_before);
  spec.after = p2->seqs.back();
  auto p3 = store_->ListAgents({}, spec);
  ASSERT_EQ(p3->items.size(), 1u);
  EXPECT_EQ(p3->items[0]["id"], "agent_0");
  EXPECT_FALSE(p3->more_after);
  // Back from page 3 gives page 2 again.
  PageSpec back{3, Order::kDesc};
  back.before = p3->seqs.front();
  auto b2 = store_->ListAgents({}, back);
  ASSERT_EQ(b2->items.size(), 3u);
  EXPECT_EQ(b2->items[0]["id"], "agent_3");
  EXPECT_EQ(b2->items[2]["id"], "agent_1");
  EXPECT_TRUE(b2->more_before);
  EXPECT_TRUE(b2->more_after);
}

TEST_F(SqliteStoreTest, EnvironmentNamesUnique) {
  Json env{{"id", "env_1"}, {"name", "prod"}, {"archived_at", nullptr}};
  ASSERT_TRUE(store_->CreateEnvironment(env).ok());
  env["id"] = "env_2";
  EXPECT_EQ(store_->CreateEnvironment(env).code(), Code::kConflict);
  ASSERT_TRUE(store_->DeleteEnvironment("env_1").ok());
  EXPECT_TRUE(store_->CreateEnvironment(env).ok());
  EXPECT_EQ(store_->DeleteEnvironment("env_1").code(), Code::kNotFound);
}

TEST_F(SqliteStoreTest, SessionsFiltersAndEvents) {
  std::vector<StoredEvent> published;
  auto hook = [&](const std::vector<StoredEvent>& evs) { published.insert(published.end(), evs.begin(), evs.end()); };
  ASSERT_TRUE(store_->CreateSession(Session("sesn_1", "env_a"), {Event("sevt_1", "user.message")}, hook).ok());
  ASSERT_TRUE(store_->CreateSession(Session("sesn_2", "env_b", "running"), {}, hook).ok());
  EXPECT_EQ(published.size(), 1u);
  SessionFilter f;
  f.environment_id = "env_a";
  EXPECT_EQ(store_->ListSessions(f, {})->items.size(), 1u);
  SessionFilter g;
  g.statuses = {"running", "terminated"};
  auto running = store_->ListSessions(g, {});
  ASSERT_EQ(running->items.size(), 1u);
  EXPECT_EQ(running->items[0]["id"], "sesn_2");
  SessionFilter m;
  m.memory_store_id = "memstore_x";
  EXPECT_EQ(store_->ListSessions(m, {})->items.size(), 2u);
  m.memory_store_id = "memstore_y";
  EXPECT_EQ(store_->ListSessions(m, {})->items.size(), 0u);

  auto app = store_->AppendEvents("sesn_1", nullptr,
                                  {Event("sevt_2", "user.message"), Event("sevt_3", "user.interrupt")}, hook);
  ASSERT_TRUE(app.ok());
  EXPECT_LT(published[0].seq, published[1].seq);
  EXPECT_LT(published[1].seq, published[2].seq);
  EventFilter types;
  types.types = {"user.interrupt"};
  EXPECT_EQ(store_->ListEvents("sesn_1", types, PageSpec{10, Order::kAsc})->items.size(), 1u);
  auto all = store_->ListEvents("sesn_1", {}, PageSpec{10, Order::kAsc});
  ASSERT_EQ(all->items.size(), 3u);
  EXPECT_EQ(all->items[0]["id"], "sevt_1");
  auto after = store_->EventsAfter("sesn_1", published[0].seq, 10);
  ASSERT_EQ(after->size(), 2u);
  EXPECT_EQ((*store_->GetEvent("sesn_1", "sevt_2"))->seq, published[1].seq);
  EXPECT_FALSE(store_->GetEvent("sesn_1", "sevt_nope")->has_value());

  // A rejected check appends nothing.
  auto rejected = store_->AppendEvents(
      "sesn_1", [](const Json&) { return Status::Conflict("archived"); }, {Event("sevt_4", "user.message")}, hook);
  EXPECT_EQ(rejected.status().code(), Code::kConflict);
  EXPECT_EQ(store_->ListEvents("sesn_1", {}, {})->items.size(), 3u);
  // Duplicate event ids are refused atomically.
  auto dup = store_->AppendEvents("sesn_1", nullptr, {Event("sevt_5", "user.message"), Event("sevt_1", "x")}, hook);
  EXPECT_FALSE(dup.ok());
  EXPECT_EQ(store_->ListEvents("sesn_1", {}, {})->items.size(), 3u);

  ASSERT_TRUE(store_->DeleteSession("sesn_1").ok());
  EXPECT_EQ(store_->GetSession("sesn_1").status().code(), Code::kNotFound);
  EXPECT_EQ(store_->EventsAfter("sesn_1", 0, 10)->size(), 0u);
}

TEST_F(SqliteStoreTest, SurvivesReopenAndKeys) {
  ASSERT_TRUE(store_->PutKey("hash1", KeyRecord{KeyKind::kEnvironment, "env_1", "", ""}).ok());
  ASSERT_TRUE(store_->CreateAgent(Agent("agent_p")).ok());
  int version = store_->schema_version();
  EXPECT_GE(version, 1);
  Reopen();
  EXPECT_EQ(store_->schema_version(), version);  // migrations are applied once
  auto k = store_->LookupKey("hash1");
  ASSERT_TRUE(k.ok() && k->has_value());
  EXPECT_EQ((*k)->kind, KeyKind::kEnvironment);
  EXPECT_EQ((*k)->environment_id, "env_1");
  EXPECT_FALSE(store_->LookupKey("nope")->has_value());
  EXPECT_EQ(*store_->CountKeys(KeyKind::kEnvironment), 1);
  EXPECT_TRUE(store_->GetAgent("agent_p", std::nullopt).ok());
}

// The engine's state and transcript ride in StepSession's transaction: the
// record is replaced, rows are appended, a duplicate row aborts the whole
// step, and they survive a reopen and go with the session.
TEST_F(SqliteStoreTest, EngineStateAndTranscript) {
  ASSERT_TRUE(store_->CreateSession(Session("sesn_e", "env_a"), {}, nullptr).ok());
  auto none = store_->GetEngineState("sesn_e");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
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
          r.pending = Json::array({{{"event_id", "sevt_1"}}});
          out->engine = r;
          return cur;
        },
        nullptr);
  };
  ASSERT_TRUE(step(0, 2, "model").ok());
  ASSERT_TRUE(step(2, 1, "tools").ok());
  // A row that exists already: Conflict, and nothing of the step is kept.
  auto dup = step(2, 1, "idle");
  EXPECT_EQ(dup.status().code(), Code::kConflict);
  Reopen();
  auto st = store_->GetEngineState("sesn_e");
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_EQ((*st)->phase, "tools");
  EXPECT_EQ((*st)->consumed_seq, 2);
  EXPECT_EQ((*st)->transcript_next, 3);
  EXPECT_EQ((*st)->pending[0]["event_id"], "sevt_1");
  auto rows = store_->ReadTranscript("sesn_e", 1, 10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].idx, 1);
  EXPECT_EQ((*rows)[0].role, "assistant");
  EXPECT_EQ((*rows)[1].content[0]["text"], "m2");
  ASSERT_TRUE(store_->DeleteSession("sesn_e").ok());
  ASSERT_TRUE(store_->CreateSession(Session("sesn_e", "env_a"), {}, nullptr).ok());
  EXPECT_FALSE(store_->GetEngineState("sesn_e")->has_value());
  EXPECT_TRUE(store_->ReadTranscript("sesn_e", 0, 10)->empty());
}

// Sealed session secrets: opaque bytes (any byte value) kept apart from the
// session's JSON, replaced by name, removed with the session.
TEST_F(SqliteStoreTest, SessionSecrets) {
  ASSERT_TRUE(store_->PutSessionSecrets("sesn_s", {{"sesrsc_1", std::string("w1\0\xff\x01sealed", 11)}}).ok());
  ASSERT_TRUE(store_->CreateSession(Session("sesn_s", "env_a"), {}, nullptr).ok());
  ASSERT_TRUE(store_->PutSessionSecrets("sesn_s", {{"sesrsc_2", "two"}}).ok());
  Reopen();
  auto got = store_->GetSessionSecrets("sesn_s");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ(got->at("sesrsc_1"), std::string("w1\0\xff\x01sealed", 11));
  EXPECT_EQ(got->at("sesrsc_2"), "two");
  EXPECT_EQ(store_->GetSession("sesn_s")->dump().find("sealed"), std::string::npos);
  ASSERT_TRUE(store_->DeleteSession("sesn_s").ok());
  EXPECT_TRUE(store_->GetSessionSecrets("sesn_s")->empty());
}

// Issue 13: a tool call is answered at most once, decided inside
// AppendEvents' transaction.
TEST_F(SqliteStoreTest, AToolCallIsAnsweredAtMostOnce) {
  ASSERT_TRUE(store_->CreateSession(Session("sesn_a", "env_1"), {}, nullptr).ok());
  auto answer = [](const std::string& id, const char* type, const char* field, const std::string& call) {
    Json e = Event(id, type);
    e[field] = call;
    return e;
  };
  ASSERT_TRUE(store_->AppendEvents("sesn_a", nullptr, {Event("sevt_use", "agent.tool_use")}, nullptr).ok());
  ASSERT_TRUE(store_->AppendEvents("sesn_a", nullptr, {answer("sevt_r1", "user.tool_result", "tool_use_id", "sevt_use")},
                                   nullptr).ok());
  auto again = store_->AppendEvents(
      "sesn_a", nullptr,
      {Event("sevt_m", "user.message"), answer("sevt_r2", "user.tool_result", "tool_use_id", "sevt_use")}, nullptr);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kConflict);
  EXPECT_EQ(again.status().detail_code(), kAlreadyAnswered);
  EXPECT_FALSE((*store_->GetEvent("sesn_a", "sevt_m")).has_value()) << "nothing of the request is appended";
  // Twice in one request.
  auto twice = store_->AppendEvents("sesn_a", nullptr,
                                    {answer("sevt_c1", "user.custom_tool_result", "custom_tool_use_id", "sevt_cu"),
                                     answer("sevt_c2", "user.custom_tool_result", "custom_tool_use_id", "sevt_cu")},
                                    nullptr);
  EXPECT_EQ(twice.status().detail_code(), kAlreadyAnswered);
  // Answers are per call, per answer type and per session.
  EXPECT_TRUE(store_->AppendEvents("sesn_a", nullptr,
                                   {answer("sevt_c3", "user.custom_tool_result", "custom_tool_use_id", "sevt_use")},
                                   nullptr).ok());
  ASSERT_TRUE(store_->CreateSession(Session("sesn_b", "env_1"), {}, nullptr).ok());
  EXPECT_TRUE(store_->AppendEvents("sesn_b", nullptr, {answer("sevt_r1", "user.tool_result", "tool_use_id", "sevt_use")},
                                   nullptr).ok());
  // And it survives a reopen (the check reads the table, not memory).
  Reopen();
  EXPECT_EQ(store_->AppendEvents("sesn_a", nullptr, {answer("sevt_r3", "user.tool_result", "tool_use_id", "sevt_use")},
                                 nullptr).status().detail_code(),
            kAlreadyAnswered);
}

}  // namespace
}  // namespace warren::store
