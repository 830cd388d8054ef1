#include "models/retry.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <random>
#include <future>
#include <memory>
#include <thread>

#include "common/timer_loop.h"

namespace warren::models {

std::string_view ModelErrorKindName(ModelErrorKind kind) {
  switch (kind) {
    case ModelErrorKind::kOverloaded: return "overloaded";
    case ModelErrorKind::kRateLimited: return "rate_limited";
    case ModelErrorKind::kRequestFailed: return "request_failed";
    case ModelErrorKind::kAuthentication: return "authentication";
    case ModelErrorKind::kPermission: return "permission";
    case ModelErrorKind::kInvalidRequest: return "invalid_request";
    case ModelErrorKind::kRequestTooLarge: return "request_too_large";
    case ModelErrorKind::kBilling: return "billing";
    case ModelErrorKind::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string_view ModelError::SessionErrorType() const {
  switch (kind) {
    case ModelErrorKind::kOverloaded: return "model_overloaded_error";
    case ModelErrorKind::kRateLimited: return "model_rate_limited_error";
    case ModelErrorKind::kRequestFailed: return "model_request_failed_error";
    case ModelErrorKind::kBilling: return "billing_error";
    default: return "unknown_error";
  }
}

Status ModelError::ToStatus() const {
  std::string msg = ToString();
  switch (kind) {
    case ModelErrorKind::kOverloaded: return Status::Unavailable(msg);
    case ModelErrorKind::kRateLimited: return Status::ResourceExhausted(msg);
    case ModelErrorKind::kRequestFailed: return Status::Unavailable(msg);
    case ModelErrorKind::kAuthentication: return Status::Unauthenticated(msg);
    case ModelErrorKind::kPermission: return Status::PermissionDenied(msg);
    case ModelErrorKind::kInvalidRequest: return Status::InvalidArgument(msg);
    case ModelErrorKind::kRequestTooLarge: return Status::TooLarge(msg);
    case ModelErrorKind::kBilling: return Status::PermissionDenied(msg);
    case ModelErrorKind::kCancelled: return Status::Cancelled(msg);
  }
  return Status::Internal(msg);
}

std::string ModelError::ToString() const {
  std::string s = fmt::format("model {} error", ModelErrorKindName(kind));
  if (http_status != 0) s += fmt::format(" (HTTP {})", http_status);
  if (!message.empty()) s += ": " + message;
  if (attempts > 1) s += fmt::format(" after {} attempts", attempts);
  return s;
}

int64_t RetryPolicy::DelayMs(int retry, const ModelError& error, double u) const {
  if (error.retry_after_ms) return std::clamp<int64_t>(*error.retry_after_ms, 0, max_retry_after_ms);
  double base = static_cast<double>(initial_backoff_ms) * std::pow(multiplier, std::max(0, retry - 1));
  base = std::min(base, static_cast<double>(max_backoff_ms));
  double j = std::clamp(jitter, 0.0, 1.0) * std::clamp(u, 0.0, 1.0);
  return static_cast<int64_t>(base * (1.0 - j));
}

namespace {

class RealSleeper final : public Sleeper {
 public:
  bool SleepFor(int64_t ms, const CancelToken* cancel) override {
    if (ms <= 0) return cancel == nullptr || !cancel->cancelled();
    if (cancel == nullptr) {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      return true;
    }
    // Wake on Cancel() through the token's waker hook.
    struct State {
      std::mutex mu;
      std::condition_variable cv;
      bool woken = false;
    };
    auto state = std::make_shared<State>();
    auto* token = const_cast<CancelToken*>(cancel);
    int handle = token->AddWaker([state] {
      std::lock_guard<std::mutex> lock(state->mu);
      state->woken = true;
      state->cv.notify_all();
    });
    {
      std::unique_lock<std::mutex> lock(state->mu);
      state->cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return state->woken; });
    }
    if (handle >= 0) token->RemoveWaker(handle);
    return !cancel->cancelled();
  }
};

double DefaultUniform() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

Sleeper* Sleeper::Real() {
  static RealSleeper sleeper;
  return &sleeper;
}

bool RecordingSleeper::SleepFor(int64_t ms, const CancelToken* cancel) {
  std::lock_guard<std::mutex> lock(mu_);
  delays_.push_back(ms);
  return cancel == nullptr || !cancel->cancelled();
}

void Sleeper::SleepAsync(int64_t ms, const CancelToken* cancel, std::function<void(bool)> done) {
  TimerLoop::Shared()->After(ms, cancel, std::move(done));
}

void RecordingSleeper::SleepAsync(int64_t ms, const CancelToken* cancel, std::function<void(bool)> done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    delays_.push_back(ms);
  }
  done(cancel == nullptr || !cancel->cancelled());
}

std::vector<int64_t> RecordingSleeper::delays() const {
  std::lock_guard<std::mutex> lock(mu_);
  return delays_;
}

ModelResult CallWithRetries(const RetryPolicy& policy, const RetryDeps& deps, const CallOptions& options,
                            ModelStreamObserver* observer, const std::function<ModelResult(int)>& attempt) {
  Sleeper* sleeper = deps.sleeper != nullptr ? deps.sleeper : Sleeper::Real();
  const int max_attempts = std::max(1, policy.max_attempts);
  auto cancelled = [&](int attempts) {
    ModelError e;
    e.kind = ModelErrorKind::kCancelled;
    e.message = "cancelled";
    e.attempts = attempts;
    return ModelResult(std::move(e));
  };
  for (int n = 1;; n++) {
    if (options.cancel != nullptr && options.cancel->cancelled()) return cancelled(n - 1);
    if (observer != nullptr) observer->OnAttemptStart(n);
    ModelResult r = attempt(n);
    if (r.ok()) {
      r.mutable_response().attempts = n;
      return r;
    }
    ModelError& e = r.mutable_error();
    e.attempts = n;
    if (e.kind == ModelErrorKind::kCancelled) return r;
    if (!e.retryable || n >= max_attempts) return r;
    double u = deps.uniform01 ? deps.uniform01() : DefaultUniform();
    int64_t delay = policy.DelayMs(n, e, u);
    if (observer != nullptr) observer->OnRetry(e, n + 1, delay);
    if (!sleeper->SleepFor(delay, options.cancel)) return cancelled(n);
  }
}

namespace {

ModelResult CancelledResult(int attempts) {
  ModelError e;
  e.kind = ModelErrorKind::kCancelled;
  e.message = "cancelled";
  e.attempts = attempts;
  return ModelResult(std::move(e));
}

// The state of one CallWithRetriesAsync, shared by its attempts and timers.
struct RetryRun final : std::enable_shared_from_this<RetryRun> {
  RetryPolicy policy;
  RetryDeps deps;
  CallOptions options;
  ModelStreamObserver* observer = nullptr;
  AsyncAttempt attempt;
  ModelCallback done;
  int n = 0;

  void Next() {
    n++;
    if (options.cancel != nullptr && options.cancel->cancelled()) {
      Finish(CancelledResult(n - 1));
      return;
    }
    if (observer != nullptr) observer->OnAttemptStart(n);
    auto self = shared_from_this();
    attempt(n, [self](ModelResult r) { self->OnAttempt(std::move(r)); });
  }

  void OnAttempt(ModelResult r) {
    const int max_attempts = std::max(1, policy.max_attempts);
    if (r.ok()) {
      r.mutable_response().attempts = n;
      Finish(std::move(r));
      return;
    }
    ModelError& e = r.mutable_error();
    e.attempts = n;
    if (e.kind == ModelErrorKind::kCancelled || !e.retryable || n >= max_attempts) {
      Finish(std::move(r));
      return;
    }
    double u = deps.uniform01 ? deps.uniform01() : DefaultUniform();
    int64_t delay = policy.DelayMs(n, e, u);
    if (observer != nullptr) observer->OnRetry(e, n + 1, delay);
    Sleeper* sleeper = deps.sleeper != nullptr ? deps.sleeper : Sleeper::Real();
    auto self = shared_from_this();
    sleeper->SleepAsync(delay, options.cancel, [self](bool slept) {
      if (!slept) {
        self->Finish(CancelledResult(self->n));
        return;
      }
      self->Next();
    });
  }

  void Finish(ModelResult r) {
    ModelCallback cb = std::move(done);
    done = nullptr;
    attempt = nullptr;  // breaks the cycle through captured state
    if (cb) cb(std::move(r));
  }
};

}  // namespace

void CallWithRetriesAsync(const RetryPolicy& policy, const RetryDeps& deps, const CallOptions& options,
                          ModelStreamObserver* observer, AsyncAttempt attempt, ModelCallback done) {
  auto run = std::make_shared<RetryRun>();
  run->policy = policy;
  run->deps = deps;
  run->options = options;
  run->observer = observer;
  run->attempt = std::move(attempt);
  run->done = std::move(done);
  run->Next();
}

void ModelProvider::CallAsync(ModelRequest request, ModelStreamObserver* observer, CallOptions options,
                              ModelCallback done) {
  // For providers that only implement the blocking Call (simple fakes): a
  // thread of its own. What Call throws becomes a terminal error.
  std::thread([this, request = std::move(request), observer, options, done = std::move(done)]() mutable {
    ModelResult r = [&]() -> ModelResult {
      try {
        return Call(request, observer, options);
      } catch (const std::exception& e) {
        ModelError err;
        err.kind = ModelErrorKind::kRequestFailed;
        err.message = std::string("the model provider threw: ") + e.what();
        return err;
      } catch (...) {
        ModelError err;
        err.kind = ModelErrorKind::kRequestFailed;
        err.message = "the model provider threw";
        return err;
      }
    }();
    done(std::move(r));
  }).detach();
}

ModelResult ModelProvider::Call(const ModelRequest& request, ModelStreamObserver* observer,
                                const CallOptions& options) {
  auto promise = std::make_shared<std::promise<ModelResult>>();
  auto future = promise->get_future();
  CallAsync(request, observer, options, [promise](ModelResult r) { promise->set_value(std::move(r)); });
  return future.get();
}

}  // namespace warren::models
