// SessionRunner: the session tool-runner algorithm of spec section 3.5,
// following the TypeScript SDK 1.10.0 SessionToolRunner: open the event
// stream first, then reconcile the history (paged), de-duplicate stream and
// history by event id, route by `evaluated_permission` (fail closed), leave
// tools this runner does not own pending for their owner, run each call with
// an outer timeout, post `user.tool_result` with retries, stop on termination,
// on the idle watchdog or on Stop(); reconnect with 0.5 s..10 s backoff.
//
// Ownership: borrows the ApiClient and Toolset, which must outlive it.
// Threading: Run() blocks the calling thread and does all bookkeeping there;
// tools run on a helper thread. Stop() and SetSendRetryWindow() are
// thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "runner/api_client.h"
#include "runner/tools.h"

namespace warren::runner {

struct SessionRunnerOptions {
  std::string session_id;
  int64_t max_idle_ms = 60000;         // <= 0 disables the idle watchdog
  int64_t tool_timeout_ms = 150000;    // outer bound per call (bash: at least its timeout + 30 s)
  int64_t send_retry_window_ms = 300000;
  int64_t stream_idle_timeout_ms = 90000;  // no bytes (not even a ping) for this long: reconnect
  int64_t reconnect_start_ms = 500;
  int64_t reconnect_cap_ms = 10000;
  int64_t list_retry_start_ms = 250;  // backoff of a failed history page (5 attempts, doubling, cap 4 s)
  // Call journal ("" = none): a directory that outlives this process (the
  // orchestrator's relaunch after a crash). Before a built-in call runs,
  // `<dir>/<tool_use_id>.started` is created; once it finished, its result
  // goes to `<dir>/<tool_use_id>.result` before it is posted. A later runner
  // of the session therefore never runs a call twice: it posts the recorded
  // result, or, for a call that started but never finished (the runner died
  // mid-call), an error result saying so (at most once; docs/ORCHESTRATOR.md).
  std::string call_journal_dir;
};

// One dispatched call, for observers and tests.
struct DispatchedCall {
  std::string tool_use_id;
  std::string name;
  bool is_error = false;
  bool posted = false;
  std::string confirmation;  // "", "allow", "deny"
};

class SessionRunner final {
 public:
  enum class End { kTerminated, kIdle, kStopped, kFatal };

  SessionRunner(const ApiClient* api, Toolset* tools, SessionRunnerOptions options);
  SessionRunner(const SessionRunner&) = delete;
  SessionRunner& operator=(const SessionRunner&) = delete;

  End Run();

  // Ends Run(): cancels the running tool. With `post_cancelled_result` its
  // error result is still posted (a clean shutdown); without (the lease is
  // lost) nothing more is posted.
  void Stop(bool post_cancelled_result);
  void SetSendRetryWindow(int64_t ms) { send_window_ms_.store(ms); }

  std::vector<DispatchedCall> calls() const;

  // The HTTP status of the failure that ended Run() with kFatal (e.g. 401:
  // the sessions token was revoked because the lease lapsed), else 0.
  int fatal_status() const { return fatal_status_.load(); }

 private:
  bool Stopping() const { return stop_.load(); }
  bool ShouldStopIo();
  bool HandleFrame(const SseEvent& frame);
  bool HandleEvent(const Json& ev);  // false: end the stream (terminated)
  void Reconcile();
  void Ingest(const Json& ev, std::vector<Json>* pending);
  void Route(const Json& ev);
  void NoteConfirmation(const std::string& id, const std::string& verdict);
  void ApplyVerdict(const Json& ev, const std::string& verdict);
  void Execute(const Json& ev, const std::string& confirmation);
  bool SendResult(const Json& result, const std::string& id);
  // Whether the session's history holds an answer to `id` (nullopt when the
  // history could not be read).
  std::optional<bool> AnsweredInHistory(const std::string& id);
  // One page of the history, retrying transient failures with backoff.
  ApiResult ListPage(const std::string& page, bool interruptible = true);
  bool InTerminatedThread(const Json& ev) const;
  void ReleaseTerminatedHolds();
  void Record(DispatchedCall c);

  // Idle clock (the SDK's IdleClock).
  void NoteIdleEvent(const Json& ev);
  void Arm();
  void Disarm();
  void Block(const std::string& id);
  void Unblock(const std::string& id);

  const ApiClient* api_;
  Toolset* tools_;
  SessionRunnerOptions opts_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> post_on_stop_{true};
  std::atomic<bool> tool_cancel_{false};
  std::atomic<int64_t> send_window_ms_;
  bool terminated_ = false;
  bool idle_fired_ = false;
  bool fatal_ = false;
  bool reconcile_failed_ = false;  // the history read failed: reconnect and read it again
  std::atomic<int> fatal_status_{0};

  std::set<std::string> seen_, answered_, terminated_threads_;
  std::map<std::string, std::string> verdicts_;
  std::map<std::string, Json> held_;
  std::set<std::string> blockers_;
  bool arm_pending_ = false;
  bool idle_may_be_stale_ = false;
  std::optional<int64_t> idle_deadline_ms_;

  mutable std::mutex calls_mu_;
  std::vector<DispatchedCall> calls_;
};

int64_t NowMs();

}  // namespace warren::runner
