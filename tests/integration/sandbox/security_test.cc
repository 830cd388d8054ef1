// The security suite: escape attempts from inside a sandbox, each of which
// must be contained. Many run the static escape_probe helper, copied into the
// sandbox through the file API, so that each syscall is tried directly.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <filesystem>

#include "harness.h"

#ifndef WARREN_ESCAPE_PROBE
#define WARREN_ESCAPE_PROBE ""
#endif

namespace warren::sandbox::testing {
namespace {

class SecurityTest : public RuntimeTest {
 protected:
  void SetUp() override {
    RuntimeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    sb_ = MustCreate();
    auto fs = rt_->Files(sb_.id);
    ASSERT_TRUE(fs.ok());
    ASSERT_TRUE(fs->CopyIn(WARREN_ESCAPE_PROBE, "/usr/bin/probe").ok()) << WARREN_ESCAPE_PROBE;
    marker_ = "/tmp/warren-secret-" + NewId("", 8);
    ASSERT_TRUE(WriteStringToFile(marker_, "host-secret").ok());
  }
  void TearDown() override {
    if (!marker_.empty()) unlink(marker_.c_str());
    RuntimeTest::TearDown();
  }
  // Runs the probe, set up so the call would succeed if it were allowed,
  // and expects it blocked with exactly `errname`: any other errno (an
  // ENOENT or EINVAL that only proves a bad argument) fails the test.
  void ExpectErrno(const std::string& attempt, const std::string& errname, const std::string& arg = "") {
    ExecRequest req;
    req.argv = {"/usr/bin/probe", attempt};
    if (!arg.empty()) req.argv.push_back(arg);
    auto r = rt_->Exec(sb_.id, req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->exit_code, 0) << attempt << ": " << r->stdout_data << r->stderr_data;
    EXPECT_NE(r->stdout_data.find("blocked: " + errname + " "), std::string::npos)
        << attempt << ": " << r->stdout_data << r->stderr_data;
  }
  SandboxRecord sb_;
  std::string marker_;
};

// --- mount namespace and filesystem ---
TEST_F(SecurityTest, MountTmpfs) { ExpectErrno("mount_tmpfs", "EPERM"); }
TEST_F(SecurityTest, BindMountRoot) { ExpectErrno("mount_bind_root", "EPERM"); }
TEST_F(SecurityTest, UnmaskProcByUmount) { ExpectErrno("umount_proc_mask", "EPERM"); }
TEST_F(SecurityTest, Chroot) { ExpectErrno("chroot", "EPERM"); }
TEST_F(SecurityTest, PivotRoot) { ExpectErrno("pivot_root", "EPERM"); }
TEST_F(SecurityTest, SetnsIntoInitMountNs) { ExpectErrno("setns_host", "EPERM"); }
TEST_F(SecurityTest, NewUserNamespace) { ExpectErrno("unshare_user", "EPERM"); }
TEST_F(SecurityTest, NewMountNamespace) { ExpectErrno("unshare_mount", "EPERM"); }
TEST_F(SecurityTest, CloneNewUser) { ExpectErrno("clone_newuser", "EPERM"); }

// --- devices ---
TEST_F(SecurityTest, MknodBlockDevice) { ExpectErrno("mknod_block", "EPERM"); }
TEST_F(SecurityTest, MknodMemDevice) { ExpectErrno("mknod_char_mem", "EPERM"); }
// A device node the host has (/dev/mem, else its first disk or loop
// control): the sandbox's /dev is a tmpfs without it, and the node cannot be
// made (MknodMemDevice: EPERM), so the open finds nothing.
TEST_F(SecurityTest, OpenDevMem) {
  std::string dev;
  for (const char* d : {"/dev/mem", "/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/loop-control"}) {
    if (access(d, F_OK) == 0) {
      dev = d;
      break;
    }
  }
  if (dev.empty()) GTEST_SKIP() << "the host has none of the device nodes tried";
  ExpectErrno("open_dev_mem", "ENOENT", dev);
}
TEST_F(SecurityTest, OnlyMinimalDev) {
  auto r = Sh(sb_.id, "ls /dev | tr '\\n' ' '");
  EXPECT_EQ(r.stdout_data, "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ");
}
TEST_F(SecurityTest, Iopl) { ExpectErrno("iopl", "EPERM"); }
TEST_F(SecurityTest, Ioperm) { ExpectErrno("ioperm", "EPERM"); }

// --- kernel ---
// The probe hands the kernel a real module of the running kernel when the
// host has one (copied in), else an ELF header. Seccomp, and behind it the
// kernel's CAP_SYS_MODULE check, refuse with EPERM before the image is
// looked at: a bad image could only give ENOEXEC/EINVAL, which fails here.
TEST_F(SecurityTest, InitModule) {
  std::string mod;
  struct utsname u;
  std::error_code ec;
  if (uname(&u) == 0) {
    for (auto it = std::filesystem::recursive_directory_iterator(std::string("/lib/modules/") + u.release, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->path().extension() == ".ko" && it->is_regular_file(ec) && it->file_size(ec) < (1u << 20)) {
        mod = it->path();
        break;
      }
    }
  }
  if (!mod.empty()) {
    auto fs = rt_->Files(sb_.id);
    ASSERT_TRUE(fs.ok());
    ASSERT_TRUE(fs->CopyIn(mod, "/tmp/probe.ko").ok()) << mod;
    ExpectErrno("init_module", "EPERM", "/tmp/probe.ko");
    return;
  }
  ExpectErrno("init_module", "EPERM");
}
TEST_F(SecurityTest, FinitModule) { ExpectErrno("finit_module", "EPERM"); }
TEST_F(SecurityTest, DeleteModule) { ExpectErrno("delete_module", "EPERM"); }
TEST_F(SecurityTest, KexecLoad) { ExpectErrno("kexec_load", "EPERM"); }
TEST_F(SecurityTest, Bpf) { ExpectErrno("bpf", "EPERM"); }
TEST_F(SecurityTest, PerfEventOpen) { ExpectErrno("perf_event_open", "EPERM"); }
TEST_F(SecurityTest, Userfaultfd) { ExpectErrno("userfaultfd", "EPERM"); }
TEST_F(SecurityTest, IoUring) { ExpectErrno("io_uring", "EPERM"); }
TEST_F(SecurityTest, OpenByHandleAt) { ExpectErrno("open_by_handle_at", "EPERM"); }
TEST_F(SecurityTest, KeyringAddKey) { ExpectErrno("add_key", "EPERM"); }
TEST_F(SecurityTest, KeyringKeyctl) { ExpectErrno("keyctl", "EPERM"); }
// The probe first writes a valid swap area (mkswap's header), so only the
// permission check can stop swapon.
TEST_F(SecurityTest, Swapon) { ExpectErrno("swapon", "EPERM"); }
TEST_F(SecurityTest, Reboot) { ExpectErrno("reboot", "EPERM"); }
TEST_F(SecurityTest, ClockSettime) { ExpectErrno("clock_settime", "EPERM"); }
TEST_F(SecurityTest, Syslog) { ExpectErrno("syslog", "EPERM"); }
TEST_F(SecurityTest, Sethostname) {
  char before[256] = {0}, after[256] = {0};
  gethostname(before, sizeof(before));
  ExpectErrno("sethostname", "EPERM");
  gethostname(after, sizeof(after));
  EXPECT_STREQ(before, after);
}

// --- /proc, /sys, cgroups ---
TEST_F(SecurityTest, SysrqTriggerMasked) {
  // This kernel may lack CONFIG_MAGIC_SYSRQ: then the files are absent on
  // the host and inside alike, which is contained too.
  if (access("/proc/sysrq-trigger", F_OK) != 0) {
    EXPECT_EQ(Sh(sb_.id, "[ -e /proc/sysrq-trigger ] && echo present || echo absent").stdout_data, "absent\n");
    ExpectErrno("write_file", "ENOENT", "/proc/sysrq-trigger");
    return;
  }
  ExpectErrno("write_file", "EACCES", "/proc/sys/kernel/sysrq");
  auto r = Sh(sb_.id, "[ -c /proc/sysrq-trigger ] && echo masked");
  EXPECT_EQ(r.stdout_data, "masked\n");  // /dev/null bound over the regular file
}
// Files host root may write: refused first by permission (the sandbox's
// root is not host root; EACCES), behind that by the read-only mounts.
TEST_F(SecurityTest, ProcSysWrite) { ExpectErrno("write_file", "EACCES", "/proc/sys/vm/drop_caches"); }
TEST_F(SecurityTest, ProcSysKernelWrite) { ExpectErrno("write_file", "EACCES", "/proc/sys/kernel/core_pattern"); }
TEST_F(SecurityTest, KcoreKeysKmsgMasked) {
  auto r = Sh(sb_.id,
              "for f in kcore keys kmsg timer_list sched_debug kallsyms; do "
              "[ -e /proc/$f ] || continue; [ -c /proc/$f ] && echo masked-$f || echo OPEN-$f; done");
  EXPECT_EQ(r.stdout_data.find("OPEN"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("masked-keys"), std::string::npos) << r.stdout_data;
  if (access("/proc/kcore", F_OK) == 0) {
    EXPECT_NE(r.stdout_data.find("masked-kcore"), std::string::npos) << r.stdout_data;
  }
  EXPECT_EQ(Sh(sb_.id, "cat /proc/keys /proc/kmsg | wc -c").stdout_data, "0\n");
}
TEST_F(SecurityTest, SysfsReadOnly) { ExpectErrno("write_file", "EACCES", "/sys/kernel/mm/transparent_hugepage/enabled"); }
TEST_F(SecurityTest, CgroupFsNotReachable) {
  // No cgroup filesystem is mounted and mounting one is refused.
  EXPECT_NE(Sh(sb_.id, "ls /sys/fs/cgroup/memory 2>&1").exit_code, 0);
  EXPECT_NE(Sh(sb_.id, "mount -t cgroup -o memory none /mnt").exit_code, 0);
  EXPECT_EQ(Sh(sb_.id, "cat /proc/self/cgroup | grep -c ':/$'").exit_code, 0);  // cgroup ns root
}

// --- processes ---
// A host pid is not a pid in the sandbox's namespace: ESRCH. The same probe
// on a process of the sandbox's own namespace succeeds (KillOwnProcessWorks).
TEST_F(SecurityTest, PtraceHostProcess) { ExpectErrno("ptrace_pid", "ESRCH", std::to_string(getpid())); }
TEST_F(SecurityTest, KillHostProcess) { ExpectErrno("kill_pid", "ESRCH", std::to_string(getppid() > 1 ? getppid() : getpid())); }
// The control for the ESRCH probes: kill_pid on a pid the sandbox can see
// is delivered.
TEST_F(SecurityTest, KillOwnProcessWorks) {
  auto r = Sh(sb_.id, "sleep 300 & /usr/bin/probe kill_pid $!");
  EXPECT_EQ(r.exit_code, 1) << r.stdout_data << r.stderr_data;
  EXPECT_NE(r.stdout_data.find("ESCAPED"), std::string::npos) << r.stdout_data;
}
TEST_F(SecurityTest, KillOwnInitIsIgnored) {
  Sh(sb_.id, "kill -9 1");
  EXPECT_EQ(Sh(sb_.id, "echo alive").stdout_data, "alive\n");
}
TEST_F(SecurityTest, NoNewPrivsSeccompAndCaps) {
  auto r = Sh(sb_.id, "grep -E '^(NoNewPrivs|Seccomp|CapBnd|CapEff):' /proc/self/status | tr -s '\\t ' ' '");
  EXPECT_NE(r.stdout_data.find("NoNewPrivs: 1"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("Seccomp: 2"), std::string::npos) << r.stdout_data;
  char expect[64];
  snprintf(expect, sizeof(expect), "CapBnd: %016llx", static_cast<unsigned long long>(CapSet::Default().mask));
  EXPECT_NE(r.stdout_data.find(expect), std::string::npos) << r.stdout_data;
}
TEST_F(SecurityTest, RootInsideIsUnprivilegedOutside) {
  auto r = Sh(sb_.id, "cat /proc/self/uid_map | tr -s ' ' ' '");
  uint32_t base = IdRange{sb_.id_slot}.host_base();
  EXPECT_EQ(r.stdout_data, " 0 " + std::to_string(base) + " 65536\n");
  ExpectErrno("setuid_host_root", "EINVAL");  // uid 70000 has no mapping in the namespace
  // Files a sandbox creates are owned on the host by its range? No: by
  // on-disk 0 through the idmapped rootfs, and unreadable as host root only
  // through explicit paths; check the process owner on the host instead.
  Sh(sb_.id, "sleep 300 >/dev/null 2>&1 &");
  auto procs = Sh(sb_.id, "true");
  struct stat st;
  std::string p = "/proc/" + std::to_string(rt_->Get(sb_.id)->init_pid);
  ASSERT_EQ(stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, base);
}

// --- network ---
TEST_F(SecurityTest, RawSocket) { ExpectErrno("raw_socket", "EPERM"); }
TEST_F(SecurityTest, PacketSocket) { ExpectErrno("packet_socket", "EPERM"); }
TEST_F(SecurityTest, HostLoopbackUnreachable) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(s, 4), 0);
  socklen_t len = sizeof(addr);
  getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  auto r = Sh(sb_.id, "echo hi | nc -w 1 127.0.0.1 " + std::to_string(port));
  EXPECT_NE(r.exit_code, 0);
  close(s);
  EXPECT_EQ(Sh(sb_.id, "cat /proc/net/dev | grep -c ':'").stdout_data, "1\n");  // lo only
}

// --- host files ---
TEST_F(SecurityTest, ReadHostFileDirectly) { EXPECT_NE(Sh(sb_.id, "cat " + marker_).exit_code, 0); }
TEST_F(SecurityTest, ReadHostFileThroughProcRoot) {
  EXPECT_NE(Sh(sb_.id, "cat /proc/1/root" + marker_ + " /proc/self/root" + marker_).stdout_data.find("host-secret"),
            0u);
  EXPECT_EQ(Sh(sb_.id, "cat /proc/1/root" + marker_ + " /proc/self/root" + marker_ + " 2>/dev/null").stdout_data, "");
}

// --- the file API from the host: symlink and traversal escapes ---
TEST_F(SecurityTest, FileApiAbsoluteSymlinkEscape) {
  Sh(sb_.id, "ln -s " + marker_ + " /tmp/esc");
  auto fs = rt_->Files(sb_.id);
  auto r = fs->ReadFile("/tmp/esc");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
}
TEST_F(SecurityTest, FileApiRelativeSymlinkEscape) {
  Sh(sb_.id, "ln -s ../../../../../../../../.." + marker_ + " /tmp/esc2; ln -s / /tmp/rootlink");
  auto fs = rt_->Files(sb_.id);
  EXPECT_FALSE(fs->ReadFile("/tmp/esc2").ok());
  EXPECT_FALSE(fs->ReadFile("/tmp/rootlink" + marker_).ok());
}
TEST_F(SecurityTest, FileApiDotDotTraversal) {
  auto fs = rt_->Files(sb_.id);
  EXPECT_FALSE(fs->ReadFile("../../../../../../.." + marker_).ok());
  EXPECT_FALSE(fs->ReadFile("/../../.." + marker_).ok());
}
TEST_F(SecurityTest, FileApiWriteThroughSymlinkStaysInside) {
  std::string target = "/tmp/warren-should-not-exist-" + NewId("", 8);
  Sh(sb_.id, "ln -s " + target + " /tmp/wlink; ln -s /tmp /tmp/dirlink");
  auto fs = rt_->Files(sb_.id);
  ASSERT_TRUE(fs->WriteFile("/tmp/wlink", "pwned").ok());  // lands inside the sandbox
  struct stat st;
  EXPECT_NE(stat(target.c_str(), &st), 0) << "wrote to the host";
  EXPECT_EQ(Sh(sb_.id, "cat " + target).stdout_data, "pwned");
  unlink(target.c_str());
}
TEST_F(SecurityTest, FileApiDeleteAndMoveDoNotFollowLinks) {
  Sh(sb_.id, "ln -s " + marker_ + " /tmp/victim; ln -s /etc /tmp/etclink");
  auto fs = rt_->Files(sb_.id);
  ASSERT_TRUE(fs->Delete("/tmp/victim", false).ok());
  struct stat st;
  EXPECT_EQ(stat(marker_.c_str(), &st), 0) << "host file deleted";
  EXPECT_FALSE(fs->Move("/tmp/etclink/passwd", "/../../../tmp/stolen").ok() &&
               stat("/tmp/stolen", &st) == 0);
  EXPECT_TRUE(fs->Chmod("/tmp/etclink", 0777).ok());  // chmods the sandbox's /etc
  EXPECT_NE(stat("/etc", &st), -1);
  EXPECT_NE(st.st_mode & 0777, 0777u) << "host /etc chmodded";
}
TEST_F(SecurityTest, FileApiRootIsNotEscapable) {
  auto fs = rt_->Files(sb_.id);
  auto list = fs->List("/..");
  ASSERT_TRUE(list.ok());
  bool has_probe_dir = false;
  for (const auto& e : *list) has_probe_dir |= e.name == "bin";
  EXPECT_TRUE(has_probe_dir);  // "/.." is the sandbox root
  for (const auto& e : *list) EXPECT_NE(e.name, "vmlinuz");
}

// --- between sandboxes ---
TEST_F(SecurityTest, CannotSeeOrSignalOtherSandbox) {
  auto other = MustCreate();
  Sh(other.id, "echo theirs > /root/secret; sleep 500 >/dev/null 2>&1 &");
  ExpectErrno("kill_pid", "ESRCH", std::to_string(rt_->Get(other.id)->init_pid));
  ExpectErrno("ptrace_pid", "ESRCH", std::to_string(rt_->Get(other.id)->init_pid));
  EXPECT_EQ(Sh(sb_.id, "cat /root/secret 2>/dev/null; find / -name secret 2>/dev/null | wc -l").stdout_data, "0\n");
  EXPECT_EQ(Sh(other.id, "cat /root/secret").stdout_data, "theirs\n");
}

}  // namespace
}  // namespace warren::sandbox::testing
