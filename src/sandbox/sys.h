// Thin wrappers over Linux syscalls that glibc 2.36 does not wrap (pidfd_*,
// openat2, clone with namespace flags), and small host-side file helpers.
//
// Functions marked "async-signal-safe" only issue syscalls and touch no heap;
// they are usable between fork()/clone() and execve() in a multi-threaded
// program. Everything else is ordinary host-side code. Thread-safe: no state.
#pragma once

#include <linux/openat2.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace warren::sandbox {

// --- async-signal-safe raw wrappers (return -1 and set errno on failure) ---
int SysPidfdOpen(pid_t pid, unsigned flags);
int SysPidfdSendSignal(int pidfd, int sig);
int SysOpenat2(int dirfd, const char* path, uint64_t flags, uint64_t mode, uint64_t resolve);
// clone(2) with fork semantics (no new stack) and extra CLONE_* flags;
// returns the child pid in the parent, 0 in the child.
pid_t SysCloneFork(unsigned long flags);
int SysPivotRoot(const char* new_root, const char* put_old);
// Writes all of buf (retrying on EINTR/short writes). 0 or -errno.
int WriteAll(int fd, const void* buf, size_t n);
// Formats a non-negative integer into buf (NUL-terminated); returns length.
size_t FormatUint(uint64_t v, char* buf, size_t cap);

// --- host-side helpers ---
Status ErrnoStatus(std::string_view what);  // FromErrno(errno, what)
Result<std::string> ReadFileToString(const std::string& path);
Status WriteStringToFile(const std::string& path, std::string_view data);
// Writes via a temp file + rename (atomic replace: readers and a crashed
// writer never leave a torn file). `sync` adds an fsync before the rename
// (survives a machine crash, costs a disk flush).
Status WriteFileAtomic(const std::string& path, std::string_view data, bool sync = false);
// Runs argv (argv[0] resolved through PATH) with stdin=/dev/null; returns
// exit code; stdout+stderr captured into *output if non-null.
Result<int> RunCommand(const std::vector<std::string>& argv, std::string* output = nullptr);
// Like RunCommand, but hands the combined stdout/stderr to `on_output` in
// chunks as they arrive (on the calling thread) instead of collecting it.
Result<int> RunCommandStreaming(const std::vector<std::string>& argv,
                                const std::function<void(std::string_view)>& on_output);
// The start time (clock ticks since boot, /proc/<pid>/stat field 22) of a
// live process, or NotFound. Used with the pid to identify a process across
// runtime restarts.
Result<uint64_t> ProcessStartTime(pid_t pid);
bool ProcessAlive(pid_t pid, uint64_t start_time);
Status MkdirAll(const std::string& path, mode_t mode = 0755);
// Recursively removes a directory tree (no following of symlinks).
Status RemoveTree(const std::string& path);

// Switches the calling thread's fsuid/fsgid to (uid, gid) and re-raises the
// effective capabilities that such a switch drops (CAP_DAC_OVERRIDE,
// CAP_FOWNER, ...), so a root thread keeps its file powers while what it
// creates gets those owners. Restores ids and capabilities on destruction.
// Credentials are per thread in Linux, so other threads are unaffected.
class ScopedFsIds final {
 public:
  ScopedFsIds(uint32_t uid, uint32_t gid);
  ~ScopedFsIds();
  ScopedFsIds(const ScopedFsIds&) = delete;
  ScopedFsIds& operator=(const ScopedFsIds&) = delete;
  // OK, or why the switch failed (then nothing was changed).
  const Status& status() const { return status_; }

 private:
  Status status_;
  bool active_ = false;
  uint32_t old_uid_ = 0, old_gid_ = 0;
  uint32_t caps_[2][3] = {};  // saved effective/permitted/inheritable (capget v3)
};

}  // namespace warren::sandbox
