// MuxStream: one SSE connection carrying many sessions' events, the org's
// session changes and previews (GET /v1/warren/stream, docs/API.md
// "Multiplexed stream"). Built for the web console, where a page may hold
// one stream and browsers allow about six connections per origin.
//
// A MuxStream owns one SseStream (Framing::kMux) per session it carries;
// each child does its own paged replay (from a cursor, or the whole history)
// and then goes live from the EventBus, with the no-gap/no-duplicate rules
// of the per-session stream. Pull takes frames from the children in turn,
// within a byte budget per call, so one long history does not starve the
// others. A child that falls behind ends the whole stream (the client
// reconnects with its cursors); a child whose session is deleted ends alone.
//
// sessions_list: the stream listens to EventBus session changes and, in
// Pull, sends the current session object once per changed session (the
// store read is shared by all streams through SessionSnapshots).
//
// The stream parks on the server's I/O thread like any SSE stream: an idle
// one costs its objects and socket, no thread. Thread-safety: Push-side
// calls (OnSessionChanged, child wakers) come from any thread; Pull/OnClose
// from the server's I/O thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/auth.h"
#include "api/event_bus.h"
#include "http/http_server.h"
#include "store/store.h"

namespace warren::api {

// The latest session objects read for sessions_list frames, shared by all
// streams: one store read per change, however many streams listen.
// Thread-safe.
class SessionSnapshots final {
 public:
  struct Snapshot {
    bool deleted = false;
    std::string environment_id;
    std::shared_ptr<const std::string> frame;  // the `event: session` SSE frame
  };
  explicit SessionSnapshots(store::Store* store) : store_(store) {}
  // The session as of change `generation` or later; reads the store unless
  // a snapshot at least that new is cached.
  Result<Snapshot> Get(const std::string& session_id, uint64_t generation);

 private:
  store::Store* store_;
  std::mutex mu_;
  struct Entry {
    uint64_t generation = 0;
    Snapshot snapshot;
  };
  std::map<std::string, Entry> cache_;  // bounded: see Get
};

// The session object as GET /v1/sessions/{id} returns it (internal fields
// removed).
Json PublicSessionJson(Json session);

class MuxStream final : public http::StreamSource, public SessionChangeListener {
 public:
  // Budget of bytes handed to the server per Pull.
  static constexpr size_t kPullBudget = 512 * 1024;

  MuxStream(EventBus* bus, SessionSnapshots* snapshots, Principal principal, bool sessions_list,
            std::chrono::milliseconds keepalive);
  ~MuxStream() override;
  MuxStream(const MuxStream&) = delete;
  MuxStream& operator=(const MuxStream&) = delete;

  // Setup, before the stream is handed to the server.
  void AddSession(std::shared_ptr<SseStream> child);
  void AddErrorFrame(const Json& envelope);
  // Registers the sessions_list listener (when asked for). Call last.
  void Start();

  // http::StreamSource
  void SetWaker(std::function<void()> waker) override;
  bool Pull(std::vector<std::shared_ptr<const std::string>>* out) override;
  std::string KeepAliveChunk() const override { return ": ping\n\n"; }
  std::chrono::milliseconds KeepAliveInterval() const override { return keepalive_; }
  void OnClose() override;

  // SessionChangeListener
  void OnSessionChanged(const std::string& session_id, uint64_t generation) override;

  size_t sessions() const;

 private:
  EventBus* bus_;
  SessionSnapshots* snapshots_;
  Principal principal_;
  bool sessions_list_;
  std::chrono::milliseconds keepalive_;
  mutable std::mutex mu_;
  std::function<void()> waker_;
  std::map<std::string, uint64_t> changed_;  // session id -> newest generation
  bool listening_ = false;
  bool closed_ = false;
  // I/O-thread state (setup happens before the server sees the stream).
  std::vector<std::shared_ptr<SseStream>> children_;
  std::vector<std::shared_ptr<const std::string>> errors_;
  size_t next_child_ = 0;
};

}  // namespace warren::api
