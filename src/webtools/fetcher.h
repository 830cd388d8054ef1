// Fetcher: downloads one web page for the web_fetch tool, safely.
//
//  - http and https only (libcurl restricted to those protocols, also on
//    redirects); URLs longer than max_url_length are refused.
//  - Redirects are followed by hand, at most max_redirects, each hop's URL
//    checked again.
//  - Every connection's peer address is checked by the AddressPolicy in
//    libcurl's OPENSOCKETFUNCTION, i.e. the address actually connected to
//    after DNS resolution: hostnames resolving to private addresses, DNS
//    rebinding between hops and redirects into private ranges are refused.
//    Environment proxies are never used (they would bypass the check).
//  - The body is capped at max_bytes (after content decoding); a larger
//    response fails with detail code url_too_large. The whole fetch,
//    redirects included, is bounded by timeout_ms and cancellable.
//  - Text bodies are decoded to UTF-8 by their charset: byte order mark,
//    Content-Type charset, then (HTML) <meta charset>, else UTF-8 (glibc
//    iconv, charset.h); an unknown charset is reported in charset_note.
//  - HTML (text/html, application/xhtml+xml) becomes Markdown-ish text
//    (html_text.h), PDFs their text, text/* and JSON/XML are kept as text;
//    other types fail with unsupported_content_type. Text is cut at
//    max_text_chars (`truncated`).
//
// Failures carry an Anthropic web_fetch error code as the Status detail
// code: invalid_input, url_too_long, url_not_allowed, url_not_accessible,
// url_too_large, unsupported_content_type, unavailable (timeout/cancel).
//
// Ownership: CurlFetcher owns its options. Thread-safety: Fetch may be
// called from many threads at once (one curl handle per call).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/http_client.h"
#include "common/status.h"
#include "webtools/address_policy.h"

namespace warren::webtools {

struct FetchOptions {
  AddressPolicy policy;
  int max_redirects = 5;
  size_t max_bytes = 10u << 20;
  size_t max_text_chars = 100000;
  size_t max_url_length = 2000;
  int64_t timeout_ms = 30000;
  int64_t connect_timeout_ms = 10000;
  std::string user_agent = "Warren-WebFetch/1.0 (+https://github.com/warren)";
  std::string ca_file;  // "" = system default
};

struct FetchedPage {
  std::string url;           // final URL after redirects
  std::string content_type;  // media type, lower case, no parameters
  std::string title;
  std::string text;
  bool truncated = false;
  std::string full_text;  // when truncated: the whole text (for a file in the session's sandbox)
  int redirects = 0;
  // Text pages: the charset the bytes were decoded from (charset.h), where
  // it came from ("bom", "content-type", "meta", "default"), and a note
  // when something could not be decoded (an unknown charset, bad bytes).
  std::string charset;
  std::string charset_source;
  std::string charset_note;
};

class Fetcher {
 public:
  virtual ~Fetcher() = default;
  virtual Result<FetchedPage> Fetch(const std::string& url, const CancelToken* cancel) = 0;
};

std::unique_ptr<Fetcher> NewCurlFetcher(FetchOptions options);

}  // namespace warren::webtools
