#include "common/http_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <map>
#include <thread>

namespace warren {
namespace {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

int64_t MonoMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::optional<std::string> FindHeader(const HttpHeaders& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return v;
  }
  return std::nullopt;
}

std::optional<int64_t> ParseRetryAfterMs(std::string_view value, int64_t now_micros) {
  value = Trim(value);
  if (value.empty()) return std::nullopt;
  // delay-seconds (integers per RFC 9110; fractions accepted as some servers send them).
  bool numeric = true;
  int dots = 0;
  for (char c : value) {
    if (c == '.') {
      dots++;
    } else if (c < '0' || c > '9') {
      numeric = false;
      break;
    }
  }
  if (numeric && dots <= 1 && value != ".") {
    double secs = std::strtod(std::string(value).c_str(), nullptr);
    if (!std::isfinite(secs) || secs < 0) return std::nullopt;
    secs = std::min(secs, 1e9);
    return static_cast<int64_t>(secs * 1000.0);
  }
  // HTTP-date, IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
  std::string s(value);
  struct tm tm = {};
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  int64_t at = static_cast<int64_t>(timegm(&tm)) * 1000;
  int64_t now = now_micros / 1000;
  return std::max<int64_t>(0, at - now);
}

std::optional<int64_t> HttpResponse::RetryAfterMs(int64_t now_micros) const {
  if (auto ms = Header("retry-after-ms")) {
    char* end = nullptr;
    double v = std::strtod(ms->c_str(), &end);
    if (end != ms->c_str() && std::isfinite(v) && v >= 0) return static_cast<int64_t>(v);
  }
  if (auto ra = Header("retry-after")) return ParseRetryAfterMs(*ra, now_micros);
  return std::nullopt;
}

void CancelToken::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
  for (auto& [id, wake] : wakers_) wake();
}

int CancelToken::AddWaker(std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled()) {
    wake();
    return -1;
  }
  int id = next_++;
  wakers_.emplace_back(id, std::move(wake));
  return id;
}

void CancelToken::RemoveWaker(int handle) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(wakers_, [handle](const auto& w) { return w.first == handle; });
}

void HttpClient::StreamAsync(HttpRequest request, StreamHandlers handlers, const CancelToken* cancel,
                             StreamDone done) {
  // For fakes: a thread of its own per call.
  std::thread([this, request = std::move(request), handlers = std::move(handlers), cancel,
               done = std::move(done)]() mutable { done(Stream(request, handlers, cancel)); })
      .detach();
}

namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// One pooled transfer slot: a multi handle (owns the connection cache) and the
// easy handle run on it. Not shared between concurrent calls.
class CurlSlot final {
 public:
  CurlSlot() : multi_(curl_multi_init()), easy_(curl_easy_init()) {}
  ~CurlSlot() {
    if (easy_) curl_easy_cleanup(easy_);
    if (multi_) curl_multi_cleanup(multi_);
  }
  CurlSlot(const CurlSlot&) = delete;
  CurlSlot& operator=(const CurlSlot&) = delete;

  bool valid() const { return multi_ != nullptr && easy_ != nullptr; }
  CURLM* multi() const { return multi_; }
  CURL* easy() const { return easy_; }

 private:
  CURLM* multi_;
  CURL* easy_;
};

class SlistOwner final {
 public:
  SlistOwner() = default;
  ~SlistOwner() { curl_slist_free_all(list_); }
  SlistOwner(const SlistOwner&) = delete;
  SlistOwner& operator=(const SlistOwner&) = delete;
  void Append(const std::string& line) { list_ = curl_slist_append(list_, line.c_str()); }
  curl_slist* get() const { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

// Per-call state shared with the curl callbacks.
struct Transfer {
  CURL* easy = nullptr;
  const StreamHandlers* handlers = nullptr;  // null: buffer into response.body
  HttpResponse response;
  size_t max_body = 0;
  bool head_delivered = false;
  bool handler_aborted = false;
  bool too_large = false;
  int64_t last_byte_ms = 0;

  bool DeliverHead() {
    if (head_delivered) return true;
    head_delivered = true;
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    response.status = static_cast<int>(code);
    if (handlers != nullptr && handlers->on_headers && !handlers->on_headers(response)) {
      handler_aborted = true;
      return false;
    }
    return true;
  }
};

size_t HeaderCallback(char* data, size_t size, size_t nitems, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t n = size * nitems;
  t->last_byte_ms = MonoMillis();
  std::string_view line(data, n);
  if (line.substr(0, 5) == "HTTP/") {
    // A new response starts (after 1xx, proxy CONNECT or a redirect): only
    // the final one's headers are kept.
    t->response.headers.clear();
    return n;
  }
  if (Trim(line).empty()) {
    // End of a header block. A final (non-1xx) response's head goes to the
    // handler now, not with the first body byte: a stream may stay silent
    // for a long time after its headers. Redirects are not followed, so
    // any status >= 200 is final.
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && !t->DeliverHead()) return 0;
    return n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return n;
  std::string name(Trim(line.substr(0, colon)));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  t->response.headers.emplace_back(std::move(name), std::string(Trim(line.substr(colon + 1))));
  return n;
}

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t n = size * nmemb;
  t->last_byte_ms = MonoMillis();
  if (!t->DeliverHead()) return 0;
  if (t->handlers == nullptr) {
    if (t->response.body.size() + n > t->max_body) {
      t->too_large = true;
      return 0;
    }
    t->response.body.append(data, n);
    return n;
  }
  if (t->handlers->on_data && !t->handlers->on_data(std::string_view(data, n))) {
    t->handler_aborted = true;
    return 0;
  }
  return n;
}

Status MapCurlError(CURLcode rc, const char* errbuf, const std::string& url) {
  std::string detail = (errbuf != nullptr && errbuf[0] != '\0') ? errbuf : curl_easy_strerror(rc);
  std::string msg = fmt::format("{}: {}", url, detail);
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return Status::Timeout(msg);
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_PEER_FAILED_VERIFICATION:
      return Status::Unavailable(msg);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Status::InvalidArgument(msg);
    default:
      return Status::Internal(msg);
  }
}

// The outcome of a finished transfer (see the file comment of http_client.h).
Status TransferStatus(bool cancelled, bool idle_expired, Transfer* t, CURLcode result, const char* errbuf,
                      const HttpRequest& req) {
  if (cancelled) return Status::Cancelled(fmt::format("{}: request cancelled", req.url));
  if (idle_expired) return Status::Timeout(fmt::format("{}: no data for {} ms", req.url, req.idle_timeout_ms));
  if (t->handler_aborted) return Status::Cancelled(fmt::format("{}: aborted by the response handler", req.url));
  if (t->too_large)
    return Status::TooLarge(fmt::format("{}: response body over {} bytes", req.url, req.max_response_bytes));
  if (result != CURLE_OK) return MapCurlError(result, errbuf, req.url);
  if (!t->DeliverHead())  // no body at all: headers still go to the handler
    return Status::Cancelled(fmt::format("{}: aborted by the response handler", req.url));
  return Status::Ok();
}

// Sets every option of one transfer on `easy` (after curl_easy_reset).
// `t`, `headers` and `errbuf` (CURL_ERROR_SIZE) must outlive the transfer.
Status SetupEasy(CURL* easy, const HttpRequest& req, const CurlHttpClientOptions& options, Transfer* t,
                 SlistOwner* headers, char* errbuf) {
  curl_easy_setopt(easy, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.connect_timeout_ms));
  if (req.total_timeout_ms > 0) curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(req.total_timeout_ms));
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, options.user_agent.c_str());
  if (!options.verify_tls) {
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!options.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, options.ca_file.c_str());
  if (req.proxy == "-") {
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
  } else if (!req.proxy.empty()) {
    curl_easy_setopt(easy, CURLOPT_PROXY, req.proxy.c_str());
  }

  // Method and body.
  if (req.method == "GET") {
    curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else {
    if (req.method != "POST") curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  }
  bool has_content_type = false;
  for (const auto& [k, v] : req.headers) {
    if (k.find_first_of("\r\n:") != std::string::npos || v.find_first_of("\r\n") != std::string::npos) {
      return Status::InvalidArgument(fmt::format("invalid header '{}'", k));
    }
    if (IEquals(k, "content-type")) has_content_type = true;
    headers->Append(v.empty() ? k + ";" : k + ": " + v);
  }
  if (!req.body.empty() && !has_content_type) headers->Append("Content-Type: application/json");
  headers->Append("Expect:");
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers->get());

  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, HeaderCallback);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, WriteCallback);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
  return Status::Ok();
}


// One async transfer: owns its easy handle and everything curl points into.
struct AsyncTransfer {
  HttpRequest request;
  StreamHandlers handlers;
  StreamDone done;
  const CancelToken* cancel = nullptr;
  int waker = -1;
  CURL* easy = nullptr;
  Transfer t;
  SlistOwner headers;
  char errbuf[CURL_ERROR_SIZE] = {0};
  std::atomic<bool> cancel_seen{false};

  AsyncTransfer() = default;
  ~AsyncTransfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
  AsyncTransfer(const AsyncTransfer&) = delete;
  AsyncTransfer& operator=(const AsyncTransfer&) = delete;
};

// The event loop of StreamAsync: one multi handle, one thread, any number of
// transfers. Submissions and cancellations reach the thread through a queue
// and curl_multi_wakeup. Callbacks (handlers, done) run on the thread with no
// lock held.
class CurlMultiLoop final {
 public:
  explicit CurlMultiLoop(const CurlHttpClientOptions& options) : options_(options), multi_(curl_multi_init()) {
    thread_ = std::thread([this] { Run(); });
  }
  ~CurlMultiLoop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    curl_multi_wakeup(multi_);
    thread_.join();
    curl_multi_cleanup(multi_);
  }
  CurlMultiLoop(const CurlMultiLoop&) = delete;
  CurlMultiLoop& operator=(const CurlMultiLoop&) = delete;

  void Submit(std::shared_ptr<AsyncTransfer> x) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_) {
        incoming_.push_back(std::move(x));
        x = nullptr;
      }
    }
    if (x) {
      x->done(Status::Cancelled(fmt::format("{}: client shutting down", x->request.url)));
      return;
    }
    curl_multi_wakeup(multi_);
  }

 private:
  void Finish(const std::shared_ptr<AsyncTransfer>& x, Status status) {
    if (x->cancel != nullptr && x->waker >= 0) const_cast<CancelToken*>(x->cancel)->RemoveWaker(x->waker);
    x->waker = -1;
    StreamDone done = std::move(x->done);
    x->done = nullptr;
    // Backstop: nothing thrown by a completion may end the loop thread.
    try {
      if (!status.ok()) {
        done(std::move(status));
      } else {
        done(std::move(x->t.response));
      }
    } catch (...) {
    }
  }

  void Start(const std::shared_ptr<AsyncTransfer>& x) {
    if (x->cancel != nullptr && x->cancel->cancelled()) {
      Finish(x, Status::Cancelled(fmt::format("{}: request cancelled", x->request.url)));
      return;
    }
    x->easy = curl_easy_init();
    if (x->easy == nullptr) {
      Finish(x, Status::Internal("curl: cannot allocate a handle"));
      return;
    }
    x->t.easy = x->easy;
    x->t.handlers = &x->handlers;
    x->t.max_body = x->request.max_response_bytes;
    Status st = SetupEasy(x->easy, x->request, options_, &x->t, &x->headers, x->errbuf);
    if (!st.ok()) {
      Finish(x, std::move(st));
      return;
    }
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x.get());
    if (curl_multi_add_handle(multi_, x->easy) != CURLM_OK) {
      Finish(x, Status::Internal("curl_multi_add_handle failed"));
      return;
    }
    x->t.last_byte_ms = MonoMillis();
    active_[x->easy] = x;
    if (x->cancel != nullptr) {
      std::weak_ptr<AsyncTransfer> weak = x;
      CURLM* multi = multi_;
      x->waker = const_cast<CancelToken*>(x->cancel)->AddWaker([weak, multi] {
        if (auto t = weak.lock()) t->cancel_seen.store(true);
        curl_multi_wakeup(multi);
      });
    }
  }

  void End(CURL* easy, bool cancelled, bool idle_expired, CURLcode result) {
    auto it = active_.find(easy);
    if (it == active_.end()) return;
    std::shared_ptr<AsyncTransfer> x = std::move(it->second);
    active_.erase(it);
    curl_multi_remove_handle(multi_, easy);
    char* eff = nullptr;
    if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff != nullptr)
      x->t.response.effective_url = eff;
    Status status = TransferStatus(cancelled, idle_expired, &x->t, result, x->errbuf, x->request);
    Finish(x, std::move(status));
  }

  void Run() {
    for (;;) {
      std::vector<std::shared_ptr<AsyncTransfer>> incoming;
      bool stopping;
      {
        std::lock_guard<std::mutex> lock(mu_);
        incoming.swap(incoming_);
        stopping = stopping_;
      }
      if (stopping) {
        for (auto& x : incoming) Finish(x, Status::Cancelled(fmt::format("{}: client shutting down", x->request.url)));
        while (!active_.empty()) End(active_.begin()->first, true, false, CURLE_OK);
        return;
      }
      for (auto& x : incoming) Start(x);
      int running = 0;
      curl_multi_perform(multi_, &running);
      int queued = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
        if (msg->msg == CURLMSG_DONE) End(msg->easy_handle, false, false, msg->data.result);
      }
      // Cancellations and idle deadlines.
      int poll_ms = 1000;
      const int64_t now = MonoMillis();
      std::vector<std::pair<CURL*, bool>> ended;  // (easy, idle expired)
      for (auto& [easy, x] : active_) {
        if (x->cancel_seen.load() || (x->cancel != nullptr && x->cancel->cancelled())) {
          ended.emplace_back(easy, false);
          continue;
        }
        if (x->request.idle_timeout_ms > 0) {
          int64_t left = x->t.last_byte_ms + x->request.idle_timeout_ms - now;
          if (left <= 0) {
            ended.emplace_back(easy, true);
            continue;
          }
          poll_ms = static_cast<int>(std::min<int64_t>(poll_ms, left));
        }
      }
      for (auto& [easy, idle] : ended) End(easy, !idle, idle, CURLE_OK);
      if (!ended.empty()) continue;
      curl_multi_poll(multi_, nullptr, 0, poll_ms, nullptr);
    }
  }

  const CurlHttpClientOptions options_;
  CURLM* multi_;
  std::mutex mu_;
  std::vector<std::shared_ptr<AsyncTransfer>> incoming_;
  bool stopping_ = false;
  std::map<CURL*, std::shared_ptr<AsyncTransfer>> active_;  // loop thread only
  std::thread thread_;
};

class CurlHttpClient final : public HttpClient {
 public:
  explicit CurlHttpClient(CurlHttpClientOptions options) : options_(std::move(options)) { GlobalInit(); }

  Result<HttpResponse> Send(const HttpRequest& request, const CancelToken* cancel) override {
    return Run(request, nullptr, cancel);
  }

  Result<HttpResponse> Stream(const HttpRequest& request, const StreamHandlers& handlers,
                              const CancelToken* cancel) override {
    return Run(request, &handlers, cancel);
  }

  void StreamAsync(HttpRequest request, StreamHandlers handlers, const CancelToken* cancel,
                   StreamDone done) override {
    if ((request.method == "GET" || request.method == "HEAD") && !request.body.empty()) {
      done(Status::InvalidArgument("GET/HEAD request with a body"));
      return;
    }
    auto x = std::make_shared<AsyncTransfer>();
    x->request = std::move(request);
    x->handlers = std::move(handlers);
    x->cancel = cancel;
    x->done = std::move(done);
    Loop()->Submit(std::move(x));
  }

 private:
  CurlMultiLoop* Loop() {
    std::call_once(loop_once_, [this] { loop_ = std::make_unique<CurlMultiLoop>(options_); });
    return loop_.get();
  }

  std::unique_ptr<CurlSlot> Acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!pool_.empty()) {
        auto slot = std::move(pool_.back());
        pool_.pop_back();
        return slot;
      }
    }
    return std::make_unique<CurlSlot>();
  }

  void Release(std::unique_ptr<CurlSlot> slot) {
    std::lock_guard<std::mutex> lock(mu_);
    if (static_cast<int>(pool_.size()) < options_.max_pooled_handles) pool_.push_back(std::move(slot));
  }

  Result<HttpResponse> Run(const HttpRequest& req, const StreamHandlers* handlers,
                           const CancelToken* cancel) {
    if (cancel != nullptr && cancel->cancelled()) return Status::Cancelled("request cancelled");
    if ((req.method == "GET" || req.method == "HEAD") && !req.body.empty()) {
      return Status::InvalidArgument("GET/HEAD request with a body");
    }
    std::unique_ptr<CurlSlot> slot = Acquire();
    if (!slot->valid()) return Status::Internal("curl: cannot allocate handles");
    CURL* easy = slot->easy();
    curl_easy_reset(easy);

    Transfer t;
    t.easy = easy;
    t.handlers = handlers;
    t.max_body = req.max_response_bytes;
    char errbuf[CURL_ERROR_SIZE] = {0};
    SlistOwner headers;
    WARREN_RETURN_IF_ERROR(SetupEasy(easy, req, options_, &t, &headers, errbuf));

    CURLM* multi = slot->multi();
    if (curl_multi_add_handle(multi, easy) != CURLM_OK) return Status::Internal("curl_multi_add_handle failed");
    int waker = -1;
    auto* mutable_cancel = const_cast<CancelToken*>(cancel);
    if (mutable_cancel != nullptr) waker = mutable_cancel->AddWaker([multi] { curl_multi_wakeup(multi); });

    t.last_byte_ms = MonoMillis();
    bool cancelled = false;
    bool idle_expired = false;
    CURLcode result = CURLE_OK;
    bool done = false;
    while (!done) {
      int running = 0;
      CURLMcode mc = curl_multi_perform(multi, &running);
      if (mc != CURLM_OK) {
        result = CURLE_FAILED_INIT;
        break;
      }
      int queued = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
          result = msg->data.result;
          done = true;
        }
      }
      if (done) break;
      if (cancel != nullptr && cancel->cancelled()) {
        cancelled = true;
        break;
      }
      int poll_ms = 1000;
      if (req.idle_timeout_ms > 0) {
        int64_t left = t.last_byte_ms + req.idle_timeout_ms - MonoMillis();
        if (left <= 0) {
          idle_expired = true;
          break;
        }
        poll_ms = static_cast<int>(std::min<int64_t>(poll_ms, left));
      }
      curl_multi_poll(multi, nullptr, 0, poll_ms, nullptr);
    }
    if (mutable_cancel != nullptr && waker >= 0) mutable_cancel->RemoveWaker(waker);
    curl_multi_remove_handle(multi, easy);

    char* eff = nullptr;
    if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff != nullptr) t.response.effective_url = eff;

    Status status = TransferStatus(cancelled, idle_expired, &t, result, errbuf, req);
    // An interrupted transfer's connection is closed by curl on removal, so
    // the slot is fine to reuse either way.
    Release(std::move(slot));
    if (!status.ok()) return status;
    return std::move(t.response);
  }

  const CurlHttpClientOptions options_;
  std::mutex mu_;
  std::vector<std::unique_ptr<CurlSlot>> pool_;
  std::once_flag loop_once_;
  std::unique_ptr<CurlMultiLoop> loop_;  // destroyed first: ends async transfers
};

}  // namespace

std::shared_ptr<HttpClient> NewCurlHttpClient(CurlHttpClientOptions options) {
  return std::make_shared<CurlHttpClient>(std::move(options));
}

}  // namespace warren
