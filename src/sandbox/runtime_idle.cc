// SandboxRuntime: idle policies (auto-stop, -archive, -delete).
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

Result<IdleReport> SandboxRuntime::EnforceIdlePolicies() {
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  IdleReport report;
  for (const auto& key : sandboxes_.Keys()) {
    // One sandbox's lock at a time, never waiting for it: a sandbox with an
    // operation in flight is not idle, and the next sweep looks again.
    auto unlocked = ReadRecord(key);
    if (!unlocked.ok() || (unlocked->auto_stop_minutes <= 0 && unlocked->auto_archive_minutes <= 0 &&
                           unlocked->auto_delete_minutes == kNeverDelete)) {
      continue;
    }
    auto held = locks_->TryLock(key);
    if (!held) continue;
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

}  // namespace warren::sandbox
