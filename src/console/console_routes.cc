#include "console/console_routes.h"

#include <string>

#include "console/console_assets.h"

namespace warren::console {

// Scripts and styles only from the console's own files; fetch and the
// terminal's WebSocket only to this origin ('self' covers ws(s): in CSP 3).
// xterm.js sets element styles from script (CSSOM, not affected by
// style-src), so no 'unsafe-inline' is needed.
const std::string_view kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

namespace {

void CommonHeaders(http::HttpResponse* r) {
  r->headers.Add("Content-Security-Policy", std::string(kContentSecurityPolicy));
  r->headers.Add("X-Content-Type-Options", "nosniff");
  r->headers.Add("Referrer-Policy", "no-referrer");
  r->headers.Add("X-Frame-Options", "DENY");
  r->headers.Add("Cross-Origin-Opener-Policy", "same-origin");
}

std::string Param(const api::Params& p, const char* name) {
  auto it = p.find(name);
  return it == p.end() ? std::string() : it->second;
}

}  // namespace

http::HttpResponse Serve(std::string_view rel) {
  http::HttpResponse r;
  CommonHeaders(&r);
  const Asset* a = FindAsset(rel);
  if (a == nullptr) {
    r.status = 404;
    r.content_type = "text/plain; charset=utf-8";
    r.headers.Add("Cache-Control", "no-store");
    r.body = "Not found: /console/" + std::string(rel.substr(0, 200)) + "\n";
    return r;
  }
  r.content_type = std::string(a->content_type);
  r.headers.Add("Cache-Control", a->hashed ? "public, max-age=31536000, immutable" : "no-cache");
  r.body.assign(a->bytes.data(), a->bytes.size());
  return r;
}

void RegisterRoutes(api::Router* router) {
  auto serve = [](std::string rel) {
    http::HandlerResult out;
    out.response = Serve(rel);
    return out;
  };
  router->Add("GET", "/console", [serve](http::HttpRequest&, const api::Params&) { return serve(""); });
  router->Add("GET", "/console/{file}",
              [serve](http::HttpRequest&, const api::Params& p) { return serve(Param(p, "file")); });
  router->Add("GET", "/console/assets/{file}",
              [serve](http::HttpRequest&, const api::Params& p) { return serve("assets/" + Param(p, "file")); });
}

}  // namespace warren::console
