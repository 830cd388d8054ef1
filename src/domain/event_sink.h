// EventSink: the port through which the domain (the engine) hands persisted
// session events, and stream-only previews, to whoever serves live readers.
// The transport's EventBus (src/api) implements it for SSE; tests use a
// recording fake. The domain never includes http/ or api/ (DESIGN 2a).
//
// Publish() is called inside the store's commit critical section (the
// CommitHook), in commit order; implementations must not block and must not
// call back into the store. Implementations are thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/json.h"
#include "store/store.h"

namespace warren::domain {

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Persisted events of one session, in commit order.
  virtual void Publish(const std::string& session_id, const std::vector<store::StoredEvent>& events) = 0;
  // A stream-only frame (event_start / event_delta previews of
  // `preview_of`, "agent.message" or "agent.thinking").
  virtual void PublishPreview(const std::string& session_id, const std::string& preview_of, const Json& frame) = 0;
};

}  // namespace warren::domain
