// HttpClient: outbound HTTP/1.1 requests (model providers, webhooks, the
// orchestrator talking to a remote service).
//
// An interface so that tests can substitute a fake; the production
// implementation (NewCurlHttpClient) is libcurl with CURLOPT_NOSIGNAL, connect
// and total timeouts, an idle (no bytes received) timeout for long streams,
// proxies taken from the environment the way curl does (`http_proxy`,
// `https_proxy`, `all_proxy`, `no_proxy`; note that curl deliberately ignores
// upper-case `HTTP_PROXY`), and cancellation through a CancelToken that wakes
// the transfer immediately (curl_multi_wakeup), not at the next progress tick.
//
// Send/Stream block the calling thread until the response is complete, fails,
// or is cancelled. Streaming responses (SSE) are delivered chunk by chunk, as
// the bytes arrive, to StreamHandlers::on_data on the calling thread.
//
// StreamAsync starts a streamed request and returns at once: the curl client
// runs every async transfer on one event-loop thread (libcurl's multi
// interface, curl_multi_poll + curl_multi_wakeup), so a thousand concurrent
// model streams cost one thread, not a thousand. Handlers and the completion
// run on that thread and must not block.
//
// Failures of the transport (DNS, connect, TLS, timeout, cancellation) are a
// non-OK Status; any HTTP status, including 4xx/5xx, is a successful call
// whose HttpResponse carries it. Status codes used: kUnavailable (cannot
// connect / connection dropped), kTimeout, kCancelled (token or handler
// aborted), kTooLarge (buffered body over the limit), kInvalidArgument (bad
// URL or request), kInternal (other curl errors).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace warren {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// Case-insensitive lookup of the first header called `name`.
std::optional<std::string> FindHeader(const HttpHeaders& headers, std::string_view name);

// Parses a Retry-After value: delay-seconds ("2", "1.5") or an HTTP-date
// relative to `now_micros` (wall clock). Returns milliseconds, clamped at 0.
std::optional<int64_t> ParseRetryAfterMs(std::string_view value, int64_t now_micros);

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  // Sent as given, in order. A "Content-Type" is added for non-empty bodies
  // when absent ("application/json"). "Expect: 100-continue" is suppressed.
  HttpHeaders headers;
  std::string body;
  int64_t connect_timeout_ms = 10'000;
  // Whole transfer, including a streamed body. 0 = unlimited (streams).
  int64_t total_timeout_ms = 0;
  // Abort if no byte arrives for this long (guards a stalled stream). 0 = off.
  int64_t idle_timeout_ms = 0;
  // Explicit proxy URL ("http://host:port"); "" = from the environment,
  // "-" = never use a proxy.
  std::string proxy;
  // Bound on a buffered (Send) response body.
  size_t max_response_bytes = 64u << 20;
};

// A shared cancellation flag. Cancel() is thread-safe and wakes any transfer
// currently running with this token. Owned by the caller; must outlive the
// calls that use it.
class CancelToken final {
 public:
  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  void Cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // Registers `wake`, called (once) on Cancel(); returns a handle for
  // RemoveWaker. If already cancelled, `wake` runs immediately.
  int AddWaker(std::function<void()> wake);
  void RemoveWaker(int handle);

 private:
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  int next_ = 0;
  std::vector<std::pair<int, std::function<void()>>> wakers_;
};

struct HttpResponse {
  int status = 0;
  HttpHeaders headers;  // names lower-cased, values trimmed, final response only
  std::string body;     // empty for Stream()
  std::string effective_url;

  std::optional<std::string> Header(std::string_view name) const { return FindHeader(headers, name); }
  // "retry-after-ms" (milliseconds) if present, else "retry-after".
  std::optional<int64_t> RetryAfterMs(int64_t now_micros) const;
};

struct StreamHandlers {
  // Called once when the status line and headers of the final response are
  // known, before any on_data. Return false to abort (the call then returns
  // kCancelled). May be empty.
  std::function<bool(const HttpResponse& head)> on_headers;
  // Called for every chunk of body bytes as they arrive. Return false to
  // abort. May be empty (body discarded).
  std::function<bool(std::string_view chunk)> on_data;
};

// Completion of StreamAsync: the same result Stream() would have returned.
using StreamDone = std::function<void(Result<HttpResponse>)>;

class HttpClient {
 public:
  virtual ~HttpClient() = default;

  // Sends `request` and buffers the whole response body.
  virtual Result<HttpResponse> Send(const HttpRequest& request,
                                    const CancelToken* cancel = nullptr) = 0;

  // Sends `request` and streams the response body to `handlers`. The returned
  // HttpResponse has status and headers but an empty body.
  virtual Result<HttpResponse> Stream(const HttpRequest& request, const StreamHandlers& handlers,
                                      const CancelToken* cancel = nullptr) = 0;

  // Starts `request` and returns at once. `handlers` and then `done` (exactly
  // once) run on another thread: the curl client's event loop, shared by all
  // async transfers. `cancel`, when not null, must outlive `done`; Cancel()
  // ends the transfer promptly with kCancelled. The default implementation
  // (for fakes) runs Stream() on a thread of its own.
  virtual void StreamAsync(HttpRequest request, StreamHandlers handlers, const CancelToken* cancel,
                           StreamDone done);
};

struct CurlHttpClientOptions {
  std::string user_agent = "warren/0.1";
  // Idle easy handles kept for connection reuse.
  int max_pooled_handles = 8;
  // Verify TLS peers (never turn off outside tests).
  bool verify_tls = true;
  std::string ca_file;  // "" = system default
};

// The libcurl implementation. Thread-safe: any number of threads may call
// Send/Stream concurrently; each call uses its own curl handle (taken from a
// small pool so that keep-alive connections are reused). StreamAsync
// transfers share one multi handle (and so its connection cache) driven by
// one thread, started at the first StreamAsync; destroying the client ends
// the transfers still running with kCancelled and joins it.
std::shared_ptr<HttpClient> NewCurlHttpClient(CurlHttpClientOptions options = {});

}  // namespace warren
