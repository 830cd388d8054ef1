#include "console/console_routes.h"

#include <algorithm>
#include <cctype>
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

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

// The q value of one Accept-Encoding element's parameters (";q=0.5"); 1
// when absent, 0 when malformed (a client we cannot read gets identity).
double QValue(std::string_view params) {
  while (!params.empty()) {
    size_t semi = params.find(';');
    std::string_view p = Trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    if (p.size() < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=') continue;
    std::string_view v = Trim(p.substr(2));
    // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
    if (v.empty() || (v[0] != '0' && v[0] != '1') || v.size() > 5) return 0;
    if (v.size() > 1 && v[1] != '.') return 0;
    double q = v[0] - '0', scale = 0.1;
    for (size_t i = 2; i < v.size(); i++, scale /= 10) {
      if (v[i] < '0' || v[i] > '9') return 0;
      q += (v[i] - '0') * scale;
    }
    return q > 1 ? 0 : q;
  }
  return 1;
}

// Whether `header` (an If-None-Match value) names `etag` (weak comparison,
// RFC 9110 13.1.2), or is "*".
bool EtagMatches(std::string_view header, std::string_view etag) {
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view t = Trim(header.substr(0, comma));
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    if (t == "*") return true;
    if (t.size() >= 2 && t.substr(0, 2) == "W/") t.remove_prefix(2);
    if (t == etag) return true;
  }
  return false;
}

}  // namespace

bool AcceptsGzip(std::string_view header) {
  double gzip = -1, star = -1;
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = Trim(item.substr(0, semi));
    double q = QValue(semi == std::string_view::npos ? std::string_view() : item.substr(semi + 1));
    if (EqualsNoCase(coding, "gzip") || EqualsNoCase(coding, "x-gzip")) gzip = std::max(gzip, q);
    else if (coding == "*") star = std::max(star, q);
  }
  if (gzip >= 0) return gzip > 0;
  return star > 0;
}

http::HttpResponse Serve(std::string_view rel, std::string_view accept_encoding, std::string_view if_none_match) {
  http::HttpResponse r;
  const Asset* a = FindAsset(rel);
  std::string nonce;
  const bool index = a != nullptr && a->path == "index.html";
  if (index) {
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
  const bool gzip = !a->gzip.empty() && AcceptsGzip(accept_encoding);
  // Caches keep one copy per encoding (and must not hand gzip to a client
  // that did not ask for it).
  if (!a->gzip.empty()) r.headers.Add("Vary", "Accept-Encoding");
  if (!index) {
    const std::string etag = "\"" + std::string(a->etag) + (gzip ? "-gz" : "") + "\"";
    r.headers.Add("ETag", etag);
    if (!if_none_match.empty() && EtagMatches(if_none_match, etag)) {
      r.status = 304;  // no body, no Content-Encoding: the cached copy stands
      return r;
    }
  }
  if (gzip) {
    r.headers.Add("Content-Encoding", "gzip");
    r.body.assign(a->gzip.data(), a->gzip.size());
    return r;
  }
  r.body.assign(a->bytes.data(), a->bytes.size());
  if (!nonce.empty()) {
    size_t at = r.body.find(kNoncePlaceholder);
    if (at != std::string::npos) r.body.replace(at, kNoncePlaceholder.size(), nonce);
  }
  return r;
}

void RegisterRoutes(api::Router* router) {
  auto serve = [](const http::HttpRequest& req, std::string rel) {
    const std::string* ae = req.headers.Find("Accept-Encoding");
    const std::string* inm = req.headers.Find("If-None-Match");
    http::HandlerResult out;
    out.response = Serve(rel, ae ? *ae : std::string_view(), inm ? *inm : std::string_view());
    return out;
  };
  router->Add("GET", "/console", [serve](http::HttpRequest& req, const api::Params&) { return serve(req, ""); });
  router->Add("GET", "/console/{file}",
              [serve](http::HttpRequest& req, const api::Params& p) { return serve(req, Param(p, "file")); });
  router->Add("GET", "/console/assets/{file}", [serve](http::HttpRequest& req, const api::Params& p) {
    return serve(req, "assets/" + Param(p, "file"));
  });
}

}  // namespace warren::console
