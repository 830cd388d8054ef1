// WebSocket support of HttpServer, through the real server on port 0 with a
// Boost.Beast client: framing both ways, refused upgrades (plain HTTP error
// before any 101), 426 for a plain GET, the message size limit (1009),
// server-initiated close, output backpressure (kFull then OnDrained), input
// pause/resume, the idle timeout and shutdown.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "http/http_server.h"

namespace warren::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bws = boost::beast::websocket;
using tcp = asio::ip::tcp;

HttpResponse Err(int status, std::string_view type, std::string_view msg, std::string_view) {
  HttpResponse r;
  r.status = status;
  r.body = std::string("{\"type\":\"error\",\"error\":{\"type\":\"") + std::string(type) + "\",\"message\":\"" +
           std::string(msg) + "\"}}";
  return r;
}

// Echoes each message; a few commands drive the server side.
class Echo final : public WebSocketHandler {
 public:
  WebSocketLimits limits;
  WebSocketLimits Limits() const override { return limits; }
  void OnOpen(std::shared_ptr<WebSocketConnection> c) override {
    std::lock_guard<std::mutex> l(mu);
    conn = c;
    opened++;
    cv.notify_all();
  }
  bool OnMessage(std::string_view data, bool binary) override {
    std::string msg(data);
    std::shared_ptr<WebSocketConnection> c;
    {
      std::lock_guard<std::mutex> l(mu);
      received.push_back(msg);
      c = conn;
      cv.notify_all();
    }
    if (msg == "close") {
      c->Close(4000, "bye");
    } else if (msg == "flood") {
      for (int i = 0; i < 64; i++) {
        auto r = c->Send(std::string(16 * 1024, static_cast<char>('a' + i % 26)), true);
        std::lock_guard<std::mutex> l(mu);
        if (r == WebSocketConnection::SendResult::kFull) full++;
      }
    } else if (msg == "pause") {
      return false;
    } else {
      c->Send("echo:" + msg, binary);
    }
    return true;
  }
  void OnDrained() override {
    std::lock_guard<std::mutex> l(mu);
    drained++;
    cv.notify_all();
  }
  void OnClose() override {
    std::lock_guard<std::mutex> l(mu);
    closed++;
    cv.notify_all();
  }
  template <class Pred>
  bool WaitFor(Pred p) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, std::chrono::seconds(20), p);
  }

  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<WebSocketConnection> conn;
  std::vector<std::string> received;
  int opened = 0, closed = 0, full = 0, drained = 0;
};

class WebSocketTest : public ::testing::Test {
 protected:
  void Start(ServerOptions o = {}) {
    o.listen = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(
        o,
        [this](HttpRequest& r) {
          HandlerResult h;
          if (r.path == "/ws") {
            if (r.Query("ticket").value_or("") != "good") {
              h.response = Err(401, "authentication_error", "bad ticket", "");
              return h;
            }
            h.websocket = echo;
          } else {
            h.response.body = "plain";
          }
          return h;
        },
        Err);
    ASSERT_TRUE(server_->Start().ok());
  }
  // A connected, handshaken client.
  std::unique_ptr<bws::stream<tcp::socket>> Connect(const std::string& target = "/ws?ticket=good") {
    auto ws = std::make_unique<bws::stream<tcp::socket>>(ioc_);
    ws->next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
    ws->handshake("127.0.0.1", target);
    return ws;
  }
  std::string Read(bws::stream<tcp::socket>& ws, bool* binary = nullptr) {
    beast::flat_buffer b;
    ws.read(b);
    if (binary) *binary = ws.got_binary();
    return beast::buffers_to_string(b.data());
  }

  asio::io_context ioc_;
  std::shared_ptr<Echo> echo = std::make_shared<Echo>();
  std::unique_ptr<HttpServer> server_;
};

TEST_F(WebSocketTest, TextAndBinaryFramesBothWays) {
  Start();
  auto ws = Connect();
  ws->text(true);
  ws->write(asio::buffer(std::string("hello")));
  bool binary = true;
  EXPECT_EQ(Read(*ws, &binary), "echo:hello");
  EXPECT_FALSE(binary);
  ws->binary(true);
  std::string bytes("\x00\xff\x1b[A", 5);
  ws->write(asio::buffer(bytes));
  EXPECT_EQ(Read(*ws, &binary), "echo:" + bytes);
  EXPECT_TRUE(binary);
  EXPECT_EQ(server_->websockets(), 1u);
  ws->close(bws::close_code::normal);
  EXPECT_TRUE(echo->WaitFor([&] { return echo->closed == 1; }));
  EXPECT_EQ(server_->websockets(), 0u);
}

TEST_F(WebSocketTest, RefusedUpgradeIsAPlainHttpErrorAndPlainGetIs426) {
  Start();
  {
    auto ws = std::make_unique<bws::stream<tcp::socket>>(ioc_);
    ws->next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
    bws::response_type res;
    beast::error_code ec;
    ws->handshake(res, "127.0.0.1", "/ws?ticket=bad", ec);
    EXPECT_TRUE(ec);
    EXPECT_EQ(res.result_int(), 401u);
    EXPECT_NE(res.body().find("authentication_error"), std::string::npos) << res.body();
  }
  {
    tcp::socket s(ioc_);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
    beast::http::request<beast::http::empty_body> req{beast::http::verb::get, "/ws?ticket=good", 11};
    req.set(beast::http::field::host, "x");
    beast::http::write(s, req);
    beast::flat_buffer b;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(s, b, res);
    EXPECT_EQ(res.result_int(), 426u);
    EXPECT_NE(res.body().find("WebSocket"), std::string::npos);
  }
  EXPECT_EQ(echo->opened, 0);
}

TEST_F(WebSocketTest, OversizedMessageClosesWith1009) {
  echo->limits.max_message_bytes = 1024;
  Start();
  auto ws = Connect();
  ws->write(asio::buffer(std::string(100, 'x')));
  EXPECT_EQ(Read(*ws), "echo:" + std::string(100, 'x'));
  ws->write(asio::buffer(std::string(4096, 'x')));
  beast::flat_buffer b;
  beast::error_code ec;
  ws->read(b, ec);
  // The server's close frame arrives (1009); the client's reply may then
  // meet a closed socket.
  EXPECT_TRUE(ec);
  EXPECT_EQ(ws->reason().code, bws::close_code::too_big);
  EXPECT_TRUE(echo->WaitFor([&] { return echo->closed == 1; }));
}

TEST_F(WebSocketTest, ServerCloseSendsCodeAndReasonAfterQueuedMessages) {
  Start();
  auto ws = Connect();
  ws->write(asio::buffer(std::string("first")));
  ws->write(asio::buffer(std::string("close")));
  EXPECT_EQ(Read(*ws), "echo:first");
  beast::flat_buffer b;
  beast::error_code ec;
  ws->read(b, ec);
  EXPECT_EQ(ec, bws::error::closed);
  EXPECT_EQ(ws->reason().code, 4000);
  EXPECT_EQ(std::string(ws->reason().reason.c_str()), "bye");
  EXPECT_TRUE(echo->WaitFor([&] { return echo->closed == 1; }));
  // Sends after the close are refused.
  EXPECT_EQ(echo->conn->Send("late", false), WebSocketConnection::SendResult::kClosed);
}

TEST_F(WebSocketTest, OutputBackpressureReportsFullThenDrained) {
  echo->limits.max_send_queue_bytes = 64 * 1024;
  Start();
  auto ws = Connect();
  ws->write(asio::buffer(std::string("flood")));
  // 64 x 16 KiB queued at once against a 64 KiB bound: the producer is told.
  for (int i = 0; i < 64; i++) {
    std::string m = Read(*ws);
    ASSERT_EQ(m.size(), 16u * 1024);
    EXPECT_EQ(m[0], static_cast<char>('a' + i % 26));
  }
  EXPECT_TRUE(echo->WaitFor([&] { return echo->drained >= 1; }));
  EXPECT_GT(echo->full, 0);
}

TEST_F(WebSocketTest, PausedReadingResumesInOrder) {
  Start();
  auto ws = Connect();
  ws->write(asio::buffer(std::string("pause")));
  ws->write(asio::buffer(std::string("after")));
  ASSERT_TRUE(echo->WaitFor([&] { return echo->received.size() == 1; }));
  // While paused, "after" stays unread by the handler.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  {
    std::lock_guard<std::mutex> l(echo->mu);
    EXPECT_EQ(echo->received, std::vector<std::string>{"pause"});
  }
  echo->conn->ResumeReading();
  EXPECT_EQ(Read(*ws), "echo:after");
}

TEST_F(WebSocketTest, IdlePeerIsClosed) {
  echo->limits.idle_timeout = std::chrono::seconds(1);
  Start();
  auto ws = Connect();
  // The client never reads, so it never answers the server's pings.
  EXPECT_TRUE(echo->WaitFor([&] { return echo->closed == 1; }));
  EXPECT_EQ(server_->websockets(), 0u);
}

TEST_F(WebSocketTest, StopClosesOpenWebSockets) {
  Start();
  auto ws = Connect();
  ws->write(asio::buffer(std::string("x")));
  EXPECT_EQ(Read(*ws), "echo:x");
  server_->Stop(std::chrono::seconds(5));
  EXPECT_EQ(echo->closed, 1);
  beast::flat_buffer b;
  beast::error_code ec;
  ws->read(b, ec);
  EXPECT_TRUE(ec);
}

}  // namespace
}  // namespace warren::http
