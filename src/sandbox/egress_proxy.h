// EgressProxy: name-based egress control for `limited` sandboxes
// (docs/SANDBOX.md "limited", threat model in docs/SECURITY.md).
//
// The runtime's nftables table redirects every TCP connection a limited
// sandbox opens (any address, any port, except its allow_cidrs) to the
// proxy's TCP port, and every UDP datagram to port 53 to its DNS port. The
// proxy then, per connection:
//   1. finds the sandbox by the source address (the table drops spoofed
//      sources before the redirect) -> its policy; unknown sources are cut;
//   2. reads the first bytes (bounded, with a deadline) and takes the
//      destination name from the TLS ClientHello's SNI, or from the HTTP
//      request (Host header, absolute-form URL, or CONNECT authority);
//   3. checks the name against the sandbox's HostAllowlist;
//   4. resolves it on the host (the hosts override first), drops addresses
//      in the blocked ranges (loopback, RFC 1918, link-local/metadata,
//      CGNAT, multicast, the pool) and the host's own addresses unless the
//      sandbox's allow_cidrs list them, connects to an address it checked
//      (never re-resolving), and verifies the connected peer is that one;
//   5. replays the bytes it read and splices both ways until either side
//      closes or the connection is idle for `idle_timeout`. TLS is spliced
//      as is. Plain HTTP (and plain HTTP inside a CONNECT tunnel) is framed
//      request by request (HttpRequestFramer): every head on a kept-alive
//      or pipelined connection is checked again, against the host the
//      connection was opened for and the sandbox's current policy; a
//      refused request never reaches the upstream, and the client gets the
//      upstream's answers to earlier requests, then the 403, then a close.
// A refusal is an HTTP 403 with the reason in the body (plain HTTP and
// CONNECT), a TLS `access_denied` alert (TLS), or a reset (anything else),
// and one `sandbox.egress.denied` log line (rate-limited).
//
// DNS: the responder answers every valid name with the asking sandbox's
// gateway address (connections are redirected anyway) and never forwards a
// query, so DNS is no channel out of the sandbox.
//
// Ownership: owns its sockets and one thread running an io_context; the
// destructor stops it and closes every connection. Thread-safety: Start,
// ports and stats are safe from any thread; the lookup callback runs on
// the proxy's thread and must be thread-safe with respect to its owner.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"
#include "sandbox/egress_sniff.h"
#include "sandbox/network.h"

namespace warren::sandbox {

struct EgressPolicy {
  std::string sandbox_id;
  HostAllowlist hosts;
  std::vector<Ipv4Cidr> allow_cidrs;  // may be reached even inside the blocked ranges
  uint32_t gateway = 0;               // what its DNS answers say
};
// The policy of the limited sandbox that owns source address `addr`
// (host order); nullopt = not a running limited sandbox.
using EgressPolicyLookup = std::function<std::optional<EgressPolicy>(uint32_t addr)>;

struct EgressProxyOptions {
  uint16_t tcp_port = 0;  // 0 = any free port
  uint16_t dns_port = 0;
  // name -> IPv4 address, consulted before the host's resolver. For tests
  // (hosts in network namespaces the test makes) and split horizon; the
  // addresses still pass the blocked-range check.
  std::map<std::string, std::string> hosts_override;
  int max_connections = 1024;            // in flight, all sandboxes
  int max_connections_per_sandbox = 128;
  std::chrono::milliseconds handshake_timeout{10000};  // first bytes until the name is known
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds idle_timeout{300000};       // no byte either way
  // After a later request on a plain HTTP connection is refused: how long
  // the upstream may take to finish what it owes for earlier requests and
  // close its side before the connection is cut without the 403.
  std::chrono::milliseconds drain_timeout{10000};
};

struct EgressStats {
  int64_t allowed = 0;
  int64_t denied = 0;
  int64_t dns_answers = 0;
  int64_t active = 0;
  int64_t http_requests = 0;  // request heads checked on plain HTTP connections and tunnels
  Json ToJson() const;
};

// The ranges (and host addresses) the proxy never connects to unless a
// sandbox's allow_cidrs list them. Exposed for tests.
bool EgressTargetBlocked(uint32_t addr, const std::vector<Ipv4Cidr>& allow, const std::vector<uint32_t>& host_addrs);
// The host's own IPv4 addresses (every interface).
std::vector<uint32_t> HostIpv4Addresses();

class EgressProxy final {
 public:
  // Binds 0.0.0.0:tcp_port (TCP) and 0.0.0.0:dns_port (UDP) and starts the
  // thread. Only sources the lookup knows are served.
  static Result<std::unique_ptr<EgressProxy>> Start(EgressProxyOptions opts, EgressPolicyLookup lookup);
  ~EgressProxy();
  EgressProxy(const EgressProxy&) = delete;
  EgressProxy& operator=(const EgressProxy&) = delete;

  uint16_t tcp_port() const;
  uint16_t dns_port() const;
  EgressStats stats() const;

  struct Impl;

 private:
  explicit EgressProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace warren::sandbox
