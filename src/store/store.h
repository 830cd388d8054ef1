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

enum class KeyKind { kApi, kEnvironment, kSession };

struct KeyRecord {
  KeyKind kind = KeyKind::kApi;
  std::string environment_id;  // kEnvironment
  std::string session_id;      // kSession
  std::string work_id;         // kSession
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
  // Deletes the session and its events; appends nothing.
  virtual Status DeleteSession(const std::string& id) = 0;

  // ---- events
  // Appends events to a session atomically, after `check` (run inside the
  // transaction with the current session) accepts. Returns stored events.
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
};

}  // namespace warren::store
