// Router: matches (method, path) against patterns like
// "/v1/sessions/{session_id}/events" and calls the route's handler with the
// captured parameters. Distinguishes 404 (no path) from 405 (wrong method).
// Immutable after setup; thread-safe for concurrent Match.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "http/http_server.h"

namespace warren::api {

using Params = std::map<std::string, std::string>;
using RouteHandler = std::function<http::HandlerResult(http::HttpRequest&, const Params&)>;
// Decides how a streamed request body is taken, from the request head
// (see http::BodyRouter).
using UploadHandler = std::function<http::BodyRoute(http::HttpRequest&, const Params&)>;

class Router final {
 public:
  void Add(std::string method, std::string pattern, RouteHandler handler);

  // A route whose request body is streamed to a sink (uploads). Matched
  // only by MatchUpload; the same (method, pattern) should also be added
  // with Add for bodiless requests.
  void AddUpload(std::string method, std::string pattern, UploadHandler handler);

  enum class MatchResult { kFound, kNoPath, kWrongMethod };
  MatchResult Match(const std::string& method, const std::string& path, const RouteHandler** handler,
                    Params* params) const;
  // The upload route for (method, path), or nullptr.
  const UploadHandler* MatchUpload(const std::string& method, const std::string& path, Params* params) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;  // "{x}" = capture
    RouteHandler handler;
    UploadHandler upload;
  };
  static bool MatchSegments(const Route& r, const std::vector<std::string>& segs, Params* p);
  std::vector<Route> routes_;
  std::vector<Route> uploads_;
};

}  // namespace warren::api
