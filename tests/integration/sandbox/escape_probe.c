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
#include <linux/perf_event.h>
#include <linux/keyctl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
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
    printf("blocked: %s\n", strerror(errno));
    return 0;
  }
  printf("ESCAPED\n");
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* a = argv[1];
  const char* arg = argc > 2 ? argv[2] : "";
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
    int fd = open("/proc/1/ns/mnt", O_RDONLY);
    if (fd < 0) return result(-1);
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
  if (!strcmp(a, "init_module")) return result(syscall(SYS_init_module, "", 0, ""));
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
  if (!strcmp(a, "swapon")) return result(swapon("/tmp/swap", 0));
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
  if (!strcmp(a, "open_dev_mem")) return result(open("/dev/mem", O_RDONLY));
  if (!strcmp(a, "setuid_host_root")) {
    /* uid 0 inside is not host root: chown to an id outside the map fails. */
    int fd = open("/tmp/own", O_CREAT | O_WRONLY, 0600);
    if (fd < 0) return 2;
    return result(fchown(fd, 70000, 70000));
  }
  fprintf(stderr, "unknown attempt %s\n", a);
  return 2;
}
