#include "orchestrator/keyed.h"

#include <utility>

namespace warren::orchestrator {

// ---------------------------------------------------------------- KeyedLocks

KeyedLocks::Guard& KeyedLocks::Guard::operator=(Guard&& o) noexcept {
  if (this != &o) {
    Release();
    table_ = o.table_;
    key_ = std::move(o.key_);
    entry_ = o.entry_;
    o.table_ = nullptr;
  }
  return *this;
}

void KeyedLocks::Guard::Release() {
  if (table_ == nullptr) return;
  KeyedLocks* t = table_;
  table_ = nullptr;
  t->Unlock(key_, entry_);
}

KeyedLocks::Guard KeyedLocks::Lock(const std::string& key) {
  Entry* e;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto& p = entries_[key];
    if (!p) p = std::make_unique<Entry>();
    ++p->refs;  // counted before waiting: the entry stays while we wait
    e = p.get();
  }
  e->mu.lock();
  return Guard(this, key, e);
}

KeyedLocks::Guard KeyedLocks::TryLock(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  auto& p = entries_[key];
  if (!p) p = std::make_unique<Entry>();
  // Under mu_: an Unlock of this entry waits for mu_ before it counts down,
  // so the entry cannot go away between the try and the count.
  if (!p->mu.try_lock()) {
    if (p->refs == 0) entries_.erase(key);
    return Guard();
  }
  ++p->refs;
  return Guard(this, key, p.get());
}

void KeyedLocks::Unlock(const std::string& key, Entry* e) {
  e->mu.unlock();
  std::lock_guard<std::mutex> l(mu_);
  // A waiter that came after the unlock counted itself under mu_ first, so
  // refs reaching 0 here means nobody can be holding or waiting.
  if (--e->refs == 0) entries_.erase(key);
}

size_t KeyedLocks::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return entries_.size();
}

int KeyedLocks::users(const std::string& key) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(key);
  return it == entries_.end() ? 0 : it->second->refs;
}

// ------------------------------------------------------------- KeyedExecutor

KeyedExecutor::KeyedExecutor(int threads) {
  if (threads < 1) threads = 1;
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

KeyedExecutor::~KeyedExecutor() { Shutdown(); }

bool KeyedExecutor::Submit(const std::string& key, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (shutdown_ || !keys_.insert(key).second) return false;
    queue_.push_back(Task{key, std::move(fn)});
  }
  work_cv_.notify_one();
  return true;
}

bool KeyedExecutor::Busy(const std::string& key) const {
  std::lock_guard<std::mutex> l(mu_);
  return keys_.count(key) > 0;
}

void KeyedExecutor::WaitIdle() {
  std::unique_lock<std::mutex> l(mu_);
  idle_cv_.wait(l, [this] { return (queue_.empty() && running_ == 0) || shutdown_; });
}

size_t KeyedExecutor::Shutdown() {
  size_t dropped = 0;
  std::deque<Task> drop;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!shutdown_) {
      shutdown_ = true;
      drop.swap(queue_);
      dropped = drop.size();
      for (const auto& t : drop) keys_.erase(t.key);
    }
  }
  work_cv_.notify_all();
  idle_cv_.notify_all();
  drop.clear();  // the dropped closures are destroyed outside the mutex
  for (auto& t : threads_)
    if (t.joinable()) t.join();  // each returns after its running task
  return dropped;
}

size_t KeyedExecutor::queued() const {
  std::lock_guard<std::mutex> l(mu_);
  return queue_.size();
}

size_t KeyedExecutor::running() const {
  std::lock_guard<std::mutex> l(mu_);
  return running_;
}

void KeyedExecutor::Loop() {
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> l(mu_);
      work_cv_.wait(l, [this] { return shutdown_ || !queue_.empty(); });
      if (shutdown_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    task.fn();
    task.fn = nullptr;  // its captures go before the key is free again
    {
      std::lock_guard<std::mutex> l(mu_);
      --running_;
      keys_.erase(task.key);
    }
    idle_cv_.notify_all();
  }
}

}  // namespace warren::orchestrator
