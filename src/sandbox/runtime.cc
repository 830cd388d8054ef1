// SandboxRuntime: open/init, the data dir lock, records and layers (see runtime.h;
// the other concerns live in runtime_*.cc).
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
#include "sandbox/host_claim.h"
#include "sandbox/locks.h"
#include "sandbox/netfilter.h"
#include "sandbox/network.h"
#include "sandbox/runtime_internal.h"
#include "sandbox/sys.h"
#include "sandbox/userns.h"

namespace warren::sandbox {

using std::chrono::milliseconds;

Json Features::ToJson() const {
  return Json{{"pool_kind", pool_kind},
              {"copy_on_write_fork", copy_on_write_fork},
              {"cgroup_version", cgroup_version},
              {"idmapped_mounts", idmapped_mounts},
              {"criu", criu},
              {"criu_reason", criu_reason},
              {"disk_quota", disk_quota},
              {"disk_quota_reason", disk_quota_reason},
              {"network_isolated", network_isolated},
              {"network_reason", network_reason}};
}

Json RecoveryReport::ToJson() const {
  return Json{{"adopted", adopted},
              {"stopped", stopped},
              {"removed", removed},
              {"orphan_cgroups", orphan_cgroups},
              {"orphan_volumes", orphan_volumes},
              {"orphan_links", orphan_links},
              {"orphan_archives", orphan_archives},
              {"stale_qgroups", stale_qgroups}};
}

Json IdleReport::ToJson() const { return Json{{"stopped", stopped}, {"archived", archived}, {"deleted", deleted}}; }

SandboxRuntime::SandboxRuntime(RuntimeOptions opts)
    : opts_(std::move(opts)),
      clock_(opts_.clock ? opts_.clock : Clock::Real()),
      sandboxes_(opts_.data_dir + "/sandboxes"),
      snapshots_(opts_.data_dir + "/snapshots"),
      builds_(opts_.data_dir + "/builds"),
      locks_(std::make_unique<LockSet>(opts_.data_dir + "/locks", opts_.data_dir + "/lock")) {}

SandboxRuntime::~SandboxRuntime() {
  egress_.reset();  // no more lookups from the proxy's thread
  std::map<std::string, std::shared_ptr<ShellSession>> sessions;
  {
    std::lock_guard<std::mutex> l(sessions_mu_);
    sessions.swap(sessions_);
  }
  for (auto& [key, sess] : sessions) {
    (void)cgroups_->Destroy(sess->cgroup());
    sess->Close("runtime closed");
  }
}

Result<std::unique_ptr<SandboxRuntime>> SandboxRuntime::Open(RuntimeOptions opts) {
  if (geteuid() != 0) return Status::PermissionDenied("the sandbox runtime must run as root");
  std::unique_ptr<SandboxRuntime> rt(new SandboxRuntime(std::move(opts)));
  WARREN_RETURN_IF_ERROR(rt->Init());
  return rt;
}

Status SandboxRuntime::Init() {
  WARREN_RETURN_IF_ERROR(MkdirAll(opts_.data_dir));
  chmod(opts_.data_dir.c_str(), 0711);
  for (const char* d : {"sandboxes", "snapshots", "builds", "volumes", "archives", "locks"}) {
    WARREN_RETURN_IF_ERROR(MkdirAll(opts_.data_dir + "/" + d));
  }
  {
    WorldLock l(locks_.get(), true);
    WARREN_RETURN_IF_ERROR(l.status());
    // The cgroup prefix belongs to the data dir: every process opening it
    // (service, CLI, tests) must find the same cgroups.
    // So does the network pool: records' addresses are derived from it.
    JsonDir config(opts_.data_dir);
    auto cfg = config.Get("config");
    Json c = cfg.ok() && cfg->is_object() ? *cfg : Json::object();
    bool dirty = false;
    for (auto [key, field] : {std::pair{"cgroup_prefix", &opts_.cgroup_prefix},
                              std::pair{"network_pool", &opts_.network_pool}}) {
      if (c.contains(key) && c[key].is_string()) {
        *field = c[key].get<std::string>();
      } else {
        c[key] = *field;
        dirty = true;
      }
    }
    auto pool = ParseIpv4Cidr(opts_.network_pool);
    if (!pool.ok()) return pool.status().WithContext("network_pool");
    if (pool->len < 8 || pool->len > 30) return Status::InvalidArgument("network_pool must be /8 to /30");
    net_pool_ = *pool;
    if (!opts_.host_registry_dir.empty()) {
      WARREN_RETURN_IF_ERROR(ClaimCgroupPrefix(opts_.host_registry_dir, opts_.cgroup_prefix, opts_.data_dir));
    }
    net_if_prefix_ = NetIfPrefix(opts_.cgroup_prefix);
    fw_table_ = FirewallTableName(opts_.cgroup_prefix);
    if (dirty) WARREN_RETURN_IF_ERROR(config.Put("config", c));
    PoolOptions po{opts_.data_dir, opts_.pool_file_bytes, opts_.pool_kind, opts_.mkfs_btrfs};
    WARREN_ASSIGN_OR_RETURN(pool_, OpenStoragePool(po));
  }
  WARREN_ASSIGN_OR_RETURN(cgroups_, DetectCgroupManager(opts_.cgroup_prefix));
  WARREN_ASSIGN_OR_RETURN(seccomp_, SeccompProgram::BuildDefault());
  caps_ = CapSet::Default();
  features_.pool_kind = pool_->Kind();
  features_.copy_on_write_fork = pool_->CopyOnWrite();
  features_.cgroup_version = cgroups_->Version();
  features_.disk_quota = pool_->SupportsQuota(&features_.disk_quota_reason);
  if (features_.disk_quota) features_.disk_quota_reason = "btrfs qgroups (max_rfer per sandbox subvolume)";
  CriuSupport criu = DetectCriu(opts_.criu_check_timeout);
  features_.criu = criu.available;
  features_.criu_reason = criu.reason;
  features_.network_reason = FirewallUnsupportedReason();
  if (features_.network_reason.empty() && access("/proc/sys/net/ipv4/conf/all/forwarding", W_OK) != 0) {
    features_.network_reason = "/proc/sys/net/ipv4 is not writable (no IPv4 forwarding control)";
  }
  features_.network_isolated = features_.network_reason.empty();
  if (features_.network_isolated) WARREN_RETURN_IF_ERROR(InitEgress());
  if (opts_.recover_on_open) {
    auto rep = Recover();
    if (!rep.ok()) return rep.status();
  }
  return Status::Ok();
}

Status SandboxRuntime::InitEgress() {
  // The ports of the proxy that serves this data dir: ours, or the ones the
  // long-lived owner recorded (so that a CLI's table re-render keeps its
  // redirects).
  JsonDir config(opts_.data_dir);
  auto rec = config.Get("egress");
  uint16_t old_tcp = 0, old_dns = 0;
  if (rec.ok() && rec->is_object()) {
    auto port = [&](const char* k) -> uint16_t {
      auto it = rec->find(k);
      if (it == rec->end() || !it->is_number_unsigned() || it->get<uint64_t>() > 65535) return 0;
      return static_cast<uint16_t>(it->get<uint64_t>());
    };
    old_tcp = port("tcp_port");
    old_dns = port("dns_port");
  }
  if (!opts_.egress_proxy) {
    egress_tcp_port_ = old_tcp;
    egress_dns_port_ = old_dns;
    return Status::Ok();
  }
  EgressProxyOptions po = opts_.egress;
  auto lookup = [this](uint32_t a) { return EgressPolicyFor(a); };
  Result<std::unique_ptr<EgressProxy>> p = Status::Internal("unset");
  if (po.tcp_port == 0 && po.dns_port == 0 && old_tcp && old_dns) {
    // The previous owner's ports, so running sandboxes' rules stay right.
    EgressProxyOptions again = po;
    again.tcp_port = old_tcp;
    again.dns_port = old_dns;
    p = EgressProxy::Start(again, lookup);
  }
  if (!p.ok()) p = EgressProxy::Start(po, lookup);
  if (!p.ok()) {
    // Not fatal for the runtime: limited sandboxes then reach nothing (their
    // rules redirect nowhere) and new ones are refused; the rest works.
    log::Error("sandbox.egress.unavailable", {{"error", p.status().ToString()}});
    return Status::Ok();
  }
  egress_ = std::move(*p);
  egress_tcp_port_ = egress_->tcp_port();
  egress_dns_port_ = egress_->dns_port();
  return config.Put("egress", Json{{"tcp_port", egress_tcp_port_}, {"dns_port", egress_dns_port_}});
}

std::string SandboxRuntime::RootfsPath(const std::string& id) const {
  return pool_->root() + "/sandboxes/" + id;
}

std::string SandboxRuntime::VolumeDir(const std::string& name) const {
  const std::string legacy = opts_.data_dir + "/volumes/" + name;
  // Only a pool with a superblock of its own hides the host path: a btrfs
  // data dir, a copy or an overlay pool live on the host filesystem, where
  // the mount root would still name the data dir.
  if (pool_->LoopDevice().empty()) return legacy;
  struct stat st;
  if (fstatat(AT_FDCWD, legacy.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) return legacy;
  return pool_->root() + "/volumes/" + name;
}

std::string SandboxRuntime::ArchivePath(const std::string& id) const {
  return opts_.data_dir + "/archives/" + id + ".tar.zst";
}

Result<RootFs> SandboxRuntime::OpenRootFs(const std::string& volume_path) const {
  WARREN_ASSIGN_OR_RETURN(RootFs fs, RootFs::Open(volume_path));
  fs.set_host_id_base(pool_->HostViewIdBase(volume_path));
  return fs;
}

void SandboxRuntime::CollectLayersLocked(const std::vector<std::string>& layers) {
  if (layers.empty()) return;
  NamedLock l(locks_.get(), kLayersLock);
  if (!l.status().ok()) return;
  std::set<std::string> in_use = pool_->ReferencedLayers();
  for (const auto& key : snapshots_.Keys()) {
    auto j = snapshots_.Get(key);
    if (!j.ok()) continue;
    auto r = SnapshotRecord::FromJson(*j);
    if (r.ok()) in_use.insert(r->layers.begin(), r->layers.end());
  }
  for (const auto& l : layers) {
    if (!in_use.count(l)) (void)pool_->DeleteVolume(pool_->root() + "/layers/" + l);
  }
}

Result<SandboxRecord> SandboxRuntime::FindRecord(const std::string& id_or_name) {
  auto found = records_.Get(id_or_name);
  if (!found.ok() && found.status().code() == Code::kNotFound) {
    // Look up by name among live records.
    auto id = records_.FindByName(id_or_name);
    if (id.ok()) found = records_.Get(*id);
  }
  if (!found.ok()) {
    if (found.status().code() == Code::kNotFound) return Status::NotFound("no sandbox " + id_or_name);
    return found.status();
  }
  SandboxRecord rec = std::move(found).value();
  if (rec.state == SandboxState::kDestroyed) return Status::NotFound("sandbox " + id_or_name + " was deleted");
  return rec;
}

Result<SandboxRecord> SandboxRuntime::LoadLocked(const std::string& id_or_name) {
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, FindRecord(id_or_name));
  // Under the sandbox's lock no operation on it is in flight, so a
  // transitional state here means the process that set it died: finish or
  // undo the transition now.
  if (IsTransitional(rec.state)) {
    WARREN_RETURN_IF_ERROR(RecoverRecordLocked(rec, nullptr));
    if (rec.state == SandboxState::kDestroyed || rec.id.empty()) return Status::NotFound("no sandbox " + id_or_name);
  }
  return rec;
}

Result<std::string> SandboxRuntime::ResolveId(const std::string& id_or_name) {
  auto r = records_.Get(id_or_name);
  if (r.ok()) return id_or_name;
  if (r.status().code() != Code::kNotFound) return r.status();
  return records_.FindByName(id_or_name);
}

Result<SandboxRecord> SandboxRuntime::ReadRecord(const std::string& id_or_name) {
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, FindRecord(id_or_name));
  if (IsTransitional(rec.state)) {
    // Busy: an operation is in flight; report the state it set. Free: the
    // process that set it died; recover under the lock.
    auto l = locks_->TryLock(rec.id);
    if (l) return LoadLocked(rec.id);
  }
  return rec;
}

Result<SandboxRecord> SandboxRuntime::LockSandbox(const std::string& id_or_name, SandboxGuard* g) {
  if (!g->world) {
    g->world = std::make_unique<WorldLock>(locks_.get(), false);
    WARREN_RETURN_IF_ERROR(g->world->status());
  }
  WARREN_ASSIGN_OR_RETURN(std::string id, ResolveId(id_or_name));
  g->sandbox = std::make_unique<NamedLock>(locks_.get(), id);
  WARREN_RETURN_IF_ERROR(g->sandbox->status());
  return LoadLocked(id);
}

Status SandboxRuntime::SaveLocked(SandboxRecord& rec) {
  rec.updated_at = Now();
  return records_.Put(rec);
}

Status SandboxRuntime::SetStateLocked(SandboxRecord& rec, SandboxState s) {
  if (IsTransitional(s)) {
    if (!IsTransitional(rec.state)) rec.prev_state = rec.state;
    rec.state_deadline = Now() + std::chrono::duration_cast<std::chrono::microseconds>(opts_.transition_timeout).count();
  } else {
    rec.state_deadline = 0;
  }
  // The auto-archive/-delete clock starts when a sandbox stops; an aborted
  // archive (archiving -> stopped) does not restart it.
  if (s == SandboxState::kStopped && rec.state != SandboxState::kStopped && rec.state != SandboxState::kArchiving) {
    rec.stopped_at = Now();
  }
  rec.state = s;
  return SaveLocked(rec);
}

Result<int> SandboxRuntime::AllocateSlotLocked() {
  std::set<int> used;
  records_.ForEach([&](const SandboxRecord& r) {
    if (r.state != SandboxState::kDestroyed && r.id_slot >= 0) used.insert(r.id_slot);
  });
  for (const auto& key : builds_.Keys()) {
    auto j = builds_.Get(key);
    if (j.ok() && j->is_object()) used.insert(j->value("slot", -1));
  }
  WARREN_ASSIGN_OR_RETURN(IdRange r, AllocateIdRange(used));
  return r.slot;
}

Status SandboxRuntime::UnmountPoolIfIdle() {
  WorldLock l(locks_.get(), true);
  WARREN_RETURN_IF_ERROR(l.status());
  std::string running;
  records_.ForEach([&](const SandboxRecord& r) {
    if (running.empty() && ProcessAlive(r.init_pid, r.init_start_time)) running = r.id;
  });
  if (!running.empty()) return Status::FailedPrecondition("sandbox " + running + " is running");
  return pool_->Unmount();
}

}  // namespace warren::sandbox
