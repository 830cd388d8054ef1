#include "webtools/search.h"

#include <curl/curl.h>

#include <algorithm>

namespace warren::webtools {
namespace {

std::string Escape(const std::string& s) {
  char* e = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
  if (e == nullptr) return "";
  std::string out(e);
  curl_free(e);
  return out;
}

std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

const Json& Arr(const Json& j, const char* key) {
  static const Json kEmpty = Json::array();
  if (!j.is_object()) return kEmpty;
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : kEmpty;
}

std::string TrimSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// Runs the request and parses a JSON answer; errors never carry the request
// (its headers hold the API key).
Result<Json> Call(HttpClient* http, const std::string& provider, HttpRequest req, const CancelToken* cancel) {
  auto resp = http->Send(req, cancel);
  if (!resp.ok())
    return Status::Unavailable(provider + " search request failed: " + resp.status().message())
        .WithDetailCode("unavailable");
  if (resp->status == 429) return Status::ResourceExhausted(provider + " search: rate limited").WithDetailCode("too_many_requests");
  if (resp->status < 200 || resp->status >= 300)
    return Status::Unavailable(provider + " search answered HTTP " + std::to_string(resp->status)).WithDetailCode("unavailable");
  auto j = ParseJson(resp->body);
  if (!j.ok()) return Status::Unavailable(provider + " search: the answer is not JSON").WithDetailCode("unavailable");
  return *j;
}

class SearxngProvider final : public SearchProvider {
 public:
  SearxngProvider(SearchConfig c, std::shared_ptr<HttpClient> http) : c_(std::move(c)), http_(std::move(http)) {}
  std::string name() const override { return "searxng"; }
  Result<std::vector<SearchHit>> Search(const SearchQuery& q, const CancelToken* cancel) override {
    HttpRequest req;
    req.url = TrimSlash(c_.base_url) + "/search?q=" + Escape(q.query) + "&format=json";
    req.headers.emplace_back("Accept", "application/json");
    req.total_timeout_ms = c_.timeout_ms;
    req.max_response_bytes = 8u << 20;
    WARREN_ASSIGN_OR_RETURN(Json j, Call(http_.get(), "searxng", req, cancel));
    std::vector<SearchHit> out;
    for (const Json& r : Arr(j, "results")) out.push_back({Str(r, "url"), Str(r, "title"), Str(r, "content")});
    return out;
  }

 private:
  SearchConfig c_;
  std::shared_ptr<HttpClient> http_;
};

class BraveProvider final : public SearchProvider {
 public:
  BraveProvider(SearchConfig c, std::shared_ptr<HttpClient> http) : c_(std::move(c)), http_(std::move(http)) {}
  std::string name() const override { return "brave"; }
  Result<std::vector<SearchHit>> Search(const SearchQuery& q, const CancelToken* cancel) override {
    HttpRequest req;
    req.url = TrimSlash(c_.base_url) + "/res/v1/web/search?q=" + Escape(q.query) +
              "&count=" + std::to_string(std::clamp(q.max_results * 2, 1, 20));
    req.headers.emplace_back("Accept", "application/json");
    req.headers.emplace_back("X-Subscription-Token", c_.api_key);
    req.total_timeout_ms = c_.timeout_ms;
    req.max_response_bytes = 8u << 20;
    WARREN_ASSIGN_OR_RETURN(Json j, Call(http_.get(), "brave", req, cancel));
    std::vector<SearchHit> out;
    const Json web = j.is_object() && j.contains("web") ? j["web"] : Json();
    for (const Json& r : Arr(web, "results")) out.push_back({Str(r, "url"), Str(r, "title"), Str(r, "description")});
    return out;
  }

 private:
  SearchConfig c_;
  std::shared_ptr<HttpClient> http_;
};

class TavilyProvider final : public SearchProvider {
 public:
  TavilyProvider(SearchConfig c, std::shared_ptr<HttpClient> http) : c_(std::move(c)), http_(std::move(http)) {}
  std::string name() const override { return "tavily"; }
  Result<std::vector<SearchHit>> Search(const SearchQuery& q, const CancelToken* cancel) override {
    HttpRequest req;
    req.method = "POST";
    req.url = TrimSlash(c_.base_url) + "/search";
    req.headers.emplace_back("Authorization", "Bearer " + c_.api_key);
    req.headers.emplace_back("Content-Type", "application/json");
    Json body = {{"query", q.query}, {"max_results", std::clamp(q.max_results * 2, 1, 20)}};
    if (!q.allowed_domains.empty()) body["include_domains"] = q.allowed_domains;
    if (!q.blocked_domains.empty()) body["exclude_domains"] = q.blocked_domains;
    req.body = DumpJson(body);
    req.total_timeout_ms = c_.timeout_ms;
    req.max_response_bytes = 8u << 20;
    WARREN_ASSIGN_OR_RETURN(Json j, Call(http_.get(), "tavily", req, cancel));
    std::vector<SearchHit> out;
    for (const Json& r : Arr(j, "results")) out.push_back({Str(r, "url"), Str(r, "title"), Str(r, "content")});
    return out;
  }

 private:
  SearchConfig c_;
  std::shared_ptr<HttpClient> http_;
};

}  // namespace

bool HostMatches(const std::string& url, const std::string& domain) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return false;
  char* host = nullptr;
  if (curl_url_get(u.get(), CURLUPART_HOST, &host, 0) != CURLUE_OK || host == nullptr) return false;
  std::string h(host);
  curl_free(host);
  std::string d = domain;
  for (char& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (h == d) return true;
  return h.size() > d.size() && h.compare(h.size() - d.size(), d.size(), d) == 0 && h[h.size() - d.size() - 1] == '.';
}

Result<SearchConfig> SearchConfigFromJson(const Json& j, const std::function<const char*(const char*)>& getenv_fn) {
  SearchConfig c;
  if (j.is_null()) return c;
  if (!j.is_object()) return Status::InvalidArgument("web_tools.search: expected an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const Json& v = it.value();
    if (k == "provider" || k == "base_url" || k == "api_key" || k == "api_key_env") {
      if (!v.is_string()) return Status::InvalidArgument("web_tools.search." + k + ": expected a string");
      if (k == "provider") c.provider = v.get<std::string>();
      if (k == "base_url") c.base_url = v.get<std::string>();
      if (k == "api_key") c.api_key = v.get<std::string>();
      if (k == "api_key_env") {
        const char* e = getenv_fn(v.get<std::string>().c_str());
        if (e == nullptr || *e == '\0')
          return Status::InvalidArgument("web_tools.search.api_key_env: environment variable " + v.get<std::string>() +
                                         " is not set");
        c.api_key = e;
      }
    } else if (k == "max_results" || k == "timeout_ms") {
      if (!v.is_number_integer()) return Status::InvalidArgument("web_tools.search." + k + ": expected an integer");
      int64_t n = v.get<int64_t>();
      if (k == "max_results") {
        if (n < 1 || n > 20) return Status::InvalidArgument("web_tools.search.max_results: expected 1..20");
        c.max_results = static_cast<int>(n);
      } else {
        if (n < 100 || n > 600000) return Status::InvalidArgument("web_tools.search.timeout_ms: expected 100..600000");
        c.timeout_ms = n;
      }
    } else {
      return Status::InvalidArgument("unknown config key 'web_tools.search." + k + "'");
    }
  }
  if (c.provider.empty()) return c;
  if (c.provider == "searxng") {
    if (c.base_url.empty()) return Status::InvalidArgument("web_tools.search.base_url is required for searxng");
  } else if (c.provider == "brave") {
    if (c.base_url.empty()) c.base_url = "https://api.search.brave.com";
    if (c.api_key.empty()) return Status::InvalidArgument("web_tools.search: brave needs api_key or api_key_env");
  } else if (c.provider == "tavily") {
    if (c.base_url.empty()) c.base_url = "https://api.tavily.com";
    if (c.api_key.empty()) return Status::InvalidArgument("web_tools.search: tavily needs api_key or api_key_env");
  } else {
    return Status::InvalidArgument("web_tools.search.provider: expected searxng, brave or tavily");
  }
  if (c.base_url.rfind("http://", 0) != 0 && c.base_url.rfind("https://", 0) != 0)
    return Status::InvalidArgument("web_tools.search.base_url: expected an http(s) URL");
  return c;
}

Result<std::unique_ptr<SearchProvider>> NewSearchProvider(const SearchConfig& cfg, std::shared_ptr<HttpClient> http) {
  if (cfg.provider.empty()) return std::unique_ptr<SearchProvider>();
  if (cfg.provider == "searxng") return std::unique_ptr<SearchProvider>(new SearxngProvider(cfg, std::move(http)));
  if (cfg.provider == "brave") return std::unique_ptr<SearchProvider>(new BraveProvider(cfg, std::move(http)));
  if (cfg.provider == "tavily") return std::unique_ptr<SearchProvider>(new TavilyProvider(cfg, std::move(http)));
  return Status::InvalidArgument("unknown search provider " + cfg.provider);
}

}  // namespace warren::webtools
