// Worker: the per-item lifecycle of spec section 3.4 (the SDK's
// EnvironmentWorker) and the poll loop of `warren-runner poll`.
//
// HandleItem heartbeats the lease (section 3.3 timings: TTL assumed 90 s until
// the server says otherwise, interval clamp(ttl/2, 1 s, 30 s), each beat
// bounded by one interval, compare-and-set on last_heartbeat starting from
// NO_HEARTBEAT), runs a SessionRunner for the item's session, stops serving
// on stopping/stopped, lease_extended=false, 412, 401, a fatal 4xx or no
// successful beat for a TTL, and finally force-stops the item unless the lease
// was lost (412, 401: the sessions token dies with the lease, or no beat for
// a TTL). A 412 right after a beat from a token of this lease's own whose
// answer was lost, while the server still reports the lease held, is that
// beat's own success: the worker adopts the server's token. A lost answer to
// the first beat (NO_HEARTBEAT, which every delivery of the item may send)
// proves nothing, so its 412 is a lost lease. The session is served only
// after a beat succeeded. Transient failures of the session retrieve are
// retried while the lease holds.
//
// The lease record: with a call journal and a sessions token, every
// successful beat's token is written to `<journal>/<work id>.lease` (with
// the token's hash, naming the delivery), so that a runner relaunched with
// `resume_lease` can prove the lease it finds is its own (see
// WorkerOptions::resume_lease).
//
// Threading: HandleItem/PollLoop block the caller; Shutdown() is thread-safe
// (SIGTERM path: cancels the running tool, posts its error result, releases
// the item).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runner/api_client.h"
#include "runner/session_runner.h"
#include "runner/tools.h"

namespace warren::runner {

struct WorkerOptions {
  std::string environment_id;
  std::string environment_key;
  std::string worker_id;  // poll only; default <hostname>-<12 hex>
  ToolsetOptions tools;
  int64_t max_idle_ms = 60000;
  int64_t tool_timeout_ms = 150000;
  std::string on_work;  // poll: script run per claimed session item ("" = in process)
  int64_t on_work_kill_delay_ms = 30000;
  // `run` relaunched by its supervisor after the previous runner of the
  // same delivery died (the orchestrator saw it exit through its pidfd).
  // It takes over the dead runner's lease only when it can prove the lease
  // is that runner's: its lease record (same delivery) names a token L, and
  //  - the first beat, compare-and-set on L, succeeds (nobody else knows L:
  //    only this delivery's chain of beats produced it); or
  //  - it gets 412 with the lease `active`/`starting` at another token,
  //    within one TTL (less a tenth) of L's beat being sent: the dead runner
  //    beat from L and died before it recorded the answer. The lease cannot
  //    have lapsed and been taken by another chain meanwhile.
  // Without such a record (the dead runner never beat, or the record is of
  // another delivery, or there is no journal) it has nothing to prove: the
  // first beat is an ordinary NO_HEARTBEAT, and a 412 means another worker
  // holds the lease (two deliveries of one un-acked item both carry valid
  // tokens), so it yields as a lost lease: exit 3, the item is not stopped,
  // the queue's own rules (lease lapse) deliver it again.
  bool resume_lease = false;
  // The supervisor guarantees that no other worker can hold a delivery of
  // this item (Warren's embedded orchestrator on a cloud environment, which
  // the queue serves to no one else). A lease held at a token this runner
  // cannot prove its own is then still its own: a 412 after a lost answer
  // to the first beat, or on a resumed lease without (or beyond) a record,
  // adopts the server's token, as every resume did before lease records.
  // Never set it where other workers may poll the environment.
  bool sole_worker = false;
  // SessionRunnerOptions::call_journal_dir ("" = none).
  std::string call_journal_dir;
};

// The sessions token inside a work item's `secret` (base64url JSON, padding
// optional), or "" when absent or undecodable.
std::string SessionsTokenFromSecret(const std::string& secret);

// The lease record of one delivery (see the file comment).
struct LeaseRecord {
  std::string delivery;        // Sha256Hex of the delivery's sessions token
  std::string last_heartbeat;  // a token a successful beat of this delivery was answered
  int64_t sent_at_ms = 0;      // BootMs() when the beat that moved the lease to it was sent
  int64_t ttl_ms = 0;          // the lease TTL that beat's answer reported
};
// "<journal_dir>/<work_id>.lease", or "" when either is empty or the id has
// characters that do not belong in a file name.
std::string LeaseRecordPath(const std::string& journal_dir, const std::string& work_id);
// False when the file is missing or not a complete record.
bool ReadLeaseRecord(const std::string& path, LeaseRecord* out);
// Write + rename (a reader never sees half a record); no fsync: the reader
// is a later process in the same sandbox, and the page cache outlives a
// killed process.
bool WriteLeaseRecord(const std::string& path, const LeaseRecord& record);
// CLOCK_BOOTTIME in milliseconds: one clock for every process of the host,
// so a relaunched runner can age its predecessor's record.
int64_t BootMs();

// Exit status of `warren-runner run` when its lease was lost (412, 401 or
// no successful beat for a TTL): the item belongs to someone else now, so
// `poll --on-work` must not stop it.
inline constexpr int kExitLeaseLost = 3;

enum class LeaseEnd { kNone, kRunnerDone, kHeartbeatStop, kLeaseLost, kRejected, kAssumedLost, kShutdown };

class Worker final {
 public:
  Worker(HttpClient http, WorkerOptions options);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Serves one claimed item. Errors are returned (the item is still
  // released); a lost lease is not an error.
  Status HandleItem(const std::string& work_id, const std::string& session_id,
                    const std::string& secret, const std::string& data_type = "session");

  // Claims items until Shutdown(); fatal 4xx on poll ends it with an error.
  Status PollLoop();

  void Shutdown();
  bool shutting_down() const { return shutdown_.load(); }

  // How the last HandleItem's lease ended (tests).
  LeaseEnd last_lease_end() const { return last_lease_end_.load(); }

 private:
  Status RunOnWork(const Json& work, int* exit_code);
  HttpClient http_;
  WorkerOptions opts_;
  std::atomic<bool> shutdown_{false};
  std::atomic<LeaseEnd> last_lease_end_{LeaseEnd::kNone};
  std::mutex mu_;
  SessionRunner* active_runner_ = nullptr;  // guarded by mu_
  pid_t on_work_pid_ = -1;                  // guarded by mu_
};

std::string DefaultWorkerId();

}  // namespace warren::runner
