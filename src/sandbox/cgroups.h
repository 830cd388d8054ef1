// cgroups: per-sandbox resource limits, freeze/thaw and kill-all behind one
// interface, with a v1 backend (cpu, memory, pids, freezer controllers, each
// its own hierarchy) and a v2 backend (unified tree). Detect() picks the one
// the host offers. Every sandbox gets a cgroup named by its id under a
// `prefix` directory ("warren") in each hierarchy.
//
// A name may contain '/': "<id>/session-<s>" is a sub-cgroup of a sandbox
// (a shell session). Pids, KillAll and Destroy cover a cgroup's whole
// subtree; limits set on a sandbox apply to its sub-cgroups.
//
// Ownership: a CgroupManager owns no kernel objects itself; Destroy() removes
// what Create() made. Thread-safety: thread-compatible; different names may be
// used from different threads concurrently.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace warren::sandbox {

struct Resources {
  double cpus = 0;            // CPU bandwidth in cores; 0 = unlimited.
  int64_t memory_bytes = 0;   // 0 = unlimited.
  int64_t pids = 0;           // 0 = unlimited.
  int64_t disk_bytes = 0;     // 0 = unlimited (quota where the pool supports it).
};

struct CgroupStats {
  int64_t memory_bytes = 0;
  int64_t memory_peak_bytes = 0;
  int64_t oom_kills = 0;
  int64_t pids = 0;
  uint64_t cpu_usage_ns = 0;
};

class CgroupManager {
 public:
  virtual ~CgroupManager() = default;
  virtual std::string Version() const = 0;  // "v1" or "v2"
  // Creates (or reuses) the cgroup `name` and applies `res`.
  virtual Status Create(const std::string& name, const Resources& res) = 0;
  virtual Status Update(const std::string& name, const Resources& res) = 0;
  virtual bool Exists(const std::string& name) const = 0;
  // The cgroup.procs files a process must write "0" into to join `name`
  // (one per hierarchy); used by async-signal-safe child code.
  virtual std::vector<std::string> ProcsFiles(const std::string& name) const = 0;
  virtual Status AddProcess(const std::string& name, pid_t pid) = 0;
  // Tasks of `name` and of its sub-cgroups.
  virtual Result<std::vector<pid_t>> Pids(const std::string& name) const = 0;
  // Freezes every task; returns once the kernel reports the group frozen.
  virtual Status Freeze(const std::string& name, std::chrono::milliseconds timeout) = 0;
  virtual Status Thaw(const std::string& name) = 0;
  virtual Result<bool> IsFrozen(const std::string& name) const = 0;
  // SIGKILLs every task until the group is empty.
  virtual Status KillAll(const std::string& name, std::chrono::milliseconds timeout) = 0;
  // KillAll + remove the directories. NotFound-tolerant (idempotent).
  virtual Status Destroy(const std::string& name) = 0;
  // Names of existing cgroups under the prefix (for recovery).
  virtual Result<std::vector<std::string>> List() const = 0;
  virtual Result<CgroupStats> Stats(const std::string& name) const = 0;
};

// `root` is the cgroup mount root (/sys/fs/cgroup); tests pass a temp dir.
std::unique_ptr<CgroupManager> NewCgroupV1(std::string root, std::string prefix);
std::unique_ptr<CgroupManager> NewCgroupV2(std::string root, std::string prefix);
// v2 when /sys/fs/cgroup is a pure cgroup2 mount, else v1 (hybrid hosts).
Result<std::unique_ptr<CgroupManager>> DetectCgroupManager(const std::string& prefix);

}  // namespace warren::sandbox
