// Network: the `isolated` policy's links and addresses, over rtnetlink
// (libnl-route-3). Each isolated sandbox gets one veth pair: the host end
// (named per runtime and slot, see NetSlot) holds the first address of a
// routed point-to-point /30 from the runtime's pool, the peer is created
// directly inside the sandbox's network namespace as `eth0` with the second
// address and a default route via the host end. There is no bridge: two
// sandboxes share no L2 segment, and everything between them is routed
// through the host, where the nftables rules (netfilter.h) apply.
//
// The sandbox's netns is entered through a pidfd of its init (no pid race),
// from a short-lived helper thread: setns(CLONE_NEWNET) only changes the
// calling thread, and a netlink socket keeps the namespace it was opened in.
//
// Ownership: functions create and delete kernel links; nothing is cached.
// Thread-safety: all functions are reentrant.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace warren::sandbox {

// An IPv4 prefix; `addr` in host byte order with no bits set past `len`.
struct Ipv4Cidr {
  uint32_t addr = 0;
  int len = 32;
  std::string ToString() const;  // "10.213.0.0/16"
  bool Contains(uint32_t a) const;
};

// "a.b.c.d" -> host-order address; InvalidArgument otherwise.
Result<uint32_t> ParseIpv4(const std::string& s);
std::string FormatIpv4(uint32_t a);
// Strict "a.b.c.d/len" (a bare address means /32). Host bits past `len`
// are an error rather than silently cleared, so a typo cannot open a
// different range than the user meant.
Result<Ipv4Cidr> ParseIpv4Cidr(const std::string& s);

// One sandbox's point-to-point link.
struct NetSlot {
  std::string host_if;      // host end of the veth, <= 15 chars
  uint32_t host_addr = 0;   // gateway as the sandbox sees it
  uint32_t sandbox_addr = 0;
  int prefix_len = 30;
};

// The interface-name prefix of one runtime: "w" + 6 hex digits of a hash of
// its cgroup prefix + "n". Every host-end veth of that runtime starts with
// it (and nothing else does), so Recover() can find orphans by name.
std::string NetIfPrefix(const std::string& cgroup_prefix);
// The slot-th /30 of `pool` and its interface name; ResourceExhausted when
// the pool has no room for that slot.
Result<NetSlot> NetSlotFor(const Ipv4Cidr& pool, const std::string& if_prefix, int slot);

// Creates the veth pair for `slot`: host end in the caller's netns, peer
// "eth0" in the netns of the process behind `pidfd`; addresses, links up
// (lo too), the sandbox's default route, and IPv4 forwarding on the host end
// only. On failure removes the host end again (the peer goes with it).
Status SetupVeth(const NetSlot& slot, int pidfd);
// Deletes a host-side link by name (its veth peer goes with it). OK if absent.
Status DeleteLink(const std::string& name);
// Names of the host links whose name starts with `prefix`.
Result<std::vector<std::string>> ListLinks(const std::string& prefix);
// Interfaces that carry an IPv4 default route in the main table (uplinks).
Result<std::vector<std::string>> DefaultRouteInterfaces();
// Writes 1 to /proc/sys/net/ipv4/conf/<ifname>/forwarding.
Status EnableForwarding(const std::string& ifname);

}  // namespace warren::sandbox
