// The embedded orchestrator's WorkSource::FailItem (docs/ORCHESTRATOR.md,
// "When an item cannot be served"): a work item that cannot be served for a
// reason of the session's own (its environment's packages cannot be built,
// a bad prepared sandbox or snapshot in its metadata) is reported to the
// session as a `session.error` (type unknown_error, retry_status terminal,
// the reason in plain words) and each pending built-in call is answered
// with an error `user.tool_result` carrying the same words. The answers
// resume the turn (the engine sees them like a worker's) and keep the queue
// from delivering the calls again, so the item cannot loop.
//
// Stateless; thread-safe as the store, sink and observers are.
#pragma once

#include <string>
#include <vector>

#include "api/service.h"
#include "common/status.h"
#include "domain/event_sink.h"
#include "store/store.h"

namespace warren::cli {

Status ReportSessionFailure(store::Store* store, domain::EventSink* bus,
                            const std::vector<api::SessionObserver*>& observers, const std::string& session_id,
                            const std::string& message);

}  // namespace warren::cli
