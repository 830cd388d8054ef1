// WebTools: the service-side web_fetch and web_search tools
// (domain::ServerTools), run by the engine for every environment type.
//
// Config (the "web_tools" object of the serve config, docs/WEBTOOLS.md):
//   {"fetch": {"enabled": true, "allow_private": false, "allow": ["127.0.0.1:8080"],
//              "max_redirects": 5, "max_bytes": 10485760, "max_text_chars": 100000,
//              "timeout_ms": 30000},
//    "search": {"provider": "searxng"|"brave"|"tavily", "base_url", "api_key" | "api_key_env",
//               "max_results": 5, "timeout_ms": 15000}}
// web_fetch is on by default (public addresses only); web_search exists only
// with a provider.
//
// Results: web_fetch answers one `document` block (text source: the page as
// Markdown-ish text, `title`, `context` naming the URL and content type);
// web_search answers `search_result` blocks (source URL, title, snippet).
// Errors are text blocks "web_fetch error (<code>): ..." with is_error.
//
// Ownership: owns its fetcher and provider. Thread-safety: Run is
// thread-safe.
#pragma once

#include <functional>
#include <memory>

#include "domain/server_tools.h"
#include "webtools/fetcher.h"
#include "webtools/search.h"

namespace warren::webtools {

struct WebToolsConfig {
  bool fetch_enabled = true;
  FetchOptions fetch;
  SearchConfig search;
};

Result<WebToolsConfig> WebToolsConfigFromJson(const Json& j, const std::function<const char*(const char*)>& getenv_fn);

class WebTools final : public domain::ServerTools {
 public:
  // `fetcher` may be null (web_fetch off); `search` may be null (no provider).
  WebTools(std::unique_ptr<Fetcher> fetcher, std::unique_ptr<SearchProvider> search, int max_results = 5);
  static Result<std::unique_ptr<WebTools>> FromConfig(const WebToolsConfig& cfg, std::shared_ptr<HttpClient> http);
  WebTools(const WebTools&) = delete;
  WebTools& operator=(const WebTools&) = delete;

  bool Handles(std::string_view name) const override;
  std::optional<Json> Definition(std::string_view name) const override;
  domain::ServerToolResult Run(std::string_view name, const Json& input, const CancelToken* cancel) override;

 private:
  domain::ServerToolResult RunFetch(const Json& input, const CancelToken* cancel);
  domain::ServerToolResult RunSearch(const Json& input, const CancelToken* cancel);

  std::unique_ptr<Fetcher> fetcher_;
  std::unique_ptr<SearchProvider> search_;
  int max_results_;
};

}  // namespace warren::webtools
