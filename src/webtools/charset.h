// Character sets of fetched pages (web_fetch): which charset a body is in,
// and its conversion to UTF-8 with glibc's iconv.
//
// The charset of a page is, in the order of the WHATWG HTML "encoding
// sniffing" steps: a byte order mark; the Content-Type `charset`
// parameter; for HTML, a <meta charset> or <meta http-equiv=Content-Type>
// within the first 1024 bytes (the prescan, a byte scanner, not a regex);
// else UTF-8. Labels are mapped as the WHATWG Encoding standard does where
// it differs from iconv: "iso-8859-1", "latin1" and "us-ascii" mean
// windows-1252, "shift_jis" means Windows-31J (CP932), "gb2312" means GBK.
//
// Conversion never emits a byte sequence that is not UTF-8: bytes the
// charset cannot map become U+FFFD. A charset iconv does not know is
// reported (`supported == false`) and the bytes are read as UTF-8 with the
// same replacement, so the caller can say so instead of showing mojibake.
//
// Stateless; thread-safe (each call opens its own iconv descriptor).
#pragma once

#include <string>
#include <string_view>

namespace warren::webtools {

// The `charset` parameter of a Content-Type value, lower case, unquoted;
// "" when absent.
std::string CharsetFromContentType(std::string_view content_type);

// The charset a <meta> of the first 1024 bytes of `html` declares, lower
// case; "" when none.
std::string CharsetFromHtmlMeta(std::string_view html);

// "utf-8", "utf-16le" or "utf-16be" for a body starting with that byte order
// mark; "" otherwise.
std::string CharsetFromBom(std::string_view body);

struct Decoded {
  std::string text;       // UTF-8
  std::string charset;    // the label used ("utf-8" when none was declared)
  std::string source;     // "bom", "content-type", "meta" or "default"
  bool supported = true;  // false: the charset is unknown to iconv
  size_t replaced = 0;    // bytes (or sequences) replaced with U+FFFD
};

// Decodes `body` per the order above. `html` enables the <meta> prescan.
Decoded DecodeBody(std::string_view body, std::string_view content_type, bool html);

// `bytes` in `charset` (a label as found in a page) to UTF-8; see above.
Decoded ToUtf8(std::string_view bytes, std::string_view charset);

}  // namespace warren::webtools
