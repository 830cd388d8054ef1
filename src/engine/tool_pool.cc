#include "engine/tool_pool.h"

#include <algorithm>

namespace warren::engine {

ToolPool::ToolPool(int max_threads) : max_threads_(static_cast<size_t>(std::max(1, max_threads))) {}

ToolPool::~ToolPool() { Stop(); }

void ToolPool::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
}

bool ToolPool::Submit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    queue_.push_back(std::move(job));
    // A new thread only when every started one is busy (and the bound allows).
    if (idle_ < queue_.size() && threads_.size() < max_threads_) threads_.emplace_back([this] { Loop(); });
  }
  cv_.notify_one();
  return true;
}

void ToolPool::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    idle_++;
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    idle_--;
    if (queue_.empty()) return;  // stopping, nothing left to run
    auto job = std::move(queue_.front());
    queue_.pop_front();
    active_++;
    lock.unlock();
    job();
    job = nullptr;  // captured state is released outside the lock
    lock.lock();
    active_--;
    cv_.notify_all();
  }
}

void ToolPool::Stop() {
  std::vector<std::thread> threads;
  {
    std::unique_lock<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
    // Queued jobs still run (their owners cancelled them; they end at once).
    cv_.wait(lock, [this] { return queue_.empty() && active_ == 0; });
    threads.swap(threads_);  // each thread leaves idle_ as it exits
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

size_t ToolPool::threads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return threads_.size();
}

}  // namespace warren::engine
