// McpConnection: a JSON-RPC client session with one MCP server over HTTP
// (docs/MCP.md). Two transports, chosen at Initialize():
//   - Streamable HTTP (MCP 2025-03-26+): every request is a POST to the
//     server URL; the answer is application/json or a text/event-stream
//     whose events carry the response (and notifications); the server's
//     Mcp-Session-Id is sent back on every later request. After
//     initialize, a standalone GET event stream carries what the server
//     sends outside any request (a 405 means the server offers none); it is
//     reopened with Last-Event-ID when it ends, a bounded number of times in
//     a row. An answer stream that breaks before the response is resumed by
//     a GET with Last-Event-ID (bounded attempts). A 404 to a request that
//     carried an Mcp-Session-Id means the server forgot the session: the
//     connection initialises a new one and sends the request once more.
//   - HTTP+SSE (MCP 2024-11-05): a GET opens an event stream whose first
//     `endpoint` event names the URL to POST to; responses arrive on the
//     stream. Used when the POST of `initialize` is refused with 400, 404
//     or 405 (the fallback the MCP spec recommends).
// Authentication: `bearer(false)` gives the token to send (empty = none);
// on a 401 the connection asks `bearer(true)` (refresh) once and retries.
// A notifications/tools/list_changed seen on any stream sets
// tools_changed(). Failures are Status values: kUnauthenticated (401/403
// after the refresh), kUnavailable/kTimeout (transport), kCancelled,
// kInternal (protocol). Messages never contain the token, and what a server
// says back is scrubbed of every token this connection sent it: the tools
// of ListTools, the result of CallTool and a JSON-RPC error's message have
// each such token (in the forms domain::RedactAll knows) replaced by
// "[redacted]", so a server that echoes the Authorization header cannot
// put the credential into an event or the model's context.
//
// Thread-safety: Call() may be used from several threads at once after
// Initialize(); Initialize() itself runs once, before any Call(). Owns the
// legacy transport's reader thread and the standalone stream's reader
// thread, both joined by the destructor.
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
  // Streamable HTTP: open the standalone GET stream after initialize.
  bool standalone_stream = true;
  // Attempts to resume a broken answer stream, and reconnects in a row of
  // the standalone stream that bring no event, before giving up.
  int max_resume_attempts = 5;
  // Names the connection in log lines (the gateway: "<session>/<server>").
  std::string label;
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
  // Counters for tests and logs.
  int reinitializations() const { return reinitializations_.load(); }
  int resumptions() const { return resumptions_.load(); }

 private:
  // One JSON-RPC request; the `result` member of the response.
  Result<Json> Request(const std::string& method, const Json& params, int64_t timeout_ms, const CancelToken* cancel);
  Status Notify(const std::string& method, const CancelToken* cancel);
  // What one streamed HTTP exchange gave (a POST, or a GET stream).
  struct Exchange {
    int status = 0;  // 0: no response head (see transport)
    bool event_stream = false;
    std::optional<Json> response;  // the JSON-RPC response sought, when seen
    std::string last_event_id;     // of an event stream
    std::optional<long> retry_ms;  // the stream's `retry:` field
    int events = 0;                // events seen on the stream
    std::string body;              // a non-stream body (bounded)
    std::string session_id;        // Mcp-Session-Id of the answer
    Status transport;              // how the transfer ended (OK: cleanly)
  };
  // One request with auth (refresh once on 401): POST of `body`, or a GET
  // (empty body) with `extra` headers. Reads an event stream as it arrives
  // and stops once the response to `id` is seen (id < 0: none sought).
  // Returns an error only for refused credentials (kUnauthenticated) and
  // cancellation; everything else is in the Exchange.
  Result<Exchange> Send(const std::string& method, const std::string& url, const std::string& body, int64_t id,
                        const HttpHeaders& extra, bool with_session, int64_t timeout_ms, const CancelToken* cancel);
  // POST of `body` expecting no answer but a status (legacy requests,
  // notifications): transport errors as Status.
  Result<Exchange> Post(const std::string& url, const std::string& body, int64_t timeout_ms, const CancelToken* cancel);
  Result<Json> StreamableRequest(int64_t id, const std::string& body, int64_t timeout_ms, const CancelToken* cancel);
  // The result of request `id` from its POST's exchange, resuming a broken
  // event stream when it can.
  Result<Json> AnswerOf(Exchange x, int64_t id, int64_t deadline_us, const CancelToken* cancel);
  Result<Json> Resume(int64_t id, std::string last_event_id, std::optional<long> retry_ms, int64_t deadline_us,
                      const CancelToken* cancel);
  // initialize over Streamable HTTP (no session id sent); the Exchange, for
  // the caller to tell a legacy server apart.
  Result<Exchange> PostInitialize(int64_t id, const CancelToken* cancel);
  Status FinishInitialize(const Exchange& x, int64_t id, const CancelToken* cancel);
  // The server forgot session `stale`: initialise a new one (once, however
  // many requests saw the 404).
  Status Reinitialize(const std::string& stale, const CancelToken* cancel);
  void StartStandalone();
  void StopStandalone();
  void StandaloneLoop(CancelToken* stop);
  void OnToolsChanged(const char* where);
  Result<Json> LegacyRequest(int64_t id, const std::string& body, int64_t timeout_ms, const CancelToken* cancel);
  Status StartLegacyStream(const CancelToken* cancel);
  void OnLegacyMessage(const std::string& data);
  Result<Json> ResultOf(const Json& response);
  // Sets token_ and remembers it for scrubbing; mu_ held.
  void SetTokenLocked(const std::string& token);
  // `j` with every string scrubbed of the tokens sent so far.
  Json Scrub(Json j);

  HttpClient* http_;
  const std::string url_;
  BearerFn bearer_;
  const McpConnectionOptions options_;
  McpTransport transport_ = McpTransport::kNone;
  std::atomic<int64_t> next_id_{1};
  std::atomic<bool> tools_changed_{false};
  std::atomic<int> reinitializations_{0};
  std::atomic<int> resumptions_{0};
  std::mutex reinit_mu_;  // serialises Reinitialize
  // The standalone GET stream's reader (Streamable HTTP); guarded by
  // standalone_mu_, which is taken before mu_ when both are.
  std::mutex standalone_mu_;
  std::unique_ptr<CancelToken> standalone_stop_;
  std::thread standalone_;

  std::mutex mu_;
  std::string session_id_;        // Mcp-Session-Id (streamable)
  std::string protocol_version_;  // negotiated
  std::string token_;             // current bearer
  std::vector<std::string> sent_tokens_;  // every bearer set (the latest few), for scrubbing
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
