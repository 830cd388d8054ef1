// Store: Warren's durable state behind one interface (DESIGN decision 3).
//
// Objects are kept as their rendered API JSON plus the indexed columns that
// queries need; each method is one transaction. Lists page by an opaque
// position (`seq`, a store-wide creation counter), never by offset.
//
// Implementations: SqliteStore (embedded default). A PostgreSQL store will
// implement the same interface. Every implementation is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace warren::store {

enum class Order { kAsc, kDesc };

// A page request over `seq`. With `after`, rows strictly past it in `order`;
// with `before`, rows strictly before it in `order` (used for prev pages).
struct PageSpec {
  int limit = 20;
  Order order = Order::kDesc;
  std::optional<int64_t> after;
  std::optional<int64_t> before;
};

struct Page {
  std::vector<Json> items;
  std::vector<int64_t> seqs;  // seq of each item, same order
  bool more_after = false;    // rows exist past the last item
  bool more_before = false;   // rows exist before the first item
};

struct TimeRange {
  std::optional<int64_t> gt, gte, lt, lte;  // micros
};

struct AgentFilter {
  TimeRange created;
  bool include_archived = false;
};

struct SessionFilter {
  std::optional<std::string> agent_id;
  std::optional<int> agent_version;
  std::optional<std::string> environment_id;  // key scope
  std::optional<std::string> memory_store_id;
  std::optional<std::string> deployment_id;
  std::vector<std::string> statuses;
  TimeRange created;
  bool include_archived = false;
};

struct EventFilter {
  std::vector<std::string> types;
  TimeRange processed;  // compared with processed_at (or created when null)
};

// A stored event: its JSON (with "id", "type", "processed_at") and seq.
struct StoredEvent {
  int64_t seq = 0;
  Json body;
};

// Detail code of AppendEvents' Conflict for a call that already has an answer.
inline constexpr const char kAlreadyAnswered[] = "tool_result_already_recorded";

// The field of an answer event that names the call it answers:
// "tool_use_id" for user.tool_result, "custom_tool_use_id" for
// user.custom_tool_result; "" for other events or when it is not a string.
inline std::string AnswerField(const Json& event) {
  if (!event.is_object()) return "";
  auto t = event.find("type");
  if (t == event.end() || !t->is_string()) return "";
  const char* field = *t == "user.tool_result" ? "tool_use_id" : *t == "user.custom_tool_result" ? "custom_tool_use_id" : nullptr;
  if (field == nullptr) return "";
  auto f = event.find(field);
  return f != event.end() && f->is_string() ? std::string(field) : "";
}

enum class KeyKind { kApi, kEnvironment, kSession };

struct KeyRecord {
  KeyKind kind = KeyKind::kApi;
  std::string environment_id;  // kEnvironment
  std::string session_id;      // kSession
  std::string work_id;         // kSession
};

// A work item of a self-hosted environment's queue (spec 3.3). The
// scheduling fields are the store's indexed columns; `body` is the public
// Work object (its `secret` always null: secrets are never stored).
struct WorkRecord {
  int64_t seq = 0;  // set by the store
  std::string id;
  std::string environment_id;
  std::string session_id;  // data.id of a session item; empty otherwise
  std::string state;       // queued | starting | active | stopping | stopped
  int64_t created_at = 0;  // micros
  // Last poll delivery of a queued item (pending = delivered, not acked).
  std::optional<int64_t> delivered_at;
  int64_t deliveries = 0;
  // Lease end (starting/active) or forced completion (stopping), micros.
  std::optional<int64_t> deadline;
  // Compare-and-set token of the lease; nullopt = NO_HEARTBEAT.
  std::optional<std::string> last_heartbeat;
  int ttl_seconds = 90;
  Json body;
};

struct WorkCounts {
  int64_t depth = 0;    // queued, not delivered
  int64_t pending = 0;  // queued, delivered, not acked
  std::optional<int64_t> oldest_queued_at;  // micros, over depth + pending
  int64_t workers = 0;  // distinct worker ids that polled since `workers_since`
};

// The engine's typed state of one session (DESIGN decision 10), kept as the
// columns of its own table and changed only inside StepSession. Its meaning
// belongs to the engine (engine/engine_state.h); the store keeps it.
struct EngineRecord {
  std::string phase = "idle";
  int64_t consumed_seq = 0;
  std::string model_request_start_id;
  int64_t calls_this_turn = 0;
  int64_t cost_micros = 0;
  // The conversation is `summary` (if not empty) followed by the transcript
  // rows with idx >= transcript_base; transcript_next is the next idx.
  int64_t transcript_base = 0;
  int64_t transcript_next = 0;
  std::string summary;
  Json pending = Json::array();  // tool calls of the current model answer (one answer's worth)
};

// One row of a session's append-only transcript: a Messages-shape message
// (`content` is its array of blocks). Rows are never rewritten; compaction
// moves the engine's base past them.
struct TranscriptEntry {
  int64_t idx = 0;
  std::string role;  // user | assistant
  Json content = Json::array();
};

// Called inside the write transaction's critical section, after commit, in
// commit order (used to publish events to live streams in order).
using CommitHook = std::function<void(const std::vector<StoredEvent>&)>;

// Mutation callback for read-modify-write updates. Receives the current
// object, returns the new one (or an error, which aborts the transaction).
using Mutator = std::function<Result<Json>(const Json& current)>;
// Session variant: may also append events (to `*events`) atomically.
using SessionMutator = std::function<Result<Json>(const Json& current, std::vector<Json>* events)>;

class Store {
 public:
  virtual ~Store() = default;

  // ---- agents (every update is a new immutable version)
  virtual Status CreateAgent(const Json& agent) = 0;
  // Latest when `version` is empty.
  virtual Result<Json> GetAgent(const std::string& id, std::optional<int> version) = 0;
  // `mutate` gets the latest version and returns the next one (its "version"
  // must be latest+1).
  virtual Result<Json> UpdateAgent(const std::string& id, const Mutator& mutate) = 0;
  virtual Result<Page> ListAgents(const AgentFilter& filter, const PageSpec& page) = 0;
  virtual Result<Page> ListAgentVersions(const std::string& id, const PageSpec& page) = 0;

  // ---- environments
  // Conflict if a non-deleted environment has the same name.
  virtual Status CreateEnvironment(const Json& env) = 0;
  virtual Result<Json> GetEnvironment(const std::string& id) = 0;
  virtual Result<Json> UpdateEnvironment(const std::string& id, const Mutator& mutate) = 0;
  virtual Result<Page> ListEnvironments(bool include_archived, const PageSpec& page) = 0;
  virtual Status DeleteEnvironment(const std::string& id) = 0;

  // ---- sessions
  // Creates the session and appends `initial_events` atomically.
  virtual Result<std::vector<StoredEvent>> CreateSession(const Json& session, const std::vector<Json>& initial_events,
                                                         const CommitHook& hook) = 0;
  virtual Result<Json> GetSession(const std::string& id) = 0;
  // `mutate` may add events to append in the same transaction.
  virtual Result<Json> UpdateSession(const std::string& id, const SessionMutator& mutate, const CommitHook& hook) = 0;
  virtual Result<Page> ListSessions(const SessionFilter& filter, const PageSpec& page) = 0;
  // The engine's atomic step: `mutate` gets the session and returns the new
  // one; it may append events and replace the bodies of existing events
  // (same id, e.g. processed_at set). The hook sees the replaced events
  // (seq 0) first, then the appended ones with their seq.
  //
  // Engine state rides in the same transaction: the store fills
  // `engine_in` with the committed EngineRecord (nullopt before the engine's
  // first step) before calling `mutate`; if `mutate` sets `engine`, that
  // record replaces it, and `transcript` rows are appended (each idx must be
  // new for the session, else the transaction fails with Conflict).
  struct SessionStep {
    std::vector<Json> append;
    std::vector<Json> replace;
    std::optional<EngineRecord> engine_in;
    std::optional<EngineRecord> engine;
    std::vector<TranscriptEntry> transcript;
  };
  using StepMutator = std::function<Result<Json>(const Json& current, SessionStep* step)>;
  virtual Result<Json> StepSession(const std::string& id, const StepMutator& mutate, const CommitHook& hook) = 0;
  // Ids of sessions the engine must look at after a restart: status running
  // or rescheduling, or holding client events not yet processed.
  virtual Result<std::vector<std::string>> SessionsNeedingEngine() = 0;
  // Deletes the session, its events, engine state and transcript; appends
  // nothing.
  virtual Status DeleteSession(const std::string& id) = 0;

  // ---- session secrets (e.g. a github_repository's authorization_token):
  // values sealed by the caller (common/secret_box.h, AES-256-GCM) and opaque
  // to the store, never part of a session's JSON. The API writes them before
  // the session row, so no session exists without its secrets; DeleteSession
  // removes them. Put replaces the named values given.
  virtual Status PutSessionSecrets(const std::string& session_id, const std::map<std::string, std::string>& sealed) = 0;
  virtual Result<std::map<std::string, std::string>> GetSessionSecrets(const std::string& session_id) = 0;

  // ---- engine state (written only through StepSession)
  // The committed engine record of a session; nullopt if the engine never
  // stepped it. NotFound if the session does not exist.
  virtual Result<std::optional<EngineRecord>> GetEngineState(const std::string& session_id) = 0;
  // Transcript rows with idx >= from_idx, ascending, at most `limit`.
  virtual Result<std::vector<TranscriptEntry>> ReadTranscript(const std::string& session_id, int64_t from_idx,
                                                              int limit) = 0;

  // ---- events
  // Appends events to a session atomically, after `check` (run inside the
  // transaction with the current session) accepts. Returns stored events.
  // A tool call is answered at most once: an answer (AnswerField) to a call
  // that already has an answer of the same type in the session, or two
  // answers to one call in `events`, is Conflict with detail code
  // kAlreadyAnswered, and nothing is appended. The check is part of the
  // transaction, so of two concurrent appends of an answer one fails.
  virtual Result<std::vector<StoredEvent>> AppendEvents(
      const std::string& session_id, const std::function<Status(const Json& session)>& check,
      const std::vector<Json>& events, const CommitHook& hook) = 0;
  virtual Result<Page> ListEvents(const std::string& session_id, const EventFilter& filter,
                                  const PageSpec& page) = 0;
  // Events of a session with seq > after_seq, ascending (stream replay).
  virtual Result<std::vector<StoredEvent>> EventsAfter(const std::string& session_id, int64_t after_seq,
                                                       int limit) = 0;
  // One event of a session by id, if present.
  virtual Result<std::optional<StoredEvent>> GetEvent(const std::string& session_id, const std::string& event_id) = 0;

  // ---- credentials (only hashes are stored)
  virtual Status PutKey(const std::string& key_hash, const KeyRecord& record) = 0;
  virtual Result<std::optional<KeyRecord>> LookupKey(const std::string& key_hash) = 0;
  virtual Result<int64_t> CountKeys(KeyKind kind) = 0;

  // ---- work queue (spec 3.3). Defaults return Unimplemented so that stores
  // and fakes without a queue need not implement them.
  // Inserts a new item. Conflict if its session already has a live
  // (queued/starting/active/stopping) item: a stopping item's holder still
  // works until it confirms, its lease lapses or the stop is forced.
  virtual Status CreateWork(const WorkRecord& work);
  virtual Result<WorkRecord> GetWork(const std::string& id);
  // Read-modify-write in one transaction; `mutate` edits the record (not its
  // id, environment or session) or returns an error that aborts. A mutation
  // that changes nothing writes nothing. In the same transaction, the item's
  // sessions tokens (KeyKind::kSession with its work_id) are revoked when it
  // becomes `stopped` or loses its lease (starting/active/stopping ->
  // queued), so a worker that lost the item cannot keep posting for it.
  virtual Result<WorkRecord> UpdateWork(const std::string& id, const std::function<Status(WorkRecord*)>& mutate);
  // Atomically claims the oldest queued item of `environment_id` that was
  // never delivered or last delivered at or before `redeliver_before`: sets
  // delivered_at = now and counts the delivery. nullopt when none.
  virtual Result<std::optional<WorkRecord>> ClaimWork(const std::string& environment_id, int64_t now,
                                                      int64_t redeliver_before);
  // Work objects of one environment, paged by seq.
  virtual Result<Page> ListWork(const std::string& environment_id, const PageSpec& page);
  // Items of one session that are not stopped, oldest first.
  virtual Result<std::vector<WorkRecord>> UnstoppedWorkForSession(const std::string& session_id);
  // Ids of starting/active/stopping items whose deadline < now (all
  // environments when `environment_id` is empty), oldest deadline first.
  virtual Result<std::vector<std::string>> DueWork(const std::string& environment_id, int64_t now, int limit);
  // Remembers that `worker_id` polled `environment_id` at `now`.
  virtual Status RecordWorkerPoll(const std::string& environment_id, const std::string& worker_id, int64_t now);
  virtual Result<WorkCounts> CountWork(const std::string& environment_id, int64_t workers_since);
};

inline Status Store::CreateWork(const WorkRecord&) { return Status::Unimplemented("work queue not supported by this store"); }
inline Result<WorkRecord> Store::GetWork(const std::string&) {
  return Status::Unimplemented("work queue not supported by this store");
}
inline Result<WorkRecord> Store::UpdateWork(const std::string&, const std::function<Status(WorkRecord*)>&) {
  return Status::Unimplemented("work queue not supported by this store");
}
inline Result<std::optional<WorkRecord>> Store::ClaimWork(const std::string&, int64_t, int64_t) {
  return Status::Unimplemented("work queue not supported by this store");
}
inline Result<Page> Store::ListWork(const std::string&, const PageSpec&) {
  return Status::Unimplemented("work queue not supported by this store");
}
inline Result<std::vector<WorkRecord>> Store::UnstoppedWorkForSession(const std::string&) {
  return Status::Unimplemented("work queue not supported by this store");
}
inline Result<std::vector<std::string>> Store::DueWork(const std::string&, int64_t, int) {
  return Status::Unimplemented("work queue not supported by this store");
}
inline Status Store::RecordWorkerPoll(const std::string&, const std::string&, int64_t) {
  return Status::Unimplemented("work queue not supported by this store");
}
inline Result<WorkCounts> Store::CountWork(const std::string&, int64_t) {
  return Status::Unimplemented("work queue not supported by this store");
}

}  // namespace warren::store
