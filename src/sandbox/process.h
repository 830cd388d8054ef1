// Processes: the sandbox's init (pid 1 of fresh user, mount, pid, net, uts,
// ipc and cgroup namespaces, pivoted into the rootfs) and one-shot exec of a
// command inside a running sandbox by joining those namespaces from the host
// (setns through a pidfd) - no agent runs inside the sandbox.
//
// Host-side processes are started without copying the caller's address
// space (see SpawnMethod): the runtime usually lives in a large,
// multi-threaded server, where a fork() costs a page-table copy and then a
// copy-on-write fault for every page the server writes while the child
// lives. Child-side code between clone and execve only uses data prepared on
// the host beforehand and async-signal-safe calls, so the runtime may be
// called from a multi-threaded program. Thread-safety: functions are
// reentrant; callers serialise operations on one sandbox.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "sandbox/caps.h"
#include "sandbox/cgroups.h"
#include "sandbox/seccomp.h"
#include "sandbox/userns.h"

namespace warren::sandbox {

// A host directory mounted into the sandbox as an idmapped bind (on-disk
// ids 0..65535 appear as the sandbox's own ids, whatever its host range), so
// one volume can be shared by sandboxes with different id ranges. At most 16.
// How SpawnInit, ExecInSandbox and SpawnInSandbox start their host-side
// processes.
//  - kVfork (default): posix_spawn-style. clone(CLONE_VM | CLONE_VFORK) on a
//    private mmap'd stack, the calling thread suspended until the child
//    execs or exits; nothing of the caller's memory is copied. An exec's
//    intermediate (which joins the sandbox and lives as long as the command)
//    is the embedded program warren-exec (init/warren_exec.c), exec'd from a
//    sealed memfd. The sandbox init's short-lived helper runs vfork-style;
//    the init itself is still a copy of the caller until it execs
//    warren-init (it must wait for the host mid-setup, see process.cc).
//  - kFork: fork() of the caller (the former way). Kept as the benchmark
//    peer, and used when warren-exec cannot be made (memfd exec refused).
// Process-wide; set it before starting work (benchmarks, tests).
enum class SpawnMethod { kVfork, kFork };
void SetSpawnMethod(SpawnMethod method);
SpawnMethod GetSpawnMethod();

struct BindSpec {
  std::string host_path;     // absolute host path (host-trusted; see host_dir)
  std::string sandbox_path;  // absolute path inside the sandbox
  bool read_only = false;
  // When set, the directory to mount, already resolved without following
  // links (safe_path.h); host_path is then only a label for errors. Use it
  // for any directory a sandbox can write (volumes): a path would be
  // re-resolved and could be redirected by a planted symlink.
  std::shared_ptr<const UniqueFd> host_dir;
  // false: a plain read-only clone of a host file or directory (HostBind),
  // not idmapped; its host owner shows as nobody inside.
  bool idmapped = true;
};

struct InitSpec {
  std::string rootfs;    // host path of the sandbox's root directory
  std::string hostname;  // UTS name inside
  IdRange ids;
  std::vector<BindSpec> binds;
  std::chrono::milliseconds timeout{10000};
  // Makes the detached root mount for the init's user namespace
  // `userns_fd` (see StoragePool::SandboxRootMount). Unset: an idmapped
  // clone of `rootfs` with MOUNT_ATTR_NODEV.
  std::function<Result<UniqueFd>(int userns_fd)> root_mount;
};

struct InitHandle {
  pid_t pid = -1;           // host pid of the sandbox's pid 1
  uint64_t start_time = 0;  // /proc/<pid>/stat starttime (identity check)
};

// Starts a sandbox init and returns once its mount table is built and it is
// parked in its reaper loop. The init is not a child of the caller (it is
// reparented), so it outlives the calling process. On failure nothing is
// left running.
Result<InitHandle> SpawnInit(const InitSpec& spec, CgroupManager& cgroups, const std::string& cgroup_name);

struct ExecSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=value"
  std::string cwd = "/";
  uint32_t uid = 0;  // inside the sandbox
  uint32_t gid = 0;
  std::chrono::milliseconds timeout{0};  // 0 = none
  std::string stdin_data;
  // Streaming sinks; when unset the output is collected into the result.
  std::function<void(std::string_view)> on_stdout;
  std::function<void(std::string_view)> on_stderr;
  // Polled at least once a second while the command runs; returning true
  // kills it like a timeout (result.timed_out is set). Optional.
  std::function<bool()> cancelled;
};

struct ExecResult {
  int exit_code = -1;  // 128+N when killed by signal N; 127 when exec failed
  bool timed_out = false;
  std::string stdout_data;
  std::string stderr_data;
};

// Runs spec.argv inside the sandbox whose init is `init_pid`, in its cgroup
// (`procs_files`), with `seccomp`, reduced capabilities `caps` and
// no_new_privs. Blocks until the command exits or times out (then its whole
// session is SIGKILLed).
Result<ExecResult> ExecInSandbox(pid_t init_pid, const std::vector<std::string>& procs_files,
                                 const ExecSpec& spec, const SeccompProgram& seccomp, CapSet caps);

// A long-lived process started inside a sandbox (a session shell or a PTY
// program), set up exactly like ExecInSandbox's command: own session
// (setsid), reduced capabilities, uid/gid, cwd, no_new_privs, seccomp.
struct SpawnSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=value"
  std::string cwd = "/";
  uint32_t uid = 0;
  uint32_t gid = 0;
  // >= 0: a terminal slave that becomes fds 0-2 and the controlling tty
  // (setsid + TIOCSCTTY). The caller keeps its own copy.
  int tty_fd = -1;
  // With tty_fd < 0: fds 0, 1, 2 are pipes to the caller. When true, a
  // fourth pipe is open as fd 4 in the child (the caller writes to it): a
  // command channel separate from the program's stdin.
  bool command_channel = false;
};

// Owner of a process started by SpawnInSandbox. `pid` is the program's host
// pid; `mid` is the host-side intermediate (a child of the caller, inside
// the sandbox's cgroup) that waits for it and exits with its status
// (128+N for signal N). With SpawnMethod::kVfork the intermediate is
// warren-exec: it owns all of its (few KB of) memory, so nothing here has to
// outlive it; with kFork it is a copy of the caller. Destruction SIGKILLs the program's process group
// and reaps the intermediate. Move-only; not thread-safe (one owner).
class SandboxProcess final {
 public:
  SandboxProcess() = default;
  ~SandboxProcess();
  SandboxProcess(SandboxProcess&&) noexcept;
  SandboxProcess& operator=(SandboxProcess&&) noexcept;
  SandboxProcess(const SandboxProcess&) = delete;
  SandboxProcess& operator=(const SandboxProcess&) = delete;

  pid_t pid = -1;
  pid_t mid = -1;
  UniqueFd mid_pidfd;  // readable once the program has exited
  UniqueFd stdin_wr, stdout_rd, stderr_rd, command_wr;  // pipes (not with a tty)

  // Blocks until the program exits; returns its exit code. Idempotent.
  Result<int> Wait();
  // Non-blocking Wait: the exit code, or nullopt while running.
  Result<std::optional<int>> TryWait();
  // SIGKILL to the program's process group and the program.
  void Kill();

 private:
  void Reset();
  int exit_code_ = -1;
  bool reaped_ = false;
};

// Starts spec.argv inside the sandbox like ExecInSandbox and returns once
// the program has been exec'd (or failed to: setup errors are a Status; a
// program that cannot be executed is NotFound/PermissionDenied).
Result<SandboxProcess> SpawnInSandbox(pid_t init_pid, const std::vector<std::string>& procs_files,
                                      const SpawnSpec& spec, const SeccompProgram& seccomp, CapSet caps);

}  // namespace warren::sandbox
