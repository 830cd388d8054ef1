// Orchestrator: gives every session its own sandbox and runs warren-runner
// in it (DESIGN 1 "a session's life", docs/ORCHESTRATOR.md).
//
//   poll (block_ms, reclaim) -> drain up to `drain_batch` more -> dedupe per
//   session (newest kept, others force-stopped) -> per item, on a bounded
//   pool: ack -> check the session (404/terminated/archived: stop the item)
//   -> find or create the session's sandbox (labels warren.session_id,
//   warren.environment_id, warren.mode, warren.orchestrator; snapshot from
//   session.metadata["warren.snapshot"] or the default; or bind the prepared
//   sandbox named by session.metadata["warren.sandbox_id"]) -> restore/start
//   it -> launch warren-runner inside (bind-mounted read-only, the item's
//   credentials in its environment) -> supervise it (pidfd).
//
// A janitor stops a sandbox once nothing but its init runs in it (the
// runner exited after its idle window and no process the agent started is
// left) for `sandbox_idle_stop` and its session is idle; archives the
// sandbox of an archived, terminated or deleted session; deletes archived
// sandboxes after `archived_retention`. Each pass visits the started
// sandboxes; every `session_check_interval` one pass visits them all, so
// thousands of stopped sandboxes cost nothing between those. A pass only
// decides: the actions due (a session check, then a stop or an archive;
// a delete) run on a pool of `janitor_concurrency` threads, at most one per
// sandbox at a time (a sandbox with an action in flight is skipped by the
// next pass), each under its session's lock, tried, never waited for (a
// session being served is not idle). A slow stop holds one pool thread,
// never the pass nor other sandboxes.
//
// Runners outlive the orchestrator process (a crash or restart of the
// service does not kill them); Start() re-adopts them by scanning the
// sandboxes that carry this orchestrator's label. A runner that dies
// abnormally (a signal, no exit status, a failure) while its item is live
// is relaunched at once with the same delivery (`--resume-lease`: it takes
// over the dead runner's lease when the lease record in the call journal
// proves the lease is that runner's), under the session lock and only when
// no other runner of the session is alive, with backoff; after
// `runner_max_relaunches` the item is force-stopped so that the queue
// delivers the session's calls again. The runners keep a call journal in
// the sandbox, so a relaunch never runs a call twice.
//
// The queue delivers an item again (a new sessions token) only once the
// earlier delivery's lease lapsed, so only the newest delivery can serve:
// each claimed delivery is stamped (WorkItem::claim_seq); one that a later
// delivery of its work id supersedes is neither acked again nor launched,
// and a later delivery that finds the item's runner launched with an
// earlier one waits as its successor and is launched, with its own lease,
// as soon as that runner exits (it lost its lease): a preparation longer
// than the lease (a packages build) costs no extra lease.
//
// Ownership: borrows the WorkSource and SandboxHost (must outlive it).
// Thread-safety: Start/Stop from one thread; everything else is internal.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "orchestrator/keyed.h"
#include "orchestrator/sandbox_host.h"
#include "orchestrator/work_source.h"

namespace warren::orchestrator {

// Paths inside every session sandbox.
inline constexpr const char* kRunnerPath = "/.warren/bin/warren-runner";
inline constexpr const char* kSocketDir = "/.warren/run";
inline constexpr const char* kRunnerStateDir = "/tmp/.warren-runner";

// Labels.
inline constexpr const char* kLabelSession = "warren.session_id";
inline constexpr const char* kLabelEnvironment = "warren.environment_id";
inline constexpr const char* kLabelMode = "warren.mode";  // "session" | "prepared"
inline constexpr const char* kLabelOrchestrator = "warren.orchestrator";
inline constexpr const char* kLabelPrepared = "warren.prepared";  // "true" once bound from a prepared sandbox

struct OrchestratorOptions {
  // Value of the warren.orchestrator label on the sandboxes it manages;
  // only those are adopted, stopped, archived or deleted.
  std::string instance = "embedded";
  int max_concurrent_items = 16;  // items prepared at once (claim -> runner launched)
  int poll_block_ms = 999;
  int64_t reclaim_older_than_ms = 2000;
  int drain_batch = 25;
  std::string default_snapshot = "builtin:minimal";
  std::string runner_host_path;   // host path of the static warren-runner (bind-mounted read-only)
  std::string runner_base_url;    // the service as the runner sees it from inside
  std::string socket_host_dir;    // host dir mounted read-only at kSocketDir ("" = none)
  std::string network = "none";   // sandbox network ("none" with the unix socket)
  std::vector<std::string> allow_cidrs;  // isolated network: let through (e.g. a private service address)
  std::vector<std::string> allow_hosts;  // limited network: the hosts the egress proxy lets through
  std::string workdir = "/workspace";
  std::chrono::milliseconds runner_max_idle{60000};     // runner --max-idle after end_turn
  std::chrono::milliseconds sandbox_idle_stop{60000};   // quiet (init only) and session idle this long -> stop
  std::chrono::milliseconds archived_retention{std::chrono::hours(24 * 30)};  // archived -> deleted
  std::chrono::milliseconds janitor_interval{5000};
  // Lifecycle actions (session check + stop/archive, delete) run at once
  // by the janitor, each on its own sandbox (1..256).
  int janitor_concurrency = 4;
  // Liveness checks of stopped sandboxes' sessions: the janitor visits
  // every sandbox once per this interval, the started ones at every pass.
  std::chrono::milliseconds session_check_interval{30000};
  std::chrono::milliseconds retry_initial{500};
  std::chrono::milliseconds retry_max{30000};
  int max_item_attempts = 6;  // then the item is left to its lease (redelivered later)
  // Relaunches of a crashed runner per item (then the item is stopped), and
  // the backoff before each (doubling from relaunch_initial).
  int runner_max_relaunches = 3;
  std::chrono::milliseconds relaunch_initial{200};

  // Prepared sandboxes (Preparer, prepare.h). Both optional.
  // "NAME=value" entries added to the environment of a runner launched in a
  // sandbox that was bound from a prepared one (label warren.prepared=true).
  std::function<Result<std::vector<std::string>>(const std::string& sandbox_id)> prepared_runner_env;
  // Called at the start of every janitor pass: removes expired credentials
  // and returns the sandboxes whose env credentials expired; their runners
  // are terminated (SIGTERM) so that the next one starts without them.
  std::function<Result<std::vector<std::string>>()> sweep_credentials;

  // The snapshot of a new session sandbox from its environment (a cloud
  // environment's config.packages -> PackageSnapshots, packages.h); "" =
  // default_snapshot. May build (minutes). Session metadata
  // "warren.snapshot" wins. InvalidArgument/FailedPrecondition (a package
  // set that cannot be built) are permanent: the item is stopped.
  std::function<Result<std::string>(const std::string& environment_id)> environment_snapshot;
  // The network of a session sandbox from its environment (a cloud
  // environment's config.networking -> networking.h) and the retrieved
  // session (its agent's MCP servers). A result with an empty `network`
  // keeps `network`/`allow_cidrs` above. FailedPrecondition/InvalidArgument
  // are permanent: the item is stopped. Asked at every claim: a session
  // whose sandbox exists gets a changed policy applied to it (live when the
  // sandbox runs: SandboxHost::SetNetwork) before its runner is launched.
  struct SandboxNetworkChoice {
    std::string network;
    std::vector<std::string> allow_hosts;
  };
  std::function<Result<SandboxNetworkChoice>(const std::string& environment_id, const Json& session)>
      environment_network;

  // Wake-up by webhook (webhooks.h). When false the poller no longer
  // long-polls continuously: it drains the queue when Wake() is called and
  // every `fallback_drain` (lost deliveries).
  bool poll_continuously = true;
  std::chrono::milliseconds fallback_drain{30000};

  // A poll was refused because another orchestrator serves the environment
  // (IsEnvironmentRefusal; docs/ORCHESTRATOR.md "Several orchestrators"):
  // the poll loop stops claiming for good (`orchestrator.environment_refused`
  // is logged) and this is called once, from the poll thread, with the
  // refusal. Runners already launched keep serving their leases. The
  // standalone mode exits; a source serving several environments (the
  // embedded one) handles refusals per environment itself and never
  // returns one.
  std::function<void(const Status&)> on_environment_refused;
};

struct OrchestratorStats {
  int64_t items_claimed = 0;
  int64_t items_deduped = 0;
  int64_t runners_launched = 0;
  int64_t runners_adopted = 0;
  int64_t sandboxes_created = 0;
  int64_t sandboxes_started = 0;
  int64_t sandboxes_stopped = 0;
  int64_t sandboxes_archived = 0;
  int64_t sandboxes_deleted = 0;
  int64_t drains = 0;                       // drains run (webhook mode)
  int64_t runners_credentials_expired = 0;  // runners terminated after env credentials expired
  int64_t runners_crashed = 0;              // abnormal runner exits seen
  int64_t runners_relaunched = 0;           // relaunches after a crash (with the same delivery)
  int64_t items_given_up = 0;               // items stopped after runner_max_relaunches
  int64_t janitor_actions = 0;              // lifecycle actions handed to the janitor's pool
  int64_t janitor_actions_dropped = 0;      // queued ones dropped by Stop() (the next start redoes them)
};

class Orchestrator final {
 public:
  Orchestrator(WorkSource* source, SandboxHost* sandboxes, Clock* clock, OrchestratorOptions options);
  ~Orchestrator();
  Orchestrator(const Orchestrator&) = delete;
  Orchestrator& operator=(const Orchestrator&) = delete;

  // Re-adopts this instance's sandboxes and runners, then starts the poll
  // loop, the item pool, the runner supervisor and the janitor.
  Status Start();
  // Stops claiming and joins every thread. Lifecycle actions queued on the
  // janitor's pool are dropped; the running ones (a sandbox stop, say) are
  // waited for, and those that have not reached their action yet give up.
  // Runners keep running.
  void Stop();

  // Webhook mode: drain the queue now (a session.status_run_started
  // delivery). Cheap; coalesces; callable from any thread.
  void Wake();

  // One janitor pass (tests call it directly with janitor_interval huge):
  // visits the sandboxes and hands the actions due to the janitor's pool.
  // `wait`: returns once the pool is idle (every action done); else once
  // they are handed over (the janitor's own loop). Call it from one thread
  // at a time (the janitor's, or a test's before Start/after Stop).
  void JanitorPass(bool wait = true);
  // Tests: lifecycle actions queued / running on the janitor's pool, and
  // sessions with a lock entry (held or waited for).
  size_t janitor_queued() const { return janitor_pool_->queued(); }
  size_t janitor_running() const { return janitor_pool_->running(); }
  size_t session_locks_in_use() const { return session_locks_.size(); }
  int session_lock_users(const std::string& session_id) const { return session_locks_.users(session_id); }
  // Handles one item synchronously (tests; the poll loop uses the pool).
  // `claimed`: when the poll returned it (the timing log counts from there).
  void HandleItem(const WorkItem& item,
                  std::chrono::steady_clock::time_point claimed = std::chrono::steady_clock::now());
  // Keeps the newest item per session; returns the rest (to force-stop).
  static std::vector<WorkItem> Dedupe(std::vector<WorkItem>* items);

  OrchestratorStats stats();
  // True once a poll was refused (on_environment_refused): no more claims.
  bool refused() const { return refused_; }
  // Work ids of the runners being supervised.
  std::vector<std::string> Runners();

 private:
  struct Runner {
    WorkItem item;
    std::string sandbox_id;
    pid_t host_pid = -1;
    uint64_t start_time = 0;
    int pidfd = -1;
    int64_t launched_at = 0;
    bool adopted = false;
  };
  // A unit of work for the pool: a claimed item, or the relaunch of a
  // crashed runner (relaunch > 0: the attempt number).
  struct Job {
    WorkItem item;
    int relaunch = 0;
    std::chrono::steady_clock::time_point claimed = std::chrono::steady_clock::now();
    // A delivery acked already (a successor handed over by its
    // predecessor's runner exit): served without a second ack.
    bool acked = false;
  };
  // The deliveries of one work id in work here (claimed, not done with
  // ServeDelivery yet): the newest one's claim_seq.
  struct Deliveries {
    uint64_t newest = 0;
    int in_flight = 0;
  };
  struct PendingRelaunch {
    WorkItem item;
    std::string sandbox_id;
    int attempt = 0;
    int64_t due_ms = 0;
  };
  // Where the time of one item goes (claim -> runner launched), logged as
  // orchestrator.item_timing (docs/ORCHESTRATOR.md "Latency"). Each Mark()
  // records the milliseconds since the previous one under `name`.
  struct Timing {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point last = start;
    std::string path;  // cold | stopped | running | archived | bound
    Json phases = Json::object();
    void Mark(const char* name);
  };
  struct SandboxMemo {
    int64_t quiet_since = 0;      // first pass that saw only init (0 = not quiet)
    int64_t session_checked = 0;  // last session liveness check
  };

  void PollLoop();
  // Claims up to the free pool slots; `block_ms` for the first item.
  // Returns false on a poll failure (after its backoff).
  bool ClaimBatch(int block_ms, int* failures);
  void ExpireCredentials();
  void WorkerLoop();
  void SupervisorLoop();
  void JanitorLoop();
  // HandleItem's body: ack (unless `ack` is false: the delivery was acked
  // already), serve, retry; the delivery must be noted (NoteDeliveryLocked).
  void ServeDelivery(const WorkItem& item, std::chrono::steady_clock::time_point claimed, bool ack);
  // Stamps `w` with the next claim_seq if it has none and counts it in
  // flight (deliveries_; the caller holds mu_); EndDelivery (takes mu_)
  // undoes the count.
  void NoteDeliveryLocked(WorkItem* w);
  void EndDelivery(const WorkItem& w);
  // A later delivery of the same work id was claimed here (in flight, or
  // its runner tracked): this one's token is revoked or about to be, so it
  // must not be acked again nor launched. Callers hold mu_.
  bool SupersededLocked(const WorkItem& item) const;
  // Queues `next`, a later delivery that a runner of an earlier one left
  // waiting (successors_), to be served at once with its own lease.
  void LaunchSuccessor(const WorkItem& next, const std::string& after);
  Status ServeItem(const WorkItem& item, bool resume = false, Timing* t = nullptr);
  // The supervisor saw the runner of `r` end with `status` ("unknown" when
  // no exit status was written).
  void OnRunnerExit(const Runner& r, const std::string& status);
  void Relaunch(const WorkItem& item, int attempt);
  // The exit status the runner's launching subshell recorded for
  // `work_id`, or "unknown" once that subshell is gone without one.
  std::string ReadRunnerExit(const std::string& sandbox_id, const std::string& work_id);
  void ReleaseDueRelaunches();
  // A permanent failure that is the session's own: WorkSource::FailItem.
  void ReportToSession(const WorkItem& item, const Status& s);  // moves relaunches whose backoff ended to the pool
  // Schedules relaunch `attempt` of `item`, or gives the item up after the cap.
  void ScheduleRelaunch(const WorkItem& item, const std::string& sandbox_id, int attempt, const std::string& why);
  // *fresh: the sandbox was created or started by this call (nothing runs
  // in it but its init).
  Result<sandbox::SandboxRecord> EnsureSandbox(const WorkItem& item, const Json& session, Timing* t, bool* fresh);
  Result<sandbox::SandboxRecord> FindSessionSandbox(const std::string& session_id);
  // The network policy a session sandbox of `item` should have now: the
  // environment's choice (environment_network), else `network`/`allow_hosts`
  // above; `allow_cidrs` for routed networks. `decided`: the environment
  // chose (an existing sandbox is brought to it).
  Result<sandbox::NetworkPolicy> WantedNetwork(const WorkItem& item, const Json& session, bool* decided);
  // Brings an existing session sandbox to the environment's current
  // network policy (live when it runs); no call when it already has it.
  Status ApplyEnvironmentNetwork(const WorkItem& item, const Json& session, sandbox::SandboxRecord* rec);
  std::vector<sandbox::HostBind> RunnerBinds() const;  // the runner and the socket dir
  // `fresh`: EnsureSandbox just created or started the sandbox, so no runner
  // or launch can be in it yet: the scan for one is skipped.
  Status LaunchRunner(const WorkItem& item, const sandbox::SandboxRecord& rec, bool resume, Timing* t,
                      bool fresh = false);
  void Track(Runner r);
  void Adopt();
  // After Adopt: items whose lease we hold but whose runner is gone (the
  // process died between the ack and the launch, or the runner died while
  // it was down) are relaunched with --resume-lease instead of waiting for
  // their lease to lapse.
  void ResumeHeldItems();
  // Archives the sandbox (if any) of a session that is gone.
  void ArchiveFor(const sandbox::SandboxRecord& rec, const std::string& why);
  // The pass's look at one sandbox (the pass's thread): updates its memo,
  // adopts an unsupervised runner, and says which action is due, if any.
  // `full_pass`: the pass that visits every sandbox (once per
  // session_check_interval): the session's liveness is checked. `seen`: what
  // ran in `rec` (if started) in the pass's snapshot (ProcessesOfMany).
  enum class JanitorAction { kNone, kDelete, kCheck };
  JanitorAction JanitorVisit(const sandbox::SandboxRecord& rec, bool full_pass, const std::vector<SandboxProcess>& seen,
                             int64_t now);
  // The action, on a pool thread: under the session's lock (tried: a
  // session being served is left for a later pass), with the record read
  // again. kCheck: the session is retrieved; gone -> archive; idle, the
  // sandbox quiet for sandbox_idle_stop and nothing but init running in it
  // right now -> stop.
  // Takes ids, not the record: a full pass may queue one action per
  // sandbox, so the queue holds no record copies.
  void JanitorAct(const std::string& sandbox_id, const std::string& session_id, const std::string& environment_id,
                  JanitorAction action, int64_t now);
  bool Sleep(std::chrono::milliseconds d);  // false when stopping
  bool Ours(const sandbox::SandboxRecord& rec) const;
  int64_t NowMs() const { return clock_->NowMicros() / 1000; }

  WorkSource* source_;
  SandboxHost* sandboxes_;
  Clock* clock_;
  OrchestratorOptions options_;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> refused_{false};  // a poll was refused: the poll loop ended
  std::mutex mu_;
  std::condition_variable cv_;        // items queued / stopping
  std::condition_variable space_cv_;  // a pool slot freed
  std::deque<Job> items_;
  std::map<std::string, PendingRelaunch> relaunches_;  // by work id: waiting for their backoff
  std::map<std::string, int> relaunch_count_;          // by work id: relaunches so far
  bool wake_ = false;  // webhook mode: a drain was asked for
  int busy_ = 0;
  // One lock per session in work (ServeItem, the janitor's actions); an
  // entry goes when nobody holds or waits for it.
  KeyedLocks session_locks_;
  std::map<std::string, Runner> runners_;  // by work id
  uint64_t claim_seq_ = 0;                 // the last claim_seq stamped
  std::map<std::string, Deliveries> deliveries_;  // by work id, while a delivery of it is in flight
  // By work id: the newest later delivery that found a runner of an earlier
  // delivery tracked; launched when that runner exits (its lease is lost).
  std::map<std::string, WorkItem> successors_;
  std::map<std::string, SandboxMemo> memo_;  // by sandbox id
  int64_t last_full_pass_ = -1;  // janitor thread (or a test calling JanitorPass) only
  OrchestratorStats stats_;

  std::thread poller_, supervisor_, janitor_;
  std::vector<std::thread> workers_;
  // The janitor's lifecycle actions, keyed by sandbox id. Made by the
  // constructor (and by a Start after a Stop), shut down by Stop.
  std::unique_ptr<KeyedExecutor> janitor_pool_;
};

}  // namespace warren::orchestrator
