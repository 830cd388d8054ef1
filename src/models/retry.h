// Retry policy shared by the model providers: exponential backoff with
// jitter, retry-after honoured, an injectable Sleeper (so tests never sleep)
// and an injectable jitter source.
//
// delay(n) for the n-th retry (n = 1, 2, ...):
//   retry_after_ms if the error carries one (clamped to max_retry_after_ms),
//   else min(max_backoff_ms, initial_backoff_ms * multiplier^(n-1))
//        * (1 - jitter * u), u uniform in [0, 1).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "common/http_client.h"
#include "models/model_provider.h"

namespace warren::models {

struct RetryPolicy {
  int max_attempts = 5;  // including the first; 1 = no retries
  int64_t initial_backoff_ms = 500;
  int64_t max_backoff_ms = 30'000;
  double multiplier = 2.0;
  double jitter = 0.25;               // fraction of the delay removed at random
  int64_t max_retry_after_ms = 60'000;

  int64_t DelayMs(int retry, const ModelError& error, double u) const;
};

// Waits between attempts. Thread-safe implementations.
class Sleeper {
 public:
  virtual ~Sleeper() = default;
  // Sleeps `ms`; returns false early if `cancel` fires.
  virtual bool SleepFor(int64_t ms, const CancelToken* cancel) = 0;
  // Waits `ms` without holding the calling thread: `done(true)` after the
  // delay, `done(false)` as soon as `cancel` fires. The default is a timer on
  // TimerLoop::Shared() (one thread for every backoff in the process).
  virtual void SleepAsync(int64_t ms, const CancelToken* cancel, std::function<void(bool)> done);
  // The process-wide real sleeper (condition variable wait, cancellable).
  static Sleeper* Real();
};

// Records requested delays and returns at once (tests). Thread-safe.
class RecordingSleeper final : public Sleeper {
 public:
  bool SleepFor(int64_t ms, const CancelToken* cancel) override;
  // Records and calls `done` at once, on the calling thread.
  void SleepAsync(int64_t ms, const CancelToken* cancel, std::function<void(bool)> done) override;
  std::vector<int64_t> delays() const;

 private:
  mutable std::mutex mu_;
  std::vector<int64_t> delays_;
};

struct RetryDeps {
  Sleeper* sleeper = nullptr;          // null = Sleeper::Real()
  std::function<double()> uniform01;   // null = a thread-local PRNG
};

// Runs `attempt(n)` (n = 1..max_attempts) until it succeeds, fails with a
// non-retryable error, or attempts run out. Notifies `observer` (may be
// null) with OnAttemptStart/OnRetry. The final result's attempts field is set.
ModelResult CallWithRetries(const RetryPolicy& policy, const RetryDeps& deps, const CallOptions& options,
                            ModelStreamObserver* observer, const std::function<ModelResult(int)>& attempt);

// One attempt started asynchronously; it calls its AttemptDone exactly once.
using AttemptDone = std::function<void(ModelResult)>;
using AsyncAttempt = std::function<void(int attempt, AttemptDone done)>;

// The asynchronous form: the same attempts, notifications and final result,
// with the waits between attempts as Sleeper::SleepAsync timers. Returns at
// once; `done` runs exactly once, on whichever thread finished the last
// attempt or timer. `observer` and `options.cancel` must outlive `done`.
void CallWithRetriesAsync(const RetryPolicy& policy, const RetryDeps& deps, const CallOptions& options,
                          ModelStreamObserver* observer, AsyncAttempt attempt, ModelCallback done);

}  // namespace warren::models
