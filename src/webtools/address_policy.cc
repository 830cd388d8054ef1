#include "webtools/address_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace warren::webtools {
namespace {

bool InPrefix(const uint8_t* a, const uint8_t* net, int bits) {
  int full = bits / 8;
  if (std::memcmp(a, net, static_cast<size_t>(full)) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[full] & mask) == (net[full] & mask);
}

bool PublicV4(const uint8_t* b) {
  const uint8_t a = b[0], c = b[1];
  if (a == 0 || a == 10 || a == 127) return false;
  if (a == 100 && (c & 0xc0) == 64) return false;   // 100.64/10
  if (a == 169 && c == 254) return false;           // link-local, metadata
  if (a == 172 && (c & 0xf0) == 16) return false;   // 172.16/12
  if (a == 192 && c == 168) return false;
  if (a == 192 && c == 0 && (b[2] == 0 || b[2] == 2)) return false;
  if (a == 198 && (c & 0xfe) == 18) return false;   // 198.18/15
  if (a == 198 && c == 51 && b[2] == 100) return false;
  if (a == 203 && c == 0 && b[2] == 113) return false;
  if (a >= 224) return false;                       // multicast, reserved, broadcast
  return true;
}

}  // namespace

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  std::string s(text);
  IpAddress ip;
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    ip.v4 = true;
    ip.bytes[10] = ip.bytes[11] = 0xff;
    std::memcpy(ip.bytes + 12, &v4, 4);
    return ip;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(ip.bytes, &v6, 16);
    return ip;
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::FromSockaddr(const struct sockaddr* sa, uint16_t* port) {
  if (sa == nullptr) return std::nullopt;
  IpAddress ip;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ip.v4 = true;
    ip.bytes[10] = ip.bytes[11] = 0xff;
    std::memcpy(ip.bytes + 12, &in->sin_addr, 4);
    if (port) *port = ntohs(in->sin_port);
    return ip;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(ip.bytes, &in6->sin6_addr, 16);
    if (port) *port = ntohs(in6->sin6_port);
    return ip;
  }
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (v4) {
    inet_ntop(AF_INET, bytes + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes, buf, sizeof buf);
  }
  return buf;
}

bool IsPublicAddress(const IpAddress& ip) {
  const uint8_t* b = ip.bytes;
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t kZero[16] = {};
  static const uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (ip.v4 || std::memcmp(b, kMapped, 12) == 0) return PublicV4(b + 12);
  if (std::memcmp(b, kZero, 12) == 0) {
    // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d.
    return false;
  }
  if (std::memcmp(b, kNat64, 12) == 0) return PublicV4(b + 12);          // 64:ff9b::/96
  if (b[0] == 0x20 && b[1] == 0x02) return PublicV4(b + 2);             // 6to4 2002::/16
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) return false;  // Teredo 2001::/32
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return false;  // 2001:db8::/32
  if (b[0] == 0x01 && b[1] == 0 && std::memcmp(b + 2, kZero, 6) == 0) return false;  // 100::/64
  if ((b[0] & 0xfe) == 0xfc) return false;                               // fc00::/7 ULA
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;               // fe80::/10
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return false;               // fec0::/10
  if (b[0] == 0xff) return false;                                        // multicast
  return true;
}

Result<AddressPolicy> AddressPolicy::Make(bool allow_private, const std::vector<std::string>& allow) {
  AddressPolicy p;
  p.allow_private_ = allow_private;
  for (const std::string& entry : allow) {
    auto bad = [&] {
      return Status::InvalidArgument("web_fetch allow entry '" + entry +
                                     "': expected CIDR (10.0.0.0/8), IP, IP:PORT or [IPv6]:PORT");
    };
    Rule r;
    std::string_view s = entry;
    std::string host;
    std::optional<uint16_t> port;
    if (!s.empty() && s.front() == '[') {
      size_t close = s.find(']');
      if (close == std::string_view::npos) return bad();
      host = std::string(s.substr(1, close - 1));
      s.remove_prefix(close + 1);
      if (!s.empty()) {
        if (s.front() != ':') return bad();
        s.remove_prefix(1);
        uint16_t v = 0;
        auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc() || ptr != s.data() + s.size() || v == 0) return bad();
        port = v;
      }
    } else if (size_t slash = s.find('/'); slash != std::string_view::npos) {
      host = std::string(s.substr(0, slash));
      std::string_view bits = s.substr(slash + 1);
      int v = -1;
      auto [ptr, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), v);
      if (ec != std::errc() || ptr != bits.data() + bits.size() || v < 0) return bad();
      auto ip = IpAddress::Parse(host);
      if (!ip) return bad();
      if (ip->v4 ? v > 32 : v > 128) return bad();
      r.net = *ip;
      r.prefix = ip->v4 ? 96 + v : v;
      p.rules_.push_back(r);
      continue;
    } else if (std::count(s.begin(), s.end(), ':') == 1) {
      size_t colon = s.find(':');
      host = std::string(s.substr(0, colon));
      std::string_view ps = s.substr(colon + 1);
      uint16_t v = 0;
      auto [ptr, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), v);
      if (ec != std::errc() || ptr != ps.data() + ps.size() || v == 0) return bad();
      port = v;
    } else {
      host = entry;
    }
    auto ip = IpAddress::Parse(host);
    if (!ip) return bad();
    r.net = *ip;
    r.prefix = 128;
    r.port = port;
    p.rules_.push_back(r);
  }
  return p;
}

Status AddressPolicy::Check(const IpAddress& ip, uint16_t port) const {
  if (allow_private_ || IsPublicAddress(ip)) return Status::Ok();
  for (const Rule& r : rules_) {
    if (r.port && *r.port != port) continue;
    if (InPrefix(ip.bytes, r.net.bytes, r.prefix)) return Status::Ok();
  }
  return Status::PermissionDenied("address " + ip.ToString() + " is not public (loopback, private, link-local or "
                                  "reserved); web_fetch refuses it unless the config allows it");
}

}  // namespace warren::webtools
