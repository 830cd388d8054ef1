// Storage pool: where image layers and sandbox root filesystems live.
//
// Backends:
//  - "btrfs": the data dir is on btrfs; subvolumes directly under it.
//  - "btrfs-loop": a sparse pool file (size configurable) formatted btrfs and
//    loop-mounted (LO_FLAGS_AUTOCLEAR, so unmounting frees the loop device).
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
#include <string>
#include <vector>

#include "common/status.h"

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
  std::string kind;                         // "" = auto, or "btrfs-loop" / "copy"
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
};

Result<std::unique_ptr<StoragePool>> OpenStoragePool(const PoolOptions& opts);

}  // namespace warren::sandbox
