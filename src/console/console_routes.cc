#include "console/console_routes.h"

#include <string>

#include "common/ids.h"
#include "console/console_assets.h"

namespace warren::console {

// Scripts and styles only from the console's own files (plus <style>
// elements with this response's nonce); fetch and the terminal's WebSocket
// only to this origin ('self' covers ws(s): in CSP 3). No 'unsafe-inline',
// no eval.
std::string ContentSecurityPolicy(std::string_view style_nonce) {
  std::string style = "style-src 'self'";
  if (!style_nonce.empty()) style += " 'nonce-" + std::string(style_nonce) + "'";
  return "default-src 'none'; script-src 'self'; " + style +
         "; img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
         "form-action 'none'; frame-ancestors 'none'";
}

namespace {

void CommonHeaders(http::HttpResponse* r, std::string_view nonce) {
  r->headers.Add("Content-Security-Policy", ContentSecurityPolicy(nonce));
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
  const Asset* a = FindAsset(rel);
  std::string nonce;
  if (a != nullptr && a->path == "index.html") {
    char raw[18];
    RandomBytes(raw, sizeof raw);
    nonce = Base64UrlEncode(std::string_view(raw, sizeof raw));
  }
  CommonHeaders(&r, nonce);
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
  if (!nonce.empty()) {
    size_t at = r.body.find(kNoncePlaceholder);
    if (at != std::string::npos) r.body.replace(at, kNoncePlaceholder.size(), nonce);
  }
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
