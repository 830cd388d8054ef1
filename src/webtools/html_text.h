// HTML and PDF to readable text for web_fetch.
//
// HtmlToMarkdown parses with gumbo (the WHATWG parsing algorithm, so broken
// real-world markup parses as a browser would) and walks the tree: it drops
// script, style, noscript, template, svg, canvas, iframe, form controls and
// the head (keeping <title>), renders headings as `#` lines, paragraphs and
// blocks separated by blank lines, list items as `- ` / `1. `, links as
// [text](absolute-url), images as their alt text, <pre> as fenced code,
// <br> as a line break, tables as `|` rows, and collapses whitespace as a
// browser does. Relative link targets are resolved against `base_url`.
//
// PdfToText extracts the text of every page (poppler-cpp), pages separated
// by a form feed line.
//
// Stateless; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace warren::webtools {

struct ReadableText {
  std::string title;
  std::string text;
};

ReadableText HtmlToMarkdown(std::string_view html, std::string_view base_url);

Result<ReadableText> PdfToText(std::string_view pdf);

// Resolves `href` against `base` (an absolute http(s) URL): absolute URLs
// pass through, "//host/x", "/x", "x", "?q" and "#f" are resolved. "" when
// `href` is a javascript:/data: URL or cannot be resolved.
std::string ResolveUrl(std::string_view base, std::string_view href);

}  // namespace warren::webtools
