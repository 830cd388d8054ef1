// ToolPool: the bounded pool of threads on which the engine runs the calls
// the service makes itself (MCP tools/list and tools/call, web_fetch,
// web_search), so that none of them holds an engine worker for as long as
// it lasts (the way ModelProvider::CallAsync frees the worker during a model
// call). A job runs to its end on one pool thread; the engine posts its
// completion back to its own queue (Engine::OnToolDone).
//
// Every job has a key: the peer it talks to (the engine uses the MCP
// server's URL, or the web tool's name). At most `max_threads` jobs run at
// once, and at most `max_per_key` of them with one key, so a peer that hangs
// holds at most its share of the pool while the other peers' jobs go on.
// Jobs wait in one queue per key; when a thread is free it takes the oldest
// waiting job among the keys below their bound (FIFO across keys: a key
// with a long queue cannot starve one with a short queue). Threads start on
// demand (none until the first Submit) and are kept.
//
// Cancelling: Cancel(id) removes a job that has not started and runs its
// `dropped` callback instead of `run` (so the owner learns that it will
// never run, and a job queued behind a hanging peer does not wait for it).
// A job already running is its owner's to stop (through its own token);
// Cancel leaves it alone. Stop() drops every queued job the same way, waits
// for the running ones and joins the threads; Submit after Stop runs nothing
// and returns 0. Start() (after Stop) accepts jobs again.
//
// `run` and `dropped` are called without the pool's lock held: they may
// Submit and Cancel. `dropped` runs on the thread that called Cancel or
// Stop.
//
// Ownership: owns its threads. Thread-safety: thread-safe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace warren::engine {

class ToolPool final {
 public:
  using JobId = uint64_t;  // 0 is never a job's id

  // Values below 1 count as 1; a per-key bound above max_threads is
  // max_threads.
  ToolPool(int max_threads, int max_per_key);
  ~ToolPool();  // Stop()
  ToolPool(const ToolPool&) = delete;
  ToolPool& operator=(const ToolPool&) = delete;

  // Queues `run` under `key`; returns its id (ids rise in submission
  // order), or 0 once stopped (then neither `run` nor `dropped` is called).
  // `dropped` may be empty.
  JobId Submit(const std::string& key, std::function<void()> run, std::function<void()> dropped = {});
  // Removes job `id` if it is still queued and runs its `dropped` on this
  // thread: true. False if it runs, has run, was dropped, or is unknown.
  bool Cancel(JobId id);
  void Start();
  void Stop();

  // Threads started so far (tests, metrics).
  size_t threads() const;
  // Jobs of `key` running now / waiting now (tests, metrics).
  size_t running(const std::string& key) const;
  size_t queued(const std::string& key) const;

 private:
  struct Job {
    std::function<void()> run;
    std::function<void()> dropped;
  };
  struct KeyState {
    size_t running = 0;
    std::map<JobId, Job> queue;  // by id: FIFO
  };

  void Loop();
  // Bookkeeping of ready_ and runnable_ around a change of `ks`; Leave
  // before, Enter after (Enter also forgets a key with nothing left).
  void Leave(const std::string& key, const KeyState& ks);
  void Enter(const std::string& key);
  size_t Runnable(const KeyState& ks) const;

  const size_t max_threads_;
  const size_t max_per_key_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // workers: a job became ready, or stopping
  std::condition_variable done_cv_;  // Stop: a running job ended
  std::unordered_map<std::string, KeyState> keys_;
  std::unordered_map<JobId, std::string> queued_;  // queued job -> its key
  // Keys below their bound with a job waiting, by the id of their oldest
  // waiting job: begin() is the next job to run.
  std::set<std::pair<JobId, std::string>> ready_;
  size_t runnable_ = 0;  // jobs that could start now (sum of Runnable over keys)
  JobId next_id_ = 1;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  size_t active_ = 0;
  bool stopping_ = false;
};

}  // namespace warren::engine
