// SandboxApi: Warren's local REST API for the sandbox runtime, under the
// Warren-only prefix /v1/warren/ (docs/SANDBOX_API.md): sandboxes, exec
// (JSON or an SSE stream), files (streamed upload and download), snapshots
// features, and prepared sandboxes (POST /v1/warren/prepare, PUT
// .../{id}/dataset: orchestrator/prepare.h). The Managed Agents routes are
// untouched.
//
// Every route requires an organization API key (api::RequireOrg). The
// runtime is opened lazily on first use (LazyRuntime), so `warren serve`
// starts without root and answers 503 with the reason when the runtime is
// unavailable.
//
// Threading: quick calls (get, list, files, labels, sessions) run on the
// HTTP worker pool. Long calls (exec up to its timeout, builds, create,
// start, stop, pause, resume, archive, restore, fork, delete, session exec)
// run on a bounded CallExecutor (executor.h): the handler returns a parked
// response (no thread) or an SSE stream, and the executor completes it.
// A full executor answers 503. Streamed exec/build output comes from the
// executor too: no thread per request.
//
// Ownership: borrows the ApiService (must outlive this); owns the runtime
// once opened and the executor. Thread-safety: all public methods are
// thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "api/router.h"
#include "api/service.h"
#include "common/status.h"
#include "orchestrator/prepare.h"
#include "sandbox/runtime.h"
#include "sandbox_api/executor.h"
#include "sandbox_api/terminal.h"

namespace warren::sandbox_api {

struct SandboxApiOptions {
  bool enabled = true;               // false: every route answers 503
  sandbox::RuntimeOptions runtime;   // data dir, pool size, cgroup prefix
  uint64_t max_upload_bytes = 1ULL << 30;
  size_t max_exec_output_bytes = 16u << 20;  // per stream, JSON exec results
  size_t max_stream_backlog_bytes = 4u << 20;  // SSE bytes queued before the producer waits
  int long_call_threads = 32;      // long calls running at once (executor.h)
  size_t long_call_queue = 256;    // more waiting; past that, 503
};

// The runtime, opened on first use. Thread-safe.
class LazyRuntime final {
 public:
  LazyRuntime(bool enabled, sandbox::RuntimeOptions options);
  ~LazyRuntime();
  LazyRuntime(const LazyRuntime&) = delete;
  LazyRuntime& operator=(const LazyRuntime&) = delete;

  // The runtime, opening it on the first call. Unavailable with the reason
  // when disabled, not root, or Open failed (Open is retried on the next
  // call).
  Result<sandbox::SandboxRuntime*> Get();
  // The runtime if it is open, else nullptr. Never opens it.
  sandbox::SandboxRuntime* IfOpen();
  // Closes the runtime (sandboxes keep running) after unmounting a loop
  // pool nobody uses. Later Get() calls answer Unavailable.
  void Close();

 private:
  std::mutex mu_;
  bool enabled_;
  bool closed_ = false;
  sandbox::RuntimeOptions options_;
  std::unique_ptr<sandbox::SandboxRuntime> runtime_;
};

class SandboxApi final {
 public:
  // Registers the /v1/warren/ routes on `service`'s router.
  SandboxApi(api::ApiService* service, SandboxApiOptions options);
  ~SandboxApi();
  SandboxApi(const SandboxApi&) = delete;
  SandboxApi& operator=(const SandboxApi&) = delete;

  // Starts a thread that calls EnforceIdlePolicies() every `interval` once
  // the runtime is open (it never opens the runtime itself).
  void StartIdleTicker(std::chrono::milliseconds interval);
  // Stops the ticker, cancels and waits for the long calls (streamed or
  // not), and closes the runtime (unmounting an idle loop pool). Idempotent.
  // Call after the HTTP server has stopped.
  void Stop();

  LazyRuntime* runtime() { return &runtime_; }
  const CallExecutor& executor() const { return executor_; }
  // The one Preparer of this process for `rt` (the prepare routes and the
  // built-in orchestrator share it: one Preparer per state dir).
  orchestrator::Preparer* PreparerFor(sandbox::SandboxRuntime* rt);

 private:
  using Fn = Result<http::HandlerResult> (SandboxApi::*)(http::HttpRequest&, const api::Params&,
                                                         sandbox::SandboxRuntime*);
  void Route(const char* method, const char* pattern, Fn fn);
  // Like Route, but the handler runs on the executor (a long call).
  void RouteLong(const char* method, const char* pattern, Fn fn);
  // Admission shared by Route and RouteLong: auth, runtime, path ids.
  Result<sandbox::SandboxRuntime*> AdmitRoute(const http::HttpRequest& req, const api::Params& params);
  // Runs `call` on the executor; returns the parked response it completes
  // (plain responses only), or the executor's 503.
  http::HandlerResult Defer(const http::HttpRequest& req, std::chrono::milliseconds timeout,
                            std::function<http::HandlerResult(const CancelToken&)> call);
  void RegisterRoutes();
  http::HandlerResult Error(const Status& s, const http::HttpRequest& req) const;
  // Authenticates, requires an org key, and opens the runtime.
  Result<sandbox::SandboxRuntime*> Admit(const http::HttpRequest& req);

  // sandboxes
  Result<http::HandlerResult> CreateSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> ListSandboxes(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> GetSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> DeleteSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> StartSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> StopSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> PauseSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> ResumeSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> ArchiveSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> RestoreSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> ForkSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> SandboxTree(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> PutLabels(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> PutNetwork(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> SandboxStats(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> Exec(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  // shell sessions
  Result<http::HandlerResult> CreateSession(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> ListSessions(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> GetSession(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> DeleteSession(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> SessionExec(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> GetCommand(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> SendInput(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  // files
  Result<http::HandlerResult> ListFiles(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> StatFile(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> Download(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> UploadSmall(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> Mkdir(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> Move(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> Chmod(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> DeleteFile(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  http::BodyRoute UploadRoute(http::HttpRequest& head, const api::Params& params);
  // snapshots, features
  Result<http::HandlerResult> BuildSnapshot(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> ListSnapshots(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> GetSnapshot(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> DeleteSnapshot(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> CreateVolume(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> ListVolumes(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> GetVolume(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> DeleteVolume(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> GetFeatures(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  // terminal (terminal.h): tickets, and the WebSocket that redeems one
  Result<http::HandlerResult> CreateTerminalTicket(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  http::HandlerResult OpenTerminal(http::HttpRequest& req, const api::Params& params);
  PtyPump* Pump();
  // preparation (orchestrator/prepare.h)
  Result<http::HandlerResult> PrepareSandbox(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);
  Result<http::HandlerResult> UploadDataset(http::HttpRequest&, const api::Params&, sandbox::SandboxRuntime*);

  api::ApiService* service_;
  SandboxApiOptions options_;
  LazyRuntime runtime_;
  CallExecutor executor_;  // after runtime_: destroyed (stopped) first
  std::mutex ticker_mu_;
  std::condition_variable ticker_cv_;
  bool ticker_stop_ = false;
  std::thread ticker_;
  std::atomic<bool> stopped_{false};
  std::mutex preparer_mu_;
  std::unique_ptr<orchestrator::Preparer> preparer_;  // made for the open runtime
  sandbox::SandboxRuntime* preparer_rt_ = nullptr;
  TerminalTickets tickets_{Clock::Real()};
  std::mutex pump_mu_;
  std::unique_ptr<PtyPump> pump_;  // made on the first terminal; stopped in Stop()
};

}  // namespace warren::sandbox_api
