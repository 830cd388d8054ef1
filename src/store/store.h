// Store: Warren's durable state behind one interface (DESIGN decisions 3, 11).
//
// Objects are kept as their rendered API JSON plus the indexed columns that
// queries need. Implementations: SqliteStore (embedded default, WAL) and
// MemoryStore (in-memory fake for unit tests). A PostgreSQL store will
// implement the same interface and must pass the same conformance suite
// (store_conformance_test.cc: add one factory there).
//
// THE CONTRACT (every implementation keeps it; the conformance suite tests it)
//
// 1. Transactions. Each method is one transaction: it commits whole or not at
//    all. A method that fails returns a non-OK Status and leaves no trace.
//    Errors: NotFound for a missing object (the message names it), Conflict
//    for a uniqueness or state conflict, Unavailable when the backend is busy
//    past its timeout, IOError for backend failures, InvalidArgument for an
//    object that lacks a field the store indexes.
//
// 2. Event order. Within one session, event seqs are unique, positive and
//    strictly increasing in COMMIT order: when an event with seq N is visible
//    to a reader, every event of that session with a seq below N is visible
//    too (or was never committed). A reader that tails a session with
//    EventsAfter(last_seen) therefore never skips an event. Seqs may have
//    gaps and need not be comparable across sessions.
//    - SqliteStore: one writer (BEGIN IMMEDIATE under the store mutex), and
//      seq is assigned inside that transaction, so commit order = seq order
//      store-wide.
//    - PostgreSQL must NOT take event seqs from a plain SEQUENCE (nextval is
//      not transactional: T1 takes 5, T2 takes 6 and commits first, a reader
//      sees 6 and moves past 5 before T1 commits). It serialises writers of
//      one session while assigning seqs: `SELECT next_event_seq FROM sessions
//      WHERE id = $1 FOR UPDATE` (or pg_advisory_xact_lock on the session),
//      takes seqs from that per-session counter and updates it, all in the
//      writing transaction. The lock is held to commit, so two writers of one
//      session commit in seq order.
//
// 3. Commit hooks. A CommitHook runs after its transaction committed, never
//    for a failed one, with the events that transaction wrote. For one
//    session, hooks run one at a time and in commit order, so a live stream
//    fed by hooks sees events in seq order. SqliteStore and MemoryStore run
//    the hook inside their write critical section (all hooks in commit
//    order). A PostgreSQL store holds a per-session in-process lock from
//    before the seq assignment until its hook returned (other processes
//    learn of events by tailing, e.g. after LISTEN/NOTIFY). Hooks must be
//    quick and must not call the Store (they run under its lock).
//
// 4. Mutators (Mutator, SessionMutator, StepMutator, UpdateWork's mutate,
//    AppendEvents' check) run inside the transaction and MAY RUN MORE THAN
//    ONCE: a store retries the transaction after a serialization failure
//    (PostgreSQL SERIALIZABLE / deadlock), discarding the attempt. So a
//    mutator must be a function of its input: it must not call the Store
//    (deadlock on SqliteStore, a different transaction elsewhere), must not
//    publish, log as done, schedule work or otherwise act outside the
//    transaction, and must reset (not accumulate into) any captured output.
//    Act on what the method RETURNS, after it returns. The out-parameters
//    (`events`, `step`, the WorkRecord) are fresh for every attempt. Stores
//    honour `abort_attempts` in their options (a test hook that discards
//    that many attempts of every mutating transaction), so callers can test
//    their mutators under retries.
//
// 5. Time. A store reads time only from the Clock it was given (for rows
//    without their own timestamp: event times before processing, key
//    creation, migrations); it never calls Clock::Real() itself. Scheduling
//    times (`now` of ClaimWork, DueWork, ...) are passed in by the caller.
//
// 6. Paging. Lists page by `seq` (a per-table creation counter), never by
//    offset, so inserts and deletes between pages neither repeat nor skip
//    rows. See PageSpec. Filters are applied before the page is cut.
//
// 7. Thread-safety. Every method may be called from any thread at the same
//    time; the object is owned by the composition root (src/cli) and
//    outlives its users.
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

// A page request over `seq`. `order` is the listing order. With `after`,
// rows strictly past that seq in `order` (next page); with `before`, rows
// strictly before it in `order` (previous page), still returned in `order`.
// `after` wins when both are set. `limit` is clamped to [1, 1000].
struct PageSpec {
  int limit = 20;
  Order order = Order::kDesc;
  std::optional<int64_t> after;
  std::optional<int64_t> before;
};

// One page. `more_after`: rows matching the filter exist past the last item
// (in `order`); `more_before`: rows exist before the first item. On an empty
// page, `more_before` is true when `after` was given and `more_after` when
// `before` was given (the cursor's own side is assumed non-empty).
struct Page {
  std::vector<Json> items;
  std::vector<int64_t> seqs;  // seq of each item, same order
  bool more_after = false;    // rows exist past the last item
  bool more_before = false;   // rows exist before the first item
};

// Bounds in micros since the epoch; each one set is applied (AND).
struct TimeRange {
  std::optional<int64_t> gt, gte, lt, lte;  // micros
};

struct AgentFilter {
  TimeRange created;
  bool include_archived = false;
};

// All set fields must match (AND); `statuses` matches any of them.
struct SessionFilter {
  std::optional<std::string> agent_id;
  std::optional<int> agent_version;
  std::optional<std::string> environment_id;  // key scope
  std::optional<std::string> memory_store_id;  // any resources[].memory_store_id
  std::optional<std::string> deployment_id;
  std::vector<std::string> statuses;
  TimeRange created;
  bool include_archived = false;
};

struct EventFilter {
  std::vector<std::string> types;
  // Compared with the event's time: its processed_at, or the store's clock
  // at append while processed_at is null.
  TimeRange processed;
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

// The one orchestrator that serves an environment (docs/ORCHESTRATOR.md,
// "Several orchestrators"): an exclusive, expiring holder record.
struct EnvironmentHolder {
  std::string environment_id;
  std::string orchestrator_id;  // stable per sandbox data dir
  std::string host;             // its hostname, for messages only
  int64_t acquired_at = 0;      // micros: when this id took the environment
  int64_t seen_at = 0;          // micros: its last accepted poll
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

// A vault credential (spec 6): its public JSON (`body`, the API object,
// never holding a secret) and its secret material sealed by the caller
// (common/secret_box.h), opaque to the store.
struct CredentialRecord {
  Json body;
  std::string sealed;
};

// ---- outgoing webhooks (webhooks_out/, docs/WEBHOOKS.md)
//
// A durable outbox: one row per (message, endpoint). Rows are written in the
// SAME transaction as the event that caused them (see OutboxRule), so a
// committed event never lacks its deliveries, whatever crashes after.
struct OutboxMessage {
  std::string message_id;  // webhook-id, the envelope's "id"; the same on every retry
  std::string endpoint;    // configured endpoint name
  std::string event_type;  // the envelope's data.type
  std::string session_id;  // "" for non-session objects
  std::string payload;     // the exact body bytes that are signed and sent
  std::string object_id;   // the envelope's data.id; "" = session_id
};

// next_attempt_at of a pending row held because its endpoint is disabled:
// never due until EnableEndpoint makes it due again.
inline constexpr int64_t kHeldUntilEnabled = INT64_MAX;

struct OutboxDelivery {
  int64_t seq = 0;  // set by the store; listing order
  OutboxMessage message;
  std::string state = "pending";  // pending | delivered | failed
  int attempts = 0;
  int64_t created_at = 0;       // micros
  int64_t next_attempt_at = 0;  // micros; a claimed row's lease end
  std::optional<int64_t> last_attempt_at;
  std::optional<int64_t> delivered_at;
  int last_status = 0;  // HTTP status of the last attempt, 0 = none / network error
  std::string last_error;

  bool held() const { return state == "pending" && next_attempt_at == kHeldUntilEnabled; }
  // The delivery log's JSON (no payload secrets exist: payloads are thin).
  // A held row shows next_attempt_at null.
  Json ToJson() const;
};

struct DeliveryFilter {
  std::string endpoint;  // "" = any
  std::string state;     // "" = any
  std::string message_id;
};

// The outcome of one delivery attempt (FinishDelivery).
struct DeliveryAttempt {
  bool delivered = false;
  int status = 0;
  std::string error;
  int64_t at = 0;  // micros
  // When not delivered: the next attempt's time, or nullopt to give up
  // (state failed).
  std::optional<int64_t> retry_at;
  // Endpoint auto-disable (spec 3.8): when > 0, this many consecutive failed
  // attempts of the row's endpoint (across its rows) disable it.
  int disable_endpoint_after = 0;
};

// The delivery state of one endpoint, kept by the store (a row appears with
// the endpoint's first recorded attempt). While `disabled_at` is set, its
// pending rows are held: ClaimDeliveries never returns them (it parks them
// at kHeldUntilEnabled) and a failed attempt holds its row instead of
// retrying or failing it, so nothing is lost; EnableEndpoint releases them.
struct EndpointState {
  std::string name;
  int consecutive_failures = 0;  // attempts since the last delivered one
  std::optional<int64_t> disabled_at;
};

// What FinishDelivery recorded.
struct DeliveryOutcome {
  OutboxDelivery delivery;
  EndpointState endpoint;
  bool disabled_endpoint = false;  // this attempt disabled the endpoint
};

// Applies `attempt` to `d` (attempts, last_*, state) and to `ep`: how every
// store's FinishDelivery updates a pending row and its endpoint. Returns
// true when this attempt disabled the endpoint.
bool ApplyAttempt(const DeliveryAttempt& attempt, OutboxDelivery* d, EndpointState* ep);

// A change to an object that has no event log of its own, as the outbox
// sees it (spec 3.8 data.types). The store reports, inside the writing
// transaction:
//   CreateAgent                agent.created
//   UpdateAgent                agent.archived when archived_at goes from null
//                              to set; agent.updated when a new version is
//                              recorded (an in-place rewrite reports nothing)
//   Create/Update/DeleteEnvironment  environment.created, .archived (as
//                              above), .updated (any other change), .deleted
//   Create/Update/DeleteVault  vault.created, .archived (no other update), .deleted
//                              after a vault_credential.deleted per credential it held
//   Create/Update/DeleteCredential  vault_credential.created, .archived,
//                              .deleted (parent_id = the vault; rotations
//                              and token refreshes report nothing)
// Session archival is reported through the OutboxRule as the pseudo event
// "session.archived". Changes with no write (vault_credential.refresh_failed)
// go through RecordObjectChange.
struct ObjectChange {
  std::string type;       // "<object>.<action>"
  std::string id;         // the object's id
  std::string parent_id;  // a credential's vault; "" otherwise
  // Tells changes of one object and type apart ("" for a type that happens
  // once per object: created, archived, deleted). The store uses the
  // agent's version for agent.updated and a random id for other repeats.
  std::string change_id;
  std::string at;  // RFC 3339: the object's created_at / updated_at / archived_at, or the store clock's now
};

// Decides, inside the writing transaction, which outbox messages an event
// causes. `session_id` is the session the event belongs to; `event` the
// stored body. Pseudo-events for object changes without an event of their
// own use the type "session.created" / "session.deleted" / "session.archived"
// (CreateSession / DeleteSession / the update that sets archived_at call the
// rule with {"type", "processed_at"}). MUST be a pure
// function of its input (it may run more than once, contract 4) and quick.
using OutboxRule = std::function<std::vector<OutboxMessage>(const std::string& session_id, const Json& event)>;
// The same for object changes (ObjectChange). Pure and quick, like OutboxRule.
using ObjectOutboxRule = std::function<std::vector<OutboxMessage>(const ObjectChange& change)>;

// Called after commit with the events the transaction wrote, in commit order
// per session (contract 3). Not called when nothing was written.
using CommitHook = std::function<void(const std::vector<StoredEvent>&)>;

// Mutation callback for read-modify-write updates. Receives the current
// object, returns the new one (or an error, which aborts the transaction).
// May run more than once (contract 4).
using Mutator = std::function<Result<Json>(const Json& current)>;
// Session variant: may also append events (to `*events`, empty on every
// attempt) atomically. May run more than once (contract 4).
using SessionMutator = std::function<Result<Json>(const Json& current, std::vector<Json>* events)>;

class Store {
 public:
  virtual ~Store() = default;

  // ---- agents (every update is a new immutable version)
  // Stores version agent["version"] as the first. Conflict if the id exists.
  virtual Status CreateAgent(const Json& agent) = 0;
  // Latest when `version` is empty. A past version carries the agent's
  // current `archived_at` (archival is a property of the agent). NotFound
  // for an unknown agent or version.
  virtual Result<Json> GetAgent(const std::string& id, std::optional<int> version) = 0;
  // `mutate` gets the latest version and returns the next one. Returning
  // the current object unchanged writes nothing; a changed object with the
  // same "version" rewrites the latest in place (archival); a new "version"
  // (it must be latest+1, else Conflict) is recorded as a new version.
  // Optimistic concurrency is the mutator's: it compares the version it was
  // given with the one its caller expected and returns Conflict.
  virtual Result<Json> UpdateAgent(const std::string& id, const Mutator& mutate) = 0;
  // Latest versions, by creation; archived ones only with include_archived.
  virtual Result<Page> ListAgents(const AgentFilter& filter, const PageSpec& page) = 0;
  // Versions of one agent (NotFound for an unknown agent).
  virtual Result<Page> ListAgentVersions(const std::string& id, const PageSpec& page) = 0;

  // ---- environments
  // Conflict if an environment (archived or not; deleted ones free their
  // name) has the same name or id.
  virtual Status CreateEnvironment(const Json& env) = 0;
  virtual Result<Json> GetEnvironment(const std::string& id) = 0;
  // Conflict when the new name is taken by another environment.
  virtual Result<Json> UpdateEnvironment(const std::string& id, const Mutator& mutate) = 0;
  virtual Result<Page> ListEnvironments(bool include_archived, const PageSpec& page) = 0;
  // Deletes the environment and every key scoped to it (environment keys,
  // sessions tokens). NotFound if absent. Its sessions and work items stay.
  virtual Status DeleteEnvironment(const std::string& id) = 0;

  // ---- sessions
  // Creates the session and appends `initial_events` atomically; the hook
  // gets the stored events. Conflict if the id exists.
  virtual Result<std::vector<StoredEvent>> CreateSession(const Json& session, const std::vector<Json>& initial_events,
                                                         const CommitHook& hook) = 0;
  virtual Result<Json> GetSession(const std::string& id) = 0;
  // `mutate` may add events to append in the same transaction.
  virtual Result<Json> UpdateSession(const std::string& id, const SessionMutator& mutate, const CommitHook& hook) = 0;
  virtual Result<Page> ListSessions(const SessionFilter& filter, const PageSpec& page) = 0;
  // The engine's atomic step: `mutate` gets the session and returns the new
  // one; it may append events and replace the bodies of existing events
  // (same id and seq, e.g. processed_at set; NotFound aborts the step when
  // the id is not an event of this session). The hook sees the replaced
  // events (seq 0) first, then the appended ones with their seq.
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
  // or rescheduling, or holding client events (user.* and system.message)
  // whose processed_at is null. Each id once, in no particular order.
  // Served by indexes, never by a scan of bodies.
  virtual Result<std::vector<std::string>> SessionsNeedingEngine() = 0;
  // Deletes the session, its events, its sessions keys, its engine state,
  // transcript and secrets; appends nothing. NotFound if absent. Work items
  // are the queue's to stop.
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
  // transaction with the current session; may run more than once) accepts.
  // Returns the stored events. Conflict if an event id repeats in the session.
  // A tool call is answered at most once: an answer (AnswerField) to a call
  // that already has an answer of the same type in the session, or two
  // answers to one call in `events`, is Conflict with detail code
  // kAlreadyAnswered, and nothing is appended. The check is part of the
  // transaction, so of two concurrent appends of an answer one fails.
  virtual Result<std::vector<StoredEvent>> AppendEvents(
      const std::string& session_id, const std::function<Status(const Json& session)>& check,
      const std::vector<Json>& events, const CommitHook& hook) = 0;
  // Paged by seq; NotFound-free: an unknown session lists empty.
  virtual Result<Page> ListEvents(const std::string& session_id, const EventFilter& filter,
                                  const PageSpec& page) = 0;
  // Events of a session with seq > after_seq, ascending, at most `limit`
  // (stream replay and tailing; contract 2 makes tailing gap-free).
  virtual Result<std::vector<StoredEvent>> EventsAfter(const std::string& session_id, int64_t after_seq,
                                                       int limit) = 0;
  // One event of a session by id, if present.
  virtual Result<std::optional<StoredEvent>> GetEvent(const std::string& session_id, const std::string& event_id) = 0;

  // ---- vaults and their credentials (spec 6)
  // Conflict if the id exists.
  virtual Status CreateVault(const Json& vault) = 0;
  virtual Result<Json> GetVault(const std::string& id) = 0;
  virtual Result<Json> UpdateVault(const std::string& id, const Mutator& mutate) = 0;
  virtual Result<Page> ListVaults(bool include_archived, const PageSpec& page) = 0;
  // Deletes the vault and all its credentials. NotFound if absent.
  virtual Status DeleteVault(const std::string& id) = 0;
  // Vaults ever created and not deleted (archived ones count).
  virtual Result<int64_t> CountVaults() = 0;
  // Inserts a credential into body["vault_id"]. NotFound if the vault does
  // not exist; Conflict (detail "vault_credential_limit") when the vault
  // already holds `max_per_vault` credentials that are not archived; the
  // count and the insert are one transaction.
  virtual Status CreateCredential(const CredentialRecord& credential, int max_per_vault) = 0;
  // NotFound unless credential `id` belongs to vault `vault_id`.
  virtual Result<CredentialRecord> GetCredential(const std::string& vault_id, const std::string& id) = 0;
  // Read-modify-write; `mutate` edits body and sealed (not the ids). May run
  // more than once. A mutation that changes nothing writes nothing.
  virtual Result<CredentialRecord> UpdateCredential(const std::string& vault_id, const std::string& id,
                                                    const std::function<Status(CredentialRecord*)>& mutate) = 0;
  // Credentials of one vault (bodies), paged by seq. An unknown vault lists empty.
  virtual Result<Page> ListCredentials(const std::string& vault_id, bool include_archived, const PageSpec& page) = 0;
  virtual Status DeleteCredential(const std::string& vault_id, const std::string& id) = 0;

  // ---- credentials (only hashes are stored)
  // Conflict if the hash exists.
  virtual Status PutKey(const std::string& key_hash, const KeyRecord& record) = 0;
  virtual Result<std::optional<KeyRecord>> LookupKey(const std::string& key_hash) = 0;
  virtual Result<int64_t> CountKeys(KeyKind kind) = 0;

  // ---- work queue (spec 3.3)
  // Inserts a new item (seq assigned by the store). Conflict if the id
  // exists or its session already has a live (queued/starting/active/
  // stopping) item: a stopping item's holder still works until it confirms,
  // its lease lapses or the stop is forced.
  virtual Status CreateWork(const WorkRecord& work) = 0;
  virtual Result<WorkRecord> GetWork(const std::string& id) = 0;
  // Read-modify-write in one transaction; `mutate` edits the record (not its
  // id, seq, environment, session or created_at: those edits are ignored)
  // or returns an error that aborts. May run more than once. A mutation
  // that changes nothing writes nothing. In the same transaction, the item's
  // sessions tokens (KeyKind::kSession with its work_id) are revoked when it
  // becomes `stopped` or loses its lease (starting/active/stopping ->
  // queued), so a worker that lost the item cannot keep posting for it.
  // Conflict if the edit would give its session a second live item.
  virtual Result<WorkRecord> UpdateWork(const std::string& id, const std::function<Status(WorkRecord*)>& mutate) = 0;
  // Atomically claims the oldest (by seq) queued item of `environment_id`
  // that was never delivered or last delivered at or before
  // `redeliver_before`: sets delivered_at = now and counts the delivery.
  // nullopt when none. Two concurrent claims never get the same delivery.
  virtual Result<std::optional<WorkRecord>> ClaimWork(const std::string& environment_id, int64_t now,
                                                      int64_t redeliver_before) = 0;
  // Work objects (bodies) of one environment, paged by seq.
  virtual Result<Page> ListWork(const std::string& environment_id, const PageSpec& page) = 0;
  // Items of one session that are not stopped, oldest first.
  virtual Result<std::vector<WorkRecord>> UnstoppedWorkForSession(const std::string& session_id) = 0;
  // Ids of starting/active/stopping items whose deadline < now (all
  // environments when `environment_id` is empty), oldest deadline first
  // (ties by seq), at most max(limit, 1).
  virtual Result<std::vector<std::string>> DueWork(const std::string& environment_id, int64_t now, int limit) = 0;
  // Remembers that `worker_id` polled `environment_id` at `now` (the later
  // of two polls wins).
  virtual Status RecordWorkerPoll(const std::string& environment_id, const std::string& worker_id, int64_t now) = 0;
  // Queue depth of one environment, and the workers that polled it at or
  // after `workers_since` (workers silent for a day before that are
  // forgotten).
  virtual Result<WorkCounts> CountWork(const std::string& environment_id, int64_t workers_since) = 0;
  // Compare-and-set of the environment's orchestrator, in one transaction:
  // `orchestrator_id` takes or renews the environment when it has no
  // holder, when the holder is that same id, or when the holder was last
  // seen before `stale_before`. Taking it sets {id, host, acquired_at = now,
  // seen_at = now}; renewing sets host and seen_at = max(seen_at, now) and
  // keeps acquired_at. Otherwise nothing is written. Returns the record
  // after the call: the caller holds the environment iff its
  // orchestrator_id is the caller's. Any string is a valid environment id
  // (the caller checks that the environment exists).
  virtual Result<EnvironmentHolder> HoldEnvironment(const std::string& environment_id,
                                                    const std::string& orchestrator_id, const std::string& host,
                                                    int64_t now, int64_t stale_before) = 0;

  // ---- outgoing webhooks outbox
  // Installs the rule that turns events into outbox rows in their own
  // transaction (every event written by CreateSession, UpdateSession,
  // StepSession and AppendEvents, plus the session.created/deleted pseudo
  // events). Set once at start-up, before any write; empty = no outbox.
  virtual void SetOutboxRule(OutboxRule rule) = 0;
  // Installs the rule for object changes (see ObjectChange); set once at
  // start-up like SetOutboxRule; empty = none.
  virtual void SetObjectOutboxRule(ObjectOutboxRule rule) = 0;
  // Writes the outbox rows of a change that is no write of the store
  // (vault_credential.refresh_failed), in a transaction of its own.
  virtual Status RecordObjectChange(const ObjectChange& change) = 0;
  // Called after every committed transaction that added outbox rows or made
  // held rows due (EnableEndpoint), so a dispatcher in this process can
  // look now instead of at its next poll. It runs under the store's lock:
  // it must be quick and must not call the Store. Empty = none. Rows
  // written by another process are not signalled (poll for them).
  virtual void SetOutboxListener(std::function<void()> listener) = 0;
  // Claims up to `limit` pending rows due at `now` (next_attempt_at <= now),
  // oldest due first: each one's next_attempt_at becomes `lease_until`, so a
  // process that dies mid-attempt leaves it due again after the lease, and
  // two dispatchers never hold the same row at once. Due rows of a disabled
  // endpoint are not claimed: they are parked (held) instead.
  virtual Result<std::vector<OutboxDelivery>> ClaimDeliveries(int64_t now, int64_t lease_until, int limit) = 0;
  // The earliest next_attempt_at of a pending row that is not held (a
  // claimed row's lease end counts), or nullopt when there is none.
  virtual Result<std::optional<int64_t>> NextDeliveryDue() = 0;
  // Records an attempt of a pending row and its effect on the endpoint
  // (ApplyAttempt), in one transaction: delivered, rescheduled (retry_at),
  // failed, or held when the endpoint is disabled. Counts the attempt.
  // NotFound for an unknown seq; a row no longer pending is left as it is
  // (Conflict).
  virtual Result<DeliveryOutcome> FinishDelivery(int64_t seq, const DeliveryAttempt& attempt) = 0;
  // Endpoints with a recorded state, by name.
  virtual Result<std::vector<EndpointState>> ListEndpointStates() = 0;
  // Clears the endpoint's disabled_at and failure count, and makes its held
  // rows due at `now`. An endpoint without a state is returned as a fresh one.
  virtual Result<EndpointState> EnableEndpoint(const std::string& name, int64_t now) = 0;
  // Deletes up to `limit` delivered or failed rows whose last attempt was
  // before `finished_before` (oldest first within each state); never a
  // pending row. Returns how many were deleted (call again while it returns
  // `limit`).
  virtual Result<int64_t> PruneDeliveries(int64_t finished_before, int limit) = 0;
  // The delivery log, paged by seq; `items` are OutboxDelivery::ToJson().
  virtual Result<Page> ListDeliveries(const DeliveryFilter& filter, const PageSpec& page) = 0;
  // One row by seq (NotFound when absent).
  virtual Result<OutboxDelivery> GetDelivery(int64_t seq) = 0;
};

}  // namespace warren::store
