// MemoryStore: an in-memory Store for unit tests of the engine, the queue and
// the orchestrator (envoy's interface + fake).
//
// Keeps the whole Store contract (store.h) with the same semantics as
// SqliteStore, checked by the same conformance suite
// (store_conformance_test.cc): one mutex is the single writer, so seqs follow
// commit order and hooks run in commit order under it; keyset paging by seq;
// the work queue with its partial-unique live item per session and token
// revocation. Nothing is durable. Time comes only from the injected Clock.
// Thread-safe; the Clock (not owned) must outlive the store.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <set>

#include "common/clock.h"
#include "store/store.h"

namespace warren::store {

struct MemoryStoreOptions {
  // Test hook (store.h contract 4): run and discard this many attempts of
  // every mutating transaction before the one that commits.
  int abort_attempts = 0;
};

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(Clock* clock, MemoryStoreOptions options = {});
  ~MemoryStore() override = default;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

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
  struct Row {
    int64_t seq = 0;
    int64_t created_at = 0;
    bool archived = false;
    Json body;
  };
  struct EventRow {
    int64_t seq = 0;
    std::string id;
    std::string type;
    int64_t ts = 0;
    Json body;
  };
  struct SessionEvents {
    std::map<int64_t, EventRow> by_seq;
    std::map<std::string, int64_t> seq_by_id;
    std::vector<OutboxMessage> outbox;  // staged with the events; moved to outbox_ at commit
  };

  Result<std::vector<StoredEvent>> InsertEventsLocked(const std::string& session_id, const std::vector<Json>& events,
                                                      SessionEvents* log);
  // Moves the outbox rows staged in `log` into outbox_ (at commit).
  void CommitOutboxLocked(SessionEvents* log);
  // Adds outbox rows (at commit) and tells the listener.
  void CommitMessagesLocked(std::vector<OutboxMessage> messages);
  // The rows of an object change (object_rule_), at commit.
  void CommitObjectChangeLocked(const ObjectChange& change);
  void CommitObjectUpdateLocked(const std::string& kind, const std::string& id, const std::string& parent_id,
                                const Json& current, const Json& next, const std::string& updated_type);
  bool LiveWorkForSessionLocked(const std::string& session_id, const std::string& except_id) const;

  std::mutex mu_;
  Clock* const clock_;
  const int abort_attempts_;
  int64_t next_seq_ = 1;  // one counter for every table (seqs are unique, increasing)

  std::map<std::string, Row> agents_;                                  // by id
  std::map<std::string, std::map<int64_t, std::pair<int64_t, Json>>> versions_;  // id -> version -> (seq, body)
  std::map<std::string, Row> envs_;
  std::map<std::string, Row> sessions_;
  std::map<std::string, SessionEvents> events_;  // by session id
  std::map<std::string, KeyRecord> keys_;
  std::map<std::string, EngineRecord> engine_;                            // by session id
  std::map<std::string, std::map<int64_t, TranscriptEntry>> transcript_;  // session id -> idx -> row
  std::map<std::string, std::map<std::string, std::string>> secrets_;     // session id -> name -> sealed
  std::map<std::string, WorkRecord> work_;
  std::map<std::string, Row> vaults_;
  struct CredRow {
    int64_t seq = 0;
    CredentialRecord rec;
  };
  std::map<std::string, CredRow> creds_;  // by credential id
  std::map<std::pair<std::string, std::string>, int64_t> workers_;  // (env, worker) -> last poll
  std::map<std::string, EnvironmentHolder> holders_;               // by environment id
  OutboxRule outbox_rule_;
  ObjectOutboxRule object_rule_;
  std::function<void()> outbox_listener_;
  std::map<std::string, EndpointState> endpoints_;               // by name
  std::map<int64_t, OutboxDelivery> outbox_;                     // by seq
  std::set<std::pair<std::string, std::string>> outbox_keys_;  // (message_id, endpoint)
};

}  // namespace warren::store
