// Processes: the sandbox's init (pid 1 of fresh user, mount, pid, net, uts,
// ipc and cgroup namespaces, pivoted into the rootfs) and one-shot exec of a
// command inside a running sandbox by joining those namespaces from the host
// (setns through a pidfd) - no agent runs inside the sandbox.
//
// Child-side code between fork/clone and execve only uses data prepared on
// the host beforehand and async-signal-safe calls, so the runtime may be
// called from a multi-threaded program. Thread-safety: functions are
// reentrant; callers serialise operations on one sandbox.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
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
struct BindSpec {
  std::string host_path;     // absolute host path (a volume directory)
  std::string sandbox_path;  // absolute path inside the sandbox
  bool read_only = false;
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

}  // namespace warren::sandbox
