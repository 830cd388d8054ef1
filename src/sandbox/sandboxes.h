// Sandboxes: the port through which the rest of Warren (the orchestrator,
// the sandbox REST API) drives sandboxes (DESIGN.md: the `Sandboxes` port).
//
// SandboxRuntime (runtime.h) is the real implementation: namespaces,
// cgroups, btrfs, over a data dir. FakeSandboxes (testing/fake_sandboxes.h)
// keeps records in memory for unit tests of the callers.
//
// The operations and their signatures are exactly SandboxRuntime's public
// ones, so code written against SandboxRuntime compiles against Sandboxes by
// renaming the type. Semantics (states, errors) are documented on
// SandboxRuntime and docs/SANDBOX.md; every implementation follows them:
// NotFound for an unknown id or name, Conflict / FailedPrecondition for an
// operation the sandbox's state does not allow, InvalidArgument for bad
// input.
//
// Ownership: a Sandboxes owns its sandbox records and shell sessions; the
// caller owns what a call returns (records are copies, PtySession and
// RootFs are handed over). Sandboxes themselves may outlive the object
// (SandboxRuntime: they are found again by the next Open()).
// Thread-safety: every implementation is thread-safe; calls on different
// sandboxes proceed in parallel (one slow archive or exec does not block
// others), calls on one sandbox are serialised where they change it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "common/status.h"
#include "sandbox/cgroups.h"
#include "sandbox/files.h"
#include "sandbox/process.h"
#include "sandbox/pty.h"
#include "sandbox/shell_session.h"
#include "sandbox/state.h"
#include "sandbox/storage.h"

namespace warren::sandbox {

struct CreateOptions {
  std::string name;                        // optional, unique among live sandboxes
  std::string snapshot = "builtin:minimal";
  std::map<std::string, std::string> labels;
  std::vector<std::string> env;  // KEY=value
  Resources resources;           // 0 fields = the snapshot's defaults
  // "none": own netns with loopback only. "isolated" (and "limited",
  // below): a routed veth /30 to
  // the host with NAT egress; the host, private, link-local (metadata) and
  // other sandboxes' addresses are blocked (see network.h, netfilter.h).
  std::string network = "none";
  std::vector<std::string> allow_cidrs;  // isolated only; <= 10 IPv4 CIDRs let through the blocks
  bool block_all = false;                // isolated only; no egress but allow_cidrs
  std::vector<std::string> dns;          // isolated only; <= 3 nameservers for /etc/resolv.conf
  // "limited": like isolated, but TCP goes through the egress proxy, which
  // lets through only connections to these hosts (exact names, "*.suffix",
  // IPv4 literals; <= 256), and DNS is answered by the proxy. allow_cidrs
  // still bypass it. See egress_proxy.h.
  std::vector<std::string> allow_hosts;
  std::string user;              // default exec user
  std::string workdir;           // default exec cwd
  std::vector<VolumeMount> volumes;
  std::vector<HostBind> host_binds;  // read-only host files/dirs (state.h); at most 4
  int64_t auto_stop_minutes = 0;     // stop after this long idle; 0 = never
  int64_t auto_archive_minutes = 0;  // archive after this long stopped; 0 = never
  int64_t auto_delete_minutes = kNeverDelete;  // delete after this long stopped; 0 = at the first sweep
  bool start = true;
};

// The network fields of CreateOptions on their own: the policy that
// SetNetwork gives an existing sandbox (same rules, same validation).
struct NetworkPolicy {
  std::string network = "none";  // none | isolated | limited
  std::vector<std::string> allow_cidrs;
  bool block_all = false;
  std::vector<std::string> dns;
  std::vector<std::string> allow_hosts;  // limited only
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

struct PtyOptions {
  std::vector<std::string> argv;  // empty = the sandbox's shell (bash if present, else sh)
  std::vector<std::string> env;   // TERM defaults to xterm-256color
  std::string cwd;
  std::string user;
  uint16_t rows = 24, cols = 80;
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
  std::string criu_reason;  // why not (first stderr line of `criu check`), or "criu check passed"
  bool disk_quota = false;
  std::string disk_quota_reason;
  bool network_isolated = false;
  std::string network_reason;  // why not, when network_isolated is false
  Json ToJson() const;
};

// What one EnforceIdlePolicies() sweep did.
struct IdleReport {
  std::vector<std::string> stopped;
  std::vector<std::string> archived;
  std::vector<std::string> deleted;
  Json ToJson() const;
};

using BuildLog = std::function<void(std::string_view line)>;

class Sandboxes {
 public:
  virtual ~Sandboxes() = default;

  // --- sandboxes ---
  virtual Result<SandboxRecord> Create(const CreateOptions& opts) = 0;
  virtual Result<SandboxRecord> Get(const std::string& id_or_name) = 0;
  virtual Result<std::vector<SandboxRecord>> List() = 0;
  virtual Result<SandboxRecord> Start(const std::string& id) = 0;
  virtual Result<SandboxRecord> Stop(const std::string& id, bool force = false) = 0;
  virtual Result<SandboxRecord> Pause(const std::string& id) = 0;
  virtual Result<SandboxRecord> Resume(const std::string& id) = 0;
  virtual Result<std::vector<SandboxRecord>> Fork(const std::string& id, int count, int64_t disk_bytes = -1) = 0;
  virtual Result<ForkTree> Tree(const std::string& id) = 0;
  virtual Status Delete(const std::string& id) = 0;
  virtual Result<SandboxRecord> Archive(const std::string& id) = 0;
  virtual Result<SandboxRecord> Restore(const std::string& id) = 0;
  virtual Result<QuotaInfo> DiskQuota(const std::string& id) = 0;
  virtual Result<SandboxRecord> SetLabels(const std::string& id, std::map<std::string, std::string> labels) = 0;
  virtual Result<SandboxRecord> SetNetwork(const std::string& id, const NetworkPolicy& policy) = 0;
  virtual Result<ExecResult> Exec(const std::string& id, const ExecRequest& req) = 0;

  // --- shell sessions ---
  virtual Result<SessionInfo> CreateSession(const std::string& id, const std::string& session_id,
                                            const SessionOptions& opts = {}) = 0;
  virtual Result<CommandInfo> SessionExec(const std::string& id, const std::string& session_id,
                                          const std::string& command, const SessionExecOptions& opts = {}) = 0;
  virtual Result<CommandInfo> GetCommand(const std::string& id, const std::string& session_id,
                                         const std::string& command_id) = 0;
  virtual Result<CommandInfo> CommandLogs(const std::string& id, const std::string& session_id,
                                          const std::string& command_id, const LogSink& follow = nullptr,
                                          std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) = 0;
  virtual Status SendInput(const std::string& id, const std::string& session_id, const std::string& command_id,
                           std::string_view bytes) = 0;
  virtual Status DeleteSession(const std::string& id, const std::string& session_id) = 0;
  virtual Result<SessionInfo> GetSession(const std::string& id, const std::string& session_id) = 0;
  virtual Result<std::vector<SessionInfo>> ListSessions(const std::string& id) = 0;

  // --- PTY, files, stats ---
  virtual Result<std::unique_ptr<PtySession>> OpenPty(const std::string& id, const PtyOptions& opts) = 0;
  virtual Result<RootFs> Files(const std::string& id) = 0;
  virtual Result<CgroupStats> Stats(const std::string& id) = 0;

  // --- snapshots (images) ---
  virtual Result<SnapshotRecord> BuildSnapshot(const std::string& name, const std::string& recipe_text,
                                               const std::string& context_dir, const BuildLog& log = nullptr) = 0;
  virtual Result<SnapshotRecord> GetSnapshot(const std::string& name) = 0;
  virtual Result<std::vector<SnapshotRecord>> ListSnapshots() = 0;
  virtual Status DeleteSnapshot(const std::string& name) = 0;

  // --- maintenance ---
  virtual Result<IdleReport> EnforceIdlePolicies() = 0;
  virtual const Features& features() const = 0;
};

}  // namespace warren::sandbox
