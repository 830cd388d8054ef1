// Named volumes: create (with an optional size), get, list, delete, and the
// implicit creation on first mount. A volume on a btrfs pool is a subvolume
// of its own, so its size is a btrfs qgroup limit (max_rfer) exactly like a
// sandbox's disk limit; nested subvolumes inside it cannot be made by a
// sandbox (seccomp refuses the btrfs ioctls), so the limit holds.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "common/log.h"
#include "sandbox/runtime.h"
#include "sandbox/runtime_internal.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

std::string VolumeLockName(const std::string& name) { return "volume-" + name; }

bool IsDir(const std::string& path) {
  struct stat st;
  return fstatat(AT_FDCWD, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

// Whether `path` is the root of a btrfs subvolume (inode 256 on btrfs).
bool IsSubvolume(const std::string& path) {
  struct stat st;
  struct statfs sf;
  return fstatat(AT_FDCWD, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
         st.st_ino == 256 && statfs(path.c_str(), &sf) == 0 && sf.f_type == BTRFS_SUPER_MAGIC;
}

Status CheckVolumeSize(int64_t size_bytes) {
  if (size_bytes < 0) return Status::InvalidArgument("volume size must be >= 0 (0 = no limit)");
  if (size_bytes > 0 && size_bytes < kMinVolumeBytes) {
    return Status::InvalidArgument("volume size must be 0 (no limit) or at least 1 MiB");
  }
  return Status::Ok();
}

}  // namespace

Json VolumeInfo::ToJson() const {
  Json j{{"name", name},
         {"size_bytes", size_bytes},
         {"subvolume", subvolume},
         {"sandboxes", sandboxes}};
  j["used_bytes"] = used_bytes >= 0 ? Json(used_bytes) : Json(nullptr);
  return j;
}

Status SandboxRuntime::EnsureVolume(const std::string& name, bool* created) {
  *created = false;
  if (!ValidName(name)) return Status::InvalidArgument("invalid volume name: " + name);
  NamedLock lock(locks_.get(), VolumeLockName(name));
  WARREN_RETURN_IF_ERROR(lock.status());
  const std::string vdir = VolumeDir(name);
  if (IsDir(vdir)) return Status::Ok();
  // The volumes directory is the runtime's (no sandbox can write it): made
  // and opened without following a link.
  const std::string volumes = vdir.substr(0, vdir.rfind('/'));
  WARREN_RETURN_IF_ERROR(MkdirAll(volumes, 0755));
  UniqueFd vols(open(volumes.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!vols) return ErrnoStatus("open " + volumes);
  std::string why;
  if (pool_->SupportsQuota(&why)) {
    // A subvolume of its own, so that it can carry a quota group.
    Status s = pool_->CreateVolume(vdir);
    if (!s.ok() && !IsDir(vdir)) return s.WithContext("volume " + name);
  } else if (mkdirat(vols.get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus("mkdir volume " + name);
  }
  *created = true;
  log::Info("sandbox.volume.created", {{"volume", name}});
  return Status::Ok();
}

Result<VolumeInfo> SandboxRuntime::VolumeInfoFor(const std::string& name, const std::vector<SandboxRecord>& records) {
  const std::string vdir = VolumeDir(name);
  if (!IsDir(vdir)) return Status::NotFound("no volume " + name);
  VolumeInfo v;
  v.name = name;
  v.subvolume = IsSubvolume(vdir);
  if (v.subvolume) {
    auto q = pool_->GetQuota(vdir);
    if (q.ok()) {
      v.size_bytes = q->limit_bytes;
      v.used_bytes = q->referenced_bytes;
    }
  }
  for (const auto& r : records) {
    if (r.state == SandboxState::kDestroyed) continue;
    for (const auto& m : r.volumes) {
      if (m.volume == name) {
        v.sandboxes.push_back(r.id);
        break;
      }
    }
  }
  return v;
}

Result<VolumeInfo> SandboxRuntime::CreateVolume(const std::string& name, int64_t size_bytes) {
  if (!ValidName(name)) return Status::InvalidArgument("invalid volume name: " + name);
  WARREN_RETURN_IF_ERROR(CheckVolumeSize(size_bytes));
  std::string why;
  if (size_bytes > 0 && !pool_->SupportsQuota(&why)) {
    return Status::FailedPrecondition("volume sizes need a btrfs pool (this pool is " + pool_->Kind() + "): " + why);
  }
  {
    WorldLock world(locks_.get(), false);
    WARREN_RETURN_IF_ERROR(world.status());
    if (IsDir(VolumeDir(name))) return Status::Conflict("volume " + name + " already exists");
    bool created = false;
    WARREN_RETURN_IF_ERROR(EnsureVolume(name, &created));
    if (!created) return Status::Conflict("volume " + name + " already exists");
    const std::string vdir = VolumeDir(name);
    if (size_bytes > 0) {
      if (Status s = pool_->SetQuota(vdir, size_bytes); !s.ok()) {
        NamedLock lock(locks_.get(), VolumeLockName(name));
        (void)pool_->DeleteVolume(vdir);
        return s.WithContext("size of volume " + name);
      }
    }
  }
  return GetVolume(name);
}

Result<VolumeInfo> SandboxRuntime::GetVolume(const std::string& name) {
  if (!ValidName(name)) return Status::InvalidArgument("invalid volume name: " + name);
  WARREN_ASSIGN_OR_RETURN(auto records, List());
  return VolumeInfoFor(name, records);
}

Result<std::vector<VolumeInfo>> SandboxRuntime::ListVolumes() {
  std::set<std::string> names;
  for (const std::string& dir : {pool_->root() + "/volumes", opts_.data_dir + "/volumes"}) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      std::string n = e.path().filename();
      if (ValidName(n) && e.is_directory(ec) && !e.is_symlink(ec)) names.insert(n);
    }
  }
  WARREN_ASSIGN_OR_RETURN(auto records, List());
  std::vector<VolumeInfo> out;
  for (const auto& n : names) {
    auto v = VolumeInfoFor(n, records);
    if (v.ok()) out.push_back(std::move(*v));
  }
  return out;
}

Status SandboxRuntime::DeleteVolume(const std::string& name) {
  if (!ValidName(name)) return Status::InvalidArgument("invalid volume name: " + name);
  // The records are read before any lock is taken (List takes the world
  // lock itself and may recover a record under its sandbox lock, which
  // comes before the volume's leaf lock).
  WARREN_ASSIGN_OR_RETURN(auto records, List());
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  NamedLock lock(locks_.get(), VolumeLockName(name));
  WARREN_RETURN_IF_ERROR(lock.status());
  WARREN_ASSIGN_OR_RETURN(VolumeInfo v, VolumeInfoFor(name, records));
  if (!v.sandboxes.empty()) {
    return Status::Conflict("volume " + name + " is used by sandbox " + v.sandboxes.front() +
                            (v.sandboxes.size() > 1 ? " and " + std::to_string(v.sandboxes.size() - 1) + " more" : ""));
  }
  const std::string vdir = VolumeDir(name);
  // A btrfs pool removes a subvolume (nested ones first, then its quota
  // group) or a plain directory; other pools' DeleteVolume is about their
  // own layout (overlay state), so a volume there is a plain tree.
  std::string why;
  Status s = pool_->SupportsQuota(&why) ? pool_->DeleteVolume(vdir) : RemoveTree(vdir);
  if (!s.ok()) return s.WithContext("delete volume " + name);
  log::Info("sandbox.volume.deleted", {{"volume", name}});
  return Status::Ok();
}

}  // namespace warren::sandbox
