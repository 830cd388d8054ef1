#include "sandbox/netfilter.h"

#include <nftables/libnftables.h>

#include <cctype>
#include <memory>
#include <sstream>

namespace warren::sandbox {

namespace {

struct CtxFree {
  void operator()(nft_ctx* c) const { nft_ctx_free(c); }
};
using Ctx = std::unique_ptr<nft_ctx, CtxFree>;

// Runs an nft script in one transaction; errors carry nft's own message.
Status RunNft(const std::string& script, bool dry_run) {
  Ctx ctx(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!ctx) return Status::Internal("nft_ctx_new failed");
  nft_ctx_buffer_output(ctx.get());
  nft_ctx_buffer_error(ctx.get());
  nft_ctx_set_dry_run(ctx.get(), dry_run);
  if (nft_run_cmd_from_buffer(ctx.get(), script.c_str()) != 0) {
    std::string err = nft_ctx_get_error_buffer(ctx.get());
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return Status::IOError("nftables: " + err);
  }
  return Status::Ok();
}

std::string Elements(const std::vector<Ipv4Cidr>& v) {
  std::string out;
  for (const auto& c : v) {
    if (!out.empty()) out += ", ";
    out += c.ToString();
  }
  return out;
}

const char kAllowSetType[] = "type ipv4_addr; flags interval; auto-merge;";

// A sandbox gets its set allow_<slot> only when it allows something. Before
// every command, libnftables fills its cache with the elements of every
// interval set in the table, one netlink dump per set, and the kernel finds
// each set by a linear name search: with a set per sandbox, one sandbox's
// add or remove cost O(sandboxes^2) (0.2 s each at 3,000 started sandboxes,
// which starved the janitor). Most sandboxes (isolated, no allow_cidrs) now
// have none, so that cost follows only the sandboxes with an allowlist.
bool HasAllowSet(const SandboxFirewall& s) { return !s.allow.empty(); }

// The rules of chain sbx_<slot>, one per line, without indentation.
std::vector<std::string> SandboxRules(const SandboxFirewall& s) {
  std::vector<std::string> r = {"meta nfproto ipv6 drop", "ip saddr != " + FormatIpv4(s.address) + " drop"};
  if (HasAllowSet(s)) r.push_back("ip daddr @allow_" + std::to_string(s.slot) + " accept");
  if (s.block_all) {
    r.push_back("drop");
  } else {
    r.push_back("ip daddr @blocked drop");
    r.push_back("accept");
  }
  return r;
}


// The rules of chain pre_<slot> (nat prerouting) of a limited sandbox.
std::vector<std::string> PreRules(const SandboxFirewall& s) {
  std::vector<std::string> r = {"meta nfproto ipv6 return", "ip saddr != " + FormatIpv4(s.address) + " return"};
  if (HasAllowSet(s)) r.push_back("ip daddr @allow_" + std::to_string(s.slot) + " return");
  if (s.proxy_port) r.push_back("meta l4proto tcp redirect to :" + std::to_string(s.proxy_port));
  if (s.dns_port) r.push_back("udp dport 53 redirect to :" + std::to_string(s.dns_port));
  return r;
}

std::string LimitedElement(const SandboxFirewall& s) {
  return "\"" + s.ifname + "\" . " + FormatIpv4(s.address);
}

}  // namespace

const std::vector<Ipv4Cidr>& BlockedRanges() {
  static const std::vector<Ipv4Cidr> kRanges = {
      {0x00000000, 8},   // 0.0.0.0/8 "this network"
      {0x0A000000, 8},   // 10.0.0.0/8 RFC 1918 (the sandbox pool too)
      {0x64400000, 10},  // 100.64.0.0/10 CGNAT
      {0x7F000000, 8},   // 127.0.0.0/8 loopback
      {0xA9FE0000, 16},  // 169.254.0.0/16 link-local, cloud metadata
      {0xAC100000, 12},  // 172.16.0.0/12 RFC 1918
      {0xC0A80000, 16},  // 192.168.0.0/16 RFC 1918
      {0xE0000000, 3},   // 224.0.0.0/3 multicast, reserved, broadcast
  };
  return kRanges;
}

std::string FirewallTableName(const std::string& cgroup_prefix) {
  std::string t = "warren_";
  for (char c : cgroup_prefix) t += std::isalnum(static_cast<unsigned char>(c)) || c == '_' ? c : '_';
  return t;
}

std::string RenderFirewall(const FirewallSpec& spec) {
  std::ostringstream o;
  const std::string& t = spec.table;
  const std::string glob = "\"" + spec.if_prefix + "*\"";
  // Declaring the table first makes the delete valid whether or not it
  // exists; both run in the same transaction as the new table.
  o << "table inet " << t << " {}\n";
  o << "delete table inet " << t << "\n";
  if (spec.sandboxes.empty()) return o.str();
  o << "table inet " << t << " {\n";
  o << "  set blocked { type ipv4_addr; flags interval; elements = { " << Elements(BlockedRanges()) << " } }\n";
  for (const auto& s : spec.sandboxes) {
    if (HasAllowSet(s)) {
      o << "  set allow_" << s.slot << " { " << kAllowSetType << " elements = { " << Elements(s.allow) << " } }\n";
    }
    o << "  chain sbx_" << s.slot << " {\n";
    for (const auto& r : SandboxRules(s)) o << "    " << r << "\n";
    o << "  }\n";
    if (s.limited) {
      o << "  chain pre_" << s.slot << " {\n";
      for (const auto& r : PreRules(s)) o << "    " << r << "\n";
      o << "  }\n";
    }
  }
  std::string limited_src, pre_dispatch;
  for (const auto& s : spec.sandboxes) {
    if (!s.limited) continue;
    limited_src += (limited_src.empty() ? "" : ", ") + LimitedElement(s);
    pre_dispatch += (pre_dispatch.empty() ? "" : ", ") + ("\"" + s.ifname + "\" : jump pre_" + std::to_string(s.slot));
  }
  o << "  set limited_src { type ifname . ipv4_addr;";
  if (!limited_src.empty()) o << " elements = { " << limited_src << " }";
  o << " }\n";
  o << "  map pre_dispatch { type ifname : verdict;";
  if (!pre_dispatch.empty()) o << " elements = { " << pre_dispatch << " }";
  o << " }\n";
  o << "  map dispatch { type ifname : verdict; elements = { ";
  for (size_t i = 0; i < spec.sandboxes.size(); ++i) {
    const auto& s = spec.sandboxes[i];
    o << (i ? ", " : "") << "\"" << s.ifname << "\" : jump sbx_" << s.slot;
  }
  o << " } }\n";
  o << "  chain input {\n"
    << "    type filter hook input priority filter; policy accept;\n"
    << "    iifname " << glob << " ct state established,related accept\n";
  if (spec.proxy_port) o << "    iifname . ip saddr @limited_src tcp dport " << spec.proxy_port << " accept\n";
  if (spec.dns_port) o << "    iifname . ip saddr @limited_src udp dport " << spec.dns_port << " accept\n";
  o << "    iifname " << glob << " drop\n"
    << "  }\n";
  o << "  chain forward {\n"
    << "    type filter hook forward priority filter; policy accept;\n"
    << "    oifname " << glob << " ct state established,related accept\n"
    << "    oifname " << glob << " drop\n"
    << "    iifname " << glob << " iifname vmap @dispatch\n"
    << "    iifname " << glob << " drop\n"
    << "  }\n";
  o << "  chain postrouting {\n"
    << "    type nat hook postrouting priority srcnat; policy accept;\n"
    << "    ip saddr " << spec.pool.ToString() << " oifname != " << glob << " masquerade\n"
    << "  }\n";
  o << "  chain prerouting {\n"
    << "    type nat hook prerouting priority dstnat; policy accept;\n"
    << "    iifname " << glob << " iifname vmap @pre_dispatch\n"
    << "  }\n";
  o << "}\n";
  return o.str();
}

Status ApplyFirewall(const FirewallSpec& spec) {
  return RunNft(RenderFirewall(spec), false).WithContext("apply table " + spec.table);
}

std::string RenderAddSandbox(const std::string& table, const SandboxFirewall& s) {
  // Every statement is idempotent (add = create or keep, then flush and
  // refill), so re-adding a sandbox left over by a failed teardown works.
  std::ostringstream o;
  std::string t = "inet " + table, slot = std::to_string(s.slot);
  if (HasAllowSet(s)) {
    o << "add set " << t << " allow_" << slot << " { " << kAllowSetType << " }\n";
    o << "flush set " << t << " allow_" << slot << "\n";
    o << "add element " << t << " allow_" << slot << " { " << Elements(s.allow) << " }\n";
  }
  o << "add chain " << t << " sbx_" << slot << "\n";
  o << "flush chain " << t << " sbx_" << slot << "\n";
  for (const auto& r : SandboxRules(s)) o << "add rule " << t << " sbx_" << slot << " " << r << "\n";
  o << "add element " << t << " dispatch { \"" << s.ifname << "\" : jump sbx_" << slot << " }\n";
  if (s.limited) {
    o << "add chain " << t << " pre_" << slot << "\n";
    o << "flush chain " << t << " pre_" << slot << "\n";
    for (const auto& r : PreRules(s)) o << "add rule " << t << " pre_" << slot << " " << r << "\n";
    o << "add element " << t << " pre_dispatch { \"" << s.ifname << "\" : jump pre_" << slot << " }\n";
    o << "add element " << t << " limited_src { " << LimitedElement(s) << " }\n";
  }
  return o.str();
}

std::string RenderRemoveSandbox(const std::string& table, const SandboxFirewall& s) {
  std::ostringstream o;
  std::string t = "inet " + table, slot = std::to_string(s.slot);
  o << "delete element " << t << " dispatch { \"" << s.ifname << "\" }\n";
  if (s.limited) {
    o << "delete element " << t << " pre_dispatch { \"" << s.ifname << "\" }\n";
    o << "delete element " << t << " limited_src { " << LimitedElement(s) << " }\n";
    o << "delete chain " << t << " pre_" << slot << "\n";
  }
  o << "delete chain " << t << " sbx_" << slot << "\n";
  if (HasAllowSet(s)) o << "delete set " << t << " allow_" << slot << "\n";
  return o.str();
}

Status AddSandboxFirewall(const std::string& table, const SandboxFirewall& s) {
  return RunNft(RenderAddSandbox(table, s), false).WithContext("add sbx_" + std::to_string(s.slot));
}

Status RemoveSandboxFirewall(const std::string& table, const SandboxFirewall& s) {
  return RunNft(RenderRemoveSandbox(table, s), false).WithContext("remove sbx_" + std::to_string(s.slot));
}

std::string FirewallUnsupportedReason() {
  FirewallSpec probe;
  probe.table = "warren_probe";
  probe.if_prefix = "wprobe";
  probe.pool = Ipv4Cidr{0x0AD50000, 16};
  probe.proxy_port = 15001;
  probe.dns_port = 15053;
  probe.sandboxes.push_back(SandboxFirewall{0, "wprobe0", 0x0AD50002, {Ipv4Cidr{0x0A000000, 8}}, false});
  probe.sandboxes.push_back(SandboxFirewall{1, "wprobe1", 0x0AD50006, {}, true, true, 15001, 15053});
  Status s = RunNft(RenderFirewall(probe), true);
  return s.ok() ? "" : s.ToString();
}

}  // namespace warren::sandbox
