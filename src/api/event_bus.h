// EventBus: in-process fan-out of persisted session events to live SSE
// streams. Publishing happens inside the store's commit critical section
// (CommitHook), so every subscriber sees a session's events in commit order.
//
// Each subscriber (SseStream) has a queue bounded in frames and in bytes; one
// that falls behind by more than either bound is disconnected (it can resume
// by re-listing or with Last-Event-ID). Frames are serialised once and shared
// by all subscribers. A Last-Event-ID replay respects the same bound: it is
// read from the store one page at a time, the next page only once the client
// has taken the previous one (StartReplay). Thread-safe.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "domain/event_sink.h"
#include "http/http_server.h"
#include "store/store.h"

namespace warren::api {

// Renders one SSE frame: "id: ..\nevent: <type>\ndata: <json>\n\n".
std::shared_ptr<const std::string> SseFrame(const Json& event, bool with_id = true);

// How a stream frames a session's events. kSession: the per-session stream
// (GET /v1/sessions/{id}/events/stream), one SSE event per session event.
// kMux: the multiplexed stream (GET /v1/warren/stream, docs/API.md):
//   id: <session_id>@<event_id>
//   event: session_event
//   data: {"session_id":"...","event":<event>}
// and previews as `event: preview` / {"session_id","frame"}.
enum class Framing { kSession, kMux };
std::shared_ptr<const std::string> MuxEventFrame(const std::string& session_id, const Json& event);
std::shared_ptr<const std::string> MuxPreviewFrame(const std::string& session_id, const Json& frame);

// Told when a session may have changed (created, status, title, usage,
// archived, deleted). May be called inside a store commit hook: must not
// block and must not call the store. `generation` grows with every change.
class SessionChangeListener {
 public:
  virtual ~SessionChangeListener() = default;
  virtual void OnSessionChanged(const std::string& session_id, uint64_t generation) = 0;
};

class EventBus;

// One live stream of one session. Created by EventBus::Subscribe.
class SseStream final : public http::StreamSource, public std::enable_shared_from_this<SseStream> {
 public:
  static constexpr size_t kMaxQueuedBytes = 8 << 20;
  SseStream(EventBus* bus, std::string session_id, size_t max_queue, std::set<std::string> deltas,
            Framing framing = Framing::kSession);
  ~SseStream() override;

  void SetWaker(std::function<void()> waker) override;
  bool Pull(std::vector<std::shared_ptr<const std::string>>* out) override;
  std::string KeepAliveChunk() const override;
  std::chrono::milliseconds KeepAliveInterval() const override { return keepalive_; }
  void OnClose() override;

  // Called by the bus. `seq` orders persisted events (0 for previews).
  void Push(int64_t seq, std::shared_ptr<const std::string> frame);
  // Ends the stream after queued frames.
  void End();
  // Reads up to `limit` persisted events of the session with seq > after.
  using ReplayPager = std::function<Result<std::vector<store::StoredEvent>>(int64_t after, int limit)>;
  static constexpr int kReplayPage = 256;
  // Starts a Last-Event-ID replay of the events after `after_seq`. Pull
  // reads them through `pager` a page at a time, when the queue is empty, so
  // a long history never sits in memory at once. Live persisted events that
  // arrive meanwhile are not queued (the pager reads them from the store);
  // live stream-only frames are held (bounded) until the replay has caught
  // up. Call before the stream is handed to the server.
  void StartReplay(int64_t after_seq, ReplayPager pager);
  // Largest number of frames queued at once so far (tests).
  size_t max_queued_frames() const;
  const std::string& session_id() const { return session_id_; }
  bool wants_delta(const std::string& type) const { return deltas_.count(type) > 0; }
  Framing framing() const { return framing_; }
  // True once the stream ended because it fell behind or its replay failed
  // (as opposed to its session ending).
  bool failed() const;
  void set_keepalive(std::chrono::milliseconds k) { keepalive_ = k; }

 private:
  EventBus* bus_;
  std::string session_id_;
  size_t max_queue_;
  std::set<std::string> deltas_;
  Framing framing_;
  std::chrono::milliseconds keepalive_{15000};
  mutable std::mutex mu_;
  std::function<void()> waker_;
  std::deque<std::pair<int64_t, std::shared_ptr<const std::string>>> queue_;
  size_t queued_bytes_ = 0;
  int64_t high_water_ = 0;
  size_t max_queued_seen_ = 0;
  // Replay state (StartReplay); the pager is called without mu_ held.
  bool replaying_ = false;
  ReplayPager pager_;
  int64_t replay_cursor_ = 0;
  int64_t live_max_seq_ = 0;  // highest persisted seq pushed during the replay
  std::deque<std::shared_ptr<const std::string>> held_;  // stream-only frames pushed during the replay
  bool ended_ = false;
  bool overflowed_ = false;
  bool closed_ = false;
};

// The transport's implementation of the domain's EventSink port.
class EventBus final : public domain::EventSink {
 public:
  explicit EventBus(size_t max_queue = 10000) : max_queue_(max_queue) {}

  std::shared_ptr<SseStream> Subscribe(const std::string& session_id, std::set<std::string> deltas = {},
                                       Framing framing = Framing::kSession);
  void Unsubscribe(SseStream* s);

  // Session change notifications (the multiplexed stream's sessions_list).
  // Publish() reports sessions whose persisted events include a session.*
  // event (status, usage, updates); the API reports creation, archive and
  // deletion through SessionChanged().
  void AddSessionListener(SessionChangeListener* l);
  void RemoveSessionListener(SessionChangeListener* l);
  void SessionChanged(const std::string& session_id);
  size_t session_listeners() const;

  // Persisted events, in commit order.
  void Publish(const std::string& session_id, const std::vector<store::StoredEvent>& events) override;
  // A stream-only frame (event_start / event_delta previews) for streams
  // that asked for deltas of `preview_of` ("agent.message"/"agent.thinking").
  void PublishPreview(const std::string& session_id, const std::string& preview_of, const Json& frame) override;
  // Sends `final_event` (e.g. session.deleted) and ends every stream of it.
  void EndSession(const std::string& session_id, const Json& final_event);
  // Ends all streams (shutdown).
  void EndAll();
  size_t subscribers() const;

 private:
  size_t max_queue_;
  mutable std::mutex mu_;
  std::map<std::string, std::set<SseStream*>> subs_;
  mutable std::mutex listeners_mu_;
  std::set<SessionChangeListener*> listeners_;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace warren::api
