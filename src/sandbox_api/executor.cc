#include "sandbox_api/executor.h"

#include "api/errors.h"

namespace warren::sandbox_api {

CallExecutor::CallExecutor(int threads, size_t max_queued)
    : threads_(threads < 1 ? 1 : threads), max_queued_(max_queued) {}

CallExecutor::~CallExecutor() { Stop(); }

Status CallExecutor::Submit(std::function<void(const CancelToken&)> fn, CancelToken token) {
  if (!token) token = std::make_shared<std::atomic<bool>>(false);
  std::lock_guard<std::mutex> l(mu_);
  if (stopping_) return Status::Unavailable("the sandbox API is shutting down");
  if (queue_.size() >= max_queued_ && running_ >= static_cast<size_t>(threads_)) {
    return Status::Unavailable("too many long sandbox calls in flight (" + std::to_string(running_) + " running, " +
                               std::to_string(queue_.size()) + " queued); retry later");
  }
  queue_.push_back(Call{std::move(fn), std::move(token)});
  if (workers_.size() < static_cast<size_t>(threads_) && workers_.size() < running_ + queue_.size()) {
    workers_.emplace_back([this] { Loop(); });
  }
  cv_.notify_one();
  return Status::Ok();
}

void CallExecutor::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    Call c = std::move(queue_.front());
    queue_.pop_front();
    if (stopping_) c.token->store(true);
    ++running_;
    active_.push_back(c.token);
    l.unlock();
    c.fn(c.token);
    l.lock();
    --running_;
    for (auto it = active_.begin(); it != active_.end(); ++it) {
      if (*it == c.token) {
        active_.erase(it);
        break;
      }
    }
  }
}

void CallExecutor::Stop() {
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    for (auto& t : active_) t->store(true);
    for (auto& c : queue_) c.token->store(true);
    workers.swap(workers_);
  }
  cv_.notify_all();
  for (auto& t : workers) t.join();
  // Calls queued with no worker left (none started yet): run them cancelled
  // so that each can answer its client.
  std::deque<Call> left;
  {
    std::lock_guard<std::mutex> l(mu_);
    left.swap(queue_);
  }
  for (auto& c : left) c.fn(c.token);
}

size_t CallExecutor::running() const {
  std::lock_guard<std::mutex> l(mu_);
  return running_;
}

size_t CallExecutor::queued() const {
  std::lock_guard<std::mutex> l(mu_);
  return queue_.size();
}

AsyncResponse::AsyncResponse(std::chrono::milliseconds timeout, std::string request_id)
    : timeout_(timeout), request_id_(std::move(request_id)) {}

void AsyncResponse::SetWaker(std::function<void()> waker) {
  std::lock_guard<std::mutex> l(mu_);
  waker_ = std::move(waker);
}

std::optional<http::HttpResponse> AsyncResponse::TryComplete(bool deadline_passed) {
  std::lock_guard<std::mutex> l(mu_);
  if (response_) return response_;
  if (!deadline_passed) return std::nullopt;
  // Deadline or server shutdown: stop the call and answer now.
  token_->store(true);
  return api::RenderError(503, api::ErrorTypeFor(503), "the sandbox call was cancelled (deadline or shutdown)",
                          request_id_);
}

void AsyncResponse::OnClose() { token_->store(true); }

void AsyncResponse::Complete(http::HttpResponse response) {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (response_) return;
    response_ = std::move(response);
    wake = waker_;
  }
  if (wake) wake();
}

}  // namespace warren::sandbox_api
