// McpConnection: a JSON-RPC client session with one MCP server over HTTP
// (docs/MCP.md). Two transports, chosen at Initialize():
//   - Streamable HTTP (MCP 2025-03-26+): every request is a POST to the
//     server URL; the answer is application/json or a text/event-stream
//     whose events carry the response (and notifications); the server's
//     Mcp-Session-Id is sent back on every later request.
//   - HTTP+SSE (MCP 2024-11-05): a GET opens an event stream whose first
//     `endpoint` event names the URL to POST to; responses arrive on the
//     stream. Used when the POST of `initialize` is refused with 400, 404
//     or 405 (the fallback the MCP spec recommends).
// Authentication: `bearer(false)` gives the token to send (empty = none);
// on a 401 the connection asks `bearer(true)` (refresh) once and retries.
// A notifications/tools/list_changed seen on any stream sets
// tools_changed(). Failures are Status values: kUnauthenticated (401/403
// after the refresh), kUnavailable/kTimeout (transport), kCancelled,
// kInternal (protocol). Messages never contain the token.
//
// Thread-safety: Call() may be used from several threads at once after
// Initialize(); Initialize() itself runs once, before any Call(). Owns the
// legacy transport's reader thread, joined by the destructor.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/http_client.h"
#include "common/json.h"
#include "common/status.h"

namespace warren::mcp {

struct McpConnectionOptions {
  int64_t connect_timeout_ms = 5'000;
  int64_t request_timeout_ms = 30'000;  // initialize, tools/list
  int64_t call_timeout_ms = 120'000;    // tools/call
  size_t max_response_bytes = 8u << 20;
};

enum class McpTransport { kNone, kStreamableHttp, kHttpSse };

// Returns the bearer token (empty: send none). `refresh` asks for a new one
// after a 401; an error status ends the request with that status.
using BearerFn = std::function<Result<std::string>(bool refresh)>;

// Pure helpers, exposed for tests.
// The JSON-RPC response with id `id` among the events of an SSE body; sets
// *list_changed when a tools/list_changed notification is among them.
Result<Json> ResponseFromSse(std::string_view body, int64_t id, bool* list_changed);
// Resolves an `endpoint` event's URI against the SSE stream's URL.
std::string ResolveEndpoint(const std::string& base_url, const std::string& endpoint);

class McpConnection final {
 public:
  McpConnection(HttpClient* http, std::string url, BearerFn bearer, McpConnectionOptions options = {});
  ~McpConnection();
  McpConnection(const McpConnection&) = delete;
  McpConnection& operator=(const McpConnection&) = delete;

  // initialize + notifications/initialized, choosing the transport.
  Status Initialize(const CancelToken* cancel);
  // tools/list, following nextCursor (bounded). The tools' JSON objects.
  Result<std::vector<Json>> ListTools(const CancelToken* cancel);
  // tools/call; the MCP result object ({content:[...], isError?}).
  Result<Json> CallTool(const std::string& name, const Json& arguments, const CancelToken* cancel);

  bool TakeToolsChanged() { return tools_changed_.exchange(false); }
  McpTransport transport() const { return transport_; }

 private:
  // One JSON-RPC request; the `result` member of the response.
  Result<Json> Request(const std::string& method, const Json& params, int64_t timeout_ms, const CancelToken* cancel);
  Status Notify(const std::string& method, const CancelToken* cancel);
  // One POST of `body` with auth (refresh once on 401). Transport errors and
  // auth failures as Status; other HTTP statuses in the response.
  Result<HttpResponse> Post(const std::string& url, const std::string& body, int64_t timeout_ms,
                            const CancelToken* cancel);
  Result<Json> StreamableRequest(int64_t id, const std::string& body, int64_t timeout_ms, const CancelToken* cancel);
  Result<Json> LegacyRequest(int64_t id, const std::string& body, int64_t timeout_ms, const CancelToken* cancel);
  Status StartLegacyStream(const CancelToken* cancel);
  void OnLegacyMessage(const std::string& data);
  Result<Json> ResultOf(const Json& response);

  HttpClient* http_;
  const std::string url_;
  BearerFn bearer_;
  const McpConnectionOptions options_;
  McpTransport transport_ = McpTransport::kNone;
  std::atomic<int64_t> next_id_{1};
  std::atomic<bool> tools_changed_{false};

  std::mutex mu_;
  std::string session_id_;        // Mcp-Session-Id (streamable)
  std::string protocol_version_;  // negotiated
  std::string token_;             // current bearer
  // Legacy transport: the stream's reader and the responses it delivers.
  std::condition_variable cv_;
  std::string post_url_;
  bool stream_ended_ = false;
  std::string stream_error_;
  std::map<int64_t, Json> responses_;
  CancelToken stream_cancel_;
  std::thread reader_;
};

}  // namespace warren::mcp
