// ApiClient: the wire calls a worker makes (spec sections 0, 1.4, 3.3), with
// the headers the SDK workers send: `Authorization: Bearer <token>`,
// `anthropic-version: 2023-06-01`, `anthropic-beta: managed-agents-2026-04-01`
// and `x-stainless-helper`. Thread-safe (immutable; each call is independent).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "common/json.h"
#include "common/sse_parser.h"
#include "runner/http_client.h"

namespace warren::runner {

// The outcome of one API call. `status` is 0 when no HTTP response arrived
// (connection error, timeout); `transport` then says why.
struct ApiResult {
  int status = 0;
  Json body;             // parsed JSON body (null if none or not JSON)
  Status transport;      // non-OK when no response arrived
  bool ok() const { return transport.ok() && status >= 200 && status < 300; }
  // The SDK's isFatal4xx: a 4xx other than 408, 409, 429.
  bool fatal() const {
    return transport.ok() && status >= 400 && status < 500 && status != 408 && status != 409 &&
           status != 429;
  }
  // Worth retrying: no answer at all (reset, timeout, lost answer), 5xx,
  // 408 or 429. A request that got no answer may have been committed.
  bool transient() const {
    return !transport.ok() || status == 0 || status >= 500 || status == 408 || status == 429;
  }
  std::string Describe() const;
};

class ApiClient final {
 public:
  ApiClient(HttpClient http, std::string token, std::string helper)
      : http_(std::move(http)), token_(std::move(token)), helper_(std::move(helper)) {}

  ApiClient WithToken(std::string token, std::string helper) const {
    return ApiClient(http_, std::move(token), std::move(helper));
  }

  ApiResult Call(const std::string& method, const std::string& target, const Json& body,
                 std::chrono::milliseconds timeout, const StopFn& stop = nullptr,
                 const std::vector<std::pair<std::string, std::string>>& extra_headers = {}) const;

  // GET /v1/environments/{env}/work/poll
  ApiResult Poll(const std::string& env, int block_ms, const std::string& worker_id,
                 std::optional<int> reclaim_older_than_ms, const StopFn& stop) const;
  ApiResult Ack(const std::string& env, const std::string& work_id) const;
  ApiResult Heartbeat(const std::string& env, const std::string& work_id,
                      const std::string& expected_last_heartbeat,
                      std::chrono::milliseconds timeout, const StopFn& stop) const;
  ApiResult StopWork(const std::string& env, const std::string& work_id, bool force) const;
  ApiResult GetSession(const std::string& session_id, const StopFn& stop) const;
  ApiResult ListEvents(const std::string& session_id, const std::string& page,
                       const StopFn& stop) const;
  ApiResult SendEvents(const std::string& session_id, const Json& events,
                       std::chrono::milliseconds timeout, const StopFn& stop) const;

  // Opens GET /v1/sessions/{sid}/events/stream. `on_open` runs once the
  // response head is 200 (the caller reconciles history there); `on_event`
  // gets each SSE frame (return false to stop). Returns the HTTP error as an
  // ApiResult when the head is not 200, or the transport status.
  ApiResult StreamEvents(const std::string& session_id, const std::function<void()>& on_open,
                         const std::function<bool(const SseEvent&)>& on_event,
                         std::chrono::milliseconds idle_timeout, const StopFn& stop) const;

 private:
  std::vector<std::pair<std::string, std::string>> Headers() const;
  HttpClient http_;
  std::string token_;
  std::string helper_;
};

}  // namespace warren::runner
