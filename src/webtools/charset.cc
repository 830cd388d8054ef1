#include "webtools/charset.h"

#include <iconv.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <optional>

namespace warren::webtools {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r' || s.front() == '\f'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r' || s.back() == '\f'))
    s.remove_suffix(1);
  return s;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

bool IsUtf8Label(const std::string& l) { return l == "utf-8" || l == "utf8" || l == "unicode-1-1-utf-8"; }

// The iconv name for a page's charset label; "" for a label that is not a
// plausible charset name (iconv is never given arbitrary page bytes).
std::string IconvName(const std::string& label) {
  if (label.empty() || label.size() > 40) return "";
  for (char c : label)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':')) return "";
  static const std::pair<const char*, const char*> kAliases[] = {
      // WHATWG Encoding: these labels are windows-1252.
      {"iso-8859-1", "WINDOWS-1252"}, {"iso8859-1", "WINDOWS-1252"}, {"iso_8859-1", "WINDOWS-1252"},
      {"latin1", "WINDOWS-1252"}, {"l1", "WINDOWS-1252"}, {"us-ascii", "WINDOWS-1252"}, {"ascii", "WINDOWS-1252"},
      {"cp1252", "WINDOWS-1252"}, {"x-cp1252", "WINDOWS-1252"}, {"cp819", "WINDOWS-1252"}, {"ibm819", "WINDOWS-1252"},
      {"iso-ir-100", "WINDOWS-1252"}, {"csisolatin1", "WINDOWS-1252"}, {"ansi_x3.4-1968", "WINDOWS-1252"},
      // Shift_JIS as browsers decode it.
      {"shift_jis", "CP932"}, {"shift-jis", "CP932"}, {"sjis", "CP932"}, {"x-sjis", "CP932"}, {"ms_kanji", "CP932"},
      {"ms932", "CP932"}, {"windows-31j", "CP932"}, {"csshiftjis", "CP932"},
      {"gb2312", "GBK"}, {"csgb2312", "GBK"}, {"x-gbk", "GBK"}, {"chinese", "GBK"},
      {"big5", "BIG5-HKSCS"}, {"x-x-big5", "BIG5-HKSCS"},
      {"utf-16", "UTF-16LE"}, {"unicode", "UTF-16LE"},
      {"ks_c_5601-1987", "EUC-KR"}, {"windows-949", "EUC-KR"},
      {"tis-620", "WINDOWS-874"}, {"iso-8859-11", "WINDOWS-874"},
      {"iso-8859-9", "WINDOWS-1254"}, {"latin5", "WINDOWS-1254"},
  };
  for (const auto& [from, to] : kAliases)
    if (label == from) return to;
  std::string up = label;
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return up;
}

// Appends `s` (claimed UTF-8), each invalid byte replaced with U+FFFD.
void AppendValidUtf8(std::string_view s, std::string* out, size_t* replaced) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; k++) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && n > 1) {
      // Overlong forms, surrogates and values past U+10FFFF are invalid.
      uint32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
      for (size_t k = 1; k < n; k++) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      ok = !((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
             (cp >= 0xD800 && cp <= 0xDFFF));
    }
    if (!ok) {
      out->append(kReplacement);
      (*replaced)++;
      i++;
      continue;
    }
    out->append(s.substr(i, n));
    i += n;
  }
}

// An attribute of a tag being prescanned: name and value, lower-cased names.
struct Attr {
  std::string name, value;
};

// WHATWG "get an attribute" (simplified): from `p`, skips spaces and `/`,
// reads one attribute; nullopt at '>' or the end.
std::optional<Attr> NextAttr(std::string_view s, size_t* p) {
  size_t i = *p;
  while (i < s.size() && (IsSpace(s[i]) || s[i] == '/')) i++;
  if (i >= s.size() || s[i] == '>') {
    *p = i;
    return std::nullopt;
  }
  Attr a;
  while (i < s.size() && s[i] != '=' && s[i] != '>' && s[i] != '/' && !IsSpace(s[i]))
    a.name += static_cast<char>(std::tolower(static_cast<unsigned char>(s[i++])));
  while (i < s.size() && IsSpace(s[i])) i++;
  if (i < s.size() && s[i] == '=') {
    i++;
    while (i < s.size() && IsSpace(s[i])) i++;
    if (i < s.size() && (s[i] == '"' || s[i] == '\'')) {
      char q = s[i++];
      while (i < s.size() && s[i] != q) a.value += s[i++];
      if (i < s.size()) i++;
    } else {
      while (i < s.size() && !IsSpace(s[i]) && s[i] != '>') a.value += s[i++];
    }
  }
  *p = i;
  return a;
}

// WHATWG "extract a character encoding from a meta element": the value
// after "charset" [spaces] "=" in a content attribute.
std::string CharsetFromMetaContent(std::string_view content) {
  std::string lower = Lower(content);
  size_t at = 0;
  while ((at = lower.find("charset", at)) != std::string::npos) {
    size_t i = at + 7;
    while (i < lower.size() && IsSpace(lower[i])) i++;
    if (i >= lower.size() || lower[i] != '=') {
      at += 7;
      continue;
    }
    i++;
    while (i < lower.size() && IsSpace(lower[i])) i++;
    if (i >= lower.size()) return "";
    if (lower[i] == '"' || lower[i] == '\'') {
      char q = lower[i++];
      size_t end = lower.find(q, i);
      return end == std::string::npos ? "" : std::string(Trim(std::string_view(lower).substr(i, end - i)));
    }
    size_t end = i;
    while (end < lower.size() && !IsSpace(lower[end]) && lower[end] != ';') end++;
    return lower.substr(i, end - i);
  }
  return "";
}

}  // namespace

std::string CharsetFromContentType(std::string_view content_type) {
  size_t semi = content_type.find(';');
  while (semi != std::string_view::npos) {
    std::string_view rest = content_type.substr(semi + 1);
    size_t next = rest.find(';');
    std::string_view param = Trim(rest.substr(0, next));
    size_t eq = param.find('=');
    if (eq != std::string_view::npos && Lower(Trim(param.substr(0, eq))) == "charset") {
      std::string_view v = Trim(param.substr(eq + 1));
      if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) v = v.substr(1, v.size() - 2);
      return Lower(Trim(v));
    }
    semi = next == std::string_view::npos ? std::string_view::npos : semi + 1 + next;
  }
  return "";
}

std::string CharsetFromHtmlMeta(std::string_view html) {
  std::string_view s = html.substr(0, 1024);
  size_t i = 0;
  while (i < s.size()) {
    if (s.compare(i, 4, "<!--") == 0) {
      size_t end = s.find("-->", i + 4);
      if (end == std::string_view::npos) return "";
      i = end + 3;
      continue;
    }
    if (s[i] != '<') {
      i++;
      continue;
    }
    if (i + 5 < s.size() && Lower(s.substr(i, 5)) == "<meta" && (IsSpace(s[i + 5]) || s[i + 5] == '/')) {
      size_t p = i + 5;
      std::string charset, content;
      bool http_equiv_ct = false;
      while (auto a = NextAttr(s, &p)) {
        if (a->name == "charset" && charset.empty()) charset = Lower(Trim(a->value));
        else if (a->name == "content" && content.empty()) content = a->value;
        else if (a->name == "http-equiv") http_equiv_ct = Lower(Trim(a->value)) == "content-type";
      }
      if (!charset.empty()) return charset;
      if (http_equiv_ct && !content.empty()) {
        std::string c = CharsetFromMetaContent(content);
        if (!c.empty()) return c;
      }
      i = p + 1;
      continue;
    }
    // Any other tag, end tag, <!...> or <?...>: skip to its '>'.
    size_t end = s.find('>', i + 1);
    if (end == std::string_view::npos) return "";
    i = end + 1;
  }
  return "";
}

std::string CharsetFromBom(std::string_view body) {
  if (body.size() >= 3 && body.substr(0, 3) == "\xEF\xBB\xBF") return "utf-8";
  if (body.size() >= 2 && body.substr(0, 2) == "\xFF\xFE") return "utf-16le";
  if (body.size() >= 2 && body.substr(0, 2) == "\xFE\xFF") return "utf-16be";
  return "";
}

Decoded ToUtf8(std::string_view bytes, std::string_view charset) {
  Decoded d;
  d.charset = Lower(Trim(charset));
  if (d.charset.empty()) d.charset = "utf-8";
  std::string name = IsUtf8Label(d.charset) ? "" : IconvName(d.charset);
  iconv_t cd = name.empty() ? reinterpret_cast<iconv_t>(-1) : iconv_open("UTF-8", name.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) {
    d.supported = IsUtf8Label(d.charset);
    d.text.reserve(bytes.size());
    AppendValidUtf8(bytes, &d.text, &d.replaced);
    return d;
  }
  std::string out;
  out.reserve(bytes.size() * 2 + 16);
  char* in = const_cast<char*>(bytes.data());
  size_t in_left = bytes.size();
  char buf[16384];
  while (in_left > 0) {
    char* o = buf;
    size_t o_left = sizeof(buf);
    size_t rc = iconv(cd, &in, &in_left, &o, &o_left);
    out.append(buf, static_cast<size_t>(o - buf));
    if (rc != static_cast<size_t>(-1)) break;
    const int err = errno;
    if (err == E2BIG) continue;
    // EILSEQ (a byte the charset cannot map) or EINVAL (a sequence cut at
    // the end): one replacement character, then on from the next byte.
    out.append(kReplacement);
    d.replaced++;
    iconv(cd, nullptr, nullptr, nullptr, nullptr);  // back to the initial shift state
    if (err != EILSEQ) break;  // the input ends inside a sequence
    in++;
    in_left--;
  }
  // Flush a stateful encoding's final shift sequence.
  {
    char* o = buf;
    size_t o_left = sizeof(buf);
    iconv(cd, nullptr, nullptr, &o, &o_left);
    out.append(buf, static_cast<size_t>(o - buf));
  }
  iconv_close(cd);
  // iconv's output is UTF-8; checked anyway, so nothing else can slip out.
  AppendValidUtf8(out, &d.text, &d.replaced);
  return d;
}

Decoded DecodeBody(std::string_view body, std::string_view content_type, bool html) {
  if (std::string bom = CharsetFromBom(body); !bom.empty()) {
    Decoded d = ToUtf8(body.substr(bom == "utf-8" ? 3 : 2), bom);
    d.source = "bom";
    return d;
  }
  std::string unknown;  // a declared charset iconv does not know
  auto usable = [](const std::string& label) {
    if (IsUtf8Label(label)) return true;
    std::string name = IconvName(label);
    if (name.empty()) return false;
    iconv_t cd = iconv_open("UTF-8", name.c_str());
    if (cd == reinterpret_cast<iconv_t>(-1)) return false;
    iconv_close(cd);
    return true;
  };
  if (std::string ct = CharsetFromContentType(content_type); !ct.empty()) {
    if (usable(ct)) {
      Decoded d = ToUtf8(body, ct);
      d.source = "content-type";
      return d;
    }
    unknown = ct;
  }
  if (html) {
    std::string meta = CharsetFromHtmlMeta(body);
    // WHATWG: a <meta> naming UTF-16 means UTF-8 (the bytes were ASCII-compatible to be read).
    if (meta.rfind("utf-16", 0) == 0) meta = "utf-8";
    if (!meta.empty()) {
      if (usable(meta)) {
        Decoded d = ToUtf8(body, meta);
        d.source = "meta";
        return d;
      }
      if (unknown.empty()) unknown = meta;
    }
  }
  Decoded d = ToUtf8(body, "utf-8");
  d.source = "default";
  if (!unknown.empty()) {
    d.charset = unknown;
    d.supported = false;
  }
  return d;
}

}  // namespace warren::webtools
