// warren-exec: the host-side intermediate of every exec into a Warren sandbox.
//
// Why a separate program: the runtime lives in a large multi-threaded server.
// A fork() of it copies its page tables (tens of MB of them at a few GB) and,
// while the copy lives, makes every page the server writes fault and be
// copied again. The intermediate of an exec lives as long as the command (a
// session's runner: seconds to hours). So the runtime does not fork: it
// starts this program with clone(CLONE_VM | CLONE_VFORK) + execveat (the
// posix_spawn technique, process.cc), and everything that must happen in a
// process of its own happens here, in a few KB of memory that belong to it:
//  - join the sandbox's cgroups (cgroup.procs) and then all its namespaces
//    through the init's pidfd. setns(CLONE_NEWUSER) refuses a process whose
//    mm is shared (mm_users > 1) or whose fs_struct is shared, which is why
//    the runtime's vfork-style child cannot do it itself;
//  - fork the command (the pid namespace applies to children only; a fork of
//    this program copies a few pages), which sets its stdio, session,
//    capabilities, ids, cwd, no_new_privs and seccomp filter and execs;
//  - report the command's pid (or why it failed) on the report pipe, close
//    everything, wait for the command and exit with its status.
// The server's memory is never mapped in any process that joins the sandbox:
// this program's own mm is fresh (execve), so even before the command's
// execve nothing of the server can be read from inside the sandbox. It also
// marks itself non-dumpable, so a process that shares its credentials
// cannot open /proc/<pid>/mem (it is not in the sandbox's pid namespace
// anyway: setns(CLONE_NEWPID) only moves children).
//
// The argv layout and the report records are in exec_protocol.h.
// Freestanding: raw system calls, no libc, statically linked, a few KB.
#include <asm/ioctls.h>
#include <asm/unistd.h>
#include <linux/capability.h>
#include <linux/errno.h>
#include <linux/fcntl.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>

#include "exec_protocol.h"

static long sys6(long n, long a, long b, long c, long d, long e) {
#if defined(__x86_64__)
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
  return x0;
#else
#error "warren-exec: unsupported architecture"
#endif
}

#define SYS(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0)
#define SYS5(n, a, b, c, d, e) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e))

// The compiler may emit calls to these for struct copies and zeroing.
void* memset(void* d, int c, size_t n) {
  volatile unsigned char* p = d;
  while (n--) *p++ = (unsigned char)c;
  return d;
}
void* memcpy(void* d, const void* s, size_t n) {
  volatile unsigned char* p = d;
  const unsigned char* q = s;
  while (n--) *p++ = *q++;
  return d;
}

static size_t slen(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

__attribute__((noreturn)) static void finish(int code) {
  for (;;) SYS(__NR_exit_group, code, 0, 0, 0);
}

// Writes all of buf; EINTR-safe. Errors are ignored (the reader is gone).
static void write_all(int fd, const void* buf, size_t n) {
  const char* p = buf;
  while (n > 0) {
    long w = SYS(__NR_write, fd, p, n, 0);
    if (w == -EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

__attribute__((noreturn)) static void fail(int report, char tag, const char* where, long err) {
  struct warren_exec_report m;
  memset(&m, 0, sizeof(m));
  m.tag = tag;
  m.value = (int32_t)(err < 0 ? -err : err);
  if (m.value == 0) m.value = EIO;
  size_t n = slen(where);
  if (n > sizeof(m.where) - 1) n = sizeof(m.where) - 1;
  memcpy(m.where, where, n);
  if (report >= 0) write_all(report, &m, sizeof(m));
  finish(127);
}

// Parses a decimal (optionally negative) number; 0 on success.
static int parse_num(const char* s, int64_t* out) {
  int neg = 0;
  uint64_t v = 0;
  if (*s == '-') {
    neg = 1;
    ++s;
  }
  if (*s == '\0') return -1;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return -1;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = neg ? -(int64_t)v : (int64_t)v;
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// BPF_MAXINSNS: the largest classic filter the kernel accepts.
static struct sock_filter filter[4096];

// Kernel struct for rt_sigaction (not libc's).
struct ksigaction {
  void* handler;
  unsigned long flags;
  void* restorer;
  unsigned long mask;
};

// Every signal back to SIG_DFL: dispositions the server set to SIG_IGN
// survive execve (SIGPIPE, and SIGCHLD would break wait4), and neither this
// program nor the command should inherit them.
static void default_signals(void) {
  struct ksigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == 9 || sig == 19) continue;  // SIGKILL, SIGSTOP
    SYS(__NR_rt_sigaction, sig, &dfl, 0, sizeof(unsigned long));
  }
}

static void set_mask(unsigned long mask) { SYS(__NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &mask, 0, sizeof(mask)); }

// Drops every capability outside `keep` from the bounding set, clears
// ambient, and sets permitted = effective = inheritable = keep (intersected
// with what the process has). Mirrors caps.cc ApplyCapabilities. 0 or -errno.
static long apply_caps(uint64_t keep) {
  for (int c = 0; c < 64; ++c) {
    if ((keep >> c) & 1) continue;
    long rc = SYS(__NR_prctl, PR_CAPBSET_DROP, c, 0, 0);
    if (rc == -EINVAL && c > CAP_LAST_CAP) break;
    if (rc != 0 && rc != -EINVAL) return rc;
  }
  long rc = SYS(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0);
  if (rc != 0 && rc != -EINVAL) return rc;
  struct __user_cap_header_struct hdr;
  struct __user_cap_data_struct data[2];
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  hdr.pid = 0;
  rc = SYS(__NR_capget, &hdr, data, 0, 0);
  if (rc != 0) return rc;
  for (int i = 0; i < 2; ++i) {
    uint32_t k = (uint32_t)(keep >> (32 * i));
    data[i].permitted &= k;
    data[i].effective &= k;
    data[i].inheritable &= k;
  }
  return SYS(__NR_capset, &hdr, data, 0, 0);
}

struct plan {
  int report, pidfd, in_rd, out_wr, err_wr, tty_fd, cmd_rd;
  uint32_t uid, gid;
  uint64_t caps;
  size_t nfilter;
  const char* cwd;
  const char* path;
  char** argv;
  char** envp;
};

// Runs in the forked child, inside the sandbox's namespaces: the command.
__attribute__((noreturn)) static void command(const struct plan* p) {
  int report = p->report;
  SYS(__NR_setsid, 0, 0, 0, 0);
  long rc;
  if (p->tty_fd >= 0) {
    rc = SYS(__NR_ioctl, p->tty_fd, TIOCSCTTY, 0, 0);
    if (rc < 0) fail(report, 'S', "TIOCSCTTY", rc);
    for (int fd = 0; fd < 3; ++fd) {
      rc = p->tty_fd == fd ? SYS(__NR_fcntl, fd, F_SETFD, 0, 0) : SYS(__NR_dup3, p->tty_fd, fd, 0, 0);
      if (rc < 0) fail(report, 'S', "dup2 tty", rc);
    }
  } else {
    int src[3] = {p->in_rd, p->out_wr, p->err_wr};
    // A source that sits on a lower target fd would be clobbered before it
    // is used: move all three out of the way first.
    for (int i = 0; i < 3; ++i) {
      src[i] = (int)SYS(__NR_fcntl, src[i], F_DUPFD_CLOEXEC, 64, 0);
      if (src[i] < 0) fail(report, 'S', "dup2", src[i]);
    }
    for (int fd = 0; fd < 3; ++fd) {
      rc = SYS(__NR_dup3, src[fd], fd, 0, 0);
      if (rc < 0) fail(report, 'S', "dup2", rc);
    }
  }
  // Move the report pipe and the command channel out of the way first, so
  // placing one on 3 or 4 cannot clobber the other.
  int cmd = -1;
  if (p->cmd_rd >= 0) {
    cmd = (int)SYS(__NR_fcntl, p->cmd_rd, F_DUPFD_CLOEXEC, 64, 0);
    if (cmd < 0) fail(report, 'S', "dup command channel", cmd);
  }
  int high = (int)SYS(__NR_fcntl, report, F_DUPFD_CLOEXEC, 64, 0);
  if (high < 0) fail(report, 'S', "dup report", high);
  report = high;
  rc = SYS(__NR_dup3, report, 3, O_CLOEXEC, 0);
  if (rc < 0) fail(report, 'S', "dup3", rc);
  report = 3;
  if (cmd >= 0) {
    rc = SYS(__NR_dup3, cmd, 4, 0, 0);
    if (rc < 0) fail(report, 'S', "dup2 command channel", rc);
  }
  SYS(__NR_close_range, cmd >= 0 ? 5 : 4, ~0U, 0, 0);
  set_mask(0);
  rc = apply_caps(p->caps);
  if (rc < 0) fail(report, 'S', "capabilities", rc);
  rc = SYS(__NR_setgroups, 0, 0, 0, 0);
  if (rc < 0) fail(report, 'S', "setgroups", rc);
  rc = SYS(__NR_setresgid, p->gid, p->gid, p->gid, 0);
  if (rc < 0) fail(report, 'S', "setgid", rc);
  rc = SYS(__NR_setresuid, p->uid, p->uid, p->uid, 0);
  if (rc < 0) fail(report, 'S', "setuid", rc);
  rc = SYS(__NR_chdir, p->cwd, 0, 0, 0);
  if (rc < 0) fail(report, 'S', "chdir", rc);
  rc = SYS(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0);
  if (rc < 0) fail(report, 'S', "no_new_privs", rc);
  if (p->nfilter > 0) {
    struct sock_fprog prog;
    prog.len = (unsigned short)p->nfilter;
    prog.filter = filter;
    rc = SYS(__NR_prctl, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0);
    if (rc < 0) fail(report, 'S', "seccomp", rc);
  }
  const char* file = p->argv[0];
  size_t flen = slen(file);
  for (size_t i = 0; i < flen; ++i) {
    if (file[i] == '/') {
      rc = SYS(__NR_execve, file, p->argv, p->envp, 0);
      fail(report, 'E', "execve", rc);
    }
  }
  // PATH search, execvp-style: EACCES wins over ENOENT, other errors stick.
  long saved = -ENOENT;
  char buf[4096];
  const char* s = p->path;
  for (;;) {
    const char* e = s;
    while (*e != '\0' && *e != ':') ++e;
    size_t dlen = (size_t)(e - s);
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
      rc = SYS(__NR_execve, buf, p->argv, p->envp, 0);
      if (rc == -EACCES) saved = -EACCES;
      else if (rc != -ENOENT && rc != -ENOTDIR) saved = rc;
    }
    if (*e == '\0') break;
    s = e + 1;
  }
  fail(report, 'E', "execve", saved);
}

__attribute__((noreturn, used)) void warren_exec_main(long* sp) {
  int argc = (int)sp[0];
  char** argv = (char**)(sp + 1);
  char** envp = argv + argc + 1;
  static const char name[16] = "warren-exec";
  SYS(__NR_prctl, PR_SET_NAME, name, 0, 0);
  SYS(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0);
  default_signals();
  // The runtime blocked every signal around the clone; the mask survived
  // execve. From here on default dispositions apply (a SIGKILL from the
  // runtime was never blockable).
  set_mask(0);

  int64_t v[WARREN_EXEC_FIXED_ARGS] = {0};
  int report = -1;
  if (argc < WARREN_EXEC_FIXED_ARGS + 1 || parse_num(argv[1], &v[1]) != 0) fail(-1, 'S', "plan", EINVAL);
  report = (int)v[1];
  for (int i = 2; i <= 11; ++i) {
    if (parse_num(argv[i], &v[i]) != 0) fail(report, 'S', "plan", EINVAL);
  }
  // The report pipe goes back to close-on-exec: the command's copy must
  // close when it execs (the runtime waits for that EOF).
  SYS(__NR_fcntl, report, F_SETFD, FD_CLOEXEC, 0);
  struct plan p;
  p.report = report;
  p.pidfd = (int)v[2];
  p.in_rd = (int)v[3];
  p.out_wr = (int)v[4];
  p.err_wr = (int)v[5];
  p.tty_fd = (int)v[6];
  p.cmd_rd = (int)v[7];
  p.uid = (uint32_t)v[8];
  p.gid = (uint32_t)v[9];
  p.caps = (uint64_t)v[10];
  int64_t nprocs = v[11];
  if (nprocs < 0 || argc < WARREN_EXEC_FIXED_ARGS + nprocs + 1) fail(report, 'S', "plan", EINVAL);
  const char* hex = argv[12];
  size_t hlen = slen(hex);
  if (hlen % (2 * sizeof(struct sock_filter)) != 0 || hlen / 2 > sizeof(filter)) fail(report, 'S', "seccomp plan", EINVAL);
  unsigned char* out = (unsigned char*)filter;
  for (size_t i = 0; i < hlen; i += 2) {
    int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
    if (hi < 0 || lo < 0) fail(report, 'S', "seccomp plan", EINVAL);
    out[i / 2] = (unsigned char)(hi * 16 + lo);
  }
  p.nfilter = hlen / 2 / sizeof(struct sock_filter);
  p.cwd = argv[13];
  p.path = argv[14];
  p.argv = argv + WARREN_EXEC_FIXED_ARGS + nprocs;
  p.envp = envp;

  // Join the sandbox's cgroups, then all its namespaces.
  for (int64_t i = 0; i < nprocs; ++i) {
    long fd = SYS(__NR_openat, AT_FDCWD, argv[WARREN_EXEC_FIXED_ARGS + i], O_WRONLY | O_CLOEXEC, 0);
    if (fd < 0) fail(report, 'S', "open cgroup.procs", fd);
    long w = SYS(__NR_write, fd, "0", 1, 0);
    if (w != 1) fail(report, 'S', "join cgroup", w < 0 ? w : -EIO);
    SYS(__NR_close, fd, 0, 0, 0);
  }
  long rc = SYS(__NR_setns, p.pidfd,
                CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP,
                0, 0);
  if (rc < 0) fail(report, 'S', "setns", rc);
  long child = SYS5(__NR_clone, 17 /* SIGCHLD */, 0, 0, 0, 0);
  if (child < 0) fail(report, 'S', "fork", child);
  if (child == 0) command(&p);
  struct warren_exec_report m;
  memset(&m, 0, sizeof(m));
  m.tag = 'P';
  m.value = (int32_t)child;
  write_all(report, &m, sizeof(m));
  // Keep nothing: this process may live as long as a session.
  SYS(__NR_close_range, 3, ~0U, 0, 0);
  int st = 0;
  for (;;) {
    long r = SYS(__NR_wait4, child, &st, 0, 0);
    if (r == child) break;
    if (r != -EINTR) finish(127);
  }
  if ((st & 0x7f) == 0) finish((st >> 8) & 0xff);
  finish(128 + (st & 0x7f));
}

#if defined(__x86_64__)
__asm__(".text\n.global _start\n_start:\n xor %rbp, %rbp\n mov %rsp, %rdi\n and $-16, %rsp\n call warren_exec_main\n hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n.global _start\n_start:\n mov x29, #0\n mov x30, #0\n mov x0, sp\n bl warren_exec_main\n");
#endif
