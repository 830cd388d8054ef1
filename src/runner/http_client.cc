#include "runner/http_client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstdlib>
#include <memory>
#include <optional>

namespace warren::runner {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;

namespace {

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string TrimSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// Where the static OpenSSL finds CA certificates in common images. Its own
// compiled-in OPENSSLDIR is Debian's; other distributions put the bundle
// elsewhere, so the known locations are probed (SSL_CERT_FILE/DIR first).
void LoadCaCertificates(asio::ssl::context& ctx) {
  const char* file = getenv("SSL_CERT_FILE");
  const char* dir = getenv("SSL_CERT_DIR");
  SSL_CTX* c = ctx.native_handle();
  if ((file != nullptr && SSL_CTX_load_verify_locations(c, file, nullptr) == 1) ||
      (dir != nullptr && SSL_CTX_load_verify_locations(c, nullptr, dir) == 1)) {
    return;
  }
  static const char* kBundles[] = {
      "/etc/ssl/certs/ca-certificates.crt",                 // Debian, Ubuntu, Alpine, Arch
      "/etc/pki/tls/certs/ca-bundle.crt",                   // Fedora, RHEL
      "/etc/ssl/ca-bundle.pem",                             // openSUSE
      "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  // CentOS
      "/etc/ssl/cert.pem",                                  // Alpine, macOS
  };
  for (const char* b : kBundles) {
    struct stat st;
    if (stat(b, &st) == 0 && SSL_CTX_load_verify_locations(c, b, nullptr) == 1) return;
  }
  SSL_CTX_set_default_verify_paths(c);
}

struct Sink {
  const std::function<bool(const HttpResponse&)>* on_head = nullptr;
  const std::function<bool(std::string_view)>* on_data = nullptr;
  HttpResponse* full = nullptr;  // Do(): collect here
  bool head_seen = false;
  bool stopped = false;
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
};

template <class Stream>
asio::awaitable<void> Exchange(Stream& stream, const http::request<http::string_body>& req,
                               Sink& sink) {
  co_await http::async_write(stream, req, asio::use_awaitable);
  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  parser.header_limit(64 * 1024);
  co_await http::async_read_header(stream, buf, parser, asio::use_awaitable);
  HttpResponse head;
  head.status = static_cast<int>(parser.get().result_int());
  for (const auto& f : parser.get()) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    head.headers[name] = std::string(f.value());
  }
  sink.head_seen = true;
  sink.last_activity = std::chrono::steady_clock::now();
  if (sink.full != nullptr) {
    sink.full->status = head.status;
    sink.full->headers = head.headers;
  }
  if (sink.on_head != nullptr && !(*sink.on_head)(head)) {
    sink.stopped = true;
    co_return;
  }
  sink.last_activity = std::chrono::steady_clock::now();
  char chunk[16384];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    auto [ec, n] = co_await http::async_read_some(stream, buf, parser, asio::as_tuple(asio::use_awaitable));
    (void)n;
    if (ec == http::error::need_buffer) ec = {};
    if (ec == http::error::end_of_stream || ec == asio::error::eof) break;
    if (ec) throw boost::system::system_error(ec);
    size_t got = sizeof chunk - parser.get().body().size;
    sink.last_activity = std::chrono::steady_clock::now();
    if (got == 0) continue;
    if (sink.full != nullptr) {
      sink.full->body.append(chunk, got);
      if (sink.full->body.size() > (256u << 20)) throw std::runtime_error("response too large");
    }
    if (sink.on_data != nullptr && !(*sink.on_data)(std::string_view(chunk, got))) {
      sink.stopped = true;
      co_return;
    }
    sink.last_activity = std::chrono::steady_clock::now();
  }
}

}  // namespace

std::string UrlEncode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Result<BaseUrl> ParseBaseUrl(std::string_view url) {
  BaseUrl b;
  auto starts = [&](std::string_view p) { return url.substr(0, p.size()) == p; };
  if (starts("unix:") && !starts("unix://")) {
    std::string rest(url.substr(5));
    size_t sep = rest.find(":/");
    if (sep != std::string::npos) {
      b.prefix = TrimSlash(rest.substr(sep + 1));
      rest = rest.substr(0, sep);
    }
    if (rest.empty() || rest[0] != '/') return Status::InvalidArgument("unix base URL needs an absolute socket path");
    b.kind = BaseUrl::Kind::kUnix;
    b.socket_path = rest;
    return b;
  }
  if (starts("http+unix://")) {
    std::string rest(url.substr(12));
    size_t slash = rest.find('/');
    std::string enc = slash == std::string::npos ? rest : rest.substr(0, slash);
    b.kind = BaseUrl::Kind::kUnix;
    b.socket_path = PercentDecode(enc);
    if (slash != std::string::npos) b.prefix = TrimSlash(rest.substr(slash));
    if (b.socket_path.empty() || b.socket_path[0] != '/') {
      return Status::InvalidArgument("http+unix base URL needs a percent-encoded absolute socket path");
    }
    return b;
  }
  std::string rest;
  if (starts("https://")) {
    b.kind = BaseUrl::Kind::kHttps;
    b.port = "443";
    rest = std::string(url.substr(8));
  } else if (starts("http://")) {
    b.kind = BaseUrl::Kind::kHttp;
    b.port = "80";
    rest = std::string(url.substr(7));
  } else {
    return Status::InvalidArgument("unsupported base URL (http://, https://, unix:/path or http+unix://)");
  }
  size_t slash = rest.find('/');
  std::string hostport = slash == std::string::npos ? rest : rest.substr(0, slash);
  if (slash != std::string::npos) b.prefix = TrimSlash(rest.substr(slash));
  if (!hostport.empty() && hostport[0] == '[') {
    size_t close = hostport.find(']');
    if (close == std::string::npos) return Status::InvalidArgument("bad IPv6 host");
    b.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size() && hostport[close + 1] == ':') b.port = hostport.substr(close + 2);
  } else {
    size_t colon = hostport.rfind(':');
    if (colon != std::string::npos) {
      b.host = hostport.substr(0, colon);
      b.port = hostport.substr(colon + 1);
    } else {
      b.host = hostport;
    }
  }
  if (b.host.empty()) return Status::InvalidArgument("base URL has no host");
  return b;
}

namespace {

Status RunCall(const BaseUrl& base, const HttpRequest& in, Sink& sink,
               std::chrono::milliseconds head_timeout, std::chrono::milliseconds idle_timeout,
               const StopFn& should_stop) {
  asio::io_context ioc;
  http::request<http::string_body> req;
  req.method_string(in.method);
  req.target(base.prefix + in.target);
  req.version(11);
  std::string host_header = base.kind == BaseUrl::Kind::kUnix ? "localhost" : base.host;
  if (base.kind != BaseUrl::Kind::kUnix &&
      !((base.kind == BaseUrl::Kind::kHttp && base.port == "80") ||
        (base.kind == BaseUrl::Kind::kHttps && base.port == "443"))) {
    host_header += ":" + base.port;
  }
  req.set(http::field::host, host_header);
  req.set(http::field::user_agent, "warren-runner/0.1");
  req.set(http::field::connection, "close");
  for (const auto& [k, v] : in.headers) req.set(k, v);
  if (!in.body.empty() || in.method == "POST" || in.method == "PUT" || in.method == "PATCH") {
    req.body() = in.body;
    req.prepare_payload();
  }

  std::exception_ptr failure;
  bool done = false;
  std::function<void()> closer;
  std::optional<asio::ssl::context> ssl_ctx;

  auto finish = [&](std::exception_ptr e) {
    failure = e;
    done = true;
  };

  if (base.kind == BaseUrl::Kind::kUnix) {
    auto sock = std::make_shared<unix_socket::socket>(ioc);
    closer = [sock] {
      boost::system::error_code ec;
      sock->shutdown(unix_socket::socket::shutdown_both, ec);
      sock->close(ec);
    };
    asio::co_spawn(
        ioc,
        [&, sock]() -> asio::awaitable<void> {
          co_await sock->async_connect(unix_socket::endpoint(base.socket_path), asio::use_awaitable);
          co_await Exchange(*sock, req, sink);
        },
        finish);
  } else if (base.kind == BaseUrl::Kind::kHttp) {
    auto sock = std::make_shared<tcp::socket>(ioc);
    closer = [sock] {
      boost::system::error_code ec;
      sock->shutdown(tcp::socket::shutdown_both, ec);
      sock->close(ec);
    };
    asio::co_spawn(
        ioc,
        [&, sock]() -> asio::awaitable<void> {
          tcp::resolver resolver(ioc);
          auto eps = co_await resolver.async_resolve(base.host, base.port, asio::use_awaitable);
          co_await asio::async_connect(*sock, eps, asio::use_awaitable);
          sock->set_option(tcp::no_delay(true));
          co_await Exchange(*sock, req, sink);
        },
        finish);
  } else {
    ssl_ctx.emplace(asio::ssl::context::tls_client);
    ssl_ctx->set_verify_mode(asio::ssl::verify_peer);
    LoadCaCertificates(*ssl_ctx);
    auto stream = std::make_shared<asio::ssl::stream<tcp::socket>>(ioc, *ssl_ctx);
    closer = [stream] {
      boost::system::error_code ec;
      stream->lowest_layer().shutdown(tcp::socket::shutdown_both, ec);
      stream->lowest_layer().close(ec);
    };
    asio::co_spawn(
        ioc,
        [&, stream]() -> asio::awaitable<void> {
          if (!SSL_set_tlsext_host_name(stream->native_handle(), base.host.c_str())) {
            throw std::runtime_error("SNI setup failed");
          }
          SSL_set1_host(stream->native_handle(), base.host.c_str());
          tcp::resolver resolver(ioc);
          auto eps = co_await resolver.async_resolve(base.host, base.port, asio::use_awaitable);
          co_await asio::async_connect(stream->lowest_layer(), eps, asio::use_awaitable);
          co_await stream->async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
          co_await Exchange(*stream, req, sink);
        },
        finish);
  }

  const auto start = std::chrono::steady_clock::now();
  bool timed_out = false, cancelled = false, closed = false;
  while (!done) {
    ioc.run_for(std::chrono::milliseconds(50));
    if (done || closed) continue;
    auto now = std::chrono::steady_clock::now();
    if (should_stop && should_stop()) {
      cancelled = true;
    } else if (!sink.head_seen && now - start > head_timeout) {
      timed_out = true;
    } else if (sink.head_seen && now - sink.last_activity > idle_timeout) {
      timed_out = true;
    }
    if (cancelled || timed_out) {
      closer();
      closed = true;
    }
  }
  if (cancelled) {
    // A stream ended by its owner is a normal end.
    if (sink.on_data != nullptr && sink.head_seen) return Status::Ok();
    return Status::Cancelled("request cancelled");
  }
  if (timed_out) return Status::Timeout("request timed out");
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      return Status::Unavailable(std::string("http: ") + e.what());
    }
  }
  return Status::Ok();
}

}  // namespace

Result<HttpResponse> HttpClient::Do(const HttpRequest& req, std::chrono::milliseconds timeout,
                                    const StopFn& should_stop) const {
  HttpResponse resp;
  Sink sink;
  sink.full = &resp;
  Status st = RunCall(base_, req, sink, timeout, timeout, should_stop);
  if (!st.ok()) return st;
  return resp;
}

Status HttpClient::Stream(const HttpRequest& req,
                          const std::function<bool(const HttpResponse&)>& on_head,
                          const std::function<bool(std::string_view)>& on_data,
                          std::chrono::milliseconds head_timeout,
                          std::chrono::milliseconds idle_timeout, const StopFn& should_stop) const {
  Sink sink;
  sink.on_head = &on_head;
  sink.on_data = &on_data;
  return RunCall(base_, req, sink, head_timeout, idle_timeout, should_stop);
}

}  // namespace warren::runner
