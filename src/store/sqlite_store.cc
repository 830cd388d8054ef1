#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <set>
#include <variant>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "store/row_util.h"

namespace warren::store {
namespace {

using internal::ArchivedFlag;
using internal::AwaitingEngine;
using internal::IntField;
using internal::MemoryStoresOf;
using internal::StrField;
using internal::TimeOf;
using internal::TimeStrOf;
using internal::UpdateChangeType;

using Param = std::variant<int64_t, std::string, std::nullptr_t>;

Status SqlError(sqlite3* db, std::string_view what) {
  int code = sqlite3_extended_errcode(db);
  std::string msg = std::string(what) + ": " + sqlite3_errmsg(db);
  if ((code & 0xff) == SQLITE_CONSTRAINT) return Status::Conflict(msg);
  if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED) return Status::Unavailable(msg);
  return Status::IOError(msg);
}

// RAII prepared statement.
class Stmt final {
 public:
  Stmt(sqlite3* db, std::string_view sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &st_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status prepared() const { return rc_ == SQLITE_OK ? Status::Ok() : SqlError(db_, "prepare"); }
  Stmt& Bind(const std::vector<Param>& params) {
    for (size_t i = 0; i < params.size(); i++) BindOne(static_cast<int>(i + 1), params[i]);
    return *this;
  }
  void BindOne(int idx, const Param& p) {
    if (auto* i = std::get_if<int64_t>(&p)) sqlite3_bind_int64(st_, idx, *i);
    else if (auto* s = std::get_if<std::string>(&p)) sqlite3_bind_text(st_, idx, s->data(), static_cast<int>(s->size()), SQLITE_TRANSIENT);
    else sqlite3_bind_null(st_, idx);
  }
  // SQLITE_ROW -> true, SQLITE_DONE -> false, else error.
  Result<bool> Step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqlError(db_, "step");
  }
  Status Exec() {
    auto r = Step();
    return r.ok() ? Status::Ok() : r.status();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(st_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
  std::string Text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st_, col))) : std::string();
  }
  sqlite3_stmt* raw() { return st_; }
  Result<Json> JsonCol(int col) const {
    return ParseJson(Text(col), 256);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
  int rc_;
};

Status ExecSql(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown";
    sqlite3_free(err);
    return Status::IOError(std::string("sql: ") + msg);
  }
  return Status::Ok();
}

// A write transaction: BEGIN IMMEDIATE, ROLLBACK unless committed.
class Txn final {
 public:
  explicit Txn(sqlite3* db) : db_(db) { status_ = ExecSql(db, "BEGIN IMMEDIATE"); }
  ~Txn() {
    if (status_.ok() && !done_) (void)ExecSql(db_, "ROLLBACK");
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  const Status& status() const { return status_; }
  Status Commit() {
    done_ = true;
    Status s = ExecSql(db_, "COMMIT");
    if (!s.ok()) (void)ExecSql(db_, "ROLLBACK");
    return s;
  }

 private:
  sqlite3* db_;
  Status status_;
  bool done_ = false;
};

// Schema migrations, applied in order; never edit a shipped entry.
const char* const kMigrations[] = {
    // 1: initial schema
    R"sql(
CREATE TABLE agents (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  version INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  archived INTEGER NOT NULL DEFAULT 0,
  body TEXT NOT NULL);
CREATE TABLE agent_versions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  body TEXT NOT NULL,
  UNIQUE (agent_id, version));
CREATE TABLE environments (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  archived INTEGER NOT NULL DEFAULT 0,
  body TEXT NOT NULL);
CREATE TABLE sessions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  environment_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  agent_version INTEGER NOT NULL,
  status TEXT NOT NULL,
  deployment_id TEXT,
  created_at INTEGER NOT NULL,
  archived INTEGER NOT NULL DEFAULT 0,
  body TEXT NOT NULL);
CREATE INDEX sessions_by_env ON sessions (environment_id, seq);
CREATE INDEX sessions_by_agent ON sessions (agent_id, seq);
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id TEXT NOT NULL,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  ts INTEGER NOT NULL,
  body TEXT NOT NULL);
CREATE INDEX events_by_session ON events (session_id, seq);
CREATE UNIQUE INDEX events_by_id ON events (session_id, id);
CREATE TABLE keys (
  hash TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  environment_id TEXT,
  session_id TEXT,
  work_id TEXT,
  created_at INTEGER NOT NULL);
)sql",
    // 2: self-hosted work queue (spec 3.3). One row per work item; the
    // scheduling columns are authoritative, `body` is the public Work object.
    // At most one live (queued/starting/active) item per session, enforced
    // by a partial unique index.
    R"sql(
CREATE TABLE work_items (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  environment_id TEXT NOT NULL,
  session_id TEXT,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  delivered_at INTEGER,
  deliveries INTEGER NOT NULL DEFAULT 0,
  deadline INTEGER,
  last_heartbeat TEXT,
  ttl_seconds INTEGER NOT NULL,
  body TEXT NOT NULL);
CREATE INDEX work_by_env ON work_items (environment_id, seq);
CREATE INDEX work_by_env_state ON work_items (environment_id, state, seq);
CREATE INDEX work_by_session ON work_items (session_id);
CREATE INDEX work_by_deadline ON work_items (deadline) WHERE deadline IS NOT NULL;
CREATE UNIQUE INDEX work_live_per_session ON work_items (session_id)
  WHERE session_id IS NOT NULL AND state IN ('queued', 'starting', 'active');
CREATE TABLE work_workers (
  environment_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  last_poll_at INTEGER NOT NULL,
  PRIMARY KEY (environment_id, worker_id));
)sql",
    // 3: sessions tokens are revoked by work item (UpdateWork).
    R"sql(
CREATE INDEX keys_work ON keys(work_id) WHERE work_id IS NOT NULL;
)sql",
    // 4: delivery under crashes (issue 13).
    // - An item in `stopping` is still its session's live item: its holder
    //   works until its next heartbeat. Rows that the old rule let pile up
    //   (a stopping item beside a newer live one) are completed first.
    // - Answers to tool calls are looked up by the call they answer, so that
    //   AppendEvents can refuse a second answer inside its transaction.
    R"sql(
DELETE FROM keys WHERE kind = 'session' AND work_id IN (
  SELECT w.id FROM work_items w WHERE w.state = 'stopping' AND w.session_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM work_items o WHERE o.session_id = w.session_id AND o.seq > w.seq
      AND o.state IN ('queued', 'starting', 'active', 'stopping')));
UPDATE work_items SET state = 'stopped', deadline = NULL,
  body = json_set(body, '$.state', 'stopped', '$.stopped_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
  WHERE state = 'stopping' AND session_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM work_items o WHERE o.session_id = work_items.session_id AND o.seq > work_items.seq
      AND o.state IN ('queued', 'starting', 'active', 'stopping'));
DROP INDEX work_live_per_session;
CREATE UNIQUE INDEX work_live_per_session ON work_items (session_id)
  WHERE session_id IS NOT NULL AND state IN ('queued', 'starting', 'active', 'stopping');
CREATE INDEX events_tool_answers ON events (session_id, json_extract(body, '$.tool_use_id'))
  WHERE type = 'user.tool_result';
CREATE INDEX events_custom_answers ON events (session_id, json_extract(body, '$.custom_tool_use_id'))
  WHERE type = 'user.custom_tool_result';
)sql",
    // 5: the engine's typed state (one row of columns per session) and its
    // append-only transcript. Sessions stepped by older binaries keep their
    // state in the session body ("_engine"); the engine moves it here at its
    // next step of that session (engine.cc, MigrateLegacyState).
    R"sql(
CREATE TABLE engine_state (
  session_id TEXT PRIMARY KEY,
  phase TEXT NOT NULL,
  consumed_seq INTEGER NOT NULL,
  model_request_start_id TEXT NOT NULL,
  calls_this_turn INTEGER NOT NULL,
  cost_micros INTEGER NOT NULL,
  transcript_base INTEGER NOT NULL,
  transcript_next INTEGER NOT NULL,
  summary TEXT NOT NULL,
  pending TEXT NOT NULL
);
CREATE TABLE transcript (
  session_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  PRIMARY KEY (session_id, idx)
) WITHOUT ROWID;
)sql",
    // 6: session secrets, sealed by the caller (hex of the sealed bytes).
    R"sql(
CREATE TABLE session_secrets (
  session_id TEXT NOT NULL,
  name TEXT NOT NULL,
  sealed TEXT NOT NULL,
  PRIMARY KEY (session_id, name)
) WITHOUT ROWID;
)sql",
    // 7: scheduling and filters read columns, never JSON bodies (store.h
    // contract). `awaiting_engine` marks client events (user.*,
    // system.message) whose processed_at is null; memory stores of a
    // session's resources get their own table. Backfilled from the bodies.
    R"sql(
ALTER TABLE events ADD COLUMN awaiting_engine INTEGER NOT NULL DEFAULT 0;
UPDATE events SET awaiting_engine = 1
  WHERE (type LIKE 'user.%' OR type = 'system.message') AND json_extract(body, '$.processed_at') IS NULL;
CREATE INDEX events_awaiting_engine ON events (session_id) WHERE awaiting_engine = 1;
CREATE INDEX sessions_by_status ON sessions (status, seq);
CREATE INDEX sessions_live ON sessions (archived, seq);
CREATE INDEX sessions_by_env_live ON sessions (environment_id, archived, seq);
CREATE INDEX sessions_by_agent_live ON sessions (agent_id, archived, seq);
CREATE INDEX agents_live ON agents (archived, seq);
CREATE INDEX environments_live ON environments (archived, seq);
CREATE TABLE session_memory_stores (
  memory_store_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  PRIMARY KEY (memory_store_id, session_id)) WITHOUT ROWID;
CREATE INDEX session_memory_stores_by_session ON session_memory_stores (session_id);
INSERT OR IGNORE INTO session_memory_stores (memory_store_id, session_id)
  SELECT m, id FROM (
    SELECT CASE WHEN r.type = 'object' THEN json_extract(r.value, '$.memory_store_id') END AS m, s.id AS id
    FROM sessions s, json_each(s.body, '$.resources') r)
  WHERE typeof(m) = 'text';
CREATE INDEX keys_by_session ON keys (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX keys_by_environment ON keys (environment_id) WHERE environment_id IS NOT NULL;
CREATE INDEX keys_by_kind ON keys (kind);
)sql",
    // 8: vaults and their credentials (spec 6). A credential's secrets are
    // sealed by the caller (hex of the sealed bytes); `body` never holds one.
    R"sql(
CREATE TABLE vaults (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  archived INTEGER NOT NULL DEFAULT 0,
  body TEXT NOT NULL);
CREATE INDEX vaults_live ON vaults (archived, seq);
CREATE TABLE vault_credentials (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  vault_id TEXT NOT NULL,
  archived INTEGER NOT NULL DEFAULT 0,
  body TEXT NOT NULL,
  sealed TEXT NOT NULL);
CREATE INDEX vault_credentials_by_vault ON vault_credentials (vault_id, archived, seq);
)sql",
    // 9: the outgoing webhooks outbox (webhooks_out/, docs/WEBHOOKS.md): one
    // row per (message, endpoint), written in the transaction of the event
    // that caused it; `next_attempt_at` is the due time or a claim's lease.
    R"sql(
CREATE TABLE webhook_outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  event_type TEXT NOT NULL,
  session_id TEXT NOT NULL DEFAULT '',
  payload TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  last_attempt_at INTEGER,
  delivered_at INTEGER,
  last_status INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  UNIQUE (message_id, endpoint)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, seq) WHERE state = 'pending';
CREATE INDEX webhook_outbox_by_endpoint ON webhook_outbox (endpoint, seq);
CREATE INDEX webhook_outbox_by_state ON webhook_outbox (state, seq);
)sql",
    // 10: webhooks for objects without an event log (agents, environments,
    // vaults, credentials: `object_id` is the envelope's data.id), endpoint
    // auto-disable state (spec 3.8), and the index the retention pruning
    // walks (finished rows by their last attempt).
    R"sql(
ALTER TABLE webhook_outbox ADD COLUMN object_id TEXT NOT NULL DEFAULT '';
UPDATE webhook_outbox SET object_id = session_id;
CREATE TABLE webhook_endpoints (
  name TEXT PRIMARY KEY,
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  disabled_at INTEGER
);
CREATE INDEX webhook_outbox_finished ON webhook_outbox (state, last_attempt_at);
)sql",
    // 11: the one orchestrator that serves an environment (an exclusive,
    // expiring holder record; docs/ORCHESTRATOR.md "Several orchestrators").
    // A later session -> host affinity can key it by (environment, host).
    R"sql(
CREATE TABLE environment_holders (
  environment_id TEXT PRIMARY KEY,
  orchestrator_id TEXT NOT NULL,
  host TEXT NOT NULL DEFAULT '',
  acquired_at INTEGER NOT NULL,
  seen_at INTEGER NOT NULL);
)sql"
};

std::string KindName(KeyKind k) {
  switch (k) {
    case KeyKind::kApi: return "api";
    case KeyKind::kEnvironment: return "environment";
    case KeyKind::kSession: return "session";
  }
  return "api";
}

void AddRange(const TimeRange& r, const std::string& col, std::string* where, std::vector<Param>* params) {
  if (r.gt) { *where += " AND " + col + " > ?"; params->push_back(*r.gt); }
  if (r.gte) { *where += " AND " + col + " >= ?"; params->push_back(*r.gte); }
  if (r.lt) { *where += " AND " + col + " < ?"; params->push_back(*r.lt); }
  if (r.lte) { *where += " AND " + col + " <= ?"; params->push_back(*r.lte); }
}

// Runs a paged query over `table` with `where` (starting with "1=1").
Result<Page> QueryPage(sqlite3* db, const std::string& table, const std::string& where,
                       const std::vector<Param>& params, const PageSpec& spec, int body_col_json = 1) {
  const bool desc = spec.order == Order::kDesc;
  int limit = std::clamp(spec.limit, 1, 1000);
  std::string sql = "SELECT seq, body FROM " + table + " WHERE " + where;
  std::vector<Param> p = params;
  bool backwards = false;
  if (spec.after) {
    sql += desc ? " AND seq < ?" : " AND seq > ?";
    p.push_back(*spec.after);
  } else if (spec.before) {
    sql += desc ? " AND seq > ?" : " AND seq < ?";
    p.push_back(*spec.before);
    backwards = true;
  }
  bool asc_scan = desc == backwards;  // scan direction
  sql += asc_scan ? " ORDER BY seq ASC" : " ORDER BY seq DESC";
  sql += " LIMIT " + std::to_string(limit + 1);
  Stmt st(db, sql);
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind(p);
  Page page;
  std::vector<std::pair<int64_t, std::string>> rows;
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    rows.emplace_back(st.Int(0), st.Text(1));
  }
  bool extra = rows.size() > static_cast<size_t>(limit);
  if (extra) rows.pop_back();
  if (backwards) std::reverse(rows.begin(), rows.end());
  for (auto& [seq, body] : rows) {
    WARREN_ASSIGN_OR_RETURN(Json j, ParseJson(body, 256));
    page.items.push_back(std::move(j));
    page.seqs.push_back(seq);
  }
  (void)body_col_json;
  if (rows.empty()) {
    page.more_after = false;
    page.more_before = false;
    if (spec.before) page.more_after = true;
    if (spec.after) page.more_before = true;
    return page;
  }
  if (backwards) {
    page.more_before = extra;
  } else {
    page.more_after = extra;
  }
  // The other direction: does any row precede the first / follow the last?
  auto exists = [&](bool before_first) -> Result<bool> {
    int64_t pivot = before_first ? page.seqs.front() : page.seqs.back();
    bool lower = before_first != desc;  // seq smaller than pivot?
    std::string q = "SELECT 1 FROM " + table + " WHERE " + where + (lower ? " AND seq < ?" : " AND seq > ?") + " LIMIT 1";
    std::vector<Param> ep = params;
    ep.push_back(pivot);
    Stmt es(db, q);
    WARREN_RETURN_IF_ERROR(es.prepared());
    es.Bind(ep);
    return es.Step();
  };
  if (backwards) {
    WARREN_ASSIGN_OR_RETURN(page.more_after, exists(false));
  } else {
    WARREN_ASSIGN_OR_RETURN(page.more_before, exists(true));
  }
  return page;
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const SqliteOptions& options, Clock* clock) {
  if (clock == nullptr) return Status::InvalidArgument("SqliteStore::Open: a Clock is required");
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(options.path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::IOError("open " + options.path + ": " + msg);
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(db, clock, std::max(0, options.abort_attempts)));
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  std::string sync = options.synchronous == "NORMAL" ? "NORMAL" : "FULL";
  WARREN_RETURN_IF_ERROR(ExecSql(db, "PRAGMA journal_mode=WAL"));
  WARREN_RETURN_IF_ERROR(ExecSql(db, ("PRAGMA synchronous=" + sync).c_str()));
  WARREN_RETURN_IF_ERROR(ExecSql(db, "PRAGMA foreign_keys=ON"));
  WARREN_RETURN_IF_ERROR(store->Migrate(options.migrate_to));
  return store;
}

SqliteStore::~SqliteStore() { sqlite3_close(db_); }

template <typename F>
auto SqliteStore::InTxn(F&& body) -> decltype(body()) {
  for (int attempt = 0;; attempt++) {
    Txn txn(db_);
    WARREN_RETURN_IF_ERROR(txn.status());
    outbox_added_ = false;
    auto r = body();
    if (!r.ok()) return r;
    if (attempt < abort_attempts_) continue;  // as a serialization failure: rolled back, run again
    WARREN_RETURN_IF_ERROR(txn.Commit());
    if (outbox_added_ && outbox_listener_) outbox_listener_();
    return r;
  }
}

Status SqliteStore::Migrate(int migrate_to) {
  std::lock_guard<std::mutex> lock(mu_);
  WARREN_RETURN_IF_ERROR(ExecSql(db_, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"));
  int current = 0;
  {
    Stmt st(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    WARREN_RETURN_IF_ERROR(st.prepared());
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) current = static_cast<int>(st.Int(0));
  }
  const int total = static_cast<int>(std::size(kMigrations));
  if (current > total)
    return Status::FailedPrecondition("database schema version " + std::to_string(current) +
                                      " is newer than this binary (" + std::to_string(total) + ")");
  const int target = migrate_to > 0 ? std::min(migrate_to, total) : total;
  for (int v = current + 1; v <= target; v++) {
    Txn txn(db_);
    WARREN_RETURN_IF_ERROR(txn.status());
    WARREN_RETURN_IF_ERROR(ExecSql(db_, kMigrations[v - 1]).WithContext("migration " + std::to_string(v)));
    Stmt st(db_, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)");
    st.Bind({int64_t{v}, clock_->NowMicros()});
    WARREN_RETURN_IF_ERROR(st.Exec());
    WARREN_RETURN_IF_ERROR(txn.Commit());
    log::Info("store.migrated", {{"version", v}});
  }
  return Status::Ok();
}

int SqliteStore::schema_version() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  auto r = st.Step();
  return r.ok() && *r ? static_cast<int>(st.Int(0)) : 0;
}

void SqliteStore::TraceStatements(std::vector<std::string>* sink) {
  std::lock_guard<std::mutex> lock(mu_);
  trace_ = sink;
  if (sink == nullptr) {
    sqlite3_trace_v2(db_, 0, nullptr, nullptr);
    return;
  }
  sqlite3_trace_v2(
      db_, SQLITE_TRACE_STMT,
      [](unsigned, void* ctx, void* stmt, void*) -> int {
        auto* self = static_cast<SqliteStore*>(ctx);
        if (self->trace_ && stmt) {
          const char* sql = sqlite3_sql(static_cast<sqlite3_stmt*>(stmt));
          if (sql) self->trace_->push_back(sql);
        }
        return 0;
      },
      this);
}

Result<std::vector<std::string>> SqliteStore::ExplainQueryPlan(const std::string& sql) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "EXPLAIN QUERY PLAN " + sql);
  WARREN_RETURN_IF_ERROR(st.prepared());
  std::vector<std::string> out;
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(st.Text(3));
  }
  return out;
}

// ------------------------------------------------------------------ agents

Status SqliteStore::CreateAgent(const Json& agent) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(agent, "id", "agent"));
  WARREN_ASSIGN_OR_RETURN(int64_t version, IntField(agent, "version", "agent"));
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Status {
    std::string body = DumpJson(agent);
    Stmt a(db_, "INSERT INTO agents (id, version, created_at, archived, body) VALUES (?, ?, ?, ?, ?)");
    a.Bind({id, version, TimeOf(agent, "created_at", clock_), ArchivedFlag(agent), body});
    Status s = a.Exec();
    if (s.code() == Code::kConflict) return Status::Conflict("agent " + id + " already exists");
    WARREN_RETURN_IF_ERROR(s);
    Stmt v(db_, "INSERT INTO agent_versions (agent_id, version, body) VALUES (?, ?, ?)");
    v.Bind({id, version, body});
    WARREN_RETURN_IF_ERROR(v.Exec());
    return ObjectOutboxLocked({"agent.created", id, "", "", TimeStrOf(agent, "created_at", clock_)});
  });
}

Result<Json> SqliteStore::GetAgent(const std::string& id, std::optional<int> version) {
  std::lock_guard<std::mutex> lock(mu_);
  if (version) {
    Stmt st(db_, "SELECT body FROM agent_versions WHERE agent_id = ? AND version = ?");
    st.Bind({id, int64_t{*version}});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) {
      Stmt any(db_, "SELECT 1 FROM agents WHERE id = ?");
      any.Bind({id});
      WARREN_ASSIGN_OR_RETURN(bool exists, any.Step());
      if (!exists) return Status::NotFound("agent " + id + " not found");
      return Status::NotFound("agent " + id + " has no version " + std::to_string(*version));
    }
    WARREN_ASSIGN_OR_RETURN(Json j, st.JsonCol(0));
    // Archival is a property of the agent, not of a version.
    Stmt cur(db_, "SELECT body FROM agents WHERE id = ?");
    cur.Bind({id});
    WARREN_ASSIGN_OR_RETURN(bool crow, cur.Step());
    if (crow) {
      WARREN_ASSIGN_OR_RETURN(Json latest, cur.JsonCol(0));
      if (j.is_object() && latest.is_object() && latest.contains("archived_at")) j["archived_at"] = latest["archived_at"];
    }
    return j;
  }
  Stmt st(db_, "SELECT body FROM agents WHERE id = ?");
  st.Bind({id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("agent " + id + " not found");
  return st.JsonCol(0);
}

Result<Json> SqliteStore::UpdateAgent(const std::string& id, const Mutator& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<Json> {
    Stmt st(db_, "SELECT body FROM agents WHERE id = ?");
    st.Bind({id});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status::NotFound("agent " + id + " not found");
    WARREN_ASSIGN_OR_RETURN(Json current, st.JsonCol(0));
    WARREN_ASSIGN_OR_RETURN(Json next, mutate(current));
    if (next == current) return current;  // no-op update: no new version
    WARREN_ASSIGN_OR_RETURN(int64_t version, IntField(next, "version", "agent"));
    WARREN_ASSIGN_OR_RETURN(int64_t cur_version, IntField(current, "version", "agent"));
    if (version != cur_version && version != cur_version + 1)
      return Status::Conflict("agent " + id + ": version " + std::to_string(version) + " does not follow " +
                              std::to_string(cur_version));
    std::string body = DumpJson(next);
    Stmt up(db_, "UPDATE agents SET version = ?, archived = ?, body = ? WHERE id = ?");
    up.Bind({version, ArchivedFlag(next), body, id});
    WARREN_RETURN_IF_ERROR(up.Exec());
    if (version != cur_version) {
      Stmt v(db_, "INSERT INTO agent_versions (agent_id, version, body) VALUES (?, ?, ?)");
      v.Bind({id, version, body});
      WARREN_RETURN_IF_ERROR(v.Exec());
    }
    const std::string change = UpdateChangeType("agent", current, next, version != cur_version ? "agent.updated" : "");
    if (change == "agent.archived")
      WARREN_RETURN_IF_ERROR(ObjectOutboxLocked({change, id, "", "", TimeStrOf(next, "archived_at", clock_)}));
    else if (!change.empty())
      WARREN_RETURN_IF_ERROR(
          ObjectOutboxLocked({change, id, "", "v" + std::to_string(version), TimeStrOf(next, "updated_at", clock_)}));
    return next;
  });
}

Result<Page> SqliteStore::ListAgents(const AgentFilter& filter, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string where = "1=1";
  std::vector<Param> params;
  if (!filter.include_archived) where += " AND archived = 0";
  AddRange(filter.created, "created_at", &where, &params);
  return QueryPage(db_, "agents", where, params, page);
}

Result<Page> SqliteStore::ListAgentVersions(const std::string& id, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt any(db_, "SELECT 1 FROM agents WHERE id = ?");
  any.Bind({id});
  WARREN_ASSIGN_OR_RETURN(bool exists, any.Step());
  if (!exists) return Status::NotFound("agent " + id + " not found");
  return QueryPage(db_, "agent_versions", "agent_id = ?", {id}, page);
}

// ------------------------------------------------------------ environments

Status SqliteStore::CreateEnvironment(const Json& env) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(env, "id", "environment"));
  WARREN_ASSIGN_OR_RETURN(std::string name, StrField(env, "name", "environment"));
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Status {
    Stmt dup(db_, "SELECT id FROM environments WHERE name = ? OR id = ?");
    dup.Bind({name, id});
    WARREN_ASSIGN_OR_RETURN(bool exists, dup.Step());
    if (exists) {
      if (dup.Text(0) == id) return Status::Conflict("environment " + id + " already exists");
      return Status::Conflict("an environment named '" + name + "' already exists (" + dup.Text(0) + ")");
    }
    Stmt st(db_, "INSERT INTO environments (id, name, created_at, archived, body) VALUES (?, ?, ?, ?, ?)");
    st.Bind({id, name, TimeOf(env, "created_at", clock_), ArchivedFlag(env), DumpJson(env)});
    WARREN_RETURN_IF_ERROR(st.Exec());
    return ObjectOutboxLocked({"environment.created", id, "", "", TimeStrOf(env, "created_at", clock_)});
  });
}

Result<Json> SqliteStore::GetEnvironment(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT body FROM environments WHERE id = ?");
  st.Bind({id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("environment " + id + " not found");
  return st.JsonCol(0);
}

Result<Json> SqliteStore::UpdateEnvironment(const std::string& id, const Mutator& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<Json> {
    Stmt st(db_, "SELECT body FROM environments WHERE id = ?");
    st.Bind({id});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status::NotFound("environment " + id + " not found");
    WARREN_ASSIGN_OR_RETURN(Json current, st.JsonCol(0));
    WARREN_ASSIGN_OR_RETURN(Json next, mutate(current));
    if (next == current) return current;
    WARREN_ASSIGN_OR_RETURN(std::string name, StrField(next, "name", "environment"));
    Stmt dup(db_, "SELECT id FROM environments WHERE name = ? AND id != ?");
    dup.Bind({name, id});
    WARREN_ASSIGN_OR_RETURN(bool exists, dup.Step());
    if (exists) return Status::Conflict("an environment named '" + name + "' already exists (" + dup.Text(0) + ")");
    Stmt up(db_, "UPDATE environments SET name = ?, archived = ?, body = ? WHERE id = ?");
    up.Bind({name, ArchivedFlag(next), DumpJson(next), id});
    WARREN_RETURN_IF_ERROR(up.Exec());
    WARREN_RETURN_IF_ERROR(ObjectUpdateLocked("environment", id, "", current, next, "environment.updated"));
    return next;
  });
}

Result<Page> SqliteStore::ListEnvironments(bool include_archived, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  return QueryPage(db_, "environments", include_archived ? "1=1" : "archived = 0", {}, page);
}

Status SqliteStore::DeleteEnvironment(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Status {
    Stmt st(db_, "DELETE FROM environments WHERE id = ?");
    st.Bind({id});
    WARREN_RETURN_IF_ERROR(st.Exec());
    if (sqlite3_changes(db_) == 0) return Status::NotFound("environment " + id + " not found");
    Stmt keys(db_, "DELETE FROM keys WHERE environment_id = ?");
    keys.Bind({id});
    WARREN_RETURN_IF_ERROR(keys.Exec());
    Stmt holder(db_, "DELETE FROM environment_holders WHERE environment_id = ?");
    holder.Bind({id});
    WARREN_RETURN_IF_ERROR(holder.Exec());
    return ObjectOutboxLocked({"environment.deleted", id, "", "", FormatRfc3339(clock_->NowMicros())});
  });
}

// ---------------------------------------------------------------- sessions

Result<std::vector<StoredEvent>> SqliteStore::InsertEventsLocked(const std::string& session_id,
                                                                 const std::vector<Json>& events) {
  std::vector<StoredEvent> out;
  out.reserve(events.size());
  for (const Json& ev : events) {
    WARREN_ASSIGN_OR_RETURN(std::string id, StrField(ev, "id", "event"));
    WARREN_ASSIGN_OR_RETURN(std::string type, StrField(ev, "type", "event"));
    int64_t ts = TimeOf(ev, "processed_at", clock_);
    Stmt ins(db_, "INSERT INTO events (session_id, id, type, ts, awaiting_engine, body) VALUES (?, ?, ?, ?, ?, ?)");
    ins.Bind({session_id, id, type, ts, AwaitingEngine(type, ev), DumpJson(ev)});
    Status s = ins.Exec();
    if (s.code() == Code::kConflict) return Status::Conflict("event " + id + " already exists in session " + session_id);
    WARREN_RETURN_IF_ERROR(s);
    out.push_back(StoredEvent{sqlite3_last_insert_rowid(db_), ev});
    WARREN_RETURN_IF_ERROR(OutboxLocked(session_id, ev));
  }
  return out;
}

Status SqliteStore::InsertOutboxLocked(const std::vector<OutboxMessage>& messages) {
  const int64_t now = clock_->NowMicros();
  for (const OutboxMessage& m : messages) {
    Stmt ins(db_,
             "INSERT OR IGNORE INTO webhook_outbox (message_id, endpoint, event_type, session_id, object_id, payload, "
             "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    ins.Bind({m.message_id, m.endpoint, m.event_type, m.session_id, m.object_id.empty() ? m.session_id : m.object_id,
              m.payload, now, now});
    WARREN_RETURN_IF_ERROR(ins.Exec());
    if (sqlite3_changes(db_) > 0) outbox_added_ = true;
  }
  return Status::Ok();
}

Status SqliteStore::OutboxLocked(const std::string& session_id, const Json& event) {
  if (!outbox_rule_) return Status::Ok();
  return InsertOutboxLocked(outbox_rule_(session_id, event));
}

Status SqliteStore::ObjectOutboxLocked(const ObjectChange& change) {
  if (!object_rule_) return Status::Ok();
  return InsertOutboxLocked(object_rule_(change));
}

Status SqliteStore::ObjectUpdateLocked(const std::string& kind, const std::string& id, const std::string& parent_id,
                                       const Json& current, const Json& next, const std::string& updated_type) {
  if (!object_rule_) return Status::Ok();
  const std::string type = UpdateChangeType(kind, current, next, updated_type);
  if (type.empty()) return Status::Ok();
  if (type == kind + ".archived")
    return ObjectOutboxLocked({type, id, parent_id, "", TimeStrOf(next, "archived_at", clock_)});
  // Updates repeat: each one is its own message.
  return ObjectOutboxLocked({type, id, parent_id, NewId("chg_", 20), TimeStrOf(next, "updated_at", clock_)});
}

void SqliteStore::SetOutboxRule(OutboxRule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  outbox_rule_ = std::move(rule);
}

void SqliteStore::SetObjectOutboxRule(ObjectOutboxRule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  object_rule_ = std::move(rule);
}

void SqliteStore::SetOutboxListener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  outbox_listener_ = std::move(listener);
}

Status SqliteStore::RecordObjectChange(const ObjectChange& change) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Status { return ObjectOutboxLocked(change); });
}

namespace {
constexpr const char* kDeliveryCols =
    "seq, message_id, endpoint, event_type, session_id, payload, state, attempts, created_at, next_attempt_at, "
    "last_attempt_at, delivered_at, last_status, last_error, object_id";

OutboxDelivery ReadDelivery(const Stmt& st) {
  OutboxDelivery d;
  d.seq = st.Int(0);
  d.message.message_id = st.Text(1);
  d.message.endpoint = st.Text(2);
  d.message.event_type = st.Text(3);
  d.message.session_id = st.Text(4);
  d.message.payload = st.Text(5);
  d.state = st.Text(6);
  d.attempts = static_cast<int>(st.Int(7));
  d.created_at = st.Int(8);
  d.next_attempt_at = st.Int(9);
  if (!st.IsNull(10)) d.last_attempt_at = st.Int(10);
  if (!st.IsNull(11)) d.delivered_at = st.Int(11);
  d.last_status = static_cast<int>(st.Int(12));
  d.last_error = st.Text(13);
  d.message.object_id = st.Text(14);
  return d;
}
}  // namespace

Result<EndpointState> SqliteStore::EndpointStateLocked(const std::string& name) {
  EndpointState ep;
  ep.name = name;
  Stmt st(db_, "SELECT consecutive_failures, disabled_at FROM webhook_endpoints WHERE name = ?");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({name});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (row) {
    ep.consecutive_failures = static_cast<int>(st.Int(0));
    if (!st.IsNull(1)) ep.disabled_at = st.Int(1);
  }
  return ep;
}

Status SqliteStore::WriteEndpointStateLocked(const EndpointState& ep) {
  Stmt up(db_,
          "INSERT INTO webhook_endpoints (name, consecutive_failures, disabled_at) VALUES (?, ?, ?) "
          "ON CONFLICT(name) DO UPDATE SET consecutive_failures = excluded.consecutive_failures, "
          "disabled_at = excluded.disabled_at");
  up.Bind({ep.name, int64_t{ep.consecutive_failures}, ep.disabled_at ? Param(*ep.disabled_at) : Param(nullptr)});
  return up.Exec();
}

Result<std::vector<OutboxDelivery>> SqliteStore::ClaimDeliveries(int64_t now, int64_t lease_until, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<std::vector<OutboxDelivery>> {
    std::set<std::string> disabled;
    {
      Stmt ds(db_, "SELECT name FROM webhook_endpoints WHERE disabled_at IS NOT NULL");
      WARREN_RETURN_IF_ERROR(ds.prepared());
      for (;;) {
        WARREN_ASSIGN_OR_RETURN(bool row, ds.Step());
        if (!row) break;
        disabled.insert(ds.Text(0));
      }
    }
    const size_t want = static_cast<size_t>(std::max(1, limit));
    std::vector<OutboxDelivery> out;
    // Due rows of a disabled endpoint are parked (never due until enabled),
    // so each is skipped once, not at every claim.
    for (;;) {
      const int64_t ask = static_cast<int64_t>(want - out.size());
      std::vector<OutboxDelivery> rows;
      {
        Stmt st(db_, std::string("SELECT ") + kDeliveryCols +
                         " FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?");
        WARREN_RETURN_IF_ERROR(st.prepared());
        st.Bind({now, ask});
        for (;;) {
          WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
          if (!row) break;
          rows.push_back(ReadDelivery(st));
        }
      }
      int parked = 0;
      for (OutboxDelivery& d : rows) {
        const bool hold = disabled.count(d.message.endpoint) > 0;
        Stmt up(db_, "UPDATE webhook_outbox SET next_attempt_at = ? WHERE seq = ?");
        up.Bind({hold ? kHeldUntilEnabled : lease_until, d.seq});
        WARREN_RETURN_IF_ERROR(up.Exec());
        if (hold) {
          parked++;
          continue;
        }
        d.next_attempt_at = lease_until;
        out.push_back(std::move(d));
      }
      if (parked == 0 || static_cast<int64_t>(rows.size()) < ask) break;
    }
    return out;
  });
}

Result<std::optional<int64_t>> SqliteStore::NextDeliveryDue() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at < ?");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({kHeldUntilEnabled});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row || st.IsNull(0)) return std::optional<int64_t>();
  return std::optional<int64_t>(st.Int(0));
}

Result<OutboxDelivery> SqliteStore::GetDelivery(int64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, std::string("SELECT ") + kDeliveryCols + " FROM webhook_outbox WHERE seq = ?");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({seq});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("webhook delivery " + std::to_string(seq) + " not found");
  return ReadDelivery(st);
}

Result<DeliveryOutcome> SqliteStore::FinishDelivery(int64_t seq, const DeliveryAttempt& a) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<DeliveryOutcome> {
    Stmt st(db_, std::string("SELECT ") + kDeliveryCols + " FROM webhook_outbox WHERE seq = ?");
    WARREN_RETURN_IF_ERROR(st.prepared());
    st.Bind({seq});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status::NotFound("webhook delivery " + std::to_string(seq) + " not found");
    DeliveryOutcome o;
    o.delivery = ReadDelivery(st);
    OutboxDelivery& d = o.delivery;
    if (d.state != "pending") return Status::Conflict("webhook delivery " + std::to_string(seq) + " is " + d.state);
    WARREN_ASSIGN_OR_RETURN(o.endpoint, EndpointStateLocked(d.message.endpoint));
    o.disabled_endpoint = ApplyAttempt(a, &d, &o.endpoint);
    Stmt up(db_,
            "UPDATE webhook_outbox SET state = ?, attempts = ?, next_attempt_at = ?, last_attempt_at = ?, "
            "delivered_at = ?, last_status = ?, last_error = ? WHERE seq = ?");
    up.Bind({d.state, int64_t{d.attempts}, d.next_attempt_at, *d.last_attempt_at,
             d.delivered_at ? Param(*d.delivered_at) : Param(nullptr), int64_t{d.last_status}, d.last_error, seq});
    WARREN_RETURN_IF_ERROR(up.Exec());
    WARREN_RETURN_IF_ERROR(WriteEndpointStateLocked(o.endpoint));
    return o;
  });
}

Result<std::vector<EndpointState>> SqliteStore::ListEndpointStates() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EndpointState> out;
  Stmt st(db_, "SELECT name, consecutive_failures, disabled_at FROM webhook_endpoints ORDER BY name");
  WARREN_RETURN_IF_ERROR(st.prepared());
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    EndpointState ep;
    ep.name = st.Text(0);
    ep.consecutive_failures = static_cast<int>(st.Int(1));
    if (!st.IsNull(2)) ep.disabled_at = st.Int(2);
    out.push_back(std::move(ep));
  }
  return out;
}

Result<EndpointState> SqliteStore::EnableEndpoint(const std::string& name, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<EndpointState> {
    EndpointState ep;
    ep.name = name;
    WARREN_RETURN_IF_ERROR(WriteEndpointStateLocked(ep));
    Stmt up(db_, "UPDATE webhook_outbox SET next_attempt_at = ? WHERE endpoint = ? AND state = 'pending' AND next_attempt_at = ?");
    up.Bind({now, name, kHeldUntilEnabled});
    WARREN_RETURN_IF_ERROR(up.Exec());
    if (sqlite3_changes(db_) > 0) outbox_added_ = true;
    return ep;
  });
}

Result<int64_t> SqliteStore::PruneDeliveries(int64_t finished_before, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<int64_t> {
    // One state at a time, so each is one ordered range of the index.
    int64_t deleted = 0;
    for (const char* state : {"delivered", "failed"}) {
      const int64_t left = std::max(1, limit) - deleted;
      if (left <= 0) break;
      Stmt del(db_,
               "DELETE FROM webhook_outbox WHERE seq IN (SELECT seq FROM webhook_outbox WHERE state = ? AND "
               "last_attempt_at < ? ORDER BY last_attempt_at LIMIT ?)");
      WARREN_RETURN_IF_ERROR(del.prepared());
      del.Bind({std::string(state), finished_before, left});
      WARREN_RETURN_IF_ERROR(del.Exec());
      deleted += sqlite3_changes(db_);
    }
    return deleted;
  });
}

Result<Page> SqliteStore::ListDeliveries(const DeliveryFilter& filter, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string where = "1=1";
  std::vector<Param> params;
  if (!filter.endpoint.empty()) { where += " AND endpoint = ?"; params.push_back(filter.endpoint); }
  if (!filter.state.empty()) { where += " AND state = ?"; params.push_back(filter.state); }
  if (!filter.message_id.empty()) { where += " AND message_id = ?"; params.push_back(filter.message_id); }
  // QueryPage reads (seq, body): render each row's JSON in SQL-free code by
  // selecting the rows, then mapping.
  WARREN_ASSIGN_OR_RETURN(Page p, QueryPage(db_, "(SELECT seq, json_object('seq', seq) AS body, endpoint, state, message_id FROM webhook_outbox)", where, params, page));
  for (size_t i = 0; i < p.items.size(); i++) {
    Stmt st(db_, std::string("SELECT ") + kDeliveryCols + " FROM webhook_outbox WHERE seq = ?");
    WARREN_RETURN_IF_ERROR(st.prepared());
    st.Bind({p.seqs[i]});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) p.items[i] = ReadDelivery(st).ToJson();
  }
  return p;
}

Status SqliteStore::SetMemoryStoresLocked(const std::string& session_id, const Json& session) {
  Stmt del(db_, "DELETE FROM session_memory_stores WHERE session_id = ?");
  del.Bind({session_id});
  WARREN_RETURN_IF_ERROR(del.Exec());
  for (const std::string& m : MemoryStoresOf(session)) {
    Stmt ins(db_, "INSERT OR IGNORE INTO session_memory_stores (memory_store_id, session_id) VALUES (?, ?)");
    ins.Bind({m, session_id});
    WARREN_RETURN_IF_ERROR(ins.Exec());
  }
  return Status::Ok();
}

Result<std::vector<StoredEvent>> SqliteStore::CreateSession(const Json& session, const std::vector<Json>& initial_events,
                                                            const CommitHook& hook) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(session, "id", "session"));
  WARREN_ASSIGN_OR_RETURN(std::string env_id, StrField(session, "environment_id", "session"));
  WARREN_ASSIGN_OR_RETURN(std::string status, StrField(session, "status", "session"));
  const Json agent = session.contains("agent") ? session["agent"] : Json();
  WARREN_ASSIGN_OR_RETURN(std::string agent_id, StrField(agent, "id", "session.agent"));
  WARREN_ASSIGN_OR_RETURN(int64_t agent_version, IntField(agent, "version", "session.agent"));
  Param deployment = session.contains("deployment_id") && session["deployment_id"].is_string()
                         ? Param(session["deployment_id"].get<std::string>())
                         : Param(nullptr);
  std::lock_guard<std::mutex> lock(mu_);
  auto r = InTxn([&]() -> Result<std::vector<StoredEvent>> {
    Stmt st(db_,
            "INSERT INTO sessions (id, environment_id, agent_id, agent_version, status, deployment_id, created_at, "
            "archived, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    st.Bind({id, env_id, agent_id, agent_version, status, deployment, TimeOf(session, "created_at", clock_),
             ArchivedFlag(session), DumpJson(session)});
    Status s = st.Exec();
    if (s.code() == Code::kConflict) return Status::Conflict("session " + id + " already exists");
    WARREN_RETURN_IF_ERROR(s);
    WARREN_RETURN_IF_ERROR(SetMemoryStoresLocked(id, session));
    WARREN_RETURN_IF_ERROR(OutboxLocked(id, Json{{"type", "session.created"}, {"processed_at", session.contains("created_at") ? session["created_at"] : Json()}}));
    return InsertEventsLocked(id, initial_events);
  });
  if (r.ok() && hook && !r->empty()) hook(*r);
  return r;
}

Result<Json> SqliteStore::GetSession(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT body FROM sessions WHERE id = ?");
  st.Bind({id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("session " + id + " not found");
  return st.JsonCol(0);
}

Result<Json> SqliteStore::UpdateSession(const std::string& id, const SessionMutator& mutate, const CommitHook& hook) {
  // An update is a step that only appends.
  return StepSession(
      id, [&](const Json& current, SessionStep* step) { return mutate(current, &step->append); }, hook);
}

Result<Json> SqliteStore::StepSession(const std::string& id, const StepMutator& mutate, const CommitHook& hook) {
  std::lock_guard<std::mutex> lock(mu_);
  SessionStep step;
  std::vector<StoredEvent> stored;
  auto r = InTxn([&]() -> Result<Json> {
    step = SessionStep();
    Stmt st(db_, "SELECT body FROM sessions WHERE id = ?");
    st.Bind({id});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status::NotFound("session " + id + " not found");
    WARREN_ASSIGN_OR_RETURN(Json current, st.JsonCol(0));
    WARREN_ASSIGN_OR_RETURN(step.engine_in, EngineStateLocked(id));
    WARREN_ASSIGN_OR_RETURN(Json next, mutate(current, &step));
    WARREN_ASSIGN_OR_RETURN(std::string status, StrField(next, "status", "session"));
    Stmt up(db_, "UPDATE sessions SET status = ?, archived = ?, body = ? WHERE id = ?");
    up.Bind({status, ArchivedFlag(next), DumpJson(next), id});
    WARREN_RETURN_IF_ERROR(up.Exec());
    if (MemoryStoresOf(next) != MemoryStoresOf(current))
      WARREN_RETURN_IF_ERROR(SetMemoryStoresLocked(id, next));
    if (step.engine) {
      const EngineRecord& er = *step.engine;
      Stmt es(db_,
              "INSERT INTO engine_state (session_id, phase, consumed_seq, model_request_start_id, calls_this_turn, "
              "cost_micros, transcript_base, transcript_next, summary, pending) VALUES (?,?,?,?,?,?,?,?,?,?) "
              "ON CONFLICT(session_id) DO UPDATE SET phase = excluded.phase, consumed_seq = excluded.consumed_seq, "
              "model_request_start_id = excluded.model_request_start_id, calls_this_turn = excluded.calls_this_turn, "
              "cost_micros = excluded.cost_micros, transcript_base = excluded.transcript_base, "
              "transcript_next = excluded.transcript_next, summary = excluded.summary, pending = excluded.pending");
      es.Bind({id, er.phase, er.consumed_seq, er.model_request_start_id, er.calls_this_turn, er.cost_micros,
               er.transcript_base, er.transcript_next, er.summary, DumpJson(er.pending)});
      WARREN_RETURN_IF_ERROR(es.Exec());
    }
    for (const TranscriptEntry& t : step.transcript) {
      Stmt tr(db_, "INSERT INTO transcript (session_id, idx, role, content) VALUES (?, ?, ?, ?)");
      tr.Bind({id, t.idx, t.role, DumpJson(t.content)});
      int rc = sqlite3_step(tr.raw());
      if (rc == SQLITE_CONSTRAINT || (rc & 0xff) == SQLITE_CONSTRAINT)
        return Status::Conflict("transcript row " + std::to_string(t.idx) + " of " + id + " exists");
      if (rc != SQLITE_DONE) return SqlError(db_, "transcript insert");
    }
    for (const Json& ev : step.replace) {
      WARREN_ASSIGN_OR_RETURN(std::string eid, StrField(ev, "id", "event"));
      WARREN_ASSIGN_OR_RETURN(std::string type, StrField(ev, "type", "event"));
      // The event's time becomes its processed_at; without one it keeps the
      // time it was appended at.
      Stmt rep(db_,
               "UPDATE events SET body = ?, ts = COALESCE(?, ts), type = ?, awaiting_engine = ? "
               "WHERE session_id = ? AND id = ?");
      Param ts = ev.contains("processed_at") && ev["processed_at"].is_string() ? Param(TimeOf(ev, "processed_at", clock_))
                                                                               : Param(nullptr);
      rep.Bind({DumpJson(ev), ts, type, AwaitingEngine(type, ev), id, eid});
      WARREN_RETURN_IF_ERROR(rep.Exec());
      if (sqlite3_changes(db_) == 0) return Status::NotFound("event " + eid + " not found in session " + id);
    }
    WARREN_ASSIGN_OR_RETURN(stored, InsertEventsLocked(id, step.append));
    if (!ArchivedFlag(current) && ArchivedFlag(next))
      WARREN_RETURN_IF_ERROR(OutboxLocked(id, Json{{"type", "session.archived"}, {"processed_at", next["archived_at"]}}));
    return next;
  });
  if (r.ok() && hook) {
    // Updated events (earlier in the log) go out before the new ones.
    std::vector<StoredEvent> ordered;
    for (const Json& ev : step.replace) ordered.push_back(StoredEvent{0, ev});
    ordered.insert(ordered.end(), stored.begin(), stored.end());
    if (!ordered.empty()) hook(ordered);
  }
  return r;
}

Result<std::vector<std::string>> SqliteStore::SessionsNeedingEngine() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  Stmt st(db_,
          "SELECT id FROM sessions WHERE status IN ('running', 'rescheduling') "
          "UNION SELECT session_id FROM events WHERE awaiting_engine = 1");
  WARREN_RETURN_IF_ERROR(st.prepared());
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(st.Text(0));
  }
  return out;
}

Result<Page> SqliteStore::ListSessions(const SessionFilter& f, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string where = "1=1";
  std::vector<Param> params;
  if (!f.include_archived) where += " AND archived = 0";
  if (f.agent_id) { where += " AND agent_id = ?"; params.push_back(*f.agent_id); }
  if (f.agent_version) { where += " AND agent_version = ?"; params.push_back(int64_t{*f.agent_version}); }
  if (f.environment_id) { where += " AND environment_id = ?"; params.push_back(*f.environment_id); }
  if (f.deployment_id) { where += " AND deployment_id = ?"; params.push_back(*f.deployment_id); }
  if (f.memory_store_id) {
    where += " AND id IN (SELECT session_id FROM session_memory_stores WHERE memory_store_id = ?)";
    params.push_back(*f.memory_store_id);
  }
  if (!f.statuses.empty()) {
    where += " AND status IN (";
    for (size_t i = 0; i < f.statuses.size(); i++) {
      where += i ? ", ?" : "?";
      params.push_back(f.statuses[i]);
    }
    where += ")";
  }
  AddRange(f.created, "created_at", &where, &params);
  return QueryPage(db_, "sessions", where, params, page);
}

Status SqliteStore::DeleteSession(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Status {
    Stmt st(db_, "DELETE FROM sessions WHERE id = ?");
    st.Bind({id});
    WARREN_RETURN_IF_ERROR(st.Exec());
    if (sqlite3_changes(db_) == 0) return Status::NotFound("session " + id + " not found");
    for (const char* sql : {"DELETE FROM events WHERE session_id = ?", "DELETE FROM session_memory_stores WHERE session_id = ?",
                            "DELETE FROM keys WHERE session_id = ?", "DELETE FROM engine_state WHERE session_id = ?",
                            "DELETE FROM transcript WHERE session_id = ?", "DELETE FROM session_secrets WHERE session_id = ?"}) {
      Stmt del(db_, sql);
      del.Bind({id});
      WARREN_RETURN_IF_ERROR(del.Exec());
    }
    return OutboxLocked(id, Json{{"type", "session.deleted"}, {"processed_at", FormatRfc3339(clock_->NowMicros())}});
  });
}

// ------------------------------------------------------------------ session secrets

namespace {
std::string ToHex(const std::string& bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}
bool FromHex(const std::string& hex, std::string* out) {
  auto val = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  if (hex.size() % 2) return false;
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = val(hex[i]), lo = val(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}
}  // namespace

Status SqliteStore::PutSessionSecrets(const std::string& session_id, const std::map<std::string, std::string>& sealed) {
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(db_);
  WARREN_RETURN_IF_ERROR(txn.status());
  for (const auto& [name, value] : sealed) {
    Stmt st(db_, "INSERT INTO session_secrets (session_id, name, sealed) VALUES (?, ?, ?) "
                 "ON CONFLICT(session_id, name) DO UPDATE SET sealed = excluded.sealed");
    st.Bind({session_id, name, ToHex(value)});
    WARREN_RETURN_IF_ERROR(st.Exec());
  }
  return txn.Commit();
}

Result<std::map<std::string, std::string>> SqliteStore::GetSessionSecrets(const std::string& session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT name, sealed FROM session_secrets WHERE session_id = ? ORDER BY name");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({session_id});
  std::map<std::string, std::string> out;
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    std::string bytes;
    if (!FromHex(st.Text(1), &bytes)) return Status::IOError("session secret " + st.Text(0) + " of " + session_id + ": damaged");
    out[st.Text(0)] = std::move(bytes);
  }
  return out;
}

// ------------------------------------------------------------------ vaults

Status SqliteStore::CreateVault(const Json& vault) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(vault, "id", "vault"));
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Status {
    Stmt st(db_, "INSERT INTO vaults (id, created_at, archived, body) VALUES (?, ?, ?, ?)");
    st.Bind({id, TimeOf(vault, "created_at", clock_), ArchivedFlag(vault), DumpJson(vault)});
    Status s = st.Exec();
    if (s.code() == Code::kConflict) return Status::Conflict("vault " + id + " already exists");
    WARREN_RETURN_IF_ERROR(s);
    return ObjectOutboxLocked({"vault.created", id, "", "", TimeStrOf(vault, "created_at", clock_)});
  });
}

Result<Json> SqliteStore::GetVault(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT body FROM vaults WHERE id = ?");
  st.Bind({id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("vault " + id + " not found");
  return st.JsonCol(0);
}

Result<Json> SqliteStore::UpdateVault(const std::string& id, const Mutator& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<Json> {
    Stmt st(db_, "SELECT body FROM vaults WHERE id = ?");
    st.Bind({id});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status::NotFound("vault " + id + " not found");
    WARREN_ASSIGN_OR_RETURN(Json current, st.JsonCol(0));
    WARREN_ASSIGN_OR_RETURN(Json next, mutate(current));
    if (next == current) return current;
    Stmt up(db_, "UPDATE vaults SET archived = ?, body = ? WHERE id = ?");
    up.Bind({ArchivedFlag(next), DumpJson(next), id});
    WARREN_RETURN_IF_ERROR(up.Exec());
    WARREN_RETURN_IF_ERROR(ObjectUpdateLocked("vault", id, "", current, next, ""));
    return next;
  });
}

Result<Page> SqliteStore::ListVaults(bool include_archived, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  return QueryPage(db_, "vaults", include_archived ? "1=1" : "archived = 0", {}, page);
}

Status SqliteStore::DeleteVault(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Status {
    Stmt st(db_, "DELETE FROM vaults WHERE id = ?");
    st.Bind({id});
    WARREN_RETURN_IF_ERROR(st.Exec());
    if (sqlite3_changes(db_) == 0) return Status::NotFound("vault " + id + " not found");
    // Each credential deleted with the vault is reported (docs/WEBHOOKS.md).
    std::vector<std::string> cred_ids;
    Stmt list(db_, "SELECT id FROM vault_credentials WHERE vault_id = ? ORDER BY id");
    list.Bind({id});
    for (;;) {
      WARREN_ASSIGN_OR_RETURN(bool row, list.Step());
      if (!row) break;
      cred_ids.push_back(list.Text(0));
    }
    Stmt creds(db_, "DELETE FROM vault_credentials WHERE vault_id = ?");
    creds.Bind({id});
    WARREN_RETURN_IF_ERROR(creds.Exec());
    const std::string now = FormatRfc3339(clock_->NowMicros());
    for (const std::string& cid : cred_ids)
      WARREN_RETURN_IF_ERROR(ObjectOutboxLocked({"vault_credential.deleted", cid, id, "", now}));
    return ObjectOutboxLocked({"vault.deleted", id, "", "", now});
  });
}

Result<int64_t> SqliteStore::CountVaults() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT COUNT(*) FROM vaults");
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Int(0) : 0;
}

Status SqliteStore::CreateCredential(const CredentialRecord& c, int max_per_vault) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(c.body, "id", "credential"));
  WARREN_ASSIGN_OR_RETURN(std::string vault_id, StrField(c.body, "vault_id", "credential"));
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Status {
    Stmt v(db_, "SELECT 1 FROM vaults WHERE id = ?");
    v.Bind({vault_id});
    WARREN_ASSIGN_OR_RETURN(bool found, v.Step());
    if (!found) return Status::NotFound("vault " + vault_id + " not found");
    Stmt n(db_, "SELECT COUNT(*) FROM vault_credentials WHERE vault_id = ? AND archived = 0");
    n.Bind({vault_id});
    WARREN_RETURN_IF_ERROR(n.Exec());
    if (n.Int(0) >= max_per_vault)
      return Status::Conflict("vault " + vault_id + " already holds " + std::to_string(max_per_vault) +
                              " credentials (the limit); archive or delete one first")
          .WithDetailCode("vault_credential_limit");
    Stmt st(db_, "INSERT INTO vault_credentials (id, vault_id, archived, body, sealed) VALUES (?, ?, ?, ?, ?)");
    st.Bind({id, vault_id, ArchivedFlag(c.body), DumpJson(c.body), ToHex(c.sealed)});
    Status s = st.Exec();
    if (s.code() == Code::kConflict) return Status::Conflict("credential " + id + " already exists");
    WARREN_RETURN_IF_ERROR(s);
    return ObjectOutboxLocked({"vault_credential.created", id, vault_id, "", TimeStrOf(c.body, "created_at", clock_)});
  });
}

Result<CredentialRecord> SqliteStore::GetCredential(const std::string& vault_id, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT body, sealed FROM vault_credentials WHERE id = ? AND vault_id = ?");
  st.Bind({id, vault_id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("credential " + id + " not found in vault " + vault_id);
  CredentialRecord r;
  WARREN_ASSIGN_OR_RETURN(r.body, st.JsonCol(0));
  if (!FromHex(st.Text(1), &r.sealed)) return Status::IOError("credential " + id + ": damaged secret");
  return r;
}

Result<CredentialRecord> SqliteStore::UpdateCredential(const std::string& vault_id, const std::string& id,
                                                       const std::function<Status(CredentialRecord*)>& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<CredentialRecord> {
    Stmt st(db_, "SELECT body, sealed FROM vault_credentials WHERE id = ? AND vault_id = ?");
    st.Bind({id, vault_id});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status::NotFound("credential " + id + " not found in vault " + vault_id);
    CredentialRecord cur;
    WARREN_ASSIGN_OR_RETURN(cur.body, st.JsonCol(0));
    if (!FromHex(st.Text(1), &cur.sealed)) return Status::IOError("credential " + id + ": damaged secret");
    CredentialRecord next = cur;
    WARREN_RETURN_IF_ERROR(mutate(&next));
    if (next.body == cur.body && next.sealed == cur.sealed) return cur;
    Stmt up(db_, "UPDATE vault_credentials SET archived = ?, body = ?, sealed = ? WHERE id = ?");
    up.Bind({ArchivedFlag(next.body), DumpJson(next.body), ToHex(next.sealed), id});
    WARREN_RETURN_IF_ERROR(up.Exec());
    WARREN_RETURN_IF_ERROR(ObjectUpdateLocked("vault_credential", id, vault_id, cur.body, next.body, ""));
    return next;
  });
}

Result<Page> SqliteStore::ListCredentials(const std::string& vault_id, bool include_archived, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  return QueryPage(db_, "vault_credentials", include_archived ? "vault_id = ?" : "vault_id = ? AND archived = 0",
                   {vault_id}, page);
}

Status SqliteStore::DeleteCredential(const std::string& vault_id, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Status {
    Stmt st(db_, "DELETE FROM vault_credentials WHERE id = ? AND vault_id = ?");
    st.Bind({id, vault_id});
    WARREN_RETURN_IF_ERROR(st.Exec());
    if (sqlite3_changes(db_) == 0) return Status::NotFound("credential " + id + " not found in vault " + vault_id);
    return ObjectOutboxLocked({"vault_credential.deleted", id, vault_id, "", FormatRfc3339(clock_->NowMicros())});
  });
}

// ------------------------------------------------------------------ engine state

Result<std::optional<EngineRecord>> SqliteStore::EngineStateLocked(const std::string& session_id) {
  Stmt st(db_,
          "SELECT phase, consumed_seq, model_request_start_id, calls_this_turn, cost_micros, transcript_base, "
          "transcript_next, summary, pending FROM engine_state WHERE session_id = ?");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({session_id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<EngineRecord>();
  EngineRecord r;
  r.phase = st.Text(0);
  r.consumed_seq = st.Int(1);
  r.model_request_start_id = st.Text(2);
  r.calls_this_turn = st.Int(3);
  r.cost_micros = st.Int(4);
  r.transcript_base = st.Int(5);
  r.transcript_next = st.Int(6);
  r.summary = st.Text(7);
  auto pending = st.JsonCol(8);
  r.pending = pending.ok() && pending->is_array() ? *pending : Json::array();
  return std::optional<EngineRecord>(std::move(r));
}

Result<std::optional<EngineRecord>> SqliteStore::GetEngineState(const std::string& session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT 1 FROM sessions WHERE id = ?");
  st.Bind({session_id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("session " + session_id + " not found");
  return EngineStateLocked(session_id);
}

Result<std::vector<TranscriptEntry>> SqliteStore::ReadTranscript(const std::string& session_id, int64_t from_idx,
                                                                 int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT idx, role, content FROM transcript WHERE session_id = ? AND idx >= ? ORDER BY idx LIMIT ?");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({session_id, from_idx, int64_t{std::max(1, limit)}});
  std::vector<TranscriptEntry> out;
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    TranscriptEntry t;
    t.idx = st.Int(0);
    t.role = st.Text(1);
    auto content = st.JsonCol(2);
    if (!content.ok()) return content.status().WithContext("transcript row " + std::to_string(t.idx) + " of " + session_id);
    t.content = std::move(content).value();
    out.push_back(std::move(t));
  }
  return out;
}

// ------------------------------------------------------------------ events

Result<std::vector<StoredEvent>> SqliteStore::AppendEvents(const std::string& session_id,
                                                           const std::function<Status(const Json& session)>& check,
                                                           const std::vector<Json>& events, const CommitHook& hook) {
  std::lock_guard<std::mutex> lock(mu_);
  auto r = InTxn([&]() -> Result<std::vector<StoredEvent>> {
    Stmt st(db_, "SELECT body FROM sessions WHERE id = ?");
    st.Bind({session_id});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status::NotFound("session " + session_id + " not found");
    if (check) {
      WARREN_ASSIGN_OR_RETURN(Json session, st.JsonCol(0));
      WARREN_RETURN_IF_ERROR(check(session));
    }
    WARREN_RETURN_IF_ERROR(CheckAnswersLocked(session_id, events));
    return InsertEventsLocked(session_id, events);
  });
  if (r.ok() && hook && !r->empty()) hook(*r);
  return r;
}

Status SqliteStore::CheckAnswersLocked(const std::string& session_id, const std::vector<Json>& events) {
  std::set<std::string> seen;
  for (const Json& e : events) {
    std::string field = AnswerField(e);
    if (field.empty()) continue;
    const std::string ref = e[field].get<std::string>();
    const std::string type = e["type"].get<std::string>();
    if (!seen.insert(type + ":" + ref).second)
      return Status::Conflict("tool call " + ref + " is answered twice in one request").WithDetailCode(kAlreadyAnswered);
    // The literal type keeps the partial index usable.
    Stmt st(db_, type == "user.tool_result"
                     ? "SELECT 1 FROM events WHERE session_id = ? AND type = 'user.tool_result' AND "
                       "json_extract(body, '$.tool_use_id') = ? LIMIT 1"
                     : "SELECT 1 FROM events WHERE session_id = ? AND type = 'user.custom_tool_result' AND "
                       "json_extract(body, '$.custom_tool_use_id') = ? LIMIT 1");
    WARREN_RETURN_IF_ERROR(st.prepared());
    st.Bind({session_id, ref});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) return Status::Conflict("tool call " + ref + " already has a result").WithDetailCode(kAlreadyAnswered);
  }
  return Status::Ok();
}

Result<Page> SqliteStore::ListEvents(const std::string& session_id, const EventFilter& filter, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string where = "session_id = ?";
  std::vector<Param> params{session_id};
  if (!filter.types.empty()) {
    where += " AND type IN (";
    for (size_t i = 0; i < filter.types.size(); i++) {
      where += i ? ", ?" : "?";
      params.push_back(filter.types[i]);
    }
    where += ")";
  }
  AddRange(filter.processed, "ts", &where, &params);
  return QueryPage(db_, "events", where, params, page);
}

Result<std::vector<StoredEvent>> SqliteStore::EventsAfter(const std::string& session_id, int64_t after_seq, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  if (limit <= 0) return std::vector<StoredEvent>();
  Stmt st(db_, "SELECT seq, body FROM events WHERE session_id = ? AND seq > ? ORDER BY seq ASC LIMIT ?");
  st.Bind({session_id, after_seq, int64_t{limit}});
  std::vector<StoredEvent> out;
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    WARREN_ASSIGN_OR_RETURN(Json body, st.JsonCol(1));
    out.push_back(StoredEvent{st.Int(0), std::move(body)});
  }
  return out;
}

Result<std::optional<StoredEvent>> SqliteStore::GetEvent(const std::string& session_id, const std::string& event_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT seq, body FROM events WHERE session_id = ? AND id = ?");
  st.Bind({session_id, event_id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<StoredEvent>();
  WARREN_ASSIGN_OR_RETURN(Json body, st.JsonCol(1));
  return std::optional<StoredEvent>(StoredEvent{st.Int(0), std::move(body)});
}

// ------------------------------------------------------------------- keys

Status SqliteStore::PutKey(const std::string& key_hash, const KeyRecord& r) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "INSERT INTO keys (hash, kind, environment_id, session_id, work_id, created_at) VALUES (?, ?, ?, ?, ?, ?)");
  auto opt = [](const std::string& s) { return s.empty() ? Param(nullptr) : Param(s); };
  st.Bind({key_hash, KindName(r.kind), opt(r.environment_id), opt(r.session_id), opt(r.work_id),
           clock_->NowMicros()});
  Status s = st.Exec();
  if (s.code() == Code::kConflict) return Status::Conflict("key already exists");
  return s;
}

Result<std::optional<KeyRecord>> SqliteStore::LookupKey(const std::string& key_hash) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT kind, environment_id, session_id, work_id FROM keys WHERE hash = ?");
  st.Bind({key_hash});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<KeyRecord>();
  KeyRecord r;
  std::string kind = st.Text(0);
  r.kind = kind == "environment" ? KeyKind::kEnvironment : kind == "session" ? KeyKind::kSession : KeyKind::kApi;
  r.environment_id = st.Text(1);
  r.session_id = st.Text(2);
  r.work_id = st.Text(3);
  return std::optional<KeyRecord>(r);
}

Result<int64_t> SqliteStore::CountKeys(KeyKind kind) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, "SELECT COUNT(*) FROM keys WHERE kind = ?");
  st.Bind({KindName(kind)});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Int(0) : 0;
}

// ------------------------------------------------------------------- work

namespace {

constexpr const char* kWorkCols =
    "seq, id, environment_id, session_id, state, created_at, delivered_at, deliveries, deadline, last_heartbeat, "
    "ttl_seconds, body";

Param OptInt(const std::optional<int64_t>& v) { return v ? Param(*v) : Param(nullptr); }
Param OptText(const std::optional<std::string>& v) { return v ? Param(*v) : Param(nullptr); }

Result<WorkRecord> WorkFromRow(const Stmt& st) {
  WorkRecord w;
  w.seq = st.Int(0);
  w.id = st.Text(1);
  w.environment_id = st.Text(2);
  w.session_id = st.Text(3);
  w.state = st.Text(4);
  w.created_at = st.Int(5);
  if (!st.IsNull(6)) w.delivered_at = st.Int(6);
  w.deliveries = st.Int(7);
  if (!st.IsNull(8)) w.deadline = st.Int(8);
  if (!st.IsNull(9)) w.last_heartbeat = st.Text(9);
  w.ttl_seconds = static_cast<int>(st.Int(10));
  WARREN_ASSIGN_OR_RETURN(w.body, st.JsonCol(11));
  return w;
}

}  // namespace

Result<std::optional<WorkRecord>> SqliteStore::ReadWorkLocked(const std::string& id) {
  Stmt st(db_, std::string("SELECT ") + kWorkCols + " FROM work_items WHERE id = ?");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<WorkRecord>();
  WARREN_ASSIGN_OR_RETURN(WorkRecord w, WorkFromRow(st));
  return std::optional<WorkRecord>(std::move(w));
}

Status SqliteStore::WriteWorkLocked(const WorkRecord& w) {
  Stmt up(db_,
          "UPDATE work_items SET state = ?, delivered_at = ?, deliveries = ?, deadline = ?, last_heartbeat = ?, "
          "ttl_seconds = ?, body = ? WHERE id = ?");
  WARREN_RETURN_IF_ERROR(up.prepared());
  up.Bind({w.state, OptInt(w.delivered_at), w.deliveries, OptInt(w.deadline), OptText(w.last_heartbeat),
           int64_t{w.ttl_seconds}, DumpJson(w.body), w.id});
  return up.Exec();
}

Status SqliteStore::CreateWork(const WorkRecord& w) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_,
          "INSERT INTO work_items (id, environment_id, session_id, state, created_at, delivered_at, deliveries, "
          "deadline, last_heartbeat, ttl_seconds, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({w.id, w.environment_id, w.session_id.empty() ? Param(nullptr) : Param(w.session_id), w.state, w.created_at,
           OptInt(w.delivered_at), w.deliveries, OptInt(w.deadline), OptText(w.last_heartbeat),
           int64_t{w.ttl_seconds}, DumpJson(w.body)});
  Status s = st.Exec();
  if (s.code() == Code::kConflict)
    return Status::Conflict("work item " + w.id + ": the id exists or session " + w.session_id +
                            " already has a live work item");
  return s;
}

Result<WorkRecord> SqliteStore::GetWork(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  WARREN_ASSIGN_OR_RETURN(auto w, ReadWorkLocked(id));
  if (!w) return Status::NotFound("work item " + id + " not found");
  return std::move(*w);
}

Result<WorkRecord> SqliteStore::UpdateWork(const std::string& id, const std::function<Status(WorkRecord*)>& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<WorkRecord> {
    WARREN_ASSIGN_OR_RETURN(auto cur, ReadWorkLocked(id));
    if (!cur) return Status::NotFound("work item " + id + " not found");
    WorkRecord next = *cur;
    WARREN_RETURN_IF_ERROR(mutate(&next));
    next.id = cur->id;
    next.seq = cur->seq;
    next.environment_id = cur->environment_id;
    next.session_id = cur->session_id;
    next.created_at = cur->created_at;
    const bool unchanged = next.state == cur->state && next.delivered_at == cur->delivered_at &&
                           next.deliveries == cur->deliveries && next.deadline == cur->deadline &&
                           next.last_heartbeat == cur->last_heartbeat && next.ttl_seconds == cur->ttl_seconds &&
                           next.body == cur->body;
    if (!unchanged) {
      Status s = WriteWorkLocked(next);
      if (s.code() == Code::kConflict)
        return Status::Conflict("session " + next.session_id + " already has a live work item");
      WARREN_RETURN_IF_ERROR(s);
    }
    const bool held = cur->state == "starting" || cur->state == "active" || cur->state == "stopping";
    if ((next.state == "stopped" && cur->state != "stopped") || (held && next.state == "queued")) {
      Stmt del(db_, "DELETE FROM keys WHERE kind = 'session' AND work_id = ?");
      WARREN_RETURN_IF_ERROR(del.prepared());
      del.Bind({next.id});
      WARREN_RETURN_IF_ERROR(del.Exec());
    }
    return next;
  });
}

Result<std::optional<WorkRecord>> SqliteStore::ClaimWork(const std::string& environment_id, int64_t now,
                                                         int64_t redeliver_before) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<std::optional<WorkRecord>> {
    Stmt st(db_, std::string("SELECT ") + kWorkCols +
                     " FROM work_items WHERE environment_id = ? AND state = 'queued' AND "
                     "(delivered_at IS NULL OR delivered_at <= ?) ORDER BY seq ASC LIMIT 1");
    WARREN_RETURN_IF_ERROR(st.prepared());
    st.Bind({environment_id, redeliver_before});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return std::optional<WorkRecord>();
    WARREN_ASSIGN_OR_RETURN(WorkRecord w, WorkFromRow(st));
    w.delivered_at = now;
    w.deliveries++;
    WARREN_RETURN_IF_ERROR(WriteWorkLocked(w));
    return std::optional<WorkRecord>(std::move(w));
  });
}

Result<Page> SqliteStore::ListWork(const std::string& environment_id, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  return QueryPage(db_, "work_items", "environment_id = ?", {environment_id}, page);
}

Result<std::vector<WorkRecord>> SqliteStore::UnstoppedWorkForSession(const std::string& session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_, std::string("SELECT ") + kWorkCols +
                   " FROM work_items WHERE session_id = ? AND state != 'stopped' ORDER BY seq ASC");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({session_id});
  std::vector<WorkRecord> out;
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    WARREN_ASSIGN_OR_RETURN(WorkRecord w, WorkFromRow(st));
    out.push_back(std::move(w));
  }
  return out;
}

Result<std::vector<std::string>> SqliteStore::DueWork(const std::string& environment_id, int64_t now, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string sql =
      "SELECT id FROM work_items WHERE deadline IS NOT NULL AND deadline < ? AND "
      "state IN ('starting', 'active', 'stopping')";
  std::vector<Param> params{now};
  if (!environment_id.empty()) {
    sql += " AND environment_id = ?";
    params.push_back(environment_id);
  }
  sql += " ORDER BY deadline ASC, seq ASC LIMIT ?";
  params.push_back(int64_t{std::max(limit, 1)});
  Stmt st(db_, sql);
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind(params);
  std::vector<std::string> out;
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(st.Text(0));
  }
  return out;
}

Status SqliteStore::RecordWorkerPoll(const std::string& environment_id, const std::string& worker_id, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt st(db_,
          "INSERT INTO work_workers (environment_id, worker_id, last_poll_at) VALUES (?, ?, ?) "
          "ON CONFLICT (environment_id, worker_id) DO UPDATE SET last_poll_at = MAX(last_poll_at, excluded.last_poll_at)");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({environment_id, worker_id, now});
  return st.Exec();
}

Result<EnvironmentHolder> SqliteStore::HoldEnvironment(const std::string& environment_id,
                                                       const std::string& orchestrator_id, const std::string& host,
                                                       int64_t now, int64_t stale_before) {
  std::lock_guard<std::mutex> lock(mu_);
  return InTxn([&]() -> Result<EnvironmentHolder> {
    Stmt st(db_,
            "SELECT orchestrator_id, host, acquired_at, seen_at FROM environment_holders WHERE environment_id = ?");
    WARREN_RETURN_IF_ERROR(st.prepared());
    st.Bind({environment_id});
    WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
    EnvironmentHolder h;
    h.environment_id = environment_id;
    if (row) {
      h.orchestrator_id = st.Text(0);
      h.host = st.Text(1);
      h.acquired_at = st.Int(2);
      h.seen_at = st.Int(3);
    }
    if (row && h.orchestrator_id != orchestrator_id && h.seen_at >= stale_before) return h;  // held by another
    if (!row || h.orchestrator_id != orchestrator_id) {
      h.orchestrator_id = orchestrator_id;
      h.acquired_at = now;
      h.seen_at = now;
    } else {
      h.seen_at = std::max(h.seen_at, now);
    }
    h.host = host;
    Stmt up(db_,
            "INSERT INTO environment_holders (environment_id, orchestrator_id, host, acquired_at, seen_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (environment_id) DO UPDATE SET orchestrator_id = excluded.orchestrator_id, "
            "host = excluded.host, acquired_at = excluded.acquired_at, seen_at = excluded.seen_at");
    WARREN_RETURN_IF_ERROR(up.prepared());
    up.Bind({environment_id, h.orchestrator_id, h.host, h.acquired_at, h.seen_at});
    WARREN_RETURN_IF_ERROR(up.Exec());
    return h;
  });
}

Result<WorkCounts> SqliteStore::CountWork(const std::string& environment_id, int64_t workers_since) {
  std::lock_guard<std::mutex> lock(mu_);
  WorkCounts c;
  Stmt st(db_,
          "SELECT COALESCE(SUM(delivered_at IS NULL), 0), COALESCE(SUM(delivered_at IS NOT NULL), 0), MIN(created_at) "
          "FROM work_items WHERE environment_id = ? AND state = 'queued'");
  WARREN_RETURN_IF_ERROR(st.prepared());
  st.Bind({environment_id});
  WARREN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (row) {
    c.depth = st.Int(0);
    c.pending = st.Int(1);
    if (!st.IsNull(2)) c.oldest_queued_at = st.Int(2);
  }
  // Forget workers silent for a day (worker ids are per process).
  Stmt prune(db_, "DELETE FROM work_workers WHERE environment_id = ? AND last_poll_at < ?");
  WARREN_RETURN_IF_ERROR(prune.prepared());
  prune.Bind({environment_id, workers_since - int64_t{86'400'000'000}});
  WARREN_RETURN_IF_ERROR(prune.Exec());
  Stmt wk(db_, "SELECT COUNT(*) FROM work_workers WHERE environment_id = ? AND last_poll_at >= ?");
  WARREN_RETURN_IF_ERROR(wk.prepared());
  wk.Bind({environment_id, workers_since});
  WARREN_ASSIGN_OR_RETURN(bool wrow, wk.Step());
  if (wrow) c.workers = wk.Int(0);
  return c;
}

}  // namespace warren::store
