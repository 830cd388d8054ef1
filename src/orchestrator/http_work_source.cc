#include "orchestrator/http_work_source.h"

#include <algorithm>

#include "common/ids.h"
#include "common/log.h"

namespace warren::orchestrator {

Status StatusForHttp(int status, const std::string& body) {
  if (status >= 200 && status < 300) return Status::Ok();
  std::string msg = "HTTP " + std::to_string(status);
  std::string detail;
  auto j = ParseJson(body);
  if (j.ok() && j->is_object() && j->contains("error") && (*j)["error"].is_object()) {
    const Json& e = (*j)["error"];
    if (e.contains("message") && e["message"].is_string()) msg += ": " + e["message"].get<std::string>();
    if (e.contains("details") && e["details"].is_object() && e["details"].contains("error_code") &&
        e["details"]["error_code"].is_string())
      detail = e["details"]["error_code"].get<std::string>();
  }
  auto status_of = [&]() -> Status {
    switch (status) {
      case 400: return Status::InvalidArgument(msg);
      case 401: return Status::Unauthenticated(msg);
      case 403: return Status::PermissionDenied(msg);
      case 404: return Status::NotFound(msg);
      case 409: return Status::Conflict(msg);
      case 412: return Status::FailedPrecondition(msg);
      case 413: return Status::TooLarge(msg);
      case 429: return Status::ResourceExhausted(msg);
      case 408: return Status::Unavailable(msg);
      default: break;
    }
    if (status >= 400 && status < 500) return Status::InvalidArgument(msg);
    return Status::Unavailable(msg);
  };
  Status s = status_of();
  return detail.empty() ? s : s.WithDetailCode(detail);
}

std::string SessionsTokenOf(const std::string& secret) {
  std::string norm = secret;
  for (auto& c : norm) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  while (!norm.empty() && norm.back() == '=') norm.pop_back();
  std::string decoded;
  if (norm.empty() || !Base64UrlDecode(norm, &decoded)) return "";
  auto j = ParseJson(decoded);
  if (!j.ok() || !j->is_object() || !j->contains("sessions_token") || !(*j)["sessions_token"].is_string()) return "";
  return (*j)["sessions_token"].get<std::string>();
}

HttpWorkSource::HttpWorkSource(HttpWorkSourceOptions options) : options_(std::move(options)) {
  while (!options_.base_url.empty() && options_.base_url.back() == '/') options_.base_url.pop_back();
  if (!options_.client) options_.client = NewCurlHttpClient();
}

Result<Json> HttpWorkSource::Call(const std::string& method, const std::string& path, const std::string& body,
                                  int64_t timeout_ms, const std::string& bearer, bool identify) {
  HttpRequest req;
  req.method = method;
  req.url = options_.base_url + path;
  req.headers = {{"authorization", "Bearer " + (bearer.empty() ? options_.environment_key : bearer)},
                 {"anthropic-version", "2023-06-01"},
                 {"anthropic-beta", "managed-agents-2026-04-01"},
                 {"anthropic-worker-id", options_.worker_id},
                 {"x-stainless-helper", "warren-orchestrator"}};
  if (identify && !options_.orchestrator_id.empty()) {
    req.headers.push_back({"warren-orchestrator-id", options_.orchestrator_id});
    if (!options_.orchestrator_host.empty()) req.headers.push_back({"warren-orchestrator-host", options_.orchestrator_host});
  }
  if (!body.empty()) {
    req.headers.push_back({"content-type", "application/json"});
    req.body = body;
  }
  req.total_timeout_ms = timeout_ms;
  WARREN_ASSIGN_OR_RETURN(HttpResponse resp, options_.client->Send(req, &cancel_));
  WARREN_RETURN_IF_ERROR(StatusForHttp(resp.status, resp.body));
  if (resp.body.empty()) return Json(nullptr);
  return ParseJson(resp.body);
}

Result<std::optional<WorkItem>> HttpWorkSource::Poll(int block_ms, int64_t reclaim_older_than_ms) {
  if (cancel_.cancelled()) return std::optional<WorkItem>();
  std::string path = "/v1/environments/" + options_.environment_id + "/work/poll?reclaim_older_than_ms=" +
                     std::to_string(reclaim_older_than_ms);
  if (block_ms > 0) path += "&block_ms=" + std::to_string(std::min(block_ms, 999));
  auto j = Call("GET", path, "", block_ms + 30000, "", /*identify=*/true);
  if (!j.ok()) {
    if (cancel_.cancelled()) return std::optional<WorkItem>();
    return j.status();
  }
  if (!accepted_.exchange(true))
    log::Info("orchestrator.environment_accepted",
              {{"environment_id", options_.environment_id}, {"orchestrator_id", options_.orchestrator_id}});
  if (j->is_null()) return std::optional<WorkItem>();
  WARREN_ASSIGN_OR_RETURN(WorkItem w, ParseWorkItem(*j));
  if (w.environment_id.empty()) w.environment_id = options_.environment_id;
  return std::optional<WorkItem>(std::move(w));
}

Status HttpWorkSource::Ack(const WorkItem& item) {
  // Remembered before the ack is sent (a kill while its answer travels
  // back would otherwise leave an acked item nobody knows), confirmed once
  // answered, so that a restart resumes it at once. Failing that, the item
  // is still served; only a restart would wait for its lease.
  auto record = [&](bool acked) {
    if (options_.held == nullptr) return;
    Status s = options_.held->Put(item, acked);
    if (!s.ok()) log::Warn("orchestrator.held_item_unrecorded", {{"work_id", item.id}, {"error", s.ToString()}});
  };
  record(false);
  Status s =
      Call("POST", "/v1/environments/" + options_.environment_id + "/work/" + item.id + "/ack", "{}", 30000).status();
  if (!s.ok()) {
    // Refused: not ours. A transient failure keeps the record until the
    // orchestrator retries or releases the item.
    if (IsPermanent(s)) Forget(item, item.secret, nullptr);
    return s;
  }
  record(true);
  return Status::Ok();
}

Status HttpWorkSource::Stop(const WorkItem& item, bool force) {
  auto r = Call("POST", "/v1/environments/" + options_.environment_id + "/work/" + item.id + "/stop",
                DumpJson(Json{{"force", force}}), 30000);
  Status s = r.status();
  if (!r.ok() && r.status().code() == Code::kConflict) s = Status::Ok();
  // Stopped (or gone): no delivery of it is held any more.
  if (s.ok() || s.code() == Code::kNotFound) Forget(item, "", nullptr);
  return s;
}

void HttpWorkSource::Release(const WorkItem& item) {
  // Without the delivery's secret (a runner adopted whose environment could
  // not be read) the record cannot be told from a newer delivery's: it stays
  // until the next start checks it.
  if (!item.secret.empty()) Forget(item, item.secret, nullptr);
}

void HttpWorkSource::Forget(const WorkItem& item, const std::string& secret, const char* why) {
  if (options_.held == nullptr) return;
  Status s = options_.held->Remove(item.id, secret);
  if (!s.ok()) log::Warn("orchestrator.held_item_unforgotten", {{"work_id", item.id}, {"error", s.ToString()}});
  else if (why != nullptr)
    log::Info("orchestrator.held_item_dropped", {{"work_id", item.id}, {"session_id", item.session_id}, {"reason", why}});
}

Result<std::vector<WorkItem>> HttpWorkSource::HeldItems() {
  std::vector<WorkItem> out;
  if (options_.held == nullptr) return out;
  WARREN_ASSIGN_OR_RETURN(std::vector<HeldItemStore::Held> stored, options_.held->List());
  bool unreachable = false;  // after one transport failure the rest go unchecked
  for (HeldItemStore::Held& h : stored) {
    WorkItem& w = h.item;
    if (w.environment_id != options_.environment_id) continue;  // another environment's data dir use: left alone
    const std::string token = SessionsTokenOf(w.secret);
    if (token.empty()) {
      Forget(w, "", "no sessions token in its secret: cannot be checked or resumed");
      continue;
    }
    if (unreachable || cancel_.cancelled()) {
      if (!h.acked) {
        // Whether its ack was ever sent is unknown: an unchecked resume
        // could take over another worker's lease. Its delivery is reclaimed
        // by the queue (never acked) or lapses (acked).
        Forget(w, "", "ack unconfirmed and the service unreachable: left to the queue");
        continue;
      }
      out.push_back(std::move(w));
      continue;
    }
    auto r = Call("POST", "/v1/environments/" + options_.environment_id + "/work/" + w.id + "/ack", "{}",
                  options_.check_timeout_ms, token);
    std::string verdict;
    if (r.ok()) {
      const std::string state = r->is_object() ? r->value("state", "") : "";
      if (state == "stopped") {
        Forget(w, "", "stopped");
        continue;
      }
      if (state == "stopping") {
        // A stop was asked while nobody served it: finish it, so that the
        // session can get a new item.
        Status st = Stop(w, true);
        if (!st.ok()) log::Warn("orchestrator.stop_failed", {{"work_id", w.id}, {"error", st.ToString()}});
        Forget(w, "", "stopping: force-stopped");
        continue;
      }
      if (!h.acked) {
        // The process died around the ack (this check may itself have
        // acked it). A runner of ours was never launched for it: if someone
        // beat its lease already, that is another worker's runner.
        const bool beaten = r->is_object() && r->contains("latest_heartbeat_at") && !(*r)["latest_heartbeat_at"].is_null();
        if (beaten) {
          Forget(w, "", "ack unconfirmed and the lease is beaten by another runner");
          continue;
        }
        w.fresh_lease = true;
        if (options_.held != nullptr) (void)options_.held->Put(w, true);
      }
      verdict = std::string(h.acked ? "held (" : "held, ack confirmed now (") + state + ")";
    } else if (IsPermanent(r.status())) {
      // 401: the token was revoked (the lease lapsed or the item stopped);
      // 404: gone; 409: stopped.
      Forget(w, "", ("lease lost: " + r.status().ToString()).c_str());
      continue;
    } else {
      unreachable = true;
      verdict = "unchecked: " + r.status().ToString();
    }
    log::Info("orchestrator.held_item_checked", {{"work_id", w.id}, {"session_id", w.session_id}, {"verdict", verdict}});
    out.push_back(std::move(w));
  }
  return out;
}

Result<Json> HttpWorkSource::GetSession(const std::string& /*environment_id*/, const std::string& session_id) {
  return Call("GET", "/v1/sessions/" + session_id, "", 30000);
}

Status HttpWorkSource::FailItem(const WorkItem& item, const std::string& message) {
  // A client cannot post session.error: the pending built-in calls are
  // answered with an error that carries the message (the model and the
  // user see it), which also keeps them from being delivered again.
  std::vector<Json> events;
  std::string page;
  for (int pages = 0; pages < 100; ++pages) {
    std::string path = "/v1/sessions/" + item.session_id + "/events?limit=1000";
    if (!page.empty()) path += "&page=" + page;
    WARREN_ASSIGN_OR_RETURN(Json j, Call("GET", path, "", 30000));
    if (!j.is_object() || !j.contains("data") || !j["data"].is_array()) break;
    for (const Json& e : j["data"]) events.push_back(e);
    if (!j.contains("next_page") || !j["next_page"].is_string() || j["next_page"].get<std::string>().empty()) break;
    page = j["next_page"].get<std::string>();
  }
  Json out = Json::array();
  for (const std::string& id : UnansweredToolUses(events)) out.push_back(FailedToolResult(id, message));
  if (out.empty()) return Status::Ok();
  Json body = Json::object();
  body["events"] = out;
  return Call("POST", "/v1/sessions/" + item.session_id + "/events", DumpJson(body), 30000).status();
}

void HttpWorkSource::Interrupt() { cancel_.Cancel(); }

}  // namespace warren::orchestrator
