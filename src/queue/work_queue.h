// WorkQueue: the per-environment work queue of self-hosted environments
// (spec 3.1-3.4, 3.13 and the decisions of section 8).
//
//   queued --poll--> (pending: delivered, still queued) --ack--> starting
//   starting --first heartbeat--> active --stop--> stopping --confirm | force | 1 TTL--> stopped
//   starting/active --lease expires--> queued (last_heartbeat reset)
//
// The queue state lives in the Store (one row per item, see
// store::WorkRecord); this class holds no item state of its own, only the
// parked long-polls waiting per environment. Leases are evaluated lazily:
// every operation on an environment first applies the expiries that are due
// (Sweep), so behaviour is a pure function of the store and the Clock
// (FakeClock in tests). An optional background sweeper thread (Start) also
// applies them periodically, so that parked polls wake when a lease lapses.
//
// It is also the engine's enqueue interface (EnsureWork) and a
// SessionObserver that enqueues on session creation and on user events.
//
// Ownership: borrows the store, authenticator and clock, which must outlive
// it; it must outlive the HTTP server whose routes it registered.
// Thread-safety: all methods are thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "api/auth.h"
#include "api/service.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/status.h"
#include "store/store.h"

namespace warren::queue {

struct WorkQueueOptions {
  int default_ttl_seconds = 90;  // lease TTL until the worker asks for another
  int min_ttl_seconds = 30;      // desired_ttl_seconds is clamped into [min, max]
  int max_ttl_seconds = 600;
  int64_t default_reclaim_ms = 5000;  // poll's reclaim_older_than_ms default
  int64_t workers_window_ms = 30000;  // stats.workers_polling window
  std::chrono::milliseconds sweep_interval{1000};  // background sweeper period
  // True when an orchestrator serves `cloud` environments: they get work
  // items too, and their work endpoints answer (docs/ORCHESTRATOR.md).
  bool cloud_queues = false;
  // An environment's orchestrator holds it this long after its last
  // accepted poll (HoldEnvironment); then another may take it over.
  int64_t orchestrator_ttl_ms = 30000;
};

// The literal first-heartbeat sentinel.
inline constexpr std::string_view kNoHeartbeat = "NO_HEARTBEAT";

// error.details.error_code of the 409 that refuses a second orchestrator
// (HoldEnvironment). orchestrator::kEnvironmentHeldCode is the same string.
inline constexpr const char* kEnvironmentHeldCode = "environment_held_by_another_orchestrator";
// Warren extension headers of a work poll by an orchestrator (not sent by
// the SDK's EnvironmentWorker; Anthropic's API ignores them).
inline constexpr const char* kOrchestratorIdHeader = "warren-orchestrator-id";
inline constexpr const char* kOrchestratorHostHeader = "warren-orchestrator-host";

class WorkQueue final : public api::SessionObserver {
 public:
  WorkQueue(store::Store* store, api::Authenticator* auth, Clock* clock, WorkQueueOptions options = {});
  ~WorkQueue() override;
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Registers the /v1/environments/{env}/work... routes on the service.
  void RegisterRoutes(api::ApiService* service);

  // Starts / stops the background sweeper (optional; Stop is idempotent and
  // run by the destructor). Start first checks the delivery invariant on
  // every session (CheckAllSessions).
  void Start();
  void Stop();

  // ---- enqueue (engine interface)
  // Makes sure the session has a live (queued/starting/active) work item if
  // its environment is self_hosted; creates one otherwise. A no-op (OK) for
  // cloud environments and for archived or terminated sessions.
  Status EnsureWork(const std::string& session_id);

  // ---- the delivery invariant (docs/QUEUE.md, "Delivery guarantees"):
  // whenever a session of a self_hosted environment has built-in calls
  // that a worker must answer and no live item, a new item is queued.
  // Checked when an item stops (StopWork, the stopping deadline, session
  // delete excepted), when a lease lapses (Sweep) and at start-up.
  //
  // True if the session has an agent.tool_use that needs a worker: not
  // answered by a user.tool_result, not denied (evaluated_permission
  // "deny" or a user.tool_confirmation "deny"), not awaiting a confirmation
  // ("ask" without an "allow"), and not settled by a later user.interrupt.
  Result<bool> HasCallsForWorker(const std::string& session_id);
  // Queues an item when the session has calls for a worker and no live
  // item (Conflict from the store = it has one). Returns true if it queued.
  Result<bool> CheckSession(const std::string& session_id);
  // CheckSession over every non-terminated session of every self_hosted
  // environment. Returns the number of items queued.
  Result<int> CheckAllSessions();

  // ---- SessionObserver
  void OnSessionCreated(const Json& session) override;
  void OnClientEvents(const Json& session, const std::vector<store::StoredEvent>& events) override;
  void OnSessionDeleted(const std::string& session_id) override;

  // ---- operations behind the endpoints (auth is checked by the routes)
  // The environment, if it exists and is self_hosted (404 / 400 otherwise).
  Result<Json> SelfHostedEnvironment(const std::string& environment_id);
  // Claims one item, issuing a fresh sessions token into its `secret`.
  // nullopt when nothing is claimable. Records `worker_id` when non-empty.
  Result<std::optional<Json>> Claim(const std::string& environment_id, int64_t reclaim_older_than_ms);
  Status RecordWorker(const std::string& environment_id, const std::string& worker_id);
  // ---- one orchestrator per environment (docs/ORCHESTRATOR.md, "Several
  // orchestrators"). Takes or renews `environment_id` for `orchestrator_id`
  // (a stable id per sandbox data dir; `host` is for messages): a
  // compare-and-set in the store (Store::HoldEnvironment), so it holds
  // across service replicas sharing one store. The holder keeps the
  // environment until it has not been seen for `orchestrator_ttl_ms`; the
  // same id is always accepted (a replacement process on the same data dir).
  // Conflict with detail code kEnvironmentHeldCode and a message naming the
  // environment, the holder's id and host and how long ago it was seen,
  // when another orchestrator holds it. InvalidArgument for an id that is
  // empty, longer than 128 bytes or not [A-Za-z0-9_.:-]. Called by the
  // poll route when the poll carries kOrchestratorIdHeader, and by the
  // embedded orchestrator (LocalWorkSource) with its own id. A renewal less
  // than a quarter TTL after the last one this queue wrote is answered from
  // memory (no store write): the store's record is that fresh, so nobody
  // can have taken the environment since.
  Status HoldEnvironment(const std::string& environment_id, const std::string& orchestrator_id,
                         const std::string& host);
  Result<Json> Ack(const std::string& environment_id, const std::string& work_id);
  // The Work object of an item whose lease is held (starting/active), with a
  // fresh sessions token in its `secret`: for the embedded orchestrator,
  // which after a restart resumes the items it held whose runner was never
  // launched (docs/ORCHESTRATOR.md, "Restart safety"). FailedPrecondition
  // when the item is not held.
  Result<Json> Reissue(const std::string& environment_id, const std::string& work_id);
  // Success: the work_heartbeat body. On a compare-and-set mismatch returns
  // FailedPrecondition and fills `*current_state` (spec 8's 412 body).
  // Without `expected_last_heartbeat` nothing is compared: a held lease
  // (starting/active) is renewed whatever its token; a queued item is 412.
  Result<Json> Heartbeat(const std::string& environment_id, const std::string& work_id,
                         const std::optional<std::string>& expected_last_heartbeat,
                         std::optional<int64_t> desired_ttl_seconds,
                         Json* current_state);
  Result<Json> StopWork(const std::string& environment_id, const std::string& work_id, bool force);
  Result<Json> Get(const std::string& environment_id, const std::string& work_id);
  Result<Json> UpdateMetadata(const std::string& environment_id, const std::string& work_id, const Json& patch);
  Result<store::Page> List(const std::string& environment_id, const store::PageSpec& page);
  Result<Json> Stats(const std::string& environment_id);

  // Applies due lease expiries and stopping deadlines in one environment
  // (all when empty). Wakes pollers of environments that got items back.
  // Returns the number of items changed.
  Result<int> Sweep(const std::string& environment_id = "");

  // ---- parked long-polls
  // Registers `waker` under `key` (the poll object); called, from any
  // thread and never under a queue lock, when an item may be claimable.
  void AddWaiter(const std::string& environment_id, const void* key, std::function<void()> waker);
  void RemoveWaiter(const std::string& environment_id, const void* key);
  // Wakes every poll parked on the environment.
  void Wake(const std::string& environment_id);
  size_t waiters(const std::string& environment_id);

  Clock* clock() const { return clock_; }
  const WorkQueueOptions& options() const { return options_; }

  // The Work object of a record (`secret` null unless given).
  static Json Render(const store::WorkRecord& w, const Json& secret = nullptr);

 private:
  Status Enqueue(const std::string& session_id, const std::string& environment_id);
  // EnsureWork; `tool_calls_waiting` is false for the session-event
  // triggers, which do not enqueue on cloud environments.
  Status EnsureWorkFor(const std::string& session_id, bool tool_calls_waiting);
  // Inserts a queued item; Conflict when the session has a live one.
  Status InsertItem(const std::string& session_id, const std::string& environment_id);
  // CheckSession after an item of the session stopped; logs failures.
  void CheckAfterStop(const std::string& session_id, const char* why);
  Result<store::WorkRecord> LoadInEnvironment(const std::string& environment_id, const std::string& work_id);
  std::string NowString() const { return FormatRfc3339(clock_->NowMicros()); }
  void SweeperLoop();

  store::Store* store_;
  api::Authenticator* auth_;
  Clock* clock_;
  WorkQueueOptions options_;

  std::mutex waiters_mu_;
  std::map<std::string, std::map<const void*, std::function<void()>>> waiters_;

  struct Renewal {
    std::string orchestrator_id;
    int64_t at = 0;  // micros: when this queue last wrote the holder record
  };
  std::mutex holders_mu_;
  std::map<std::string, Renewal> renewed_;  // by environment id

  std::mutex sweeper_mu_;
  std::condition_variable sweeper_cv_;
  bool sweeper_stop_ = false;
  std::thread sweeper_;
};

}  // namespace warren::queue
