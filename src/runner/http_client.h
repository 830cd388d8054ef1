// HttpClient: the runner's HTTP/1.1 client on Boost.Beast (no libcurl: the
// runner is linked fully static, see DESIGN.md decision 7). One connection per
// request (`Connection: close`), over TCP, TLS (static OpenSSL, system CA
// bundle, SNI and host name verification) or a unix socket.
//
// Base URLs: "http://host[:port][/prefix]", "https://host[:port][/prefix]",
// "unix:/path/to.sock[:/prefix]" and "http+unix://<percent-encoded socket
// path>[/prefix]" (docs/TOOLS.md).
//
// Every call runs its own io_context on the calling thread; a call is bounded
// by its timeout and aborted promptly (within ~50 ms) when `should_stop`
// returns true. Thread-safe: an HttpClient is immutable after construction.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace warren::runner {

struct BaseUrl {
  enum class Kind { kHttp, kHttps, kUnix };
  Kind kind = Kind::kHttp;
  std::string host;         // tcp/tls
  std::string port;         // tcp/tls
  std::string socket_path;  // unix
  std::string prefix;       // path prefix without trailing '/', may be ""
};

Result<BaseUrl> ParseBaseUrl(std::string_view url);

struct HttpRequest {
  std::string method = "GET";
  std::string target;  // path + query, appended to the base URL's prefix
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

using StopFn = std::function<bool()>;

class HttpClient final {
 public:
  explicit HttpClient(BaseUrl base) : base_(std::move(base)) {}

  const BaseUrl& base() const { return base_; }

  // Sends `req` and reads the whole response. Errors: Unavailable (connect,
  // I/O), Timeout, Cancelled.
  Result<HttpResponse> Do(const HttpRequest& req, std::chrono::milliseconds timeout,
                          const StopFn& should_stop = nullptr) const;

  // Sends `req`, then reports the status line and headers to `on_head` (which
  // may return false to stop) and streams body bytes to `on_data` (which may
  // return false to stop). `head_timeout` bounds connect + response head;
  // `idle_timeout` bounds the gap between body bytes. Returns OK at end of
  // body or when a callback or `should_stop` ended the stream.
  Status Stream(const HttpRequest& req, const std::function<bool(const HttpResponse&)>& on_head,
                const std::function<bool(std::string_view)>& on_data,
                std::chrono::milliseconds head_timeout, std::chrono::milliseconds idle_timeout,
                const StopFn& should_stop = nullptr) const;

 private:
  BaseUrl base_;
};

// Percent-encodes a query component (RFC 3986 unreserved kept).
std::string UrlEncode(std::string_view s);

}  // namespace warren::runner
