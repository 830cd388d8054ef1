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

// The Content-Security-Policy of a console answer. index.html gets a fresh
// nonce per response (written into its <meta name="csp-nonce">, which the
// page gives to the <style> elements xterm.js creates); other files none.
std::string ContentSecurityPolicy(std::string_view style_nonce);

// The placeholder in index.html that Serve replaces with the nonce.
inline constexpr std::string_view kNoncePlaceholder = "__WARREN_CSP_NONCE__";

// Adds GET /console, /console/{file} and /console/assets/{file}.
void RegisterRoutes(api::Router* router);

// The answer for a GET of `rel` (the path after "/console/"); exposed for tests.
http::HttpResponse Serve(std::string_view rel);

}  // namespace warren::console
