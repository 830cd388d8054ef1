#include "sandbox/seccomp.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <linux/seccomp.h>

#include <utility>

#include "common/unique_fd.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

const char* const kDenied[] = {
    // Kernel replacement / modules / tracing of the kernel.
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "perf_event_open", "lookup_dcookie", "iopl", "ioperm", "syslog", "acct", "swapon", "swapoff",
    "reboot", "quotactl", "quotactl_fd", "nfsservctl", "vm86", "vm86old", "uselib", "_sysctl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
    // Kernel keyring.
    "add_key", "keyctl", "request_key",
    // File handles bypass path-based confinement.
    "open_by_handle_at", "name_to_handle_at",
    // Mount family: the sandbox's mount table is fixed by the runtime.
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    // Namespaces: no joining or creating new ones inside.
    "setns", "unshare",
    // Attack surface with a poor record.
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init",
};

// (mask, value) pairs over the low 16 bits of an ioctl number (type byte
// 0x94, then the command number): btrfs commands refused to sandboxes.
constexpr std::pair<uint64_t, uint64_t> kBtrfsIoctlBlocks[] = {
    {0xff80, 0x9480},  // 128..255
    {0xffc0, 0x9440},  // 64..127
    {0xfff0, 0x9420},  // 32..47
    {0xfffc, 0x9430},  // 48..51
    {0xfffe, 0x9434},  // 52..53
    {0xffff, 0x9437},  // 55
    {0xfff8, 0x9438},  // 56..63
    {0xfff0, 0x9410},  // 16..31
    {0xfff8, 0x9400},  // 0..7
    {0xffff, 0x9408},  // 8
    {0xfffe, 0x940a},  // 10..11
    {0xffff, 0x940c},  // 12
    {0xfffe, 0x940e},  // 14..15
};

}  // namespace

std::vector<std::string> SeccompProgram::DeniedSyscalls() {
  return std::vector<std::string>(std::begin(kDenied), std::end(kDenied));
}

Result<SeccompProgram> SeccompProgram::BuildDefault() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return Status::Internal("seccomp_init failed");
  struct Guard {
    scmp_filter_ctx c;
    ~Guard() { seccomp_release(c); }
  } guard{ctx};
  for (const char* name : kDenied) {
    int n = seccomp_syscall_resolve_name(name);
    if (n == __NR_SCMP_ERROR) continue;  // not on this architecture
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), n, 0);
    if (rc < 0 && rc != -EEXIST) return Status::Internal(std::string("seccomp rule ") + name);
  }
  // clone3 passes its flags in memory the filter cannot read: make it ENOSYS
  // so libc falls back to clone(), whose flags argument is checked below.
  int nr = seccomp_syscall_resolve_name("clone3");
  if (nr != __NR_SCMP_ERROR && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0) < 0) {
    return Status::Internal("seccomp clone3");
  }
  const uint64_t ns_flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWIPC | CLONE_NEWNET |
                            CLONE_NEWPID | CLONE_NEWUTS | 0x00000080ULL /* CLONE_NEWTIME */;
  int clone_nr = seccomp_syscall_resolve_name("clone");
  // One rule per namespace flag: deny clone() when that bit is set.
  for (uint64_t bit = 1; bit != 0 && bit <= ns_flags; bit <<= 1) {
    if ((ns_flags & bit) == 0) continue;
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), clone_nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit)) < 0) {
      return Status::Internal("seccomp clone flag rule");
    }
  }
  // Every btrfs ioctl (type 0x94: subvolume/snapshot create and destroy,
  // qgroup create/assign/limit, quota control, balance, send, ...) but the
  // generic reflink/dedupe ones that share the type (FICLONE 9,
  // FICLONERANGE 13, FIDEDUPERANGE 54: they add references to extents the
  // caller's qgroup is charged for, and `cp` uses them). A nested
  // subvolume gets a qgroup of its own with no limit, so allowing the rest
  // lets a sandbox write past its disk limit; no workload needs them
  // (docs/SECURITY.md). The kernel takes ioctl's cmd as 32 bits; each rule
  // masks the type byte plus a block of command numbers, together covering
  // 0..255 except 9, 13 and 54.
  int ioctl_nr = seccomp_syscall_resolve_name("ioctl");
  for (const auto& [mask, value] : kBtrfsIoctlBlocks) {
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), ioctl_nr, 1, SCMP_A1(SCMP_CMP_MASKED_EQ, mask, value)) < 0) {
      return Status::Internal("seccomp btrfs ioctl rule");
    }
  }
  // Export the BPF through a memfd (libseccomp 2.5 has no in-memory export).
  UniqueFd mfd(memfd_create("seccomp", MFD_CLOEXEC));
  if (!mfd) return ErrnoStatus("memfd_create");
  if (int rc = seccomp_export_bpf(ctx, mfd.get()); rc < 0) return Status::FromErrno(-rc, "seccomp_export_bpf");
  off_t len = lseek(mfd.get(), 0, SEEK_END);
  if (len <= 0 || len % sizeof(sock_filter) != 0) return Status::Internal("bad seccomp export size");
  SeccompProgram prog;
  prog.filter_.resize(static_cast<size_t>(len) / sizeof(sock_filter));
  if (pread(mfd.get(), prog.filter_.data(), static_cast<size_t>(len), 0) != len) {
    return ErrnoStatus("read seccomp export");
  }
  return prog;
}

int SeccompProgram::Install() const {
  struct sock_fprog fprog;
  fprog.len = static_cast<unsigned short>(filter_.size());
  fprog.filter = const_cast<sock_filter*>(filter_.data());
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) return -errno;
  return 0;
}

}  // namespace warren::sandbox
