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
    o << "  set allow_" << s.slot << " { type ipv4_addr; flags interval; auto-merge;";
    if (!s.allow.empty()) o << " elements = { " << Elements(s.allow) << " }";
    o << " }\n";
    o << "  chain sbx_" << s.slot << " {\n";
    o << "    meta nfproto ipv6 drop\n";
    o << "    ip saddr != " << FormatIpv4(s.address) << " drop\n";
    o << "    ip daddr @allow_" << s.slot << " accept\n";
    if (s.block_all) {
      o << "    drop\n";
    } else {
      o << "    ip daddr @blocked drop\n";
      o << "    accept\n";
    }
    o << "  }\n";
  }
  o << "  map dispatch { type ifname : verdict; elements = { ";
  for (size_t i = 0; i < spec.sandboxes.size(); ++i) {
    const auto& s = spec.sandboxes[i];
    o << (i ? ", " : "") << "\"" << s.ifname << "\" : jump sbx_" << s.slot;
  }
  o << " } }\n";
  o << "  chain input {\n"
    << "    type filter hook input priority filter; policy accept;\n"
    << "    iifname " << glob << " ct state established,related accept\n"
    << "    iifname " << glob << " drop\n"
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
  o << "}\n";
  return o.str();
}

Status ApplyFirewall(const FirewallSpec& spec) {
  return RunNft(RenderFirewall(spec), false).WithContext("apply table " + spec.table);
}

std::string FirewallUnsupportedReason() {
  FirewallSpec probe;
  probe.table = "warren_probe";
  probe.if_prefix = "wprobe";
  probe.pool = Ipv4Cidr{0x0AD50000, 16};
  probe.sandboxes.push_back(SandboxFirewall{0, "wprobe0", 0x0AD50002, {Ipv4Cidr{0x0A000000, 8}}, false});
  Status s = RunNft(RenderFirewall(probe), true);
  return s.ok() ? "" : s.ToString();
}

}  // namespace warren::sandbox
