#include "common/host_names.h"

#include <cctype>

namespace warren {

std::optional<std::string> CanonicalHostName(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return std::nullopt;
  std::string out;
  out.reserve(s.size());
  size_t label = 0;
  bool all_digits_label = true;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
    if (c == '.') {
      if (label == 0 || out.back() == '-') return std::nullopt;
      label = 0;
      all_digits_label = true;
      out += c;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return std::nullopt;
    if (label == 0 && c == '-') return std::nullopt;
    if (++label > 63) return std::nullopt;
    if (!(c >= '0' && c <= '9')) all_digits_label = false;
    out += c;
  }
  if (label == 0 || out.back() == '-') return std::nullopt;
  // A name whose last label is all digits is an address, not a name.
  if (all_digits_label) return std::nullopt;
  return out;
}

bool IsIpv4Literal(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find('.', i);
    if (j == std::string_view::npos) j = s.size();
    std::string_view p = s.substr(i, j - i);
    if (p.empty() || p.size() > 3) return false;
    int v = 0;
    for (char c : p) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + (c - '0');
    }
    if (v > 255 || (p.size() > 1 && p[0] == '0')) return false;
    ++parts;
    i = j + 1;
    if (j == s.size()) break;
  }
  return parts == 4;
}

Result<std::string> CanonicalHostPattern(std::string_view e) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("allowed host '" + std::string(e) + "': " + why);
  };
  if (e.empty()) return bad("empty");
  if (e.find("://") != std::string_view::npos || e.find('/') != std::string_view::npos) {
    return bad("a host name, not a URL (no scheme or path)");
  }
  if (e.size() >= 2 && e.substr(0, 2) == "*.") {
    auto c = CanonicalHostName(e.substr(2));
    if (!c) return bad("not a valid host name pattern");
    if (c->find('.') == std::string::npos) return bad("a wildcard needs at least two labels after '*.'");
    return "*." + *c;
  }
  if (e.find('*') != std::string_view::npos) return bad("a wildcard is only allowed as a leading '*.'");
  if (IsIpv4Literal(e)) return std::string(e);
  if (e.find(':') != std::string_view::npos) return bad("no port or IPv6 (the hosts are names or IPv4 literals)");
  auto c = CanonicalHostName(e);
  if (!c) return bad("not a valid host name");
  return *c;
}

}  // namespace warren
