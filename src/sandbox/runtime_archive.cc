// SandboxRuntime: archive and restore of a sandbox's rootfs.
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
#include "sandbox/runtime_internal.h"
#include "sandbox/sys.h"
#include "sandbox/userns.h"

namespace warren::sandbox {

using std::chrono::milliseconds;

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
  if (opts_.test_hook) opts_.test_hook("archive", rec.id);
  auto stats = WriteTreeArchive(RootfsPath(rec.id), archive);
  if (!stats.ok()) return undo(stats.status().WithContext("archive " + rec.id));
  if (Status s = pool_->DeleteVolume(RootfsPath(rec.id)); !s.ok()) return undo(s.WithContext("free disk of " + rec.id));
  rec.archive_bytes = stats->archive_bytes;
  log::Info("sandbox.archived", {{"id", rec.id}, {"entries", stats->entries}, {"data_bytes", stats->data_bytes},
                                 {"archive_bytes", stats->archive_bytes}});
  return SetStateLocked(rec, SandboxState::kArchived);
}

Result<SandboxRecord> SandboxRuntime::Archive(const std::string& id) {
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
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
  SandboxGuard guard;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
  WARREN_RETURN_IF_ERROR(RestoreLocked(rec));
  return rec;
}

}  // namespace warren::sandbox
