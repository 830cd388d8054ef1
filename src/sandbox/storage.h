// Storage pool: where image layers and sandbox root filesystems live.
//
// Backends:
//  - "btrfs": the data dir is on btrfs; subvolumes directly under it.
//  - "btrfs-loop": a sparse pool file (size configurable) formatted btrfs and
//    loop-mounted (LO_FLAGS_AUTOCLEAR, so unmounting frees the loop device).
//  - "overlay": hosts without btrfs. An image layer is a read-only directory
//    holding its diff (`layers/<h>/diff`, overlayfs whiteouts included) and the
//    names of the layers below it (`layers/<h>/lowers`). A writable volume is
//    `ovl/<rel>/{upper,work,lowers}` plus an overlay mounted at its path
//    (the host view). A fork copies `upper` (`cp -a --reflink=auto`: a
//    reflink on XFS/btrfs, a full copy elsewhere), so it is reported as not
//    copy-on-write. Overlayfs itself cannot be idmapped (kernel 6.18:
//    mount_setattr(MOUNT_ATTR_IDMAP) on an overlay gives EINVAL), so a
//    sandbox gets its own overlay instance over idmapped clones of its
//    layers (SandboxRootMount), mounted with the sandbox root's host ids.
//  - "copy": any other filesystem; volumes are directories and a snapshot is
//    a full copy (`cp -a --reflink=auto`). Reported as not copy-on-write.
// One subvolume per image layer (read-only) and per sandbox (writable);
// fork = snapshot, O(1) in data size on btrfs.
//
// Ownership: a StoragePool object does not unmount the pool on destruction;
// call Unmount() explicitly (only when nothing uses it). Thread-safety:
// thread-compatible; distinct paths may be used concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace warren::sandbox {

// A volume's disk quota (btrfs qgroup 0/<subvolume id>).
struct QuotaInfo {
  uint64_t qgroup = 0;          // level-0 qgroup id (= subvolume id)
  int64_t limit_bytes = 0;      // max_rfer; 0 = no limit
  int64_t referenced_bytes = 0;  // rfer: every byte the volume can see, shared or not
  int64_t exclusive_bytes = 0;   // excl: bytes only this volume holds
};

struct PoolOptions {
  std::string data_dir;                     // absolute
  int64_t pool_file_bytes = 32LL << 30;     // sparse size of pool.img
  std::string kind;                         // "" = auto, or "btrfs-loop" / "overlay" / "copy"
  // mkfs.btrfs to run (tests point it at a missing binary to act as a host
  // without btrfs-progs).
  std::string mkfs_btrfs = "mkfs.btrfs";
};

class StoragePool {
 public:
  virtual ~StoragePool() = default;
  virtual std::string Kind() const = 0;
  virtual bool CopyOnWrite() const = 0;
  // Root directory of the pool (layers/, sandboxes/, tmp/ live under it).
  virtual const std::string& root() const = 0;
  // Creates an empty writable volume at `path` (under root()).
  virtual Status CreateVolume(const std::string& path) = 0;
  // Snapshot of volume `src` at `dst`; `read_only` for image layers.
  virtual Status Snapshot(const std::string& src, const std::string& dst, bool read_only) = 0;
  // Deletes a volume (any contents) and its quota group. OK if absent.
  virtual Status DeleteVolume(const std::string& path) = 0;
  // Whether per-volume disk quotas work; if not, *why says so.
  virtual bool SupportsQuota(std::string* why) const = 0;
  // Limits the bytes volume `path` references (its whole file tree, shared
  // extents included) to `bytes`; 0 removes the limit. Turns quota
  // accounting on for the pool the first time (and waits for its rescan).
  // Writes beyond the limit fail with EDQUOT. Unimplemented on pools
  // without quota support.
  virtual Status SetQuota(const std::string& path, int64_t bytes) = 0;
  // The quota state of volume `path` (NotFound without quota accounting).
  virtual Result<QuotaInfo> GetQuota(const std::string& path) = 0;
  // Level-0 quota groups that exist on the pool (empty without accounting).
  virtual Result<std::vector<uint64_t>> ListQuotaGroups() = 0;
  // Removes quota groups whose subvolume is gone (a crash between a volume's
  // delete and its qgroup's removal). Returns how many were removed.
  virtual Result<int> RemoveStaleQuotaGroups() = 0;
  // Unmounts a loop-mounted pool (its loop device is released).
  virtual Status Unmount() = 0;
  // The loop device backing the pool, or "" (for leak checks and docs).
  virtual std::string LoopDevice() const = 0;

  // The detached mount a sandbox's init attaches as its root: volume `path`
  // with ids mapped through the user namespace `userns_fd`, whose root is
  // host uid/gid `host_root`, plus mount attributes `attrs`. Default: an
  // idmapped clone of `path`. Overlay: a new overlay instance over idmapped
  // clones of the volume's layers, created with fsuid/fsgid `host_root`; the
  // host view at `path` is then replaced by a clone of that instance, so the
  // host and the sandbox share one overlay (coherent caches).
  virtual Result<UniqueFd> SandboxRootMount(const std::string& path, int userns_fd, uint32_t host_root,
                                            unsigned attrs);
  // When the host view of volume `path` shows host ids (an overlay volume
  // whose view is a sandbox's instance): the host uid of that sandbox's
  // root, which file API writes must use. Otherwise -1.
  virtual int64_t HostViewIdBase(const std::string& path) const {
    (void)path;
    return -1;
  }
  // Names of the layers a volume is stacked on (overlay; empty otherwise).
  virtual std::vector<std::string> VolumeLayers(const std::string& path) const {
    (void)path;
    return {};
  }
  // Names of every layer some volume is stacked on (overlay): such layers
  // must outlive the snapshots that made them.
  virtual std::set<std::string> ReferencedLayers() const { return {}; }
};

Result<std::unique_ptr<StoragePool>> OpenStoragePool(const PoolOptions& opts);

}  // namespace warren::sandbox
