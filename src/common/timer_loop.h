// TimerLoop: one thread that runs callbacks after a delay, for waits that
// must not hold the caller's thread (model retry backoff, a scripted model's
// latency). Any number of timers share the one thread.
//
//   TimerLoop::Shared()->After(500, &token, [](bool fired) { ... });
//
// The callback runs exactly once, on the loop's thread: with fired = true
// when the delay has passed, or fired = false as soon as `cancel` (may be
// null) is cancelled. Callbacks must be short: they delay every other timer.
//
// Ownership: the loop owns its thread; the destructor runs every pending
// callback with fired = false and joins. Shared() is a process-wide instance
// that lives until exit. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "common/http_client.h"

namespace warren {

class TimerLoop final {
 public:
  TimerLoop();
  ~TimerLoop();
  TimerLoop(const TimerLoop&) = delete;
  TimerLoop& operator=(const TimerLoop&) = delete;

  // Schedules `fn` after `ms` (<= 0: as soon as possible). `cancel`, when not
  // null, must outlive the callback.
  void After(int64_t ms, const CancelToken* cancel, std::function<void(bool fired)> fn);

  // Timers not yet run.
  size_t pending() const;

  static TimerLoop* Shared();

 private:
  struct Timer {
    std::function<void(bool)> fn;
    const CancelToken* cancel = nullptr;
    int waker = -1;
    bool cancelled = false;
  };
  void Run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Keyed by (deadline in steady-clock microseconds, sequence number).
  std::map<std::pair<int64_t, uint64_t>, std::shared_ptr<Timer>> timers_;
  uint64_t seq_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace warren
