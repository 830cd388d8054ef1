// SQLite-specific behaviour: durability across reopen, migrations and their
// backfill, and the index use of scheduling queries. The behaviour every
// Store shares is tested by store_conformance_test.cc.
#include "store/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <cstdio>
#include <cstdlib>

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
    auto r = SqliteStore::Open({dir_ + "/warren.db"}, &clock_);
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
  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<SqliteStore> store_;
};

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

TEST_F(SqliteStoreTest, OpenRequiresAClock) {
  auto r = SqliteStore::Open({dir_ + "/other.db"}, nullptr);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST_F(SqliteStoreTest, MigrationTimestampsComeFromTheInjectedClock) {
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/warren.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT MIN(applied_at), MAX(applied_at) FROM schema_migrations", -1, &st, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), clock_.NowMicros());
  EXPECT_EQ(sqlite3_column_int64(st, 1), clock_.NowMicros());
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// A database as schema 4 left it: migration 5 backfills the
// scheduling columns from the JSON bodies.
TEST_F(SqliteStoreTest, Migration5BackfillsSchedulingColumns) {
  store_.reset();
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  SqliteOptions v3{dir_ + "/warren.db"};
  v3.migrate_to = 4;
  {
    auto old = SqliteStore::Open(v3, &clock_);
    ASSERT_TRUE(old.ok()) << old.status().ToString();
    EXPECT_EQ((*old)->schema_version(), 4);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/warren.db").c_str(), &db), SQLITE_OK);
  const char* rows = R"sql(
INSERT INTO sessions (id, environment_id, agent_id, agent_version, status, created_at, body) VALUES
  ('s_idle', 'e', 'a', 1, 'idle', 1, '{"id":"s_idle","resources":[{"type":"memory_store","memory_store_id":"ms_1"},"odd",{"type":"file"}]}'),
  ('s_user', 'e', 'a', 1, 'idle', 2, '{"id":"s_user","resources":{"not":"an array"}}'),
  ('s_run', 'e', 'a', 1, 'running', 3, '{"id":"s_run"}'),
  ('s_done', 'e', 'a', 1, 'idle', 4, '{"id":"s_done","resources":[{"memory_store_id":"ms_1"},{"memory_store_id":"ms_2"}]}');
INSERT INTO events (session_id, id, type, ts, body) VALUES
  ('s_user', 'u1', 'user.message', 1, '{"id":"u1","type":"user.message","processed_at":null}'),
  ('s_done', 'u2', 'user.message', 1, '{"id":"u2","type":"user.message","processed_at":"2026-01-01T00:00:00Z"}'),
  ('s_idle', 'a1', 'agent.message', 1, '{"id":"a1","type":"agent.message","processed_at":null}');
)sql";
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, rows, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(db);
  Reopen();
  EXPECT_GE(store_->schema_version(), 5);
  auto need = store_->SessionsNeedingEngine();
  ASSERT_TRUE(need.ok());
  std::vector<std::string> ids = *need;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"s_run", "s_user"}));
  SessionFilter m;
  m.memory_store_id = "ms_1";
  auto p = store_->ListSessions(m, PageSpec{10, Order::kAsc});
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->items.size(), 2u);
  EXPECT_EQ(p->items[0]["id"], "s_idle");
  EXPECT_EQ(p->items[1]["id"], "s_done");
  m.memory_store_id = "ms_2";
  EXPECT_EQ(store_->ListSessions(m, PageSpec{})->items.size(), 1u);
}

// The scheduling queries are served by indexes: every statement they run is
// checked with EXPLAIN QUERY PLAN, and no plan step may scan a whole table.
TEST_F(SqliteStoreTest, SchedulingQueriesUseIndexes) {
  // Some rows, so the planner's choice is the one a live database gets.
  for (int i = 0; i < 50; i++) {
    std::string sid = "sesn_" + std::to_string(i);
    ASSERT_TRUE(store_->CreateSession(Session(sid, "env_" + std::to_string(i % 3), i % 5 ? "idle" : "running"),
                                      {Event("e_" + sid, i % 2 ? "user.message" : "agent.message")}, nullptr)
                    .ok());
    WorkRecord w;
    w.id = "work_" + std::to_string(i);
    w.environment_id = "env_" + std::to_string(i % 3);
    w.session_id = sid;
    w.state = "queued";
    w.body = {{"id", w.id}};
    ASSERT_TRUE(store_->CreateWork(w).ok());
  }
  std::vector<std::string> sql;
  store_->TraceStatements(&sql);
  ASSERT_TRUE(store_->SessionsNeedingEngine().ok());
  SessionFilter running;
  running.statuses = {"running", "rescheduling"};
  ASSERT_TRUE(store_->ListSessions(running, PageSpec{}).ok());
  SessionFilter live;  // the default list: not archived, newest first
  ASSERT_TRUE(store_->ListSessions(live, PageSpec{}).ok());
  SessionFilter mem;
  mem.memory_store_id = "memstore_x";
  ASSERT_TRUE(store_->ListSessions(mem, PageSpec{}).ok());
  SessionFilter by_env;  // an environment key's view
  by_env.environment_id = "env_1";
  ASSERT_TRUE(store_->ListSessions(by_env, PageSpec{}).ok());
  SessionFilter by_agent;
  by_agent.agent_id = "agent_1";
  ASSERT_TRUE(store_->ListSessions(by_agent, PageSpec{}).ok());
  ASSERT_TRUE(store_->ListAgents(AgentFilter{}, PageSpec{}).ok());
  ASSERT_TRUE(store_->ListEnvironments(false, PageSpec{}).ok());
  ASSERT_TRUE(store_->ClaimWork("env_1", 1000, 0).ok());
  ASSERT_TRUE(store_->DueWork("", 1000, 10).ok());
  ASSERT_TRUE(store_->DueWork("env_1", 1000, 10).ok());
  ASSERT_TRUE(store_->CountWork("env_1", 0).ok());
  ASSERT_TRUE(store_->UnstoppedWorkForSession("sesn_1").ok());
  ASSERT_TRUE(store_->UpdateWork("work_1", [](WorkRecord* w) {
                      w->state = "stopped";
                      return Status::Ok();
                    }).ok());
  ASSERT_TRUE(store_->EventsAfter("sesn_1", 0, 10).ok());
  ASSERT_TRUE(store_->DeleteSession("sesn_2").ok());
  store_->TraceStatements(nullptr);
  ASSERT_GT(sql.size(), 15u);
  int checked = 0;
  for (const std::string& q : sql) {
    if (q.rfind("BEGIN", 0) == 0 || q.rfind("COMMIT", 0) == 0 || q.rfind("ROLLBACK", 0) == 0) continue;
    auto plan = store_->ExplainQueryPlan(q);
    ASSERT_TRUE(plan.ok()) << q << ": " << plan.status().ToString();
    checked++;
    if (std::getenv("WARREN_PRINT_PLANS")) {
      std::fprintf(stderr, "%s\n", q.c_str());
      for (const std::string& step : *plan) std::fprintf(stderr, "    %s\n", step.c_str());
    }
    for (const std::string& step : *plan) {
      // "SCAN t" without an index reads every row of t.
      bool full_scan = step.rfind("SCAN ", 0) == 0 && step.find(" USING ") == std::string::npos;
      EXPECT_FALSE(full_scan) << "full table scan: " << step << "\n  in: " << q;
    }
  }
  EXPECT_GT(checked, 15);
  // The queries that matter most, by name.
  auto plan_of = [&](const std::string& needle) {
    for (const std::string& q : sql)
      if (q.find(needle) != std::string::npos) {
        auto plan = store_->ExplainQueryPlan(q);
        std::string all;
        if (plan.ok())
          for (const std::string& s : *plan) all += s + "\n";
        return all;
      }
    return std::string("(not run)");
  };
  EXPECT_NE(plan_of("awaiting_engine = 1").find("events_awaiting_engine"), std::string::npos)
      << plan_of("awaiting_engine = 1");
  EXPECT_NE(plan_of("status IN ('running', 'rescheduling')").find("sessions_by_status"), std::string::npos);
  EXPECT_NE(plan_of("state = 'queued' AND").find("work_by_env_state"), std::string::npos);
  EXPECT_NE(plan_of("memory_store_id = ?").find("session_memory_stores"), std::string::npos);
  EXPECT_NE(plan_of("AND environment_id = ? ORDER BY").find("sessions_by_env_live"), std::string::npos)
      << plan_of("AND environment_id = ? ORDER BY");
}

// A database as schema 9 left it, with outbox rows: migration 10 keeps
// them (object_id = their session) and they are claimed and delivered as
// before; the outbox queries are served by indexes.
TEST_F(SqliteStoreTest, Migration10KeepsOutboxRowsAndOutboxQueriesUseIndexes) {
  store_.reset();
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  SqliteOptions v9{dir_ + "/warren.db"};
  v9.migrate_to = 9;
  {
    auto old = SqliteStore::Open(v9, &clock_);
    ASSERT_TRUE(old.ok()) << old.status().ToString();
    EXPECT_EQ((*old)->schema_version(), 9);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/warren.db").c_str(), &db), SQLITE_OK);
  const std::string now = std::to_string(clock_.NowMicros());
  const std::string rows =
      "INSERT INTO webhook_outbox (message_id, endpoint, event_type, session_id, payload, created_at, next_attempt_at) "
      "VALUES ('event_1', 'ops', 'session.created', 'sesn_old', '{}', " + now + ", " + now + ");";
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, rows.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(db);
  Reopen();
  EXPECT_GE(store_->schema_version(), 10);
  for (int i = 0; i < 30; i++)
    ASSERT_TRUE(store_->RecordObjectChange({"x", "obj", "", std::to_string(i), ""}).ok());  // no rule: no rows
  store_->SetObjectOutboxRule([](const ObjectChange& c) {
    return std::vector<OutboxMessage>{OutboxMessage{"event_" + c.change_id, "ops", c.type, "", "{}", c.id}};
  });
  for (int i = 0; i < 30; i++)
    ASSERT_TRUE(store_->RecordObjectChange({"agent.created", "agent_" + std::to_string(i), "", std::to_string(i), ""}).ok());
  std::vector<std::string> sql;
  store_->TraceStatements(&sql);
  const int64_t t = clock_.NowMicros();
  auto claimed = store_->ClaimDeliveries(t, t + 1'000'000, 5);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 5u);
  EXPECT_EQ((*claimed)[0].message.object_id, "sesn_old");
  EXPECT_EQ((*claimed)[0].ToJson()["object_id"], "sesn_old");
  EXPECT_EQ((*claimed)[1].message.object_id, "agent_0");
  DeliveryAttempt ok;
  ok.delivered = true;
  ok.at = t;
  ASSERT_TRUE(store_->FinishDelivery((*claimed)[0].seq, ok).ok());
  ASSERT_TRUE(store_->NextDeliveryDue().ok());
  ASSERT_TRUE(store_->PruneDeliveries(t + 1, 10).ok());
  ASSERT_TRUE(store_->EnableEndpoint("ops", t).ok());
  store_->TraceStatements(nullptr);
  EXPECT_FALSE(store_->GetDelivery((*claimed)[0].seq).ok());  // pruned
  int checked = 0;
  for (const std::string& q : sql) {
    if (q.find("webhook_outbox") == std::string::npos) continue;
    auto plan = store_->ExplainQueryPlan(q);
    ASSERT_TRUE(plan.ok()) << q;
    checked++;
    for (const std::string& step : *plan) {
      bool full_scan = step.rfind("SCAN ", 0) == 0 && step.find(" USING ") == std::string::npos;
      EXPECT_FALSE(full_scan) << "full table scan: " << step << "\n  in: " << q;
    }
    if (q.find("DELETE FROM webhook_outbox") != std::string::npos) {
      std::string all;
      for (const std::string& step : *plan) all += step + "\n";
      EXPECT_NE(all.find("webhook_outbox_finished"), std::string::npos) << all;
    }
  }
  EXPECT_GE(checked, 6);
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
