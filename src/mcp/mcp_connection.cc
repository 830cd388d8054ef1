#include "mcp/mcp_connection.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "common/log.h"
#include "common/sse_parser.h"
#include "domain/vault_secrets.h"

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

Status HttpFailure(const std::string& what, int status) {
  if (status == 401 || status == 403)
    return Status::Unauthenticated(what + ": the server refused the credentials (HTTP " + std::to_string(status) + ")");
  return Status::Unavailable(what + ": HTTP " + std::to_string(status));
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
  StopStandalone();
  stream_cancel_.Cancel();
  if (reader_.joinable()) reader_.join();
}

namespace {

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Milliseconds left before `deadline_us` (at least 1; 0 = no deadline).
int64_t LeftMs(int64_t deadline_us) {
  if (deadline_us == 0) return 0;
  return std::max<int64_t>(1, (deadline_us - NowUs()) / 1000);
}

// Sleeps `ms`, waking early when `cancel` fires. False when cancelled.
bool SleepUnlessCancelled(int64_t ms, const CancelToken* cancel) {
  const int64_t until = NowUs() + ms * 1000;
  while (NowUs() < until) {
    if (cancel && cancel->cancelled()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(10, std::max<int64_t>(1, (until - NowUs()) / 1000))));
  }
  return !(cancel && cancel->cancelled());
}

}  // namespace

void McpConnection::OnToolsChanged(const char* where) {
  tools_changed_ = true;
  log::Info("mcp.tools_list_changed", {{"connection", options_.label}, {"server", url_}, {"stream", where}});
}

Result<McpConnection::Exchange> McpConnection::Send(const std::string& method, const std::string& url,
                                                    const std::string& body, int64_t id, const HttpHeaders& extra,
                                                    bool with_session, int64_t timeout_ms, const CancelToken* cancel) {
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
      SetTokenLocked(token);
    }
    HttpRequest req;
    req.method = method;
    req.url = url;
    req.body = body;
    req.connect_timeout_ms = options_.connect_timeout_ms;
    req.total_timeout_ms = timeout_ms;
    req.proxy = "-";
    if (method == "POST")
      req.headers = {{"Content-Type", "application/json"}, {"Accept", "application/json, text/event-stream"}};
    else
      req.headers = {{"Accept", "text/event-stream"}};
    if (!token.empty()) req.headers.push_back({"Authorization", "Bearer " + token});
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (with_session && !session_id_.empty()) req.headers.push_back({"Mcp-Session-Id", session_id_});
      if (with_session && !protocol_version_.empty()) req.headers.push_back({"MCP-Protocol-Version", protocol_version_});
    }
    for (const auto& h : extra) req.headers.push_back(h);

    Exchange x;
    size_t stream_bytes = 0;
    bool too_large = false;
    SseParser parser(
        [&](const SseEvent& ev) {
          x.events++;
          if (!ev.id.empty()) x.last_event_id = ev.id;  // sticky: the id to resume from
          if (ev.retry_ms) x.retry_ms = ev.retry_ms;
          if (ev.event != "message" || x.response) return;
          auto j = ParseJson(ev.data);
          if (!j.ok()) return;  // a priming event (empty data) or junk
          auto visit = [&](const Json& m) {
            if (IsNotification(m, "notifications/tools/list_changed")) OnToolsChanged(id < 0 ? "standalone" : "answer");
            if (id >= 0 && !x.response && HasId(m, id)) x.response = m;
          };
          if (j->is_array()) {
            for (const Json& m : *j) visit(m);
          } else {
            visit(*j);
          }
        },
        options_.max_response_bytes);
    StreamHandlers h;
    h.on_headers = [&](const HttpResponse& head) {
      x.status = head.status;
      x.session_id = head.Header("mcp-session-id").value_or("");
      x.event_stream = head.status >= 200 && head.status < 300 && ContentType(head).rfind("text/event-stream", 0) == 0;
      return true;
    };
    h.on_data = [&](std::string_view chunk) {
      stream_bytes += chunk.size();
      if (stream_bytes > options_.max_response_bytes) {
        too_large = true;
        return false;
      }
      if (!x.event_stream) {
        x.body.append(chunk);
        return true;
      }
      return parser.Feed(chunk) && !x.response;  // the answer is in: no need to read on
    };
    auto r = http_->Stream(req, h, cancel);
    if (cancel && cancel->cancelled() && !x.response) return Status::Cancelled("cancelled");
    if (too_large) {
      x.transport = Status::TooLarge("MCP server " + url_ + ": the answer is larger than " +
                                     std::to_string(options_.max_response_bytes) + " bytes");
    } else if (!r.ok() && !x.response) {
      x.transport = r.status().WithContext("MCP server " + url_);
    }
    if (x.status == 401 && !refreshed && bearer_) {
      refreshed = true;
      auto fresh = bearer_(true);
      if (!fresh.ok()) return fresh.status();
      std::lock_guard<std::mutex> lock(mu_);
      SetTokenLocked(*fresh);
      continue;
    }
    if (x.status == 401 || x.status == 403)
      return Status::Unauthenticated("MCP server " + url_ + ": the server refused the credentials (HTTP " +
                                     std::to_string(x.status) + ")");
    return x;
  }
}

Result<McpConnection::Exchange> McpConnection::Post(const std::string& url, const std::string& body, int64_t timeout_ms,
                                                    const CancelToken* cancel) {
  WARREN_ASSIGN_OR_RETURN(Exchange x, Send("POST", url, body, -1, {}, true, timeout_ms, cancel));
  if (x.status == 0) return x.transport.ok() ? Status::Unavailable("MCP server " + url_ + ": no answer") : x.transport;
  return x;
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
  const int64_t deadline = NowUs() + timeout_ms * 1000;
  for (int attempt = 0;; attempt++) {
    std::string sid_used;
    {
      std::lock_guard<std::mutex> lock(mu_);
      sid_used = session_id_;
    }
    WARREN_ASSIGN_OR_RETURN(Exchange x, Send("POST", url_, body, id, {}, true, LeftMs(deadline), cancel));
    if (x.status == 404 && !sid_used.empty()) {
      if (attempt > 0) return Status::Unavailable("MCP server " + url_ + ": session expired (HTTP 404) again after re-initialising");
      // The server forgot the session (a restart, an expiry): MCP says to
      // start a new one with initialize; then this request once more.
      WARREN_RETURN_IF_ERROR(Reinitialize(sid_used, cancel));
      continue;
    }
    return AnswerOf(std::move(x), id, deadline, cancel);
  }
}

Result<Json> McpConnection::AnswerOf(Exchange x, int64_t id, int64_t deadline_us, const CancelToken* cancel) {
  if (x.response) return ResultOf(*x.response);
  if (x.status == 0) return x.transport.ok() ? Status::Unavailable("MCP server " + url_ + ": no answer") : x.transport;
  if (x.status < 200 || x.status >= 300)
    return Status::Unavailable("MCP server " + url_ + ": HTTP " + std::to_string(x.status));
  if (!x.event_stream) {
    if (!x.transport.ok()) return x.transport;
    auto j = ParseJson(x.body);
    if (!j.ok()) return Status::Internal("MCP server " + url_ + ": the answer is not JSON");
    if (j->is_array()) {
      for (const Json& m : *j)
        if (HasId(m, id)) return ResultOf(m);
      return Status::Internal("MCP server " + url_ + ": no response to request " + std::to_string(id));
    }
    if (!HasId(*j, id)) return Status::Internal("MCP server " + url_ + ": no response to request " + std::to_string(id));
    return ResultOf(*j);
  }
  // An event stream that ended (or broke) before the response.
  if (x.transport.code() == Code::kTimeout || x.transport.code() == Code::kTooLarge) return x.transport;
  if (x.last_event_id.empty())
    return Status::Unavailable("MCP server " + url_ + ": the event stream ended before the response to request " +
                               std::to_string(id) + (x.transport.ok() ? "" : " (" + x.transport.message() + ")") +
                               ", with no event id to resume from");
  return Resume(id, x.last_event_id, x.retry_ms, deadline_us, cancel);
}

Result<Json> McpConnection::Resume(int64_t id, std::string last_event_id, std::optional<long> retry_ms,
                                   int64_t deadline_us, const CancelToken* cancel) {
  std::string why;
  for (int attempt = 0; attempt < std::max(1, options_.max_resume_attempts); attempt++) {
    if (attempt > 0) {
      // The server's `retry:` when it gave one (at most 5 s), else a short
      // growing pause.
      int64_t pause = retry_ms ? std::clamp<int64_t>(*retry_ms, 0, 5000) : std::min<int64_t>(2000, 50ll << attempt);
      if (!SleepUnlessCancelled(pause, cancel)) return Status::Cancelled("cancelled");
    }
    if (deadline_us != 0 && NowUs() >= deadline_us)
      return Status::Timeout("MCP server " + url_ + ": no answer to request " + std::to_string(id) + " in time");
    WARREN_ASSIGN_OR_RETURN(Exchange g, Send("GET", url_, "", id, {{"Last-Event-ID", last_event_id}}, true,
                                             LeftMs(deadline_us), cancel));
    if (g.response) {
      resumptions_++;
      log::Info("mcp.stream_resumed", {{"connection", options_.label}, {"server", url_}, {"attempt", attempt + 1}});
      return ResultOf(*g.response);
    }
    if (g.transport.code() == Code::kTimeout) return g.transport;
    if (g.status == 400 || g.status == 404 || g.status == 405)
      return Status::Unavailable("MCP server " + url_ + ": the answer stream of request " + std::to_string(id) +
                                 " broke and the server cannot resume it (HTTP " + std::to_string(g.status) + ")");
    if (!g.last_event_id.empty()) last_event_id = g.last_event_id;
    if (g.retry_ms) retry_ms = g.retry_ms;
    why = g.status == 0 ? g.transport.message() : "HTTP " + std::to_string(g.status);
  }
  return Status::Unavailable("MCP server " + url_ + ": the answer stream of request " + std::to_string(id) +
                             " broke and was not resumed after " + std::to_string(options_.max_resume_attempts) +
                             " attempts (" + why + ")");
}

void McpConnection::StartStandalone() {
  if (!options_.standalone_stream) return;
  std::lock_guard<std::mutex> lock(standalone_mu_);
  if (standalone_.joinable()) return;
  standalone_stop_ = std::make_unique<CancelToken>();
  CancelToken* stop = standalone_stop_.get();
  standalone_ = std::thread([this, stop] { StandaloneLoop(stop); });
}

void McpConnection::StopStandalone() {
  std::lock_guard<std::mutex> lock(standalone_mu_);
  if (standalone_stop_) standalone_stop_->Cancel();
  if (standalone_.joinable()) standalone_.join();
  standalone_stop_.reset();
}

void McpConnection::StandaloneLoop(CancelToken* stop) {
  std::string last_event_id;
  int idle_rounds = 0;  // reconnects in a row that brought no event
  while (!stop->cancelled()) {
    HttpHeaders extra;
    if (!last_event_id.empty()) extra.push_back({"Last-Event-ID", last_event_id});
    auto x = Send("GET", url_, "", -1, extra, true, 0, stop);
    if (!x.ok()) {
      if (x.status().code() != Code::kCancelled)
        log::Warn("mcp.standalone_stream_ended", {{"connection", options_.label}, {"server", url_}, {"error", x.status().ToString()}});
      return;
    }
    if (x->status == 405) {
      log::Info("mcp.standalone_stream_unsupported", {{"connection", options_.label}, {"server", url_}});
      return;
    }
    if (x->status == 404) return;  // the session is gone; the next request re-initialises
    if (!x->last_event_id.empty()) last_event_id = x->last_event_id;
    idle_rounds = x->events > 0 ? 0 : idle_rounds + 1;
    if (idle_rounds >= std::max(1, options_.max_resume_attempts)) {
      log::Warn("mcp.standalone_stream_ended",
                {{"connection", options_.label},
                 {"server", url_},
                 {"error", x->status == 0 ? x->transport.ToString() : "HTTP " + std::to_string(x->status)}});
      return;
    }
    int64_t pause = x->retry_ms ? std::clamp<int64_t>(*x->retry_ms, 0, 5000) : std::min<int64_t>(2000, 50ll << idle_rounds);
    if (!SleepUnlessCancelled(pause, stop)) return;
  }
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
    SetTokenLocked(token);
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
  WARREN_ASSIGN_OR_RETURN(Exchange r, Post(post_url, body, timeout_ms, cancel));
  if (r.status < 200 || r.status >= 300) return HttpFailure("MCP server " + url_, r.status);
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
  WARREN_ASSIGN_OR_RETURN(Exchange r, Post(url_, DumpJson(msg), options_.request_timeout_ms, cancel));
  if (r.status < 200 || r.status >= 300) return HttpFailure("MCP server " + url_, r.status);
  return Status::Ok();
}

Result<McpConnection::Exchange> McpConnection::PostInitialize(int64_t id, const CancelToken* cancel) {
  Json params = {{"protocolVersion", kProtocolVersion},
                 {"capabilities", Json::object()},
                 {"clientInfo", {{"name", "warren"}, {"version", "0.1"}}}};
  Json msg = {{"jsonrpc", "2.0"}, {"id", id}, {"method", "initialize"}, {"params", params}};
  // A new session: no Mcp-Session-Id (nor a protocol version) is sent.
  WARREN_ASSIGN_OR_RETURN(Exchange x, Send("POST", url_, DumpJson(msg), id, {}, false, options_.request_timeout_ms, cancel));
  if (x.status == 0) return x.transport.ok() ? Status::Unavailable("MCP server " + url_ + ": no answer") : x.transport;
  return x;
}

Status McpConnection::FinishInitialize(const Exchange& x, int64_t id, const CancelToken* cancel) {
  if (x.status < 200 || x.status >= 300) return HttpFailure("MCP server " + url_, x.status);
  Json resp;
  if (x.response) {
    resp = *x.response;
  } else if (x.event_stream) {
    return Status::Internal("MCP server " + url_ + ": the initialize stream ended without the answer" +
                            (x.transport.ok() ? "" : " (" + x.transport.message() + ")"));
  } else {
    if (!x.transport.ok()) return x.transport;
    auto j = ParseJson(x.body);
    if (!j.ok() || !HasId(*j, id)) return Status::Internal("MCP server " + url_ + ": bad initialize answer");
    resp = *j;
  }
  WARREN_ASSIGN_OR_RETURN(Json result, ResultOf(resp));
  {
    std::lock_guard<std::mutex> lock(mu_);
    session_id_ = x.session_id;
    protocol_version_ = result.is_object() && result.contains("protocolVersion") && result["protocolVersion"].is_string()
                            ? result["protocolVersion"].get<std::string>()
                            : kProtocolVersion;
  }
  WARREN_RETURN_IF_ERROR(Notify("notifications/initialized", cancel));
  StartStandalone();
  return Status::Ok();
}

Status McpConnection::Initialize(const CancelToken* cancel) {
  int64_t id = next_id_++;
  transport_ = McpTransport::kStreamableHttp;
  WARREN_ASSIGN_OR_RETURN(Exchange x, PostInitialize(id, cancel));
  if (x.status == 400 || x.status == 404 || x.status == 405) {
    // Not a Streamable HTTP endpoint: the older HTTP+SSE transport.
    transport_ = McpTransport::kHttpSse;
    WARREN_RETURN_IF_ERROR(StartLegacyStream(cancel));
    id = next_id_++;
    Json msg = {{"jsonrpc", "2.0"},
                {"id", id},
                {"method", "initialize"},
                {"params",
                 {{"protocolVersion", kProtocolVersion},
                  {"capabilities", Json::object()},
                  {"clientInfo", {{"name", "warren"}, {"version", "0.1"}}}}}};
    WARREN_ASSIGN_OR_RETURN(Json result, LegacyRequest(id, DumpJson(msg), options_.request_timeout_ms, cancel));
    (void)result;
    // The old transport has no protocol-version header.
    return Notify("notifications/initialized", cancel);
  }
  return FinishInitialize(x, id, cancel);
}

Status McpConnection::Reinitialize(const std::string& stale, const CancelToken* cancel) {
  std::lock_guard<std::mutex> guard(reinit_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (session_id_ != stale) return Status::Ok();  // another request already did it
  }
  // The old session's standalone stream is over (its GET gets 404 too).
  StopStandalone();
  int64_t id = next_id_++;
  WARREN_ASSIGN_OR_RETURN(Exchange x, PostInitialize(id, cancel));
  Status st = FinishInitialize(x, id, cancel);
  if (!st.ok()) return st.WithContext("re-initialising after the server forgot its session");
  reinitializations_++;
  // A new session may offer other tools: list them again.
  tools_changed_ = true;
  log::Info("mcp.reinitialized", {{"connection", options_.label}, {"server", url_}});
  return Status::Ok();
}

void McpConnection::SetTokenLocked(const std::string& token) {
  token_ = token;
  if (token.empty() || std::find(sent_tokens_.begin(), sent_tokens_.end(), token) != sent_tokens_.end()) return;
  sent_tokens_.push_back(token);
  if (sent_tokens_.size() > 8) sent_tokens_.erase(sent_tokens_.begin());  // the oldest is long refreshed away
}

Json McpConnection::Scrub(Json j) {
  std::vector<std::string> sent;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sent = sent_tokens_;
  }
  if (sent.empty()) return j;
  std::function<void(Json&)> walk = [&](Json& v) {
    if (v.is_string()) {
      v = domain::RedactAll(v.get<std::string>(), sent);
    } else if (v.is_array() || v.is_object()) {
      for (Json& x : v) walk(x);
    }
  };
  walk(j);
  return j;
}

Result<std::vector<Json>> McpConnection::ListTools(const CancelToken* cancel) {
  std::vector<Json> tools;
  Json params = Json::object();
  for (int page = 0; page < 50; page++) {
    WARREN_ASSIGN_OR_RETURN(Json r, Request("tools/list", params, options_.request_timeout_ms, cancel));
    if (r.is_object() && r.contains("tools") && r["tools"].is_array())
      for (const Json& t : r["tools"])
        if (t.is_object() && t.contains("name") && t["name"].is_string()) tools.push_back(Scrub(t));
    if (!r.is_object() || !r.contains("nextCursor") || !r["nextCursor"].is_string()) break;
    params = {{"cursor", r["nextCursor"]}};
  }
  return tools;
}

Result<Json> McpConnection::CallTool(const std::string& name, const Json& arguments, const CancelToken* cancel) {
  Json args = arguments.is_object() ? arguments : Json::object();
  auto r = Request("tools/call", {{"name", name}, {"arguments", args}}, options_.call_timeout_ms, cancel);
  if (r.ok()) return Scrub(std::move(*r));
  // Only a JSON-RPC error's message carries the server's words.
  if (r.status().code() == Code::kInvalidArgument)
    return Status::InvalidArgument(Scrub(Json(r.status().message())).get<std::string>());
  return r;
}

}  // namespace warren::mcp
