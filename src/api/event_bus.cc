#include "api/event_bus.h"

#include "common/log.h"
#include "events/fields.h"

namespace warren::api {

std::shared_ptr<const std::string> SseFrame(const Json& event, bool with_id) {
  std::string f;
  if (with_id && event.contains("id") && event["id"].is_string() && !event["id"].get<std::string>().empty())
    f += "id: " + event["id"].get<std::string>() + "\n";
  std::string type = events::TypeOf(event);
  f += "event: " + (type.empty() ? std::string("message") : type) + "\n";
  f += "data: " + DumpJson(event) + "\n\n";
  return std::make_shared<const std::string>(std::move(f));
}

std::shared_ptr<const std::string> MuxEventFrame(const std::string& session_id, const Json& event) {
  std::string f;
  if (event.contains("id") && event["id"].is_string() && !event["id"].get<std::string>().empty())
    f += "id: " + session_id + "@" + event["id"].get<std::string>() + "\n";
  f += "event: session_event\ndata: {\"session_id\":" + DumpJson(Json(session_id)) + ",\"event\":" + DumpJson(event) +
       "}\n\n";
  return std::make_shared<const std::string>(std::move(f));
}

std::shared_ptr<const std::string> MuxPreviewFrame(const std::string& session_id, const Json& frame) {
  std::string f = "event: preview\ndata: {\"session_id\":" + DumpJson(Json(session_id)) + ",\"frame\":" +
                  DumpJson(frame) + "}\n\n";
  return std::make_shared<const std::string>(std::move(f));
}

// Renders persisted or final events for a stream of `framing`.
static std::shared_ptr<const std::string> FrameFor(Framing framing, const std::string& session_id, const Json& event) {
  return framing == Framing::kMux ? MuxEventFrame(session_id, event) : SseFrame(event);
}

SseStream::SseStream(EventBus* bus, std::string session_id, size_t max_queue, std::set<std::string> deltas,
                     Framing framing)
    : bus_(bus), session_id_(std::move(session_id)), max_queue_(max_queue), deltas_(std::move(deltas)),
      framing_(framing) {}

bool SseStream::failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return overflowed_;
}

SseStream::~SseStream() {
  if (!closed_) bus_->Unsubscribe(this);
}

void SseStream::SetWaker(std::function<void()> waker) {
  std::lock_guard<std::mutex> lock(mu_);
  waker_ = std::move(waker);
}

bool SseStream::Pull(std::vector<std::shared_ptr<const std::string>>* out) {
  std::unique_lock<std::mutex> lock(mu_);
  if (overflowed_) return false;
  // Replay: the next page only once the client has taken the previous one.
  // A page that comes back short while a live event beyond it was pushed is
  // read again (that event's commit is visible once its hook has run).
  for (int tries = 0; replaying_ && queue_.empty() && tries < 4; tries++) {
    int64_t cursor = replay_cursor_;
    ReplayPager pager = pager_;
    lock.unlock();
    auto page = pager(cursor, kReplayPage);
    lock.lock();
    if (!page.ok()) {
      log::Warn("sse.replay_failed", {{"session", session_id_}, {"error", page.status().ToString()}});
      overflowed_ = true;  // ends the stream; the client resumes with Last-Event-ID
      return false;
    }
    for (const auto& ev : *page) {
      replay_cursor_ = std::max(replay_cursor_, ev.seq);
      if (ev.seq <= high_water_) continue;
      high_water_ = ev.seq;
      auto frame = FrameFor(framing_, session_id_, ev.body);
      queued_bytes_ += frame->size();
      queue_.emplace_back(ev.seq, std::move(frame));
    }
    max_queued_seen_ = std::max(max_queued_seen_, queue_.size());
    if (page->size() < static_cast<size_t>(kReplayPage) && replay_cursor_ >= live_max_seq_) {
      // Caught up: from here on live events are queued as they come.
      replaying_ = false;
      pager_ = nullptr;
      for (auto& f : held_) queue_.emplace_back(0, std::move(f));
      held_.clear();
    }
  }
  for (auto& [seq, frame] : queue_) out->push_back(std::move(frame));
  queue_.clear();
  queued_bytes_ = 0;
  return !ended_ || replaying_;
}

size_t SseStream::max_queued_frames() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_queued_seen_;
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
    if (replaying_) {
      // The pager reads persisted events from the store; stream-only frames
      // wait (bounded) until the replay has caught up.
      if (seq > 0) {
        live_max_seq_ = std::max(live_max_seq_, seq);
      } else if (held_.size() >= max_queue_) {
        overflowed_ = true;
      } else {
        held_.push_back(std::move(frame));
      }
    } else {
      if (seq > 0) {
        if (seq <= high_water_) return;  // already replayed
        high_water_ = seq;
      }
      if (queue_.size() >= max_queue_ || queued_bytes_ + frame->size() > kMaxQueuedBytes) {
        overflowed_ = true;  // slow consumer: disconnect
      } else {
        queued_bytes_ += frame->size();
        queue_.emplace_back(seq, std::move(frame));
        max_queued_seen_ = std::max(max_queued_seen_, queue_.size());
      }
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

void SseStream::StartReplay(int64_t after_seq, ReplayPager pager) {
  std::lock_guard<std::mutex> lock(mu_);
  // Live frames queued since Subscribe: persisted ones are read again by the
  // pager (in order), stream-only ones wait for the replay to catch up.
  for (auto& [seq, frame] : queue_) {
    if (seq > 0) live_max_seq_ = std::max(live_max_seq_, seq);
    else held_.push_back(std::move(frame));
  }
  queue_.clear();
  queued_bytes_ = 0;
  high_water_ = after_seq;
  replay_cursor_ = after_seq;
  pager_ = std::move(pager);
  replaying_ = true;
}

std::shared_ptr<SseStream> EventBus::Subscribe(const std::string& session_id, std::set<std::string> deltas,
                                               Framing framing) {
  auto s = std::make_shared<SseStream>(this, session_id, max_queue_, std::move(deltas), framing);
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
  bool changed = false;
  for (const auto& ev : events) changed = changed || events::TypeOf(ev.body).rfind("session.", 0) == 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = subs_.find(session_id);
    if (it != subs_.end()) {
      for (const auto& ev : events) {
        // Each framing is rendered once per event and shared.
        std::shared_ptr<const std::string> frames[2];
        for (SseStream* s : it->second) {
          auto& f = frames[s->framing() == Framing::kMux ? 1 : 0];
          if (!f) f = FrameFor(s->framing(), session_id, ev.body);
          s->Push(ev.seq, f);
        }
      }
    }
  }
  if (changed) SessionChanged(session_id);
}

void EventBus::AddSessionListener(SessionChangeListener* l) {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  listeners_.insert(l);
}

void EventBus::RemoveSessionListener(SessionChangeListener* l) {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  listeners_.erase(l);
}

void EventBus::SessionChanged(const std::string& session_id) {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  uint64_t gen = ++generation_;
  for (SessionChangeListener* l : listeners_) l->OnSessionChanged(session_id, gen);
}

size_t EventBus::session_listeners() const {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  return listeners_.size();
}

void EventBus::PublishPreview(const std::string& session_id, const std::string& preview_of, const Json& frame_json) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(session_id);
  if (it == subs_.end()) return;
  std::shared_ptr<const std::string> frames[2];
  for (SseStream* s : it->second) {
    if (!s->wants_delta(preview_of)) continue;
    auto& f = frames[s->framing() == Framing::kMux ? 1 : 0];
    if (!f) f = s->framing() == Framing::kMux ? MuxPreviewFrame(session_id, frame_json) : SseFrame(frame_json, false);
    s->Push(0, f);
  }
}

void EventBus::EndSession(const std::string& session_id, const Json& final_event) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(session_id);
  if (it == subs_.end()) return;
  for (SseStream* s : it->second) {
    s->Push(0, FrameFor(s->framing(), session_id, final_event));
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
