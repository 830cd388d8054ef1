#include "http/http_server.h"

#include <boost/asio.hpp>
#include <boost/asio/experimental/as_tuple.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <deque>
#include <list>
#include <mutex>
#include <thread>

#include "common/ids.h"
#include "common/log.h"

namespace warren::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace bws = boost::beast::websocket;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------- helpers

static bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// A body the parser refused as malformed (bad chunk size or framing), as
// opposed to a client that went away or stalled.
static bool IsMalformedBody(const beast::error_code& ec) {
  if (ec.category() != bhttp::make_error_code(bhttp::error::bad_chunk).category()) return false;
  switch (static_cast<bhttp::error>(ec.value())) {
    case bhttp::error::bad_chunk:
    case bhttp::error::bad_chunk_extension:
    case bhttp::error::bad_line_ending:
    case bhttp::error::bad_transfer_encoding:
    case bhttp::error::bad_field:
    case bhttp::error::bad_value:
    case bhttp::error::bad_obs_fold:
    case bhttp::error::unexpected_body:
      return true;
    default:
      return false;
  }
}

const std::string* Headers::Find(std::string_view name) const {
  for (const auto& [k, v] : items_)
    if (IEquals(k, name)) return &v;
  return nullptr;
}

std::optional<std::string> HttpRequest::Query(std::string_view name) const {
  std::optional<std::string> out;
  for (const auto& [k, v] : query)
    if (k == name) out = v;
  return out;
}

std::vector<std::string> HttpRequest::QueryAll(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : query)
    if (k == name) out.push_back(v);
  return out;
}

static int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool PercentDecode(std::string_view s, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return false;
      int hi = HexVal(s[i + 1]), lo = HexVal(s[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

// Splits the target into path and query. False on malformed escapes.
static bool ParseTarget(std::string_view target, HttpRequest* req) {
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  if (!PercentDecode(path, false, &req->path)) return false;
  if (q == std::string_view::npos) return true;
  std::string_view rest = target.substr(q + 1);
  size_t hash = rest.find('#');
  if (hash != std::string_view::npos) rest = rest.substr(0, hash);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view part = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string k, v;
    if (!PercentDecode(part.substr(0, eq), true, &k)) return false;
    if (eq != std::string_view::npos && !PercentDecode(part.substr(eq + 1), true, &v)) return false;
    req->query.emplace_back(std::move(k), std::move(v));
  }
  return true;
}

// ---------------------------------------------------------------- impl

// Lets wakers reach the loop from any thread, and stop once it is gone.
struct LoopRef {
  std::mutex mu;
  asio::io_context* ioc = nullptr;
  void Post(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu);
    if (ioc) asio::post(*ioc, std::move(fn));
  }
};

// Wake-up state of one parked connection; touched only on the I/O thread
// except through LoopRef::Post.
struct Parked {
  asio::steady_timer* timer = nullptr;  // valid while `alive`
  bool alive = true;
  bool pending = false;
};

// A waker callable from any thread: wakes `parked` on the I/O thread.
static std::function<void()> MakeWaker(std::shared_ptr<LoopRef> loop, std::shared_ptr<Parked> parked) {
  return [loop, parked] {
    loop->Post([parked] {
      if (!parked->alive) return;
      parked->pending = true;
      parked->timer->cancel();
    });
  };
}

bool IsWebSocketUpgrade(const HttpRequest& req) {
  if (req.method != "GET") return false;
  const std::string* up = req.headers.Find("upgrade");
  const std::string* conn = req.headers.Find("connection");
  const std::string* key = req.headers.Find("sec-websocket-key");
  const std::string* ver = req.headers.Find("sec-websocket-version");
  if (!up || !conn || !key || key->empty() || !ver || *ver != "13") return false;
  if (!IEquals(*up, "websocket")) return false;
  // Connection is a token list ("keep-alive, Upgrade").
  std::string lower;
  for (char c : *conn) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return lower.find("upgrade") != std::string::npos;
}

// The server's side of one WebSocket: a send queue filled from any thread
// and drained by the writer coroutine on the I/O thread.
class WsConn final : public WebSocketConnection {
 public:
  WsConn(std::shared_ptr<LoopRef> loop, std::shared_ptr<Parked> writer, std::shared_ptr<Parked> reader,
         size_t max_queue)
      : loop_(std::move(loop)), writer_(std::move(writer)), reader_(std::move(reader)), max_queue_(max_queue) {}

  SendResult Send(std::string data, bool binary) override {
    SendResult r = SendResult::kOk;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closing_ || gone_) return SendResult::kClosed;
      bytes_ += data.size();
      queue_.emplace_back(std::move(data), binary);
      if (bytes_ > max_queue_) {
        full_ = true;
        r = SendResult::kFull;
      }
    }
    MakeWaker(loop_, writer_)();
    return r;
  }
  void Close(uint16_t code, std::string reason) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closing_ || gone_) return;
      closing_ = true;
      close_code_ = code;
      close_reason_ = std::move(reason);
    }
    MakeWaker(loop_, writer_)();
  }
  void ResumeReading() override { MakeWaker(loop_, reader_)(); }

  // Writer side (I/O thread).
  struct Batch {
    std::deque<std::pair<std::string, bool>> messages;
    bool close = false;
    uint16_t code = 1000;
    std::string reason;
  };
  Batch Take() {
    std::lock_guard<std::mutex> lock(mu_);
    Batch b;
    b.messages.swap(queue_);
    b.close = closing_;
    b.code = close_code_;
    b.reason = close_reason_;
    return b;
  }
  // After a batch was written: bytes off the queue; true when a kFull
  // producer should now be told (queue empty again).
  bool Written(size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    bytes_ -= std::min(bytes_, n);
    if (full_ && queue_.empty()) {
      full_ = false;
      return true;
    }
    return false;
  }
  void MarkGone() {
    std::lock_guard<std::mutex> lock(mu_);
    gone_ = true;
    queue_.clear();
    bytes_ = 0;
  }

 private:
  std::shared_ptr<LoopRef> loop_;
  std::shared_ptr<Parked> writer_;
  std::shared_ptr<Parked> reader_;
  const size_t max_queue_;
  std::mutex mu_;
  std::deque<std::pair<std::string, bool>> queue_;
  size_t bytes_ = 0;
  bool full_ = false;
  bool closing_ = false;
  bool gone_ = false;
  uint16_t close_code_ = 1000;
  std::string close_reason_;
};

struct HttpServer::Impl {
  ServerOptions opts;
  Handler handler;
  ErrorRenderer errors;
  BodyRouter body_router;  // set before Start(); empty = every body buffered
  asio::io_context ioc{1};
  asio::thread_pool pool;
  std::thread io_thread;
  std::shared_ptr<LoopRef> loop = std::make_shared<LoopRef>();
  std::optional<asio::ip::tcp::acceptor> tcp_acceptor;
  std::optional<asio::local::stream_protocol::acceptor> unix_acceptor;
  std::string url;
  uint16_t port = 0;
  std::atomic<size_t> conns{0};
  std::atomic<int> in_handlers{0};
  std::atomic<size_t> queued{0};  // handlers posted to the pool, not yet started
  std::atomic<size_t> websockets{0};
  bool stopping = false;  // I/O thread only
  std::atomic<bool> stopped{false};
  // Close hooks of live connections (I/O thread only).
  std::list<std::function<void()>> closers;

  Impl(ServerOptions o, Handler h, ErrorRenderer e)
      : opts(std::move(o)), handler(std::move(h)), errors(std::move(e)),
        pool(static_cast<size_t>(std::max(1, opts.worker_threads))) {}

  template <class Acceptor>
  awaitable<void> AcceptLoop(Acceptor& acceptor);
  template <class Socket>
  awaitable<void> Serve(Socket socket, std::string remote);

  HttpResponse RenderError(int status, std::string_view type, std::string_view msg, const std::string& rid) {
    return errors(status, type, msg, rid);
  }
};

template <class Stream>
static awaitable<beast::error_code> WriteResponse(Stream& stream, const HttpResponse& r,
                                                   const std::string& request_id, bool keep_alive,
                                                   unsigned version) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
  res.set(bhttp::field::server, "warren");
  res.set(bhttp::field::content_type, r.content_type);
  res.set("request-id", request_id);
  for (const auto& [k, v] : r.headers.items()) res.set(k, v);
  res.body() = r.body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  auto [ec, n] = co_await bhttp::async_write(stream, res, kTuple);
  co_return ec;
}

// Reads and discards up to `bytes` (bounded by kDrainCap and 30 s) so that a
// client still writing a rejected body reads the answer instead of a reset.
constexpr uint64_t kDrainCap = uint64_t{1} << 30;
template <class Stream>
static awaitable<void> Drain(Stream& stream, uint64_t bytes) {
  bytes = std::min(bytes, kDrainCap);
  stream.expires_after(std::chrono::seconds(30));
  static thread_local char sink[65536];
  while (bytes > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(bytes, sizeof sink));
    auto [ec, got] = co_await stream.async_read_some(asio::buffer(sink, want), kTuple);
    if (ec) break;
    bytes -= got;
  }
}

template <class Acceptor>
awaitable<void> HttpServer::Impl::AcceptLoop(Acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || stopping) co_return;
      log::Warn("http.accept_failed", {{"error", ec.message()}});
      // EMFILE and friends: back off briefly instead of spinning.
      asio::steady_timer t(ioc, std::chrono::milliseconds(50));
      co_await t.async_wait(kTuple);
      continue;
    }
    std::string remote;
    if constexpr (std::is_same_v<Acceptor, asio::ip::tcp::acceptor>) {
      beast::error_code ignored;
      socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      auto ep = socket.remote_endpoint(ignored);
      remote = ep.address().to_string() + ":" + std::to_string(ep.port());
    } else {
      remote = "unix";
    }
    if (conns.load() >= opts.max_connections) {
      // Over the cap: answer 503 and close, without parking anything.
      auto body = RenderError(503, "overloaded_error", "too many connections", NewId(idprefix::kRequest));
      std::string raw = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                        std::to_string(body.body.size()) + "\r\n\r\n" + body.body;
      beast::error_code ignored;
      asio::write(socket, asio::buffer(raw), ignored);
      socket.close(ignored);
      continue;
    }
    asio::co_spawn(ioc, Serve(std::move(socket), std::move(remote)), asio::detached);
  }
}

template <class Socket>
awaitable<void> HttpServer::Impl::Serve(Socket socket, std::string remote) {
  using Protocol = typename Socket::protocol_type;
  beast::basic_stream<Protocol, asio::any_io_executor, beast::unlimited_rate_policy> stream(std::move(socket));
  conns++;
  // Shutdown may only interrupt a connection that is idle (waiting for a
  // request) or parked (stream, long-poll); a response being computed or
  // written is allowed to finish.
  enum class Phase { kIdle, kBusy, kParked, kWebSocket };
  Phase phase = Phase::kIdle;
  std::shared_ptr<Parked> parked_now;
  auto closer_it = closers.insert(closers.end(), [&stream, &phase, &parked_now] {
    if (phase == Phase::kIdle) {
      beast::error_code ignored;
      stream.socket().shutdown(Protocol::socket::shutdown_receive, ignored);
      stream.cancel();
    } else if (phase == Phase::kWebSocket) {
      // Ends the reader (reading or paused); the writer follows.
      beast::error_code ignored;
      stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
      stream.cancel();
      if (parked_now && parked_now->alive) {
        parked_now->pending = true;
        parked_now->timer->cancel();
      }
    } else if (phase == Phase::kParked && parked_now && parked_now->alive) {
      parked_now->pending = true;
      parked_now->timer->cancel();
    }
  });
  struct Guard {
    Impl* self;
    decltype(closer_it) it;
    ~Guard() {
      self->closers.erase(it);
      self->conns--;
    }
  } guard{this, closer_it};

  beast::flat_buffer buffer;
  bool first = true;
  for (;;) {
    if (stopping) break;
    // The head is read with an empty body; the body is then read buffered
    // (string_body, max_body_bytes) or streamed into a BodySink
    // (buffer_body, the sink's limit), depending on the route.
    bhttp::request_parser<bhttp::empty_body> head;
    head.header_limit(static_cast<std::uint32_t>(opts.max_header_bytes));
    head.body_limit(boost::none);  // checked below, once the route's limit is known
    stream.expires_after(first ? opts.header_timeout : opts.idle_timeout);
    phase = Phase::kIdle;
    auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, head, kTuple);
    phase = Phase::kBusy;
    std::string rid = NewId(idprefix::kRequest);
    if (ec) {
      if (ec == bhttp::error::header_limit) {
        co_await WriteResponse(stream, RenderError(431, "invalid_request_error", "request headers too large", rid),
                               rid, false, 11);
      } else if (ec != bhttp::error::end_of_stream && ec != beast::error::timeout &&
                 ec != asio::error::operation_aborted && ec != asio::error::connection_reset &&
                 ec != asio::error::eof && buffer.size() > 0) {
        co_await WriteResponse(stream, RenderError(400, "invalid_request_error", "malformed HTTP request", rid), rid,
                               false, 11);
      }
      break;
    }
    first = false;
    unsigned version = head.get().version();
    HttpRequest req;
    req.method = std::string(head.get().method_string());
    req.target = std::string(head.get().target());
    req.remote = remote;
    req.request_id = rid;
    for (const auto& f : head.get()) req.headers.Add(std::string(f.name_string()), std::string(f.value()));
    bool keep_alive = head.get().keep_alive();
    if (!ParseTarget(req.target, &req)) {
      co_await WriteResponse(stream, RenderError(400, "invalid_request_error", "malformed request target", rid), rid,
                             false, version);
      break;
    }
    // Kept for the WebSocket handshake (the parser is moved below).
    std::optional<bhttp::request<bhttp::empty_body>> upgrade_req;
    if (bws::is_upgrade(head.get())) upgrade_req = head.get();
    const uint64_t declared = head.content_length().value_or(0);
    const std::string* expect = req.headers.Find("expect");
    const bool expect_continue = expect && IEquals(*expect, "100-continue");

    // Route the body.
    std::shared_ptr<BodySink> sink;
    if (!head.is_done() && body_router) {
      in_handlers++;
      HttpRequest* req_ptr = &req;
      auto route_fn = [this, req_ptr]() -> awaitable<BodyRoute> {
        try {
          co_return body_router(*req_ptr);
        } catch (const std::exception& e) {
          log::Error("http.body_router_exception", {{"error", e.what()}, {"path", req_ptr->path}});
          co_return BodyRoute{nullptr, RenderError(500, "api_error", "internal error", req_ptr->request_id)};
        }
      };
      BodyRoute route = co_await asio::co_spawn(pool, route_fn, use_awaitable);
      in_handlers--;
      if (route.reject) {
        // Refused before reading the body: answer, then drain what the
        // client may still send (unless it waits for 100-continue).
        co_await WriteResponse(stream, *route.reject, rid, false, version);
        if (!expect_continue) co_await Drain(stream, head.chunked() ? kDrainCap : declared);
        break;
      }
      sink = std::move(route.sink);
    }
    const uint64_t limit = sink ? sink->MaxBytes() : opts.max_body_bytes;
    if (!head.is_done() && head.content_length() && declared > limit) {
      co_await WriteResponse(
          stream, RenderError(413, "request_too_large", "request body exceeds " + std::to_string(limit) + " bytes", rid),
          rid, false, version);
      if (!expect_continue) co_await Drain(stream, declared - std::min<uint64_t>(declared, buffer.size()));
      break;
    }
    if (!head.is_done() && expect_continue) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      stream.expires_after(opts.write_timeout);
      auto [cec, cn] = co_await asio::async_write(stream, asio::buffer(kContinue), kTuple);
      if (cec) break;
    }

    int64_t t0 = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now().time_since_epoch()).count();
    HandlerResult result;
    if (sink) {
      // Streamed body: pieces of up to kPiece bytes go to the sink on the
      // worker pool while the next piece waits in the socket; the timeout
      // applies per piece, so a long upload is fine as long as it moves.
      constexpr size_t kPiece = 256 * 1024;
      bhttp::request_parser<bhttp::buffer_body> bp(std::move(head));
      bp.body_limit(limit);
      std::unique_ptr<char[]> piece(new char[kPiece]);
      Status body_status;
      bool peer_gone = false;
      while (!bp.is_done()) {
        bp.get().body().data = piece.get();
        bp.get().body().size = kPiece;
        stream.expires_after(opts.body_timeout);
        auto [rec, rn] = co_await bhttp::async_read(stream, buffer, bp, kTuple);
        if (rec == bhttp::error::need_buffer) rec = {};
        if (rec) {
          if (rec == bhttp::error::body_limit) {
            body_status = Status::TooLarge("request body exceeds " + std::to_string(limit) + " bytes");
          } else if (rec == beast::error::timeout) {
            body_status = Status::Timeout("request body read timed out");
          } else if (IsMalformedBody(rec)) {
            body_status = Status::InvalidArgument("malformed request body: " + rec.message());
          } else {
            body_status = Status::Cancelled("client went away during the upload");
            peer_gone = true;
          }
          break;
        }
        size_t got = kPiece - bp.get().body().size;
        if (got == 0) continue;
        in_handlers++;
        BodySink* raw_sink = sink.get();
        std::string_view data(piece.get(), got);
        auto write_fn = [raw_sink, data]() -> awaitable<Status> { co_return raw_sink->Write(data); };
        body_status = co_await asio::co_spawn(pool, write_fn, use_awaitable);
        in_handlers--;
        if (!body_status.ok()) break;
      }
      stream.expires_never();
      in_handlers++;
      BodySink* raw_sink = sink.get();
      const Status* st = &body_status;
      auto finish_fn = [this, raw_sink, st, req_ptr = &req]() -> awaitable<HandlerResult> {
        try {
          co_return raw_sink->Finish(*st);
        } catch (const std::exception& e) {
          log::Error("http.handler_exception", {{"error", e.what()}, {"path", req_ptr->path}});
          co_return HandlerResult{RenderError(500, "api_error", "internal error", req_ptr->request_id)};
        }
      };
      result = co_await asio::co_spawn(pool, finish_fn, use_awaitable);
      in_handlers--;
      if (peer_gone) break;
      if (!body_status.ok()) {
        // The rest of the body is unread: answer, drain, close.
        stream.expires_after(opts.write_timeout);
        co_await WriteResponse(stream, result.response, rid, false, version);
        co_await Drain(stream, kDrainCap);
        break;
      }
    } else {
      bhttp::request_parser<bhttp::string_body> parser(std::move(head));
      parser.body_limit(opts.max_body_bytes);
      stream.expires_after(opts.body_timeout);
      if (!parser.is_done()) {
        auto [ec2, n2] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
        if (ec2) {
          if (ec2 == bhttp::error::body_limit) {
            co_await WriteResponse(stream,
                                   RenderError(413, "request_too_large",
                                               "request body exceeds " + std::to_string(opts.max_body_bytes) + " bytes",
                                               rid),
                                   rid, false, version);
            // Chunked body over the limit: drain what the client still sends.
            co_await Drain(stream, kDrainCap);
          } else if (ec2 == beast::error::timeout) {
            co_await WriteResponse(stream, RenderError(408, "timeout_error", "request body read timed out", rid), rid,
                                   false, version);
          } else if (IsMalformedBody(ec2)) {
            // A bad chunk size ("ZZZ", or one that overflows) or framing:
            // answered like every other malformed request, then closed.
            co_await WriteResponse(
                stream, RenderError(400, "invalid_request_error", "malformed request body: " + ec2.message(), rid), rid,
                false, version);
          }
          break;
        }
      }
      stream.expires_never();
      req.body = std::move(parser.get().body());
      if (queued.load() >= opts.max_queued_requests) {
        // The pool's queue is full: refuse now rather than queue without
        // bound. The body was read, so the connection can stay open.
        co_await WriteResponse(stream,
                               RenderError(503, "overloaded_error",
                                           "server busy: " + std::to_string(opts.max_queued_requests) +
                                               " requests are waiting for a worker; retry later",
                                           rid),
                               rid, keep_alive, version);
        if (!keep_alive) break;
        continue;
      }
      in_handlers++;
      queued++;
      HandlerResult r = co_await asio::co_spawn(
          pool,
          [this, &req]() -> awaitable<HandlerResult> {
            queued--;
            try {
              co_return handler(req);
            } catch (const std::exception& e) {
              log::Error("http.handler_exception", {{"error", e.what()}, {"path", req.path}});
              co_return HandlerResult{RenderError(500, "api_error", "internal error", req.request_id)};
            }
          },
          use_awaitable);
      in_handlers--;
      result = std::move(r);
    }

    if (result.poll) {
      auto poll = result.poll;
      asio::steady_timer timer(ioc);
      auto parked = std::make_shared<Parked>();
      parked->timer = &timer;
      parked_now = parked;
      phase = Phase::kParked;
      poll->SetWaker(MakeWaker(loop, parked));
      auto deadline = std::chrono::steady_clock::now() + poll->Timeout();
      std::optional<HttpResponse> done;
      bool deadline_passed = false;
      for (;;) {
        in_handlers++;
        // Capture a raw pointer: GCC 12 destroys a lambda temporary inside a
        // co_await expression twice (docs/QUEUE.md), which would drop an
        // extra reference of a shared_ptr capture. `poll` outlives the loop.
        LongPoll* raw_poll = poll.get();
        done = co_await asio::co_spawn(
            pool, [raw_poll, deadline_passed]() -> awaitable<std::optional<HttpResponse>> {
              co_return raw_poll->TryComplete(deadline_passed);
            },
            use_awaitable);
        in_handlers--;
        if (done || deadline_passed) break;
        if (parked->pending) {
          parked->pending = false;
          continue;
        }
        if (stopping) {
          deadline_passed = true;
          continue;
        }
        timer.expires_at(deadline);
        auto [tec] = co_await timer.async_wait(kTuple);
        if (!tec) deadline_passed = true;
        parked->pending = false;
      }
      parked->alive = false;
      phase = Phase::kBusy;
      poll->OnClose();
      if (!done) done = RenderError(500, "api_error", "long-poll produced no response", rid);
      stream.expires_after(opts.write_timeout);
      auto wec = co_await WriteResponse(stream, *done, rid, keep_alive && !stopping, version);
      if (wec || !keep_alive) break;
      continue;
    }

    if (result.body) {
      // Chunked body read in pieces on the worker pool: one piece in memory.
      constexpr size_t kPiece = 256 * 1024;
      const HttpResponse& r = result.response;
      std::string reason(bhttp::obsolete_reason(static_cast<bhttp::status>(r.status)));
      bool ka = keep_alive && !stopping;
      std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason + "\r\n";
      out += "Server: warren\r\nContent-Type: " + r.content_type + "\r\nTransfer-Encoding: chunked\r\n";
      out += std::string("Connection: ") + (ka ? "keep-alive" : "close") + "\r\nrequest-id: " + rid + "\r\n";
      for (const auto& [k, v] : r.headers.items()) out += k + ": " + v + "\r\n";
      out += "\r\n";
      BodySource* raw_src = result.body.get();
      std::string piece;
      bool more = true, failed = false;
      while (more) {
        piece.clear();
        in_handlers++;
        std::string* piece_ptr = &piece;
        bool* more_ptr = &more;
        // (co_spawn needs a default-constructible result: Status, not Result.)
        auto read_fn = [raw_src, piece_ptr, more_ptr]() -> awaitable<Status> {
          try {
            Result<bool> r = raw_src->Read(piece_ptr, kPiece);
            if (!r.ok()) co_return r.status();
            *more_ptr = *r;
            co_return Status::Ok();
          } catch (const std::exception& e) {
            co_return Status::Internal(e.what());
          }
        };
        Status rs = co_await asio::co_spawn(pool, read_fn, use_awaitable);
        in_handlers--;
        if (!rs.ok()) {
          log::Warn("http.body_source_failed", {{"error", rs.ToString()}, {"path", req.path}, {"request_id", rid}});
          failed = true;
        }
        if (!piece.empty()) {
          char size[32];
          int sn = std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
          out.append(size, static_cast<size_t>(sn));
          out += piece;
          out += "\r\n";
        }
        if (!more && !failed) out += "0\r\n\r\n";
        if (!out.empty()) {
          stream.expires_after(opts.write_timeout);
          auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(out), kTuple);
          out.clear();
          if (wec) failed = true;
        }
        if (failed || stopping) break;
      }
      stream.expires_never();
      if (failed || more || !ka) break;
      continue;
    }

    if (result.websocket) {
      auto handler_ws = result.websocket;
      if (!upgrade_req || !IsWebSocketUpgrade(req)) {
        stream.expires_after(opts.write_timeout);
        HttpResponse r = RenderError(426, "invalid_request_error",
                                     "this route needs a WebSocket upgrade (Upgrade: websocket, "
                                     "Sec-WebSocket-Version: 13)",
                                     rid);
        r.headers.Add("Upgrade", "websocket");
        co_await WriteResponse(stream, r, rid, false, version);
        break;
      }
      const WebSocketLimits limits = handler_ws->Limits();
      stream.expires_never();  // the websocket stream runs its own timers
      bws::stream<decltype(stream)&> ws(stream);
      bws::stream_base::timeout to;
      to.handshake_timeout = opts.write_timeout;
      to.idle_timeout = limits.idle_timeout;
      to.keep_alive_pings = true;
      ws.set_option(to);
      ws.read_message_max(limits.max_message_bytes);
      ws.auto_fragment(false);
      ws.set_option(bws::stream_base::decorator([rid](bws::response_type& res) {
        res.set(bhttp::field::server, "warren");
        res.set("request-id", rid);
      }));
      phase = Phase::kWebSocket;
      auto [aec] = co_await ws.async_accept(*upgrade_req, kTuple);
      if (aec) break;
      websockets++;
      asio::steady_timer writer_timer(ioc), reader_timer(ioc);
      auto writer_parked = std::make_shared<Parked>();
      writer_parked->timer = &writer_timer;
      auto reader_parked = std::make_shared<Parked>();
      reader_parked->timer = &reader_timer;
      parked_now = reader_parked;
      auto conn = std::make_shared<WsConn>(loop, writer_parked, reader_parked, limits.max_send_queue_bytes);
      handler_ws->OnOpen(conn);
      // Writer: drains the send queue; a Close() request ends it with a
      // close frame (which also ends the reader).
      auto writer_done = std::make_shared<bool>(false);
      bool* reader_over = nullptr;
      bool reader_over_flag = false;
      reader_over = &reader_over_flag;
      asio::co_spawn(
          ioc,
          [&ws, conn, writer_parked, reader_parked, writer_done, reader_over, handler_ws]() -> awaitable<void> {
            for (;;) {
              WsConn::Batch b = conn->Take();
              bool failed = false;
              size_t n = 0;
              for (auto& [data, binary] : b.messages) {
                ws.binary(binary);
                auto [wec, wn] = co_await ws.async_write(asio::buffer(data), kTuple);
                if (wec) {
                  failed = true;
                  break;
                }
                n += data.size();
              }
              if (failed || *reader_over) break;
              if (conn->Written(n)) handler_ws->OnDrained();
              if (b.messages.empty() && b.close) {
                bws::close_reason cr(static_cast<bws::close_code>(b.code), b.reason);
                co_await ws.async_close(cr, kTuple);
                break;
              }
              if (!b.messages.empty()) continue;
              if (writer_parked->pending) {
                writer_parked->pending = false;
                continue;
              }
              writer_parked->timer->expires_at(asio::steady_timer::time_point::max());
              co_await writer_parked->timer->async_wait(kTuple);
              writer_parked->pending = false;
            }
            conn->MarkGone();
            *writer_done = true;
            if (reader_parked->alive) reader_parked->timer->cancel();
          },
          asio::detached);
      // Reader: one message at a time to the handler; paused while the
      // handler asks (OnMessage false) until ResumeReading.
      beast::flat_buffer rb;
      for (;;) {
        if (stopping) break;
        auto [rec, rn] = co_await ws.async_read(rb, kTuple);
        if (rec) break;
        std::string_view data(static_cast<const char*>(rb.data().data()), rb.size());
        bool more = handler_ws->OnMessage(data, ws.got_binary());
        rb.consume(rb.size());
        if (!more) {
          while (!reader_parked->pending && !stopping && !*writer_done) {
            reader_parked->timer->expires_at(asio::steady_timer::time_point::max());
            co_await reader_parked->timer->async_wait(kTuple);
          }
          reader_parked->pending = false;
          if (*writer_done) break;
        }
      }
      reader_parked->alive = false;
      *reader_over = true;
      conn->MarkGone();
      // Let the writer finish before `ws` goes away.
      if (writer_parked->alive) writer_parked->timer->cancel();
      beast::error_code ignored;
      stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
      stream.cancel();
      while (!*writer_done) {
        writer_parked->timer->cancel();
        asio::steady_timer t(ioc, std::chrono::milliseconds(1));
        co_await t.async_wait(kTuple);
      }
      writer_parked->alive = false;
      websockets--;
      handler_ws->OnClose();
      break;
    }

    if (result.stream) {
      auto src = result.stream;
      // Headers, then chunked frames until the source ends or the peer goes.
      std::string head = "HTTP/1.1 " + std::to_string(result.response.status) + " OK\r\n";
      head += "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n";
      head += "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nrequest-id: " + rid + "\r\n";
      for (const auto& [k, v] : result.response.headers.items()) head += k + ": " + v + "\r\n";
      head += "\r\n";
      stream.expires_after(opts.write_timeout);
      auto [hec, hn] = co_await asio::async_write(stream, asio::buffer(head), kTuple);
      if (hec) {
        src->OnClose();
        break;
      }
      asio::steady_timer timer(ioc);
      auto parked = std::make_shared<Parked>();
      parked->timer = &timer;
      parked_now = parked;
      phase = Phase::kParked;
      src->SetWaker(MakeWaker(loop, parked));
      // Detect the peer closing while we only write. The read must not
      // inherit the write deadline (basic_stream arms a read's timer when it
      // starts): a stream may stay silent for hours.
      auto peer_gone = std::make_shared<bool>(false);
      stream.expires_never();
      asio::co_spawn(
          ioc,
          [&stream, peer_gone, parked]() -> awaitable<void> {
            char scratch[512];
            for (;;) {
              auto [e, got] = co_await stream.async_read_some(asio::buffer(scratch), kTuple);
              if (e) break;
            }
            *peer_gone = true;
            if (parked->alive) {
              parked->pending = true;
              parked->timer->cancel();
            }
          },
          asio::detached);
      std::vector<std::shared_ptr<const std::string>> frames;
      bool more = true;
      while (more && !*peer_gone && !stopping) {
        frames.clear();
        more = src->Pull(&frames);
        if (!frames.empty()) {
          std::string out;
          for (const auto& f : frames) {
            char size[32];
            int sn = std::snprintf(size, sizeof size, "%zx\r\n", f->size());
            out.append(size, static_cast<size_t>(sn));
            out += *f;
            out += "\r\n";
          }
          stream.expires_after(opts.write_timeout);
          auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(out), kTuple);
          if (wec) break;
          continue;
        }
        if (!more) break;
        if (parked->pending) {
          parked->pending = false;
          continue;
        }
        timer.expires_after(src->KeepAliveInterval());
        auto [tec] = co_await timer.async_wait(kTuple);
        if (!tec) {
          // Silence: send a keep-alive.
          std::string ka = src->KeepAliveChunk();
          char size[32];
          int sn = std::snprintf(size, sizeof size, "%zx\r\n", ka.size());
          std::string out(size, static_cast<size_t>(sn));
          out += ka + "\r\n";
          stream.expires_after(opts.write_timeout);
          auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(out), kTuple);
          if (wec) break;
        }
        parked->pending = false;
      }
      if (!more && !*peer_gone) {
        stream.expires_after(opts.write_timeout);
        static const std::string kLast = "0\r\n\r\n";
        co_await asio::async_write(stream, asio::buffer(kLast), kTuple);
      }
      parked->alive = false;
      src->OnClose();
      // Let the reader coroutine finish before `stream` goes away.
      beast::error_code ignored;
      stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
      stream.cancel();
      while (!*peer_gone) {
        asio::steady_timer t(ioc, std::chrono::milliseconds(1));
        co_await t.async_wait(kTuple);
      }
      break;
    }

    int64_t t1 = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now().time_since_epoch()).count();
    log::Debug("http.request", {{"method", req.method}, {"path", req.path}, {"status", result.response.status},
                                {"us", t1 - t0}, {"request_id", rid}});
    stream.expires_after(opts.write_timeout);
    bool ka = keep_alive && !stopping;
    auto wec = co_await WriteResponse(stream, result.response, rid, ka, version);
    if (wec || !ka) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
  stream.socket().close(ignored);
}

// ---------------------------------------------------------------- server

HttpServer::HttpServer(ServerOptions options, Handler handler, ErrorRenderer errors)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler), std::move(errors))) {}

HttpServer::~HttpServer() { Stop(std::chrono::milliseconds(2000)); }

Status HttpServer::Start() {
  Impl& s = *impl_;
  beast::error_code ec;
  const std::string& listen = s.opts.listen;
  if (listen.rfind("unix:", 0) == 0) {
    std::string path = listen.substr(5);
    ::unlink(path.c_str());
    s.unix_acceptor.emplace(s.ioc);
    asio::local::stream_protocol::endpoint ep(path);
    s.unix_acceptor->open(ep.protocol(), ec);
    if (!ec) s.unix_acceptor->bind(ep, ec);
    if (!ec) s.unix_acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::IOError("listen on " + listen + ": " + ec.message());
    s.url = listen;
    asio::co_spawn(s.ioc, s.AcceptLoop(*s.unix_acceptor), asio::detached);
  } else {
    size_t colon = listen.rfind(':');
    if (colon == std::string::npos) return Status::InvalidArgument("listen address must be HOST:PORT or unix:PATH");
    std::string host = listen.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    int port = 0;
    try {
      port = std::stoi(listen.substr(colon + 1));
    } catch (...) {
      return Status::InvalidArgument("bad port in listen address " + listen);
    }
    if (port < 0 || port > 65535) return Status::InvalidArgument("bad port in listen address " + listen);
    auto addr = asio::ip::make_address(host.empty() ? "0.0.0.0" : (host == "localhost" ? "127.0.0.1" : host), ec);
    if (ec) return Status::InvalidArgument("bad host in listen address " + listen + ": " + ec.message());
    asio::ip::tcp::endpoint ep(addr, static_cast<uint16_t>(port));
    s.tcp_acceptor.emplace(s.ioc);
    s.tcp_acceptor->open(ep.protocol(), ec);
    if (!ec) s.tcp_acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) s.tcp_acceptor->bind(ep, ec);
    if (!ec) s.tcp_acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::IOError("listen on " + listen + ": " + ec.message());
    s.port = s.tcp_acceptor->local_endpoint().port();
    std::string shown = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
    s.url = "http://" + shown + ":" + std::to_string(s.port);
    asio::co_spawn(s.ioc, s.AcceptLoop(*s.tcp_acceptor), asio::detached);
  }
  {
    std::lock_guard<std::mutex> lock(s.loop->mu);
    s.loop->ioc = &s.ioc;
  }
  s.io_thread = std::thread([&s] {
    for (;;) {
      try {
        s.ioc.run();
        break;
      } catch (const std::exception& e) {
        log::Error("http.loop_exception", {{"error", e.what()}});
      }
    }
  });
  return Status::Ok();
}

void HttpServer::set_body_router(BodyRouter router) { impl_->body_router = std::move(router); }

std::string HttpServer::url() const { return impl_->url; }
uint16_t HttpServer::port() const { return impl_->port; }
size_t HttpServer::queued_requests() const { return impl_->queued.load(); }

size_t HttpServer::connections() const { return impl_->conns.load(); }
size_t HttpServer::websockets() const { return impl_->websockets.load(); }

void HttpServer::Stop(std::chrono::milliseconds grace) {
  Impl& s = *impl_;
  if (s.stopped.exchange(true)) return;
  if (!s.io_thread.joinable()) return;
  asio::post(s.ioc, [&s] {
    s.stopping = true;
    beast::error_code ignored;
    if (s.tcp_acceptor) s.tcp_acceptor->close(ignored);
    if (s.unix_acceptor) s.unix_acceptor->close(ignored);
    // Idle connections and parked streams end now; in-flight handlers finish.
    for (auto& close : s.closers) close();
  });
  auto deadline = std::chrono::steady_clock::now() + grace;
  while ((s.conns.load() > 0 || s.in_handlers.load() > 0) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // Closers again: a handler that finished may have parked a keep-alive read.
    asio::post(s.ioc, [&s] {
      for (auto& close : s.closers) close();
    });
  }
  {
    std::lock_guard<std::mutex> lock(s.loop->mu);
    s.loop->ioc = nullptr;
  }
  s.ioc.stop();
  s.io_thread.join();
  s.pool.join();
}

}  // namespace warren::http
