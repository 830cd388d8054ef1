#include "models/bounded_provider.h"

#include <algorithm>
#include <vector>

#include "common/timer_loop.h"

namespace warren::models {
namespace {

// Providers whose Pump runs on this thread (guards re-entry per provider).
thread_local std::vector<const void*> pumping;

ModelResult Cancelled() {
  ModelError e;
  e.kind = ModelErrorKind::kCancelled;
  e.message = "cancelled while waiting for a model call slot";
  e.attempts = 0;
  return e;
}

}  // namespace

BoundedProvider::BoundedProvider(std::unique_ptr<ModelProvider> inner, int max_concurrent)
    : inner_(std::move(inner)), max_(std::max(1, max_concurrent)) {}

BoundedProvider::Stats BoundedProvider::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void BoundedProvider::CallAsync(ModelRequest request, ModelStreamObserver* observer, CallOptions options,
                                ModelCallback done) {
  auto w = std::make_shared<Waiter>();
  w->request = std::move(request);
  w->observer = observer;
  w->options = options;
  w->done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(w);
    stats_.waiting = static_cast<int>(queue_.size());
  }
  if (options.cancel != nullptr) {
    // Runs under the token's lock (maybe at once): it only takes the waiter
    // out of the queue and completes it from the timer thread.
    std::weak_ptr<Waiter> weak = w;
    int handle = const_cast<CancelToken*>(options.cancel)->AddWaker([this, weak] {
      auto waiter = weak.lock();
      if (!waiter) return;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = std::find(queue_.begin(), queue_.end(), waiter);
        if (it == queue_.end()) return;  // already started: the inner call sees the token
        queue_.erase(it);
        stats_.waiting = static_cast<int>(queue_.size());
      }
      TimerLoop::Shared()->After(0, nullptr, [waiter](bool) {
        ModelCallback cb = std::move(waiter->done);
        if (cb) cb(Cancelled());
      });
    });
    std::lock_guard<std::mutex> lock(mu_);
    w->waker = handle;
  }
  Pump();
}

void BoundedProvider::Pump() {
  if (std::find(pumping.begin(), pumping.end(), this) != pumping.end()) return;
  struct Guard {
    explicit Guard(const void* p) { pumping.push_back(p); }
    ~Guard() { pumping.pop_back(); }
  } guard(this);
  for (;;) {
    std::shared_ptr<Waiter> w;
    int waker = -1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty() || stats_.in_flight >= max_) break;
      w = std::move(queue_.front());
      queue_.pop_front();
      stats_.waiting = static_cast<int>(queue_.size());
      stats_.in_flight++;
      stats_.started++;
      stats_.max_in_flight = std::max(stats_.max_in_flight, stats_.in_flight);
      waker = w->waker;
      w->waker = -1;
    }
    if (waker >= 0) const_cast<CancelToken*>(w->options.cancel)->RemoveWaker(waker);
    Launch(std::move(w));
  }
}

void BoundedProvider::Launch(std::shared_ptr<Waiter> w) {
  ModelCallback done = std::move(w->done);
  auto finished = [this, done = std::move(done)](ModelResult r) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.in_flight--;
    }
    // The next waiter starts before this answer is handed back, so the slot
    // never idles while the caller records the answer.
    Pump();
    done(std::move(r));
  };
  // Launch may run on another caller's thread (a completion that freed the
  // slot): a throw becomes this call's error instead of crossing over.
  auto holder = std::make_shared<decltype(finished)>(std::move(finished));
  try {
    inner_->CallAsync(std::move(w->request), w->observer, w->options,
                      [holder](ModelResult r) { (*holder)(std::move(r)); });
  } catch (const std::exception& e) {
    ModelError err;
    err.kind = ModelErrorKind::kRequestFailed;
    err.message = std::string("the model provider threw: ") + e.what();
    (*holder)(std::move(err));
  } catch (...) {
    ModelError err;
    err.kind = ModelErrorKind::kRequestFailed;
    err.message = "the model provider threw";
    (*holder)(std::move(err));
  }
}

}  // namespace warren::models
