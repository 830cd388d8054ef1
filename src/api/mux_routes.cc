// GET /v1/warren/stream: the multiplexed event stream (docs/API.md,
// "Multiplexed stream"; mux_stream.h).
#include <set>

#include "api/errors.h"
#include "api/service.h"
#include "api/validate.h"

namespace warren::api {

static constexpr size_t kMaxMuxSessions = 50;

Result<http::HandlerResult> ApiService::MultiplexedStream(http::HttpRequest& req, const Params&, const Principal& p) {
  for (const auto& [k, v] : req.query) {
    if (k != "session" && k != "sessions_list" && k != "previews")
      return Invalid(k.substr(0, 64), "unknown query parameter (expected session, sessions_list, previews)");
  }
  bool sessions_list = false, previews = false;
  if (auto v = req.Query("sessions_list")) WARREN_RETURN_IF_ERROR(ParseBoolParam(*v, "sessions_list", &sessions_list));
  if (auto v = req.Query("previews")) WARREN_RETURN_IF_ERROR(ParseBoolParam(*v, "previews", &previews));
  if (sessions_list && p.kind == store::KeyKind::kSession)
    return Status::PermissionDenied("a sessions token cannot follow the sessions list");
  const std::vector<std::string> specs = req.QueryAll("session");
  if (specs.size() > kMaxMuxSessions)
    return Invalid("session", "at most " + std::to_string(kMaxMuxSessions) + " sessions per stream, got " +
                                  std::to_string(specs.size()));
  struct Want {
    std::string id;
    std::string cursor;  // event id, "" = whole history
  };
  std::vector<Want> wants;
  std::set<std::string> seen;
  for (const std::string& spec : specs) {
    Want w;
    size_t at = spec.find('@');
    w.id = spec.substr(0, at);
    if (at != std::string::npos) {
      w.cursor = spec.substr(at + 1);
      if (w.cursor.empty() || w.cursor.size() > 128)
        return Invalid("session", "'" + spec.substr(0, 160) + "': expected <session_id>@<event_id>");
    }
    if (w.id.empty() || w.id.size() > 128)
      return Invalid("session", "'" + spec.substr(0, 160) + "': expected <session_id> or <session_id>@<event_id>");
    if (!seen.insert(w.id).second) return Invalid("session", "session " + w.id + " is listed twice");
    wants.push_back(std::move(w));
  }
  std::set<std::string> deltas;
  if (previews) deltas = {"agent.message", "agent.thinking"};

  auto stream = std::make_shared<MuxStream>(bus_, snapshots_.get(), p, sessions_list, options_.sse_keepalive);
  // The sessions list is followed from before any session is read, so a
  // change racing this request is announced rather than lost.
  stream->Start();
  for (const Want& w : wants) {
    // An inaccessible session, or a cursor that is not one of its events,
    // gets an error frame; the stream goes on for the others.
    auto error_frame = [&](const Status& s) {
      http::HttpResponse r = ErrorResponse(s, req.request_id);
      auto env = ParseJson(r.body);
      stream->AddErrorFrame(env.ok() ? *env : Json{{"type", "error"}});
    };
    auto session = AccessibleSession(w.id, p);
    if (!session.ok()) {
      if (session.status().code() != Code::kNotFound && session.status().code() != Code::kPermissionDenied)
        return session.status();
      error_frame(session.status());
      continue;
    }
    // Subscribe first, then read the cursor and replay from the store: the
    // replay reads what committed before, the subscription holds what
    // commits after, and the child drops the overlap (event_bus.h).
    auto child = bus_->Subscribe(w.id, deltas, Framing::kMux);
    int64_t after = 0;
    if (!w.cursor.empty()) {
      WARREN_ASSIGN_OR_RETURN(auto ev, store_->GetEvent(w.id, w.cursor));
      if (!ev) {
        error_frame(Status::InvalidArgument("session=" + w.id + "@" + w.cursor.substr(0, 64) + ": '" +
                                            w.cursor.substr(0, 64) + "' is not an event of session " + w.id));
        continue;  // `child` unsubscribes as it goes
      }
      after = ev->seq;
    }
    store::Store* store = store_;
    std::string id = w.id;
    child->StartReplay(after, [store, id](int64_t a, int limit) { return store->EventsAfter(id, a, limit); });
    stream->AddSession(std::move(child));
  }
  http::HandlerResult r;
  r.response.status = 200;
  r.stream = stream;
  return r;
}

}  // namespace warren::api
