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
// a TTL). A 412 right after a beat whose answer was lost, while the server
// still reports the lease held, is that beat's own success: the worker adopts
// the server's token. Transient failures of the session retrieve are retried
// while the lease holds.
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
  // same delivery died (the orchestrator saw it exit through its pidfd): a
  // 412 on the first beat while the server reports the lease held is that
  // dead runner's lease, which this one takes over (the sessions token is
  // per delivery and dies with a lapse, so no other worker can hold it).
  bool resume_lease = false;
  // SessionRunnerOptions::call_journal_dir ("" = none).
  std::string call_journal_dir;
};

// The sessions token inside a work item's `secret` (base64url JSON, padding
// optional), or "" when absent or undecodable.
std::string SessionsTokenFromSecret(const std::string& secret);

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
