// SandboxRuntime: persistent shell sessions and PTYs.
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

std::string SandboxRuntime::ShellFor(const std::string& id) const {
  auto fs = OpenRootFs(RootfsPath(id));
  if (fs.ok()) {
    auto st = fs->Stat("/bin/bash");
    if (st.ok()) return "/bin/bash";
  }
  return "/bin/sh";
}

Result<SessionInfo> SandboxRuntime::CreateSession(const std::string& id, const std::string& session_id,
                                                  const SessionOptions& opts) {
  if (!ValidName(session_id)) {
    return Status::InvalidArgument("session id must be 1-63 of [A-Za-z0-9_.-], starting alphanumeric");
  }
  if (opts.output_cap == 0) return Status::InvalidArgument("output_cap must be positive");
  SandboxGuard guard;
  WARREN_RETURN_IF_ERROR(LockSandbox(id, &guard).status());
  SandboxRecord rec;
  SpawnSpec spec;
  WARREN_RETURN_IF_ERROR(PrepareProcessLocked(id, opts.user, opts.cwd, opts.env, &rec, &spec));
  std::string key = rec.id + "/" + session_id;
  std::shared_ptr<ShellSession> dead;
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    auto it = sessions_.find(key);
    if (it != sessions_.end()) {
      if (it->second->Alive()) return Status::Conflict("session " + session_id + " already exists");
      dead = std::move(it->second);
      sessions_.erase(it);
    }
  }
  std::string cgroup = rec.id + "/session-" + session_id;
  if (dead) {
    (void)cgroups_->Destroy(dead->cgroup());
    dead->Close("replaced");
  }
  // A live session cgroup without a session here belongs to another process
  // hosting a runtime on this data dir (e.g. a CLI session host).
  if (!dead && cgroups_->Exists(cgroup)) {
    auto pids = cgroups_->Pids(cgroup);
    if (pids.ok() && !pids->empty()) {
      return Status::Conflict("session " + session_id + " already exists (in another process)");
    }
  }
  // Under the sandbox's lock: a concurrent stop cannot remove the sandbox's
  // cgroup between creating the session's and starting its shell.
  WARREN_RETURN_IF_ERROR(cgroups_->Create(cgroup, Resources{}));
  SessionInfo info;
  info.sandbox_id = rec.id;
  info.session_id = session_id;
  info.shell = ShellFor(rec.id);
  spec.argv = SessionShellArgv(info.shell);
  spec.command_channel = true;
  auto proc = SpawnInSandbox(rec.init_pid, cgroups_->ProcsFiles(cgroup), spec, seccomp_, caps_);
  if (!proc.ok()) {
    (void)cgroups_->Destroy(cgroup);
    return proc.status().WithContext("start session shell");
  }
  auto sess = ShellSession::Start(info, opts, std::move(*proc), cgroup, clock_);
  if (!sess.ok()) {
    (void)cgroups_->Destroy(cgroup);
    return sess.status();
  }
  std::shared_ptr<ShellSession> shared(std::move(*sess));
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    sessions_[key] = shared;
  }
  log::Info("sandbox.session.create", {{"id", rec.id}, {"session", session_id}, {"shell", info.shell}});
  return shared->Info();
}

Result<std::shared_ptr<ShellSession>> SandboxRuntime::FindSession(const std::string& id,
                                                                  const std::string& session_id) {
  std::string sid = id;
  {
    // Accept a sandbox name as well as an id.
    WorldLock world(locks_.get(), false);
    WARREN_RETURN_IF_ERROR(world.status());
    WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, ReadRecord(id));
    sid = rec.id;
  }
  std::lock_guard<std::mutex> sl(sessions_mu_);
  auto it = sessions_.find(sid + "/" + session_id);
  if (it == sessions_.end()) return Status::NotFound("no session " + session_id + " in sandbox " + id);
  return it->second;
}

Result<CommandInfo> SandboxRuntime::SessionExec(const std::string& id, const std::string& session_id,
                                                const std::string& command, const SessionExecOptions& opts) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  {
    SandboxGuard guard;
    WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
    if (rec.state == SandboxState::kPaused) return Status::FailedPrecondition("sandbox is paused");
    if (rec.state != SandboxState::kStarted) return Status::FailedPrecondition("sandbox is " + StateName(rec.state));
    rec.last_activity = Now();
    WARREN_RETURN_IF_ERROR(SaveLocked(rec));
  }
  return sess->Exec(command, opts);
}

Result<CommandInfo> SandboxRuntime::GetCommand(const std::string& id, const std::string& session_id,
                                               const std::string& command_id) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  return sess->Get(command_id);
}

Result<CommandInfo> SandboxRuntime::CommandLogs(const std::string& id, const std::string& session_id,
                                                const std::string& command_id, const LogSink& follow,
                                                std::chrono::milliseconds timeout) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  if (!follow) return sess->Get(command_id);
  return sess->Follow(command_id, follow, timeout);
}

Status SandboxRuntime::SendInput(const std::string& id, const std::string& session_id,
                                 const std::string& command_id, std::string_view bytes) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  return sess->SendInput(command_id, bytes);
}

Status SandboxRuntime::DeleteSession(const std::string& id, const std::string& session_id) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  {
    SandboxGuard guard;
    WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, LockSandbox(id, &guard));
    // Frozen tasks cannot die until thawed.
    if (rec.state == SandboxState::kPaused) return Status::FailedPrecondition("sandbox is paused; resume it first");
  }
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    sessions_.erase(sess->Info().sandbox_id + "/" + session_id);
  }
  // The cgroup holds the shell, its background jobs and anything that
  // double-forked or called setsid: freeze, kill all, remove.
  Status s = cgroups_->Destroy(sess->cgroup());
  sess->Close("deleted");
  log::Info("sandbox.session.delete", {{"session", session_id}, {"ok", s.ok()}});
  return s;
}

Result<SessionInfo> SandboxRuntime::GetSession(const std::string& id, const std::string& session_id) {
  WARREN_ASSIGN_OR_RETURN(auto sess, FindSession(id, session_id));
  return sess->Info();
}

Result<std::vector<SessionInfo>> SandboxRuntime::ListSessions(const std::string& id) {
  std::string sid;
  {
    WorldLock world(locks_.get(), false);
    WARREN_RETURN_IF_ERROR(world.status());
    WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, ReadRecord(id));
    sid = rec.id;
  }
  std::vector<std::shared_ptr<ShellSession>> found;
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    for (auto it = sessions_.lower_bound(sid + "/"); it != sessions_.end() && it->first.rfind(sid + "/", 0) == 0;
         ++it) {
      found.push_back(it->second);
    }
  }
  std::vector<SessionInfo> out;
  for (const auto& s : found) out.push_back(s->Info());
  return out;
}

void SandboxRuntime::EndSessions(const std::string& id, const std::string& reason) {
  std::vector<std::shared_ptr<ShellSession>> ended;
  {
    std::lock_guard<std::mutex> sl(sessions_mu_);
    for (auto it = sessions_.lower_bound(id + "/"); it != sessions_.end() && it->first.rfind(id + "/", 0) == 0;) {
      ended.push_back(it->second);
      it = sessions_.erase(it);
    }
  }
  for (const auto& s : ended) {
    (void)cgroups_->Destroy(s->cgroup());
    s->Close(reason);
  }
}

Result<std::unique_ptr<PtySession>> SandboxRuntime::OpenPty(const std::string& id, const PtyOptions& opts) {
  if (opts.rows == 0 || opts.cols == 0) return Status::InvalidArgument("terminal size must be at least 1x1");
  std::vector<std::string> env = {"TERM=xterm-256color"};
  MergeEnv(&env, opts.env);
  SandboxGuard guard;
  WARREN_RETURN_IF_ERROR(LockSandbox(id, &guard).status());
  SandboxRecord rec;
  SpawnSpec spec;
  WARREN_RETURN_IF_ERROR(PrepareProcessLocked(id, opts.user, opts.cwd, env, &rec, &spec));
  spec.argv = opts.argv.empty() ? std::vector<std::string>{ShellFor(rec.id)} : opts.argv;
  IdRange ids{rec.id_slot};
  // The slave belongs to the user the program runs as (host ids of the
  // sandbox's range), so it can reopen its tty by path.
  WARREN_ASSIGN_OR_RETURN(PtyPair pair,
                          OpenPtyIn("/proc/" + std::to_string(rec.init_pid) + "/root", opts.rows, opts.cols,
                                    static_cast<int64_t>(ids.host_base()) + spec.uid,
                                    static_cast<int64_t>(ids.host_base()) + spec.gid));
  spec.tty_fd = pair.slave.get();
  WARREN_ASSIGN_OR_RETURN(SandboxProcess proc,
                          SpawnInSandbox(rec.init_pid, cgroups_->ProcsFiles(rec.id), spec, seccomp_, caps_));
  pair.slave.reset();  // the program holds it now; EOF on the master follows its exit
  return std::make_unique<PtySession>(std::move(pair), std::move(proc));
}

}  // namespace warren::sandbox
