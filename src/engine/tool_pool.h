// ToolPool: the bounded pool of threads on which the engine runs the calls
// the service makes itself (MCP tools/list and tools/call, web_fetch,
// web_search), so that none of them holds an engine worker for as long as
// it lasts (the way ModelProvider::CallAsync frees the worker during a model
// call). A job runs to its end on one pool thread; the engine posts its
// completion back to its own queue (Engine::OnToolDone).
//
// At most `max_threads` jobs run at once; threads start on demand (none
// until the first Submit) and are kept; jobs beyond the bound wait in FIFO
// order. Jobs are never dropped: a job's owner cancels it through its own
// token, so a queued job runs and returns at once. Stop() waits for every
// queued and running job, then joins the threads; Submit after Stop runs
// nothing and returns false. Start() (after Stop) accepts jobs again.
//
// Ownership: owns its threads. Thread-safety: thread-safe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace warren::engine {

class ToolPool final {
 public:
  explicit ToolPool(int max_threads);
  ~ToolPool();  // Stop()
  ToolPool(const ToolPool&) = delete;
  ToolPool& operator=(const ToolPool&) = delete;

  // Queues `job`; false (and `job` never runs) once stopped.
  bool Submit(std::function<void()> job);
  void Start();
  void Stop();

  // Threads started so far (tests, metrics).
  size_t threads() const;

 private:
  void Loop();

  const size_t max_threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  size_t active_ = 0;
  bool stopping_ = false;
};

}  // namespace warren::engine
