// SandboxRuntime: crash recovery (Recover, per-record recovery).
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
      WARREN_RETURN_IF_ERROR(records_.Remove(rec.id));
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
  // Exclusive: no operation holds any sandbox's lock meanwhile, in this
  // process or another, so every record and orphan can be judged at once.
  WorldLock l(locks_.get(), true);
  WARREN_RETURN_IF_ERROR(l.status());
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
  // Interrupted builds: kill their init, drop their cgroup and scratch (a
  // networked one's veth and rules go with the orphan links and the
  // firewall re-render below).
  std::error_code ec_builds;
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
  // Their network files (builds/<id>.d: a networked step's resolv.conf).
  // No build runs now (the world lock is ours), so every one is stale.
  for (const auto& e : std::filesystem::directory_iterator(builds_.dir(), ec_builds)) {
    if (e.path().filename().string().ends_with(".d")) (void)RemoveTree(e.path());
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
    if (!r.ok() || !RoutedNetwork(r->network) || !ProcessAlive(r->init_pid, r->init_start_time)) continue;
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
  // Lock files of sandboxes that are gone (ids only; the shared lock names
  // stay).
  for (const auto& e : std::filesystem::directory_iterator(opts_.data_dir + "/locks", ec)) {
    std::string name = e.path().filename();
    if (name.rfind("sbx_", 0) != 0) continue;
    auto j = sandboxes_.Get(name);
    if (!j.ok() && j.status().code() == Code::kNotFound) locks_->RemoveLockFile(name);
  }
  auto stale = pool_->RemoveStaleQuotaGroups();
  if (stale.ok()) rep.stale_qgroups = *stale;
  if (!rep.removed.empty() || !rep.stopped.empty() || rep.orphan_cgroups || rep.orphan_volumes ||
      rep.orphan_links || rep.orphan_archives || rep.stale_qgroups) {
    log::Info("sandbox.recovered", rep.ToJson());
  }
  return rep;
}

}  // namespace warren::sandbox
