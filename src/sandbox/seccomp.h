// seccomp: the sandbox's syscall deny list, compiled with libseccomp on the
// host into a classic BPF program that a child installs with prctl() (no
// allocation after fork). Denied calls fail with EPERM (ENOSYS for clone3, so
// libc falls back to clone(), whose namespace flags are filtered).
//
// Thread-safety: SeccompProgram is an immutable value after Build().
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace warren::sandbox {

class SeccompProgram final {
 public:
  // The default deny list (kexec, modules, bpf, perf, keyring, mount family,
  // new user namespaces, open_by_handle_at, userfaultfd, ...).
  static Result<SeccompProgram> BuildDefault();
  // Names of the syscalls the default list denies (docs and tests).
  static std::vector<std::string> DeniedSyscalls();

  // Async-signal-safe: installs the filter on the calling thread. Requires
  // no_new_privs or CAP_SYS_ADMIN. 0 or -errno.
  int Install() const;
  size_t size() const { return filter_.size(); }
  // The compiled program (size() instructions), e.g. to hand to warren-exec.
  const sock_filter* data() const { return filter_.data(); }

 private:
  std::vector<sock_filter> filter_;
};

}  // namespace warren::sandbox
