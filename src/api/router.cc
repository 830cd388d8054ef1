#include "api/router.h"

namespace warren::api {

static std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      i++;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

void Router::Add(std::string method, std::string pattern, RouteHandler handler) {
  routes_.push_back(Route{std::move(method), Split(pattern), std::move(handler)});
}

Router::MatchResult Router::Match(const std::string& method, const std::string& path, const RouteHandler** handler,
                                  Params* params) const {
  std::vector<std::string> segs = Split(path);
  bool path_matched = false;
  for (const Route& r : routes_) {
    if (r.segments.size() != segs.size()) continue;
    Params p;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; i++) {
      const std::string& pat = r.segments[i];
      if (pat.size() > 2 && pat.front() == '{' && pat.back() == '}') {
        if (segs[i].empty()) ok = false;
        else p[pat.substr(1, pat.size() - 2)] = segs[i];
      } else if (pat != segs[i]) {
        ok = false;
      }
    }
    if (!ok) continue;
    path_matched = true;
    if (r.method != method) continue;
    *handler = &r.handler;
    *params = std::move(p);
    return MatchResult::kFound;
  }
  return path_matched ? MatchResult::kWrongMethod : MatchResult::kNoPath;
}

}  // namespace warren::api
