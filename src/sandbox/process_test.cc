#include "sandbox/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/ids.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

using namespace std::chrono_literals;

// A running sandbox (busybox rootfs, own cgroup, init) for the duration of
// one test, started with the SpawnMethod under test. Needs root.
class ProcessTest : public ::testing::TestWithParam<SpawnMethod> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    SetSpawnMethod(GetParam());
    root_ = "/tmp/wsbx-" + NewId("", 8);
    ASSERT_TRUE(MkdirAll(root_ + "/bin").ok());
    ASSERT_EQ(0, *RunCommand({"cp", "/bin/busybox", root_ + "/bin/busybox"}));
    ASSERT_EQ(0, symlink("busybox", (root_ + "/bin/sh").c_str()));
    auto cg = DetectCgroupManager("warren-test");
    ASSERT_TRUE(cg.ok()) << cg.status().ToString();
    cg_ = std::move(*cg);
    name_ = NewId("t", 8);
    ASSERT_TRUE(cg_->Create(name_, Resources{0, 256 << 20, 64, 0}).ok());
    created_ = true;
    InitSpec spec;
    spec.rootfs = root_;
    spec.hostname = "sbx";
    spec.ids = IdRange{4000};
    auto h = SpawnInit(spec, *cg_, name_);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    init_ = h->pid;
    auto prog = SeccompProgram::BuildDefault();
    ASSERT_TRUE(prog.ok()) << prog.status().ToString();
    seccomp_ = std::move(*prog);
  }

  void TearDown() override {
    if (init_ > 0) {
      kill(init_, SIGKILL);
      // The init is not our child: wait until it is gone before removing
      // its cgroup.
      auto deadline = std::chrono::steady_clock::now() + 30s;
      while (kill(init_, 0) == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    }
    if (created_) {
      auto deadline = std::chrono::steady_clock::now() + 30s;
      Status s = cg_->Destroy(name_);
      while (!s.ok() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
        s = cg_->Destroy(name_);
      }
      EXPECT_TRUE(s.ok()) << s.ToString();
      for (const char* c : {"cpu", "memory", "pids", "freezer"}) {
        rmdir((std::string("/sys/fs/cgroup/") + c + "/warren-test").c_str());
      }
    }
    if (!root_.empty()) (void)RemoveTree(root_);
    SetSpawnMethod(SpawnMethod::kVfork);
  }

  Result<ExecResult> Exec(std::vector<std::string> argv, std::string cwd = "/") {
    ExecSpec e;
    e.argv = std::move(argv);
    e.cwd = std::move(cwd);
    e.timeout = 60s;
    return ExecInSandbox(init_, cg_->ProcsFiles(name_), e, seccomp_, CapSet::Default());
  }

  Result<SandboxProcess> Spawn(std::vector<std::string> argv) {
    SpawnSpec s;
    s.argv = std::move(argv);
    return SpawnInSandbox(init_, cg_->ProcsFiles(name_), s, seccomp_, CapSet::Default());
  }

  std::string root_, name_;
  std::unique_ptr<CgroupManager> cg_;
  bool created_ = false;
  pid_t init_ = -1;
  SeccompProgram seccomp_;
};

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// VmRSS of a process in KiB, or -1.
long RssKib(pid_t pid) {
  std::istringstream in(Slurp("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// 1 if `needle` occurs in any readable mapping of `pid` (read through
// /proc/<pid>/mem as root), 0 if not, -1 if its memory could not be read.
int MemoryContains(pid_t pid, const std::string& needle) {
  std::string dir = "/proc/" + std::to_string(pid);
  int mem = open((dir + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (mem < 0) return -1;
  size_t total = 0;
  std::istringstream maps(Slurp(dir + "/maps"));
  std::string line;
  std::vector<char> buf(1 << 20);
  bool found = false;
  while (!found && std::getline(maps, line)) {
    unsigned long lo = 0, hi = 0;
    char perms[8] = {};
    if (sscanf(line.c_str(), "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r') continue;
    if (line.find("[vvar]") != std::string::npos) continue;
    std::string carry;
    for (unsigned long off = lo; off < hi && !found; off += buf.size()) {
      size_t want = std::min<unsigned long>(buf.size(), hi - off);
      ssize_t n = pread(mem, buf.data(), want, static_cast<off_t>(off));
      if (n <= 0) break;
      total += static_cast<size_t>(n);
      std::string chunk = carry + std::string(buf.data(), static_cast<size_t>(n));
      if (chunk.find(needle) != std::string::npos) found = true;
      carry = chunk.substr(chunk.size() > needle.size() ? chunk.size() - needle.size() : 0);
    }
  }
  close(mem);
  if (found) return 1;
  return total > 0 ? 0 : -1;
}

// Number of this process's children (all threads), from
// /proc/self/task/*/children; -1 when the kernel does not list them.
int ChildCount() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return -1;
  bool any = false;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/children");
    if (!f) continue;
    any = true;
    std::string pid;
    while (f >> pid) ++n;
  }
  closedir(d);
  return any ? n : -1;
}

int OpenFdCount() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the directory stream's own fd
}

TEST_P(ProcessTest, SpawnInitAndExec) {
  auto r = Exec({"/bin/busybox", "sh", "-c", "echo hi; id -u; hostname; ls /; echo err >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stdout_data, "hi\n0\nsbx\nbin\ndev\nproc\nsys\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  EXPECT_EQ(r->exit_code, 3);
  // PATH lookup, and a status by signal.
  r = Exec({"sh", "-c", "kill -TERM $$"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 128 + SIGTERM);
}

// A command that cannot be executed is reported with its errno, whichever
// the path (direct, PATH search), and a setup step that fails names itself.
TEST_P(ProcessTest, FailingExecReportsItsErrno) {
  auto r = Exec({"/nonexistent"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 127);  // ENOENT
  EXPECT_NE(r->stderr_data.find(strerror(ENOENT)), std::string::npos) << r->stderr_data;
  r = Exec({"no-such-command"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 127);
  // A regular file without exec permission: EACCES.
  { std::ofstream(root_ + "/bin/noexec") << "#!/bin/sh\necho no\n"; }
  ASSERT_EQ(0, chmod((root_ + "/bin/noexec").c_str(), 0644));
  r = Exec({"/bin/noexec"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 126);  // EACCES
  EXPECT_NE(r->stderr_data.find(strerror(EACCES)), std::string::npos) << r->stderr_data;
  // chdir fails inside the sandbox: a setup error with its errno.
  r = Exec({"/bin/busybox", "true"}, "/missing");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("chdir"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find(strerror(ENOENT)), std::string::npos) << r.status().ToString();

  auto p = Spawn({"/nonexistent"});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kNotFound) << p.status().ToString();
  p = Spawn({"/bin/noexec"});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find(strerror(EACCES)), std::string::npos) << p.status().ToString();
}

// Exec works from a parent with a large populated heap, and with kVfork the
// long-lived intermediate holds none of it: it is warren-exec, a few pages
// of its own (with kFork it maps the parent's whole heap: the assertion on
// the peer shows the measurement sees the difference).
TEST_P(ProcessTest, ExecFromLargeHeapKeepsTheIntermediateSmall) {
  constexpr size_t kHeap = 256u << 20;
  std::vector<char> heap(kHeap);
  for (size_t i = 0; i < kHeap; i += 4096) heap[i] = static_cast<char>(i >> 12);
  auto r = Exec({"/bin/busybox", "echo", "ok"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stdout_data, "ok\n");
  auto p = Spawn({"/bin/busybox", "sh", "-c", "read x"});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  long rss = RssKib(p->mid);
  std::string cmdline = Slurp("/proc/" + std::to_string(p->mid) + "/cmdline");
  if (GetParam() == SpawnMethod::kVfork) {
    EXPECT_EQ(cmdline.substr(0, cmdline.find('\0')), "warren-exec");
    EXPECT_GT(rss, 0);
    EXPECT_LT(rss, 4 * 1024) << "intermediate RSS KiB";
  } else {
    EXPECT_GT(rss, static_cast<long>(kHeap / 1024 / 2)) << "intermediate RSS KiB";
  }
  p->stdin_wr.reset();  // `read` sees EOF
  auto code = p->Wait();
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 1);  // read at EOF
  EXPECT_EQ(heap[4096], 1);
}

// Security: no process that joins the sandbox ever maps the server's memory.
// A marker that lives only in this process's heap is searched for in the
// intermediate's memory (it joined the sandbox's namespaces) and in the
// command's. With kFork the intermediate is a copy of this process and holds
// the marker, which proves the search works.
TEST_P(ProcessTest, ServerMemoryIsNotInTheSandboxProcesses) {
  std::string marker = "warren-marker-" + NewId("", 24);
  std::vector<char> secret(1 << 20);
  for (size_t i = 0; i + marker.size() <= secret.size(); i += 4096) memcpy(&secret[i], marker.data(), marker.size());
  auto p = Spawn({"/bin/busybox", "sh", "-c", "read x"});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(MemoryContains(p->mid, marker), GetParam() == SpawnMethod::kFork ? 1 : 0);
  EXPECT_EQ(MemoryContains(p->pid, marker), 0);
  p->stdin_wr.reset();
  ASSERT_TRUE(p->Wait().ok());
  EXPECT_EQ(secret[0], marker[0]);
}

// An intermediate killed while its command runs: the owner reaps it (exit
// 128+9), the command can still be killed through the owner, and nothing is
// left behind in this process: no fd, no child, no zombie.
TEST_P(ProcessTest, KilledIntermediateLeavesNothingBehind) {
  ASSERT_TRUE(Exec({"/bin/busybox", "true"}).ok());  // warm-up: the helper memfd is made once
  int fds_before = OpenFdCount();
  int children_before = ChildCount();
  for (int i = 0; i < 5; ++i) {
    auto r = Exec({"/bin/busybox", "true"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->exit_code, 0);
  }
  {
    auto p = Spawn({"/bin/busybox", "sleep", "1000"});
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    pid_t cmd = p->pid;
    ASSERT_EQ(0, kill(p->mid, SIGKILL));
    auto code = p->Wait();
    ASSERT_TRUE(code.ok()) << code.status().ToString();
    EXPECT_EQ(*code, 128 + SIGKILL);
    errno = 0;
    EXPECT_EQ(-1, waitpid(p->mid, nullptr, WNOHANG));
    EXPECT_EQ(ECHILD, errno) << "the intermediate is reaped";
    // The command survived its intermediate (adopted by the sandbox's init).
    EXPECT_EQ(0, kill(cmd, 0));
    kill(-cmd, SIGKILL);
    kill(cmd, SIGKILL);
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (kill(cmd, 0) == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    EXPECT_NE(0, kill(cmd, 0)) << "the sandbox's init reaps the command";
  }
  EXPECT_EQ(OpenFdCount(), fds_before);
  EXPECT_EQ(ChildCount(), children_before) << "no child or zombie left";
}

// The command starts with default dispositions and an empty mask, whatever
// the server ignores or blocks (SIG_IGN survives execve).
TEST_P(ProcessTest, CommandStartsWithDefaultSignals) {
  struct sigaction ign {}, old_pipe {}, old_usr2 {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old_pipe);
  sigaction(SIGUSR2, &ign, &old_usr2);
  sigset_t usr1, old_mask;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, &old_mask);
  auto r = Exec({"/bin/busybox", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"});
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGPIPE, &old_pipe, nullptr);
  sigaction(SIGUSR2, &old_usr2, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stdout_data, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

// Many execs from concurrent threads (each thread's clone is suspended on
// its own; the others keep running and allocating).
TEST_P(ProcessTest, ConcurrentExecs) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        std::vector<std::string> churn(1000, std::string(100, 'x'));  // malloc traffic meanwhile
        auto r = Exec({"/bin/busybox", "echo", std::to_string(t * 100 + i)});
        if (r.ok() && r->stdout_data == std::to_string(t * 100 + i) + "\n" && r->exit_code == 0) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 20);
}

// A helper command (cp, mkfs.btrfs, ...) gets none of the process's
// descriptors beyond stdio. Boost.Asio opens its sockets without
// O_CLOEXEC, so without closing them in the child a helper alive when
// `warren serve` is SIGKILLed would keep its egress proxy's (and its API's)
// listening sockets: the restart could not take the port back, and
// connections would queue on a socket no one serves.
TEST(RunCommandTest, ChildGetsNoInheritedSocket) {
  UniqueFd sock(socket(AF_INET, SOCK_STREAM, 0));  // no SOCK_CLOEXEC, like Asio's
  ASSERT_TRUE(sock) << strerror(errno);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(0, bind(sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a))) << strerror(errno);
  ASSERT_EQ(0, listen(sock.get(), 1));
  ASSERT_EQ(0, fcntl(sock.get(), F_GETFD) & FD_CLOEXEC);
  std::string out;
  auto rc = RunCommand({"/bin/sh", "-c", "for f in /proc/$$/fd/*; do echo \"${f##*/} $(readlink $f)\"; done"}, &out);
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  EXPECT_EQ(*rc, 0) << out;
  EXPECT_EQ(out.find("socket:"), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(Methods, ProcessTest, ::testing::Values(SpawnMethod::kVfork, SpawnMethod::kFork),
                         [](const auto& info) { return info.param == SpawnMethod::kVfork ? "Vfork" : "Fork"; });

}  // namespace
}  // namespace warren::sandbox
