#include "common/http_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>

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

 private:
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

    curl_easy_setopt(easy, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.connect_timeout_ms));
    if (req.total_timeout_ms > 0) curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(req.total_timeout_ms));
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, options_.user_agent.c_str());
    if (!options_.verify_tls) {
      curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (!options_.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, options_.ca_file.c_str());
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
    SlistOwner headers;
    bool has_content_type = false;
    for (const auto& [k, v] : req.headers) {
      if (k.find_first_of("\r\n:") != std::string::npos || v.find_first_of("\r\n") != std::string::npos) {
        return Status::InvalidArgument(fmt::format("invalid header '{}'", k));
      }
      if (IEquals(k, "content-type")) has_content_type = true;
      headers.Append(v.empty() ? k + ";" : k + ": " + v);
    }
    if (!req.body.empty() && !has_content_type) headers.Append("Content-Type: application/json");
    headers.Append("Expect:");
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers.get());

    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, HeaderCallback);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, WriteCallback);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t);

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

    Status status;
    if (cancelled) {
      status = Status::Cancelled(fmt::format("{}: request cancelled", req.url));
    } else if (idle_expired) {
      status = Status::Timeout(fmt::format("{}: no data for {} ms", req.url, req.idle_timeout_ms));
    } else if (t.handler_aborted) {
      status = Status::Cancelled(fmt::format("{}: aborted by the response handler", req.url));
    } else if (t.too_large) {
      status = Status::TooLarge(fmt::format("{}: response body over {} bytes", req.url, req.max_response_bytes));
    } else if (result != CURLE_OK) {
      status = MapCurlError(result, errbuf, req.url);
    } else if (!t.DeliverHead()) {  // no body at all: headers still go to the handler
      status = Status::Cancelled(fmt::format("{}: aborted by the response handler", req.url));
    }
    // An interrupted transfer's connection is closed by curl on removal, so
    // the slot is fine to reuse either way.
    Release(std::move(slot));
    if (!status.ok()) return status;
    return std::move(t.response);
  }

  const CurlHttpClientOptions options_;
  std::mutex mu_;
  std::vector<std::unique_ptr<CurlSlot>> pool_;
};

}  // namespace

std::shared_ptr<HttpClient> NewCurlHttpClient(CurlHttpClientOptions options) {
  return std::make_shared<CurlHttpClient>(std::move(options));
}

}  // namespace warren
