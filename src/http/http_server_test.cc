#include "http/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace warren::http {
namespace {

HttpResponse Err(int status, std::string_view type, std::string_view msg, std::string_view rid) {
  HttpResponse r;
  r.status = status;
  r.body = std::string("{\"error\":\"") + std::string(type) + "\"}";
  return r;
}

// Raw-socket client: sends bytes, reads until the peer closes or `until`
// appears.
class Conn {
 public:
  explicit Conn(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Conn() { close(fd_); }
  void Send(const std::string& s) { ASSERT_EQ(write(fd_, s.data(), s.size()), static_cast<ssize_t>(s.size())); }
  std::string ReadUntil(const std::string& until) {
    std::string out;
    char buf[4096];
    while (out.find(until) == std::string::npos) {
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
};

class Source final : public StreamSource {
 public:
  void SetWaker(std::function<void()> w) override {
    std::lock_guard<std::mutex> l(mu);
    waker = std::move(w);
  }
  bool Pull(std::vector<std::shared_ptr<const std::string>>* out) override {
    std::lock_guard<std::mutex> l(mu);
    for (auto& f : frames) out->push_back(std::make_shared<const std::string>(f));
    frames.clear();
    return !ended;
  }
  std::string KeepAliveChunk() const override { return "event: ping\ndata: {}\n\n"; }
  std::chrono::milliseconds KeepAliveInterval() const override { return std::chrono::milliseconds(50); }
  void OnClose() override { closed = true; }
  void Push(std::string f, bool end = false) {
    std::function<void()> w;
    {
      std::lock_guard<std::mutex> l(mu);
      frames.push_back(std::move(f));
      ended = end;
      w = waker;
    }
    if (w) w();
  }
  std::mutex mu;
  std::function<void()> waker;
  std::vector<std::string> frames;
  bool ended = false;
  std::atomic<bool> closed{false};
};

class Poll final : public LongPoll {
 public:
  void SetWaker(std::function<void()> w) override {
    std::lock_guard<std::mutex> l(mu);
    waker = std::move(w);
    cv.notify_all();
  }
  // The waker once the server parked the poll (empty if it never did).
  std::function<void()> WaitWaker() {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, std::chrono::seconds(60), [&] { return static_cast<bool>(waker); });
    return waker;
  }
  std::optional<HttpResponse> TryComplete(bool deadline_passed) override {
    if (ready || deadline_passed) {
      HttpResponse r;
      r.body = ready ? "ready" : "null";
      return r;
    }
    return std::nullopt;
  }
  std::chrono::milliseconds Timeout() const override { return std::chrono::milliseconds(timeout_ms); }
  std::mutex mu;
  std::condition_variable cv;
  std::function<void()> waker;
  std::atomic<bool> ready{false};
  int timeout_ms = 5000;
};

// Records an upload piece by piece.
class Sink final : public BodySink {
 public:
  explicit Sink(uint64_t max) : max_(max) {}
  uint64_t MaxBytes() const override { return max_; }
  Status Write(std::string_view piece) override {
    pieces++;
    largest = std::max(largest, piece.size());
    data.append(piece);
    if (fail_after && data.size() >= fail_after) return Status::IOError("disk full");
    return Status::Ok();
  }
  HandlerResult Finish(const Status& st) override {
    finished = st;
    HandlerResult h;
    h.response.status = st.ok() ? 201 : st.code() == Code::kTooLarge ? 413 : 500;
    h.response.body = "got " + std::to_string(data.size());
    return h;
  }
  uint64_t max_;
  size_t fail_after = 0;
  int pieces = 0;
  size_t largest = 0;
  std::string data;
  std::optional<Status> finished;
};

// Produces `n` pieces of `size` bytes, or fails after `fail_at` pieces.
class Pieces final : public BodySource {
 public:
  Pieces(int n, size_t size, int fail_at = -1) : n_(n), size_(size), fail_at_(fail_at) {}
  Result<bool> Read(std::string* out, size_t max) override {
    if (i_ == fail_at_) return Status::IOError("read failed");
    out->assign(std::min(size_, max), static_cast<char>('a' + i_ % 26));
    return ++i_ < n_;
  }
  int n_;
  size_t size_;
  int fail_at_;
  int i_ = 0;
};

// Decodes a chunked body that starts after the blank line of `raw`.
std::string Dechunk(const std::string& raw, bool* complete) {
  size_t p = raw.find("\r\n\r\n");
  std::string out;
  *complete = false;
  if (p == std::string::npos) return out;
  p += 4;
  for (;;) {
    size_t eol = raw.find("\r\n", p);
    if (eol == std::string::npos) return out;
    size_t n = std::stoul(raw.substr(p, eol - p), nullptr, 16);
    if (n == 0) {
      *complete = true;
      return out;
    }
    if (eol + 2 + n > raw.size()) return out;
    out += raw.substr(eol + 2, n);
    p = eol + 2 + n + 2;
  }
}

class HttpServerTest : public ::testing::Test {
 protected:
  void Start(ServerOptions o = {}) {
    o.listen = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(o, [this](HttpRequest& r) { return Handle(r); }, Err);
    if (router) server_->set_body_router(router);
    ASSERT_TRUE(server_->Start().ok());
  }
  HandlerResult Handle(HttpRequest& r) {
    HandlerResult h;
    if (r.path == "/stream") {
      h.stream = source;
    } else if (r.path == "/download") {
      h.response.content_type = "application/octet-stream";
      h.body = download;
    } else if (r.path == "/poll") {
      h.poll = poll;
    } else if (r.path == "/block") {
      std::unique_lock<std::mutex> l(block_mu);
      blocked++;
      block_cv.notify_all();
      block_cv.wait(l, [this] { return released; });
      h.response.body = "unblocked";
    } else {
      h.response.body = r.method + " " + r.path + " q=" + r.Query("a").value_or("-") + " n=" +
                        std::to_string(r.QueryAll("t[]").size()) + " body=" + r.body;
    }
    return h;
  }
  void Release() {
    std::lock_guard<std::mutex> l(block_mu);
    released = true;
    block_cv.notify_all();
  }
  void WaitBlocked(int n) {
    std::unique_lock<std::mutex> l(block_mu);
    block_cv.wait(l, [&] { return blocked >= n; });
  }
  std::mutex block_mu;
  std::condition_variable block_cv;
  int blocked = 0;
  bool released = false;
  std::shared_ptr<Source> source = std::make_shared<Source>();
  std::shared_ptr<Poll> poll = std::make_shared<Poll>();
  std::shared_ptr<BodySource> download;
  BodyRouter router;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, KeepAliveAndQueryDecoding) {
  Start();
  Conn c(server_->port());
  c.Send("GET /x%2Fy?a=b%20c&t[]=1&t%5B%5D=2 HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string r1 = c.ReadUntil("body=");
  EXPECT_NE(r1.find("200 OK"), std::string::npos);
  EXPECT_NE(r1.find("request-id: req_"), std::string::npos);
  EXPECT_NE(r1.find("GET /x/y q=b c n=2"), std::string::npos) << r1;
  c.Send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_NE(c.ReadUntil("body=abc").find("body=abc"), std::string::npos);
}

TEST_F(HttpServerTest, LimitsAnswerWithErrors) {
  ServerOptions o;
  o.max_body_bytes = 1024;
  o.max_header_bytes = 2048;
  Start(o);
  {
    Conn c(server_->port());
    c.Send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x'));
    std::string r = c.ReadUntil("}");
    EXPECT_NE(r.find("413"), std::string::npos) << r;
    EXPECT_NE(r.find("request_too_large"), std::string::npos) << r;
  }
  {
    Conn c(server_->port());
    c.Send("GET / HTTP/1.1\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n");
    EXPECT_NE(c.ReadUntil("}").find("431"), std::string::npos);
  }
  {
    Conn c(server_->port());
    c.Send("GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_NE(c.ReadUntil("}").find("400"), std::string::npos);
  }
}

TEST_F(HttpServerTest, ConnectionCap) {
  ServerOptions o;
  o.max_connections = 1;
  Start(o);
  Conn first(server_->port());
  first.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  first.ReadUntil("body=");
  Conn second(server_->port());
  EXPECT_NE(second.ReadUntil("}").find("503"), std::string::npos);
}

TEST_F(HttpServerTest, StreamDeliversFramesPingsAndEnds) {
  Start();
  Conn c(server_->port());
  c.Send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string head = c.ReadUntil("event: ping");
  EXPECT_NE(head.find("text/event-stream"), std::string::npos);
  EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos);
  source->Push("event: a\ndata: {\"type\":\"a\"}\n\n");
  EXPECT_NE(c.ReadUntil("\"type\":\"a\"").find("\"type\":\"a\""), std::string::npos);
  source->Push("event: b\ndata: {}\n\n", /*end=*/true);
  std::string tail = c.ReadUntil("0\r\n\r\n");
  EXPECT_NE(tail.find("event: b"), std::string::npos);
  EXPECT_NE(tail.find("0\r\n\r\n"), std::string::npos);
}

TEST_F(HttpServerTest, SilentStreamOutlivesWriteTimeout) {
  ServerOptions o;
  o.write_timeout = std::chrono::seconds(1);
  Start(o);
  Conn c(server_->port());
  c.Send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  c.ReadUntil("text/event-stream");
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  source->Push("event: late\ndata: {}\n\n");
  EXPECT_NE(c.ReadUntil("event: late").find("event: late"), std::string::npos);
  EXPECT_FALSE(source->closed.load());
}

TEST_F(HttpServerTest, StalledConsumerIsCutByWriteDeadline) {
  ServerOptions o;
  o.write_timeout = std::chrono::seconds(1);
  Start(o);
  Conn c(server_->port());  // never reads after the headers
  c.Send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  c.ReadUntil("text/event-stream");
  std::string big(1 << 20, 'x');
  for (int i = 0; i < 64; i++) source->Push("data: " + big + "\n\n");
  for (int i = 0; i < 600 && !source->closed.load(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(source->closed.load());
}

TEST_F(HttpServerTest, LongPollWakesAndTimesOut) {
  Start();
  {
    poll->timeout_ms = 100;
    Conn c(server_->port());
    c.Send("GET /poll HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_NE(c.ReadUntil("null").find("null"), std::string::npos);
  }
  poll = std::make_shared<Poll>();
  poll->timeout_ms = 600'000;  // only the wake can answer it, however slow the machine
  Conn c(server_->port());
  c.Send("GET /poll HTTP/1.1\r\nHost: x\r\n\r\n");
  // Wake once the server parked it (a fixed sleep could come too early).
  auto wake = poll->WaitWaker();
  ASSERT_TRUE(wake);
  poll->ready = true;
  wake();
  EXPECT_NE(c.ReadUntil("ready").find("ready"), std::string::npos);
}

TEST_F(HttpServerTest, StopEndsParkedStreams) {
  Start();
  Conn c(server_->port());
  c.Send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  c.ReadUntil("text/event-stream");
  server_->Stop(std::chrono::seconds(5));
  EXPECT_TRUE(source->closed.load());
  EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(HttpServerTest, StreamedUploadReachesSinkInPieces) {
  ServerOptions o;
  o.max_body_bytes = 1024;  // the buffered limit does not apply to sink routes
  auto sink = std::make_shared<Sink>(8 << 20);
  router = [&sink](HttpRequest& head) {
    BodyRoute r;
    if (head.path == "/up") r.sink = sink;
    return r;
  };
  Start(o);
  std::string body(4 << 20, 'x');
  for (size_t i = 0; i < body.size(); i += 4093) body[i] = static_cast<char>('a' + (i / 4093) % 26);
  Conn c(server_->port());
  c.Send("PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  c.Send(body);
  std::string r = c.ReadUntil("got " + std::to_string(body.size()));
  EXPECT_NE(r.find("201"), std::string::npos) << r;
  EXPECT_TRUE(sink->data == body);
  EXPECT_GT(sink->pieces, 1);
  EXPECT_LE(sink->largest, 256u * 1024);
  ASSERT_TRUE(sink->finished && sink->finished->ok());
  // Keep-alive: the same connection serves a buffered request next, whose
  // limit still holds.
  c.Send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_NE(c.ReadUntil("body=abc").find("body=abc"), std::string::npos);
  Conn big(server_->port());
  big.Send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + std::string(2000, 'y'));
  EXPECT_NE(big.ReadUntil("}").find("413"), std::string::npos);
}

TEST_F(HttpServerTest, ChunkedUploadAndLimits) {
  auto sink = std::make_shared<Sink>(100000);
  router = [&sink](HttpRequest& head) {
    BodyRoute r;
    if (head.path == "/up") r.sink = sink;
    if (head.path == "/deny") {
      HttpResponse no;
      no.status = 401;
      no.body = "denied";
      r.reject = no;
    }
    return r;
  };
  Start();
  {
    Conn c(server_->port());
    c.Send("PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    EXPECT_NE(c.ReadUntil("got 11").find("201"), std::string::npos);
    EXPECT_EQ(sink->data, "hello world");
  }
  {  // a declared length over the sink's limit: 413 before any Write
    sink = std::make_shared<Sink>(100000);
    Conn c(server_->port());
    c.Send("PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n");
    EXPECT_NE(c.ReadUntil("}").find("413"), std::string::npos);
    EXPECT_EQ(sink->pieces, 0);
  }
  {  // a chunked body growing past the limit: Finish(TooLarge)
    sink = std::make_shared<Sink>(1000);
    Conn c(server_->port());
    c.Send("PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + std::string(2000, 'z') +
           "\r\n0\r\n\r\n");
    EXPECT_NE(c.ReadUntil("got").find("413"), std::string::npos);
    ASSERT_TRUE(sink->finished);
    EXPECT_EQ(sink->finished->code(), Code::kTooLarge);
  }
  {  // a failing Write ends the upload with the sink's answer
    sink = std::make_shared<Sink>(1 << 20);
    sink->fail_after = 1;
    Conn c(server_->port());
    c.Send("PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789");
    EXPECT_NE(c.ReadUntil("got").find("500"), std::string::npos);
    ASSERT_TRUE(sink->finished);
    EXPECT_EQ(sink->finished->code(), Code::kIOError);
  }
  {  // refused from the head: answered without reading the body
    Conn c(server_->port());
    c.Send("PUT /deny HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    std::string r = c.ReadUntil("denied");
    EXPECT_NE(r.find("401"), std::string::npos) << r;
    EXPECT_EQ(r.find("100 Continue"), std::string::npos) << r;
  }
  {  // Expect: 100-continue on an accepted upload
    sink = std::make_shared<Sink>(1000);
    Conn c(server_->port());
    c.Send("PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_NE(c.ReadUntil("100 Continue").find("100 Continue"), std::string::npos);
    c.Send("abcde");
    EXPECT_NE(c.ReadUntil("got 5").find("201"), std::string::npos);
  }
}

TEST_F(HttpServerTest, ChunkedDownloadInPieces) {
  Start();
  download = std::make_shared<Pieces>(5, 100000);
  Conn c(server_->port());
  c.Send("GET /download HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string raw = c.ReadUntil("\r\n0\r\n\r\n");
  EXPECT_NE(raw.find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_NE(raw.find("application/octet-stream"), std::string::npos);
  bool complete = false;
  std::string body = Dechunk(raw, &complete);
  EXPECT_TRUE(complete);
  ASSERT_EQ(body.size(), 500000u);
  EXPECT_EQ(body[0], 'a');
  EXPECT_EQ(body[499999], 'e');
  // The connection stays usable.
  c.Send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(c.ReadUntil("body=").find("GET /after"), std::string::npos);
}

TEST_F(HttpServerTest, FailedDownloadIsTruncatedAndClosed) {
  Start();
  download = std::make_shared<Pieces>(5, 1000, /*fail_at=*/2);
  Conn c(server_->port());
  c.Send("GET /download HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string raw = c.ReadUntil("never appears");  // reads until the server closes
  bool complete = true;
  std::string body = Dechunk(raw, &complete);
  EXPECT_FALSE(complete);
  EXPECT_EQ(body.size(), 2000u);
}

}  // namespace
}  // namespace warren::http

namespace warren::http {
namespace {

// The pool's queue is bounded: with one worker busy and one request
// waiting, the next is answered 503 in the error envelope at once, and the
// waiting ones still complete.
TEST_F(HttpServerTest, FullWorkerQueueAnswers503) {
  ServerOptions o;
  o.worker_threads = 1;
  o.max_queued_requests = 1;
  Start(o);
  Conn a(server_->port()), b(server_->port()), c(server_->port());
  a.Send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n");
  WaitBlocked(1);  // the only worker is busy
  b.Send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n");
  while (server_->queued_requests() < 1) std::this_thread::yield();  // b waits for the worker
  c.Send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string rc = c.ReadUntil("}");
  EXPECT_NE(rc.find("HTTP/1.1 503"), std::string::npos) << rc;
  EXPECT_NE(rc.find("{\"error\":\"overloaded_error\"}"), std::string::npos) << rc;
  // The refused connection stays usable once there is room again.
  Release();
  EXPECT_NE(a.ReadUntil("unblocked").find("200 OK"), std::string::npos);
  EXPECT_NE(b.ReadUntil("unblocked").find("200 OK"), std::string::npos);
  c.Send("GET /y HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(c.ReadUntil("body=").find("200 OK"), std::string::npos);
}

// A malformed chunked body gets a 400 in the envelope, not a bare close.
TEST_F(HttpServerTest, MalformedChunkedBodyIs400) {
  Start();
  for (const char* size : {"ZZZ", "fffffffffffffffffffff", "-1", "1;\x01"}) {
    Conn c(server_->port());
    c.Send(std::string("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n") + size + "\r\nabc\r\n0\r\n\r\n");
    std::string r = c.ReadUntil("}");
    EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << size << ": " << r;
    EXPECT_NE(r.find("{\"error\":\"invalid_request_error\"}"), std::string::npos) << size << ": " << r;
  }
  // The same through a streamed-upload route: the sink is told, the
  // client gets the sink's answer.
  auto sink = std::make_shared<Sink>(1 << 20);
  router = [sink](HttpRequest& h) { return BodyRoute{h.path == "/sink" ? sink : nullptr, std::nullopt}; };
  server_.reset();
  Start();
  Conn c(server_->port());
  c.Send("POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n");
  std::string r = c.ReadUntil("got ");
  ASSERT_TRUE(sink->finished.has_value()) << r;
  EXPECT_EQ(sink->finished->code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace warren::http
