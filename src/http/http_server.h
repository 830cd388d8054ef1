// HttpServer: an HTTP/1.1 server on Boost.Beast/Asio with one event loop.
//
// Threading: one I/O thread runs every socket (accept, parse, write, SSE
// streams, long-polls); request handlers run on a small worker pool so that
// blocking store calls never stall the loop. A streaming response (SSE), a
// long-poll or an open WebSocket is a parked coroutine on the I/O thread,
// not a thread.
//
// Limits: header and body sizes, read timeouts (headers, body, keep-alive
// idle), a connection cap, and a write deadline that disconnects slow
// consumers. Errors the server produces itself (413, 431, 503, 408) are
// rendered through the application's ErrorRenderer so they use the API's
// error envelope.
//
// Beast types stay in http_server.cc (compile time); this header is light.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace warren::http {

// Case-insensitive header lookup over a small vector.
class Headers {
 public:
  void Add(std::string name, std::string value) { items_.emplace_back(std::move(name), std::move(value)); }
  // First value of `name` (case-insensitive), or nullptr.
  const std::string* Find(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // raw request target
  std::string path;    // percent-decoded path, no query
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  Headers headers;
  std::string body;
  std::string remote;  // peer address
  std::string request_id;  // assigned by the server ("req_...")

  // Last value of query parameter `name`, if present.
  std::optional<std::string> Query(std::string_view name) const;
  // All values of `name` (for `types[]=a&types[]=b`).
  std::vector<std::string> QueryAll(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  Headers headers;
  std::string body;
};

// A source of streamed chunks (SSE). Implemented by the application; the
// server drives it from the I/O thread.
class StreamSource {
 public:
  virtual ~StreamSource() = default;
  // Installs the waker. The source calls it, from any thread, whenever new
  // data is ready or the stream has ended. Called once, before Pull.
  virtual void SetWaker(std::function<void()> waker) = 0;
  // Appends ready chunks to `out`. Returns false once the stream is over
  // (after `out` has been filled with any final chunks).
  virtual bool Pull(std::vector<std::shared_ptr<const std::string>>* out) = 0;
  // The chunk sent after `KeepAliveInterval` of silence (e.g. an SSE ping).
  virtual std::string KeepAliveChunk() const = 0;
  virtual std::chrono::milliseconds KeepAliveInterval() const { return std::chrono::seconds(15); }
  // The connection closed (client gone, write error or server shutdown).
  virtual void OnClose() {}
};

// A long-poll: the server parks the connection until the poll completes or
// its deadline passes. Implemented by the application.
class LongPoll {
 public:
  virtual ~LongPoll() = default;
  // Installed before the first TryComplete; call it (any thread) when
  // TryComplete may now succeed.
  virtual void SetWaker(std::function<void()> waker) = 0;
  // Runs on the worker pool. Returns the response if the poll is satisfied,
  // or if `deadline_passed` (then it must return a response).
  virtual std::optional<HttpResponse> TryComplete(bool deadline_passed) = 0;
  virtual std::chrono::milliseconds Timeout() const = 0;
  virtual void OnClose() {}
};

// A response body produced in pieces (downloads): sent with chunked
// transfer encoding, one piece in memory at a time. Implemented by the
// application; the server calls Read on the worker pool, never concurrently.
class BodySource {
 public:
  virtual ~BodySource() = default;
  // Appends the next piece (at most `max` bytes) to `out`, which is empty.
  // Returns true while more may follow, false at the end (after appending
  // the last bytes). An error ends the response without the terminating
  // chunk, so the client sees a truncated transfer, and closes the
  // connection.
  virtual Result<bool> Read(std::string* out, size_t max) = 0;
};

// ---- WebSocket (RFC 6455), e.g. the sandbox terminal.
//
// A handler accepts an upgrade by returning a WebSocketHandler (after its own
// checks: a refused upgrade is a plain HTTP response, in the API's error
// envelope, sent before any 101). The server performs the handshake and
// then parks the connection on the I/O thread like an SSE stream: a reader
// and a writer coroutine, no thread. Beast stays inside http_server.cc.

struct WebSocketLimits {
  size_t max_message_bytes = 1 << 20;  // a larger client message closes with 1009
  // No frame from the client for this long closes the connection; the
  // server pings at half of it, so a live idle browser stays connected.
  std::chrono::seconds idle_timeout{60};
  // Send() reports kFull once this many bytes wait to be written: the
  // producer pauses until OnDrained (output backpressure).
  size_t max_send_queue_bytes = 1 << 20;
};

// The server's side of one open WebSocket, handed to the handler in OnOpen.
// Thread-safe: Send, Close and ResumeReading may be called from any thread.
class WebSocketConnection {
 public:
  virtual ~WebSocketConnection() = default;
  enum class SendResult {
    kOk,      // queued
    kFull,    // queued, but the queue is over max_send_queue_bytes: pause until OnDrained
    kClosed,  // dropped: the connection is closing or gone
  };
  virtual SendResult Send(std::string data, bool binary) = 0;
  // Sends a close frame with `code` after the queued messages, then ends.
  virtual void Close(uint16_t code, std::string reason) = 0;
  // Reading paused by OnMessage returning false resumes.
  virtual void ResumeReading() = 0;
};

// Implemented by the application. Callbacks run on the server's I/O thread,
// one at a time, and must not block.
class WebSocketHandler {
 public:
  virtual ~WebSocketHandler() = default;
  virtual WebSocketLimits Limits() const { return {}; }
  // Once, after the handshake. Keep `conn` to send.
  virtual void OnOpen(std::shared_ptr<WebSocketConnection> conn) = 0;
  // One client message. Return false to stop reading (input backpressure)
  // until conn->ResumeReading().
  virtual bool OnMessage(std::string_view data, bool binary) = 0;
  // The send queue, after a kFull, has been written out.
  virtual void OnDrained() {}
  // Once, when the connection is over (closed by either side, timed out,
  // failed, or the server stopped). Not called if the handshake failed
  // before OnOpen.
  virtual void OnClose() = 0;
};

// What a handler returns: a plain response, or headers plus a stream, or a
// long-poll, or headers plus a chunked body, or a WebSocket upgrade.
struct HandlerResult {
  HttpResponse response;                 // for streams and bodies: status + headers only
  std::shared_ptr<StreamSource> stream;  // non-null => streaming response (SSE)
  std::shared_ptr<LongPoll> poll;        // non-null => parked long-poll
  std::shared_ptr<BodySource> body;      // non-null => chunked response body
  // non-null => accept the WebSocket upgrade (a request that is not one is
  // answered 426 upgrade_required in the error envelope).
  std::shared_ptr<WebSocketHandler> websocket;
};

// True when the request asks for a WebSocket upgrade (GET, Upgrade:
// websocket, Connection: upgrade, Sec-WebSocket-Key and version 13).
bool IsWebSocketUpgrade(const HttpRequest& req);

// A request body consumed as it arrives (uploads), instead of being
// buffered whole under `max_body_bytes`. The server calls Write and then
// Finish on the worker pool, in order, never concurrently.
class BodySink {
 public:
  virtual ~BodySink() = default;
  // The largest body accepted; a larger Content-Length, or a chunked body
  // growing past it, ends the upload with Finish(TooLarge).
  virtual uint64_t MaxBytes() const = 0;
  // The next consecutive piece of the body. A non-OK status stops reading:
  // the server calls Finish with it.
  virtual Status Write(std::string_view piece) = 0;
  // Called once: with OK after the whole body arrived and every Write
  // succeeded, else with the reason (the Write error; TooLarge; Timeout when
  // the client stalled past body_timeout between pieces; Cancelled when the
  // client went away, in which case the result is discarded). The result is
  // the response; after a failed body the connection is closed.
  virtual HandlerResult Finish(const Status& body_status) = 0;
};

// How the server should take a request's body, decided from its head.
struct BodyRoute {
  std::shared_ptr<BodySink> sink;       // non-null => stream the body into it
  std::optional<HttpResponse> reject;   // set => answer now without reading the body
};

using Handler = std::function<HandlerResult(HttpRequest&)>;
// Called on the worker pool for every request that has a body, with the
// head only (req.body empty). Returning an empty BodyRoute buffers the body
// as usual and then calls the Handler.
using BodyRouter = std::function<BodyRoute(HttpRequest& head)>;
// Renders a server-generated error (status, error.type, message) in the
// application's envelope.
using ErrorRenderer = std::function<HttpResponse(int status, std::string_view type,
                                                 std::string_view message, std::string_view request_id)>;

struct ServerOptions {
  std::string listen = "127.0.0.1:8400";  // "host:port" or "unix:/path"
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 8 * 1024 * 1024;
  std::chrono::seconds header_timeout{30};
  std::chrono::seconds body_timeout{60};
  std::chrono::seconds idle_timeout{75};
  std::chrono::seconds write_timeout{30};
  size_t max_connections = 20000;
  int worker_threads = 4;
  // Requests waiting for a free worker (not yet running). One more is
  // answered 503 overloaded_error at once, without running its handler.
  size_t max_queued_requests = 1024;
};

class HttpServer final {
 public:
  HttpServer(ServerOptions options, Handler handler, ErrorRenderer errors);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Installs the body router (streamed uploads). Call before Start().
  void set_body_router(BodyRouter router);

  // Binds and starts the I/O thread. After OK, url() is valid.
  Status Start();
  // "http://127.0.0.1:PORT" or "unix:/path".
  std::string url() const;
  uint16_t port() const;

  // Graceful shutdown: stop accepting, end streams and polls, let in-flight
  // handlers finish (up to `grace`), then close everything. Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  // Live connection count (for metrics and tests).
  size_t connections() const;
  // Requests waiting for a worker right now (for metrics and tests).
  size_t queued_requests() const;
  // Open WebSocket connections (for metrics and tests).
  size_t websockets() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Percent-decodes `s` ('+' stays '+' in paths, becomes ' ' in queries when
// `plus_is_space`). Returns false on a malformed escape.
bool PercentDecode(std::string_view s, bool plus_is_space, std::string* out);

}  // namespace warren::http
