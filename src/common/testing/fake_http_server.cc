#include "common/testing/fake_http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace warren::testing {
namespace {

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 529: return "Overloaded";
    default: return "Status";
  }
}

class Writer final : public ResponseWriter {
 public:
  explicit Writer(int fd) : fd_(fd) {}

  bool WriteHead(int status, const std::vector<std::pair<std::string, std::string>>& headers,
                 bool chunked) override {
    chunked_ = chunked;
    for (const auto& [k, v] : headers) {
      std::string lower = k;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == "content-length") has_length_ = true;
    }
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + Reason(status) + "\r\n";
    for (const auto& [k, v] : headers) head += k + ": " + v + "\r\n";
    if (chunked) head += "Transfer-Encoding: chunked\r\n";
    head += "\r\n";
    return ok_ = ok_ && SendAll(fd_, head);
  }

  bool Write(std::string_view data) override {
    if (data.empty()) return ok_;
    if (!chunked_) return ok_ = ok_ && SendAll(fd_, data);
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    std::string frame = size;
    frame.append(data);
    frame += "\r\n";
    return ok_ = ok_ && SendAll(fd_, frame);
  }

  bool End() override {
    ended_ = true;
    if (!chunked_) return ok_;
    return ok_ = ok_ && SendAll(fd_, "0\r\n\r\n");
  }

  void Close() override {
    closed_ = true;
    ::shutdown(fd_, SHUT_RDWR);
  }

  bool PeerClosed() override {
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }

  bool closed() const { return closed_ || !ok_; }
  bool ended() const { return ended_; }
  bool chunked() const { return chunked_; }
  bool has_length() const { return has_length_; }

 private:
  int fd_;
  bool chunked_ = true;
  bool has_length_ = false;
  bool ok_ = true;
  bool ended_ = false;
  bool closed_ = false;
};

// Reads one request from `fd` using `buf` as carry-over. False on EOF/error.
bool ReadRequest(int fd, std::string& buf, FakeRequest* out) {
  auto fill = [&]() {
    char tmp[16384];
    for (;;) {
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buf.append(tmp, static_cast<size_t>(n));
      return true;
    }
  };
  size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return false;
  }
  std::string head = buf.substr(0, end);
  buf.erase(0, end + 4);
  size_t line_end = head.find("\r\n");
  std::string request_line = head.substr(0, line_end);
  size_t sp1 = request_line.find(' ');
  size_t sp2 = request_line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1) return false;
  out->method = request_line.substr(0, sp1);
  out->target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  out->headers.clear();
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string::npos) e = head.size();
    std::string line = head.substr(pos, e - pos);
    pos = e + 2;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    out->headers[name] = value;
  }
  size_t length = 0;
  if (auto it = out->headers.find("content-length"); it != out->headers.end()) {
    length = std::strtoul(it->second.c_str(), nullptr, 10);
  }
  while (buf.size() < length) {
    if (!fill()) return false;
  }
  out->body = buf.substr(0, length);
  buf.erase(0, length);
  return true;
}

}  // namespace

FakeHttpServer::FakeHttpServer(Handler handler) : handler_(std::move(handler)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 64) != 0) {
    throw std::runtime_error("FakeHttpServer: bind/listen failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) throw std::runtime_error("FakeHttpServer: pipe failed");
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeHttpServer::~FakeHttpServer() {
  stopping_ = true;
  char c = 1;
  (void)!::write(wake_pipe_[1], &c, 1);
  accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(conn_threads_);
  }
  for (auto& t : threads) t.join();
  ::close(listen_fd_);
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
}

std::vector<FakeRequest> FakeHttpServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

void FakeHttpServer::Reply(ResponseWriter& w, int status, std::string_view body,
                           std::vector<std::pair<std::string, std::string>> headers) {
  headers.emplace_back("Content-Length", std::to_string(body.size()));
  w.WriteHead(status, headers, /*chunked=*/false);
  w.Write(body);
  w.End();
}

void FakeHttpServer::AcceptLoop() {
  int index = 0;
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) break;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connections_++;
    std::lock_guard<std::mutex> lock(mu_);
    conn_fds_.push_back(fd);
    int i = index++;
    conn_threads_.emplace_back([this, fd, i] { Serve(fd, i); });
  }
}

void FakeHttpServer::Serve(int fd, int index) {
  std::string buf;
  for (;;) {
    FakeRequest req;
    if (!ReadRequest(fd, buf, &req)) break;
    req.connection_index = index;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(req);
    }
    Writer w(fd);
    handler_(req, w);
    if (w.closed() || !w.ended()) break;
    if (!w.chunked() && !w.has_length()) break;  // body delimited by close
    if (req.Header("connection") == "close") break;
  }
  ::shutdown(fd, SHUT_RDWR);
  std::lock_guard<std::mutex> lock(mu_);
  // The fd is closed here (after shutdown) but stays in conn_fds_ only while
  // open: remove it first so the destructor never shuts down a reused number.
  std::erase(conn_fds_, fd);
  ::close(fd);
}

}  // namespace warren::testing
