#include "webtools/fetcher.h"

#include <curl/curl.h>

#include <chrono>
#include <cstring>

#include "webtools/charset.h"
#include "webtools/html_text.h"

namespace warren::webtools {
namespace {

Status Fail(Code code, std::string_view detail, std::string msg) {
  Status s = code == Code::kInvalidArgument    ? Status::InvalidArgument(std::move(msg))
             : code == Code::kPermissionDenied ? Status::PermissionDenied(std::move(msg))
             : code == Code::kTooLarge         ? Status::TooLarge(std::move(msg))
             : code == Code::kTimeout          ? Status::Timeout(std::move(msg))
             : code == Code::kCancelled        ? Status::Cancelled(std::move(msg))
                                               : Status::Unavailable(std::move(msg));
  return s.WithDetailCode(std::string(detail));
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct Transfer {
  const AddressPolicy* policy = nullptr;
  const CancelToken* cancel = nullptr;
  size_t max_bytes = 0;
  std::string body;
  bool too_large = false;
  std::string refused;  // why a connection was refused
};

curl_socket_t OpenSocket(void* ctx, curlsocktype purpose, struct curl_sockaddr* addr) {
  auto* t = static_cast<Transfer*>(ctx);
  if (purpose != CURLSOCKTYPE_IPCXN) {
    t->refused = "unexpected socket type";
    return CURL_SOCKET_BAD;
  }
  uint16_t port = 0;
  auto ip = IpAddress::FromSockaddr(&addr->addr, &port);
  if (!ip) {
    t->refused = "address family not allowed";
    return CURL_SOCKET_BAD;
  }
  Status ok = t->policy->Check(*ip, port);
  if (!ok.ok()) {
    t->refused = ok.message();
    return CURL_SOCKET_BAD;
  }
  return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

size_t Write(char* data, size_t size, size_t n, void* ctx) {
  auto* t = static_cast<Transfer*>(ctx);
  size_t len = size * n;
  if (t->body.size() + len > t->max_bytes) {
    t->too_large = true;
    return 0;  // aborts with CURLE_WRITE_ERROR
  }
  t->body.append(data, len);
  return len;
}

int Progress(void* ctx, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(ctx);
  return t->cancel && t->cancel->cancelled() ? 1 : 0;
}

class CurlFetcher final : public Fetcher {
 public:
  explicit CurlFetcher(FetchOptions o) : o_(std::move(o)) {}

  Result<FetchedPage> Fetch(const std::string& start_url, const CancelToken* cancel) override {
    if (start_url.size() > o_.max_url_length)
      return Fail(Code::kInvalidArgument, "url_too_long",
                  "URL longer than " + std::to_string(o_.max_url_length) + " characters");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o_.timeout_ms);
    std::string url = start_url;
    for (int hop = 0;; hop++) {
      WARREN_RETURN_IF_ERROR(CheckUrl(url));
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return Fail(Code::kTimeout, "unavailable", "fetch timed out after " + std::to_string(o_.timeout_ms) + " ms");
      Transfer t;
      t.policy = &o_.policy;
      t.cancel = cancel;
      t.max_bytes = o_.max_bytes;
      std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> h(curl_easy_init(), curl_easy_cleanup);
      if (!h) return Status::Internal("curl_easy_init failed");
      CURL* c = h.get();
      curl_slist* headers = nullptr;
      headers = curl_slist_append(headers, "Accept: text/html,application/xhtml+xml,text/plain;q=0.9,application/pdf;q=0.9,*/*;q=0.5");
      std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> hguard(headers, curl_slist_free_all);
      curl_easy_setopt(c, CURLOPT_URL, url.c_str());
      curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
      curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
      curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
      curl_easy_setopt(c, CURLOPT_PROXY, "");
      curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
      curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OpenSocket);
      curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Write);
      curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
      curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, Progress);
      curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(left));
      curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min<int64_t>(left, o_.connect_timeout_ms)));
      curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
      curl_easy_setopt(c, CURLOPT_USERAGENT, o_.user_agent.c_str());
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
      curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(o_.max_bytes));
      if (!o_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, o_.ca_file.c_str());
      CURLcode rc = curl_easy_perform(c);
      if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED)
        return Fail(Code::kTooLarge, "url_too_large",
                    "the response of " + url + " exceeds " + std::to_string(o_.max_bytes) + " bytes");
      // A refused address fails the fetch unless curl went on to another
      // address of the same name that is allowed (happy eyeballs).
      if (rc != CURLE_OK && !t.refused.empty())
        return Fail(Code::kPermissionDenied, "url_not_allowed", "refused to connect for " + url + ": " + t.refused);
      if (rc == CURLE_ABORTED_BY_CALLBACK) return Fail(Code::kCancelled, "unavailable", "fetch cancelled");
      if (rc == CURLE_OPERATION_TIMEDOUT)
        return Fail(Code::kTimeout, "unavailable", "fetch of " + url + " timed out");
      if (rc == CURLE_UNSUPPORTED_PROTOCOL)
        return Fail(Code::kInvalidArgument, "invalid_input", "only http and https URLs can be fetched");
      if (rc != CURLE_OK)
        return Fail(Code::kUnavailable, "url_not_accessible", "fetch of " + url + " failed: " + curl_easy_strerror(rc));
      long status = 0;
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
      if (status >= 300 && status < 400) {
        char* loc = nullptr;
        curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
        if (loc == nullptr || *loc == '\0')
          return Fail(Code::kUnavailable, "url_not_accessible", url + " answered " + std::to_string(status) + " without a Location");
        if (hop >= o_.max_redirects)
          return Fail(Code::kUnavailable, "url_not_accessible",
                      "too many redirects (more than " + std::to_string(o_.max_redirects) + ")");
        url = loc;
        continue;
      }
      if (status < 200 || status >= 300)
        return Fail(Code::kUnavailable, "url_not_accessible", url + " answered HTTP " + std::to_string(status));
      char* ct = nullptr;
      curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
      FetchedPage page;
      page.url = url;
      page.redirects = hop;
      std::string type = ct ? Lower(ct) : "";
      if (size_t semi = type.find(';'); semi != std::string::npos) type.resize(semi);
      while (!type.empty() && type.back() == ' ') type.pop_back();
      WARREN_RETURN_IF_ERROR(Convert(type, ct ? ct : "", t.body, &page));
      return page;
    }
  }

 private:
  Status CheckUrl(const std::string& url) {
    std::string lower = Lower(url.substr(0, 8));
    if (lower.rfind("http://", 0) != 0 && lower.rfind("https://", 0) != 0)
      return Fail(Code::kInvalidArgument, "invalid_input", "only http and https URLs can be fetched: " + url.substr(0, 100));
    if (url.size() > o_.max_url_length)
      return Fail(Code::kInvalidArgument, "url_too_long",
                  "URL longer than " + std::to_string(o_.max_url_length) + " characters");
    std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
    if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK)
      return Fail(Code::kInvalidArgument, "invalid_input", "not a valid URL: " + url.substr(0, 100));
    return Status::Ok();
  }

  // Decodes a text body to UTF-8 by its charset (charset.h) and records how.
  static std::string Decode(const std::string& body, const std::string& raw_type, bool html, FetchedPage* page) {
    Decoded d = DecodeBody(body, raw_type, html);
    page->charset = d.charset;
    page->charset_source = d.source;
    if (!d.supported) {
      page->charset_note = "the page's charset \"" + d.charset +
                           "\" is not supported by this server: the page was read as UTF-8 and " +
                           std::to_string(d.replaced) + " byte(s) that are not UTF-8 were replaced with U+FFFD";
    } else if (d.replaced > 0) {
      page->charset_note = std::to_string(d.replaced) + " byte sequence(s) not valid in " + d.charset +
                           " were replaced with U+FFFD";
    }
    return std::move(d.text);
  }

  Status Convert(const std::string& type, const std::string& raw_type, const std::string& body, FetchedPage* page) {
    std::string t = type;
    if (t.empty()) {
      // Sniff: the server did not say.
      if (body.rfind("%PDF-", 0) == 0) t = "application/pdf";
      else if (Lower(body.substr(0, 1024)).find("<html") != std::string::npos) t = "text/html";
      else t = "text/plain";
    }
    page->content_type = t;
    if (t == "text/html" || t == "application/xhtml+xml") {
      ReadableText r = HtmlToMarkdown(Decode(body, raw_type, true, page), page->url);
      page->title = std::move(r.title);
      page->text = std::move(r.text);
    } else if (t == "application/pdf") {
      auto r = PdfToText(body);
      if (!r.ok()) return Fail(Code::kInvalidArgument, "unsupported_content_type", r.status().message());
      page->title = std::move(r->title);
      page->text = std::move(r->text);
    } else if (t.rfind("text/", 0) == 0 || t == "application/json" || t == "application/xml" ||
               (t.size() > 5 && (t.substr(t.size() - 5) == "+json" || t.substr(t.size() - 4) == "+xml"))) {
      page->text = Decode(body, raw_type, false, page);
    } else {
      return Fail(Code::kInvalidArgument, "unsupported_content_type", "content type " + t + " is not supported");
    }
    if (page->text.size() > o_.max_text_chars) {
      size_t cut = o_.max_text_chars;
      // Do not cut inside a UTF-8 sequence.
      while (cut > 0 && (static_cast<unsigned char>(page->text[cut]) & 0xc0) == 0x80) cut--;
      page->full_text = page->text;
      page->text.resize(cut);
      page->truncated = true;
    }
    return Status::Ok();
  }

  FetchOptions o_;
};

}  // namespace

std::unique_ptr<Fetcher> NewCurlFetcher(FetchOptions options) { return std::make_unique<CurlFetcher>(std::move(options)); }

}  // namespace warren::webtools
