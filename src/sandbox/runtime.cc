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
#include "sandbox/netfilter.h"
#include "sandbox/network.h"
#include "sandbox/sys.h"
#include "sandbox/userns.h"

namespace warren::sandbox {

namespace {

using std::chrono::milliseconds;

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 63) return false;
  for (char c : n) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return std::isalnum(static_cast<unsigned char>(n[0]));
}

bool Live(SandboxState s) {
  return s == SandboxState::kStarted || s == SandboxState::kPaused;
}

// States in which the sandbox has no subvolume of its own (only an archive).
bool Archived(SandboxState s) {
  return s == SandboxState::kArchiving || s == SandboxState::kArchived || s == SandboxState::kRestoring;
}

constexpr int64_t kMicrosPerMinute = 60LL * 1000000;

bool FileExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Waits until `pid` (with `start`) has gone, up to `timeout`.
bool WaitGone(pid_t pid, uint64_t start, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (ProcessAlive(pid, start)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

// True when `pid` runs the exec'd warren-init (not the in-process fallback).
bool IsWarrenInit(pid_t pid) {
  char buf[256];
  std::string link = "/proc/" + std::to_string(pid) + "/exe";
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return false;
  return std::string_view(buf, static_cast<size_t>(n)).rfind("/memfd:warren-init", 0) == 0;
}

void KillInit(pid_t pid, uint64_t start) {
  if (pid <= 0) return;
  UniqueFd fd(SysPidfdOpen(pid, 0));
  // Re-check identity after opening the pidfd: the pid cannot be reused
  // while we hold it.
  if (fd && ProcessAlive(pid, start)) SysPidfdSendSignal(fd.get(), SIGKILL);
}

std::string EnvKey(const std::string& kv) { return kv.substr(0, kv.find('=')); }

// Appends `add` to `env`, replacing entries with the same key.
void MergeEnv(std::vector<std::string>* env, const std::vector<std::string>& add) {
  for (const auto& kv : add) {
    std::string k = EnvKey(kv);
    auto it = std::find_if(env->begin(), env->end(), [&](const std::string& e) { return EnvKey(e) == k; });
    if (it != env->end()) *it = kv;
    else env->push_back(kv);
  }
}

struct UserIds {
  uint32_t uid = 0, gid = 0;
  std::string home = "/root";
};

// Resolves "root", "1000", "1000:1000" or a name from the rootfs's
// /etc/passwd (read through the safe file API).
Result<UserIds> ResolveUser(const RootFs& fs, const std::string& user) {
  UserIds u;
  if (user.empty() || user == "root" || user == "0") return u;
  auto all_digits = [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  };
  std::string name = user, group;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    name = user.substr(0, colon);
    group = user.substr(colon + 1);
  }
  bool found = false;
  if (all_digits(name)) {
    u.uid = static_cast<uint32_t>(std::stoul(name));
    u.gid = u.uid;
    u.home = "/";
    found = true;
  }
  auto passwd = fs.ReadFile("/etc/passwd", 1 << 20);
  if (passwd.ok()) {
    std::istringstream in(*passwd);
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> f;
      std::stringstream ls(line);
      std::string x;
      while (std::getline(ls, x, ':')) f.push_back(x);
      if (f.size() < 6 || !all_digits(f[2]) || !all_digits(f[3])) continue;
      if (f[0] == name || (found && std::to_string(u.uid) == f[2])) {
        u.uid = static_cast<uint32_t>(std::stoul(f[2]));
        u.gid = static_cast<uint32_t>(std::stoul(f[3]));
        u.home = f[5];
        found = true;
        break;
      }
    }
  }
  if (!found) return Status::InvalidArgument("unknown user: " + user);
  if (!group.empty()) {
    if (!all_digits(group)) return Status::InvalidArgument("group must be numeric: " + group);
    u.gid = static_cast<uint32_t>(std::stoul(group));
  }
  if (u.uid >= kIdRangeSize || u.gid >= kIdRangeSize) return Status::InvalidArgument("user id outside the sandbox range");
  return u;
}

// Validates the network fields of a create request; on success
// `*cidrs` holds the allow list in canonical form.
Status ValidateNetwork(const CreateOptions& o, const Features& f, std::vector<std::string>* cidrs) {
  if (o.network != "none" && o.network != "isolated") {
    return Status::InvalidArgument("unknown network policy '" + o.network + "' (none, isolated)");
  }
  if (o.network != "isolated") {
    if (!o.allow_cidrs.empty() || o.block_all || !o.dns.empty()) {
      return Status::InvalidArgument("allow_cidrs, block_all and dns need network 'isolated'");
    }
    return Status::Ok();
  }
  if (!f.network_isolated) {
    return Status::FailedPrecondition("network 'isolated' is not available on this host: " + f.network_reason);
  }
  if (o.allow_cidrs.size() > 10) return Status::InvalidArgument("at most 10 allow_cidrs");
  for (const auto& c : o.allow_cidrs) {
    WARREN_ASSIGN_OR_RETURN(Ipv4Cidr cidr, ParseIpv4Cidr(c));
    std::string canon = cidr.ToString();
    if (std::find(cidrs->begin(), cidrs->end(), canon) == cidrs->end()) cidrs->push_back(canon);
  }
  if (o.dns.size() > 3) return Status::InvalidArgument("at most 3 dns servers");
  for (const auto& d : o.dns) {
    auto a = ParseIpv4(d);
    if (!a.ok()) return Status::InvalidArgument("dns: " + a.status().message());
  }
  return Status::Ok();
}

}  // namespace

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

SandboxRuntime::Lock::Lock(SandboxRuntime* rt) : rt_(rt), guard_(rt->mu_) {
  while (flock(rt_->lock_fd_, LOCK_EX) != 0 && errno == EINTR) {
  }
}

SandboxRuntime::Lock::~Lock() { flock(rt_->lock_fd_, LOCK_UN); }

SandboxRuntime::SandboxRuntime(RuntimeOptions opts)
    : opts_(std::move(opts)),
      clock_(opts_.clock ? opts_.clock : Clock::Real()),
      sandboxes_(opts_.data_dir + "/sandboxes"),
      snapshots_(opts_.data_dir + "/snapshots"),
      builds_(opts_.data_dir + "/builds") {}

SandboxRuntime::~SandboxRuntime() {
  std::map<std::string, std::shared_ptr<ShellSession>> sessions;
  {
    std::lock_guard<std::mutex> l(sessions_mu_);
    sessions.swap(sessions_);
  }
  for (auto& [key, sess] : sessions) {
    (void)cgroups_->Destroy(sess->cgroup());
    sess->Close("runtime closed");
  }
  if (lock_fd_ >= 0) close(lock_fd_);
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
  for (const char* d : {"sandboxes", "snapshots", "builds", "volumes", "archives"}) {
    WARREN_RETURN_IF_ERROR(MkdirAll(opts_.data_dir + "/" + d));
  }
  lock_fd_ = open((opts_.data_dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return ErrnoStatus("open lock");
  {
    Lock l(this);
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
  if (opts_.recover_on_open) {
    auto rep = Recover();
    if (!rep.ok()) return rep.status();
  }
  return Status::Ok();
}

std::string SandboxRuntime::RootfsPath(const std::string& id) const {
  return pool_->root() + "/sandboxes/" + id;
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

Result<SandboxRecord> SandboxRuntime::LoadLocked(const std::string& id_or_name) {
  auto j = sandboxes_.Get(id_or_name);
  if (!j.ok() && j.status().code() == Code::kNotFound) {
    // Look up by name among live records.
    for (const auto& key : sandboxes_.Keys()) {
      auto jj = sandboxes_.Get(key);
      if (!jj.ok()) continue;
      auto r = SandboxRecord::FromJson(*jj);
      if (r.ok() && r->name == id_or_name && r->state != SandboxState::kDestroyed) {
        j = std::move(jj);
        break;
      }
    }
  }
  if (!j.ok()) {
    if (j.status().code() == Code::kNotFound) return Status::NotFound("no sandbox " + id_or_name);
    return j.status();
  }
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, SandboxRecord::FromJson(*j));
  if (rec.state == SandboxState::kDestroyed) return Status::NotFound("sandbox " + id_or_name + " was deleted");
  // Under the lock no operation is in flight, so a transitional state here
  // means the process that set it died: finish or undo the transition now.
  if (IsTransitional(rec.state)) {
    WARREN_RETURN_IF_ERROR(RecoverRecordLocked(rec, nullptr));
    if (rec.state == SandboxState::kDestroyed || rec.id.empty()) return Status::NotFound("no sandbox " + id_or_name);
  }
  return rec;
}

Status SandboxRuntime::SaveLocked(SandboxRecord& rec) {
  rec.updated_at = Now();
  return sandboxes_.Put(rec.id, rec.ToJson());
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
  for (const auto& key : sandboxes_.Keys()) {
    auto j = sandboxes_.Get(key);
    if (!j.ok()) continue;
    auto r = SandboxRecord::FromJson(*j);
    if (r.ok() && r->state != SandboxState::kDestroyed && r->id_slot >= 0) used.insert(r->id_slot);
  }
  for (const auto& key : builds_.Keys()) {
    auto j = builds_.Get(key);
    if (j.ok() && j->is_object()) used.insert(j->value("slot", -1));
  }
  WARREN_ASSIGN_OR_RETURN(IdRange r, AllocateIdRange(used));
  return r.slot;
}

Result<SandboxRecord> SandboxRuntime::Create(const CreateOptions& o) {
  if (!o.name.empty() && !ValidName(o.name)) return Status::InvalidArgument("invalid sandbox name: " + o.name);
  std::vector<std::string> cidrs;
  WARREN_RETURN_IF_ERROR(ValidateNetwork(o, features_, &cidrs));
  for (const auto& kv : o.env) {
    if (kv.find('=') == std::string::npos || kv[0] == '=') return Status::InvalidArgument("env must be KEY=value: " + kv);
  }
  for (const auto& v : o.volumes) {
    if (!ValidName(v.volume)) return Status::InvalidArgument("invalid volume name: " + v.volume);
    if (v.path.empty() || v.path[0] != '/') return Status::InvalidArgument("volume path must be absolute");
    if (v.subpath.find("..") != std::string::npos) return Status::InvalidArgument("volume subpath must not contain ..");
  }
  if (o.host_binds.size() > 4) return Status::InvalidArgument("at most 4 host binds");
  for (const auto& b : o.host_binds) {
    if (b.host_path.empty() || b.host_path[0] != '/') return Status::InvalidArgument("host bind source must be absolute");
    if (b.path.size() < 2 || b.path[0] != '/' || b.path.find("/../") != std::string::npos ||
        b.path.find("/./") != std::string::npos || b.path.back() == '/' || b.path.ends_with("/..")) {
      return Status::InvalidArgument("host bind target must be a normalised absolute path: " + b.path);
    }
    struct stat st;
    if (::stat(b.host_path.c_str(), &st) != 0) return ErrnoStatus("host bind " + b.host_path);
  }
  if (o.auto_stop_minutes < 0 || o.auto_archive_minutes < 0 || o.auto_delete_minutes < kNeverDelete) {
    return Status::InvalidArgument("auto-stop/-archive minutes must be >= 0, auto-delete >= -1 (never)");
  }
  if (o.resources.disk_bytes < 0) return Status::InvalidArgument("disk limit must be >= 0");
  if (o.resources.disk_bytes > 0 && !features_.disk_quota) {
    // A limit that is silently not enforced is worse than none: refuse.
    return Status::FailedPrecondition("disk limits are not supported: " + features_.disk_quota_reason);
  }
  Lock l(this);
  if (!o.name.empty()) {
    auto existing = LoadLocked(o.name);
    if (existing.ok()) return Status::Conflict("a sandbox named " + o.name + " exists");
  }
  WARREN_ASSIGN_OR_RETURN(SnapshotRecord snap, ResolveSnapshotLocked(o.snapshot, nullptr));
  WARREN_ASSIGN_OR_RETURN(int slot, AllocateSlotLocked());
  SandboxRecord rec;
  rec.id = NewId("sbx_", 16);
  rec.name = o.name;
  rec.snapshot = snap.name;
  rec.snapshot_hash = snap.hash;
  rec.id_slot = slot;
  rec.labels = o.labels;
  rec.env = o.env;
  rec.resources = snap.resources;
  if (o.resources.cpus > 0) rec.resources.cpus = o.resources.cpus;
  if (o.resources.memory_bytes > 0) rec.resources.memory_bytes = o.resources.memory_bytes;
  if (o.resources.pids > 0) rec.resources.pids = o.resources.pids;
  if (o.resources.disk_bytes > 0) rec.resources.disk_bytes = o.resources.disk_bytes;
  if (rec.resources.disk_bytes > 0 && !features_.disk_quota) {
    log::Warn("sandbox.disk_limit.ignored", {{"snapshot", snap.name}, {"reason", features_.disk_quota_reason}});
    rec.resources.disk_bytes = 0;  // the snapshot's default cannot be enforced here; record the truth
  }
  rec.network = o.network;
  rec.allow_cidrs = std::move(cidrs);
  rec.block_all = o.block_all;
  rec.dns = o.dns;
  rec.user = o.user;
  rec.workdir = o.workdir;
  rec.volumes = o.volumes;
  rec.host_binds = o.host_binds;
  rec.auto_stop_minutes = o.auto_stop_minutes;
  rec.auto_archive_minutes = o.auto_archive_minutes;
  rec.auto_delete_minutes = o.auto_delete_minutes;
  rec.created_at = rec.last_activity = Now();
  rec.state = SandboxState::kCreating;
  rec.state_deadline = Now() + std::chrono::duration_cast<std::chrono::microseconds>(opts_.transition_timeout).count();
  WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  Status s = pool_->Snapshot(pool_->root() + "/layers/" + snap.layers.back(), RootfsPath(rec.id), false);
  if (s.ok() && rec.resources.disk_bytes > 0) s = pool_->SetQuota(RootfsPath(rec.id), rec.resources.disk_bytes);
  if (!s.ok()) {
    (void)pool_->DeleteVolume(RootfsPath(rec.id));
    (void)sandboxes_.Remove(rec.id);
    return s;
  }
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kStopped));
  if (o.start) WARREN_RETURN_IF_ERROR(StartLocked(rec));
  return rec;
}

Result<SandboxRecord> SandboxRuntime::Get(const std::string& id) {
  Lock l(this);
  return LoadLocked(id);
}

Result<std::vector<SandboxRecord>> SandboxRuntime::List() {
  Lock l(this);
  std::vector<SandboxRecord> out;
  for (const auto& key : sandboxes_.Keys()) {
    auto r = LoadLocked(key);
    if (r.ok()) out.push_back(std::move(*r));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.created_at < b.created_at; });
  return out;
}

Status SandboxRuntime::PrepareVolumesLocked(const SandboxRecord& rec, std::vector<BindSpec>* binds) {
  if (rec.volumes.empty() && rec.host_binds.empty()) return Status::Ok();
  WARREN_ASSIGN_OR_RETURN(RootFs fs, OpenRootFs(RootfsPath(rec.id)));
  for (const auto& v : rec.volumes) {
    std::string host = opts_.data_dir + "/volumes/" + v.volume;
    WARREN_RETURN_IF_ERROR(MkdirAll(host));
    // Volumes are mounted idmapped like the rootfs: host-side on-disk ids
    // 0..65535 are the sandbox's own ids, whichever sandbox mounts them.
    if (!v.subpath.empty()) {
      host += "/" + v.subpath;
      WARREN_RETURN_IF_ERROR(MkdirAll(host));
    }
    WARREN_RETURN_IF_ERROR(fs.Mkdir(v.path, true));
    binds->push_back(BindSpec{host, v.path, v.read_only});
  }
  // Host binds: the mount point is made through the rootfs file API (every
  // component opened relative to the root, no symlink followed), as an
  // empty file or directory like its source; the source keeps its owner.
  for (const auto& b : rec.host_binds) {
    struct stat st;
    if (::stat(b.host_path.c_str(), &st) != 0) return ErrnoStatus("host bind " + b.host_path);
    size_t slash = b.path.rfind('/');
    if (slash > 0) WARREN_RETURN_IF_ERROR(fs.Mkdir(b.path.substr(0, slash), true));
    if (S_ISDIR(st.st_mode)) {
      WARREN_RETURN_IF_ERROR(fs.Mkdir(b.path, true));
    } else if (!fs.Stat(b.path).ok()) {
      WARREN_RETURN_IF_ERROR(fs.WriteFile(b.path, "", 0644));
    }
    BindSpec spec{b.host_path, b.path, true};
    spec.idmapped = false;
    binds->push_back(std::move(spec));
  }
  return Status::Ok();
}

Status SandboxRuntime::StartLocked(SandboxRecord& rec) {
  if (rec.state == SandboxState::kStarted) return Status::Ok();
  if (rec.state == SandboxState::kPaused) return Status::Conflict("sandbox is paused; resume it");
  if (Archived(rec.state)) return Status::FailedPrecondition("sandbox is " + StateName(rec.state) + "; restore it");
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kStarting));
  auto fail = [&](const Status& s) {
    (void)cgroups_->Destroy(rec.id);
    rec.error = s.ToString();
    rec.init_pid = -1;
    (void)SetStateLocked(rec, SandboxState::kStopped);
    return s;
  };
  if (Status s = cgroups_->Create(rec.id, rec.resources); !s.ok()) return fail(s);
  std::vector<BindSpec> binds;
  if (Status s = PrepareVolumesLocked(rec, &binds); !s.ok()) return fail(s);
  if (!rec.dns.empty()) {
    // Replace, not write through: a symlink (e.g. to systemd-resolved's
    // stub) would otherwise decide where the text lands.
    std::string conf;
    for (const auto& d : rec.dns) conf += "nameserver " + d + "\n";
    auto fs = OpenRootFs(RootfsPath(rec.id));
    if (!fs.ok()) return fail(fs.status());
    (void)fs->Delete("/etc/resolv.conf", false);
    Status s = fs->Mkdir("/etc", true);
    if (s.ok()) s = fs->WriteFile("/etc/resolv.conf", conf, 0644);
    if (!s.ok()) return fail(s.WithContext("write /etc/resolv.conf"));
  }
  InitSpec spec;
  spec.rootfs = RootfsPath(rec.id);
  spec.hostname = rec.name.empty() ? rec.id : rec.name;
  spec.ids = IdRange{rec.id_slot};
  spec.binds = std::move(binds);
  spec.root_mount = [this, path = spec.rootfs, base = spec.ids.host_base()](int userns_fd) {
    return pool_->SandboxRootMount(path, userns_fd, base, MOUNT_ATTR_NODEV);
  };
  auto h = SpawnInit(spec, *cgroups_, rec.id);
  if (!h.ok()) return fail(h.status());
  if (rec.network == "isolated") {
    if (Status s = SetupNetworkLocked(rec, h->pid, h->start_time); !s.ok()) {
      KillInit(h->pid, h->start_time);
      WaitGone(h->pid, h->start_time, milliseconds(5000));
      (void)TeardownNetworkLocked(rec);
      return fail(s);
    }
  }
  rec.init_pid = h->pid;
  rec.init_start_time = h->start_time;
  rec.error.clear();
  rec.last_activity = Now();
  return SetStateLocked(rec, SandboxState::kStarted);
}

Status SandboxRuntime::SetupNetworkLocked(SandboxRecord& rec, pid_t pid, uint64_t start) {
  using Ms = std::chrono::duration<double, std::milli>;
  auto t0 = std::chrono::steady_clock::now();
  WARREN_ASSIGN_OR_RETURN(NetSlot slot, NetSlotFor(net_pool_, net_if_prefix_, rec.id_slot));
  rec.ip = FormatIpv4(slot.sandbox_addr);
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
  log::Debug("sandbox.network.setup", {{"id", rec.id},
                                       {"firewall_ms", Ms(t1 - t0).count()},
                                       {"veth_ms", Ms(t2 - t1).count()},
                                       {"uplinks_ms", Ms(t3 - t2).count()}});
  return Status::Ok();
}

Status SandboxRuntime::TeardownNetworkLocked(SandboxRecord& rec) {
  if (rec.network != "isolated") return Status::Ok();
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
  return f;
}

Status SandboxRuntime::SyncFirewallLocked(const SandboxRecord* add, const SandboxRecord* drop) {
  if (!features_.network_isolated) return Status::Ok();
  FirewallSpec spec{fw_table_, net_if_prefix_, net_pool_, {}};
  for (const auto& key : sandboxes_.Keys()) {
    if ((drop && key == drop->id) || (add && key == add->id)) continue;
    auto j = sandboxes_.Get(key);
    if (!j.ok()) continue;
    auto r = SandboxRecord::FromJson(*j);
    if (!r.ok() || r->network != "isolated" || r->state == SandboxState::kDestroyed ||
        !ProcessAlive(r->init_pid, r->init_start_time)) {
      continue;
    }
    auto f = FirewallFor(*r);
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
  if (changed && spec.sandboxes.size() > (add ? 1u : 0u)) {
    Status s = add ? AddSandboxFirewall(fw_table_, *changed) : RemoveSandboxFirewall(fw_table_, *changed);
    if (s.ok()) return s;
    log::Debug("sandbox.network.firewall_full_sync", {{"reason", s.ToString()}});
  }
  return ApplyFirewall(spec);
}

Result<SandboxRecord> SandboxRuntime::Start(const std::string& id) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  if (rec.state == SandboxState::kStarted && !ProcessAlive(rec.init_pid, rec.init_start_time)) {
    WARREN_RETURN_IF_ERROR(RecoverRecordLocked(rec, nullptr));
  }
  if (rec.state == SandboxState::kArchived) WARREN_RETURN_IF_ERROR(RestoreLocked(rec));
  WARREN_RETURN_IF_ERROR(StartLocked(rec));
  return rec;
}

Status SandboxRuntime::StopLocked(SandboxRecord& rec, bool force) {
  if (rec.state == SandboxState::kStopped || rec.state == SandboxState::kError || rec.state == SandboxState::kArchived) {
    (void)cgroups_->Destroy(rec.id);
    return Status::Ok();
  }
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kStopping));
  bool alive = ProcessAlive(rec.init_pid, rec.init_start_time);
  if (alive && !force && cgroups_->Exists(rec.id)) {
    if (IsWarrenInit(rec.init_pid)) {
      // warren-init forwards TERM to every process of the sandbox (one
      // kill(-1) inside the pid namespace: no fork race) and exits once they
      // are gone. Thaw first: frozen tasks cannot handle signals.
      (void)cgroups_->Thaw(rec.id);
      UniqueFd fd(SysPidfdOpen(rec.init_pid, 0));
      if (fd && ProcessAlive(rec.init_pid, rec.init_start_time)) SysPidfdSendSignal(fd.get(), SIGTERM);
    } else {
      // An init that does not handle TERM (the in-process fallback): freeze
      // for a stable pid list, TERM everything but init, thaw.
      (void)cgroups_->Freeze(rec.id, opts_.freeze_timeout);
      auto pids = cgroups_->Pids(rec.id);
      if (pids.ok()) {
        for (pid_t p : *pids) {
          if (p != rec.init_pid) kill(p, SIGTERM);
        }
      }
      (void)cgroups_->Thaw(rec.id);
    }
    auto deadline = std::chrono::steady_clock::now() + opts_.stop_grace;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = cgroups_->Pids(rec.id);
      if (!left.ok() || left->empty()) break;
      if (left->size() == 1 && (*left)[0] == rec.init_pid && !IsWarrenInit(rec.init_pid)) break;
      std::this_thread::sleep_for(milliseconds(5));
    }
  }
  if (alive) KillInit(rec.init_pid, rec.init_start_time);
  Status s = cgroups_->Destroy(rec.id);
  if (alive) WaitGone(rec.init_pid, rec.init_start_time, milliseconds(5000));
  if (Status ns = TeardownNetworkLocked(rec); !ns.ok()) {
    // Not fatal for the stop: Recover() removes what is left.
    log::Warn("sandbox.network.teardown_failed", {{"id", rec.id}, {"error", ns.ToString()}});
  }
  EndSessions(rec.id, "sandbox stopped");
  if (!s.ok()) {
    rec.error = s.ToString();
    (void)SetStateLocked(rec, SandboxState::kError);
    return s;
  }
  rec.init_pid = -1;
  rec.init_start_time = 0;
  return SetStateLocked(rec, SandboxState::kStopped);
}

Result<SandboxRecord> SandboxRuntime::Stop(const std::string& id, bool force) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  WARREN_RETURN_IF_ERROR(StopLocked(rec, force));
  return rec;
}

Result<SandboxRecord> SandboxRuntime::Pause(const std::string& id) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  if (rec.state == SandboxState::kPaused) return rec;
  if (rec.state != SandboxState::kStarted) return Status::Conflict("sandbox is " + StateName(rec.state) + ", not started");
  if (!ProcessAlive(rec.init_pid, rec.init_start_time)) {
    WARREN_RETURN_IF_ERROR(RecoverRecordLocked(rec, nullptr));
    return Status::FailedPrecondition("sandbox init has exited; sandbox is now stopped");
  }
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kPausing));
  Status s = cgroups_->Freeze(rec.id, opts_.freeze_timeout);
  if (!s.ok()) {
    (void)cgroups_->Thaw(rec.id);
    (void)SetStateLocked(rec, SandboxState::kStarted);
    return s;
  }
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kPaused));
  return rec;
}

Result<SandboxRecord> SandboxRuntime::Resume(const std::string& id) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  if (rec.state == SandboxState::kStarted) return rec;
  if (rec.state != SandboxState::kPaused) return Status::Conflict("sandbox is " + StateName(rec.state) + ", not paused");
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kResuming));
  Status s = cgroups_->Thaw(rec.id);
  if (!s.ok()) {
    (void)SetStateLocked(rec, SandboxState::kPaused);
    return s;
  }
  rec.last_activity = Now();
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kStarted));
  return rec;
}

Result<std::vector<SandboxRecord>> SandboxRuntime::Fork(const std::string& id, int count, int64_t disk_bytes) {
  if (count < 1 || count > 100) return Status::InvalidArgument("fork count must be 1..100");
  if (disk_bytes < -1) return Status::InvalidArgument("fork disk limit must be -1 (inherit), 0 (none) or > 0");
  if (disk_bytes > 0 && !features_.disk_quota) {
    return Status::FailedPrecondition("disk limits are not supported: " + features_.disk_quota_reason);
  }
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  SandboxState prev = rec.state;
  if (prev == SandboxState::kArchived) {
    // Restoring implicitly would silently re-grow the parent on disk; the
    // caller decides (Restore, then Fork).
    return Status::FailedPrecondition("sandbox is archived; restore it before forking");
  }
  if (prev != SandboxState::kStarted && prev != SandboxState::kPaused && prev != SandboxState::kStopped) {
    return Status::Conflict("cannot fork a sandbox that is " + StateName(prev));
  }
  if (prev == SandboxState::kStarted && !ProcessAlive(rec.init_pid, rec.init_start_time)) {
    WARREN_RETURN_IF_ERROR(RecoverRecordLocked(rec, nullptr));
    prev = rec.state;
  }
  std::vector<SandboxRecord> kids;
  for (int i = 0; i < count; ++i) {
    SandboxRecord k = rec;
    k.id = NewId("sbx_", 16);
    k.name.clear();
    k.parent = rec.id;
    k.children.clear();
    k.init_pid = -1;
    k.init_start_time = 0;
    k.ip.clear();
    k.error.clear();
    if (disk_bytes >= 0) k.resources.disk_bytes = disk_bytes;
    k.created_at = k.last_activity = Now();
    k.state = SandboxState::kCreating;
    k.prev_state = SandboxState::kStopped;
    WARREN_ASSIGN_OR_RETURN(k.id_slot, AllocateSlotLocked());
    WARREN_RETURN_IF_ERROR(SaveLocked(k));
    kids.push_back(std::move(k));
  }
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kForking));
  bool froze = false;
  Status freeze_status;
  if (prev == SandboxState::kStarted) {
    freeze_status = cgroups_->Freeze(rec.id, opts_.freeze_timeout);
    froze = freeze_status.ok();
  }
  std::vector<Status> snap_status;
  if (freeze_status.ok()) {
    for (auto& k : kids) {
      Status s = pool_->Snapshot(RootfsPath(rec.id), RootfsPath(k.id), false);
      // Children inherit the parent's disk limit unless overridden; set it
      // (or clear it) explicitly rather than rely on what a snapshot's new
      // qgroup starts with.
      if (s.ok() && (k.resources.disk_bytes > 0 || rec.resources.disk_bytes > 0)) {
        s = pool_->SetQuota(RootfsPath(k.id), k.resources.disk_bytes);
      }
      snap_status.push_back(s);
    }
  }
  if (froze) (void)cgroups_->Thaw(rec.id);
  rec.state = prev;
  rec.state_deadline = 0;
  std::vector<SandboxRecord> made;
  for (size_t i = 0; i < kids.size(); ++i) {
    if (!freeze_status.ok() || !snap_status[i].ok()) {
      (void)pool_->DeleteVolume(RootfsPath(kids[i].id));
      (void)sandboxes_.Remove(kids[i].id);
      continue;
    }
    rec.children.push_back(kids[i].id);
    made.push_back(kids[i]);
  }
  WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  if (!freeze_status.ok()) return freeze_status.WithContext("freeze parent for fork");
  if (made.empty()) return snap_status.front().WithContext("fork snapshot");
  for (auto& k : made) {
    WARREN_RETURN_IF_ERROR(SetStateLocked(k, SandboxState::kStopped));
    if (prev == SandboxState::kStarted) {
      Status s = StartLocked(k);
      if (!s.ok()) log::Warn("sandbox.fork.start_failed", {{"id", k.id}, {"error", s.ToString()}});
    }
  }
  return made;
}

Result<ForkTree> SandboxRuntime::Tree(const std::string& id) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  ForkTree t;
  t.id = rec.id;
  t.parent = rec.parent;
  for (const auto& c : rec.children) {
    auto j = sandboxes_.Get(c);
    if (!j.ok()) continue;
    auto r = SandboxRecord::FromJson(*j);
    if (r.ok() && r->state != SandboxState::kDestroyed) t.children.push_back(c);
  }
  std::string cur = rec.parent;
  std::set<std::string> seen{rec.id};
  while (!cur.empty() && seen.insert(cur).second) {
    t.ancestors.push_back(cur);
    auto j = sandboxes_.Get(cur);
    if (!j.ok()) break;
    auto r = SandboxRecord::FromJson(*j);
    if (!r.ok()) break;
    cur = r->parent;
  }
  return t;
}

Status SandboxRuntime::DestroyLocked(SandboxRecord& rec) {
  if (rec.state != SandboxState::kDestroying) WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kDestroying));
  bool alive = ProcessAlive(rec.init_pid, rec.init_start_time);
  if (alive) KillInit(rec.init_pid, rec.init_start_time);
  WARREN_RETURN_IF_ERROR(cgroups_->Destroy(rec.id));
  if (alive) WaitGone(rec.init_pid, rec.init_start_time, milliseconds(5000));
  rec.init_pid = -1;
  EndSessions(rec.id, "sandbox deleted");
  WARREN_RETURN_IF_ERROR(TeardownNetworkLocked(rec));
  std::vector<std::string> layers = pool_->VolumeLayers(RootfsPath(rec.id));
  WARREN_RETURN_IF_ERROR(pool_->DeleteVolume(RootfsPath(rec.id)));
  for (const std::string& f : {ArchivePath(rec.id), ArchivePath(rec.id) + ".tmp"}) {
    if (unlink(f.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink " + f);
  }
  rec.archive_bytes = 0;
  rec.init_pid = -1;
  CollectLayersLocked(layers);
  // Keep a tombstone while fork relatives reference this id.
  bool related = !rec.parent.empty() || !rec.children.empty();
  if (related) {
    rec.state = SandboxState::kDestroyed;
    rec.deleted = true;
    rec.state_deadline = 0;
    return SaveLocked(rec);
  }
  return sandboxes_.Remove(rec.id);
}

Status SandboxRuntime::Delete(const std::string& id) {
  Lock l(this);
  auto rec = LoadLocked(id);
  if (!rec.ok()) return rec.status().code() == Code::kNotFound ? Status::Ok() : rec.status();
  return DestroyLocked(*rec);
}

Status SandboxRuntime::ArchiveLocked(SandboxRecord& rec) {
  if (rec.state == SandboxState::kArchived) return Status::Ok();
  if (rec.state == SandboxState::kStarted || rec.state == SandboxState::kPaused) {
    WARREN_RETURN_IF_ERROR(StopLocked(rec, false));
  }
  if (rec.state != SandboxState::kStopped) return Status::Conflict("cannot archive a sandbox that is " + StateName(rec.state));
  const std::string archive = ArchivePath(rec.id);
  WARREN_RETURN_IF_ERROR(MkdirAll(opts_.data_dir + "/archives"));
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kArchiving));
  auto undo = [&](const Status& s) {
    unlink(archive.c_str());
    rec.archive_bytes = 0;
    (void)SetStateLocked(rec, SandboxState::kStopped);
    return s;
  };
  // Order matters for crash recovery: the archive is complete and durable
  // (renamed) before the subvolume goes; a crash in between leaves
  // "archiving + subvolume present", which recovery undoes.
  auto stats = WriteTreeArchive(RootfsPath(rec.id), archive);
  if (!stats.ok()) return undo(stats.status().WithContext("archive " + rec.id));
  if (Status s = pool_->DeleteVolume(RootfsPath(rec.id)); !s.ok()) return undo(s.WithContext("free disk of " + rec.id));
  rec.archive_bytes = stats->archive_bytes;
  log::Info("sandbox.archived", {{"id", rec.id}, {"entries", stats->entries}, {"data_bytes", stats->data_bytes},
                                 {"archive_bytes", stats->archive_bytes}});
  return SetStateLocked(rec, SandboxState::kArchived);
}

Result<SandboxRecord> SandboxRuntime::Archive(const std::string& id) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  WARREN_RETURN_IF_ERROR(ArchiveLocked(rec));
  return rec;
}

Status SandboxRuntime::RestoreLocked(SandboxRecord& rec) {
  if (rec.state == SandboxState::kStopped || Live(rec.state)) return Status::Ok();
  if (rec.state != SandboxState::kArchived) return Status::Conflict("cannot restore a sandbox that is " + StateName(rec.state));
  const std::string archive = ArchivePath(rec.id);
  if (!FileExists(archive)) return Status::FailedPrecondition("archive of " + rec.id + " is missing: " + archive);
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kRestoring));
  auto undo = [&](const Status& s) {
    (void)pool_->DeleteVolume(RootfsPath(rec.id));
    (void)SetStateLocked(rec, SandboxState::kArchived);
    return s;
  };
  if (Status s = pool_->CreateVolume(RootfsPath(rec.id)); !s.ok()) return undo(s);
  if (rec.resources.disk_bytes > 0) {
    if (Status s = pool_->SetQuota(RootfsPath(rec.id), rec.resources.disk_bytes); !s.ok()) return undo(s);
  }
  auto stats = ExtractTreeArchive(archive, RootfsPath(rec.id), kIdRangeSize);
  if (!stats.ok()) return undo(stats.status().WithContext("restore " + rec.id));
  rec.archive_bytes = 0;
  // Stopped is durable before the archive goes: a crash in between leaves
  // an orphan archive file, which Recover() removes.
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kStopped));
  if (unlink(archive.c_str()) != 0 && errno != ENOENT) {
    log::Warn("sandbox.restore.unlink_failed", {{"id", rec.id}, {"error", std::strerror(errno)}});
  }
  log::Info("sandbox.restored", {{"id", rec.id}, {"entries", stats->entries}, {"data_bytes", stats->data_bytes}});
  return Status::Ok();
}

Result<SandboxRecord> SandboxRuntime::Restore(const std::string& id) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  WARREN_RETURN_IF_ERROR(RestoreLocked(rec));
  return rec;
}

Result<QuotaInfo> SandboxRuntime::DiskQuota(const std::string& id) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  if (Archived(rec.state)) return Status::NotFound("sandbox " + rec.id + " is " + StateName(rec.state));
  return pool_->GetQuota(RootfsPath(rec.id));
}

Result<SandboxRecord> SandboxRuntime::SetLabels(const std::string& id, std::map<std::string, std::string> labels) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  rec.labels = std::move(labels);
  WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  return rec;
}

std::vector<std::string> SandboxRuntime::ExecEnv(const SnapshotRecord* snap, const SandboxRecord& rec,
                                                 const std::vector<std::string>& extra) const {
  std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                  "HOSTNAME=" + (rec.name.empty() ? rec.id : rec.name)};
  if (snap) MergeEnv(&env, snap->env);
  MergeEnv(&env, rec.env);
  MergeEnv(&env, extra);
  return env;
}

Status SandboxRuntime::PrepareProcessLocked(const std::string& id, const std::string& user_req,
                                            const std::string& cwd, const std::vector<std::string>& env,
                                            SandboxRecord* out, SpawnSpec* spec) {
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  if (rec.state == SandboxState::kPaused) return Status::FailedPrecondition("sandbox is paused");
  if (rec.state != SandboxState::kStarted) return Status::FailedPrecondition("sandbox is " + StateName(rec.state));
  if (!ProcessAlive(rec.init_pid, rec.init_start_time)) {
    WARREN_RETURN_IF_ERROR(RecoverRecordLocked(rec, nullptr));
    return Status::FailedPrecondition("sandbox init has exited; sandbox is now stopped");
  }
  std::optional<SnapshotRecord> snap;
  auto sj = snapshots_.Get(rec.snapshot);
  if (sj.ok()) {
    auto sr = SnapshotRecord::FromJson(*sj);
    if (sr.ok()) snap = std::move(*sr);
  }
  rec.last_activity = Now();
  WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  WARREN_ASSIGN_OR_RETURN(RootFs fs, OpenRootFs(RootfsPath(rec.id)));
  std::string user = !user_req.empty() ? user_req : !rec.user.empty() ? rec.user : snap ? snap->user : "root";
  WARREN_ASSIGN_OR_RETURN(UserIds ids, ResolveUser(fs, user));
  std::vector<std::string> base = {"HOME=" + ids.home, "USER=" + (ids.uid == 0 ? std::string("root") : user)};
  MergeEnv(&base, ExecEnv(snap ? &*snap : nullptr, rec, env));
  spec->env = std::move(base);
  spec->cwd = !cwd.empty() ? cwd : !rec.workdir.empty() ? rec.workdir : snap ? snap->workdir : "/";
  if (spec->cwd.empty()) spec->cwd = "/";
  spec->uid = ids.uid;
  spec->gid = ids.gid;
  *out = std::move(rec);
  return Status::Ok();
}

Result<ExecResult> SandboxRuntime::Exec(const std::string& id, const ExecRequest& req) {
  if (req.argv.empty()) return Status::InvalidArgument("exec needs a command");
  SandboxRecord rec;
  SpawnSpec prepared;
  {
    Lock l(this);
    WARREN_RETURN_IF_ERROR(PrepareProcessLocked(id, req.user, req.cwd, req.env, &rec, &prepared));
  }
  ExecSpec spec;
  spec.argv = req.argv;
  spec.env = std::move(prepared.env);
  spec.cwd = prepared.cwd;
  spec.uid = prepared.uid;
  spec.gid = prepared.gid;
  spec.timeout = req.timeout;
  spec.stdin_data = req.stdin_data;
  spec.on_stdout = req.on_stdout;
  spec.on_stderr = req.on_stderr;
  spec.cancelled = req.cancelled;
  auto r = ExecInSandbox(rec.init_pid, cgroups_->ProcsFiles(rec.id), spec, seccomp_, caps_);
  return r;
}

// --- shell sessions ---

std::string SandboxRuntime::ShellFor(const std::string& id) const {
  auto fs = OpenRootFs(RootfsPath(id));
  if (fs.ok()) {
    auto st = fs->Stat("/bin/bash");
    if (st.ok()) return "/bin/bash";
  }
  return "/bin/sh";
}

Result<SessionInfo> SandboxRuntime::CreateSession(const std::string& id, const std::string& session_id,
                                                  const SessionOptions& opts) {
  if (!ValidName(session_id)) {
    return Status::InvalidArgument("session id must be 1-63 of [A-Za-z0-9_.-], starting alphanumeric");
  }
  if (opts.output_cap == 0) return Status::InvalidArgument("output_cap must be positive");
  Lock l(this);
  SandboxRecord rec;
  SpawnSpec spec;
  WARREN_RETURN_IF_ERROR(PrepareProcessLocked(id, opts.user, opts.cwd, opts.env, &rec, &spec));
  std::string key = rec.id + "/" + session_id;
  std::shared_ptr<ShellSession> dead;
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    auto it = sessions_.find(key);
    if (it != sessions_.end()) {
      if (it->second->Alive()) return Status::Conflict("session " + session_id + " already exists");
      dead = std::move(it->second);
      sessions_.erase(it);
    }
  }
  std::string cgroup = rec.id + "/session-" + session_id;
  if (dead) {
    (void)cgroups_->Destroy(dead->cgroup());
    dead->Close("replaced");
  }
  // A live session cgroup without a session here belongs to another process
  // hosting a runtime on this data dir (e.g. a CLI session host).
  if (!dead && cgroups_->Exists(cgroup)) {
    auto pids = cgroups_->Pids(cgroup);
    if (pids.ok() && !pids->empty()) {
      return Status::Conflict("session " + session_id + " already exists (in another process)");
    }
  }
  // Under the runtime lock: a concurrent stop cannot remove the sandbox's
  // cgroup between creating the session's and starting its shell.
  WARREN_RETURN_IF_ERROR(cgroups_->Create(cgroup, Resources{}));
  SessionInfo info;
  info.sandbox_id = rec.id;
  info.session_id = session_id;
  info.shell = ShellFor(rec.id);
  spec.argv = SessionShellArgv(info.shell);
  spec.command_channel = true;
  auto proc = SpawnInSandbox(rec.init_pid, cgroups_->ProcsFiles(cgroup), spec, seccomp_, caps_);
  if (!proc.ok()) {
    (void)cgroups_->Destroy(cgroup);
    return proc.status().WithContext("start session shell");
  }
  auto sess = ShellSession::Start(info, opts, std::move(*proc), cgroup, clock_);
  if (!sess.ok()) {
    (void)cgroups_->Destroy(cgroup);
    return sess.status();
  }
  std::shared_ptr<ShellSession> shared(std::move(*sess));
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    sessions_[key] = shared;
  }
  log::Info("sandbox.session.create", {{"id", rec.id}, {"session", session_id}, {"shell", info.shell}});
  return shared->Info();
}

Result<std::shared_ptr<ShellSession>> SandboxRuntime::FindSession(const std::string& id,
                                                                  const std::string& session_id) {
  std::string sid = id;
  {
    // Accept a sandbox name as well as an id.
    Lock l(this);
    WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
    sid = rec.id;
  }
  std::lock_guard<std::mutex> sl(sessions_mu_);
  auto it = sessions_.find(sid + "/" + session_id);
  if (it == sessions_.end()) return Status::NotFound("no session " + session_id + " in sandbox " + id);
  return it->second;
}

Result<CommandInfo> SandboxRuntime::SessionExec(const std::string& id, const std::string& session_id,
                                                const std::string& command, const SessionExecOptions& opts) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  {
    Lock l(this);
    WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
    if (rec.state == SandboxState::kPaused) return Status::FailedPrecondition("sandbox is paused");
    if (rec.state != SandboxState::kStarted) return Status::FailedPrecondition("sandbox is " + StateName(rec.state));
    rec.last_activity = Now();
    WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  }
  return sess->Exec(command, opts);
}

Result<CommandInfo> SandboxRuntime::GetCommand(const std::string& id, const std::string& session_id,
                                               const std::string& command_id) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  return sess->Get(command_id);
}

Result<CommandInfo> SandboxRuntime::CommandLogs(const std::string& id, const std::string& session_id,
                                                const std::string& command_id, const LogSink& follow,
                                                std::chrono::milliseconds timeout) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  if (!follow) return sess->Get(command_id);
  return sess->Follow(command_id, follow, timeout);
}

Status SandboxRuntime::SendInput(const std::string& id, const std::string& session_id,
                                 const std::string& command_id, std::string_view bytes) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  return sess->SendInput(command_id, bytes);
}

Status SandboxRuntime::DeleteSession(const std::string& id, const std::string& session_id) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  {
    Lock l(this);
    WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
    // Frozen tasks cannot die until thawed.
    if (rec.state == SandboxState::kPaused) return Status::FailedPrecondition("sandbox is paused; resume it first");
  }
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    sessions_.erase(sess->Info().sandbox_id + "/" + session_id);
  }
  // The cgroup holds the shell, its background jobs and anything that
  // double-forked or called setsid: freeze, kill all, remove.
  Status s = cgroups_->Destroy(sess->cgroup());
  sess->Close("deleted");
  log::Info("sandbox.session.delete", {{"session", session_id}, {"ok", s.ok()}});
  return s;
}

Result<SessionInfo> SandboxRuntime::GetSession(const std::string& id, const std::string& session_id) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  return sess->Info();
}

Result<std::vector<SessionInfo>> SandboxRuntime::ListSessions(const std::string& id) {
  std::string sid;
  {
    Lock l(this);
    WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
    sid = rec.id;
  }
  std::vector<std::shared_ptr<ShellSession>> found;
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    for (auto it = sessions_.lower_bound(sid + "/"); it != sessions_.end() && it->first.rfind(sid + "/", 0) == 0;
         ++it) {
      found.push_back(it->second);
    }
  }
  std::vector<SessionInfo> out;
  for (const auto& s : found) out.push_back(s->Info());
  return out;
}

void SandboxRuntime::EndSessions(const std::string& id, const std::string& reason) {
  std::vector<std::shared_ptr<ShellSession>> ended;
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    for (auto it = sessions_.lower_bound(id + "/"); it != sessions_.end() && it->first.rfind(id + "/", 0) == 0;) {
      ended.push_back(it->second);
      it = sessions_.erase(it);
    }
  }
  for (const auto& s : ended) {
    (void)cgroups_->Destroy(s->cgroup());
    s->Close(reason);
  }
}

Result<std::unique_ptr<PtySession>> SandboxRuntime::OpenPty(const std::string& id, const PtyOptions& opts) {
  if (opts.rows == 0 || opts.cols == 0) return Status::InvalidArgument("terminal size must be at least 1x1");
  std::vector<std::string> env = {"TERM=xterm-256color"};
  MergeEnv(&env, opts.env);
  Lock l(this);
  SandboxRecord rec;
  SpawnSpec spec;
  WARREN_RETURN_IF_ERROR(PrepareProcessLocked(id, opts.user, opts.cwd, env, &rec, &spec));
  spec.argv = opts.argv.empty() ? std::vector<std::string>{ShellFor(rec.id)} : opts.argv;
  IdRange ids{rec.id_slot};
  // The slave belongs to the user the program runs as (host ids of the
  // sandbox's range), so it can reopen its tty by path.
  WARREN_ASSIGN_OR_RETURN(PtyPair pair,
                          OpenPtyIn("/proc/" + std::to_string(rec.init_pid) + "/root", opts.rows, opts.cols,
                                    static_cast<int64_t>(ids.host_base()) + spec.uid,
                                    static_cast<int64_t>(ids.host_base()) + spec.gid));
  spec.tty_fd = pair.slave.get();
  WARREN_ASSIGN_OR_RETURN(SandboxProcess proc,
                          SpawnInSandbox(rec.init_pid, cgroups_->ProcsFiles(rec.id), spec, seccomp_, caps_));
  pair.slave.reset();  // the program holds it now; EOF on the master follows its exit
  return std::make_unique<PtySession>(std::move(pair), std::move(proc));
}

Result<RootFs> SandboxRuntime::Files(const std::string& id) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  if (Archived(rec.state)) {
    return Status::FailedPrecondition("sandbox is " + StateName(rec.state) + "; restore or start it to use its files");
  }
  rec.last_activity = Now();
  WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  return OpenRootFs(RootfsPath(rec.id));
}

Result<CgroupStats> SandboxRuntime::Stats(const std::string& id) {
  Lock l(this);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LoadLocked(id));
  if (!Live(rec.state)) return CgroupStats{};
  return cgroups_->Stats(rec.id);
}

Status SandboxRuntime::RecoverRecordLocked(SandboxRecord& rec, RecoveryReport* report) {
  bool alive = ProcessAlive(rec.init_pid, rec.init_start_time);
  auto mark_stopped = [&]() -> Status {
    if (alive) KillInit(rec.init_pid, rec.init_start_time);
    WARREN_RETURN_IF_ERROR(cgroups_->Destroy(rec.id));
    if (alive) WaitGone(rec.init_pid, rec.init_start_time, milliseconds(5000));
    rec.init_pid = -1;
    rec.init_start_time = 0;
    WARREN_RETURN_IF_ERROR(TeardownNetworkLocked(rec));
    if (report) report->stopped.push_back(rec.id);
    return SetStateLocked(rec, SandboxState::kStopped);
  };
  switch (rec.state) {
    case SandboxState::kCreating: {
      if (alive) KillInit(rec.init_pid, rec.init_start_time);
      (void)cgroups_->Destroy(rec.id);
      rec.init_pid = -1;
      (void)TeardownNetworkLocked(rec);
      WARREN_RETURN_IF_ERROR(pool_->DeleteVolume(RootfsPath(rec.id)));
      WARREN_RETURN_IF_ERROR(sandboxes_.Remove(rec.id));
      if (report) report->removed.push_back(rec.id);
      rec.id.clear();
      return Status::Ok();
    }
    case SandboxState::kDestroying: {
      std::string id = rec.id;
      WARREN_RETURN_IF_ERROR(DestroyLocked(rec));
      if (report) report->removed.push_back(id);
      if (rec.state != SandboxState::kDestroyed) rec.id.clear();
      return Status::Ok();
    }
    case SandboxState::kStarted:
    case SandboxState::kPaused:
    case SandboxState::kPausing:
    case SandboxState::kResuming:
    case SandboxState::kForking: {
      if (!alive) return mark_stopped();
      if (rec.state == SandboxState::kForking) {
        // An interrupted fork: the parent goes back to what it was.
        if (rec.prev_state == SandboxState::kStarted) (void)cgroups_->Thaw(rec.id);
        rec.state = rec.prev_state == SandboxState::kPaused ? SandboxState::kPaused : SandboxState::kStarted;
      } else if (IsTransitional(rec.state)) {
        auto frozen = cgroups_->IsFrozen(rec.id);
        rec.state = frozen.ok() && *frozen ? SandboxState::kPaused : SandboxState::kStarted;
      }
      if (report) report->adopted.push_back(rec.id);
      rec.state_deadline = 0;
      return SaveLocked(rec);
    }
    case SandboxState::kStarting:
    case SandboxState::kStopping:
      return mark_stopped();
    case SandboxState::kArchiving: {
      // Interrupted archive. The subvolume still there: undo (the archive,
      // complete or not, is dropped). Gone: the archive was complete and
      // renamed before the delete, so finish.
      const std::string archive = ArchivePath(rec.id);
      unlink((archive + ".tmp").c_str());
      if (FileExists(RootfsPath(rec.id))) {
        unlink(archive.c_str());
        rec.archive_bytes = 0;
        if (report) report->stopped.push_back(rec.id);
        return SetStateLocked(rec, SandboxState::kStopped);
      }
      if (!FileExists(archive)) {
        rec.error = "archive interrupted and both rootfs and archive are gone";
        return SetStateLocked(rec, SandboxState::kError);
      }
      struct stat st;
      if (stat(archive.c_str(), &st) == 0) rec.archive_bytes = st.st_size;
      return SetStateLocked(rec, SandboxState::kArchived);
    }
    case SandboxState::kRestoring: {
      // Interrupted restore: the half-made subvolume goes, the archive
      // (removed only after "stopped" was saved) is still whole.
      WARREN_RETURN_IF_ERROR(pool_->DeleteVolume(RootfsPath(rec.id)));
      if (!FileExists(ArchivePath(rec.id))) {
        rec.error = "restore interrupted and the archive is gone";
        return SetStateLocked(rec, SandboxState::kError);
      }
      return SetStateLocked(rec, SandboxState::kArchived);
    }
    case SandboxState::kArchived:
      if (cgroups_->Exists(rec.id)) WARREN_RETURN_IF_ERROR(cgroups_->Destroy(rec.id));
      return Status::Ok();
    case SandboxState::kStopped:
    case SandboxState::kError:
      if (alive) return mark_stopped();
      if (cgroups_->Exists(rec.id)) WARREN_RETURN_IF_ERROR(cgroups_->Destroy(rec.id));
      return Status::Ok();
    case SandboxState::kDestroyed:
      return Status::Ok();
  }
  return Status::Ok();
}

Result<RecoveryReport> SandboxRuntime::Recover() {
  Lock l(this);
  RecoveryReport rep;
  std::set<std::string> keep_volumes, live_cgroups, keep_archives;
  for (const auto& key : sandboxes_.Keys()) {
    auto j = sandboxes_.Get(key);
    if (!j.ok()) continue;
    auto r = SandboxRecord::FromJson(*j);
    if (!r.ok()) {
      log::Warn("sandbox.recover.bad_record", {{"key", key}, {"error", r.status().ToString()}});
      continue;
    }
    if (Status s = RecoverRecordLocked(*r, &rep); !s.ok()) {
      log::Warn("sandbox.recover.failed", {{"id", key}, {"error", s.ToString()}});
    }
    if (!r->id.empty() && r->state == SandboxState::kArchived) keep_archives.insert(r->id + ".tar.zst");
    if (!r->id.empty() && r->state != SandboxState::kDestroyed && !Archived(r->state)) {
      keep_volumes.insert(r->id);
      if (Live(r->state)) live_cgroups.insert(r->id);
    }
  }
  // Interrupted builds: kill their init, drop their cgroup and scratch.
  for (const auto& key : builds_.Keys()) {
    auto j = builds_.Get(key);
    if (j.ok() && j->is_object()) {
      KillInit(j->value("pid", -1), j->value("start_time", uint64_t{0}));
      (void)cgroups_->Destroy("build-" + key);
      std::string rootfs = j->value("rootfs", "");
      if (!rootfs.empty()) (void)pool_->DeleteVolume(rootfs);
    }
    (void)builds_.Remove(key);
  }
  auto cgs = cgroups_->List();
  if (cgs.ok()) {
    for (const auto& name : *cgs) {
      if (live_cgroups.count(name)) continue;
      if (cgroups_->Destroy(name).ok()) ++rep.orphan_cgroups;
    }
  }
  // Veths of this runtime whose sandbox is not running (a crash between
  // creating the link and recording the start, or a runtime killed while
  // stopping), then the nft table re-rendered from the records.
  std::set<std::string> live_links;
  for (const auto& key : sandboxes_.Keys()) {
    auto j = sandboxes_.Get(key);
    auto r = j.ok() ? SandboxRecord::FromJson(*j) : Result<SandboxRecord>(j.status());
    if (!r.ok() || r->network != "isolated" || !ProcessAlive(r->init_pid, r->init_start_time)) continue;
    auto slot = NetSlotFor(net_pool_, net_if_prefix_, r->id_slot);
    if (slot.ok()) live_links.insert(slot->host_if);
  }
  auto links = ListLinks(net_if_prefix_);
  if (links.ok()) {
    for (const auto& name : *links) {
      if (!live_links.count(name) && DeleteLink(name).ok()) ++rep.orphan_links;
    }
  } else {
    log::Warn("sandbox.recover.links_failed", {{"error", links.status().ToString()}});
  }
  if (Status s = SyncFirewallLocked(nullptr, nullptr); !s.ok()) {
    log::Warn("sandbox.recover.firewall_failed", {{"error", s.ToString()}});
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(pool_->root() + "/sandboxes", ec)) {
    std::string id = e.path().filename();
    if (keep_volumes.count(id)) continue;
    if (pool_->DeleteVolume(e.path()).ok()) ++rep.orphan_volumes;
  }
  for (const auto& e : std::filesystem::directory_iterator(pool_->root() + "/tmp", ec)) {
    if (pool_->DeleteVolume(e.path()).ok()) ++rep.orphan_volumes;
  }
  // Archives no archived record owns: temp files of an interrupted archive,
  // the leftover of a restore that crashed after saving "stopped", or of a
  // deleted sandbox.
  for (const auto& e : std::filesystem::directory_iterator(opts_.data_dir + "/archives", ec)) {
    if (keep_archives.count(e.path().filename())) continue;
    if (unlink(e.path().c_str()) == 0) ++rep.orphan_archives;
  }
  auto stale = pool_->RemoveStaleQuotaGroups();
  if (stale.ok()) rep.stale_qgroups = *stale;
  if (!rep.removed.empty() || !rep.stopped.empty() || rep.orphan_cgroups || rep.orphan_volumes ||
      rep.orphan_links || rep.orphan_archives || rep.stale_qgroups) {
    log::Info("sandbox.recovered", rep.ToJson());
  }
  return rep;
}

Result<IdleReport> SandboxRuntime::EnforceIdlePolicies() {
  Lock l(this);
  IdleReport report;
  for (const auto& key : sandboxes_.Keys()) {
    // Re-read under the lock: activity recorded just now wins.
    auto rec = LoadLocked(key);
    if (!rec.ok()) continue;
    if (rec->state == SandboxState::kStarted && rec->auto_stop_minutes > 0 &&
        Now() - rec->last_activity > rec->auto_stop_minutes * kMicrosPerMinute) {
      // Activity: a session command running, or any process other than the
      // init and idle session shells (with their host-side helpers).
      bool busy = false;
      std::set<pid_t> helpers{rec->init_pid};
      {
        std::lock_guard<std::mutex> sl(sessions_mu_);
        for (auto it = sessions_.lower_bound(rec->id + "/");
             it != sessions_.end() && it->first.rfind(rec->id + "/", 0) == 0; ++it) {
          if (it->second->Busy()) busy = true;
          for (pid_t p : it->second->HelperPids()) helpers.insert(p);
        }
      }
      auto pids = cgroups_->Pids(rec->id);
      size_t others = 0;
      if (pids.ok()) {
        for (pid_t p : *pids) others += helpers.count(p) ? 0 : 1;
      }
      if (busy || others > 0) {
        rec->last_activity = Now();
        WARREN_RETURN_IF_ERROR(SaveLocked(*rec));
        continue;
      }
      Status s = StopLocked(*rec, false);
      if (!s.ok()) {
        log::Warn("sandbox.autostop.failed", {{"id", rec->id}, {"error", s.ToString()}});
        continue;
      }
      log::Info("sandbox.autostop", {{"id", rec->id}});
      report.stopped.push_back(rec->id);
    }
    if (rec->state != SandboxState::kStopped && rec->state != SandboxState::kArchived) continue;
    // Counted from the stop, or from a later file call on the stopped sandbox.
    int64_t since = std::max(rec->stopped_at ? rec->stopped_at : rec->updated_at,
                             rec->state == SandboxState::kStopped ? rec->last_activity : 0);
    int64_t idle = Now() - since;
    if (rec->auto_delete_minutes != kNeverDelete && idle >= rec->auto_delete_minutes * kMicrosPerMinute) {
      std::string id = rec->id;
      Status s = DestroyLocked(*rec);
      if (!s.ok()) {
        log::Warn("sandbox.autodelete.failed", {{"id", id}, {"error", s.ToString()}});
        continue;
      }
      log::Info("sandbox.autodelete", {{"id", id}});
      report.deleted.push_back(id);
    } else if (rec->state == SandboxState::kStopped && rec->auto_archive_minutes > 0 &&
               idle >= rec->auto_archive_minutes * kMicrosPerMinute) {
      Status s = ArchiveLocked(*rec);
      if (!s.ok()) {
        log::Warn("sandbox.autoarchive.failed", {{"id", rec->id}, {"error", s.ToString()}});
        continue;
      }
      log::Info("sandbox.autoarchive", {{"id", rec->id}});
      report.archived.push_back(rec->id);
    }
  }
  return report;
}

Status SandboxRuntime::UnmountPoolIfIdle() {
  Lock l(this);
  for (const auto& key : sandboxes_.Keys()) {
    auto j = sandboxes_.Get(key);
    if (!j.ok()) continue;
    auto r = SandboxRecord::FromJson(*j);
    if (r.ok() && ProcessAlive(r->init_pid, r->init_start_time)) {
      return Status::FailedPrecondition("sandbox " + r->id + " is running");
    }
  }
  return pool_->Unmount();
}

}  // namespace warren::sandbox
