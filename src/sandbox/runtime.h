// SandboxRuntime: Warren's sandbox runtime as an in-process C++ library,
// the real implementation of the Sandboxes port (sandboxes.h). The
// orchestrator, the sandbox REST API and the `warren sandbox` / `warren
// snapshot` commands call it; it owns the data dir:
//
//   <data>/pool.img, <data>/pool/          storage pool (see storage.h)
//     pool/layers/<hash>                   read-only image layers
//     pool/sandboxes/<id>                  a sandbox's writable rootfs
//     pool/tmp/                            build scratch
//     pool/volumes/<name>/                 named volumes (btrfs loop pool; VolumeDir)
//   <data>/sandboxes/<id>.json             sandbox state (state.h)
//   <data>/records.seq                     write counter of the record caches (state.h RecordCache)
//   <data>/snapshots/<name>.json           snapshot (image) metadata
//   <data>/builds/<id>.json                in-flight build steps (recovery)
//   <data>/volumes/<name>/                 named volumes (other pools; older ones)
//   <data>/archives/<id>.tar.zst           an archived sandbox's rootfs (archive.h)
//   <data>/lock                            flock: the world lock (below)
//   <data>/locks/<name>                    flock files of the named locks (below)
//   <data>/config.json                     settings fixed at first open (cgroup prefix)
//
// Locking. Several processes may open the same data dir (the service, the
// CLI, a session host), and many threads call one runtime. Each lock below
// is an in-process mutex plus an flock, so it holds both within the process
// and across processes (locks.h). Lock order (a thread never takes an
// earlier lock while holding a later one):
//
//   1. world: <data>/lock, shared by every public operation, exclusive for
//      Recover() (and Open's config read, UnmountPoolIfIdle), which judge
//      every record and orphan at once.
//   2. one sandbox: locks/<id>. Held by every operation that changes the
//      sandbox (create, start, stop, pause, resume, fork, archive, restore,
//      delete, labels, files, exec/session/PTY setup) for its whole length,
//      so a slow archive blocks only its own sandbox. At most one at a time,
//      except Fork: the parent, then each new child. Exec holds it only to
//      check the state and record activity; the command runs without it.
//      Reads (Get, List, Tree, session lookups) take no sandbox lock: they
//      read the record file (rename-atomic) and report an in-flight
//      transition as it is; a transitional state whose lock is free was left
//      by a dead process and is recovered on the spot.
//      The idle sweep tries each sandbox's lock in turn, never waits for one
//      (a busy sandbox is not idle) and never holds two.
//   3. snapshot build per name: locks/snapshot-<name> (a build or delete of
//      that snapshot); then the base-image makers locks/base-builtin,
//      locks/base-debian.
//   4. leaf locks, each held briefly and never with another leaf:
//      locks/registry (name uniqueness and id-slot allocation, up to the
//      record being saved), locks/firewall (the runtime's nft table),
//      locks/layers (layer dirs and snapshot records: placing or deleting
//      a layer, copying one into a new sandbox), locks/volume-<name> (making
//      or deleting a named volume).
//   5. sessions_mu_ (in-process), only to copy session pointers.
//
// Open() recovers from a previous crash: live sandboxes are re-adopted,
// half-made ones cleaned (mounts, cgroups, subvolumes, processes).
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
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "sandbox/caps.h"
#include "sandbox/cgroups.h"
#include "sandbox/egress_proxy.h"
#include "sandbox/files.h"
#include "sandbox/locks.h"
#include "sandbox/netfilter.h"
#include "sandbox/network.h"
#include "sandbox/process.h"
#include "sandbox/pty.h"
#include "sandbox/seccomp.h"
#include "sandbox/shell_session.h"
#include "sandbox/state.h"
#include "sandbox/sandboxes.h"
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
  // Where the data dir claims its cgroup prefix host-wide (host_claim.h): a
  // second data dir with the same prefix is refused at open instead of
  // removing the first one's cgroups and veths as orphans. "" = no claim.
  std::string host_registry_dir = "/run/warren/runtimes";
  // IPv4 pool for `isolated` sandboxes: slot N gets the N-th /30 (host end
  // .1, sandbox .2). Fixed by <data>/config.json once written. 10.213/16 is
  // rarely used by cloud VPCs (10.0-10.10), Docker (172.17+) or k8s (10.96,
  // 10.244) defaults; it holds 16384 /30s, one per id slot.
  std::string network_pool = "10.213.0.0/16";
  // Run the egress proxy of `limited` sandboxes in this process
  // (egress_proxy.h; docs/SANDBOX.md "limited"). Long-lived owners only
  // (`warren serve`, `warren orchestrator`): the proxy lives as long as the
  // runtime object. Its ports are written to <data>/config.json so that
  // other processes opening the data dir (the CLI) render the same
  // redirects; without a running proxy a limited sandbox reaches nothing.
  bool egress_proxy = false;
  EgressProxyOptions egress;
  std::chrono::milliseconds stop_grace{3000};
  std::chrono::milliseconds freeze_timeout{10000};
  std::chrono::milliseconds transition_timeout{60000};
  std::chrono::milliseconds criu_check_timeout{10000};
  bool recover_on_open = true;
  Clock* clock = nullptr;  // nullptr = Clock::Real()
  // Tests only: called at named points while the sandbox's lock is held
  // ("archive": before its rootfs is written). May block.
  std::function<void(const std::string& point, const std::string& id)> test_hook;
};

// The network of one build's RUN steps (docs/SANDBOX.md, "Build network").
// Default: none. With hosts, each RUN step gets the `limited` network: its
// TCP goes through the egress proxy, which lets only these names out and
// resolves them on the host (the host's resolver and /etc/hosts), and its
// DNS is answered by the proxy. Nothing of this lands in the snapshot: the
// resolv.conf and CA file are bind-mounted for the step only, the env
// below is the step's only.
struct BuildOptions {
  // HostAllowlist entries (exact names, `*.suffix`, IPv4 literals).
  std::vector<std::string> allow_hosts;
  // Also allow the host of the mirror of a `FROM debian:` base, so that
  // `apt-get` in a RUN step reaches the mirror the base came from.
  bool allow_base_mirror = false;
  // A host PEM file of CA certificates (e.g. the host's
  // /etc/ssl/certs/ca-certificates.crt, for hosts behind a TLS-inspecting
  // proxy) bound read-only at kBuildCaPath during networked RUN steps, with
  // NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, PIP_CERT, REQUESTS_CA_BUNDLE,
  // CARGO_HTTP_CAINFO and GIT_SSL_CAINFO pointing at it. "" = none.
  std::string ca_bundle;
  bool networked() const { return !allow_hosts.empty() || allow_base_mirror; }
};
inline constexpr const char* kBuildCaPath = "/.warren-build-ca.pem";

// A named volume (docs/SANDBOX.md, "Volumes"). A volume outlives the
// sandboxes that mount it; it is made by CreateVolume or on first mount.
struct VolumeInfo {
  std::string name;
  // Quota limit on the bytes the volume references (btrfs qgroup max_rfer on
  // its subvolume); 0 = no limit of its own (it shares the pool's space).
  int64_t size_bytes = 0;
  int64_t used_bytes = -1;  // referenced bytes; -1 = not accounted (no quota accounting yet)
  // A btrfs subvolume of its own (a size can be set); false for plain
  // directories (overlay/copy pools, volumes made by older runtimes).
  bool subvolume = false;
  std::vector<std::string> sandboxes;  // ids of sandboxes (not deleted) that mount it
  Json ToJson() const;
};

// Smallest volume size accepted (a btrfs qgroup below a few MiB leaves no
// room for the subvolume's own metadata).
inline constexpr int64_t kMinVolumeBytes = 1LL << 20;

struct RecoveryReport {
  std::vector<std::string> adopted;   // live sandboxes kept
  std::vector<std::string> stopped;   // marked stopped (init gone)
  std::vector<std::string> removed;   // half-made, cleaned
  int orphan_cgroups = 0;
  int orphan_volumes = 0;
  int orphan_links = 0;  // veths of this runtime with no running sandbox
  int orphan_archives = 0;  // archive files (or temp files) no record owns
  int stale_qgroups = 0;    // quota groups of subvolumes that are gone
  Json ToJson() const;
};

class SandboxRuntime final : public Sandboxes {
 public:
  static Result<std::unique_ptr<SandboxRuntime>> Open(RuntimeOptions opts);
  ~SandboxRuntime();
  SandboxRuntime(const SandboxRuntime&) = delete;
  SandboxRuntime& operator=(const SandboxRuntime&) = delete;

  // --- sandboxes ---
  Result<SandboxRecord> Create(const CreateOptions& opts) override;
  Result<SandboxRecord> Get(const std::string& id_or_name) override;
  Result<std::vector<SandboxRecord>> List() override;
  // The sandboxes List() returns that carry label `key`=`value`, filtered
  // before any record is copied (the orchestrator's lookup of a session's
  // sandbox among thousands).
  Result<std::vector<SandboxRecord>> ListWithLabel(const std::string& key, const std::string& value);
  // The sandboxes List() returns in `state` (the janitor's pass over the
  // started ones), from the cache's per-state index, by (created_at, id).
  Result<std::vector<SandboxRecord>> ListInState(SandboxState state);
  // Keyset listing (the REST API's and the CLI's pages): up to `limit`
  // sandboxes List() would return that `pred` accepts (null: all), ordered
  // by (created_at, id), strictly after `after` (null: from the first).
  // Copies only the records it returns (RecordCache::Page), so paging
  // through n sandboxes costs O(n), not O(n^2). Passing the last record's
  // key as the next `after` returns every sandbox present throughout
  // exactly once, in order, while others are created or deleted between
  // pages. `pred` must not call into the runtime. With `state`, only
  // sandboxes whose record is in that state (as pred checking r.state), from
  // the cache's per-state index: a page of a rare state does not visit the
  // sandboxes in the others.
  Result<std::vector<SandboxRecord>> ListPage(const std::optional<RecordKey>& after, size_t limit,
                                              const std::function<bool(const SandboxRecord&)>& pred = nullptr,
                                              std::optional<SandboxState> state = std::nullopt);
  Result<SandboxRecord> Start(const std::string& id) override;
  // freeze -> SIGTERM all -> thaw -> grace -> SIGKILL; files kept.
  Result<SandboxRecord> Stop(const std::string& id, bool force = false) override;
  Result<SandboxRecord> Pause(const std::string& id) override;
  Result<SandboxRecord> Resume(const std::string& id) override;
  // `count` children of a started, paused or stopped sandbox; the rootfs is
  // snapshotted while the parent is frozen. Children start when the parent
  // was started. Memory is not copied (no CRIU here). `disk_bytes` is the
  // children's disk limit: -1 = the parent's (inherited), 0 = none, > 0 =
  // that many bytes (FailedPrecondition on a pool without quotas).
  Result<std::vector<SandboxRecord>> Fork(const std::string& id, int count, int64_t disk_bytes = -1) override;
  Result<ForkTree> Tree(const std::string& id) override;
  Status Delete(const std::string& id) override;  // from any state (archived: removes the archive); idempotent
  // Stops the sandbox if started or paused (processes and memory are lost,
  // like Stop), writes its rootfs to <data>/archives/<id>.tar.zst (temp
  // file, fsync, rename), then deletes its subvolume -> archived. Files,
  // exec and fork on an archived sandbox fail with FailedPrecondition;
  // Start restores first. Idempotent on an archived sandbox.
  Result<SandboxRecord> Archive(const std::string& id) override;
  // Extracts the archive into a new subvolume (disk limit re-applied first)
  // -> stopped, then removes the archive file. A no-op on a sandbox that is
  // not archived but has its rootfs (stopped, started, paused).
  Result<SandboxRecord> Restore(const std::string& id) override;
  // Disk quota state of a sandbox's subvolume (NotFound when the pool has no
  // quota accounting or the sandbox is archived).
  Result<QuotaInfo> DiskQuota(const std::string& id) override;
  Result<SandboxRecord> SetLabels(const std::string& id, std::map<std::string, std::string> labels) override;
  // Replaces the sandbox's network policy (validated like Create's) and
  // persists it. On a started or paused sandbox it applies at once, without
  // a restart: the firewall entries are replaced in one transaction, the
  // veth is added (none -> isolated/limited) or removed (-> none), the
  // egress proxy sees the new allowlist at the next connection and at the
  // next request on an open plain-HTTP connection, and /etc/resolv.conf
  // is rewritten when the policy names nameservers (dns, or the proxy's
  // for limited). Connections already open (TLS through the proxy, NATed
  // flows) keep going until they close. In any other state it applies at
  // the next start. NotFound for an unknown sandbox; InvalidArgument or
  // FailedPrecondition as Create.
  Result<SandboxRecord> SetNetwork(const std::string& id, const NetworkPolicy& policy) override;
  // Replaces the read-only host binds of a stopped sandbox (validated like
  // Create's; applied at the next start). FailedPrecondition unless stopped.
  // The orchestrator uses it to give a prepared sandbox the runner.
  Result<SandboxRecord> SetHostBinds(const std::string& id, std::vector<HostBind> binds);
  Result<ExecResult> Exec(const std::string& id, const ExecRequest& req) override;
  // --- shell sessions (shell_session.h) ---
  // Sessions are owned by this object and end with it (or with the process
  // hosting it). A sandbox stop or delete ends its sessions; a pause
  // freezes them (SessionExec then fails with FailedPrecondition).
  //
  // Starts a persistent shell (bash if the image has /bin/bash, else
  // /bin/sh) in its own session, process group and cgroup
  // (<id>/session-<session_id>). Conflict if a live session has that id;
  // a session whose shell died is replaced.
  Result<SessionInfo> CreateSession(const std::string& id, const std::string& session_id,
                                    const SessionOptions& opts = {}) override;
  // Runs `command` in the session's shell (state persists: cd, exports,
  // functions). Counts as sandbox activity.
  Result<CommandInfo> SessionExec(const std::string& id, const std::string& session_id, const std::string& command,
                                  const SessionExecOptions& opts = {}) override;
  Result<CommandInfo> GetCommand(const std::string& id, const std::string& session_id,
                                 const std::string& command_id) override;
  // The command's output so far; with `follow`, streams it and then live
  // output until the command ends (or `timeout`, 0 = none).
  Result<CommandInfo> CommandLogs(const std::string& id, const std::string& session_id,
                                  const std::string& command_id, const LogSink& follow = nullptr,
                                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) override;
  Status SendInput(const std::string& id, const std::string& session_id, const std::string& command_id,
                   std::string_view bytes) override;
  // Kills the session's shell and every process it started (its whole
  // cgroup, so double-forked daemons too) and forgets it. NotFound if absent.
  Status DeleteSession(const std::string& id, const std::string& session_id) override;
  Result<SessionInfo> GetSession(const std::string& id, const std::string& session_id) override;
  Result<std::vector<SessionInfo>> ListSessions(const std::string& id) override;

  // --- PTY (pty.h) ---
  // Runs opts.argv on a new terminal from the sandbox's own devpts, as its
  // controlling tty. The caller owns the returned session (master fd).
  Result<std::unique_ptr<PtySession>> OpenPty(const std::string& id, const PtyOptions& opts) override;

  // The sandbox's root filesystem for the file API (any state but deleted).
  Result<RootFs> Files(const std::string& id) override;
  Result<CgroupStats> Stats(const std::string& id) override;

  // --- snapshots (images) ---
  Result<SnapshotRecord> BuildSnapshot(const std::string& name, const std::string& recipe_text,
                                       const std::string& context_dir, const BuildLog& log = nullptr) override;
  // The same with a network for the RUN steps (BuildOptions). A networked
  // build needs BuildNetworkStatus() OK, else FailedPrecondition. The
  // network is set up per RUN step and torn down after it (veth, nft chain,
  // the build's record), whether the step succeeds or not.
  Result<SnapshotRecord> BuildSnapshot(const std::string& name, const std::string& recipe_text,
                                       const std::string& context_dir, const BuildOptions& build,
                                       const BuildLog& log = nullptr);
  // OK when networked builds can run here: the isolated network works and
  // an egress proxy serves this data dir (this process's, or the one a
  // long-lived owner recorded); else FailedPrecondition with the reason.
  Status BuildNetworkStatus() const;
  Result<SnapshotRecord> GetSnapshot(const std::string& name) override;
  Result<std::vector<SnapshotRecord>> ListSnapshots() override;
  Status DeleteSnapshot(const std::string& name) override;

  // --- volumes (runtime_volumes.cc) ---
  // Makes volume `name` (ValidName) with a size limit of `size_bytes`
  // (0 = none, else >= kMinVolumeBytes). Writes past the size fail with
  // EDQUOT inside the sandbox. Conflict if it exists; FailedPrecondition
  // for a size on a pool without quotas (overlay, copy).
  Result<VolumeInfo> CreateVolume(const std::string& name, int64_t size_bytes = 0);
  Result<VolumeInfo> GetVolume(const std::string& name);
  Result<std::vector<VolumeInfo>> ListVolumes();
  // Deletes a volume and everything in it. Conflict while a sandbox (in any
  // state but deleted) lists it; NotFound if absent.
  Status DeleteVolume(const std::string& name);

  // --- maintenance ---
  // Stops started sandboxes idle for longer than their auto_stop_minutes.
  // Activity = exec and file calls, and processes other than the init
  // running inside (a sandbox with a live process is refreshed, not
  // stopped). Then, counted from when a sandbox stopped (or its last file
  // call while stopped, whichever is later): deletes stopped or archived
  // sandboxes past auto_delete_minutes (0 = at the first sweep after the
  // stop, kNeverDelete = never), else archives stopped ones past
  // auto_archive_minutes (0 = never). Each record is re-read under the lock
  // before acting. Call it periodically.
  Result<IdleReport> EnforceIdlePolicies() override;
  Result<RecoveryReport> Recover();
  // Stops nothing; unmounts a loop pool if no sandbox is running (tests).
  Status UnmountPoolIfIdle();
  const Features& features() const override { return features_; }
  const RuntimeOptions& options() const { return opts_; }
  // The egress proxy this runtime runs (nullptr when egress_proxy is off).
  EgressProxy* egress_proxy() const { return egress_.get(); }
  std::string RootfsPath(const std::string& id) const;
  // The file API over a volume's host view (ids translated when the view is
  // a running overlay sandbox's own instance).
  Result<RootFs> OpenRootFs(const std::string& volume_path) const;
  std::string LoopDevice() const { return pool_->LoopDevice(); }
  // The host directory of volume `name`: inside the pool when the pool is a
  // filesystem of its own (a btrfs loop pool), so a sandbox's mountinfo
  // shows the volume's root as /volumes/<name> on the pool device instead of
  // a host path; a volume made before that (under <data dir>/volumes) stays
  // where it is. See docs/SECURITY.md, "What a sandbox can still see".
  std::string VolumeDir(const std::string& name) const;

 private:
  // Names of the leaf locks (see the lock order above).
  static constexpr const char* kRegistryLock = "registry";
  static constexpr const char* kFirewallLock = "firewall";
  static constexpr const char* kLayersLock = "layers";
  // The world lock (shared) and one sandbox's lock, for one operation.
  struct SandboxGuard {
    std::unique_ptr<WorldLock> world;
    std::unique_ptr<NamedLock> sandbox;
  };
  explicit SandboxRuntime(RuntimeOptions opts);
  Status Init();
  // Starts the egress proxy (opts_.egress_proxy) or reads the ports of the
  // one that serves this data dir.
  Status InitEgress();
  int64_t Now() const { return clock_->NowMicros(); }

  // The id of a sandbox given by id or name (no lock; names are immutable).
  Result<std::string> ResolveId(const std::string& id_or_name);
  // List() restricted to the records `pred` accepts (null: all).
  Result<std::vector<SandboxRecord>> ListWhere(const std::function<bool(const SandboxRecord&)>& pred);
  // The live record of a sandbox by id or name, as stored (NotFound for an
  // unknown or deleted one); no recovery, no lock.
  Result<SandboxRecord> FindRecord(const std::string& id_or_name);
  // The record without its lock (world lock held): an in-flight transition
  // is reported as is; one left by a dead process is recovered first.
  Result<SandboxRecord> ReadRecord(const std::string& id_or_name);
  // Takes the world lock (if `g` has none) and the sandbox's lock into `g`,
  // then loads the record.
  Result<SandboxRecord> LockSandbox(const std::string& id_or_name, SandboxGuard* g);
  // "Locked" methods below: the caller holds the sandbox's lock (or the
  // world lock exclusively); they take leaf locks themselves.
  Result<SandboxRecord> LoadLocked(const std::string& id_or_name);
  Status SaveLocked(SandboxRecord& rec);
  Status SetStateLocked(SandboxRecord& rec, SandboxState s);
  Status RecoverRecordLocked(SandboxRecord& rec, RecoveryReport* report);
  Status StartLocked(SandboxRecord& rec);
  Status StopLocked(SandboxRecord& rec, bool force);
  Status DestroyLocked(SandboxRecord& rec);
  Status ArchiveLocked(SandboxRecord& rec);
  Status RestoreLocked(SandboxRecord& rec);
  std::string ArchivePath(const std::string& id) const;
  Result<int> AllocateSlotLocked();
  Result<SnapshotRecord> ResolveSnapshotLocked(const std::string& name, const BuildLog& log);
  Result<SnapshotRecord> BuildLocked(const std::string& name, const std::string& recipe_text,
                                     const std::string& context_dir, const BuildOptions& build, const BuildLog& log);
  Result<std::string> EnsureBuiltinLayer(const BuildLog& log);
  // The layer of a `FROM debian:<suite> [mirror=] [include=]` base, made once
  // with debootstrap and cached by (suite, variant, arch, mirror, includes).
  // *mirror (optional) receives the mirror URL the base is (or was) made from.
  Result<std::string> EnsureDebianLayer(const std::string& from, const BuildLog& log, std::string* mirror = nullptr);
  // `net`: the step's network (null or no hosts = none); its allow_hosts
  // are final (the base mirror already added).
  Status RunBuildStep(const std::string& rootfs, const SnapshotRecord& cfg, const std::string& cmd,
                      const BuildOptions* net, const BuildLog& log);
  // Networked RUN steps in flight (any process), as records for the
  // firewall and the egress proxy: id "build-<key>", network limited, the
  // build's slot and hosts, its init. Skips `skip_id`.
  std::vector<SandboxRecord> LiveBuildNetworks(const std::string& skip_id) const;
  std::vector<std::string> ExecEnv(const SnapshotRecord* snap, const SandboxRecord& rec,
                                   const std::vector<std::string>& extra) const;
  // Overlay pools: deletes the layers in `layers` that no snapshot lists and
  // no volume is stacked on (a sandbox outliving its snapshot keeps them).
  void CollectLayersLocked(const std::vector<std::string>& layers);
  Status PrepareVolumesLocked(const SandboxRecord& rec, std::vector<BindSpec>* binds);
  // Makes volume `name` if it does not exist (a btrfs subvolume on btrfs
  // pools, else a 0755 directory); *created says whether it did. Takes the
  // volume's leaf lock (locks/volume-<name>).
  Status EnsureVolume(const std::string& name, bool* created);
  Result<VolumeInfo> VolumeInfoFor(const std::string& name, const std::vector<SandboxRecord>& records);
  // isolated network: rules first (so the veth never exists unfiltered),
  // then the veth into the init's netns. `pid`/`start` identify the init.
  // `timing` (optional) gets the milliseconds of its steps.
  Status SetupNetworkLocked(SandboxRecord& rec, pid_t pid, uint64_t start, Json* timing = nullptr);
  // Removes the sandbox's veth and its chain/set. Idempotent.
  Status TeardownNetworkLocked(SandboxRecord& rec);
  // Brings the runtime's nft table to: every isolated sandbox whose init is
  // alive, plus `add`, minus `drop` (either may be null). With one change
  // and sandboxes left, only that sandbox's chain/set/map entry is touched;
  // otherwise (recovery, first or last sandbox, or a failed incremental
  // change) the whole table is replaced from the records.
  // `full`: replace the whole table even for one change (a policy change
  // that removes a limited sandbox's redirect entries).
  Status SyncFirewallLocked(const SandboxRecord* add, const SandboxRecord* drop, bool full = false);
  // Writes /etc/resolv.conf of `rec` when its policy names nameservers
  // (dns, or the proxy's gateway for limited); OK and no change otherwise.
  Status WriteResolvConf(const SandboxRecord& rec);
  Result<SandboxFirewall> FirewallFor(const SandboxRecord& rec) const;
  // The egress proxy's lookup: the policy of the running limited sandbox
  // whose address is `addr` (cached by slot, checked against its init).
  std::optional<EgressPolicy> EgressPolicyFor(uint32_t addr);
  // Checks that `id` is started and alive, records activity, and fills the
  // process identity (env, cwd, uid/gid) for a command run as `user`.
  Status PrepareProcessLocked(const std::string& id, const std::string& user, const std::string& cwd,
                              const std::vector<std::string>& env, SandboxRecord* rec, SpawnSpec* spec);
  Result<std::shared_ptr<ShellSession>> FindSession(const std::string& id, const std::string& session_id);
  // Ends every session of sandbox `id` (after its processes were killed).
  void EndSessions(const std::string& id, const std::string& reason);
  std::string ShellFor(const std::string& id) const;

  RuntimeOptions opts_;
  Clock* clock_;
  std::unique_ptr<StoragePool> pool_;
  std::unique_ptr<CgroupManager> cgroups_;
  SeccompProgram seccomp_;
  CapSet caps_;
  Features features_;
  Ipv4Cidr net_pool_;
  std::string net_if_prefix_, fw_table_;
  uint16_t egress_tcp_port_ = 0, egress_dns_port_ = 0;  // the proxy's (ours or the one recorded in config.json)
  struct EgressCacheEntry {
    pid_t init_pid = -1;
    uint64_t init_start_time = 0;
    EgressPolicy policy;
    // The record's policy fields the entry was made from: a hit re-reads
    // the record (a stat unless it changed) and drops the entry when they
    // differ, so SetNetwork from any process applies at the next lookup.
    std::vector<std::string> allow_hosts, allow_cidrs;
  };
  std::mutex egress_mu_;
  std::map<int, EgressCacheEntry> egress_cache_;  // by slot
  // Declared last: destroyed first, so its lookups never see a dying runtime.
  std::unique_ptr<EgressProxy> egress_;
  JsonDir sandboxes_, snapshots_, builds_;
  // Parsed sandbox records, re-read only when their file changed (state.h).
  RecordCache records_{&sandboxes_, opts_.data_dir + "/records.seq"};
  std::unique_ptr<LockSet> locks_;
  // Shell sessions by "<sandbox id>/<session id>". Lock order: every other
  // lock before sessions_mu_; never call into a ShellSession while holding
  // sessions_mu_ except to copy pointers.
  std::mutex sessions_mu_;
  std::map<std::string, std::shared_ptr<ShellSession>> sessions_;
};

}  // namespace warren::sandbox
