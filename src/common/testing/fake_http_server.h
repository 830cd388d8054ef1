// FakeHttpServer: a tiny HTTP/1.1 server on 127.0.0.1, port 0, for tests of
// HTTP clients (the curl client, model providers). Test-only code.
//
// Each connection runs on its own thread and may carry several keep-alive
// requests. The handler gets the parsed request and a ResponseWriter with
// which it sends a status line, headers and body chunks whenever it likes
// (chunked transfer encoding by default), so tests can script SSE streams,
// stalls and dropped connections byte for byte. Every request is recorded.
//
// Thread-safety: the handler runs on connection threads; requests() may be
// called from any thread. The destructor shuts every connection down and
// joins all threads, so handlers must not block forever on test state.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace warren::testing {

struct FakeRequest {
  std::string method;
  std::string target;  // as sent: origin-form "/v1/x?y" or absolute-form via a proxy
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
  int connection_index = 0;  // which accepted connection carried it (0-based)

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  // Status line and headers. With `chunked`, the body is sent with chunked
  // transfer encoding; otherwise the caller must include Content-Length or
  // close the connection at the end (Close()).
  virtual bool WriteHead(int status, const std::vector<std::pair<std::string, std::string>>& headers,
                         bool chunked = true) = 0;
  // One body chunk, sent immediately (TCP_NODELAY).
  virtual bool Write(std::string_view data) = 0;
  // Ends a chunked body (sends the terminating chunk).
  virtual bool End() = 0;
  // Drops the connection abruptly (simulates a network failure).
  virtual void Close() = 0;
  // True once the peer has gone away (polls the socket).
  virtual bool PeerClosed() = 0;
};

class FakeHttpServer final {
 public:
  using Handler = std::function<void(const FakeRequest&, ResponseWriter&)>;

  explicit FakeHttpServer(Handler handler);
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<FakeRequest> requests() const;
  int connections() const { return connections_.load(); }

  // Convenience: a complete response with Content-Length.
  static void Reply(ResponseWriter& w, int status, std::string_view body,
                    std::vector<std::pair<std::string, std::string>> headers = {});

 private:
  void AcceptLoop();
  void Serve(int fd, int index);

  Handler handler_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> conn_threads_;
  std::vector<int> conn_fds_;
  std::vector<FakeRequest> requests_;
};

}  // namespace warren::testing
