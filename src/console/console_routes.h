// Serves the embedded web console at /console/ (docs/CONSOLE.md): no auth
// (the page asks for an API key and keeps it in sessionStorage), index.html
// with `Cache-Control: no-cache`, hashed assets cached for a year, and a
// strict Content-Security-Policy on every answer.
// Stateless; the handlers are thread-safe.
#pragma once

#include <string_view>

#include "api/router.h"
#include "http/http_server.h"

namespace warren::console {

// The Content-Security-Policy sent with every console answer.
extern const std::string_view kContentSecurityPolicy;

// Adds GET /console, /console/{file} and /console/assets/{file}.
void RegisterRoutes(api::Router* router);

// The answer for a GET of `rel` (the path after "/console/"); exposed for tests.
http::HttpResponse Serve(std::string_view rel);

}  // namespace warren::console
