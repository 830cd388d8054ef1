// SandboxHost: the orchestrator's port onto the sandbox runtime. Its methods
// carry the signatures of sandbox::SandboxRuntime's public methods (so the
// production adapter is a forwarder, and the runtime's `Sandboxes`
// interface can replace it one for one), plus `Processes`, the host-side
// view of what runs inside a sandbox, which the runtime does not offer.
//
// RuntimeSandboxHost forwards to a borrowed SandboxRuntime. Tests use
// FakeSandboxHost (fake_sandbox_host.h).
// Thread-safety: implementations are thread-safe.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "sandbox/runtime.h"

namespace warren::orchestrator {

// One process inside a sandbox, seen from the host.
struct SandboxProcess {
  pid_t host_pid = -1;
  pid_t ns_pid = -1;  // pid inside the sandbox (1 = its init)
  uint64_t start_time = 0;
  std::vector<std::string> argv;
};

class SandboxHost {
 public:
  virtual ~SandboxHost() = default;
  virtual Result<sandbox::SandboxRecord> Create(const sandbox::CreateOptions& opts) = 0;
  virtual Result<sandbox::SandboxRecord> Get(const std::string& id_or_name) = 0;
  virtual Result<std::vector<sandbox::SandboxRecord>> List() = 0;
  // The sandboxes of List() that carry label `key`=`value`. The default
  // filters List(); the runtime adapter filters before copying any record,
  // so finding one session's sandbox among thousands stays cheap.
  virtual Result<std::vector<sandbox::SandboxRecord>> ListWithLabel(const std::string& key, const std::string& value);
  // The sandboxes of List() in `state` (default: filters List()).
  virtual Result<std::vector<sandbox::SandboxRecord>> ListInState(sandbox::SandboxState state);
  virtual Result<sandbox::SandboxRecord> Start(const std::string& id) = 0;
  virtual Result<sandbox::SandboxRecord> Stop(const std::string& id, bool force) = 0;
  virtual Result<sandbox::SandboxRecord> Archive(const std::string& id) = 0;
  virtual Result<sandbox::SandboxRecord> Restore(const std::string& id) = 0;
  virtual Status Delete(const std::string& id) = 0;
  virtual Result<sandbox::SandboxRecord> SetLabels(const std::string& id,
                                                   std::map<std::string, std::string> labels) = 0;
  // Replaces a sandbox's network policy; a running sandbox gets it at once
  // (SandboxRuntime::SetNetwork).
  virtual Result<sandbox::SandboxRecord> SetNetwork(const std::string& id, const sandbox::NetworkPolicy& policy) = 0;
  // Replaces the read-only host binds of a stopped sandbox (applied at its
  // next start): a prepared sandbox gets the runner and the socket dir.
  virtual Result<sandbox::SandboxRecord> SetHostBinds(const std::string& id, std::vector<sandbox::HostBind> binds) = 0;
  virtual Result<sandbox::ExecResult> Exec(const std::string& id, const sandbox::ExecRequest& req) = 0;
  // Every process of a started sandbox, its init included. Empty when the
  // sandbox is not started.
  virtual Result<std::vector<SandboxProcess>> Processes(const std::string& id) = 0;
  // The processes of each of `started` (records of started sandboxes), by
  // sandbox id, as one snapshot: the janitor's view of a pass. A sandbox
  // that is no longer running maps to nothing. The default asks Processes()
  // for each; the runtime's host walks /proc once for all of them.
  virtual Result<std::map<std::string, std::vector<SandboxProcess>>> ProcessesOfMany(
      const std::vector<sandbox::SandboxRecord>& started);
  // A small file of the sandbox's rootfs (resolved inside the root, no
  // symlinks followed). NotFound when absent.
  virtual Result<std::string> ReadFile(const std::string& id, const std::string& path) = 0;
};

// Forwards to a runtime owned elsewhere (must outlive this).
class RuntimeSandboxHost final : public SandboxHost {
 public:
  explicit RuntimeSandboxHost(sandbox::SandboxRuntime* rt) : rt_(rt) {}
  RuntimeSandboxHost(const RuntimeSandboxHost&) = delete;
  RuntimeSandboxHost& operator=(const RuntimeSandboxHost&) = delete;

  Result<sandbox::SandboxRecord> Create(const sandbox::CreateOptions& opts) override { return rt_->Create(opts); }
  Result<sandbox::SandboxRecord> Get(const std::string& id) override { return rt_->Get(id); }
  Result<std::vector<sandbox::SandboxRecord>> List() override { return rt_->List(); }
  Result<std::vector<sandbox::SandboxRecord>> ListWithLabel(const std::string& key, const std::string& value) override {
    return rt_->ListWithLabel(key, value);
  }
  Result<std::vector<sandbox::SandboxRecord>> ListInState(sandbox::SandboxState state) override {
    return rt_->ListInState(state);
  }
  Result<sandbox::SandboxRecord> Start(const std::string& id) override { return rt_->Start(id); }
  Result<sandbox::SandboxRecord> Stop(const std::string& id, bool force) override { return rt_->Stop(id, force); }
  Result<sandbox::SandboxRecord> Archive(const std::string& id) override { return rt_->Archive(id); }
  Result<sandbox::SandboxRecord> Restore(const std::string& id) override { return rt_->Restore(id); }
  Status Delete(const std::string& id) override { return rt_->Delete(id); }
  Result<sandbox::SandboxRecord> SetLabels(const std::string& id, std::map<std::string, std::string> labels) override {
    return rt_->SetLabels(id, std::move(labels));
  }
  Result<sandbox::SandboxRecord> SetNetwork(const std::string& id, const sandbox::NetworkPolicy& policy) override {
    return rt_->SetNetwork(id, policy);
  }
  Result<sandbox::SandboxRecord> SetHostBinds(const std::string& id, std::vector<sandbox::HostBind> binds) override {
    return rt_->SetHostBinds(id, std::move(binds));
  }
  Result<sandbox::ExecResult> Exec(const std::string& id, const sandbox::ExecRequest& req) override {
    return rt_->Exec(id, req);
  }
  Result<std::vector<SandboxProcess>> Processes(const std::string& id) override;
  Result<std::map<std::string, std::vector<SandboxProcess>>> ProcessesOfMany(
      const std::vector<sandbox::SandboxRecord>& started) override;
  Result<std::string> ReadFile(const std::string& id, const std::string& path) override;

 private:
  sandbox::SandboxRuntime* rt_;
};

// The processes whose pid namespace is that of `init_pid` (host /proc scan;
// no process is signalled). Used by RuntimeSandboxHost.
Result<std::vector<SandboxProcess>> ProcessesInPidNamespaceOf(pid_t init_pid, uint64_t init_start_time);

}  // namespace warren::orchestrator
