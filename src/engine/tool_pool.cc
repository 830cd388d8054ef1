#include "engine/tool_pool.h"

#include <algorithm>
#include <iterator>

namespace warren::engine {

ToolPool::ToolPool(int max_threads, int max_per_key)
    : max_threads_(static_cast<size_t>(std::max(1, max_threads))),
      max_per_key_(std::min(max_threads_, static_cast<size_t>(std::max(1, max_per_key)))) {}

ToolPool::~ToolPool() { Stop(); }

void ToolPool::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
}

size_t ToolPool::Runnable(const KeyState& ks) const {
  if (ks.running >= max_per_key_) return 0;
  return std::min(ks.queue.size(), max_per_key_ - ks.running);
}

void ToolPool::Leave(const std::string& key, const KeyState& ks) {
  if (!ks.queue.empty() && ks.running < max_per_key_) ready_.erase({ks.queue.begin()->first, key});
  runnable_ -= Runnable(ks);
}

void ToolPool::Enter(const std::string& key) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  const KeyState& ks = it->second;
  if (ks.queue.empty() && ks.running == 0) {
    keys_.erase(it);  // many keys come and go: keep only live ones
    return;
  }
  if (!ks.queue.empty() && ks.running < max_per_key_) ready_.insert({ks.queue.begin()->first, key});
  runnable_ += Runnable(ks);
}

ToolPool::JobId ToolPool::Submit(const std::string& key, std::function<void()> run, std::function<void()> dropped) {
  JobId id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return 0;
    id = next_id_++;
    KeyState& ks = keys_[key];
    Leave(key, ks);
    ks.queue.emplace(id, Job{std::move(run), std::move(dropped)});
    queued_.emplace(id, key);
    Enter(key);
    // A new thread only when the jobs that could start outnumber the idle
    // threads (and the bound allows).
    if (idle_ < runnable_ && threads_.size() < max_threads_) threads_.emplace_back([this] { Loop(); });
  }
  work_cv_.notify_one();
  return id;
}

bool ToolPool::Cancel(JobId id) {
  Job job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto q = queued_.find(id);
    if (q == queued_.end()) return false;
    const std::string key = std::move(q->second);
    queued_.erase(q);
    KeyState& ks = keys_[key];
    Leave(key, ks);
    auto node = ks.queue.extract(id);
    job = std::move(node.mapped());
    Enter(key);
  }
  if (job.dropped) job.dropped();
  return true;
}

void ToolPool::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    idle_++;
    work_cv_.wait(lock, [this] { return stopping_ || !ready_.empty(); });
    idle_--;
    if (ready_.empty()) return;  // stopping, nothing left to run
    // The oldest job among the keys below their bound.
    const std::string key = ready_.begin()->second;
    KeyState& ks = keys_[key];
    Leave(key, ks);
    auto node = ks.queue.extract(ks.queue.begin());
    queued_.erase(node.key());
    Job job = std::move(node.mapped());
    ks.running++;
    Enter(key);
    active_++;
    lock.unlock();
    job.run();
    job = Job();  // captured state is released outside the lock
    lock.lock();
    KeyState& after = keys_[key];
    Leave(key, after);
    after.running--;
    Enter(key);  // its next job, if any, may start now
    active_--;
    done_cv_.notify_all();
  }
}

void ToolPool::Stop() {
  std::vector<Job> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    // Queued jobs are dropped, oldest first.
    std::map<JobId, Job> all;
    for (auto& [key, ks] : keys_) all.merge(ks.queue);
    for (auto& [id, job] : all) dropped.push_back(std::move(job));
    queued_.clear();
    ready_.clear();
    runnable_ = 0;
    for (auto it = keys_.begin(); it != keys_.end();) it = it->second.running == 0 ? keys_.erase(it) : std::next(it);
  }
  work_cv_.notify_all();
  for (auto& job : dropped)
    if (job.dropped) job.dropped();
  std::vector<std::thread> threads;
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return active_ == 0; });
    threads.swap(threads_);  // each thread leaves idle_ as it exits
  }
  work_cv_.notify_all();
  for (auto& t : threads) t.join();
}

size_t ToolPool::threads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return threads_.size();
}

size_t ToolPool::running(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  return it == keys_.end() ? 0 : it->second.running;
}

size_t ToolPool::queued(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  return it == keys_.end() ? 0 : it->second.queue.size();
}

}  // namespace warren::engine
