#include "api/event_bus.h"

namespace warren::api {

std::shared_ptr<const std::string> SseFrame(const Json& event, bool with_id) {
  std::string f;
  if (with_id && event.contains("id") && event["id"].is_string() && !event["id"].get<std::string>().empty())
    f += "id: " + event["id"].get<std::string>() + "\n";
  f += "event: " + event.value("type", std::string("message")) + "\n";
  f += "data: " + DumpJson(event) + "\n\n";
  return std::make_shared<const std::string>(std::move(f));
}

SseStream::SseStream(EventBus* bus, std::string session_id, size_t max_queue, std::set<std::string> deltas)
    : bus_(bus), session_id_(std::move(session_id)), max_queue_(max_queue), deltas_(std::move(deltas)) {}

SseStream::~SseStream() {
  if (!closed_) bus_->Unsubscribe(this);
}

void SseStream::SetWaker(std::function<void()> waker) {
  std::lock_guard<std::mutex> lock(mu_);
  waker_ = std::move(waker);
}

bool SseStream::Pull(std::vector<std::shared_ptr<const std::string>>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (overflowed_) return false;
  for (auto& [seq, frame] : queue_) out->push_back(std::move(frame));
  queue_.clear();
  queued_bytes_ = 0;
  return !ended_;
}

std::string SseStream::KeepAliveChunk() const { return "event: ping\ndata: {\"type\":\"ping\"}\n\n"; }

void SseStream::OnClose() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    waker_ = nullptr;
  }
  bus_->Unsubscribe(this);
}

void SseStream::Push(int64_t seq, std::shared_ptr<const std::string> frame) {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_ || closed_) return;
    if (seq > 0) {
      if (seq <= high_water_) return;  // already replayed
      high_water_ = seq;
    }
    if (queue_.size() >= max_queue_ || queued_bytes_ + frame->size() > kMaxQueuedBytes) {
      overflowed_ = true;  // slow consumer: disconnect
    } else {
      queued_bytes_ += frame->size();
      queue_.emplace_back(seq, std::move(frame));
    }
    wake = waker_;
  }
  if (wake) wake();
}

void SseStream::End() {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
    wake = waker_;
  }
  if (wake) wake();
}

void SseStream::Replay(const std::vector<store::StoredEvent>& events) {
  std::lock_guard<std::mutex> lock(mu_);
  // Replayed frames go before anything live already queued.
  std::deque<std::pair<int64_t, std::shared_ptr<const std::string>>> merged;
  int64_t hw = high_water_;
  for (const auto& ev : events) {
    merged.emplace_back(ev.seq, SseFrame(ev.body));
    hw = std::max(hw, ev.seq);
  }
  for (auto& item : queue_)
    if (item.first == 0 || item.first > hw) merged.push_back(std::move(item));
  queue_ = std::move(merged);
  queued_bytes_ = 0;
  for (const auto& item : queue_) queued_bytes_ += item.second->size();
  high_water_ = std::max(high_water_, hw);
}

std::shared_ptr<SseStream> EventBus::Subscribe(const std::string& session_id, std::set<std::string> deltas) {
  auto s = std::make_shared<SseStream>(this, session_id, max_queue_, std::move(deltas));
  std::lock_guard<std::mutex> lock(mu_);
  subs_[session_id].insert(s.get());
  return s;
}

void EventBus::Unsubscribe(SseStream* s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(s->session_id());
  if (it == subs_.end()) return;
  it->second.erase(s);
  if (it->second.empty()) subs_.erase(it);
}

void EventBus::Publish(const std::string& session_id, const std::vector<store::StoredEvent>& events) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(session_id);
  if (it == subs_.end()) return;
  for (const auto& ev : events) {
    auto frame = SseFrame(ev.body);
    for (SseStream* s : it->second) s->Push(ev.seq, frame);
  }
}

void EventBus::PublishPreview(const std::string& session_id, const std::string& preview_of, const Json& frame_json) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(session_id);
  if (it == subs_.end()) return;
  auto frame = SseFrame(frame_json, false);
  for (SseStream* s : it->second)
    if (s->wants_delta(preview_of)) s->Push(0, frame);
}

void EventBus::EndSession(const std::string& session_id, const Json& final_event) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(session_id);
  if (it == subs_.end()) return;
  auto frame = SseFrame(final_event);
  for (SseStream* s : it->second) {
    s->Push(0, frame);
    s->End();
  }
}

void EventBus::EndAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [sid, set] : subs_)
    for (SseStream* s : set) s->End();
}

size_t EventBus::subscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (auto& [sid, set] : subs_) n += set.size();
  return n;
}

}  // namespace warren::api
