// SandboxRuntime: isolated networking (veth setup/teardown, nft table sync).
#include "sandbox/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "common/ids.h"
#include "common/log.h"
#include "sandbox/archive.h"
#include "sandbox/criu.h"
#include "sandbox/locks.h"
#include "sandbox/netfilter.h"
#include "sandbox/network.h"
#include "sandbox/runtime_internal.h"
#include "sandbox/sys.h"
#include "sandbox/userns.h"

namespace warren::sandbox {

using std::chrono::milliseconds;

Status SandboxRuntime::SetupNetworkLocked(SandboxRecord& rec, pid_t pid, uint64_t start, Json* timing) {
  using Ms = std::chrono::duration<double, std::milli>;
  auto t0 = std::chrono::steady_clock::now();
  WARREN_ASSIGN_OR_RETURN(NetSlot slot, NetSlotFor(net_pool_, net_if_prefix_, rec.id_slot));
  rec.ip = FormatIpv4(slot.sandbox_addr);
  // Recorded before the firewall sync: a full sync by another sandbox's
  // start or stop (under the firewall lock, not this sandbox's) renders the
  // table from the records and must keep this sandbox's rules.
  rec.init_pid = pid;
  rec.init_start_time = start;
  WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  WARREN_RETURN_IF_ERROR(SyncFirewallLocked(&rec, nullptr));
  auto t1 = std::chrono::steady_clock::now();
  UniqueFd pidfd(SysPidfdOpen(pid, 0));
  // Identity re-checked with the pidfd held: the pid cannot be reused now.
  if (!pidfd || !ProcessAlive(pid, start)) {
    return Status::FailedPrecondition("sandbox init exited before its network was set up");
  }
  // A link left by a crash under this name is stale: its slot is ours now.
  WARREN_RETURN_IF_ERROR(DeleteLink(slot.host_if));
  WARREN_RETURN_IF_ERROR(SetupVeth(slot, pidfd.get()));
  auto t2 = std::chrono::steady_clock::now();
  // Replies to NATed egress arrive on the uplink and are forwarded from
  // there, so IPv4 forwarding must be on for it too (not host-wide).
  auto uplinks = DefaultRouteInterfaces();
  if (uplinks.ok()) {
    for (const auto& u : *uplinks) {
      if (Status s = EnableForwarding(u); !s.ok()) {
        log::Warn("sandbox.network.uplink_forwarding", {{"if", u}, {"error", s.ToString()}});
      }
    }
  }
  auto t3 = std::chrono::steady_clock::now();
  if (timing) {
    (*timing)["net_firewall_ms"] = Ms(t1 - t0).count();
    (*timing)["net_veth_ms"] = Ms(t2 - t1).count();
    (*timing)["net_uplinks_ms"] = Ms(t3 - t2).count();
  }
  return Status::Ok();
}

Status SandboxRuntime::TeardownNetworkLocked(SandboxRecord& rec) {
  if (!RoutedNetwork(rec.network)) return Status::Ok();
  // `ip` is set from setup until teardown: without it there are no rules
  // of this sandbox to remove (a crash in between is Recover()'s job).
  bool had_rules = !rec.ip.empty();
  rec.ip.clear();
  Status link = Status::Ok();
  auto slot = NetSlotFor(net_pool_, net_if_prefix_, rec.id_slot);
  if (slot.ok()) link = DeleteLink(slot->host_if);
  Status fw = had_rules ? SyncFirewallLocked(nullptr, &rec) : Status::Ok();
  return link.ok() ? fw : link;
}

Result<SandboxFirewall> SandboxRuntime::FirewallFor(const SandboxRecord& r) const {
  WARREN_ASSIGN_OR_RETURN(NetSlot slot, NetSlotFor(net_pool_, net_if_prefix_, r.id_slot));
  SandboxFirewall f{r.id_slot, slot.host_if, slot.sandbox_addr, {}, r.block_all};
  for (const auto& c : r.allow_cidrs) {
    WARREN_ASSIGN_OR_RETURN(Ipv4Cidr cidr, ParseIpv4Cidr(c));
    f.allow.push_back(cidr);
  }
  if (r.network == "limited") {
    f.limited = true;
    f.block_all = true;  // what the proxy does not carry does not leave
    f.proxy_port = egress_tcp_port_;
    f.dns_port = egress_dns_port_;
  }
  return f;
}

std::optional<EgressPolicy> SandboxRuntime::EgressPolicyFor(uint32_t addr) {
  if (!net_pool_.Contains(addr)) return std::nullopt;
  uint32_t off = addr - net_pool_.addr;
  if (off % 4 != 2) return std::nullopt;
  int slot = static_cast<int>(off / 4);
  std::lock_guard<std::mutex> l(egress_mu_);
  auto it = egress_cache_.find(slot);
  if (it != egress_cache_.end()) {
    bool fresh = ProcessAlive(it->second.init_pid, it->second.init_start_time);
    if (fresh && it->second.policy.sandbox_id.rfind("build-", 0) != 0) {
      // The record may have a new policy (SetNetwork, in this process or
      // another one): a stat, and a read only when the file changed.
      auto r = records_.Get(it->second.policy.sandbox_id);
      fresh = r.ok() && r->network == "limited" && r->allow_hosts == it->second.allow_hosts &&
              r->allow_cidrs == it->second.allow_cidrs && r->init_pid == it->second.init_pid &&
              r->init_start_time == it->second.init_start_time;
    }
    if (fresh) return it->second.policy;
    egress_cache_.erase(it);
  }
  // A miss (first connection, or a sandbox another process started): the
  // records are the truth. Only limited sandboxes can reach the proxy at
  // all (input chain), so this scan is rare.
  for (const auto& rec : records_.All()) {
    const SandboxRecord* r = &rec;
    if (r->id_slot != slot || r->network != "limited" || r->state != SandboxState::kStarted ||
        !ProcessAlive(r->init_pid, r->init_start_time)) {
      continue;
    }
    auto hosts = HostAllowlist::Parse(r->allow_hosts);
    if (!hosts.ok()) return std::nullopt;  // a record edited by hand: refuse, fail closed
    EgressCacheEntry e;
    e.init_pid = r->init_pid;
    e.init_start_time = r->init_start_time;
    e.allow_hosts = r->allow_hosts;
    e.allow_cidrs = r->allow_cidrs;
    e.policy.sandbox_id = r->id;
    e.policy.hosts = std::move(*hosts);
    e.policy.gateway = net_pool_.addr + static_cast<uint32_t>(slot) * 4 + 1;
    for (const auto& c : r->allow_cidrs) {
      auto cidr = ParseIpv4Cidr(c);
      if (cidr.ok()) e.policy.allow_cidrs.push_back(*cidr);
    }
    egress_cache_[slot] = e;
    return e.policy;
  }
  // A networked RUN step of a snapshot build (builder.cc) holds the slot.
  for (const auto& b : LiveBuildNetworks("")) {
    if (b.id_slot != slot) continue;
    auto hosts = HostAllowlist::Parse(b.allow_hosts);
    if (!hosts.ok()) return std::nullopt;
    EgressCacheEntry e;
    e.init_pid = b.init_pid;
    e.init_start_time = b.init_start_time;
    e.policy.sandbox_id = b.id;
    e.policy.hosts = std::move(*hosts);
    e.policy.gateway = net_pool_.addr + static_cast<uint32_t>(slot) * 4 + 1;
    egress_cache_[slot] = e;
    return e.policy;
  }
  return std::nullopt;
}

std::vector<SandboxRecord> SandboxRuntime::LiveBuildNetworks(const std::string& skip_id) const {
  std::vector<SandboxRecord> out;
  for (const auto& key : builds_.Keys()) {
    auto j = builds_.Get(key);
    if (!j.ok() || !j->is_object() || j->value("network", "") != "limited") continue;
    SandboxRecord r;
    r.id = "build-" + key;
    if (r.id == skip_id) continue;
    r.network = "limited";
    r.state = SandboxState::kStarted;
    r.id_slot = j->value("slot", -1);
    r.init_pid = j->value("pid", -1);
    r.init_start_time = j->value("start_time", uint64_t{0});
    if (r.id_slot < 0 || !ProcessAlive(r.init_pid, r.init_start_time)) continue;
    auto hosts = j->find("allow_hosts");
    if (hosts == j->end() || !hosts->is_array()) continue;
    for (const auto& h : *hosts) {
      if (h.is_string()) r.allow_hosts.push_back(h.get<std::string>());
    }
    out.push_back(std::move(r));
  }
  return out;
}

Result<SandboxRecord> SandboxRuntime::SetNetwork(const std::string& id, const NetworkPolicy& p) {
  CreateOptions o;
  o.network = p.network;
  o.allow_cidrs = p.allow_cidrs;
  o.block_all = p.block_all;
  o.dns = p.dns;
  o.allow_hosts = p.allow_hosts;
  std::vector<std::string> cidrs, hosts;
  WARREN_RETURN_IF_ERROR(ValidateNetwork(o, features_, &cidrs, &hosts));
  if (o.network == "limited" && egress_tcp_port_ == 0) {
    return Status::FailedPrecondition(
        "network 'limited' needs the egress proxy, which runs in `warren serve` or `warren orchestrator` on this "
        "data dir; none has run here");
  }
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
  if (IsTransitional(rec.state)) {
    return Status::Conflict("sandbox " + rec.id + " is " + StateName(rec.state) + "; retry when it settles");
  }
  const SandboxRecord old = rec;
  rec.network = o.network;
  rec.allow_cidrs = std::move(cidrs);
  rec.allow_hosts = std::move(hosts);
  rec.block_all = o.block_all;
  rec.dns = o.dns;
  const bool live = (rec.state == SandboxState::kStarted || rec.state == SandboxState::kPaused) &&
                    ProcessAlive(rec.init_pid, rec.init_start_time);
  const bool had_link = RoutedNetwork(old.network) && !old.ip.empty();
  if (!live) {
    WARREN_RETURN_IF_ERROR(SaveLocked(rec));
    log::Info("sandbox.network.updated", {{"id", rec.id}, {"network", rec.network}, {"live", false}});
    return rec;
  }
  if (had_link && RoutedNetwork(rec.network)) {
    // Same veth and address; the rules change. The record first: the
    // table is rendered from the records, and the proxy re-reads the
    // record at its next lookup. One full replace, so entries the old
    // policy had and the new one has not (a limited sandbox's redirect)
    // go in the same transaction.
    WARREN_RETURN_IF_ERROR(SaveLocked(rec));
    Status fw = SyncFirewallLocked(&rec, nullptr, /*full=*/true);
    if (!fw.ok()) {
      SandboxRecord back = old;
      (void)SaveLocked(back);
      (void)SyncFirewallLocked(&back, nullptr, true);
      return fw.WithContext("apply network policy");
    }
  } else if (had_link) {
    // -> none: the veth and the rules go; the sandbox keeps loopback.
    SandboxRecord gone = old;
    WARREN_RETURN_IF_ERROR(TeardownNetworkLocked(gone));
    rec.ip.clear();
    WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  } else if (RoutedNetwork(rec.network)) {
    // none -> routed: rules first, then the veth into the running init's
    // netns (SetupNetworkLocked saves the record with its address).
    Status s = SetupNetworkLocked(rec, rec.init_pid, rec.init_start_time, nullptr);
    if (!s.ok()) {
      (void)TeardownNetworkLocked(rec);
      SandboxRecord back = old;
      (void)SaveLocked(back);
      return s.WithContext("apply network policy");
    }
  } else {
    WARREN_RETURN_IF_ERROR(SaveLocked(rec));  // none -> none
  }
  {
    std::lock_guard<std::mutex> l(egress_mu_);
    egress_cache_.erase(rec.id_slot);
  }
  if (rec.dns != old.dns || rec.network != old.network) {
    if (Status s = WriteResolvConf(rec); !s.ok()) {
      log::Warn("sandbox.network.resolv_conf", {{"id", rec.id}, {"error", s.ToString()}});
    }
  }
  log::Info("sandbox.network.updated",
            {{"id", rec.id}, {"network", rec.network}, {"live", true}, {"hosts", static_cast<int64_t>(rec.allow_hosts.size())}});
  return rec;
}

Status SandboxRuntime::SyncFirewallLocked(const SandboxRecord* add, const SandboxRecord* drop, bool full) {
  if (!features_.network_isolated) return Status::Ok();
  NamedLock fw_lock(locks_.get(), kFirewallLock);
  WARREN_RETURN_IF_ERROR(fw_lock.status());
  FirewallSpec spec{fw_table_, net_if_prefix_, net_pool_, {}, egress_tcp_port_, egress_dns_port_};
  for (const auto& rec : records_.All()) {
    if ((drop && rec.id == drop->id) || (add && rec.id == add->id)) continue;
    const SandboxRecord* r = &rec;
    if (!RoutedNetwork(r->network) || r->state == SandboxState::kDestroyed ||
        !ProcessAlive(r->init_pid, r->init_start_time)) {
      continue;
    }
    auto f = FirewallFor(*r);
    if (f.ok()) spec.sandboxes.push_back(std::move(*f));
  }
  // Networked build steps keep their rules too (their records are builds/).
  for (const auto& b : LiveBuildNetworks(add ? add->id : drop ? drop->id : "")) {
    if (drop && b.id == drop->id) continue;
    auto f = FirewallFor(b);
    if (f.ok()) spec.sandboxes.push_back(std::move(*f));
  }
  std::optional<SandboxFirewall> changed;
  if (add || drop) {
    WARREN_ASSIGN_OR_RETURN(changed, FirewallFor(add ? *add : *drop));
  }
  if (add) spec.sandboxes.push_back(*changed);
  std::sort(spec.sandboxes.begin(), spec.sandboxes.end(),
            [](const SandboxFirewall& a, const SandboxFirewall& b) { return a.slot < b.slot; });
  // One sandbox changed and others keep the table: touch only its set,
  // chain and map entry. Anything unexpected (entries missing, no table)
  // falls back to replacing the whole table from the records.
  if (changed && !full && spec.sandboxes.size() > (add ? 1u : 0u)) {
    Status s = add ? AddSandboxFirewall(fw_table_, *changed) : RemoveSandboxFirewall(fw_table_, *changed);
    if (s.ok()) return s;
    log::Debug("sandbox.network.firewall_full_sync", {{"reason", s.ToString()}});
  }
  return ApplyFirewall(spec);
}

}  // namespace warren::sandbox
