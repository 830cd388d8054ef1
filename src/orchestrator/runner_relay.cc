#include "orchestrator/runner_relay.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/json.h"
#include "common/log.h"

namespace warren::orchestrator {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

bool SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// The spec's error envelope as a complete HTTP/1.1 answer.
std::string ErrorAnswer(int status, const char* reason, const std::string& type, const std::string& message) {
  std::string body = DumpJson(Json{{"type", "error"}, {"error", {{"type", type}, {"message", message}}}});
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

// One upstream connection: TCP, optionally wrapped in TLS.
class Upstream final {
 public:
  Upstream() = default;
  ~Upstream() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
  }
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  Status Connect(const UpstreamUrl& up, SSL_CTX* ctx) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(up.host.c_str(), up.port.c_str(), &hints, &res);
    if (rc != 0) return Status::Unavailable("resolve " + up.host + ": " + gai_strerror(rc));
    std::string last = "no address";
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        fd_ = fd;
        break;
      }
      last = std::strerror(errno);
      ::close(fd);
    }
    ::freeaddrinfo(res);
    if (fd_ < 0) return Status::Unavailable("connect " + up.host + ":" + up.port + ": " + last);
    if (!up.tls) return Status::Ok();
    ssl_ = SSL_new(ctx);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1 || SSL_set_tlsext_host_name(ssl_, up.host.c_str()) != 1 ||
        SSL_set1_host(ssl_, up.host.c_str()) != 1) {
      return Status::Internal("TLS setup failed");
    }
    if (SSL_connect(ssl_) != 1) {
      unsigned long e = ERR_get_error();
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      return Status::Unavailable(std::string("TLS handshake with ") + up.host + ": " + buf);
    }
    return Status::Ok();
  }
  bool Write(const char* p, size_t n) {
    if (!ssl_) return SendAll(fd_, p, n);
    while (n > 0) {
      int w = SSL_write(ssl_, p, static_cast<int>(std::min<size_t>(n, 1 << 20)));
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }
  // > 0 bytes, 0 at the end, < 0 on an error.
  ssize_t Read(char* p, size_t n) {
    if (!ssl_) {
      for (;;) {
        ssize_t r = ::recv(fd_, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        return r;
      }
    }
    int r = SSL_read(ssl_, p, static_cast<int>(n));
    if (r > 0) return r;
    return SSL_get_error(ssl_, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

}  // namespace

Result<UpstreamUrl> ParseUpstreamUrl(const std::string& url) {
  UpstreamUrl u;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    u.tls = true;
    u.port = "443";
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    u.port = "80";
    rest = url.substr(7);
  } else {
    return Status::InvalidArgument("base URL must be http:// or https://: " + url);
  }
  size_t slash = rest.find('/');
  std::string hostport = slash == std::string::npos ? rest : rest.substr(0, slash);
  if (slash != std::string::npos) u.prefix = rest.substr(slash);
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  if (u.prefix.find_first_of("?#") != std::string::npos) return Status::InvalidArgument("base URL has a query: " + url);
  if (hostport.find('@') != std::string::npos) return Status::InvalidArgument("base URL must not carry credentials");
  if (!hostport.empty() && hostport[0] == '[') {
    size_t close = hostport.find(']');
    if (close == std::string::npos) return Status::InvalidArgument("bad IPv6 host in " + url);
    u.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return Status::InvalidArgument("bad host in " + url);
      u.port = hostport.substr(close + 2);
    }
  } else {
    size_t colon = hostport.rfind(':');
    u.host = colon == std::string::npos ? hostport : hostport.substr(0, colon);
    if (colon != std::string::npos) u.port = hostport.substr(colon + 1);
  }
  if (u.host.empty()) return Status::InvalidArgument("base URL has no host: " + url);
  if (u.port.empty() || u.port.size() > 5 ||
      !std::all_of(u.port.begin(), u.port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return Status::InvalidArgument("bad port in " + url);
  return u;
}

Result<RelayedHead> RewriteRequestHead(const std::string& head, const UpstreamUrl& up) {
  size_t eol = head.find("\r\n");
  std::string line = head.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1) return Status::InvalidArgument("malformed request line");
  std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return Status::InvalidArgument("not HTTP/1.x");
  if (method == "CONNECT") return Status::InvalidArgument("CONNECT is not relayed");
  // Origin form only: the upstream is fixed, the target cannot name another.
  if (target.empty() || target[0] != '/' || target.rfind("//", 0) == 0)
    return Status::InvalidArgument("only origin-form targets are relayed");
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return Status::InvalidArgument("bad target");
  RelayedHead out;
  out.head = method + " " + up.prefix + target + " HTTP/1.1\r\n";
  bool has_length = false;
  size_t pos = eol == std::string::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string::npos) e = head.size();
    std::string h = head.substr(pos, e - pos);
    pos = e + 2;
    if (h.empty()) continue;
    size_t colon = h.find(':');
    if (colon == std::string::npos || colon == 0) return Status::InvalidArgument("malformed header");
    std::string name = Lower(Trim(h.substr(0, colon)));
    std::string value = Trim(h.substr(colon + 1));
    if (name == "host" || name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
        name == "upgrade" || name == "te" || name == "trailer" || name == "proxy-authorization")
      continue;
    if (name == "transfer-encoding") return Status::FailedPrecondition("chunked request bodies are not relayed");
    if (name == "content-length") {
      if (has_length || value.empty() || value.size() > 12 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return Status::InvalidArgument("bad content-length");
      has_length = true;
      out.content_length = std::stoull(value);
    }
    out.head += h + "\r\n";
  }
  bool default_port = (up.tls && up.port == "443") || (!up.tls && up.port == "80");
  std::string host = up.host.find(':') != std::string::npos ? "[" + up.host + "]" : up.host;
  out.head += "Host: " + host + (default_port ? "" : ":" + up.port) + "\r\nConnection: close\r\n\r\n";
  return out;
}

RunnerRelay::RunnerRelay(RunnerRelayOptions options) : options_(std::move(options)) {}

RunnerRelay::~RunnerRelay() {
  Stop();
  if (ssl_ctx_) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
}

std::string RunnerRelay::RunnerBaseUrl(const std::string& socket_in_sandbox) const {
  // The prefix is added by the relay, so the runner uses the bare socket.
  return "unix:" + socket_in_sandbox;
}

Status RunnerRelay::Start() {
  WARREN_ASSIGN_OR_RETURN(upstream_, ParseUpstreamUrl(options_.upstream_url));
  if (upstream_.tls) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) return Status::Internal("SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    int ok = options_.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                      : SSL_CTX_load_verify_locations(ctx, options_.ca_file.c_str(), nullptr);
    if (ok != 1) {
      SSL_CTX_free(ctx);
      return Status::Internal("no CA store for TLS verification");
    }
    ssl_ctx_ = ctx;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options_.socket_path.size() >= sizeof(addr.sun_path))
    return Status::InvalidArgument("relay socket path too long: " + options_.socket_path);
  std::memcpy(addr.sun_path, options_.socket_path.c_str(), options_.socket_path.size());
  ::unlink(options_.socket_path.c_str());
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Status::Internal(std::string("socket: ") + std::strerror(errno));
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 128) != 0) {
    std::string err = std::strerror(errno);
    ::close(listen_fd_);
    listen_fd_ = -1;
    return Status::Internal("relay socket " + options_.socket_path + ": " + err);
  }
  // Sandboxes run as mapped users: any of them may connect (the relay
  // forwards to the one upstream with the caller's own credentials).
  ::chmod(options_.socket_path.c_str(), 0666);
  acceptor_ = std::thread([this] { AcceptLoop(); });
  log::Info("orchestrator.relay_started", {{"socket", options_.socket_path},
                                           {"upstream", (upstream_.tls ? "https://" : "http://") + upstream_.host + ":" +
                                                            upstream_.port + upstream_.prefix},
                                           {"max_connections", options_.max_connections}});
  return Status::Ok();
}

void RunnerRelay::Stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  std::unique_lock<std::mutex> lock(mu_);
  for (int fd : conns_) ::shutdown(fd, SHUT_RDWR);
  cv_.wait(lock, [this] { return active_ == 0; });
}

void RunnerRelay::AcceptLoop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    int pr = ::poll(&p, 1, 500);
    if (stopping_) break;
    if (pr <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::unique_lock<std::mutex> lock(mu_);
    if (active_ >= options_.max_connections) {
      lock.unlock();
      log::Warn("orchestrator.relay_busy", {{"max_connections", options_.max_connections}});
      std::string a = ErrorAnswer(503, "Service Unavailable", "overloaded_error", "relay connection limit reached");
      SendAll(fd, a.data(), a.size());
      ::close(fd);
      continue;
    }
    ++active_;
    conns_.insert(fd);
    lock.unlock();
    std::thread([this, fd] {
      Serve(fd);
      std::lock_guard<std::mutex> g(mu_);
      conns_.erase(fd);
      ::close(fd);
      --active_;
      cv_.notify_all();
    }).detach();
  }
}

void RunnerRelay::Serve(int fd) {
  timeval tv{30, 0};  // a runner that never finishes its request head
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string buf;
  size_t end = std::string::npos;
  char chunk[16384];
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (buf.size() > options_.max_header_bytes) {
      std::string a = ErrorAnswer(431, "Request Header Fields Too Large", "invalid_request_error", "request head too large");
      SendAll(fd, a.data(), a.size());
      return;
    }
    ssize_t r = ::recv(fd, chunk, sizeof chunk, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
    buf.append(chunk, static_cast<size_t>(r));
  }
  auto head = RewriteRequestHead(buf.substr(0, end), upstream_);
  if (!head.ok()) {
    bool length = head.status().code() == Code::kFailedPrecondition;
    std::string a = ErrorAnswer(length ? 411 : 400, length ? "Length Required" : "Bad Request", "invalid_request_error",
                                "relay: " + head.status().message());
    log::Warn("orchestrator.relay_refused", {{"error", head.status().message()}});
    SendAll(fd, a.data(), a.size());
    return;
  }
  std::string body = buf.substr(end + 4);
  if (body.size() > head->content_length) body.resize(head->content_length);
  Upstream up;
  if (Status s = up.Connect(upstream_, static_cast<SSL_CTX*>(ssl_ctx_)); !s.ok()) {
    log::Warn("orchestrator.relay_upstream_failed", {{"error", s.message()}});
    std::string a = ErrorAnswer(502, "Bad Gateway", "api_error", "relay: " + s.message());
    SendAll(fd, a.data(), a.size());
    return;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    if (stopping_) return;
    conns_.insert(up.fd());
  }
  struct Forget {
    RunnerRelay* r;
    int fd;
    ~Forget() {
      std::lock_guard<std::mutex> g(r->mu_);
      r->conns_.erase(fd);
    }
  } forget{this, up.fd()};
  if (!up.Write(head->head.data(), head->head.size()) || !up.Write(body.data(), body.size())) return;
  size_t left = head->content_length - body.size();
  while (left > 0) {
    ssize_t r = ::recv(fd, chunk, std::min(left, sizeof chunk), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
    if (!up.Write(chunk, static_cast<size_t>(r))) return;
    left -= static_cast<size_t>(r);
  }
  // The answer may be a long poll or an SSE stream: no timeout from here on;
  // a watcher ends the upstream side as soon as the runner hangs up.
  timeval none{0, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  int upfd = up.fd();
  std::thread watcher([fd, upfd] {
    char b[512];
    for (;;) {
      ssize_t r = ::recv(fd, b, sizeof b, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;  // hung up (or shut down by the forwarder below)
    }
    ::shutdown(upfd, SHUT_RDWR);
  });
  for (;;) {
    ssize_t r = up.Read(chunk, sizeof chunk);
    if (r <= 0) break;
    if (!SendAll(fd, chunk, static_cast<size_t>(r))) break;
  }
  ::shutdown(fd, SHUT_RDWR);
  watcher.join();
}

}  // namespace warren::orchestrator
