#include "webtools/html_text.h"

#include <curl/curl.h>
#include <gumbo.h>

#include <memory>
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-page.h>

namespace warren::webtools {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f'; }

// Accumulates readable text with browser-like whitespace handling.
class Writer {
 public:
  // Text content: runs of whitespace become one space (none at line starts).
  void Text(std::string_view s) {
    for (char c : s) {
      if (IsSpace(c)) {
        pending_space_ = true;
        continue;
      }
      Flush();
      out_ += c;
    }
  }
  // Verbatim text (inside <pre>).
  void Raw(std::string_view s) {
    Flush();
    out_.append(s);
  }
  // At least `n` line breaks before the next text.
  void Break(int n) {
    if (out_.empty()) return;
    breaks_ = std::max(breaks_, n);
    pending_space_ = false;
  }
  // Text that starts a line (list bullets, heading marks), after a break.
  void Prefix(std::string_view s) {
    Flush();
    out_.append(s);
    pending_space_ = false;
  }
  void Flush() {
    if (breaks_ > 0) {
      // Count the newlines already at the end.
      int have = 0;
      for (size_t i = out_.size(); i > 0 && out_[i - 1] == '\n'; i--) have++;
      while (have < breaks_) {
        out_ += '\n';
        have++;
      }
      out_.append(indent_);
      breaks_ = 0;
      pending_space_ = false;
    } else if (pending_space_ && !out_.empty() && out_.back() != '\n' && out_.back() != ' ') {
      out_ += ' ';
    }
    pending_space_ = false;
  }
  std::string& out() { return out_; }
  std::string indent_;

 private:
  std::string out_;
  int breaks_ = 0;
  bool pending_space_ = false;
};

struct Walker {
  std::string base;
  Writer w;
  std::string title;
  int list_depth = 0;
  bool in_pre = false;

  static bool Skipped(GumboTag tag) {
    switch (tag) {
      case GUMBO_TAG_SCRIPT: case GUMBO_TAG_STYLE: case GUMBO_TAG_NOSCRIPT: case GUMBO_TAG_TEMPLATE:
      case GUMBO_TAG_SVG: case GUMBO_TAG_CANVAS: case GUMBO_TAG_IFRAME: case GUMBO_TAG_OBJECT:
      case GUMBO_TAG_EMBED: case GUMBO_TAG_SELECT: case GUMBO_TAG_TEXTAREA: case GUMBO_TAG_BUTTON:
      case GUMBO_TAG_INPUT: case GUMBO_TAG_HEAD: case GUMBO_TAG_MATH: case GUMBO_TAG_AUDIO: case GUMBO_TAG_VIDEO:
        return true;
      default:
        return false;
    }
  }
  static bool Block(GumboTag tag) {
    switch (tag) {
      case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_MAIN:
      case GUMBO_TAG_HEADER: case GUMBO_TAG_FOOTER: case GUMBO_TAG_NAV: case GUMBO_TAG_ASIDE: case GUMBO_TAG_BLOCKQUOTE:
      case GUMBO_TAG_FIGURE: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_ADDRESS: case GUMBO_TAG_DL: case GUMBO_TAG_DT:
      case GUMBO_TAG_DD: case GUMBO_TAG_UL: case GUMBO_TAG_OL: case GUMBO_TAG_TABLE: case GUMBO_TAG_FORM:
      case GUMBO_TAG_FIELDSET: case GUMBO_TAG_DETAILS: case GUMBO_TAG_SUMMARY: case GUMBO_TAG_HR:
        return true;
      default:
        return false;
    }
  }
  static int HeadingLevel(GumboTag tag) {
    switch (tag) {
      case GUMBO_TAG_H1: return 1;
      case GUMBO_TAG_H2: return 2;
      case GUMBO_TAG_H3: return 3;
      case GUMBO_TAG_H4: return 4;
      case GUMBO_TAG_H5: return 5;
      case GUMBO_TAG_H6: return 6;
      default: return 0;
    }
  }
  static const char* Attr(const GumboElement& e, const char* name) {
    const GumboAttribute* a = gumbo_get_attribute(&e.attributes, name);
    return a ? a->value : nullptr;
  }
  static std::string TextOf(const GumboNode* n) {
    if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_CDATA || n->type == GUMBO_NODE_WHITESPACE)
      return n->v.text.text;
    std::string s;
    if (n->type == GUMBO_NODE_ELEMENT)
      for (unsigned i = 0; i < n->v.element.children.length; i++)
        s += TextOf(static_cast<const GumboNode*>(n->v.element.children.data[i]));
    return s;
  }

  void Children(const GumboNode* n) {
    const GumboVector& kids = n->v.element.children;
    int ordinal = 1;
    for (unsigned i = 0; i < kids.length; i++) {
      const GumboNode* c = static_cast<const GumboNode*>(kids.data[i]);
      if (c->type == GUMBO_NODE_ELEMENT && c->v.element.tag == GUMBO_TAG_LI) {
        const bool ordered = n->v.element.tag == GUMBO_TAG_OL;
        Item(c, ordered ? std::to_string(ordinal++) + ". " : "- ");
      } else {
        Node(c);
      }
    }
  }

  void Item(const GumboNode* li, const std::string& bullet) {
    w.Break(1);
    w.Prefix(bullet);
    std::string saved = w.indent_;
    w.indent_ += std::string(bullet.size(), ' ');
    Children(li);
    w.indent_ = saved;
    w.Break(1);
  }

  void Node(const GumboNode* n) {
    switch (n->type) {
      case GUMBO_NODE_TEXT:
      case GUMBO_NODE_CDATA:
      case GUMBO_NODE_WHITESPACE:
        if (in_pre) {
          w.Raw(n->v.text.text);
        } else {
          w.Text(n->v.text.text);
        }
        return;
      case GUMBO_NODE_DOCUMENT:
        for (unsigned i = 0; i < n->v.document.children.length; i++)
          Node(static_cast<const GumboNode*>(n->v.document.children.data[i]));
        return;
      case GUMBO_NODE_ELEMENT:
      case GUMBO_NODE_TEMPLATE:
        break;
      default:
        return;  // comments
    }
    const GumboElement& e = n->v.element;
    const GumboTag tag = e.tag;
    if (tag == GUMBO_TAG_TITLE) {
      if (title.empty()) {
        Writer t;
        t.Text(TextOf(n));
        title = t.out();
      }
      return;
    }
    if (Skipped(tag)) return;
    if (const char* hidden = Attr(e, "hidden"); hidden != nullptr) return;
    if (const char* aria = Attr(e, "aria-hidden"); aria != nullptr && std::string_view(aria) == "true") return;
    if (int h = HeadingLevel(tag); h > 0) {
      w.Break(2);
      w.Prefix(std::string(static_cast<size_t>(h), '#') + " ");
      Children(n);
      w.Break(2);
      return;
    }
    switch (tag) {
      case GUMBO_TAG_BR:
        w.Break(1);
        return;
      case GUMBO_TAG_HR:
        w.Break(2);
        w.Prefix("---");
        w.Break(2);
        return;
      case GUMBO_TAG_IMG: {
        const char* alt = Attr(e, "alt");
        if (alt && *alt) w.Text(std::string(" ") + alt + " ");
        return;
      }
      case GUMBO_TAG_PRE: {
        w.Break(2);
        w.Prefix("```\n");
        bool saved = in_pre;
        in_pre = true;
        std::string body = TextOf(n);
        if (!body.empty() && body.front() == '\n') body.erase(0, 1);
        w.Raw(body);
        in_pre = saved;
        if (!w.out().empty() && w.out().back() != '\n') w.Raw("\n");
        w.Raw("```");
        w.Break(2);
        return;
      }
      case GUMBO_TAG_CODE:
        if (!in_pre) {
          w.Text("");
          w.Flush();
          w.Raw("`");
          Children(n);
          w.Raw("`");
          return;
        }
        break;
      case GUMBO_TAG_A: {
        const char* href = Attr(e, "href");
        std::string url = href ? ResolveUrl(base, href) : "";
        size_t start = w.out().size();
        Children(n);
        if (url.empty()) return;
        std::string& out = w.out();
        size_t first = start;
        while (first < out.size() && IsSpace(out[first])) first++;
        if (first >= out.size()) return;  // no text: drop the link
        out.insert(first, "[");
        out += "](" + url + ")";
        return;
      }
      case GUMBO_TAG_TR:
        w.Break(1);
        w.Prefix("|");
        Children(n);
        w.Break(1);
        return;
      case GUMBO_TAG_TD:
      case GUMBO_TAG_TH:
        w.Text(" ");
        Children(n);
        w.Raw(" |");
        return;
      default:
        break;
    }
    if (Block(tag)) {
      w.Break(2);
      if (tag == GUMBO_TAG_BLOCKQUOTE) {
        std::string saved = w.indent_;
        w.indent_ += "> ";
        w.Prefix("> ");
        Children(n);
        w.indent_ = saved;
      } else {
        Children(n);
      }
      w.Break(2);
      return;
    }
    Children(n);
  }
};

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && IsSpace(s[b])) b++;
  while (e > b && IsSpace(s[e - 1])) e--;
  return s.substr(b, e - b);
}

// Lines that hold only spaces become empty; runs of blank lines become one.
std::string Tidy(const std::string& s) {
  std::string out;
  size_t i = 0;
  int blank = 0;
  while (i <= s.size()) {
    size_t nl = s.find('\n', i);
    if (nl == std::string::npos) nl = s.size();
    std::string line = s.substr(i, nl - i);
    while (!line.empty() && IsSpace(line.back())) line.pop_back();
    bool is_blank = true;
    for (char c : line)
      if (!IsSpace(c) && c != '>') is_blank = false;
    if (is_blank) {
      if (++blank <= 1 && !out.empty()) out += '\n';
    } else {
      blank = 0;
      out += line;
      out += '\n';
    }
    i = nl + 1;
  }
  return Trim(out);
}

}  // namespace

std::string ResolveUrl(std::string_view base, std::string_view href) {
  std::string h(href);
  // Trim surrounding whitespace (common in hand-written HTML).
  h = Trim(h);
  if (h.empty()) return "";
  std::string lower;
  for (char c : h.substr(0, 11)) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.rfind("javascript:", 0) == 0 || lower.rfind("data:", 0) == 0 || lower.rfind("mailto:", 0) == 0) return "";
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  if (!u) return "";
  std::string b(base);
  if (!b.empty() && curl_url_set(u.get(), CURLUPART_URL, b.c_str(), 0) != CURLUE_OK) return "";
  if (curl_url_set(u.get(), CURLUPART_URL, h.c_str(), 0) != CURLUE_OK) return "";
  char* out = nullptr;
  if (curl_url_get(u.get(), CURLUPART_URL, &out, 0) != CURLUE_OK || out == nullptr) return "";
  std::string r(out);
  curl_free(out);
  if (r.rfind("http://", 0) != 0 && r.rfind("https://", 0) != 0) return "";
  return r;
}

ReadableText HtmlToMarkdown(std::string_view html, std::string_view base_url) {
  GumboOutput* doc = gumbo_parse_with_options(&kGumboDefaultOptions, html.data(), html.size());
  Walker walker;
  walker.base = std::string(base_url);
  // The <head> is skipped as a whole, so its <title> is read here.
  walker.Node(doc->document);
  if (walker.title.empty()) {
    // Find <title> under <head>.
    const GumboNode* root = doc->root;
    if (root && root->type == GUMBO_NODE_ELEMENT) {
      for (unsigned i = 0; i < root->v.element.children.length && walker.title.empty(); i++) {
        const GumboNode* c = static_cast<const GumboNode*>(root->v.element.children.data[i]);
        if (c->type != GUMBO_NODE_ELEMENT || c->v.element.tag != GUMBO_TAG_HEAD) continue;
        for (unsigned j = 0; j < c->v.element.children.length; j++) {
          const GumboNode* t = static_cast<const GumboNode*>(c->v.element.children.data[j]);
          if (t->type == GUMBO_NODE_ELEMENT && t->v.element.tag == GUMBO_TAG_TITLE) {
            Writer tw;
            tw.Text(Walker::TextOf(t));
            walker.title = tw.out();
            break;
          }
        }
      }
    }
  }
  gumbo_destroy_output(&kGumboDefaultOptions, doc);
  return ReadableText{Trim(walker.title), Tidy(walker.w.out())};
}

Result<ReadableText> PdfToText(std::string_view pdf) {
  // poppler-cpp does not throw for bad documents (load returns null), but a
  // library may still throw std::bad_alloc: keep it inside this module.
  try {
    std::vector<char> data(pdf.begin(), pdf.end());
    std::unique_ptr<poppler::document> doc(poppler::document::load_from_data(&data));
    if (!doc) return Status::InvalidArgument("the PDF could not be read");
    if (doc->is_locked()) return Status::PermissionDenied("the PDF is encrypted");
    ReadableText out;
    poppler::ustring t = doc->get_title();
    if (!t.empty()) {
      auto bytes = t.to_utf8();
      out.title = Trim(std::string(bytes.begin(), bytes.end()));
    }
    const int pages = doc->pages();
    for (int i = 0; i < pages; i++) {
      std::unique_ptr<poppler::page> p(doc->create_page(i));
      if (!p) continue;
      auto bytes = p->text().to_utf8();
      if (i > 0) out.text += "\n\f\n";
      out.text.append(bytes.begin(), bytes.end());
    }
    out.text = Tidy(out.text);
    return out;
  } catch (const std::exception& e) {
    return Status::Internal(std::string("PDF text extraction failed: ") + e.what());
  }
}

}  // namespace warren::webtools
