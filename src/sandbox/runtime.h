// SandboxRuntime: Warren's sandbox runtime as an in-process C++ library.
// The orchestrator and the `warren sandbox` / `warren snapshot` commands
// call it; it owns the data dir:
//
//   <data>/pool.img, <data>/pool/          storage pool (see storage.h)
//     pool/layers/<hash>                   read-only image layers
//     pool/sandboxes/<id>                  a sandbox's writable rootfs
//     pool/tmp/                            build scratch
//   <data>/sandboxes/<id>.json             sandbox state (state.h)
//   <data>/snapshots/<name>.json           snapshot (image) metadata
//   <data>/builds/<id>.json                in-flight build steps (recovery)
//   <data>/volumes/<name>/                 named host-backed volumes
//   <data>/lock                            flock: one mutating op at a time
//   <data>/config.json                     settings fixed at first open (cgroup prefix)
//
// Several processes may open the same data dir: mutating operations take an
// exclusive flock on <data>/lock (and an in-process mutex); exec and file
// calls run without it. Open() recovers from a previous crash: live
// sandboxes are re-adopted, half-made ones cleaned (mounts, cgroups,
// subvolumes, processes).
//
// Ownership: the runtime owns no sandbox processes; sandboxes outlive it and
// are found again by the next Open(). Thread-safety: all methods are
// thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "sandbox/caps.h"
#include "sandbox/cgroups.h"
#include "sandbox/files.h"
#include "sandbox/netfilter.h"
#include "sandbox/network.h"
#include "sandbox/process.h"
#include "sandbox/seccomp.h"
#include "sandbox/state.h"
#include "sandbox/storage.h"

namespace warren::sandbox {

struct RuntimeOptions {
  std::string data_dir = "/var/lib/warren";
  int64_t pool_file_bytes = 32LL << 30;
  // "" = auto: "btrfs" (data dir on btrfs) / "btrfs-loop", else "overlay"
  // (mkfs.btrfs or loop devices unavailable), else "copy"; or one of those.
  std::string pool_kind;
  std::string mkfs_btrfs = "mkfs.btrfs";  // tests: a missing binary = a host without btrfs-progs
  // Debian mirror for `FROM debian:<suite>` bases ("" = the first deb URI in
  // /etc/apt/sources.list*, else http://deb.debian.org/debian). A recipe's
  // `mirror=` option overrides it.
  std::string debian_mirror;
  std::string debootstrap = "debootstrap";  // the tool to run (tests: a missing one)
  std::string cgroup_prefix = "warren";  // fixed by <data>/config.json once written
  // IPv4 pool for `isolated` sandboxes: slot N gets the N-th /30 (host end
  // .1, sandbox .2). Fixed by <data>/config.json once written. 10.213/16 is
  // rarely used by cloud VPCs (10.0-10.10), Docker (172.17+) or k8s (10.96,
  // 10.244) defaults; it holds 16384 /30s, one per id slot.
  std::string network_pool = "10.213.0.0/16";
  std::chrono::milliseconds stop_grace{3000};
  std::chrono::milliseconds freeze_timeout{10000};
  std::chrono::milliseconds transition_timeout{60000};
  bool recover_on_open = true;
  Clock* clock = nullptr;  // nullptr = Clock::Real()
};

struct CreateOptions {
  std::string name;                        // optional, unique among live sandboxes
  std::string snapshot = "builtin:minimal";
  std::map<std::string, std::string> labels;
  std::vector<std::string> env;  // KEY=value
  Resources resources;           // 0 fields = the snapshot's defaults
  // "none": own netns with loopback only. "isolated": a routed veth /30 to
  // the host with NAT egress; the host, private, link-local (metadata) and
  // other sandboxes' addresses are blocked (see network.h, netfilter.h).
  std::string network = "none";
  std::vector<std::string> allow_cidrs;  // isolated only; <= 10 IPv4 CIDRs let through the blocks
  bool block_all = false;                // isolated only; no egress but allow_cidrs
  std::vector<std::string> dns;          // isolated only; <= 3 nameservers for /etc/resolv.conf
  std::string user;              // default exec user
  std::string workdir;           // default exec cwd
  std::vector<VolumeMount> volumes;
  int64_t auto_stop_minutes = 0;
  bool start = true;
};

struct ExecRequest {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;   // "" = sandbox/snapshot default
  std::string user;  // "" = default; name or uid[:gid]
  std::chrono::milliseconds timeout{0};
  std::string stdin_data;
  std::function<void(std::string_view)> on_stdout;
  std::function<void(std::string_view)> on_stderr;
  // Polled while the command runs (at least once a second): true kills it
  // as if it timed out. Used when a streaming client goes away.
  std::function<bool()> cancelled;
};

struct ForkTree {
  std::string id;
  std::string parent;                  // "" for a root
  std::vector<std::string> ancestors;  // nearest first (may include deleted ids)
  std::vector<std::string> children;
};

struct Features {
  std::string pool_kind;
  bool copy_on_write_fork = false;
  std::string cgroup_version;
  bool idmapped_mounts = true;
  bool criu = false;
  std::string criu_reason;
  bool network_isolated = false;
  std::string network_reason;  // why not, when network_isolated is false
  Json ToJson() const;
};

struct RecoveryReport {
  std::vector<std::string> adopted;   // live sandboxes kept
  std::vector<std::string> stopped;   // marked stopped (init gone)
  std::vector<std::string> removed;   // half-made, cleaned
  int orphan_cgroups = 0;
  int orphan_volumes = 0;
  int orphan_links = 0;  // veths of this runtime with no running sandbox
  Json ToJson() const;
};

using BuildLog = std::function<void(std::string_view line)>;

class SandboxRuntime final {
 public:
  static Result<std::unique_ptr<SandboxRuntime>> Open(RuntimeOptions opts);
  ~SandboxRuntime();
  SandboxRuntime(const SandboxRuntime&) = delete;
  SandboxRuntime& operator=(const SandboxRuntime&) = delete;

  // --- sandboxes ---
  Result<SandboxRecord> Create(const CreateOptions& opts);
  Result<SandboxRecord> Get(const std::string& id_or_name);
  Result<std::vector<SandboxRecord>> List();
  Result<SandboxRecord> Start(const std::string& id);
  // freeze -> SIGTERM all -> thaw -> grace -> SIGKILL; files kept.
  Result<SandboxRecord> Stop(const std::string& id, bool force = false);
  Result<SandboxRecord> Pause(const std::string& id);
  Result<SandboxRecord> Resume(const std::string& id);
  // `count` children of a started, paused or stopped sandbox; the rootfs is
  // snapshotted while the parent is frozen. Children start when the parent
  // was started. Memory is not copied (no CRIU here).
  Result<std::vector<SandboxRecord>> Fork(const std::string& id, int count);
  Result<ForkTree> Tree(const std::string& id);
  Status Delete(const std::string& id);  // from any state; idempotent
  Result<SandboxRecord> SetLabels(const std::string& id, std::map<std::string, std::string> labels);
  Result<ExecResult> Exec(const std::string& id, const ExecRequest& req);
  // The sandbox's root filesystem for the file API (any state but deleted).
  Result<RootFs> Files(const std::string& id);
  Result<CgroupStats> Stats(const std::string& id);

  // --- snapshots (images) ---
  Result<SnapshotRecord> BuildSnapshot(const std::string& name, const std::string& recipe_text,
                                       const std::string& context_dir, const BuildLog& log = nullptr);
  Result<SnapshotRecord> GetSnapshot(const std::string& name);
  Result<std::vector<SnapshotRecord>> ListSnapshots();
  Status DeleteSnapshot(const std::string& name);

  // --- maintenance ---
  // Stops started sandboxes idle for longer than their auto_stop_minutes.
  // Activity = exec and file calls, and processes other than the init
  // running inside (a sandbox with a live process is refreshed, not
  // stopped). Returns the ids stopped. Call it periodically.
  Result<std::vector<std::string>> EnforceIdlePolicies();
  Result<RecoveryReport> Recover();
  // Stops nothing; unmounts a loop pool if no sandbox is running (tests).
  Status UnmountPoolIfIdle();
  const Features& features() const { return features_; }
  const RuntimeOptions& options() const { return opts_; }
  std::string RootfsPath(const std::string& id) const;
  // The file API over a volume's host view (ids translated when the view is
  // a running overlay sandbox's own instance).
  Result<RootFs> OpenRootFs(const std::string& volume_path) const;
  std::string LoopDevice() const { return pool_->LoopDevice(); }

 private:
  // Serialises mutating operations within the process (mutex) and across
  // processes (flock on <data>/lock).
  class Lock final {
   public:
    explicit Lock(SandboxRuntime* rt);
    ~Lock();
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

   private:
    SandboxRuntime* rt_;
    std::lock_guard<std::mutex> guard_;
  };
  explicit SandboxRuntime(RuntimeOptions opts);
  Status Init();
  int64_t Now() const { return clock_->NowMicros(); }

  Result<SandboxRecord> LoadLocked(const std::string& id_or_name);
  Status SaveLocked(SandboxRecord& rec);
  Status SetStateLocked(SandboxRecord& rec, SandboxState s);
  Status RecoverRecordLocked(SandboxRecord& rec, RecoveryReport* report);
  Status StartLocked(SandboxRecord& rec);
  Status StopLocked(SandboxRecord& rec, bool force);
  Status DestroyLocked(SandboxRecord& rec);
  Result<int> AllocateSlotLocked();
  Result<SnapshotRecord> ResolveSnapshotLocked(const std::string& name, const BuildLog& log);
  Result<SnapshotRecord> BuildLocked(const std::string& name, const std::string& recipe_text,
                                     const std::string& context_dir, const BuildLog& log);
  Result<std::string> EnsureBuiltinLayer(const BuildLog& log);
  // The layer of a `FROM debian:<suite> [mirror=] [include=]` base, made once
  // with debootstrap and cached by (suite, variant, arch, mirror, includes).
  Result<std::string> EnsureDebianLayer(const std::string& from, const BuildLog& log);
  Status RunBuildStep(const std::string& rootfs, const SnapshotRecord& cfg, const std::string& cmd,
                      const BuildLog& log);
  std::vector<std::string> ExecEnv(const SnapshotRecord* snap, const SandboxRecord& rec,
                                   const std::vector<std::string>& extra) const;
  // Overlay pools: deletes the layers in `layers` that no snapshot lists and
  // no volume is stacked on (a sandbox outliving its snapshot keeps them).
  void CollectLayersLocked(const std::vector<std::string>& layers);
  Status PrepareVolumesLocked(const SandboxRecord& rec, std::vector<BindSpec>* binds);
  // isolated network: rules first (so the veth never exists unfiltered),
  // then the veth into the init's netns. `pid`/`start` identify the init.
  Status SetupNetworkLocked(SandboxRecord& rec, pid_t pid, uint64_t start);
  // Removes the sandbox's veth and its chain/set. Idempotent.
  Status TeardownNetworkLocked(SandboxRecord& rec);
  // Brings the runtime's nft table to: every isolated sandbox whose init is
  // alive, plus `add`, minus `drop` (either may be null). With one change
  // and sandboxes left, only that sandbox's chain/set/map entry is touched;
  // otherwise (recovery, first or last sandbox, or a failed incremental
  // change) the whole table is replaced from the records.
  Status SyncFirewallLocked(const SandboxRecord* add, const SandboxRecord* drop);
  Result<SandboxFirewall> FirewallFor(const SandboxRecord& rec) const;

  RuntimeOptions opts_;
  Clock* clock_;
  std::unique_ptr<StoragePool> pool_;
  std::unique_ptr<CgroupManager> cgroups_;
  SeccompProgram seccomp_;
  CapSet caps_;
  Features features_;
  Ipv4Cidr net_pool_;
  std::string net_if_prefix_, fw_table_;
  JsonDir sandboxes_, snapshots_, builds_;
  std::mutex mu_;
  int lock_fd_ = -1;
};

}  // namespace warren::sandbox
