// Session events: send, list, stream (spec 1.4 and 2).
#include <map>
#include <optional>
#include <set>
#include <variant>

#include "api/service.h"
#include "api/validate.h"
#include "common/ids.h"
#include "common/log.h"
#include "events/client_events.h"

namespace warren::api {

Result<std::vector<Json>> ApiService::ValidateClientEvents(const Json& events, const Json& session,
                                                           const std::string& path, bool initial) {
  std::vector<Json> out;
  const std::string sid = StringField(session, "id");
  bool self_hosted = false;
  if (!initial) {
    auto env = store_->GetEnvironment(StringField(session, "environment_id"));
    self_hosted = env.ok() && env->is_object() && TypeOf(env->value("config", Json::object())) == "self_hosted";
  }
  std::set<std::string> referenced;
  for (size_t i = 0; i < events.size(); i++) {
    std::string p = IndexPath(path, i);
    const Json& e = events[i];
    // One schema per type (src/events): the engine reads the stored event
    // with the same parser, so whatever passes here it can read.
    WARREN_ASSIGN_OR_RETURN(events::ClientEvent parsed, events::ParseClientEvent(e, p));
    const std::string_view type = events::TypeName(parsed);
    if (initial && type != "user.message" && type != "user.define_outcome")
      return Invalid(JoinPath(p, "type"), "initial_events accept only user.message and user.define_outcome");
    Json ev = e;
    // Events that answer an earlier agent event must name it.
    auto check_ref = [&](const char* field, const std::string& ref, std::initializer_list<const char*> types) -> Status {
      if (!referenced.insert(std::string(field) + ":" + ref).second)
        return Invalid(JoinPath(p, field), "answers " + ref + " twice in one request");
      WARREN_ASSIGN_OR_RETURN(auto stored, store_->GetEvent(sid, ref));
      bool ok = false;
      if (stored.has_value()) {
        std::string rt = TypeOf(stored->body);
        for (const char* t : types) ok = ok || rt == t;
      }
      if (!ok) {
        std::string want;
        for (const char* t : types) want += (want.empty() ? "" : " or ") + std::string(t);
        return Invalid(JoinPath(p, field), "'" + ref + "' is not the id of an " + want + " event in this session");
      }
      return Status::Ok();
    };
    if (auto* c = std::get_if<events::ToolConfirmation>(&parsed)) {
      WARREN_RETURN_IF_ERROR(check_ref("tool_use_id", c->tool_use_id, {"agent.tool_use", "agent.mcp_tool_use"}));
    } else if (auto* r = std::get_if<events::CustomToolResult>(&parsed)) {
      WARREN_RETURN_IF_ERROR(check_ref("custom_tool_use_id", r->custom_tool_use_id, {"agent.custom_tool_use"}));
    } else if (auto* t = std::get_if<events::ToolResult>(&parsed)) {
      if (!self_hosted)
        return Invalid(JoinPath(p, "type"), "user.tool_result is only accepted on sessions in self_hosted environments");
      WARREN_RETURN_IF_ERROR(check_ref("tool_use_id", t->tool_use_id, {"agent.tool_use"}));
    } else if (auto* d = std::get_if<events::DefineOutcome>(&parsed)) {
      if (d->rubric_type == "file") return Status::NotFound("file " + d->rubric_file_id + " not found");
      ev["max_iterations"] = d->max_iterations;
      ev["outcome_id"] = NewId("outc_");
    } else if (std::holds_alternative<events::SystemMessage>(parsed)) {
      if (i + 1 != events.size()) return Invalid(p, "system.message must be the last event of the request");
      std::string prev = i == 0 ? "" : TypeOf(events[i - 1]);
      if (prev != "user.message" && prev != "user.tool_result" && prev != "user.custom_tool_result")
        return Invalid(p, "system.message must directly follow a user.message, user.tool_result or user.custom_tool_result");
    }
    ev["id"] = NewId(idprefix::kEvent);
    ev["processed_at"] = nullptr;
    out.push_back(std::move(ev));
  }
  return out;
}

Result<http::HandlerResult> ApiService::SendEvents(http::HttpRequest& req, const Params& params, const Principal& p) {
  const std::string& id = params.at("session_id");
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"events"}, ""));
  if (!body.contains("events")) return Invalid("events", "field required");
  const Json& events = body["events"];
  if (!events.is_array()) return Invalid("events", "expected an array, got " + std::string(JsonTypeName(events)));
  if (events.empty()) return Invalid("events", "must contain at least one event");
  if (events.size() > options_.max_events_per_request)
    return Invalid("events", "at most " + std::to_string(options_.max_events_per_request) + " events per request");
  WARREN_ASSIGN_OR_RETURN(Json session, AccessibleSession(id, p));
  WARREN_ASSIGN_OR_RETURN(std::vector<Json> evs, ValidateClientEvents(events, session, "events", false));
  auto check = [&](const Json& cur) -> Status {
    if (!FieldOrNull(cur, "archived_at").is_null()) return Status::Conflict("session " + id + " is archived and read-only");
    if (FieldOrNull(cur, "status") == "terminated") return Status::Conflict("session " + id + " is terminated");
    return Status::Ok();
  };
  // A tool call is answered once (docs/QUEUE.md, "Delivery guarantees"): the
  // store refuses a second answer inside its transaction; an identical
  // repeat (a worker re-posting after a lost answer) then gets the recorded
  // event back and nothing is appended, a different one a 409.
  WARREN_RETURN_IF_ERROR(CheckGatedResults(id, evs));
  std::vector<std::optional<Json>> repeats(evs.size());
  for (int attempt = 0;; attempt++) {
    std::vector<Json> append;
    for (size_t i = 0; i < evs.size(); i++)
      if (!repeats[i]) append.push_back(evs[i]);
    Result<std::vector<store::StoredEvent>> stored = std::vector<store::StoredEvent>();
    if (!append.empty()) {
      stored = store_->AppendEvents(id, check, append,
                                    [&](const std::vector<store::StoredEvent>& s) { bus_->Publish(id, s); });
    }
    if (!stored.ok() && stored.status().detail_code() == store::kAlreadyAnswered && attempt < 3) {
      WARREN_ASSIGN_OR_RETURN(repeats, RecordedAnswers(id, evs));
      continue;
    }
    WARREN_RETURN_IF_ERROR(stored.status());
    if (!stored->empty())
      for (SessionObserver* o : observers_) o->OnClientEvents(session, *stored);
    Json data = Json::array();
    size_t next = 0;
    for (size_t i = 0; i < evs.size(); i++) data.push_back(repeats[i] ? *repeats[i] : (*stored)[next++].body);
    if (append.size() < evs.size())
      log::Info("events.repeated_answer", {{"session_id", id}, {"repeated", evs.size() - append.size()}});
    return JsonResult({{"data", data}});
  }
}

Status ApiService::CheckGatedResults(const std::string& session_id, const std::vector<Json>& events) {
  for (const Json& e : events) {
    if (store::AnswerField(e) != "tool_use_id") continue;
    const std::string call = e["tool_use_id"].get<std::string>();
    WARREN_ASSIGN_OR_RETURN(auto use, store_->GetEvent(session_id, call));
    if (!use || use->body.value("evaluated_permission", Json()) != "ask") continue;
    bool allowed = false;
    store::EventFilter filter;
    filter.types = {"user.tool_confirmation"};
    store::PageSpec page;
    page.limit = 1000;
    page.order = store::Order::kAsc;
    for (;;) {
      WARREN_ASSIGN_OR_RETURN(store::Page p, store_->ListEvents(session_id, filter, page));
      for (const Json& c : p.items)
        if (c.value("tool_use_id", Json()) == call && c.value("result", Json()) == "allow") allowed = true;
      if (allowed || !p.more_after || p.seqs.empty()) break;
      page.after = p.seqs.back();
    }
    if (!allowed) {
      return Status::Conflict("tool call " + call +
                              " needs a user.tool_confirmation with result 'allow' before its result is accepted")
          .WithDetailCode("tool_confirmation_pending");
    }
  }
  return Status::Ok();
}

Result<std::vector<std::optional<Json>>> ApiService::RecordedAnswers(const std::string& session_id,
                                                                     const std::vector<Json>& events) {
  std::vector<std::optional<Json>> out(events.size());
  std::map<std::string, size_t> wanted;  // "type:call id" -> index in events
  std::set<std::string> types;
  for (size_t i = 0; i < events.size(); i++) {
    std::string field = store::AnswerField(events[i]);
    if (field.empty()) continue;
    std::string type = events[i]["type"].get<std::string>();
    wanted[type + ":" + events[i][field].get<std::string>()] = i;
    types.insert(type);
  }
  if (wanted.empty()) return out;
  auto normalized = [](const Json& e) {
    const Json content = e.contains("content") && !e["content"].is_null() ? e["content"] : Json::array();
    const bool is_error = e.contains("is_error") && e["is_error"].is_boolean() && e["is_error"].get<bool>();
    return Json{{"content", content}, {"is_error", is_error}};
  };
  store::EventFilter filter;
  filter.types.assign(types.begin(), types.end());
  store::PageSpec page;
  page.limit = 1000;
  page.order = store::Order::kAsc;
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(store::Page p, store_->ListEvents(session_id, filter, page));
    for (const Json& rec : p.items) {
      std::string field = store::AnswerField(rec);
      if (field.empty()) continue;
      auto it = wanted.find(rec["type"].get<std::string>() + ":" + rec[field].get<std::string>());
      if (it == wanted.end() || out[it->second]) continue;
      if (normalized(rec) != normalized(events[it->second])) {
        return Status::Conflict("tool call " + rec[field].get<std::string>() + " already has a different result (" +
                                rec.value("id", "") + "); a tool call is answered once")
            .WithDetailCode(store::kAlreadyAnswered);
      }
      out[it->second] = rec;
    }
    if (!p.more_after || p.seqs.empty()) break;
    page.after = p.seqs.back();
  }
  return out;
}

Result<http::HandlerResult> ApiService::ListEvents(http::HttpRequest& req, const Params& params, const Principal& p) {
  const std::string& id = params.at("session_id");
  WARREN_ASSIGN_OR_RETURN(auto spec, ParsePaging(req, 1000, 1000, store::Order::kAsc, true));
  store::EventFilter f;
  WARREN_RETURN_IF_ERROR(ParseTimeRange(req, "created_at", &f.processed));
  for (const std::string& t : req.QueryAll("types[]")) {
    if (t.empty() || t.size() > 64) return Invalid("types[]", "invalid event type");
    f.types.push_back(t);
  }
  WARREN_RETURN_IF_ERROR(AccessibleSession(id, p).status());
  WARREN_ASSIGN_OR_RETURN(auto page, store_->ListEvents(id, f, spec));
  return JsonResult(PageBody(page, spec, false));
}

Result<http::HandlerResult> ApiService::StreamEvents(http::HttpRequest& req, const Params& params, const Principal& p) {
  const std::string& id = params.at("session_id");
  std::set<std::string> deltas;
  for (const std::string& d : req.QueryAll("event_deltas[]")) {
    if (d != "agent.message" && d != "agent.thinking")
      return Invalid("event_deltas[]", "must be 'agent.message' or 'agent.thinking', got '" + d.substr(0, 64) + "'");
    deltas.insert(d);
  }
  WARREN_RETURN_IF_ERROR(AccessibleSession(id, p).status());
  auto stream = bus_->Subscribe(id, std::move(deltas));
  stream->set_keepalive(options_.sse_keepalive);
  // Re-check after subscribing: a delete in between must not leave a stream
  // open on nothing.
  if (!store_->GetSession(id).ok()) return Status::NotFound("session " + id + " not found");
  if (const std::string* last = req.headers.Find("last-event-id"); last && !last->empty()) {
    WARREN_ASSIGN_OR_RETURN(auto ev, store_->GetEvent(id, *last));
    if (!ev) return Invalid("Last-Event-ID", "'" + last->substr(0, 64) + "' is not an event of this session");
    // Paged: the stream reads the history a page at a time as the client
    // takes it, within the subscriber queue's bound.
    store::Store* store = store_;
    stream->StartReplay(ev->seq, [store, id](int64_t after, int limit) { return store->EventsAfter(id, after, limit); });
  }
  http::HandlerResult r;
  r.response.status = 200;
  r.stream = stream;
  return r;
}

}  // namespace warren::api
