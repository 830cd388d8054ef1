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
  routes_.push_back(Route{std::move(method), Split(pattern), std::move(handler), nullptr});
}

void Router::AddUpload(std::string method, std::string pattern, UploadHandler handler) {
  uploads_.push_back(Route{std::move(method), Split(pattern), nullptr, std::move(handler)});
}

bool Router::MatchSegments(const Route& r, const std::vector<std::string>& segs, Params* p) {
  if (r.segments.size() != segs.size()) return false;
  for (size_t i = 0; i < segs.size(); i++) {
    const std::string& pat = r.segments[i];
    if (pat.size() > 2 && pat.front() == '{' && pat.back() == '}') {
      if (segs[i].empty()) return false;
      (*p)[pat.substr(1, pat.size() - 2)] = segs[i];
    } else if (pat != segs[i]) {
      return false;
    }
  }
  return true;
}

const UploadHandler* Router::MatchUpload(const std::string& method, const std::string& path, Params* params) const {
  if (uploads_.empty()) return nullptr;
  std::vector<std::string> segs = Split(path);
  for (const Route& r : uploads_) {
    Params p;
    if (r.method != method || !MatchSegments(r, segs, &p)) continue;
    *params = std::move(p);
    return &r.upload;
  }
  return nullptr;
}

Router::MatchResult Router::Match(const std::string& method, const std::string& path, const RouteHandler** handler,
                                  Params* params) const {
  std::vector<std::string> segs = Split(path);
  bool path_matched = false;
  for (const Route& r : routes_) {
    Params p;
    if (!MatchSegments(r, segs, &p)) continue;
    path_matched = true;
    if (r.method != method) continue;
    *handler = &r.handler;
    *params = std::move(p);
    return MatchResult::kFound;
  }
  return path_matched ? MatchResult::kWrongMethod : MatchResult::kNoPath;
}

}  // namespace warren::api
