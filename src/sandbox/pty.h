// PTYs inside a sandbox: the pair is allocated in the sandbox's own devpts
// instance (its /dev/pts/ptmx, opened from the host through the init's root
// with openat2(RESOLVE_IN_ROOT)), so `tty` inside prints a /dev/pts/N that
// exists there. The slave becomes the program's controlling terminal
// (setsid + TIOCSCTTY); the host keeps the master.
//
// Thread-safety: PtySession is thread-compatible, except Resize and master
// I/O, which may be used from another thread than Wait.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "sandbox/process.h"

namespace warren::sandbox {

struct PtyPair {
  UniqueFd master;
  UniqueFd slave;
  int index = -1;  // N of /dev/pts/N inside the sandbox
};

// Opens a new pty pair in the devpts instance at /dev/pts of the mount
// namespace whose root is `root_dir` (e.g. /proc/<init>/root), sized
// rows x cols. Fails unless the path resolves (inside that root) to a devpts
// ptmx. The slave is chowned to host ids `owner_uid`/`owner_gid` when >= 0.
Result<PtyPair> OpenPtyIn(const std::string& root_dir, uint16_t rows, uint16_t cols, int64_t owner_uid = -1,
                          int64_t owner_gid = -1);

// Sets the window size of the terminal behind `fd` (the foreground process
// group gets SIGWINCH). InvalidArgument for a zero size.
Status SetWindowSize(int fd, uint16_t rows, uint16_t cols);

// A program running on a pty inside a sandbox. Owns the master and the
// process; destruction kills the program's process group.
class PtySession final {
 public:
  PtySession(PtyPair pair, SandboxProcess proc) : pair_(std::move(pair)), proc_(std::move(proc)) {}
  PtySession(const PtySession&) = delete;
  PtySession& operator=(const PtySession&) = delete;

  // Read/write the terminal (non-blocking is up to the caller).
  int master() const { return pair_.master.get(); }
  pid_t pid() const { return proc_.pid; }
  // /dev/pts/N as seen inside the sandbox.
  std::string tty_path() const { return "/dev/pts/" + std::to_string(pair_.index); }
  Status Resize(uint16_t rows, uint16_t cols) { return SetWindowSize(master(), rows, cols); }
  // Blocks until the program exits; its exit code (128+N for signal N).
  Result<int> Wait() { return proc_.Wait(); }
  Result<std::optional<int>> TryWait() { return proc_.TryWait(); }
  // Readable once the program has exited.
  int exit_fd() const { return proc_.mid_pidfd.get(); }
  void Kill() { proc_.Kill(); }

 private:
  PtyPair pair_;
  SandboxProcess proc_;
};

}  // namespace warren::sandbox
