// SandboxRuntime: sandbox lifecycle (create, start, stop, pause, fork, delete),
// exec, files and stats.
#include "sandbox/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
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
#include "sandbox/safe_path.h"
#include "sandbox/sys.h"
#include "sandbox/userns.h"

namespace warren::sandbox {

using std::chrono::milliseconds;

Result<SandboxRecord> SandboxRuntime::Create(const CreateOptions& o) {
  if (!o.name.empty() && !ValidName(o.name)) return Status::InvalidArgument("invalid sandbox name: " + o.name);
  std::vector<std::string> cidrs, hosts;
  WARREN_RETURN_IF_ERROR(ValidateNetwork(o, features_, &cidrs, &hosts));
  if (o.network == "limited" && egress_tcp_port_ == 0) {
    return Status::FailedPrecondition(
        "network 'limited' needs the egress proxy, which runs in `warren serve` or `warren orchestrator` on this "
        "data dir; none has run here");
  }
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
  const auto t0 = std::chrono::steady_clock::now();
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  SandboxRecord rec;
  rec.id = NewId("sbx_", 16);
  // The new sandbox's own lock from the start: its record becomes visible
  // (state creating) before it is made, and nobody may "recover" it meanwhile.
  NamedLock own(locks_.get(), rec.id);
  WARREN_RETURN_IF_ERROR(own.status());
  if (!o.name.empty() && ResolveId(o.name).ok()) return Status::Conflict("a sandbox named " + o.name + " exists");
  WARREN_ASSIGN_OR_RETURN(SnapshotRecord snap, ResolveSnapshotLocked(o.snapshot, nullptr));
  rec.name = o.name;
  rec.snapshot = snap.name;
  rec.snapshot_hash = snap.hash;
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
  rec.allow_hosts = std::move(hosts);
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
  {
    // Name check, slot and record in one step under the registry lock.
    NamedLock reg(locks_.get(), kRegistryLock);
    WARREN_RETURN_IF_ERROR(reg.status());
    if (!o.name.empty() && ResolveId(o.name).ok()) return Status::Conflict("a sandbox named " + o.name + " exists");
    WARREN_ASSIGN_OR_RETURN(rec.id_slot, AllocateSlotLocked());
    WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  }
  const auto t_rec = std::chrono::steady_clock::now();
  Status s;
  {
    // The layer cannot be collected (snapshot deleted) while it is copied.
    NamedLock layers(locks_.get(), kLayersLock);
    s = layers.status();
    if (s.ok()) s = pool_->Snapshot(pool_->root() + "/layers/" + snap.layers.back(), RootfsPath(rec.id), false);
  }
  const auto t_snap = std::chrono::steady_clock::now();
  if (s.ok() && rec.resources.disk_bytes > 0) s = pool_->SetQuota(RootfsPath(rec.id), rec.resources.disk_bytes);
  if (!s.ok()) {
    (void)pool_->DeleteVolume(RootfsPath(rec.id));
    (void)records_.Remove(rec.id);
    return s;
  }
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kStopped));
  using Ms = std::chrono::duration<double, std::milli>;
  const auto t_made = std::chrono::steady_clock::now();
  log::Info("sandbox.created", {{"id", rec.id},
                                {"snapshot", rec.snapshot},
                                {"record_ms", Ms(t_rec - t0).count()},
                                {"rootfs_ms", Ms(t_snap - t_rec).count()},
                                {"state_ms", Ms(t_made - t_snap).count()},
                                {"total_ms", Ms(t_made - t0).count()}});
  if (o.start) WARREN_RETURN_IF_ERROR(StartLocked(rec));
  return rec;
}

Result<SandboxRecord> SandboxRuntime::Get(const std::string& id) {
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  return ReadRecord(id);
}

Result<std::vector<SandboxRecord>> SandboxRuntime::List() { return ListWhere(nullptr); }

Result<std::vector<SandboxRecord>> SandboxRuntime::ListWithLabel(const std::string& key, const std::string& value) {
  return ListWhere([&](const SandboxRecord& r) {
    auto it = r.labels.find(key);
    return it != r.labels.end() && it->second == value;
  });
}

Result<std::vector<SandboxRecord>> SandboxRuntime::ListInState(SandboxState state) {
  if (state == SandboxState::kDestroyed) return std::vector<SandboxRecord>{};  // List() leaves them out
  return ListPage(std::nullopt, SIZE_MAX, nullptr, state);
}

Result<std::vector<SandboxRecord>> SandboxRuntime::ListPage(const std::optional<RecordKey>& after, size_t limit,
                                                            const std::function<bool(const SandboxRecord&)>& pred,
                                                            std::optional<SandboxState> state) {
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  std::vector<SandboxRecord> out;
  std::optional<RecordKey> cursor = after;
  auto live = [&pred, state](const SandboxRecord& r) {
    return r.state != SandboxState::kDestroyed && (!state || r.state == *state) && (!pred || pred(r));
  };
  // A record dropped below (recovered into a state pred refuses) leaves
  // room: ask again after the last key seen until the page is full or the
  // records end.
  while (out.size() < limit) {
    const size_t want = limit - out.size();
    std::vector<SandboxRecord> page = records_.Page(cursor, want, live, state);
    for (auto& r : page) {
      cursor = RecordKey{r.created_at, r.id};
      if (IsTransitional(r.state)) {
        // As ReadRecord: busy, reported as is; free, left by a dead process
        // and recovered under the lock.
        auto l = locks_->TryLock(r.id);
        if (l) {
          auto again = LoadLocked(r.id);
          if (!again.ok() || !live(*again)) continue;
          r = std::move(again).value();
        }
      }
      out.push_back(std::move(r));
    }
    if (page.size() < want) break;
  }
  return out;
}

Result<std::vector<SandboxRecord>> SandboxRuntime::ListWhere(const std::function<bool(const SandboxRecord&)>& pred) {
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  std::vector<SandboxRecord> matched;
  records_.ForEach([&](const SandboxRecord& r) {
    if (r.state != SandboxState::kDestroyed && (!pred || pred(r))) matched.push_back(r);
  });
  std::vector<SandboxRecord> out;
  for (auto& r : matched) {
    if (IsTransitional(r.state)) {
      // As ReadRecord: busy, reported as is; free, left by a dead process
      // and recovered under the lock.
      auto l = locks_->TryLock(r.id);
      if (l) {
        auto again = LoadLocked(r.id);
        if (!again.ok() || (pred && !pred(*again))) continue;
        r = std::move(again).value();
      }
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.created_at < b.created_at; });
  return out;
}

Status SandboxRuntime::PrepareVolumesLocked(const SandboxRecord& rec, std::vector<BindSpec>* binds) {
  if (rec.volumes.empty() && rec.host_binds.empty()) return Status::Ok();
  WARREN_ASSIGN_OR_RETURN(RootFs fs, OpenRootFs(RootfsPath(rec.id)));
  // volumes/ is the runtime's; everything inside volumes/<name> may have
  // been written by a sandbox. From the volume's directory on, every
  // component is resolved relative to its parent's fd without following
  // symlinks or crossing mounts, missing ones are made with mkdirat, and
  // the mount is cloned from the final fd: a symlink planted as (part of)
  // the subpath fails with ELOOP instead of mounting a host directory.
  for (const auto& v : rec.volumes) {
    if (!ValidName(v.volume)) return Status::InvalidArgument("invalid volume name: " + v.volume);
    std::string sub = v.subpath;
    while (!sub.empty() && sub[0] == '/') sub.erase(0, 1);
    // The volumes directory (legacy <data dir>/volumes, or volumes/ in a
    // loop pool) and the volume directory itself are the runtime's (an
    // operator may mount a disk there): made and opened without following a
    // link; the subpath below it is the sandboxes' and must stay on that mount.
    // A volume named for the first time is made here (a subvolume on btrfs
    // pools, without a size; CreateVolume makes one with a size).
    bool created = false;
    WARREN_RETURN_IF_ERROR(EnsureVolume(v.volume, &created));
    std::string vdir = VolumeDir(v.volume);
    const std::string volumes = vdir.substr(0, vdir.rfind('/'));
    UniqueFd vols(open(volumes.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!vols) return ErrnoStatus("open " + volumes);
    UniqueFd vol(openat(vols.get(), v.volume.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!vol) return ErrnoStatus("open volume " + v.volume);
    auto dir = MkdirBeneath(vol.get(), sub, 0755);
    if (!dir.ok()) return dir.status().WithContext("volume " + v.volume + " subpath '" + v.subpath + "'");
    std::string rel = sub.empty() ? v.volume : v.volume + "/" + sub;
    // Volumes are mounted idmapped like the rootfs: host-side on-disk ids
    // 0..65535 are the sandbox's own ids, whichever sandbox mounts them.
    WARREN_RETURN_IF_ERROR(fs.Mkdir(v.path, true));
    BindSpec b{volumes + "/" + rel, v.path, v.read_only, nullptr};
    b.host_dir = std::make_shared<const UniqueFd>(std::move(*dir));
    binds->push_back(std::move(b));
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
  using Ms = std::chrono::duration<double, std::milli>;
  auto t0 = std::chrono::steady_clock::now();
  auto last = t0;
  Json timing = {{"id", rec.id}, {"network", rec.network}};
  auto mark = [&](const char* name) {
    auto now = std::chrono::steady_clock::now();
    timing[name] = Ms(now - last).count();
    last = now;
  };
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kStarting));
  mark("state_ms");
  auto fail = [&](const Status& s) {
    (void)cgroups_->Destroy(rec.id);
    rec.error = s.ToString();
    rec.init_pid = -1;
    (void)SetStateLocked(rec, SandboxState::kStopped);
    return s;
  };
  if (Status s = cgroups_->Create(rec.id, rec.resources); !s.ok()) return fail(s);
  mark("cgroup_ms");
  std::vector<BindSpec> binds;
  if (Status s = PrepareVolumesLocked(rec, &binds); !s.ok()) return fail(s);
  mark("binds_ms");
  if (Status s = WriteResolvConf(rec); !s.ok()) return fail(s);
  InitSpec spec;
  spec.rootfs = RootfsPath(rec.id);
  spec.hostname = rec.name.empty() ? rec.id : rec.name;
  spec.ids = IdRange{rec.id_slot};
  spec.binds = std::move(binds);
  spec.root_mount = [this, path = spec.rootfs, base = spec.ids.host_base()](int userns_fd) {
    return pool_->SandboxRootMount(path, userns_fd, base, MOUNT_ATTR_NODEV);
  };
  mark("resolv_ms");
  auto h = SpawnInit(spec, *cgroups_, rec.id);
  if (!h.ok()) return fail(h.status());
  mark("init_ms");
  if (RoutedNetwork(rec.network)) {
    if (Status s = SetupNetworkLocked(rec, h->pid, h->start_time, &timing); !s.ok()) {
      KillInit(h->pid, h->start_time);
      WaitGone(h->pid, h->start_time, milliseconds(5000));
      (void)TeardownNetworkLocked(rec);
      return fail(s);
    }
    mark("network_ms");
  }
  rec.init_pid = h->pid;
  rec.init_start_time = h->start_time;
  rec.error.clear();
  rec.last_activity = Now();
  WARREN_RETURN_IF_ERROR(SetStateLocked(rec, SandboxState::kStarted));
  mark("save_ms");
  timing["total_ms"] = Ms(last - t0).count();
  // Where a start's time goes (docs/SANDBOX.md "Start latency").
  log::Info("sandbox.started", timing);
  return Status::Ok();
}

Result<SandboxRecord> SandboxRuntime::Start(const std::string& id) {
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
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
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
  WARREN_RETURN_IF_ERROR(StopLocked(rec, force));
  return rec;
}

Result<SandboxRecord> SandboxRuntime::Pause(const std::string& id) {
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
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
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
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
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
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
  std::vector<std::unique_ptr<NamedLock>> kid_locks;
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
    // Lock order: the parent, then each new child (ids nobody else knows yet).
    kid_locks.push_back(std::make_unique<NamedLock>(locks_.get(), k.id));
    WARREN_RETURN_IF_ERROR(kid_locks.back()->status());
    {
      NamedLock reg(locks_.get(), kRegistryLock);
      WARREN_RETURN_IF_ERROR(reg.status());
      WARREN_ASSIGN_OR_RETURN(k.id_slot, AllocateSlotLocked());
      WARREN_RETURN_IF_ERROR(SaveLocked(k));
    }
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
      (void)records_.Remove(kids[i].id);
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
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, ReadRecord(id));
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
  return records_.Remove(rec.id);
}

Status SandboxRuntime::Delete(const std::string& id) {
  SandboxGuard guard;
  auto rec = LockSandbox(id, &guard);
  if (!rec.ok()) return rec.status().code() == Code::kNotFound ? Status::Ok() : rec.status();
  return DestroyLocked(*rec);
}

Result<QuotaInfo> SandboxRuntime::DiskQuota(const std::string& id) {
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
  if (Archived(rec.state)) return Status::NotFound("sandbox " + rec.id + " is " + StateName(rec.state));
  return pool_->GetQuota(RootfsPath(rec.id));
}

Result<SandboxRecord> SandboxRuntime::SetLabels(const std::string& id, std::map<std::string, std::string> labels) {
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
  rec.labels = std::move(labels);
  WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  return rec;
}

Status SandboxRuntime::WriteResolvConf(const SandboxRecord& rec) {
  std::vector<std::string> nameservers = rec.dns;
  if (nameservers.empty() && rec.network == "limited") {
    // The egress proxy answers DNS on the gateway (any :53 is redirected
    // there anyway); the image's resolver may be a loopback stub.
    WARREN_ASSIGN_OR_RETURN(NetSlot slot, NetSlotFor(net_pool_, net_if_prefix_, rec.id_slot));
    nameservers.push_back(FormatIpv4(slot.host_addr));
  }
  if (nameservers.empty()) return Status::Ok();
  // Replace, not write through: a symlink (e.g. to systemd-resolved's
  // stub) would otherwise decide where the text lands.
  std::string conf;
  for (const auto& d : nameservers) conf += "nameserver " + d + "\n";
  WARREN_ASSIGN_OR_RETURN(RootFs fs, OpenRootFs(RootfsPath(rec.id)));
  (void)fs.Delete("/etc/resolv.conf", false);
  Status s = fs.Mkdir("/etc", true);
  if (s.ok()) s = fs.WriteFile("/etc/resolv.conf", conf, 0644);
  return s.WithContext("write /etc/resolv.conf");
}

Result<SandboxRecord> SandboxRuntime::SetHostBinds(const std::string& id, std::vector<HostBind> binds) {
  if (binds.size() > 4) return Status::InvalidArgument("at most 4 host binds");
  for (const auto& b : binds) {
    if (b.host_path.empty() || b.host_path[0] != '/') return Status::InvalidArgument("host bind source must be absolute");
    if (b.path.size() < 2 || b.path[0] != '/' || b.path.find("/../") != std::string::npos ||
        b.path.find("/./") != std::string::npos || b.path.back() == '/' || b.path.ends_with("/..")) {
      return Status::InvalidArgument("host bind target must be a normalised absolute path: " + b.path);
    }
    struct stat st;
    if (::stat(b.host_path.c_str(), &st) != 0) return ErrnoStatus("host bind " + b.host_path);
  }
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
  if (rec.state != SandboxState::kStopped)
    return Status::FailedPrecondition("host binds change only on a stopped sandbox (it is " + StateName(rec.state) + ")");
  rec.host_binds = std::move(binds);
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
    SandboxGuard guard;
    WARREN_RETURN_IF_ERROR(LockSandbox(id, &guard).status());
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

Result<RootFs> SandboxRuntime::Files(const std::string& id) {
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
  if (Archived(rec.state)) {
    return Status::FailedPrecondition("sandbox is " + StateName(rec.state) + "; restore or start it to use its files");
  }
  rec.last_activity = Now();
  WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  return OpenRootFs(RootfsPath(rec.id));
}

Result<CgroupStats> SandboxRuntime::Stats(const std::string& id) {
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
  if (!Live(rec.state)) return CgroupStats{};
  return cgroups_->Stats(rec.id);
}

}  // namespace warren::sandbox
