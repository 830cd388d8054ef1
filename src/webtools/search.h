// Web search providers for the web_search tool, behind one interface.
//
//  - searxng: a SearxNG instance's JSON API (GET {base_url}/search?q=..&format=json;
//    the instance must have the json format enabled).
//  - brave:   Brave Search API (GET {base_url}/res/v1/web/search, header
//    X-Subscription-Token).
//  - tavily:  Tavily (POST {base_url}/search, Authorization: Bearer).
//
// The provider is chosen by config (docs/WEBTOOLS.md); with none configured
// NewSearchProvider returns nullptr and web_search is absent from the
// model's tool list. API keys come from the config or from an environment
// variable it names; they are never logged or put in an error.
//
// Ownership: a provider shares the HttpClient. Thread-safety: Search may be
// called concurrently.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "common/json.h"
#include "common/status.h"

namespace warren::webtools {

struct SearchHit {
  std::string url;
  std::string title;
  std::string snippet;
};

struct SearchQuery {
  std::string query;
  int max_results = 5;
  std::vector<std::string> allowed_domains;  // empty = any
  std::vector<std::string> blocked_domains;
};

class SearchProvider {
 public:
  virtual ~SearchProvider() = default;
  virtual std::string name() const = 0;
  virtual Result<std::vector<SearchHit>> Search(const SearchQuery& q, const CancelToken* cancel) = 0;
};

struct SearchConfig {
  std::string provider;  // "" | searxng | brave | tavily
  std::string base_url;  // default per provider (searxng has none: required)
  std::string api_key;   // brave, tavily
  int max_results = 5;
  int64_t timeout_ms = 15000;
};

// Parses the "search" object of web_tools config (keys: provider, base_url,
// api_key, api_key_env, max_results, timeout_ms). `getenv_fn` resolves
// api_key_env.
Result<SearchConfig> SearchConfigFromJson(const Json& j, const std::function<const char*(const char*)>& getenv_fn);

// nullptr when cfg.provider is empty.
Result<std::unique_ptr<SearchProvider>> NewSearchProvider(const SearchConfig& cfg, std::shared_ptr<HttpClient> http);

// True if `url`'s host is `domain` or a subdomain of it.
bool HostMatches(const std::string& url, const std::string& domain);

}  // namespace warren::webtools
