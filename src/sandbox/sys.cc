#include "sandbox/sys.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "sandbox/safe_path.h"

extern char** environ;

namespace warren::sandbox {

int SysPidfdOpen(pid_t pid, unsigned flags) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, flags));
}

int SysPidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

int SysOpenat2(int dirfd, const char* path, uint64_t flags, uint64_t mode, uint64_t resolve) {
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = flags;
  how.mode = mode;
  how.resolve = resolve;
  return static_cast<int>(syscall(SYS_openat2, dirfd, path, &how, sizeof(how)));
}

pid_t SysCloneFork(unsigned long flags) {
  return static_cast<pid_t>(syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, 0));
}

int SysPivotRoot(const char* new_root, const char* put_old) {
  return static_cast<int>(syscall(SYS_pivot_root, new_root, put_old));
}

int WriteAll(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

size_t FormatUint(uint64_t v, char* buf, size_t cap) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < sizeof(tmp));
  size_t len = n < cap ? n : cap - 1;
  for (size_t i = 0; i < len; ++i) buf[i] = tmp[n - 1 - i];
  buf[len] = '\0';
  return len;
}

Status ErrnoStatus(std::string_view what) { return Status::FromErrno(errno, what); }

Result<std::string> ReadFileToString(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Status::NotFound("no such file: " + path);
    return ErrnoStatus("open " + path);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status WriteStringToFile(const std::string& path, std::string_view data) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC | O_CREAT | O_TRUNC, 0644));
  if (!fd) return ErrnoStatus("open " + path);
  int rc = WriteAll(fd.get(), data.data(), data.size());
  if (rc < 0) return Status::FromErrno(-rc, "write " + path);
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, std::string_view data, bool sync) {
  std::string tmp = path + ".tmp";
  {
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CLOEXEC | O_CREAT | O_TRUNC, 0600));
    if (!fd) return ErrnoStatus("open " + tmp);
    int rc = WriteAll(fd.get(), data.data(), data.size());
    if (rc < 0) return Status::FromErrno(-rc, "write " + tmp);
    if (sync && fsync(fd.get()) != 0) return ErrnoStatus("fsync " + tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus("rename " + tmp);
  return Status::Ok();
}

Result<int> RunCommandStreaming(const std::vector<std::string>& argv,
                                const std::function<void(std::string_view)>& on_output) {
  if (argv.empty()) return Status::InvalidArgument("empty argv");
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return ErrnoStatus("pipe2");
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  // Nothing else of this process: Asio's sockets (the API's and the egress
  // proxy's listeners) are not O_CLOEXEC, and a helper alive when the process
  // is SIGKILLed would keep them bound (process_test.cc, RunCommandTest).
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return Status::FromErrno(rc, "spawn " + argv[0]);
  wr.reset();
  char buf[4096];
  for (;;) {
    ssize_t n = read(rd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (on_output) on_output(std::string_view(buf, static_cast<size_t>(n)));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ErrnoStatus("waitpid");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

Result<int> RunCommand(const std::vector<std::string>& argv, std::string* output) {
  std::string out;
  WARREN_ASSIGN_OR_RETURN(int code, RunCommandStreaming(argv, [&](std::string_view c) { out.append(c); }));
  if (output) *output = std::move(out);
  return code;
}

Result<uint64_t> ProcessStartTime(pid_t pid) {
  auto stat = ReadFileToString("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return Status::NotFound("no process " + std::to_string(pid));
  // Field 2 (comm) may contain spaces and parentheses: skip past the last ')'.
  size_t p = stat->rfind(')');
  if (p == std::string::npos) return Status::Internal("bad /proc stat");
  std::istringstream in(stat->substr(p + 2));
  std::string field;
  // Fields from 3 onwards; starttime is field 22 -> index 19 here.
  for (int i = 3; i <= 22; ++i) {
    if (!(in >> field)) return Status::Internal("short /proc stat");
    if (i == 3 && field == "Z") return Status::NotFound("zombie");
  }
  return static_cast<uint64_t>(std::stoull(field));
}

bool ProcessAlive(pid_t pid, uint64_t start_time) {
  if (pid <= 0) return false;
  auto st = ProcessStartTime(pid);
  return st.ok() && *st == start_time;
}

Status MkdirAll(const std::string& path, mode_t mode) {
  if (path.empty()) return Status::InvalidArgument("mkdir: empty path");
  // Host-trusted paths only (the data dir and below); each directory we
  // create gets exactly `mode` (mkdir applies the umask, chmod does not).
  size_t pos = path[0] == '/' ? 1 : 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    std::string prefix = path.substr(0, next);
    pos = next + 1;
    if (prefix.empty() || prefix.back() == '/') continue;
    if (mkdir(prefix.c_str(), mode) == 0) {
      if (chmod(prefix.c_str(), mode & 07777) != 0) return ErrnoStatus("chmod " + prefix);
    } else if (errno != EEXIST) {
      return ErrnoStatus("mkdir " + prefix);
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus("stat " + path);
  if (!S_ISDIR(st.st_mode)) return Status::FailedPrecondition("not a directory: " + path);
  return Status::Ok();
}

Status RemoveTree(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
  std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") return Status::InvalidArgument("refusing to remove " + path);
  // The parent is a host path the runtime chose; everything below it may
  // have been written by a sandbox, so the walk is fd-relative, no-follow
  // and stays on one mount.
  UniqueFd pfd(open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!pfd) return errno == ENOENT ? Status::Ok() : ErrnoStatus("open " + parent);
  return RemoveTreeAt(pfd.get(), name).WithContext("remove " + path);
}

ScopedFsIds::ScopedFsIds(uint32_t uid, uint32_t gid) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &hdr, data) != 0) {
    status_ = ErrnoStatus("capget");
    return;
  }
  for (int i = 0; i < 2; ++i) {
    caps_[i][0] = data[i].effective;
    caps_[i][1] = data[i].permitted;
    caps_[i][2] = data[i].inheritable;
  }
  // setfsuid returns the previous value and cannot report errors directly.
  old_gid_ = static_cast<uint32_t>(syscall(SYS_setfsgid, gid));
  old_uid_ = static_cast<uint32_t>(syscall(SYS_setfsuid, uid));
  active_ = true;
  if (static_cast<uint32_t>(syscall(SYS_setfsuid, -1)) != uid ||
      static_cast<uint32_t>(syscall(SYS_setfsgid, -1)) != gid) {
    status_ = Status::PermissionDenied("setfsuid/setfsgid refused");
    return;
  }
  for (auto& d : data) d.effective = d.permitted;
  if (syscall(SYS_capset, &hdr, data) != 0) status_ = ErrnoStatus("capset");
}

ScopedFsIds::~ScopedFsIds() {
  if (!active_) return;
  syscall(SYS_setfsuid, old_uid_);
  syscall(SYS_setfsgid, old_gid_);
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; ++i) {
    data[i].effective = caps_[i][0];
    data[i].permitted = caps_[i][1];
    data[i].inheritable = caps_[i][2];
  }
  syscall(SYS_capset, &hdr, data);
}

}  // namespace warren::sandbox
