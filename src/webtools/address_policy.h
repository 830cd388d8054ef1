// AddressPolicy: which network addresses web_fetch may connect to (SSRF
// guard). The check runs on the address libcurl is about to connect to (its
// OPENSOCKETFUNCTION), after DNS resolution and for every hop of a redirect,
// so a hostname that resolves (or re-resolves: DNS rebinding) to a private
// address, and a redirect into a private range, are refused alike.
//
// Non-public (refused unless allowed): IPv4 0/8, 10/8, 100.64/10 (CGNAT),
// 127/8, 169.254/16 (link-local, incl. the 169.254.169.254 metadata
// service), 172.16/12, 192.0.0/24, 192.0.2/24, 192.168/16, 198.18/15,
// 198.51.100/24, 203.0.113/24, 224/4 (multicast), 240/4 (reserved, incl.
// broadcast). IPv6 ::, ::1, fc00::/7 (ULA), fe80::/10 (link-local),
// fec0::/10 (site-local), ff00::/8 (multicast), 2001:db8::/32
// (documentation), 100::/64 (discard), and every form that embeds an IPv4
// address (::ffff:a.b.c.d mapped, ::a.b.c.d compatible, 64:ff9b::/96 NAT64,
// 2002::/16 6to4, 2001::/32 Teredo) is judged by that IPv4 address (Teredo
// is refused outright: its embedded address is obfuscated and the tunnel
// reaches anywhere).
//
// Exceptions come from the config: `allow_private` (every address), and
// `allow` entries "CIDR", "IP" or "IP:PORT" / "[IPv6]:PORT", which admit
// that range (on that port only, when one is given). Values only; thread-safe
// for concurrent const use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

struct sockaddr;

namespace warren::webtools {

// An IP address in 16 bytes (IPv4 as ::ffff:a.b.c.d).
struct IpAddress {
  uint8_t bytes[16] = {};
  bool v4 = false;
  static std::optional<IpAddress> Parse(std::string_view text);
  static std::optional<IpAddress> FromSockaddr(const struct sockaddr* sa, uint16_t* port);
  std::string ToString() const;
};

// True for public unicast addresses (see the list above).
bool IsPublicAddress(const IpAddress& ip);

class AddressPolicy final {
 public:
  struct Rule {
    IpAddress net;
    int prefix = 128;  // on the 16-byte form
    std::optional<uint16_t> port;
  };
  AddressPolicy() = default;
  // Parses `allow` entries; InvalidArgument names a bad one.
  static Result<AddressPolicy> Make(bool allow_private, const std::vector<std::string>& allow);

  // OK, or PermissionDenied naming the address and why.
  Status Check(const IpAddress& ip, uint16_t port) const;

 private:
  bool allow_private_ = false;
  std::vector<Rule> rules_;
};

}  // namespace warren::webtools
