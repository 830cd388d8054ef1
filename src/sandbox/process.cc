#include "sandbox/process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "common/log.h"
#include "common/unique_fd.h"
#include "sandbox/init/exec_protocol.h"
#include "sandbox/mounts.h"
#include "sandbox/sys.h"

// The static warren-init binary (init/warren_init.c), embedded at build time.
extern "C" const unsigned char warren_init_blob[];
extern "C" const unsigned char warren_init_blob_end[];
// The static warren-exec binary (init/warren_exec.c), embedded at build time.
extern "C" const unsigned char warren_exec_blob[];
extern "C" const unsigned char warren_exec_blob_end[];

namespace warren::sandbox {

namespace {
std::atomic<SpawnMethod> g_spawn_method{SpawnMethod::kVfork};
}  // namespace

void SetSpawnMethod(SpawnMethod method) { g_spawn_method.store(method, std::memory_order_relaxed); }
SpawnMethod GetSpawnMethod() { return g_spawn_method.load(std::memory_order_relaxed); }

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxBinds = 16;

// Message from init to the host once setup finished (err == 0) or failed.
struct InitReply {
  int err;
  char where[96];
};

// Everything the init needs, as plain C data prepared before fork.
struct InitPlan {
  int sock;
  const char* rootfs;
  const char* hostname;
  size_t hostname_len;
  const BindSpec* binds;
  size_t nbinds;
  const char* const* bind_rel;  // sandbox paths without the leading '/'
};

[[noreturn]] void InitFail(int sock, const char* where, int err) {
  InitReply r;
  memset(&r, 0, sizeof(r));
  r.err = err < 0 ? -err : err;
  if (r.err == 0) r.err = EIO;
  strncpy(r.where, where, sizeof(r.where) - 1);
  (void)send(sock, &r, sizeof(r), MSG_NOSIGNAL);
  _exit(1);
}

int LoopbackUp() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strcpy(ifr.ifr_name, "lo");
  int rc = 0;
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
    rc = -errno;
  } else {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) rc = -errno;
  }
  close(s);
  return rc;
}

// A sealed, executable, close-on-exec memfd holding [begin, end), or -1.
// Async-signal-safe.
int MemfdWithBlob(const char* name, const unsigned char* begin, const unsigned char* end) {
  constexpr unsigned kMfdExec = 0x10;  // MFD_EXEC (6.3+): executable even under vm.memfd_noexec=1
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | kMfdExec);
  if (fd < 0 && errno == EINVAL) fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -1;
  size_t n = static_cast<size_t>(end - begin);
  if (WriteAll(fd, begin, n) < 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// A sealed, executable memfd holding warren-init, or -1. Async-signal-safe.
int MemfdWithInit() { return MemfdWithBlob("warren-init", warren_init_blob, warren_init_blob_end); }

// warren-exec as a sealed memfd, made once and kept for the life of the
// process (close-on-exec), or -1 when the kernel refuses (then exec falls
// back to fork). Thread-safe.
int ExecHelperFd() {
  static const int fd = [] {
    int f = MemfdWithBlob("warren-exec", warren_exec_blob, warren_exec_blob_end);
    if (f < 0) {
      log::Warn("sandbox.exec_helper_unavailable",
                Json{{"error", strerror(errno)}, {"fallback", "fork"}});
    }
    return f;
  }();
  return fd;
}

// --- vfork-style spawning -------------------------------------------------
//
// CloneVfork runs fn(arg) in a child created with clone(CLONE_VM |
// CLONE_VFORK): the child shares the caller's memory instead of copying it,
// and the calling thread is suspended by the kernel until the child execs
// (its mm is replaced) or exits. That is what posix_spawn does (glibc
// sysdeps/unix/sysv/linux/spawni.c), and its constraints bind `fn`:
//  - Stack: `fn` runs on a private 256 KiB mmap'd stack (guard page below),
//    never on the caller's: it must not return into the caller's frames,
//    and the caller's stack is live memory. The stack is unmapped when
//    CloneVfork returns, i.e. once the child has exec'd or exited: a child
//    that outlives that point must be on its own mm (have exec'd, or be a
//    fork of the child, which copies the stack).
//  - Memory: `fn` may read the caller's memory (its plan, prepared before)
//    and write only its own stack and the `err` slot of its argument, which
//    the caller reads after CloneVfork returns. No malloc, no locks, no
//    stdio: the parent thread may have been stopped holding none of them,
//    but other threads of the caller keep running and own them.
//  - TLS: no CLONE_SETTLS, so `fn` runs with the calling thread's TLS. That
//    thread is suspended, so nothing else touches it concurrently, but the
//    glibc wrappers the child calls write errno there: errno is unspecified
//    when CloneVfork returns (it reports errors in its result instead).
//    The cached tid in that TLS is the parent's: no raise()/pthread_* in
//    the child.
//  - Signals: every signal, glibc's internal ones included, is blocked in
//    the calling thread around the clone (restored after), so no handler of
//    the caller ever runs on the child, which inherits that mask. The child
//    never unblocks: execve resets handled signals to SIG_DFL, and the
//    program it execs sets its own mask (warren-exec resets dispositions
//    and mask; a fork of the child restores what it needs). SIGKILL needs
//    no unblocking.
//  - No CLONE_FS: the child has its own cwd/root (it may chdir), and
//    setns(CLONE_NEWNS) needs fs->users == 1. No CLONE_THREAD/SIGHAND:
//    the child is its own thread group (exit_group ends only it).
//  - What the child cannot do on a shared mm: setns(CLONE_NEWUSER) fails
//    with EINVAL while mm_users > 1. That is why the exec path execs
//    warren-exec first, which joins the sandbox on its own mm.
// Returns the child's pid, or -errno. With `pidfd`, a pidfd of the child is
// stored there (CLONE_PIDFD: no pid-reuse race).
pid_t CloneVfork(int (*fn)(void*), void* arg, int* pidfd) {
  constexpr size_t kGuard = 4096;
  constexpr size_t kStack = 256 * 1024;
  void* mem = mmap(nullptr, kGuard + kStack, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) return -errno;
  if (mprotect(mem, kGuard, PROT_NONE) != 0) {
    int e = errno;
    munmap(mem, kGuard + kStack);
    return -e;
  }
  // Raw rt_sigprocmask: glibc's wrappers refuse to block its internal
  // signals (SIGCANCEL, SIGSETXID), which posix_spawn also blocks here.
  uint64_t all = ~0ULL, old = 0;
  syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &old, sizeof(all));
  int flags = CLONE_VM | CLONE_VFORK | SIGCHLD | (pidfd != nullptr ? CLONE_PIDFD : 0);
  pid_t pid = clone(fn, static_cast<char*>(mem) + kGuard + kStack, flags, arg, pidfd);
  int clone_errno = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, sizeof(old));
  munmap(mem, kGuard + kStack);
  return pid < 0 ? -clone_errno : pid;
}

// The plan of a vfork-style exec: read-only for the child but for `err`.
struct VforkExec {
  int exe_fd;             // the program (an fd: no path lookup in the child)
  char* const* argv;      // NULL-terminated
  char* const* envp;      // NULL-terminated
  const int* keep_fds;    // fds to pass on: their close-on-exec flag is cleared
  size_t nkeep;
  volatile int err = 0;   // set by the child when it fails before or at execveat
};

// Runs on CloneVfork's stack, sharing the caller's memory (see above): only
// fd-table calls (the fd table is the child's own copy) and execveat.
int VforkExecChild(void* arg) {
  auto* x = static_cast<VforkExec*>(arg);
  for (size_t i = 0; i < x->nkeep; ++i) {
    if (x->keep_fds[i] >= 0 && fcntl(x->keep_fds[i], F_SETFD, 0) != 0) {
      x->err = errno != 0 ? errno : EBADF;
      _exit(127);
    }
  }
  syscall(SYS_execveat, x->exe_fd, "", x->argv, x->envp, AT_EMPTY_PATH);
  x->err = errno != 0 ? errno : ENOEXEC;
  _exit(127);
}

// Runs in the cloned child: pid 1 of the new namespaces.
[[noreturn]] void InitMain(const InitPlan& p) {
  int sock = p.sock;
  prctl(PR_SET_NAME, "warren-init", 0, 0, 0);
  prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  // Only the control socket survives; stdio goes to /dev/null.
  if (sock != 3) {
    if (dup3(sock, 3, O_CLOEXEC) < 0) _exit(1);
    sock = 3;
  }
  close_range(4, ~0U, 0);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    close(devnull);
  }
  // The tiny init this process becomes once the sandbox is built, copied
  // into a sealed memfd now, while the host's filesystem is still reachable
  // (after pivot_root only the image is). A failure here is not fatal: the
  // process then stays pid 1 itself (the same reaper loop, without exec).
  int initfd = MemfdWithInit();
  // The directory the rootfs is attached over: the helper made it our cwd
  // before clone (CLONE_NEWNS carries the cwd over into the new mount
  // namespace), so no lookup from "/" is needed. Opened now, while our
  // credentials are still the helper's (the id maps are not written yet):
  // a data dir below a 0700 directory is not traversable by the sandbox's
  // ids. The treefd itself is what we later pivot into.
  int attach_dir = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  // Wait for the host: id maps written, cgroups joined, rootfs fd attached.
  char byte;
  char cbuf[CMSG_SPACE(sizeof(int) * (1 + kMaxBinds))];
  struct iovec iov = {&byte, 1};
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof(cbuf);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || byte != 'G') _exit(1);
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) InitFail(sock, "no rootfs fd", EPROTO);
  size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
  if (nfds != 1 + p.nbinds) InitFail(sock, "wrong number of mount fds", EPROTO);
  int fds[1 + kMaxBinds];
  memcpy(fds, CMSG_DATA(c), sizeof(int) * nfds);
  int treefd = fds[0];

  if (setgroups(0, nullptr) < 0) InitFail(sock, "setgroups", errno);
  if (setresgid(0, 0, 0) < 0) InitFail(sock, "setresgid", errno);
  if (setresuid(0, 0, 0) < 0) InitFail(sock, "setresuid", errno);
  if (unshare(CLONE_NEWCGROUP) < 0) InitFail(sock, "unshare cgroup ns", errno);
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) InitFail(sock, "make / private", errno);
  if (attach_dir < 0) InitFail(sock, "open rootfs mount point", EACCES);
  if (move_mount(treefd, "", attach_dir, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
    InitFail(sock, "attach rootfs", errno);
  }
  close(attach_dir);
  // Once attached, the tree fd names the root of the new mount.
  int rootfd = treefd;
  const char* where = "";
  int rc = mounts::SetupProc(rootfd, &where);
  if (rc < 0) InitFail(sock, where, rc);
  rc = mounts::SetupDev(rootfd, &where);
  if (rc < 0) InitFail(sock, where, rc);
  (void)mounts::SetupSys(rootfd);  // best effort
  // Volumes: idmapped detached mounts prepared by the host.
  for (size_t i = 0; i < p.nbinds; ++i) {
    rc = mounts::AttachAt(fds[1 + i], rootfd, p.bind_rel[i]);
    if (rc < 0) InitFail(sock, "attach volume", rc);
    close(fds[1 + i]);
  }
  rc = mounts::PivotInto(rootfd);
  if (rc < 0) InitFail(sock, "pivot_root", rc);
  close(rootfd);
  if (sethostname(p.hostname, p.hostname_len) < 0) InitFail(sock, "sethostname", errno);
  rc = LoopbackUp();
  if (rc < 0) InitFail(sock, "loopback up", rc);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) InitFail(sock, "no_new_privs", errno);
  rc = ApplyCapabilities(CapSet{});
  if (rc < 0) InitFail(sock, "drop capabilities", rc);

  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, nullptr);
  InitReply ok;
  memset(&ok, 0, sizeof(ok));
  (void)send(sock, &ok, sizeof(ok), MSG_NOSIGNAL);
  close(sock);
  if (initfd >= 0) {
    // Become warren-init (same pid and start time: the runtime's identity
    // check is unchanged). The blocked mask and pending signals carry over.
    char name[] = "warren-init";
    char* argv[] = {name, nullptr};
    char* envp[] = {nullptr};
    syscall(SYS_execveat, initfd, "", argv, envp, AT_EMPTY_PATH);
  }
  // Fallback reaper loop: pid 1 of the namespace adopts orphans.
  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&all, &info);
    if (sig == SIGCHLD) {
      while (waitpid(-1, nullptr, WNOHANG) > 0) {
      }
    }
  }
}

Status SendFds(int sock, const std::vector<int>& fds) {
  char byte = 'G';
  char cbuf[CMSG_SPACE(sizeof(int) * (1 + kMaxBinds))];
  memset(cbuf, 0, sizeof(cbuf));
  struct iovec iov = {&byte, 1};
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) != 1) return ErrnoStatus("sendmsg rootfs fd");
  return Status::Ok();
}

// Waits up to `timeout` for `fd` to become readable.
bool WaitReadable(int fd, std::chrono::milliseconds timeout) {
  struct pollfd pfd = {fd, POLLIN, 0};
  int rc;
  do {
    rc = poll(&pfd, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

// The init's helper: chdir into the rootfs (the cwd the init inherits, see
// InitMain), clone the init into new namespaces, report its pid on the
// control socket, exit. Runs vfork-style (CloneVfork: only syscalls on the
// plan; its chdir changes its own fs_struct, not the caller's) or in a fork.
int InitHelper(void* arg) {
  const InitPlan& plan = *static_cast<const InitPlan*>(arg);
  if (chdir(plan.rootfs) != 0) {
    int32_t e = -errno;
    (void)send(plan.sock, &e, sizeof(e), MSG_NOSIGNAL);
    _exit(1);
  }
  // Fork semantics: the init gets its own copy of this mm (and of the
  // helper's stack, on which it continues).
  pid_t init = SysCloneFork(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS |
                            CLONE_NEWIPC);
  if (init == 0) InitMain(plan);
  int32_t v = init < 0 ? -errno : init;
  (void)send(plan.sock, &v, sizeof(v), MSG_NOSIGNAL);
  _exit(init < 0 ? 1 : 0);
}

}  // namespace

Result<InitHandle> SpawnInit(const InitSpec& spec, CgroupManager& cgroups, const std::string& cgroup_name) {
  if (!spec.ids.valid()) return Status::InvalidArgument("sandbox has no id range");
  if (spec.binds.size() > kMaxBinds) return Status::InvalidArgument("too many volumes");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return ErrnoStatus("socketpair");
  UniqueFd host_sock(sv[0]), child_sock(sv[1]);

  std::vector<std::string> bind_rel_store;
  for (const auto& b : spec.binds) {
    if (b.sandbox_path.size() < 2 || b.sandbox_path[0] != '/') {
      return Status::InvalidArgument("bind target must be absolute: " + b.sandbox_path);
    }
    bind_rel_store.push_back(b.sandbox_path.substr(1));
  }
  std::vector<const char*> bind_rel;
  for (const auto& r : bind_rel_store) bind_rel.push_back(r.c_str());
  InitPlan plan{child_sock.get(),      spec.rootfs.c_str(), spec.hostname.c_str(), spec.hostname.size(),
                spec.binds.data(),     spec.binds.size(),   bind_rel.data()};

  // The helper (InitHelper) clones the init and exits, so the init is
  // reparented away from the caller. With kVfork it runs vfork-style on the
  // caller's memory (its work is two syscalls); the init it clones is then
  // the only copy of the caller's address space, and lives until it execs
  // warren-init at the end of its setup. The init cannot be vfork-style
  // itself: it waits mid-setup for the host (id maps, cgroups, mount fds),
  // so the caller cannot be suspended until its exec, and it cannot share
  // the caller's memory while running (its setup is not confined to a
  // pre-computed plan, and it would share the caller's TLS concurrently).
  pid_t helper;
  if (GetSpawnMethod() == SpawnMethod::kVfork) {
    helper = CloneVfork(InitHelper, &plan, nullptr);
    if (helper < 0) return Status::FromErrno(-helper, "clone");
  } else {
    helper = fork();
    if (helper < 0) return ErrnoStatus("fork");
    if (helper == 0) InitHelper(&plan);
  }
  child_sock.reset();
  int st;
  while (waitpid(helper, &st, 0) < 0 && errno == EINTR) {
  }
  int32_t v = 0;
  if (!WaitReadable(host_sock.get(), spec.timeout) || recv(host_sock.get(), &v, sizeof(v), 0) != sizeof(v)) {
    return Status::Internal("sandbox init did not report its pid");
  }
  if (v < 0) return Status::FromErrno(-v, "clone sandbox init");
  pid_t pid = v;
  UniqueFd pidfd(SysPidfdOpen(pid, 0));
  auto fail = [&](Status s) -> Status {
    if (pidfd) SysPidfdSendSignal(pidfd.get(), SIGKILL);
    else kill(pid, SIGKILL);
    return s;
  };
  if (!pidfd) return fail(ErrnoStatus("pidfd_open init"));
  if (Status s = WriteIdMaps(pid, spec.ids); !s.ok()) return fail(s);
  if (Status s = cgroups.AddProcess(cgroup_name, pid); !s.ok()) return fail(s);
  UniqueFd userns(open(("/proc/" + std::to_string(pid) + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
  if (!userns) return fail(ErrnoStatus("open init userns"));
  auto tree = spec.root_mount ? spec.root_mount(userns.get())
                              : CloneIdmappedTree(spec.rootfs, userns.get(), MOUNT_ATTR_NODEV);
  if (!tree.ok()) return fail(tree.status());
  std::vector<UniqueFd> volumes;
  std::vector<int> fds{tree->get()};
  for (const auto& b : spec.binds) {
    unsigned attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (b.read_only ? MOUNT_ATTR_RDONLY : 0);
    auto v = !b.idmapped ? CloneReadOnlyTree(b.host_path)
             : b.host_dir ? CloneIdmappedTreeAt(b.host_dir->get(), userns.get(), attrs)
                          : CloneIdmappedTree(b.host_path, userns.get(), attrs);
    if (!v.ok()) return fail(v.status().WithContext("volume " + b.host_path));
    fds.push_back(v->get());
    volumes.push_back(std::move(*v));
  }
  if (Status s = SendFds(host_sock.get(), fds); !s.ok()) return fail(s);
  InitReply reply;
  memset(&reply, 0, sizeof(reply));
  if (!WaitReadable(host_sock.get(), spec.timeout)) return fail(Status::Timeout("sandbox init setup timed out"));
  ssize_t n = recv(host_sock.get(), &reply, sizeof(reply), 0);
  if (n != sizeof(reply)) return fail(Status::Internal("sandbox init exited during setup"));
  if (reply.err != 0) {
    return fail(Status::FromErrno(reply.err, std::string("sandbox init: ") + reply.where));
  }
  auto start = ProcessStartTime(pid);
  if (!start.ok()) return fail(start.status());
  return InitHandle{pid, *start};
}

namespace {

// Tagged messages on the exec report pipe (atomic: < PIPE_BUF); the same
// records in both methods (see init/exec_protocol.h).
using ReportMsg = warren_exec_report;

[[noreturn]] void ExecFail(int fd, char tag, const char* where, int err) {
  ReportMsg m;
  memset(&m, 0, sizeof(m));
  m.tag = tag;
  m.value = err < 0 ? -err : err;
  strncpy(m.where, where, sizeof(m.where) - 1);
  (void)WriteAll(fd, &m, sizeof(m));
  _exit(127);
}

struct ExecPlan {
  int pidfd;
  const char* const* procs_files;
  size_t nprocs;
  int in_rd, out_wr, err_wr, report_wr;
  char* const* argv;
  char* const* envp;
  const char* cwd;
  const char* path_env;  // PATH value for lookup
  uint32_t uid, gid;
  const SeccompProgram* seccomp;
  CapSet caps;
  int host_fds[5];  // the host's ends of the pipes: closed in the child (-1 = none)
  int tty_fd;       // >= 0: terminal slave for fds 0-2 and controlling tty
  int cmd_rd;       // >= 0: becomes fd 4 (session command channel)
};

[[noreturn]] void ExecCommand(const ExecPlan& p) {
  int report = p.report_wr;
  setsid();
  if (p.tty_fd >= 0) {
    if (ioctl(p.tty_fd, TIOCSCTTY, 0) < 0) ExecFail(report, 'S', "TIOCSCTTY", errno);
    if (dup2(p.tty_fd, 0) < 0 || dup2(p.tty_fd, 1) < 0 || dup2(p.tty_fd, 2) < 0) {
      ExecFail(report, 'S', "dup2 tty", errno);
    }
  } else if (dup2(p.in_rd, 0) < 0 || dup2(p.out_wr, 1) < 0 || dup2(p.err_wr, 2) < 0) {
    ExecFail(report, 'S', "dup2", errno);
  }
  // Move the report pipe and the command channel out of the way first, so
  // placing one on 3 or 4 cannot clobber the other.
  int cmd = -1;
  if (p.cmd_rd >= 0) {
    cmd = fcntl(p.cmd_rd, F_DUPFD_CLOEXEC, 64);
    if (cmd < 0) ExecFail(report, 'S', "dup command channel", errno);
  }
  int high = fcntl(report, F_DUPFD_CLOEXEC, 64);
  if (high < 0) ExecFail(report, 'S', "dup report", errno);
  report = high;
  if (dup3(report, 3, O_CLOEXEC) < 0) ExecFail(report, 'S', "dup3", errno);
  report = 3;
  if (cmd >= 0 && dup2(cmd, 4) < 0) ExecFail(report, 'S', "dup2 command channel", errno);
  close_range(cmd >= 0 ? 5 : 4, ~0U, 0);
  // Dispositions the host set to SIG_IGN would survive execve.
  for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  int rc = ApplyCapabilities(p.caps);
  if (rc < 0) ExecFail(report, 'S', "capabilities", rc);
  if (setgroups(0, nullptr) < 0) ExecFail(report, 'S', "setgroups", errno);
  if (setresgid(p.gid, p.gid, p.gid) < 0) ExecFail(report, 'S', "setgid", errno);
  if (setresuid(p.uid, p.uid, p.uid) < 0) ExecFail(report, 'S', "setuid", errno);
  if (chdir(p.cwd) < 0) ExecFail(report, 'S', "chdir", errno);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) ExecFail(report, 'S', "no_new_privs", errno);
  rc = p.seccomp->Install();
  if (rc < 0) ExecFail(report, 'S', "seccomp", rc);
  const char* file = p.argv[0];
  if (strchr(file, '/') != nullptr) {
    execve(file, p.argv, p.envp);
    ExecFail(report, 'E', "execve", errno);
  }
  int saved = ENOENT;
  char buf[4096];
  const char* s = p.path_env;
  size_t flen = strlen(file);
  while (*s != '\0') {
    const char* e = strchr(s, ':');
    size_t dlen = e ? static_cast<size_t>(e - s) : strlen(s);
    if (dlen == 0) {
      buf[0] = '.';
      dlen = 1;
    } else if (dlen + flen + 2 < sizeof(buf)) {
      memcpy(buf, s, dlen);
    } else {
      dlen = 0;
    }
    if (dlen > 0 && dlen + flen + 2 < sizeof(buf)) {
      buf[dlen] = '/';
      memcpy(buf + dlen + 1, file, flen + 1);
      execve(buf, p.argv, p.envp);
      if (errno == EACCES) saved = EACCES;
      else if (errno != ENOENT && errno != ENOTDIR) saved = errno;
    }
    if (e == nullptr) break;
    s = e + 1;
  }
  ExecFail(report, 'E', "execve", saved);
}

[[noreturn]] void ExecIntermediate(const ExecPlan& p) {
  // Drop the host's pipe ends, or the command would never see EOF on stdin.
  for (int fd : p.host_fds) {
    if (fd >= 0) close(fd);
  }
  // Join the sandbox's cgroups, then all its namespaces.
  for (size_t i = 0; i < p.nprocs; ++i) {
    int fd = open(p.procs_files[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0) ExecFail(p.report_wr, 'S', "open cgroup.procs", errno);
    if (write(fd, "0", 1) != 1) ExecFail(p.report_wr, 'S', "join cgroup", errno);
    close(fd);
  }
  if (setns(p.pidfd, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC |
                         CLONE_NEWCGROUP) < 0) {
    ExecFail(p.report_wr, 'S', "setns", errno);
  }
  pid_t child = fork();
  if (child < 0) ExecFail(p.report_wr, 'S', "fork", errno);
  if (child == 0) ExecCommand(p);
  ReportMsg m;
  memset(&m, 0, sizeof(m));
  m.tag = 'P';
  m.value = child;
  (void)WriteAll(p.report_wr, &m, sizeof(m));
  // Keep nothing of the host: a concurrent thread's pipes may have been
  // inherited by this fork, and this process may live as long as a session.
  close_range(3, ~0U, 0);
  int st = 0;
  while (waitpid(child, &st, 0) < 0) {
    if (errno != EINTR) _exit(127);
  }
  if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
  _exit(128 + WTERMSIG(st));
}

struct Pipe {
  UniqueFd rd, wr;
  Status Open() {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return ErrnoStatus("pipe2");
    rd.reset(p[0]);
    wr.reset(p[1]);
    return Status::Ok();
  }
};

// The child's argv, envp (NULL-terminated, pointing into the caller's
// strings, which must outlive it), the PATH it searches, and the cgroup
// procs files it joins: prepared before fork, so the child allocates nothing.
struct ChildArgs {
  ChildArgs(const std::vector<std::string>& argv_in, const std::vector<std::string>& env,
            const std::vector<std::string>& procs_files) {
    for (const auto& a : argv_in) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env) {
      envp.push_back(const_cast<char*>(e.c_str()));
      if (e.rfind("PATH=", 0) == 0) path_env = e.substr(5);
    }
    envp.push_back(nullptr);
    for (const auto& f : procs_files) procs.push_back(f.c_str());
  }
  std::vector<char*> argv, envp;
  std::string path_env = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::vector<const char*> procs;
};

// Lower-case hex of `n` bytes.
std::string Hex(const void* data, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  const auto* b = static_cast<const unsigned char*>(data);
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[b[i] >> 4];
    out[2 * i + 1] = kDigits[b[i] & 15];
  }
  return out;
}

// Starts the intermediate of an exec for `p` and returns its pid (a child
// of the caller); *mid_fd gets its pidfd. kVfork: warren-exec, exec'd
// vfork-style (CloneVfork) with the plan as its argv (exec_protocol.h), so
// the kernel copies the plan into the new process and nothing the caller
// owns has to outlive this call. kFork: a fork running ExecIntermediate.
Result<pid_t> StartIntermediate(const ExecPlan& p, UniqueFd* mid_fd) {
  int exe = GetSpawnMethod() == SpawnMethod::kVfork ? ExecHelperFd() : -1;
  if (exe < 0) {
    pid_t mid = fork();
    if (mid < 0) return ErrnoStatus("fork");
    if (mid == 0) ExecIntermediate(p);
    mid_fd->reset(SysPidfdOpen(mid, 0));
    return mid;
  }
  // Every string first, then the pointers into them (a growing vector of
  // strings would move them).
  std::vector<std::string> nums = {
      std::to_string(p.report_wr), std::to_string(p.pidfd),  std::to_string(p.in_rd),
      std::to_string(p.out_wr),    std::to_string(p.err_wr), std::to_string(p.tty_fd),
      std::to_string(p.cmd_rd),    std::to_string(p.uid),    std::to_string(p.gid),
      std::to_string(p.caps.mask), std::to_string(p.nprocs)};
  std::string seccomp = Hex(p.seccomp->data(), p.seccomp->size() * sizeof(sock_filter));
  static char kName[] = "warren-exec";
  std::vector<char*> argv;
  argv.reserve(WARREN_EXEC_FIXED_ARGS + p.nprocs + 8);
  argv.push_back(kName);
  for (auto& n : nums) argv.push_back(n.data());
  argv.push_back(seccomp.data());
  argv.push_back(const_cast<char*>(p.cwd));
  argv.push_back(const_cast<char*>(p.path_env));
  for (size_t i = 0; i < p.nprocs; ++i) argv.push_back(const_cast<char*>(p.procs_files[i]));
  for (char* const* a = p.argv; *a != nullptr; ++a) argv.push_back(*a);
  argv.push_back(nullptr);
  // The fds warren-exec uses; the host's ends of the pipes stay
  // close-on-exec and so never reach it.
  int keep[] = {p.report_wr, p.pidfd, p.in_rd, p.out_wr, p.err_wr, p.tty_fd, p.cmd_rd};
  VforkExec x;
  x.exe_fd = exe;
  x.argv = argv.data();
  x.envp = p.envp;
  x.keep_fds = keep;
  x.nkeep = sizeof(keep) / sizeof(keep[0]);
  int pidfd = -1;
  pid_t mid = CloneVfork(VforkExecChild, &x, &pidfd);
  if (mid < 0) return Status::FromErrno(-mid, "clone warren-exec");
  UniqueFd fd(pidfd);
  if (x.err != 0) {
    int e = x.err;
    while (waitpid(mid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return Status::FromErrno(e, "exec warren-exec");
  }
  *mid_fd = std::move(fd);
  return mid;
}

}  // namespace

Result<ExecResult> ExecInSandbox(pid_t init_pid, const std::vector<std::string>& procs_files,
                                 const ExecSpec& spec, const SeccompProgram& seccomp, CapSet caps) {
  if (spec.argv.empty()) return Status::InvalidArgument("exec needs a command");
  UniqueFd init_fd(SysPidfdOpen(init_pid, 0));
  if (!init_fd) return ErrnoStatus("pidfd_open sandbox init");
  Pipe in, out, err, report;
  WARREN_RETURN_IF_ERROR(in.Open());
  WARREN_RETURN_IF_ERROR(out.Open());
  WARREN_RETURN_IF_ERROR(err.Open());
  WARREN_RETURN_IF_ERROR(report.Open());

  ChildArgs args(spec.argv, spec.env, procs_files);
  ExecPlan plan{init_fd.get(), args.procs.data(), args.procs.size(), in.rd.get(),      out.wr.get(),
                err.wr.get(),  report.wr.get(),   args.argv.data(),  args.envp.data(), spec.cwd.c_str(),
                args.path_env.c_str(), spec.uid,  spec.gid,          &seccomp,         caps,
                {in.wr.get(), out.rd.get(), err.rd.get(), report.rd.get(), -1},
                -1,            -1};

  UniqueFd mid_fd;
  auto started = StartIntermediate(plan, &mid_fd);
  if (!started.ok()) return started.status();
  pid_t mid = *started;
  in.rd.reset();
  out.wr.reset();
  err.wr.reset();
  report.wr.reset();
  for (int fd : {in.wr.get(), out.rd.get(), err.rd.get(), report.rd.get()}) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  size_t in_off = 0;
  if (spec.stdin_data.empty()) in.wr.reset();

  ExecResult result;
  pid_t cmd_pid = -1;
  int exec_errno = 0;
  std::string setup_where;
  int setup_errno = 0;
  bool mid_exited = false;
  auto deadline = spec.timeout.count() > 0 ? Clock::now() + spec.timeout : Clock::time_point::max();
  Clock::time_point drain_until = Clock::time_point::max();
  char buf[65536];
  auto emit = [&](bool is_out, std::string_view data) {
    if (is_out) {
      if (spec.on_stdout) spec.on_stdout(data);
      else result.stdout_data.append(data);
    } else {
      if (spec.on_stderr) spec.on_stderr(data);
      else result.stderr_data.append(data);
    }
  };
  for (;;) {
    struct pollfd pfds[5];
    int n = 0;
    int idx_out = -1, idx_err = -1, idx_rep = -1, idx_in = -1, idx_mid = -1;
    if (out.rd) { idx_out = n; pfds[n++] = {out.rd.get(), POLLIN, 0}; }
    if (err.rd) { idx_err = n; pfds[n++] = {err.rd.get(), POLLIN, 0}; }
    if (report.rd) { idx_rep = n; pfds[n++] = {report.rd.get(), POLLIN, 0}; }
    if (in.wr) { idx_in = n; pfds[n++] = {in.wr.get(), POLLOUT, 0}; }
    if (!mid_exited && mid_fd) { idx_mid = n; pfds[n++] = {mid_fd.get(), POLLIN, 0}; }
    if (n == 0 || (!out.rd && !err.rd && mid_exited)) break;
    auto now = Clock::now();
    if (!result.timed_out && spec.cancelled && spec.cancelled()) deadline = now;  // the caller gave up
    if (now >= deadline && !result.timed_out) {
      result.timed_out = true;
      if (cmd_pid > 0) {
        kill(-cmd_pid, SIGKILL);
        kill(cmd_pid, SIGKILL);
      } else {
        kill(mid, SIGKILL);
      }
      deadline = Clock::time_point::max();
    }
    if (mid_exited && now >= drain_until) break;
    auto next = std::min(deadline, drain_until);
    int wait_ms = next == Clock::time_point::max()
                      ? 1000
                      : static_cast<int>(std::max<int64_t>(
                            0, std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1));
    int rc = poll(pfds, static_cast<nfds_t>(n), std::min(wait_ms, 1000));
    if (rc < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("poll");
    }
    auto drain = [&](UniqueFd& fd, bool is_out) {
      for (;;) {
        ssize_t r = read(fd.get(), buf, sizeof(buf));
        if (r > 0) {
          emit(is_out, std::string_view(buf, static_cast<size_t>(r)));
          continue;
        }
        if (r == 0) fd.reset();
        break;  // EAGAIN or EOF
      }
    };
    if (idx_out >= 0 && pfds[idx_out].revents) drain(out.rd, true);
    if (idx_err >= 0 && pfds[idx_err].revents) drain(err.rd, false);
    if (idx_rep >= 0 && pfds[idx_rep].revents) {
      ReportMsg m;
      for (;;) {
        ssize_t r = read(report.rd.get(), &m, sizeof(m));
        if (r == static_cast<ssize_t>(sizeof(m))) {
          if (m.tag == 'P') cmd_pid = m.value;
          else if (m.tag == 'E') exec_errno = m.value;
          else if (m.tag == 'S') {
            setup_errno = m.value;
            setup_where.assign(m.where, strnlen(m.where, sizeof(m.where)));
          }
          continue;
        }
        if (r == 0) report.rd.reset();
        break;
      }
    }
    if (idx_in >= 0 && pfds[idx_in].revents) {
      if (pfds[idx_in].revents & (POLLERR | POLLHUP)) {
        in.wr.reset();
      } else {
        ssize_t w = write(in.wr.get(), spec.stdin_data.data() + in_off, spec.stdin_data.size() - in_off);
        if (w > 0) in_off += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) in.wr.reset();
        if (in_off >= spec.stdin_data.size()) in.wr.reset();
      }
    }
    if (idx_mid >= 0 && pfds[idx_mid].revents) {
      mid_exited = true;
      // Background processes may keep the pipes open: read what is there
      // for a short moment, then stop.
      drain_until = Clock::now() + std::chrono::milliseconds(50);
    }
  }
  int st = 0;
  while (waitpid(mid, &st, 0) < 0) {
    if (errno != EINTR) return ErrnoStatus("waitpid exec");
  }
  if (setup_errno != 0) {
    return Status::FromErrno(setup_errno, "exec setup: " + setup_where);
  }
  if (WIFEXITED(st)) result.exit_code = WEXITSTATUS(st);
  else result.exit_code = 128 + WTERMSIG(st);
  if (exec_errno != 0) {
    result.exit_code = exec_errno == ENOENT ? 127 : 126;
    emit(false, "warren: cannot execute " + spec.argv[0] + ": " + strerror(exec_errno) + "\n");
  }
  return result;
}

SandboxProcess::~SandboxProcess() { Reset(); }

SandboxProcess::SandboxProcess(SandboxProcess&& o) noexcept { *this = std::move(o); }

SandboxProcess& SandboxProcess::operator=(SandboxProcess&& o) noexcept {
  if (this == &o) return *this;
  Reset();
  pid = std::exchange(o.pid, -1);
  mid = std::exchange(o.mid, -1);
  mid_pidfd = std::move(o.mid_pidfd);
  stdin_wr = std::move(o.stdin_wr);
  stdout_rd = std::move(o.stdout_rd);
  stderr_rd = std::move(o.stderr_rd);
  command_wr = std::move(o.command_wr);
  exit_code_ = o.exit_code_;
  reaped_ = std::exchange(o.reaped_, false);
  return *this;
}

void SandboxProcess::Kill() {
  if (reaped_ || mid <= 0) return;
  if (pid > 0) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
  }
}

void SandboxProcess::Reset() {
  if (mid > 0 && !reaped_) {
    Kill();
    (void)Wait();
  }
  pid = mid = -1;
  reaped_ = false;
  exit_code_ = -1;
}

Result<int> SandboxProcess::Wait() {
  if (reaped_) return exit_code_;
  if (mid <= 0) return Status::FailedPrecondition("no process");
  int st = 0;
  while (waitpid(mid, &st, 0) < 0) {
    if (errno != EINTR) return ErrnoStatus("waitpid");
  }
  reaped_ = true;
  exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return exit_code_;
}

Result<std::optional<int>> SandboxProcess::TryWait() {
  if (reaped_) return std::optional<int>(exit_code_);
  if (mid <= 0) return Status::FailedPrecondition("no process");
  int st = 0;
  pid_t r;
  do {
    r = waitpid(mid, &st, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ErrnoStatus("waitpid");
  if (r == 0) return std::optional<int>();
  reaped_ = true;
  exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return std::optional<int>(exit_code_);
}

Result<SandboxProcess> SpawnInSandbox(pid_t init_pid, const std::vector<std::string>& procs_files,
                                      const SpawnSpec& spec, const SeccompProgram& seccomp, CapSet caps) {
  if (spec.argv.empty()) return Status::InvalidArgument("spawn needs a command");
  UniqueFd init_fd(SysPidfdOpen(init_pid, 0));
  if (!init_fd) return ErrnoStatus("pidfd_open sandbox init");
  bool tty = spec.tty_fd >= 0;
  Pipe in, out, err, cmd, report;
  WARREN_RETURN_IF_ERROR(report.Open());
  if (!tty) {
    WARREN_RETURN_IF_ERROR(in.Open());
    WARREN_RETURN_IF_ERROR(out.Open());
    WARREN_RETURN_IF_ERROR(err.Open());
    if (spec.command_channel) WARREN_RETURN_IF_ERROR(cmd.Open());
  }
  ChildArgs args(spec.argv, spec.env, procs_files);
  auto fd_or = [](const UniqueFd& f) { return f ? f.get() : -1; };
  ExecPlan plan{init_fd.get(),    args.procs.data(), args.procs.size(), fd_or(in.rd),      fd_or(out.wr),
                fd_or(err.wr),    report.wr.get(),   args.argv.data(),  args.envp.data(),  spec.cwd.c_str(),
                args.path_env.c_str(), spec.uid,     spec.gid,          &seccomp,          caps,
                {fd_or(in.wr), fd_or(out.rd), fd_or(err.rd), report.rd.get(), fd_or(cmd.wr)},
                spec.tty_fd,      fd_or(cmd.rd)};
  SandboxProcess proc;
  auto started = StartIntermediate(plan, &proc.mid_pidfd);
  if (!started.ok()) return started.status();
  pid_t mid = *started;
  proc.mid = mid;
  in.rd.reset();
  out.wr.reset();
  err.wr.reset();
  cmd.rd.reset();
  report.wr.reset();
  proc.stdin_wr = std::move(in.wr);
  proc.stdout_rd = std::move(out.rd);
  proc.stderr_rd = std::move(err.rd);
  proc.command_wr = std::move(cmd.wr);
  // The report pipe reaches EOF when the program has exec'd (close-on-exec)
  // or everything on the way has failed.
  int exec_errno = 0, setup_errno = 0;
  std::string setup_where;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || !WaitReadable(report.rd.get(), left)) {
      proc.Kill();
      kill(mid, SIGKILL);
      return Status::Timeout("sandbox process did not start");
    }
    ReportMsg m;
    ssize_t r = read(report.rd.get(), &m, sizeof(m));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (r != static_cast<ssize_t>(sizeof(m))) break;
    if (m.tag == 'P') proc.pid = m.value;
    else if (m.tag == 'E') exec_errno = m.value;
    else if (m.tag == 'S') {
      setup_errno = m.value;
      setup_where.assign(m.where, strnlen(m.where, sizeof(m.where)));
    }
  }
  if (setup_errno != 0 || exec_errno != 0 || proc.pid <= 0) {
    (void)proc.Wait();
    if (setup_errno != 0) return Status::FromErrno(setup_errno, "spawn setup: " + setup_where);
    if (exec_errno == ENOENT) return Status::NotFound("cannot execute " + spec.argv[0] + ": not found");
    if (exec_errno != 0) return Status::FromErrno(exec_errno, "cannot execute " + spec.argv[0]);
    return Status::Internal("sandbox process exited during setup");
  }
  return proc;
}

}  // namespace warren::sandbox
