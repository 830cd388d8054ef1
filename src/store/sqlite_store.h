// SqliteStore: the embedded Store on SQLite in WAL mode.
//
// One connection guarded by a mutex: SQLite has one writer anyway, and the
// critical section also orders CommitHooks. `synchronous=FULL` by default, so
// an acknowledged write survives a crash of the process or of the machine.
// Keeps the Store contract (store.h): every write is BEGIN IMMEDIATE under
// the mutex, so event seqs (AUTOINCREMENT) follow commit order store-wide and
// hooks run in commit order; time comes from the injected Clock; scheduling
// queries are served by indexes (migration 4, checked with EXPLAIN QUERY
// PLAN in sqlite_store_test.cc). Thread-safe; the Clock must outlive it.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "store/store.h"

struct sqlite3;

namespace warren::store {

struct SqliteOptions {
  std::string path;                 // database file
  std::string synchronous = "FULL";  // FULL | NORMAL
  int busy_timeout_ms = 5000;
  // Test hook (store.h contract 4): roll back this many attempts of every
  // mutating transaction after its mutator ran, then run it again.
  int abort_attempts = 0;
  // Test hook: migrate only up to this schema version (0 = latest), to
  // build databases as older releases left them.
  int migrate_to = 0;
};

class SqliteStore final : public Store {
 public:
  // Opens (creating if needed) and migrates the database. `clock` (not
  // owned, required) is the store's only source of time.
  static Result<std::unique_ptr<SqliteStore>> Open(const SqliteOptions& options, Clock* clock);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // Current schema version (for tests and `warren doctor`).
  int schema_version();
  // For tests: records the SQL text (with `?` placeholders) of every
  // statement run until called again with nullptr.
  void TraceStatements(std::vector<std::string>* sink);
  // For tests: the detail column of EXPLAIN QUERY PLAN for `sql`.
  Result<std::vector<std::string>> ExplainQueryPlan(const std::string& sql);

  Status CreateAgent(const Json& agent) override;
  Result<Json> GetAgent(const std::string& id, std::optional<int> version) override;
  Result<Json> UpdateAgent(const std::string& id, const Mutator& mutate) override;
  Result<Page> ListAgents(const AgentFilter& filter, const PageSpec& page) override;
  Result<Page> ListAgentVersions(const std::string& id, const PageSpec& page) override;

  Status CreateEnvironment(const Json& env) override;
  Result<Json> GetEnvironment(const std::string& id) override;
  Result<Json> UpdateEnvironment(const std::string& id, const Mutator& mutate) override;
  Result<Page> ListEnvironments(bool include_archived, const PageSpec& page) override;
  Status DeleteEnvironment(const std::string& id) override;

  Result<std::vector<StoredEvent>> CreateSession(const Json& session, const std::vector<Json>& initial_events,
                                                 const CommitHook& hook) override;
  Result<Json> GetSession(const std::string& id) override;
  Result<Json> UpdateSession(const std::string& id, const SessionMutator& mutate, const CommitHook& hook) override;
  Result<Page> ListSessions(const SessionFilter& filter, const PageSpec& page) override;
  Result<Json> StepSession(const std::string& id, const StepMutator& mutate, const CommitHook& hook) override;
  Result<std::vector<std::string>> SessionsNeedingEngine() override;
  Status DeleteSession(const std::string& id) override;
  Status PutSessionSecrets(const std::string& session_id, const std::map<std::string, std::string>& sealed) override;
  Result<std::map<std::string, std::string>> GetSessionSecrets(const std::string& session_id) override;
  Result<std::optional<EngineRecord>> GetEngineState(const std::string& session_id) override;
  Result<std::vector<TranscriptEntry>> ReadTranscript(const std::string& session_id, int64_t from_idx,
                                                      int limit) override;

  Result<std::vector<StoredEvent>> AppendEvents(const std::string& session_id,
                                                const std::function<Status(const Json& session)>& check,
                                                const std::vector<Json>& events, const CommitHook& hook) override;
  Result<Page> ListEvents(const std::string& session_id, const EventFilter& filter, const PageSpec& page) override;
  Result<std::vector<StoredEvent>> EventsAfter(const std::string& session_id, int64_t after_seq, int limit) override;
  Result<std::optional<StoredEvent>> GetEvent(const std::string& session_id, const std::string& event_id) override;

  Status CreateVault(const Json& vault) override;
  Result<Json> GetVault(const std::string& id) override;
  Result<Json> UpdateVault(const std::string& id, const Mutator& mutate) override;
  Result<Page> ListVaults(bool include_archived, const PageSpec& page) override;
  Status DeleteVault(const std::string& id) override;
  Result<int64_t> CountVaults() override;
  Status CreateCredential(const CredentialRecord& credential, int max_per_vault) override;
  Result<CredentialRecord> GetCredential(const std::string& vault_id, const std::string& id) override;
  Result<CredentialRecord> UpdateCredential(const std::string& vault_id, const std::string& id,
                                            const std::function<Status(CredentialRecord*)>& mutate) override;
  Result<Page> ListCredentials(const std::string& vault_id, bool include_archived, const PageSpec& page) override;
  Status DeleteCredential(const std::string& vault_id, const std::string& id) override;

  Status PutKey(const std::string& key_hash, const KeyRecord& record) override;
  Result<std::optional<KeyRecord>> LookupKey(const std::string& key_hash) override;
  Result<int64_t> CountKeys(KeyKind kind) override;

  Status CreateWork(const WorkRecord& work) override;
  Result<WorkRecord> GetWork(const std::string& id) override;
  Result<WorkRecord> UpdateWork(const std::string& id, const std::function<Status(WorkRecord*)>& mutate) override;
  Result<std::optional<WorkRecord>> ClaimWork(const std::string& environment_id, int64_t now,
                                              int64_t redeliver_before) override;
  Result<Page> ListWork(const std::string& environment_id, const PageSpec& page) override;
  Result<std::vector<WorkRecord>> UnstoppedWorkForSession(const std::string& session_id) override;
  Result<std::vector<std::string>> DueWork(const std::string& environment_id, int64_t now, int limit) override;
  Status RecordWorkerPoll(const std::string& environment_id, const std::string& worker_id, int64_t now) override;
  Result<WorkCounts> CountWork(const std::string& environment_id, int64_t workers_since) override;
  Result<EnvironmentHolder> HoldEnvironment(const std::string& environment_id, const std::string& orchestrator_id,
                                            const std::string& host, int64_t now, int64_t stale_before) override;

  void SetOutboxRule(OutboxRule rule) override;
  void SetObjectOutboxRule(ObjectOutboxRule rule) override;
  Status RecordObjectChange(const ObjectChange& change) override;
  void SetOutboxListener(std::function<void()> listener) override;
  Result<std::vector<OutboxDelivery>> ClaimDeliveries(int64_t now, int64_t lease_until, int limit) override;
  Result<std::optional<int64_t>> NextDeliveryDue() override;
  Result<DeliveryOutcome> FinishDelivery(int64_t seq, const DeliveryAttempt& attempt) override;
  Result<Page> ListDeliveries(const DeliveryFilter& filter, const PageSpec& page) override;
  Result<OutboxDelivery> GetDelivery(int64_t seq) override;
  Result<std::vector<EndpointState>> ListEndpointStates() override;
  Result<EndpointState> EnableEndpoint(const std::string& name, int64_t now) override;
  Result<int64_t> PruneDeliveries(int64_t finished_before, int limit) override;

 private:
  SqliteStore(sqlite3* db, Clock* clock, int abort_attempts)
      : db_(db), clock_(clock), abort_attempts_(abort_attempts) {}
  Status Migrate(int migrate_to);
  // Runs `body` in a write transaction, retrying per abort_attempts_.
  template <typename F>
  auto InTxn(F&& body) -> decltype(body());
  Status SetMemoryStoresLocked(const std::string& session_id, const Json& session);
  Result<std::optional<WorkRecord>> ReadWorkLocked(const std::string& id);
  Status WriteWorkLocked(const WorkRecord& w);
  Result<std::optional<EngineRecord>> EngineStateLocked(const std::string& session_id);
  Status CheckAnswersLocked(const std::string& session_id, const std::vector<Json>& events);
  Result<std::vector<StoredEvent>> InsertEventsLocked(const std::string& session_id, const std::vector<Json>& events);
  // Writes the outbox rows `event` causes (outbox_rule_), in the open transaction.
  Status OutboxLocked(const std::string& session_id, const Json& event);
  // The same for an object change (object_rule_).
  Status ObjectOutboxLocked(const ObjectChange& change);
  // The change an update of an object reports (row_util.h UpdateChangeType), if any.
  Status ObjectUpdateLocked(const std::string& kind, const std::string& id, const std::string& parent_id,
                            const Json& current, const Json& next, const std::string& updated_type);
  Status InsertOutboxLocked(const std::vector<OutboxMessage>& messages);
  Result<EndpointState> EndpointStateLocked(const std::string& name);
  Status WriteEndpointStateLocked(const EndpointState& ep);

  std::mutex mu_;
  sqlite3* db_;
  Clock* clock_;
  const int abort_attempts_;
  std::vector<std::string>* trace_ = nullptr;
  OutboxRule outbox_rule_;
  ObjectOutboxRule object_rule_;
  std::function<void()> outbox_listener_;
  bool outbox_added_ = false;  // the open transaction wrote outbox rows (under mu_)
};

}  // namespace warren::store
