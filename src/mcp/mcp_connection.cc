#include "mcp/mcp_connection.h"

#include <chrono>

#include "common/sse_parser.h"

namespace warren::mcp {
namespace {

constexpr const char* kProtocolVersion = "2025-06-18";

bool IsNotification(const Json& m, const char* method) {
  return m.is_object() && m.contains("method") && m["method"] == method;
}

bool HasId(const Json& m, int64_t id) {
  return m.is_object() && m.contains("id") && m["id"].is_number_integer() && m["id"].get<int64_t>() == id &&
         (m.contains("result") || m.contains("error"));
}

std::string ContentType(const HttpResponse& r) {
  std::string ct = r.Header("content-type").value_or("");
  for (char& c : ct) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ct;
}

Status HttpFailure(const std::string& what, const HttpResponse& r) {
  if (r.status == 401 || r.status == 403)
    return Status::Unauthenticated(what + ": the server refused the credentials (HTTP " + std::to_string(r.status) + ")");
  return Status::Unavailable(what + ": HTTP " + std::to_string(r.status));
}

}  // namespace

Result<Json> ResponseFromSse(std::string_view body, int64_t id, bool* list_changed) {
  std::optional<Json> found;
  SseParser parser([&](const SseEvent& ev) {
    if (ev.event != "message" || found) return;
    auto j = ParseJson(ev.data);
    if (!j.ok()) return;
    auto visit = [&](const Json& m) {
      if (IsNotification(m, "notifications/tools/list_changed")) *list_changed = true;
      if (!found && HasId(m, id)) found = m;
    };
    if (j->is_array()) {
      for (const Json& m : *j) visit(m);
    } else {
      visit(*j);
    }
  });
  parser.Feed(body);
  parser.Finish();
  if (!found) return Status::Internal("the event stream ended without the response to request " + std::to_string(id));
  return *found;
}

std::string ResolveEndpoint(const std::string& base_url, const std::string& endpoint) {
  if (endpoint.rfind("http://", 0) == 0 || endpoint.rfind("https://", 0) == 0) return endpoint;
  size_t scheme = base_url.find("://");
  size_t host_end = scheme == std::string::npos ? std::string::npos : base_url.find('/', scheme + 3);
  std::string origin = host_end == std::string::npos ? base_url : base_url.substr(0, host_end);
  if (!endpoint.empty() && endpoint[0] == '/') return origin + endpoint;
  // Relative path: against the base URL's directory.
  std::string dir = host_end == std::string::npos ? origin + "/" : base_url.substr(0, base_url.rfind('/') + 1);
  return dir + endpoint;
}

McpConnection::McpConnection(HttpClient* http, std::string url, BearerFn bearer, McpConnectionOptions options)
    : http_(http), url_(std::move(url)), bearer_(std::move(bearer)), options_(options) {}

McpConnection::~McpConnection() {
  stream_cancel_.Cancel();
  if (reader_.joinable()) reader_.join();
}

Result<HttpResponse> McpConnection::Post(const std::string& url, const std::string& body, int64_t timeout_ms,
                                         const CancelToken* cancel) {
  bool refreshed = false;
  for (;;) {
    std::string token;
    {
      std::lock_guard<std::mutex> lock(mu_);
      token = token_;
    }
    if (token.empty() && bearer_) {
      WARREN_ASSIGN_OR_RETURN(token, bearer_(false));
      std::lock_guard<std::mutex> lock(mu_);
      token_ = token;
    }
    HttpRequest req;
    req.method = "POST";
    req.url = url;
    req.body = body;
    req.connect_timeout_ms = options_.connect_timeout_ms;
    req.total_timeout_ms = timeout_ms;
    req.max_response_bytes = options_.max_response_bytes;
    req.proxy = "-";
    req.headers = {{"Content-Type", "application/json"}, {"Accept", "application/json, text/event-stream"}};
    if (!token.empty()) req.headers.push_back({"Authorization", "Bearer " + token});
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!session_id_.empty()) req.headers.push_back({"Mcp-Session-Id", session_id_});
      if (!protocol_version_.empty()) req.headers.push_back({"MCP-Protocol-Version", protocol_version_});
    }
    auto r = http_->Send(req, cancel);
    if (!r.ok()) return r.status().WithContext("MCP server " + url_);
    if (r->status == 401 && !refreshed && bearer_) {
      refreshed = true;
      auto fresh = bearer_(true);
      if (!fresh.ok()) return fresh.status();
      std::lock_guard<std::mutex> lock(mu_);
      token_ = *fresh;
      continue;
    }
    if (r->status == 401 || r->status == 403) return HttpFailure("MCP server " + url_, *r);
    return r;
  }
}

Result<Json> McpConnection::ResultOf(const Json& response) {
  if (response.contains("error")) {
    const Json& e = response["error"];
    std::string msg = e.is_object() && e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>()
                                                                                         : DumpJson(e);
    return Status::InvalidArgument("MCP error: " + msg);
  }
  if (!response.contains("result")) return Status::Internal("MCP response without result");
  return response["result"];
}

Result<Json> McpConnection::StreamableRequest(int64_t id, const std::string& body, int64_t timeout_ms,
                                              const CancelToken* cancel) {
  WARREN_ASSIGN_OR_RETURN(HttpResponse r, Post(url_, body, timeout_ms, cancel));
  if (r.status == 404) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!session_id_.empty()) return Status::Unavailable("MCP server " + url_ + ": session expired (HTTP 404)");
  }
  if (r.status < 200 || r.status >= 300) return HttpFailure("MCP server " + url_, r);
  if (auto sid = r.Header("mcp-session-id")) {
    std::lock_guard<std::mutex> lock(mu_);
    if (session_id_.empty()) session_id_ = *sid;
  }
  std::string ct = ContentType(r);
  if (ct.rfind("text/event-stream", 0) == 0) {
    bool changed = false;
    auto resp = ResponseFromSse(r.body, id, &changed);
    if (changed) tools_changed_ = true;
    WARREN_RETURN_IF_ERROR(resp.status().WithContext("MCP server " + url_));
    return ResultOf(*resp);
  }
  auto j = ParseJson(r.body);
  if (!j.ok()) return Status::Internal("MCP server " + url_ + ": the answer is not JSON");
  if (j->is_array()) {
    for (const Json& m : *j)
      if (HasId(m, id)) return ResultOf(m);
    return Status::Internal("MCP server " + url_ + ": no response to request " + std::to_string(id));
  }
  if (!HasId(*j, id)) return Status::Internal("MCP server " + url_ + ": no response to request " + std::to_string(id));
  return ResultOf(*j);
}

void McpConnection::OnLegacyMessage(const std::string& data) {
  auto j = ParseJson(data);
  if (!j.ok()) return;
  auto visit = [&](const Json& m) {
    if (IsNotification(m, "notifications/tools/list_changed")) tools_changed_ = true;
    if (m.is_object() && m.contains("id") && m["id"].is_number_integer() && (m.contains("result") || m.contains("error"))) {
      std::lock_guard<std::mutex> lock(mu_);
      // Only answers to requests this connection sent, and a bounded
      // number of them (a server cannot grow the map without end).
      int64_t id = m["id"].get<int64_t>();
      if (id > 0 && id < next_id_.load() && responses_.size() < 1024) responses_[id] = m;
    }
  };
  if (j->is_array()) {
    for (const Json& m : *j) visit(m);
  } else {
    visit(*j);
  }
  cv_.notify_all();
}

Status McpConnection::StartLegacyStream(const CancelToken* cancel) {
  std::string token;
  if (bearer_) {
    WARREN_ASSIGN_OR_RETURN(token, bearer_(false));
    std::lock_guard<std::mutex> lock(mu_);
    token_ = token;
  }
  auto head_status = std::make_shared<std::atomic<int>>(0);
  reader_ = std::thread([this, token, head_status] {
    HttpRequest req;
    req.method = "GET";
    req.url = url_;
    req.connect_timeout_ms = options_.connect_timeout_ms;
    req.proxy = "-";
    req.headers = {{"Accept", "text/event-stream"}};
    if (!token.empty()) req.headers.push_back({"Authorization", "Bearer " + token});
    SseParser parser([this](const SseEvent& ev) {
      if (ev.event == "endpoint") {
        std::lock_guard<std::mutex> lock(mu_);
        post_url_ = ResolveEndpoint(url_, ev.data);
        cv_.notify_all();
      } else if (ev.event == "message") {
        OnLegacyMessage(ev.data);
      }
    });
    StreamHandlers h;
    h.on_headers = [head_status](const HttpResponse& head) {
      head_status->store(head.status);
      return head.status >= 200 && head.status < 300;
    };
    h.on_data = [&parser](std::string_view chunk) { return parser.Feed(chunk); };
    auto r = http_->Stream(req, h, &stream_cancel_);
    std::lock_guard<std::mutex> lock(mu_);
    stream_ended_ = true;
    int st = head_status->load();
    if (st == 401 || st == 403) stream_error_ = "MCP server " + url_ + ": the server refused the credentials (HTTP " + std::to_string(st) + ")";
    else if (st != 0 && (st < 200 || st >= 300)) stream_error_ = "MCP server " + url_ + ": HTTP " + std::to_string(st);
    else stream_error_ = r.ok() ? "MCP server " + url_ + ": the event stream ended" : r.status().ToString();
    cv_.notify_all();
  });
  // Wait for the endpoint event.
  std::unique_lock<std::mutex> lock(mu_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.request_timeout_ms);
  while (post_url_.empty() && !stream_ended_) {
    if (cancel && cancel->cancelled()) return Status::Cancelled("cancelled");
    if (cv_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(50))) ==
            std::cv_status::timeout &&
        std::chrono::steady_clock::now() >= deadline)
      return Status::Timeout("MCP server " + url_ + ": no endpoint event on the SSE stream");
  }
  if (post_url_.empty()) {
    int st = head_status->load();
    if (st == 401 || st == 403) return Status::Unauthenticated(stream_error_);
    return Status::Unavailable(stream_error_);
  }
  return Status::Ok();
}

Result<Json> McpConnection::LegacyRequest(int64_t id, const std::string& body, int64_t timeout_ms,
                                          const CancelToken* cancel) {
  std::string post_url;
  {
    std::lock_guard<std::mutex> lock(mu_);
    post_url = post_url_;
  }
  WARREN_ASSIGN_OR_RETURN(HttpResponse r, Post(post_url, body, timeout_ms, cancel));
  if (r.status < 200 || r.status >= 300) return HttpFailure("MCP server " + url_, r);
  if (id < 0) return Json();  // a notification: no answer
  std::unique_lock<std::mutex> lock(mu_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (auto it = responses_.find(id); it != responses_.end()) {
      Json m = std::move(it->second);
      responses_.erase(it);
      lock.unlock();
      return ResultOf(m);
    }
    if (stream_ended_) return Status::Unavailable(stream_error_);
    if (cancel && cancel->cancelled()) return Status::Cancelled("cancelled");
    if (std::chrono::steady_clock::now() >= deadline)
      return Status::Timeout("MCP server " + url_ + ": no answer within " + std::to_string(timeout_ms) + " ms");
    cv_.wait_for(lock, std::chrono::milliseconds(50));
  }
}

Result<Json> McpConnection::Request(const std::string& method, const Json& params, int64_t timeout_ms,
                                    const CancelToken* cancel) {
  int64_t id = next_id_++;
  Json msg = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}};
  auto r = transport_ == McpTransport::kHttpSse ? LegacyRequest(id, DumpJson(msg), timeout_ms, cancel)
                                                 : StreamableRequest(id, DumpJson(msg), timeout_ms, cancel);
  if (!r.ok() && (r.status().code() == Code::kCancelled || r.status().code() == Code::kTimeout)) {
    // Tell the server to stop working on it (MCP cancellation; best effort,
    // bounded by its own short timeout, not by the fired token).
    Json note = {{"jsonrpc", "2.0"},
                 {"method", "notifications/cancelled"},
                 {"params", {{"requestId", id}, {"reason", r.status().code() == Code::kCancelled ? "cancelled by the client" : "timed out"}}}};
    const std::string target = transport_ == McpTransport::kHttpSse ? post_url_ : url_;
    (void)Post(target, DumpJson(note), 2000, nullptr);
  }
  return r;
}

Status McpConnection::Notify(const std::string& method, const CancelToken* cancel) {
  Json msg = {{"jsonrpc", "2.0"}, {"method", method}};
  if (transport_ == McpTransport::kHttpSse) return LegacyRequest(-1, DumpJson(msg), options_.request_timeout_ms, cancel).status();
  WARREN_ASSIGN_OR_RETURN(HttpResponse r, Post(url_, DumpJson(msg), options_.request_timeout_ms, cancel));
  if (r.status < 200 || r.status >= 300) return HttpFailure("MCP server " + url_, r);
  return Status::Ok();
}

Status McpConnection::Initialize(const CancelToken* cancel) {
  Json params = {{"protocolVersion", kProtocolVersion},
                 {"capabilities", Json::object()},
                 {"clientInfo", {{"name", "warren"}, {"version", "0.1"}}}};
  int64_t id = next_id_++;
  Json msg = {{"jsonrpc", "2.0"}, {"id", id}, {"method", "initialize"}, {"params", params}};
  transport_ = McpTransport::kStreamableHttp;
  auto r = Post(url_, DumpJson(msg), options_.request_timeout_ms, cancel);
  if (!r.ok()) return r.status();
  Json result;
  if (r->status == 400 || r->status == 404 || r->status == 405) {
    // Not a Streamable HTTP endpoint: the older HTTP+SSE transport.
    transport_ = McpTransport::kHttpSse;
    WARREN_RETURN_IF_ERROR(StartLegacyStream(cancel));
    id = next_id_++;
    msg["id"] = id;
    WARREN_ASSIGN_OR_RETURN(result, LegacyRequest(id, DumpJson(msg), options_.request_timeout_ms, cancel));
  } else {
    if (r->status < 200 || r->status >= 300) return HttpFailure("MCP server " + url_, *r);
    if (auto sid = r->Header("mcp-session-id")) {
      std::lock_guard<std::mutex> lock(mu_);
      session_id_ = *sid;
    }
    Json resp;
    if (ContentType(*r).rfind("text/event-stream", 0) == 0) {
      bool changed = false;
      WARREN_ASSIGN_OR_RETURN(resp, ResponseFromSse(r->body, id, &changed));
    } else {
      auto j = ParseJson(r->body);
      if (!j.ok() || !HasId(*j, id)) return Status::Internal("MCP server " + url_ + ": bad initialize answer");
      resp = *j;
    }
    WARREN_ASSIGN_OR_RETURN(result, ResultOf(resp));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    protocol_version_ = result.is_object() && result.contains("protocolVersion") && result["protocolVersion"].is_string()
                            ? result["protocolVersion"].get<std::string>()
                            : kProtocolVersion;
    if (transport_ == McpTransport::kHttpSse) protocol_version_.clear();  // the old transport has no such header
  }
  return Notify("notifications/initialized", cancel);
}

Result<std::vector<Json>> McpConnection::ListTools(const CancelToken* cancel) {
  std::vector<Json> tools;
  Json params = Json::object();
  for (int page = 0; page < 50; page++) {
    WARREN_ASSIGN_OR_RETURN(Json r, Request("tools/list", params, options_.request_timeout_ms, cancel));
    if (r.is_object() && r.contains("tools") && r["tools"].is_array())
      for (const Json& t : r["tools"])
        if (t.is_object() && t.contains("name") && t["name"].is_string()) tools.push_back(t);
    if (!r.is_object() || !r.contains("nextCursor") || !r["nextCursor"].is_string()) break;
    params = {{"cursor", r["nextCursor"]}};
  }
  return tools;
}

Result<Json> McpConnection::CallTool(const std::string& name, const Json& arguments, const CancelToken* cancel) {
  Json args = arguments.is_object() ? arguments : Json::object();
  return Request("tools/call", {{"name", name}, {"arguments", args}}, options_.call_timeout_ms, cancel);
}

}  // namespace warren::mcp
