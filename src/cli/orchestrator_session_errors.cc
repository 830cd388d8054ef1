#include "cli/orchestrator_session_errors.h"

#include <set>

#include "common/ids.h"
#include "common/log.h"
#include "common/clock.h"
#include "orchestrator/work_source.h"

namespace warren::cli {
namespace {

std::string Str(const Json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "";
  return j[key].get<std::string>();
}

// Built-in calls that wait for a worker: unanswered, not denied, and not
// held for a confirmation that has not been given.
std::vector<std::string> CallsForWorker(const std::vector<Json>& events) {
  std::set<std::string> confirmed, blocked;
  for (const Json& e : events) {
    const std::string type = Str(e, "type");
    if (type == "agent.tool_use") {
      const std::string perm = Str(e, "evaluated_permission");
      if (perm == "deny" || perm == "ask") blocked.insert(Str(e, "id"));
    } else if (type == "user.tool_confirmation") {
      if (Str(e, "result") == "allow") confirmed.insert(Str(e, "tool_use_id"));
    }
  }
  std::vector<std::string> out;
  for (const std::string& id : orchestrator::UnansweredToolUses(events))
    if (!blocked.count(id) || confirmed.count(id)) out.push_back(id);
  return out;
}

}  // namespace

Status ReportSessionFailure(store::Store* store, domain::EventSink* bus,
                            const std::vector<api::SessionObserver*>& observers, const std::string& session_id,
                            const std::string& message) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    WARREN_ASSIGN_OR_RETURN(Json session, store->GetSession(session_id));
    std::vector<Json> bodies;
    int64_t after = 0;
    for (int pages = 0; pages < 10000; ++pages) {
      WARREN_ASSIGN_OR_RETURN(auto page, store->EventsAfter(session_id, after, 1000));
      for (auto& e : page) {
        after = e.seq;
        bodies.push_back(e.body);
      }
      if (page.size() < 1000) break;
    }
    const std::string now = FormatRfc3339(Clock::Real()->NowMicros());
    std::vector<Json> append;
    Json err = Json::object();
    err["id"] = NewId(idprefix::kEvent);
    err["type"] = "session.error";
    err["processed_at"] = now;
    err["error"] = Json{{"type", "unknown_error"}, {"message", message}, {"retry_status", {{"type", "terminal"}}}};
    append.push_back(err);
    for (const std::string& id : CallsForWorker(bodies)) {
      Json r = orchestrator::FailedToolResult(id, message);
      r["id"] = NewId(idprefix::kEvent);
      r["processed_at"] = nullptr;
      append.push_back(std::move(r));
    }
    auto check = [&](const Json& cur) -> Status {
      if (cur.contains("archived_at") && !cur["archived_at"].is_null())
        return Status::Conflict("session " + session_id + " is archived");
      if (Str(cur, "status") == "terminated") return Status::Conflict("session " + session_id + " is terminated");
      return Status::Ok();
    };
    auto stored = store->AppendEvents(session_id, check, append,
                                      [&](const std::vector<store::StoredEvent>& s) { bus->Publish(session_id, s); });
    if (!stored.ok() && stored.status().detail_code() == store::kAlreadyAnswered) continue;  // a worker answered meanwhile
    WARREN_RETURN_IF_ERROR(stored.status());
    if (append.size() > 1)
      for (api::SessionObserver* o : observers) o->OnClientEvents(session, *stored);
    log::Info("orchestrator.session_failed_calls",
              {{"session_id", session_id}, {"answered", static_cast<int64_t>(append.size() - 1)}});
    return Status::Ok();
  }
  return Status::Conflict("the session's calls kept being answered while the failure was reported");
}

}  // namespace warren::cli
