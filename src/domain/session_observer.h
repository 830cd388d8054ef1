// SessionObserver: told after client events are persisted. The API layer
// calls it; the engine and the work queue implement it. Implementations
// must be thread-safe and must not block.
#pragma once

#include <string>
#include <vector>

#include "common/json.h"
#include "store/store.h"

namespace warren::domain {

class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  virtual void OnSessionCreated(const Json& session) = 0;
  virtual void OnClientEvents(const Json& session, const std::vector<store::StoredEvent>& events) = 0;
  virtual void OnSessionDeleted(const std::string& session_id) = 0;
};

}  // namespace warren::domain
