// Serves the embedded web console at /console/ (docs/CONSOLE.md): no auth
// (the page asks for an API key and keeps it in sessionStorage), index.html
// with `Cache-Control: no-cache`, hashed assets cached for a year, gzip
// (compressed at build time) when the client accepts it, ETags, and a
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

// Whether an Accept-Encoding header value lets us answer with gzip (RFC 9110
// 12.5.3: `gzip` or `x-gzip` with q > 0, or `*` with q > 0 when gzip is
// not listed). Exposed for tests.
bool AcceptsGzip(std::string_view accept_encoding);

// The answer for a GET of `rel` (the path after "/console/"), given the
// request's Accept-Encoding and If-None-Match values ("" when absent).
// Files with a precompressed variant carry `Vary: Accept-Encoding` and get
// it when the client accepts gzip (`Content-Encoding: gzip`). Every file
// but index.html (new content per response) carries a strong ETag, one per
// representation; a matching If-None-Match gets 304 without a body.
// Exposed for tests.
http::HttpResponse Serve(std::string_view rel, std::string_view accept_encoding = "",
                         std::string_view if_none_match = "");

}  // namespace warren::console
