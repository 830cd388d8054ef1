#include "common/timer_loop.h"

#include <chrono>
#include <vector>

namespace warren {
namespace {

int64_t SteadyMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

TimerLoop::TimerLoop() : thread_([this] { Run(); }) {}

TimerLoop::~TimerLoop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

TimerLoop* TimerLoop::Shared() {
  // Never destroyed: timers may be pending while static destructors run.
  static TimerLoop* loop = new TimerLoop();
  return loop;
}

size_t TimerLoop::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return timers_.size();
}

void TimerLoop::After(int64_t ms, const CancelToken* cancel, std::function<void(bool)> fn) {
  auto t = std::make_shared<Timer>();
  t->fn = std::move(fn);
  t->cancel = cancel;
  std::weak_ptr<Timer> weak = t;
  {
    std::lock_guard<std::mutex> lock(mu_);
    timers_.emplace(std::make_pair(SteadyMicros() + std::max<int64_t>(0, ms) * 1000, seq_++), t);
  }
  if (cancel != nullptr) {
    // The waker only flags the timer and wakes the loop; it may run at once
    // (already cancelled) under the token's lock.
    int handle = const_cast<CancelToken*>(cancel)->AddWaker([this, weak] {
      if (auto timer = weak.lock()) {
        std::lock_guard<std::mutex> lock(mu_);
        timer->cancelled = true;
      }
      cv_.notify_all();
    });
    std::lock_guard<std::mutex> lock(mu_);
    t->waker = handle;
  }
  cv_.notify_all();
}

void TimerLoop::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    struct Due {
      std::shared_ptr<Timer> timer;
      bool fired;
      int waker;
    };
    std::vector<Due> due;
    const int64_t now = SteadyMicros();
    for (auto it = timers_.begin(); it != timers_.end();) {
      const auto& t = it->second;
      if (stopping_ || t->cancelled || it->first.first <= now) {
        due.push_back({t, !stopping_ && !t->cancelled, t->waker});
        it = timers_.erase(it);
      } else {
        ++it;
      }
    }
    if (!due.empty()) {
      lock.unlock();
      for (auto& d : due) {
        if (d.timer->cancel != nullptr && d.waker >= 0) const_cast<CancelToken*>(d.timer->cancel)->RemoveWaker(d.waker);
        try {  // backstop: a throwing callback must not end the loop
          d.timer->fn(d.fired);
        } catch (...) {
        }
      }
      lock.lock();
      continue;
    }
    if (stopping_) return;
    if (timers_.empty()) {
      cv_.wait(lock);
    } else {
      cv_.wait_for(lock, std::chrono::microseconds(timers_.begin()->first.first - now));
    }
  }
}

}  // namespace warren
