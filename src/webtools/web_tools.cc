#include "webtools/web_tools.h"

#include "common/log.h"

namespace warren::webtools {
namespace {

domain::ServerToolResult Error(std::string_view tool, std::string_view code, const std::string& message) {
  domain::ServerToolResult r;
  r.is_error = true;
  r.content = Json::array({{{"type", "text"}, {"text", std::string(tool) + " error (" + std::string(code) + "): " + message}}});
  return r;
}

std::vector<std::string> Strings(const Json& j) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const Json& v : j)
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

}  // namespace

Result<WebToolsConfig> WebToolsConfigFromJson(const Json& j, const std::function<const char*(const char*)>& getenv_fn) {
  WebToolsConfig c;
  if (j.is_null()) return c;
  if (!j.is_object()) return Status::InvalidArgument("web_tools: expected an object");
  std::vector<std::string> allow;
  bool allow_private = false;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "search") {
      WARREN_ASSIGN_OR_RETURN(c.search, SearchConfigFromJson(it.value(), getenv_fn));
      continue;
    }
    if (it.key() != "fetch") return Status::InvalidArgument("unknown config key 'web_tools." + it.key() + "'");
    const Json& f = it.value();
    if (!f.is_object()) return Status::InvalidArgument("web_tools.fetch: expected an object");
    for (auto k = f.begin(); k != f.end(); ++k) {
      const std::string name = "web_tools.fetch." + k.key();
      const Json& v = k.value();
      auto integer = [&](int64_t lo, int64_t hi, int64_t* out) -> Status {
        if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
          return Status::InvalidArgument(name + ": expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
        *out = v.get<int64_t>();
        return Status::Ok();
      };
      int64_t n = 0;
      if (k.key() == "enabled" || k.key() == "allow_private") {
        if (!v.is_boolean()) return Status::InvalidArgument(name + ": expected true or false");
        (k.key() == "enabled" ? c.fetch_enabled : allow_private) = v.get<bool>();
      } else if (k.key() == "allow") {
        if (!v.is_array()) return Status::InvalidArgument(name + ": expected an array of strings");
        for (const Json& e : v) {
          if (!e.is_string()) return Status::InvalidArgument(name + ": expected an array of strings");
          allow.push_back(e.get<std::string>());
        }
      } else if (k.key() == "max_redirects") {
        WARREN_RETURN_IF_ERROR(integer(0, 20, &n));
        c.fetch.max_redirects = static_cast<int>(n);
      } else if (k.key() == "max_bytes") {
        WARREN_RETURN_IF_ERROR(integer(1024, int64_t{1} << 30, &n));
        c.fetch.max_bytes = static_cast<size_t>(n);
      } else if (k.key() == "max_text_chars") {
        WARREN_RETURN_IF_ERROR(integer(100, 10000000, &n));
        c.fetch.max_text_chars = static_cast<size_t>(n);
      } else if (k.key() == "timeout_ms") {
        WARREN_RETURN_IF_ERROR(integer(100, 600000, &n));
        c.fetch.timeout_ms = n;
      } else if (k.key() == "user_agent") {
        if (!v.is_string() || v.get<std::string>().empty()) return Status::InvalidArgument(name + ": expected a string");
        c.fetch.user_agent = v.get<std::string>();
      } else {
        return Status::InvalidArgument("unknown config key '" + name + "'");
      }
    }
  }
  WARREN_ASSIGN_OR_RETURN(c.fetch.policy, AddressPolicy::Make(allow_private, allow));
  return c;
}

WebTools::WebTools(std::unique_ptr<Fetcher> fetcher, std::unique_ptr<SearchProvider> search, int max_results)
    : fetcher_(std::move(fetcher)), search_(std::move(search)), max_results_(max_results) {}

Result<std::unique_ptr<WebTools>> WebTools::FromConfig(const WebToolsConfig& cfg, std::shared_ptr<HttpClient> http) {
  std::unique_ptr<Fetcher> fetcher;
  if (cfg.fetch_enabled) fetcher = NewCurlFetcher(cfg.fetch);
  WARREN_ASSIGN_OR_RETURN(auto search, NewSearchProvider(cfg.search, std::move(http)));
  return std::make_unique<WebTools>(std::move(fetcher), std::move(search), cfg.search.max_results);
}

bool WebTools::Handles(std::string_view name) const { return name == "web_fetch" || name == "web_search"; }

std::optional<Json> WebTools::Definition(std::string_view name) const {
  if (name == "web_fetch" && fetcher_) {
    return Json{{"name", "web_fetch"},
                {"description",
                 "Fetch a web page or PDF by URL (http or https) and return its readable text (HTML is converted "
                 "to Markdown). Private and internal network addresses are refused."},
                {"input_schema",
                 {{"type", "object"},
                  {"properties", {{"url", {{"type", "string"}, {"description", "The absolute http(s) URL to fetch."}}}}},
                  {"required", {"url"}}}}};
  }
  if (name == "web_search" && search_) {
    return Json{{"name", "web_search"},
                {"description", "Search the web. Returns result URLs with titles and snippets."},
                {"input_schema",
                 {{"type", "object"},
                  {"properties",
                   {{"query", {{"type", "string"}, {"description", "The search query."}}},
                    {"allowed_domains", {{"type", "array"}, {"items", {{"type", "string"}}},
                                         {"description", "Only return results from these domains."}}},
                    {"blocked_domains", {{"type", "array"}, {"items", {{"type", "string"}}},
                                         {"description", "Never return results from these domains."}}}}},
                  {"required", {"query"}}}}};
  }
  return std::nullopt;
}

domain::ServerToolResult WebTools::Run(std::string_view name, const Json& input, const CancelToken* cancel) {
  try {
    if (name == "web_fetch") return RunFetch(input, cancel);
    if (name == "web_search") return RunSearch(input, cancel);
  } catch (const std::exception& e) {
    // Nothing here is expected to throw; keep it inside the module.
    return Error(name, "unavailable", std::string("internal error: ") + e.what());
  }
  return Error(name, "invalid_input", "unknown server tool");
}

domain::ServerToolResult WebTools::RunFetch(const Json& input, const CancelToken* cancel) {
  if (!fetcher_) return Error("web_fetch", "unavailable", "web_fetch is turned off on this server");
  if (!input.is_object() || !input.contains("url") || !input["url"].is_string())
    return Error("web_fetch", "invalid_input", "input.url must be a string");
  const std::string url = input["url"].get<std::string>();
  auto page = fetcher_->Fetch(url, cancel);
  if (!page.ok()) {
    log::Info("web_fetch.failed", {{"code", page.status().detail_code()}, {"error", page.status().message()}});
    return Error("web_fetch", page.status().detail_code().empty() ? "unavailable" : page.status().detail_code(),
                 page.status().message());
  }
  std::string context = "Fetched from " + page->url + " (" + page->content_type + ")";
  if (page->redirects > 0) context += " after " + std::to_string(page->redirects) + " redirect(s) from " + url;
  if (page->truncated) context += "; the text was truncated";
  if (!page->charset.empty() && page->charset_source != "default")
    context += "; decoded from " + page->charset + " (" +
               (page->charset_source == "content-type" ? std::string("the Content-Type header")
                : page->charset_source == "meta"       ? std::string("the page's <meta> charset")
                                                       : std::string("its byte order mark")) +
               ")";
  if (!page->charset_note.empty()) context += "; " + page->charset_note;
  Json doc = {{"type", "document"},
              {"source", {{"type", "text"}, {"media_type", "text/plain"}, {"data", page->text.empty() ? "(empty page)" : page->text}}},
              {"title", page->title.empty() ? page->url : page->title},
              {"context", context}};
  domain::ServerToolResult r;
  r.content = Json::array({doc});
  // An undecodable charset is said where the model reads the page, too.
  if (!page->charset_note.empty() && page->charset_source == "default" && page->charset != "utf-8")
    r.content.push_back({{"type", "text"}, {"text", "Note: " + page->charset_note + "."}});
  if (page->truncated && !page->full_text.empty()) r.full_text = std::move(page->full_text);
  return r;
}

domain::ServerToolResult WebTools::RunSearch(const Json& input, const CancelToken* cancel) {
  if (!search_) return Error("web_search", "unavailable", "no search provider is configured on this server");
  if (!input.is_object() || !input.contains("query") || !input["query"].is_string() ||
      input["query"].get<std::string>().empty())
    return Error("web_search", "invalid_input", "input.query must be a non-empty string");
  SearchQuery q;
  q.query = input["query"].get<std::string>();
  if (q.query.size() > 2000) return Error("web_search", "query_too_long", "the query is longer than 2000 characters");
  q.max_results = max_results_;
  q.allowed_domains = Strings(input.value("allowed_domains", Json()));
  q.blocked_domains = Strings(input.value("blocked_domains", Json()));
  auto hits = search_->Search(q, cancel);
  if (!hits.ok()) return Error("web_search", hits.status().detail_code().empty() ? "unavailable" : hits.status().detail_code(),
                               hits.status().message());
  domain::ServerToolResult r;
  for (const SearchHit& h : *hits) {
    if (static_cast<int>(r.content.size()) >= q.max_results) break;
    if (h.url.rfind("http://", 0) != 0 && h.url.rfind("https://", 0) != 0) continue;
    bool ok = q.allowed_domains.empty();
    for (const auto& d : q.allowed_domains) ok = ok || HostMatches(h.url, d);
    for (const auto& d : q.blocked_domains) ok = ok && !HostMatches(h.url, d);
    if (!ok) continue;
    r.content.push_back({{"type", "search_result"},
                         {"source", h.url},
                         {"title", h.title.empty() ? h.url : h.title},
                         {"content", Json::array({{{"type", "text"}, {"text", h.snippet.empty() ? h.title : h.snippet}}})},
                         {"citations", {{"enabled", true}}}});
  }
  if (r.content.empty()) r.content.push_back({{"type", "text"}, {"text", "No results for: " + q.query}});
  return r;
}

}  // namespace warren::webtools
