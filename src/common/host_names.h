// Host names and host patterns as Warren accepts them in allowlists (a
// cloud environment's `networking.allowed_hosts`, a `limited` sandbox's
// `allow_hosts`, the egress proxy's matcher in sandbox/egress_sniff.h).
// Pure functions over untrusted text; never throw; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace warren {

// A DNS host name in canonical form: lower case, no trailing dot, LDH
// labels of 1..63 characters (underscores allowed: some real hosts use
// them), total <= 253, last label not all digits. nullopt otherwise (IP
// literals too).
std::optional<std::string> CanonicalHostName(std::string_view s);
// True when `s` is a dotted-quad IPv4 literal (no leading zeros).
bool IsIpv4Literal(std::string_view s);
// One allowlist entry in canonical form: "example.com", "*.example.com"
// (two labels at least after "*."), or an IPv4 literal. InvalidArgument
// saying what is wrong otherwise (empty, "*", URLs, paths, ports, IPv6,
// wildcards elsewhere).
Result<std::string> CanonicalHostPattern(std::string_view entry);

}  // namespace warren
