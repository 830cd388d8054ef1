// CallExecutor: a bounded pool for the sandbox API's long calls (exec up to
// its timeout, builds, archive/restore, fork, create/stop/delete), so that
// they never occupy the HTTP worker pool: a handler validates the request,
// submits the call here and returns at once, either a parked response
// (AsyncResponse, completed from here) or an SSE stream fed from here.
//
// `threads` calls run at a time; up to `max_queued` more wait in FIFO order;
// past that Submit answers Unavailable (the API's 503) rather than queueing
// without bound. Every call has a cancellation token: set when the client
// of a streamed call goes away (the call polls it), when a parked response
// gives up (deadline or server shutdown), and for every call by Stop().
// Threads start on the first Submit.
//
// Ownership: owns its threads and queued calls. Thread-safety: all methods
// are thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/status.h"
#include "http/http_server.h"

namespace warren::sandbox_api {

using CancelToken = std::shared_ptr<std::atomic<bool>>;

class CallExecutor final {
 public:
  CallExecutor(int threads, size_t max_queued);
  ~CallExecutor();  // Stop()
  CallExecutor(const CallExecutor&) = delete;
  CallExecutor& operator=(const CallExecutor&) = delete;

  // Queues `fn`, which receives the call's token (true = give up). Unavailable
  // when the queue is full or the executor has stopped (then `fn` never runs).
  Status Submit(std::function<void(const CancelToken&)> fn, CancelToken token = nullptr);
  // Cancels every call (queued ones still run, with their token set, so
  // they can answer), then joins the threads. Idempotent.
  void Stop();

  size_t running() const;
  size_t queued() const;

 private:
  struct Call {
    std::function<void(const CancelToken&)> fn;
    CancelToken token;
  };
  void Loop();

  const int threads_;
  const size_t max_queued_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Call> queue_;
  std::vector<CancelToken> active_;  // tokens of running calls
  std::vector<std::thread> workers_;
  size_t running_ = 0;
  bool stopping_ = false;
};

// A response computed off the HTTP worker pool: the handler returns it as a
// long-poll (the server parks the connection, no thread) and the executor
// completes it. On the poll's deadline or at server shutdown it cancels
// the call and answers 503 (shutdown) or 504 (deadline) in the API's
// error envelope.
class AsyncResponse final : public http::LongPoll {
 public:
  AsyncResponse(std::chrono::milliseconds timeout, std::string request_id);

  void SetWaker(std::function<void()> waker) override;
  std::optional<http::HttpResponse> TryComplete(bool deadline_passed) override;
  std::chrono::milliseconds Timeout() const override { return timeout_; }
  void OnClose() override;

  // Completes the response (first call wins). Any thread.
  void Complete(http::HttpResponse response);
  const CancelToken& token() const { return token_; }

 private:
  const std::chrono::milliseconds timeout_;
  const std::string request_id_;
  CancelToken token_ = std::make_shared<std::atomic<bool>>(false);
  std::mutex mu_;
  std::function<void()> waker_;
  std::optional<http::HttpResponse> response_;
};

}  // namespace warren::sandbox_api
