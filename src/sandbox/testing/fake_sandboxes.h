// FakeSandboxes: an in-memory Sandboxes (sandboxes.h) for unit tests of its
// callers (the orchestrator, API handlers). No root, no kernel facilities.
//
// What it models: sandbox records with the runtime's states and
// transitions (create/start/stop/pause/resume/fork/archive/restore/delete,
// tombstones for fork relatives), names and labels, snapshots
// (builtin:minimal exists; BuildSnapshot records a new one), activity and
// the idle policies on the injected Clock, shell sessions whose commands
// run through the exec handler, and a real host directory per sandbox for
// Files() (a temp dir, removed with the fake). Errors use the runtime's
// codes: NotFound, Conflict, FailedPrecondition, InvalidArgument.
//
// What it does not: processes, PTYs (OpenPty is Unimplemented), disk
// quotas (DiskQuota is NotFound, as on a pool without quotas).
//
// Test controls: SetExecHandler (what Exec and session commands return;
// it runs without the fake's lock, so it may block to hold an exec in
// flight), FailNext (failure injection per operation name), Calls (how
// often an operation was called), Crash (the init dies), AddSnapshot.
//
// Ownership: owns its records and temp dirs; borrows the Clock (must
// outlive it). Thread-safety: all methods are thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "sandbox/sandboxes.h"

namespace warren::sandbox {

class FakeSandboxes final : public Sandboxes {
 public:
  // Runs a command for Exec (req.argv) and SessionExec (argv {"sh", "-c",
  // command}). The default answers exit code 0 with no output.
  using ExecHandler = std::function<Result<ExecResult>(const SandboxRecord& sandbox, const ExecRequest& req)>;

  explicit FakeSandboxes(Clock* clock = nullptr);  // nullptr = Clock::Real()
  ~FakeSandboxes() override;
  FakeSandboxes(const FakeSandboxes&) = delete;
  FakeSandboxes& operator=(const FakeSandboxes&) = delete;

  // --- test controls ---
  void SetExecHandler(ExecHandler handler);
  // The next `times` calls of operation `op` (the method name: "Create",
  // "Start", "Exec", "Archive", ...) fail with `status` before changing
  // anything; times < 0: every call until ClearFailures().
  void FailNext(const std::string& op, Status status, int times = 1);
  void ClearFailures();
  // Calls of `op` so far, failed ones included.
  int Calls(const std::string& op) const;
  // The sandbox's init dies: a started or paused sandbox becomes stopped
  // (sessions end), as the runtime finds it on its next look.
  Status Crash(const std::string& id_or_name);
  void AddSnapshot(SnapshotRecord snapshot);
  void SetFeatures(Features features);

  // --- Sandboxes ---
  Result<SandboxRecord> Create(const CreateOptions& opts) override;
  Result<SandboxRecord> Get(const std::string& id_or_name) override;
  Result<std::vector<SandboxRecord>> List() override;
  Result<SandboxRecord> Start(const std::string& id) override;
  Result<SandboxRecord> Stop(const std::string& id, bool force = false) override;
  Result<SandboxRecord> Pause(const std::string& id) override;
  Result<SandboxRecord> Resume(const std::string& id) override;
  Result<std::vector<SandboxRecord>> Fork(const std::string& id, int count, int64_t disk_bytes = -1) override;
  Result<ForkTree> Tree(const std::string& id) override;
  Status Delete(const std::string& id) override;
  Result<SandboxRecord> Archive(const std::string& id) override;
  Result<SandboxRecord> Restore(const std::string& id) override;
  Result<QuotaInfo> DiskQuota(const std::string& id) override;
  Result<SandboxRecord> SetLabels(const std::string& id, std::map<std::string, std::string> labels) override;
  // Validates like Create (network name, allow_hosts only for limited,
  // HostAllowlist) and stores the policy; nothing is applied.
  Result<SandboxRecord> SetNetwork(const std::string& id, const NetworkPolicy& policy) override;
  Result<ExecResult> Exec(const std::string& id, const ExecRequest& req) override;
  Result<SessionInfo> CreateSession(const std::string& id, const std::string& session_id,
                                    const SessionOptions& opts = {}) override;
  Result<CommandInfo> SessionExec(const std::string& id, const std::string& session_id, const std::string& command,
                                  const SessionExecOptions& opts = {}) override;
  Result<CommandInfo> GetCommand(const std::string& id, const std::string& session_id,
                                 const std::string& command_id) override;
  Result<CommandInfo> CommandLogs(const std::string& id, const std::string& session_id,
                                  const std::string& command_id, const LogSink& follow = nullptr,
                                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) override;
  Status SendInput(const std::string& id, const std::string& session_id, const std::string& command_id,
                   std::string_view bytes) override;
  Status DeleteSession(const std::string& id, const std::string& session_id) override;
  Result<SessionInfo> GetSession(const std::string& id, const std::string& session_id) override;
  Result<std::vector<SessionInfo>> ListSessions(const std::string& id) override;
  Result<std::unique_ptr<PtySession>> OpenPty(const std::string& id, const PtyOptions& opts) override;
  Result<RootFs> Files(const std::string& id) override;
  Result<CgroupStats> Stats(const std::string& id) override;
  Result<SnapshotRecord> BuildSnapshot(const std::string& name, const std::string& recipe_text,
                                       const std::string& context_dir, const BuildLog& log = nullptr) override;
  Result<SnapshotRecord> GetSnapshot(const std::string& name) override;
  Result<std::vector<SnapshotRecord>> ListSnapshots() override;
  Status DeleteSnapshot(const std::string& name) override;
  Result<IdleReport> EnforceIdlePolicies() override;
  const Features& features() const override { return features_; }

 private:
  struct Session {
    SessionInfo info;
    std::map<std::string, CommandInfo> commands;
    int next_command = 1;
  };
  struct Failure {
    Status status;
    int times = 0;
  };
  // Counts the call and returns an injected failure, if any (mu_ held).
  Status Enter(const std::string& op);
  // The live record of `id_or_name` (mu_ held); nullptr if none.
  SandboxRecord* Find(const std::string& id_or_name);
  Result<SandboxRecord*> Load(const std::string& id_or_name);
  void SetState(SandboxRecord& rec, SandboxState s);
  void EndSessions(const std::string& id, const std::string& reason);
  Status StartLocked(SandboxRecord& rec);
  Status StopLocked(SandboxRecord& rec);
  Status DestroyLocked(SandboxRecord& rec);
  std::string RootDir(const std::string& id) const;
  Result<ExecResult> RunCommand(const SandboxRecord& rec, const ExecRequest& req);

  Clock* clock_;
  Features features_;
  std::string root_;  // temp dir holding a directory per sandbox
  mutable std::mutex mu_;
  ExecHandler exec_;
  std::map<std::string, SandboxRecord> sandboxes_;  // by id, tombstones included
  std::map<std::string, SnapshotRecord> snapshots_;
  std::map<std::string, Session> sessions_;  // "<sandbox id>/<session id>"
  std::map<std::string, Failure> failures_;
  std::map<std::string, int> calls_;
  int next_slot_ = 0;
};

}  // namespace warren::sandbox
