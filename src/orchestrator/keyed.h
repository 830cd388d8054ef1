// Two small concurrency owners keyed by a string (a session id, a sandbox
// id), used by the orchestrator (docs/ORCHESTRATOR.md "Lifecycle").
//
// KeyedLocks: a mutex per key, made on first use and freed when nobody
// holds or waits for it, so a service that has served a million sessions
// keeps a lock only for the sessions in work right now. Two holders of one
// key exclude each other exactly as one shared std::mutex would.
//
// KeyedExecutor: a bounded pool of threads that runs at most one task per
// key at a time: Submit refuses a key that has a task queued or running, so
// a slow task of one key holds back neither other keys nor the caller. The
// janitor runs its lifecycle actions (session check, stop, archive, delete)
// on one, keyed by sandbox id.
//
// Thread-safety: both are thread-safe. Ownership: KeyedExecutor owns its
// threads; Shutdown (or the destructor) drops the tasks not yet started and
// joins the threads after the running ones return. A KeyedLocks must outlive
// every Guard it handed out.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace warren::orchestrator {

class KeyedLocks final {
 private:
  struct Entry {
    std::mutex mu;
    int refs = 0;  // holders and waiters (guarded by the table's mutex)
  };

 public:
  KeyedLocks() = default;
  KeyedLocks(const KeyedLocks&) = delete;
  KeyedLocks& operator=(const KeyedLocks&) = delete;

  // Holds the lock of one key; unlocks (and frees the entry when it was
  // the last user) when destroyed. Move-only.
  class Guard final {
   public:
    Guard() = default;
    Guard(Guard&& o) noexcept : table_(o.table_), key_(std::move(o.key_)), entry_(o.entry_) { o.table_ = nullptr; }
    Guard& operator=(Guard&& o) noexcept;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() { Release(); }
    void Release();  // unlocks now (idempotent)
    explicit operator bool() const { return table_ != nullptr; }  // holds a lock

   private:
    friend class KeyedLocks;
    Guard(KeyedLocks* t, std::string k, Entry* e) : table_(t), key_(std::move(k)), entry_(e) {}
    KeyedLocks* table_ = nullptr;
    std::string key_;
    Entry* entry_ = nullptr;
  };

  // Blocks until the lock of `key` is free, then holds it.
  Guard Lock(const std::string& key);
  // Holds the lock of `key` if it is free now; else an empty Guard (false).
  Guard TryLock(const std::string& key);
  // Keys with an entry (held or waited for). Tests: 0 once nothing runs.
  size_t size() const;
  // Holders plus waiters of `key` (tests: a second user is waiting).
  int users(const std::string& key) const;

 private:
  void Unlock(const std::string& key, Entry* e);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
};

class KeyedExecutor final {
 public:
  // `threads` >= 1 (smaller values are raised to 1).
  explicit KeyedExecutor(int threads);
  ~KeyedExecutor();
  KeyedExecutor(const KeyedExecutor&) = delete;
  KeyedExecutor& operator=(const KeyedExecutor&) = delete;

  // Queues `fn` for `key`. False (and `fn` is dropped) when `key` has a task
  // queued or running, or after Shutdown.
  bool Submit(const std::string& key, std::function<void()> fn);
  // A task of `key` is queued or running.
  bool Busy(const std::string& key) const;
  // Blocks until no task is queued or running (or Shutdown ran).
  void WaitIdle();
  // Drops the tasks not started yet, waits for the running ones and joins
  // the threads. Returns how many were dropped. Idempotent.
  size_t Shutdown();
  size_t queued() const;
  size_t running() const;
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  struct Task {
    std::string key;
    std::function<void()> fn;
  };
  void Loop();

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // a task queued / shutting down
  std::condition_variable idle_cv_;  // a task finished / dropped
  std::deque<Task> queue_;
  std::set<std::string> keys_;  // keys with a task queued or running
  size_t running_ = 0;
  bool shutdown_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace warren::orchestrator
