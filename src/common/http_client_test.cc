#include "common/http_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdlib>
#include <future>
#include <thread>

#include "common/testing/fake_http_server.h"

namespace warren {
namespace {

using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::ResponseWriter;
using namespace std::chrono_literals;

// Keeps a proxy configured in the developer's environment from routing these
// loopback requests elsewhere.
class HttpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"http_proxy", "https_proxy", "all_proxy", "HTTPS_PROXY", "ALL_PROXY", "no_proxy", "NO_PROXY"}) {
      ::unsetenv(v);
    }
  }
  std::shared_ptr<HttpClient> client_ = NewCurlHttpClient();
};

TEST_F(HttpClientTest, SendGetReturnsStatusHeadersAndBody) {
  FakeHttpServer server([](const FakeRequest&, ResponseWriter& w) {
    FakeHttpServer::Reply(w, 200, "hello", {{"X-Thing", "  v1 "}, {"Request-Id", "req_1"}});
  });
  HttpRequest req;
  req.url = server.url() + "/v1/x?y=1";
  req.headers = {{"x-api-key", "k1"}, {"anthropic-version", "2023-06-01"}};
  auto r = client_->Send(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  EXPECT_EQ(r->Header("x-thing").value_or(""), "v1");
  EXPECT_EQ(r->Header("REQUEST-ID").value_or(""), "req_1");
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[0].target, "/v1/x?y=1");
  EXPECT_EQ(reqs[0].Header("x-api-key"), "k1");
  EXPECT_EQ(reqs[0].Header("anthropic-version"), "2023-06-01");
  EXPECT_EQ(reqs[0].Header("user-agent"), "warren/0.1");
}

TEST_F(HttpClientTest, PostJsonAddsContentTypeAndNoExpect) {
  FakeHttpServer server([](const FakeRequest& r, ResponseWriter& w) { FakeHttpServer::Reply(w, 201, r.body); });
  HttpRequest req;
  req.method = "POST";
  req.url = server.url() + "/post";
  req.body = std::string(200'000, 'a');  // large enough that curl would send Expect: 100-continue
  auto r = client_->Send(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body.size(), 200'000u);
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].Header("content-type"), "application/json");
  EXPECT_EQ(reqs[0].Header("expect"), "");
  EXPECT_EQ(reqs[0].body, req.body);
}

TEST_F(HttpClientTest, OtherMethods) {
  FakeHttpServer server([](const FakeRequest& r, ResponseWriter& w) {
    FakeHttpServer::Reply(w, 200, r.method == "HEAD" ? "" : r.method + ":" + r.body);
  });
  for (std::string m : {"PUT", "DELETE", "PATCH"}) {
    HttpRequest req;
    req.method = m;
    req.url = server.url() + "/";
    req.body = m == "DELETE" ? "" : "{}";
    auto r = client_->Send(req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->body, m + ":" + req.body);
  }
  HttpRequest bad;
  bad.url = server.url() + "/";
  bad.body = "x";
  EXPECT_EQ(client_->Send(bad).status().code(), Code::kInvalidArgument);
}

TEST_F(HttpClientTest, ErrorStatusIsAResponseWithRetryAfter) {
  FakeHttpServer server([](const FakeRequest& r, ResponseWriter& w) {
    if (r.target == "/ms") {
      FakeHttpServer::Reply(w, 429, "{}", {{"retry-after", "7"}, {"retry-after-ms", "1500"}});
    } else {
      FakeHttpServer::Reply(w, 429, R"({"type":"error"})", {{"Retry-After", "2"}});
    }
  });
  HttpRequest req;
  req.url = server.url() + "/";
  auto r = client_->Send(req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->RetryAfterMs(0), 2000);
  req.url = server.url() + "/ms";
  r = client_->Send(req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->RetryAfterMs(0), 1500);
}

TEST(RetryAfterTest, Parses) {
  EXPECT_EQ(ParseRetryAfterMs("3", 0), 3000);
  EXPECT_EQ(ParseRetryAfterMs(" 0.5 ", 0), 500);
  EXPECT_EQ(ParseRetryAfterMs("0", 0), 0);
  EXPECT_EQ(ParseRetryAfterMs("", 0), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("-1", 0), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("soon", 0), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs(".", 0), std::nullopt);
  // 1994-11-06T08:49:37Z = 784111777 s.
  EXPECT_EQ(ParseRetryAfterMs("Sun, 06 Nov 1994 08:49:37 GMT", 784111770LL * 1'000'000), 7000);
  EXPECT_EQ(ParseRetryAfterMs("Sun, 06 Nov 1994 08:49:37 GMT", 784111790LL * 1'000'000), 0);
}

TEST_F(HttpClientTest, StreamDeliversChunksAsTheyArrive) {
  std::promise<void> first_seen;
  auto first_future = first_seen.get_future();
  std::atomic<bool> server_waited_ok{false};
  FakeHttpServer server([&](const FakeRequest&, ResponseWriter& w) {
    w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
    w.Write("data: one\n\n");
    // The second chunk is only sent once the client has seen the first: a
    // client that buffered the body would never get here.
    server_waited_ok = first_future.wait_for(20s) == std::future_status::ready;
    w.Write("data: two\n\n");
    w.End();
  });
  std::vector<std::string> chunks;
  int head_status = 0;
  std::string head_ct;
  StreamHandlers h;
  h.on_headers = [&](const HttpResponse& head) {
    head_status = head.status;
    head_ct = head.Header("content-type").value_or("");
    return true;
  };
  h.on_data = [&](std::string_view c) {
    chunks.emplace_back(c);
    if (chunks.size() == 1) first_seen.set_value();
    return true;
  };
  HttpRequest req;
  req.url = server.url() + "/stream";
  auto r = client_->Stream(req, h);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(server_waited_ok);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->body.empty());
  EXPECT_EQ(head_status, 200);
  EXPECT_EQ(head_ct, "text/event-stream");
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0], "data: one\n\n");
  EXPECT_EQ(chunks[1], "data: two\n\n");
}

// The head reaches on_headers as soon as the header block ends, before any
// body byte: a client can act on a stream that is open but still silent.
TEST_F(HttpClientTest, StreamHeadersArriveBeforeTheFirstBodyByte) {
  std::promise<void> head_seen;
  auto head_future = head_seen.get_future();
  std::atomic<bool> server_waited_ok{false};
  FakeHttpServer server([&](const FakeRequest&, ResponseWriter& w) {
    w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
    server_waited_ok = head_future.wait_for(20s) == std::future_status::ready;
    w.Write("data: late\n\n");
    w.End();
  });
  std::string body;
  StreamHandlers h;
  h.on_headers = [&](const HttpResponse& head) {
    EXPECT_TRUE(body.empty());
    EXPECT_EQ(head.status, 200);
    head_seen.set_value();
    return true;
  };
  h.on_data = [&](std::string_view c) {
    body.append(c);
    return true;
  };
  HttpRequest req;
  req.url = server.url() + "/stream";
  auto r = client_->Stream(req, h);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(server_waited_ok);
  EXPECT_EQ(body, "data: late\n\n");
}

TEST_F(HttpClientTest, StreamHeadersWithoutBodyStillReachHandler) {
  FakeHttpServer server([](const FakeRequest&, ResponseWriter& w) { FakeHttpServer::Reply(w, 204, ""); });
  int status = 0;
  StreamHandlers h;
  h.on_headers = [&](const HttpResponse& head) {
    status = head.status;
    return true;
  };
  HttpRequest req;
  req.url = server.url() + "/";
  auto r = client_->Stream(req, h);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(status, 204);
}

TEST_F(HttpClientTest, HandlerCanAbort) {
  FakeHttpServer server([](const FakeRequest&, ResponseWriter& w) {
    w.WriteHead(200, {});
    w.Write("abc");
    w.End();
  });
  HttpRequest req;
  req.url = server.url() + "/";
  StreamHandlers by_head;
  by_head.on_headers = [](const HttpResponse&) { return false; };
  EXPECT_EQ(client_->Stream(req, by_head).status().code(), Code::kCancelled);
  StreamHandlers by_data;
  by_data.on_data = [](std::string_view) { return false; };
  EXPECT_EQ(client_->Stream(req, by_data).status().code(), Code::kCancelled);
}

TEST_F(HttpClientTest, CancelTokenStopsAStalledStream) {
  std::atomic<bool> peer_closed{false};
  FakeHttpServer server([&](const FakeRequest&, ResponseWriter& w) {
    w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
    w.Write(": hi\n\n");
    for (int i = 0; i < 2000 && !peer_closed; i++) {
      std::this_thread::sleep_for(5ms);
      peer_closed = w.PeerClosed();
    }
  });
  CancelToken token;
  std::thread canceller;
  StreamHandlers h;
  h.on_data = [&](std::string_view) {
    canceller = std::thread([&] { token.Cancel(); });
    return true;
  };
  HttpRequest req;
  req.url = server.url() + "/";
  auto r = client_->Stream(req, h, &token);
  canceller.join();
  EXPECT_EQ(r.status().code(), Code::kCancelled) << r.status().ToString();
  EXPECT_TRUE(token.cancelled());
  // The connection is torn down, so the server sees the peer go away.
  for (int i = 0; i < 2000 && !peer_closed; i++) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(peer_closed);
}

TEST_F(HttpClientTest, CancelledTokenFailsFast) {
  CancelToken token;
  token.Cancel();
  HttpRequest req;
  req.url = "http://127.0.0.1:1/";
  EXPECT_EQ(client_->Send(req, &token).status().code(), Code::kCancelled);
}

TEST_F(HttpClientTest, TotalTimeout) {
  FakeHttpServer server([](const FakeRequest&, ResponseWriter& w) {
    for (int i = 0; i < 400 && !w.PeerClosed(); i++) std::this_thread::sleep_for(10ms);
  });
  HttpRequest req;
  req.url = server.url() + "/";
  req.total_timeout_ms = 200;
  EXPECT_EQ(client_->Send(req).status().code(), Code::kTimeout);
}

TEST_F(HttpClientTest, IdleTimeoutOnStalledStream) {
  FakeHttpServer server([](const FakeRequest&, ResponseWriter& w) {
    w.WriteHead(200, {});
    w.Write("x");
    for (int i = 0; i < 400 && !w.PeerClosed(); i++) std::this_thread::sleep_for(10ms);
  });
  HttpRequest req;
  req.url = server.url() + "/";
  req.idle_timeout_ms = 200;
  std::string got;
  StreamHandlers h;
  h.on_data = [&](std::string_view c) {
    got.append(c);
    return true;
  };
  auto r = client_->Stream(req, h);
  EXPECT_EQ(r.status().code(), Code::kTimeout) << r.status().ToString();
  EXPECT_EQ(got, "x");
}

TEST_F(HttpClientTest, ConnectionRefusedIsUnavailable) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);  // nothing listens on this port now
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  EXPECT_EQ(client_->Send(req).status().code(), Code::kUnavailable);
}

TEST_F(HttpClientTest, DroppedConnectionMidBodyIsUnavailable) {
  FakeHttpServer server([](const FakeRequest&, ResponseWriter& w) {
    w.WriteHead(200, {});
    w.Write("data: partial\n");
    w.Close();
  });
  HttpRequest req;
  req.url = server.url() + "/";
  StreamHandlers h;
  h.on_data = [](std::string_view) { return true; };
  EXPECT_EQ(client_->Stream(req, h).status().code(), Code::kUnavailable);
}

TEST_F(HttpClientTest, BufferedBodyIsBounded) {
  FakeHttpServer server([](const FakeRequest&, ResponseWriter& w) { FakeHttpServer::Reply(w, 200, std::string(5000, 'z')); });
  HttpRequest req;
  req.url = server.url() + "/";
  req.max_response_bytes = 100;
  EXPECT_EQ(client_->Send(req).status().code(), Code::kTooLarge);
}

TEST_F(HttpClientTest, BadInput) {
  HttpRequest req;
  req.url = "not a url";
  EXPECT_EQ(client_->Send(req).status().code(), Code::kInvalidArgument);
  req.url = "file:///etc/passwd";
  EXPECT_EQ(client_->Send(req).status().code(), Code::kInvalidArgument);
  req.url = "http://127.0.0.1:1/";
  req.headers = {{"x-evil", "a\r\nInjected: 1"}};
  EXPECT_EQ(client_->Send(req).status().code(), Code::kInvalidArgument);
}

TEST_F(HttpClientTest, ReusesKeepAliveConnections) {
  FakeHttpServer server([](const FakeRequest&, ResponseWriter& w) { FakeHttpServer::Reply(w, 200, "ok"); });
  HttpRequest req;
  req.url = server.url() + "/";
  for (int i = 0; i < 5; i++) ASSERT_TRUE(client_->Send(req).ok());
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(HttpClientTest, ConcurrentCallsFromManyThreads) {
  FakeHttpServer server([](const FakeRequest& r, ResponseWriter& w) { FakeHttpServer::Reply(w, 200, r.target); });
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 15; i++) {
        HttpRequest req;
        req.url = server.url() + "/" + std::to_string(t) + "/" + std::to_string(i);
        auto r = client_->Send(req);
        if (r.ok() && r->body == "/" + std::to_string(t) + "/" + std::to_string(i)) ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 90);
}

TEST_F(HttpClientTest, ProxyFromEnvironmentAndExplicit) {
  FakeHttpServer proxy([](const FakeRequest& r, ResponseWriter& w) { FakeHttpServer::Reply(w, 200, "via proxy " + r.target); });
  ::setenv("http_proxy", proxy.url().c_str(), 1);
  HttpRequest req;
  req.url = "http://upstream.invalid/v1/messages";
  auto r = client_->Send(req);
  ::unsetenv("http_proxy");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "via proxy http://upstream.invalid/v1/messages");

  req.proxy = proxy.url();
  r = client_->Send(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "via proxy http://upstream.invalid/v1/messages");

  // "-" disables proxies even when the environment names one.
  ::setenv("http_proxy", proxy.url().c_str(), 1);
  FakeHttpServer direct([](const FakeRequest& r, ResponseWriter& w) { FakeHttpServer::Reply(w, 200, "direct"); });
  req.proxy = "-";
  req.url = direct.url() + "/";
  r = client_->Send(req);
  ::unsetenv("http_proxy");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "direct");
}


// ---- StreamAsync: every async transfer on one curl-multi event loop

namespace async_test {

struct Outcome {
  std::promise<Result<HttpResponse>> promise;
  std::string body;
  std::thread::id handler_thread;
};

}  // namespace async_test

// 16 streams in flight at once: the server answers none of them until all
// 16 requests have arrived, so they cannot have run one after another; all
// handlers and completions run on one thread that is not the caller's.
TEST_F(HttpClientTest, StreamAsyncRunsManyTransfersOnOneThread) {
  constexpr int kN = 16;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  FakeHttpServer server([&](const FakeRequest& r, ResponseWriter& w) {
    {
      std::unique_lock<std::mutex> lock(mu);
      arrived++;
      cv.notify_all();
      cv.wait_for(lock, 30s, [&] { return arrived == kN; });
    }
    w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
    w.Write("data: " + r.target + "\n\n");
    w.Write("data: end\n\n");
    w.End();
  });
  std::vector<std::unique_ptr<async_test::Outcome>> outs;
  for (int i = 0; i < kN; i++) {
    auto o = std::make_unique<async_test::Outcome>();
    auto* out = o.get();
    HttpRequest req;
    req.url = server.url() + "/s" + std::to_string(i);
    StreamHandlers h;
    h.on_data = [out](std::string_view c) {
      out->body.append(c);
      out->handler_thread = std::this_thread::get_id();
      return true;
    };
    client_->StreamAsync(std::move(req), std::move(h), nullptr,
                         [out](Result<HttpResponse> r) { out->promise.set_value(std::move(r)); });
    outs.push_back(std::move(o));
  }
  std::thread::id loop_thread;
  for (int i = 0; i < kN; i++) {
    auto r = outs[i]->promise.get_future().get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(outs[i]->body, "data: /s" + std::to_string(i) + "\n\ndata: end\n\n");
    if (i == 0) loop_thread = outs[i]->handler_thread;
    EXPECT_EQ(outs[i]->handler_thread, loop_thread);
  }
  EXPECT_NE(loop_thread, std::this_thread::get_id());
  EXPECT_EQ(arrived, kN);
}

// Cancel() ends one stalled async stream promptly (the server sees the
// connection go) while another transfer on the same loop carries on.
TEST_F(HttpClientTest, StreamAsyncCancelEndsOneTransferOnly) {
  std::atomic<bool> peer_closed{false};
  std::atomic<bool> release_other{false};
  FakeHttpServer server([&](const FakeRequest& r, ResponseWriter& w) {
    w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
    w.Write(": hi\n\n");
    if (r.target == "/stall") {
      for (int i = 0; i < 6000 && !peer_closed; i++) {
        std::this_thread::sleep_for(5ms);
        peer_closed = w.PeerClosed();
      }
      return;
    }
    for (int i = 0; i < 6000 && !release_other; i++) std::this_thread::sleep_for(5ms);
    w.Write("data: done\n\n");
    w.End();
  });
  CancelToken token;
  std::promise<void> first_byte;
  std::atomic<bool> signalled{false};
  std::promise<Result<HttpResponse>> stalled, other;
  HttpRequest a;
  a.url = server.url() + "/stall";
  StreamHandlers ha;
  ha.on_data = [&](std::string_view) {
    if (!signalled.exchange(true)) first_byte.set_value();
    return true;
  };
  client_->StreamAsync(a, ha, &token, [&](Result<HttpResponse> r) { stalled.set_value(std::move(r)); });
  HttpRequest b;
  b.url = server.url() + "/other";
  std::string body;
  StreamHandlers hb;
  hb.on_data = [&](std::string_view c) {
    body.append(c);
    return true;
  };
  client_->StreamAsync(b, hb, nullptr, [&](Result<HttpResponse> r) { other.set_value(std::move(r)); });
  first_byte.get_future().get();
  token.Cancel();
  auto r = stalled.get_future().get();
  EXPECT_EQ(r.status().code(), Code::kCancelled) << r.status().ToString();
  for (int i = 0; i < 2000 && !peer_closed; i++) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(peer_closed);
  release_other = true;
  auto o = other.get_future().get();
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(body, ": hi\n\ndata: done\n\n");
}

TEST_F(HttpClientTest, StreamAsyncErrorsAndTimeouts) {
  FakeHttpServer server([](const FakeRequest& r, ResponseWriter& w) {
    if (r.target == "/429") {
      FakeHttpServer::Reply(w, 429, "{}", {{"retry-after-ms", "1500"}});
      return;
    }
    w.WriteHead(200, {});
    w.Write("x");
    for (int i = 0; i < 400 && !w.PeerClosed(); i++) std::this_thread::sleep_for(10ms);
  });
  auto run = [&](HttpRequest req, const CancelToken* token = nullptr) {
    std::promise<Result<HttpResponse>> p;
    client_->StreamAsync(std::move(req), {}, token, [&](Result<HttpResponse> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  };
  HttpRequest limited;
  limited.url = server.url() + "/429";
  auto r = run(limited);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->RetryAfterMs(0), 1500);
  HttpRequest idle;
  idle.url = server.url() + "/idle";
  idle.idle_timeout_ms = 200;
  EXPECT_EQ(run(idle).status().code(), Code::kTimeout);
  CancelToken cancelled;
  cancelled.Cancel();
  EXPECT_EQ(run(idle, &cancelled).status().code(), Code::kCancelled);
  HttpRequest refused;
  refused.url = "http://127.0.0.1:1/";
  EXPECT_EQ(run(refused).status().code(), Code::kUnavailable);
}

// Destroying the client ends async transfers still running with kCancelled.
TEST_F(HttpClientTest, StreamAsyncEndsWithTheClient) {
  FakeHttpServer server([](const FakeRequest&, ResponseWriter& w) {
    w.WriteHead(200, {});
    w.Write("x");
    for (int i = 0; i < 3000 && !w.PeerClosed(); i++) std::this_thread::sleep_for(10ms);
  });
  auto client = NewCurlHttpClient();
  std::promise<Result<HttpResponse>> p;
  std::promise<void> started;
  HttpRequest req;
  req.url = server.url() + "/";
  StreamHandlers h;
  h.on_data = [&](std::string_view) {
    started.set_value();
    return true;
  };
  client->StreamAsync(req, h, nullptr, [&](Result<HttpResponse> r) { p.set_value(std::move(r)); });
  started.get_future().get();
  client.reset();
  EXPECT_EQ(p.get_future().get().status().code(), Code::kCancelled);
}

}  // namespace
}  // namespace warren
