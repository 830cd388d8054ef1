// warren-init: the tiny pid 1 of every Warren sandbox.
//
// The runtime builds the sandbox (namespaces, mounts, pivot_root, hostname,
// no_new_privs, no capabilities) in a forked copy of itself, then that copy
// execs this program from a memfd (the bytes are embedded in the runtime, so
// no image needs to contain it). Its only jobs (bar §4.1):
//  - reap zombies: every orphan in the pid namespace is reparented here;
//  - exit on request: a SIGTERM sent from outside the sandbox (si_code ==
//    SI_USER and si_pid == 0: the sender is in an ancestor pid namespace) is forwarded to every
//    process in the sandbox; the init exits once they are all gone, or at
//    once on a second request (then everything left is SIGKILLed: when pid 1
//    of a pid namespace exits, the kernel kills the rest);
//  - ignore everything else, including SIGTERM sent from inside the sandbox
//    (a sandboxed process cannot stop its own sandbox), as pid 1 should.
// Freestanding: raw system calls, no libc, statically linked, a few KB.
#include <asm/siginfo.h>
#include <asm/unistd.h>
#include <linux/errno.h>
#include <linux/prctl.h>
#include <linux/signal.h>
#include <linux/time.h>
#include <linux/wait.h>

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
#error "warren-init: unsupported architecture"
#endif
}

#define SYS(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0)

static void reap(void) {
  // wait4(-1, NULL, WNOHANG | __WALL, NULL) until nothing is left to reap.
  while (SYS(__NR_wait4, -1, 0, WNOHANG | __WALL, 0) > 0) {
  }
}

// True when no other process is left in the pid namespace: kill(-1, 0)
// from pid 1 addresses every process of the namespace but itself.
static int alone(void) { return SYS(__NR_kill, -1, 0, 0, 0) == -ESRCH; }

__attribute__((noreturn)) static void finish(int code) {
  for (;;) SYS(__NR_exit_group, code, 0, 0, 0);
}

__attribute__((noreturn, used)) void warren_init_main(void) {
  SYS(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0);  // reset by execve; keep /proc/1/mem closed
  static const char name[16] = "warren-init";
  SYS(__NR_prctl, PR_SET_NAME, name, 0, 0);
  unsigned long all = ~0UL;
  SYS(__NR_rt_sigprocmask, SIG_BLOCK, &all, 0, sizeof(all));
  int requests = 0;
  for (;;) {
    siginfo_t info;
    struct __kernel_timespec poll = {0, 50 * 1000 * 1000};
    // While shutting down, wake up periodically: processes that joined the
    // sandbox through setns are not our children until their parent exits.
    long sig = SYS(__NR_rt_sigtimedwait, &all, &info, requests ? &poll : 0, sizeof(all));
    // The host's request is kill()/pidfd_send_signal() without info: the
    // kernel fills si_code = SI_USER and si_pid = 0 (the sender is outside
    // our pid namespace). rt_sigqueueinfo/rt_tgsigqueueinfo and
    // pidfd_send_signal with info let a sandbox process choose si_pid, but
    // the kernel refuses si_code >= 0 (SI_USER is 0) from any process but
    // the target itself, so SI_USER with si_pid 0 cannot be forged inside.
    if (sig == SIGTERM && info.si_code == SI_USER && info.si_pid == 0) {
      ++requests;
      if (requests > 1) {
        SYS(__NR_kill, -1, SIGKILL, 0, 0);
        finish(0);
      }
      SYS(__NR_kill, -1, SIGTERM, 0, 0);
    }
    reap();
    if (requests && alone()) finish(0);
  }
}

#if defined(__x86_64__)
__asm__(".text\n.global _start\n_start:\n xor %rbp, %rbp\n and $-16, %rsp\n call warren_init_main\n hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n.global _start\n_start:\n mov x29, #0\n mov x30, #0\n bl warren_init_main\n");
#endif
