/* escape_probe: a static helper copied into a sandbox by the security suite.
 * `escape_probe <attempt> [arg]` tries one escape technique and exits
 *   0  if the attempt was blocked (prints "blocked: <errno name>"),
 *   1  if it succeeded (prints "ESCAPED"),
 *   2  on usage errors.
 * Static so that it runs in any image. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/btrfs.h>
#include <linux/fs.h>
#include <linux/perf_event.h>
#include <linux/keyctl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int result(long rc) {
  if (rc < 0) {
    /* The errno name first, so the suite can assert the exact errno. */
    const char* name = strerrorname_np(errno);
    printf("blocked: %s (%s)\n", name ? name : "?", strerror(errno));
    return 0;
  }
  printf("ESCAPED\n");
  return 1;
}

/* A valid 1 MiB swap area at `path` (what mkswap writes: version 1 header,
 * last page, "SWAPSPACE2" at the end of the first page), so swapon could
 * only fail for lack of permission: every page written (a swap file may have
 * no holes) and, on btrfs, the file made NOCOW first (btrfs refuses swap on
 * copy-on-write files; chattr +C, FS_IOC_SETFLAGS is not a btrfs ioctl). */
static int make_swapfile(const char* path) {
  int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
  if (fd < 0) return -1;
  int flags = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
    flags |= FS_NOCOW_FL;
    (void)ioctl(fd, FS_IOC_SETFLAGS, &flags); /* not every filesystem has it */
  }
  long page = sysconf(_SC_PAGESIZE);
  unsigned npages = (unsigned)((1 << 20) / page);
  char* buf = calloc(1, (size_t)page);
  if (buf == NULL) return -1;
  unsigned* hdr = (unsigned*)(buf + 1024); /* union swap_header.info */
  hdr[0] = 1;                              /* version */
  hdr[1] = npages - 1;                     /* last_page */
  memcpy(buf + page - 10, "SWAPSPACE2", 10);
  int ok = write(fd, buf, (size_t)page) == page;
  memset(buf, 0, (size_t)page);
  for (unsigned i = 1; ok && i < npages; ++i) ok = write(fd, buf, (size_t)page) == page;
  ok = ok && fsync(fd) == 0;
  free(buf);
  close(fd);
  return ok ? 0 : -1;
}

/* Reads `path` fully (up to 64 KiB) into a static buffer; -1 on error. */
static long slurp(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = 0;
  return (long)n;
}

/* voluntary_ctxt_switches of pid 1 (or -1). */
static long init_switches(void) {
  static char buf[8192];
  if (slurp("/proc/1/status", buf, sizeof(buf)) < 0) return -1;
  char* p = strstr(buf, "voluntary_ctxt_switches:");
  return p ? atol(p + strlen("voluntary_ctxt_switches:")) : -1;
}

/* Whether SIGTERM is still queued for pid 1 (ShdPnd, bit 15 = 0x4000). */
static int init_term_pending(void) {
  static char buf[8192];
  if (slurp("/proc/1/status", buf, sizeof(buf)) < 0) return 0;
  char* p = strstr(buf, "ShdPnd:");
  return p ? (strtoull(p + 7, NULL, 16) & (1ULL << (SIGTERM - 1))) != 0 : 0;
}

/* Sends pid 1 a forged SIGTERM (rt_sigqueueinfo with si_pid 0, as the
 * host's would look, and si_code `code`), waits until pid 1 has handled it
 * and gone back to sleep, then reports whether it forwarded TERM to us
 * (it does so for a request it accepts). SIGTERM is blocked here so a
 * forwarded one stays pending instead of killing the probe. */
static int forge_term(int code, int use_pidfd) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, NULL);
  long before = init_switches();
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  si.si_signo = SIGTERM;
  si.si_code = code;
  si.si_pid = 0;
  si.si_uid = 0;
  long rc;
  if (use_pidfd) {
    int pfd = (int)syscall(SYS_pidfd_open, 1, 0);
    if (pfd < 0) return result(-1);
    rc = syscall(SYS_pidfd_send_signal, pfd, SIGTERM, &si, 0);
  } else {
    rc = syscall(SYS_rt_sigqueueinfo, 1, SIGTERM, &si);
  }
  if (rc < 0) return result(-1);
  /* Delivered: wait (bounded by iterations, not time) until pid 1 woke up
   * for it and went back to sleep. */
  for (long i = 0; i < 2000000 && (init_switches() <= before || init_term_pending()); ++i) sched_yield();
  if (init_switches() <= before || init_term_pending()) {
    printf("init did not wake up\n");
    return 2;
  }
  sigset_t pending;
  sigpending(&pending);
  if (kill(1, 0) != 0 || sigismember(&pending, SIGTERM)) {
    printf("ESCAPED: pid 1 took the forged TERM\n");
    return 1;
  }
  printf("ignored: delivered, pid 1 still running and forwarded nothing\n");
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* a = argv[1];
  const char* arg = argc > 2 ? argv[2] : "";
  /* The mount point exists, so only the permission check can refuse. */
  if (!strncmp(a, "mount_", 6)) (void)mkdir("/mnt", 0755);
  if (!strcmp(a, "mount_tmpfs")) return result(mount("none", "/mnt", "tmpfs", 0, NULL));
  if (!strcmp(a, "mount_bind_root")) return result(mount("/", "/mnt", NULL, MS_BIND | MS_REC, NULL));
  if (!strcmp(a, "umount_proc_mask")) return result(umount2("/proc/kcore", MNT_DETACH));
  if (!strcmp(a, "unshare_user")) return result(unshare(CLONE_NEWUSER));
  if (!strcmp(a, "unshare_mount")) return result(unshare(CLONE_NEWNS));
  if (!strcmp(a, "clone_newuser")) {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    return result(pid);
  }
  if (!strcmp(a, "setns_host")) {
    /* Its own mount namespace: the open succeeds (pid 1 is not dumpable,
     * so /proc/1/ns would fail at the open), leaving setns to refuse. */
    int fd = open("/proc/self/ns/mnt", O_RDONLY);
    if (fd < 0) return 2;
    return result(setns(fd, 0));
  }
  if (!strcmp(a, "chroot")) return result(chroot("/tmp"));
  if (!strcmp(a, "pivot_root")) return result(syscall(SYS_pivot_root, "/tmp", "/tmp"));
  if (!strcmp(a, "ptrace_pid")) return result(ptrace(PTRACE_ATTACH, atoi(arg), 0, 0));
  if (!strcmp(a, "kill_pid")) return result(kill(atoi(arg), SIGKILL));
  if (!strcmp(a, "raw_socket")) return result(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  if (!strcmp(a, "packet_socket")) return result(socket(AF_PACKET, SOCK_RAW, 0));
  if (!strcmp(a, "mknod_block")) return result(mknod("/tmp/blk", S_IFBLK | 0600, makedev(8, 0)));
  if (!strcmp(a, "mknod_char_mem")) return result(mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1)));
  if (!strcmp(a, "add_key")) return result(syscall(SYS_add_key, "user", "x", "y", 1, KEY_SPEC_USER_KEYRING));
  if (!strcmp(a, "keyctl")) return result(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
  if (!strcmp(a, "init_module")) {
    /* arg: a kernel module file (a real .ko from the host when it has one)
     * or, without one, a buffer that starts like an ELF object: either way
     * the kernel would parse it if the call were let through. */
    static char image[1 << 20];
    long n = arg[0] ? slurp(arg, image, sizeof(image)) : -1;
    if (n <= 0) {
      memcpy(image, "\177ELF\2\1\1", 7);
      n = 4096;
    }
    return result(syscall(SYS_init_module, image, (unsigned long)n, ""));
  }
  if (!strcmp(a, "finit_module")) {
    int fd = open("/bin/busybox", O_RDONLY);
    return result(syscall(SYS_finit_module, fd, "", 0));
  }
  if (!strcmp(a, "delete_module")) return result(syscall(SYS_delete_module, "loop", O_NONBLOCK));
  if (!strcmp(a, "kexec_load")) return result(syscall(SYS_kexec_load, 0, 0, NULL, 0));
  if (!strcmp(a, "bpf")) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    return result(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
  }
  if (!strcmp(a, "perf_event_open")) {
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof(pe));
    pe.type = PERF_TYPE_SOFTWARE;
    pe.size = sizeof(pe);
    pe.config = PERF_COUNT_SW_CPU_CLOCK;
    return result(syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
  }
  if (!strcmp(a, "userfaultfd")) return result(syscall(SYS_userfaultfd, 0));
  if (!strcmp(a, "io_uring")) {
    char params[120];
    memset(params, 0, sizeof(params));
    return result(syscall(SYS_io_uring_setup, 4, params));
  }
  if (!strcmp(a, "open_by_handle_at")) {
    char h[sizeof(struct file_handle) + 8];
    memset(h, 0, sizeof(h));
    ((struct file_handle*)h)->handle_bytes = 8;
    return result(syscall(SYS_open_by_handle_at, AT_FDCWD, h, O_RDONLY));
  }
  if (!strcmp(a, "iopl")) return result(iopl(3));
  if (!strcmp(a, "ioperm")) return result(ioperm(0x80, 1, 1));
  if (!strcmp(a, "swapon")) {
    if (make_swapfile("/tmp/swap") != 0) return 2;
    return result(swapon("/tmp/swap", 0));
  }
  if (!strcmp(a, "forge_term_sigqueue")) return forge_term(SI_QUEUE, 0);
  if (!strcmp(a, "forge_term_pidfd")) return forge_term(SI_QUEUE, 1);
  if (!strcmp(a, "forge_term_si_user")) return forge_term(SI_USER, 0);
  if (!strcmp(a, "btrfs_subvol_create")) {
    /* arg: directory on the sandbox's btrfs rootfs. */
    int fd = open(arg, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return 2;
    struct btrfs_ioctl_vol_args va;
    memset(&va, 0, sizeof(va));
    strcpy(va.name, "nested");
    return result(ioctl(fd, BTRFS_IOC_SUBVOL_CREATE, &va));
  }
  if (!strcmp(a, "btrfs_snapshot")) {
    /* Snapshot of the rootfs subvolume ("/") into `arg`. */
    int src = open("/", O_RDONLY | O_DIRECTORY);
    int dst = open(arg, O_RDONLY | O_DIRECTORY);
    if (src < 0 || dst < 0) return 2;
    struct btrfs_ioctl_vol_args_v2 va;
    memset(&va, 0, sizeof(va));
    va.fd = src;
    strcpy(va.name, "snap");
    return result(ioctl(dst, BTRFS_IOC_SNAP_CREATE_V2, &va));
  }
  if (!strcmp(a, "btrfs_snapshot_of")) {
    /* Snapshot of the subvolume at `arg` (a volume's root) into itself. */
    int fd = open(arg, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return 2;
    struct btrfs_ioctl_vol_args_v2 va;
    memset(&va, 0, sizeof(va));
    va.fd = fd;
    strcpy(va.name, "snap");
    return result(ioctl(fd, BTRFS_IOC_SNAP_CREATE_V2, &va));
  }
  if (!strcmp(a, "fill")) {
    /* arg: a file to write 1 MiB at a time, each chunk synced, up to 64 MiB.
     * Prints "blocked: <errno>" at the first failing write or fsync, else
     * "filled 64 MiB" (exit 1). */
    static char chunk[1 << 20];
    memset(chunk, 'q', sizeof(chunk));
    int fd = open(arg, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0) return 2;
    for (int i = 0; i < 64; ++i) {
      size_t off = 0;
      while (off < sizeof(chunk)) {
        ssize_t w = write(fd, chunk + off, sizeof(chunk) - off);
        if (w < 0) return result(-1);
        off += (size_t)w;
      }
      if (fsync(fd) != 0) return result(-1);
    }
    printf("filled 64 MiB\n");
    return 1;
  }
  if (!strcmp(a, "btrfs_qgroup_create")) {
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    struct btrfs_ioctl_qgroup_create_args qa;
    memset(&qa, 0, sizeof(qa));
    qa.create = 1;
    qa.qgroupid = (1ULL << 48) | 77; /* a level-1 group */
    return result(ioctl(fd, BTRFS_IOC_QGROUP_CREATE, &qa));
  }
  if (!strcmp(a, "btrfs_qgroup_limit")) {
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    struct btrfs_ioctl_qgroup_limit_args la;
    memset(&la, 0, sizeof(la));
    la.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    la.lim.max_rfer = 0; /* lift our own limit */
    return result(ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &la));
  }
  if (!strcmp(a, "btrfs_subvol_setflags")) {
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    unsigned long long flags = 0;
    return result(ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags));
  }
  if (!strcmp(a, "reflink")) {
    /* FICLONE stays allowed (cp --reflink): clone a file onto a new one. */
    int s = open("/tmp/reflink-src", O_CREAT | O_TRUNC | O_RDWR, 0600);
    int d = open("/tmp/reflink-dst", O_CREAT | O_TRUNC | O_RDWR, 0600);
    char blk[4096];
    memset(blk, 'r', sizeof(blk));
    if (s < 0 || d < 0 || write(s, blk, sizeof(blk)) != (ssize_t)sizeof(blk) || fsync(s) != 0) return 2;
    if (ioctl(d, FICLONE, s) != 0) {
      printf("failed: %s\n", strerrorname_np(errno));
      return 1;
    }
    printf("cloned\n");
    return 0;
  }
  if (!strcmp(a, "reboot")) return result(reboot(RB_POWER_OFF));
  if (!strcmp(a, "clock_settime")) {
    struct timespec ts = {0, 0};
    return result(clock_settime(CLOCK_REALTIME, &ts));
  }
  if (!strcmp(a, "sethostname")) return result(sethostname("escaped", 7));
  if (!strcmp(a, "syslog")) return result(syscall(SYS_syslog, 3, NULL, 0));
  if (!strcmp(a, "write_file")) {
    /* arg: path; write must fail */
    int fd = open(arg, O_WRONLY);
    if (fd < 0) return result(-1);
    return result(write(fd, "1", 1));
  }
  /* arg: a device node the host has (default /dev/mem). */
  if (!strcmp(a, "open_dev_mem")) return result(open(arg[0] ? arg : "/dev/mem", O_RDONLY));
  if (!strcmp(a, "setuid_host_root")) {
    /* uid 0 inside is not host root: chown to an id outside the map fails. */
    int fd = open("/tmp/own", O_CREAT | O_WRONLY, 0600);
    if (fd < 0) return 2;
    return result(fchown(fd, 70000, 70000));
  }
  fprintf(stderr, "unknown attempt %s\n", a);
  return 2;
}
