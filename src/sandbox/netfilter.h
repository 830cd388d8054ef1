// Netfilter: the `isolated` policy's nftables rules, through libnftables.
// One table per runtime (`inet warren_<cgroup prefix>`), with
//   - input:   anything from the runtime's veths to the host itself (every
//              host address, the veth's own gateway included) is dropped,
//              except replies to connections the host opened;
//   - forward: nothing enters a sandbox's veth unless it answers a
//              connection the sandbox opened (no inbound, no sandbox to
//              sandbox); traffic out of a sandbox is dispatched by input
//              interface (verdict map) to that sandbox's own chain, which
//              drops spoofed sources and IPv6, accepts its own allow set,
//              then drops the blocked ranges (or everything, block_all);
//              unknown veths of the runtime are dropped (fail closed);
//   - postrouting (nat): egress from the pool is masqueraded;
//   - prerouting (nat): a `limited` sandbox's TCP and DNS are redirected to
//     the egress proxy on the host (chain `pre_<slot>`, dispatched by
//     interface), and input accepts exactly those from that sandbox's own
//     (interface, address) pair (set `limited_src`).
// Per sandbox: chain `sbx_<slot>` and interval set `allow_<slot>` (and
// `pre_<slot>` when limited).
//
// The whole table can be rendered from the desired state and replaced in
// one nftables transaction (atomic: the kernel never sees a half-built
// table): the reconcile used by recovery and as the fallback of every
// change. Replacing the table re-registers its hooks, which waits for RCU
// grace periods, so the common start/stop path changes only the one
// sandbox's set, chain and map entry (also one transaction each).
//
// Ownership: the table is a kernel object owned by the runtime; Apply with
// no sandboxes deletes it. Thread-safety: functions are reentrant; the
// runtime serialises Apply calls for one table with its lock.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "sandbox/network.h"

namespace warren::sandbox {

// The ranges a sandbox may not reach unless listed in its allow_cidrs:
// this network, RFC 1918, CGNAT, loopback, link-local (cloud metadata
// 169.254.169.254 included), multicast and reserved.
const std::vector<Ipv4Cidr>& BlockedRanges();

struct SandboxFirewall {
  int slot = -1;
  std::string ifname;     // host end of its veth
  uint32_t address = 0;   // the sandbox's own address (anti-spoofing)
  std::vector<Ipv4Cidr> allow;
  bool block_all = false;
  // `limited`: TCP (except to `allow`) is redirected to the egress proxy's
  // port and UDP port 53 to its DNS port (egress_proxy.h); everything else
  // is dropped (block_all). Ports 0 = no proxy known: nothing redirected,
  // so nothing gets out (fail closed).
  bool limited = false;
  uint16_t proxy_port = 0, dns_port = 0;
};

struct FirewallSpec {
  std::string table;      // e.g. "warren_warren"
  std::string if_prefix;  // NetIfPrefix(): matches every veth of this runtime
  Ipv4Cidr pool;
  std::vector<SandboxFirewall> sandboxes;
  uint16_t proxy_port = 0, dns_port = 0;  // the egress proxy (limited sandboxes); 0 = none
};

// "warren_" + the cgroup prefix with characters nft names cannot hold
// replaced by '_'.
std::string FirewallTableName(const std::string& cgroup_prefix);
// The nft script that replaces the table with `spec` (or deletes it when
// spec.sandboxes is empty). Pure; exposed for tests and debugging.
std::string RenderFirewall(const FirewallSpec& spec);
// Runs RenderFirewall(spec) in one transaction.
Status ApplyFirewall(const FirewallSpec& spec);
// The nft script that adds or refreshes one sandbox's set, chain and
// dispatch entry in an existing table (idempotent), and the one that
// removes them (fails if any is absent). Pure.
std::string RenderAddSandbox(const std::string& table, const SandboxFirewall& s);
std::string RenderRemoveSandbox(const std::string& table, const SandboxFirewall& s);
// Run the scripts above in one transaction each; an error (e.g. the table
// does not exist) changes nothing.
Status AddSandboxFirewall(const std::string& table, const SandboxFirewall& s);
Status RemoveSandboxFirewall(const std::string& table, const SandboxFirewall& s);
// Empty when this kernel and libnftables can hold the table (checked with a
// dry run of a representative table: inet filter + nat hooks, interval
// sets, verdict maps), else the reason.
std::string FirewallUnsupportedReason();

}  // namespace warren::sandbox
