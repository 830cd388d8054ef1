#include "runner/api_client.h"

namespace warren::runner {

std::string ApiResult::Describe() const {
  if (!transport.ok()) return transport.ToString();
  std::string msg = "HTTP " + std::to_string(status);
  if (body.is_object() && body.contains("error") && body["error"].is_object() &&
      body["error"].contains("message") && body["error"]["message"].is_string()) {
    msg += ": " + body["error"]["message"].get<std::string>();
  }
  return msg;
}

std::vector<std::pair<std::string, std::string>> ApiClient::Headers() const {
  std::vector<std::pair<std::string, std::string>> h = {
      {"anthropic-version", "2023-06-01"},
      {"anthropic-beta", "managed-agents-2026-04-01"},
      {"accept", "application/json"},
  };
  if (!token_.empty()) h.emplace_back("authorization", "Bearer " + token_);
  if (!helper_.empty()) h.emplace_back("x-stainless-helper", helper_);
  return h;
}

ApiResult ApiClient::Call(const std::string& method, const std::string& target, const Json& body,
                          std::chrono::milliseconds timeout, const StopFn& stop,
                          const std::vector<std::pair<std::string, std::string>>& extra) const {
  HttpRequest req;
  req.method = method;
  req.target = target;
  req.headers = Headers();
  for (const auto& h : extra) req.headers.push_back(h);
  if (!body.is_null()) {
    req.body = DumpJson(body);
    req.headers.emplace_back("content-type", "application/json");
  }
  ApiResult out;
  auto resp = http_.Do(req, timeout, stop);
  if (!resp.ok()) {
    out.transport = resp.status();
    return out;
  }
  out.status = resp->status;
  if (!resp->body.empty()) {
    auto parsed = ParseJson(resp->body);
    if (parsed.ok()) out.body = std::move(parsed).value();
  }
  return out;
}

ApiResult ApiClient::Poll(const std::string& env, int block_ms, const std::string& worker_id,
                          std::optional<int> reclaim, const StopFn& stop) const {
  std::string target = "/v1/environments/" + UrlEncode(env) + "/work/poll";
  std::string q;
  if (block_ms > 0) q += "block_ms=" + std::to_string(block_ms);
  if (reclaim.has_value()) q += (q.empty() ? "" : "&") + std::string("reclaim_older_than_ms=") + std::to_string(*reclaim);
  if (!q.empty()) target += "?" + q;
  return Call("GET", target, nullptr, std::chrono::milliseconds(block_ms + 30000), stop,
              {{"anthropic-worker-id", worker_id}});
}

ApiResult ApiClient::Ack(const std::string& env, const std::string& work_id) const {
  return Call("POST", "/v1/environments/" + UrlEncode(env) + "/work/" + UrlEncode(work_id) + "/ack",
              nullptr, std::chrono::seconds(30));
}

ApiResult ApiClient::Heartbeat(const std::string& env, const std::string& work_id,
                               const std::string& expected, std::chrono::milliseconds timeout,
                               const StopFn& stop) const {
  return Call("POST",
              "/v1/environments/" + UrlEncode(env) + "/work/" + UrlEncode(work_id) +
                  "/heartbeat?expected_last_heartbeat=" + UrlEncode(expected),
              nullptr, timeout, stop);
}

ApiResult ApiClient::StopWork(const std::string& env, const std::string& work_id, bool force) const {
  return Call("POST", "/v1/environments/" + UrlEncode(env) + "/work/" + UrlEncode(work_id) + "/stop",
              Json{{"force", force}}, std::chrono::seconds(30));
}

ApiResult ApiClient::GetSession(const std::string& sid, const StopFn& stop) const {
  return Call("GET", "/v1/sessions/" + UrlEncode(sid), nullptr, std::chrono::seconds(60), stop);
}

ApiResult ApiClient::ListEvents(const std::string& sid, const std::string& page,
                                const StopFn& stop) const {
  std::string target = "/v1/sessions/" + UrlEncode(sid) + "/events?limit=1000";
  if (!page.empty()) target += "&page=" + UrlEncode(page);
  return Call("GET", target, nullptr, std::chrono::seconds(60), stop);
}

ApiResult ApiClient::SendEvents(const std::string& sid, const Json& events,
                                std::chrono::milliseconds timeout, const StopFn& stop) const {
  return Call("POST", "/v1/sessions/" + UrlEncode(sid) + "/events", Json{{"events", events}}, timeout,
              stop);
}

ApiResult ApiClient::StreamEvents(const std::string& sid, const std::function<void()>& on_open,
                                  const std::function<bool(const SseEvent&)>& on_event,
                                  std::chrono::milliseconds idle_timeout, const StopFn& stop) const {
  HttpRequest req;
  req.method = "GET";
  req.target = "/v1/sessions/" + UrlEncode(sid) + "/events/stream";
  req.headers = Headers();
  for (auto& h : req.headers) {
    if (h.first == "accept") h.second = "text/event-stream";
  }
  ApiResult out;
  std::string error_body;
  bool keep_going = true;
  SseParser parser([&](const SseEvent& ev) {
    if (keep_going && !on_event(ev)) keep_going = false;
  });
  Status st = http_.Stream(
      req,
      [&](const HttpResponse& head) {
        out.status = head.status;
        if (head.status != 200) return true;  // read the error body
        on_open();
        return true;
      },
      [&](std::string_view data) {
        if (out.status != 200) {
          error_body.append(data);
          return error_body.size() < (1 << 20);
        }
        if (!parser.Feed(data)) return false;
        return keep_going;
      },
      std::chrono::seconds(30), idle_timeout, stop);
  if (!st.ok()) out.transport = st;
  if (out.status != 0 && out.status != 200 && !error_body.empty()) {
    auto parsed = ParseJson(error_body);
    if (parsed.ok()) out.body = std::move(parsed).value();
  }
  return out;
}

}  // namespace warren::runner
