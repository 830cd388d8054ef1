#include "runner/bash_session.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <memory>
#include <vector>

#include "runner/text_util.h"

extern char** environ;

namespace warren::runner {
namespace {

int64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

std::map<std::string, std::string> ScrubbedEnv() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    std::string key = kv.substr(0, eq);
    std::string upper = key;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (upper.rfind("ANTHROPIC_", 0) == 0) continue;
    env[key] = kv.substr(eq + 1);
  }
  return env;
}

Result<std::unique_ptr<BashSession>> BashSession::Start(const std::string& workdir,
                                                        std::map<std::string, std::string> env) {
  env["PS1"] = "";
  env["PS2"] = "";
  env["TERM"] = "dumb";
  std::vector<std::string> storage;
  for (auto& [k, v] : env) storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : storage) envp.push_back(s.data());
  envp.push_back(nullptr);

  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    close(in_pipe[0]);
    close(in_pipe[1]);
    return Status::FromErrno(e, "pipe");
  }
  const char* argv[] = {"/bin/bash", "--noprofile", "--norc", nullptr};
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) close(fd);
    return Status::FromErrno(e, "fork");
  }
  if (pid == 0) {
    setsid();
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(out_pipe[1], 2);
    syscall(SYS_close_range, 3U, ~0U, 0U);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    if (chdir(workdir.c_str()) != 0) _exit(127);
    execve(argv[0], const_cast<char* const*>(argv), envp.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  return std::unique_ptr<BashSession>(new BashSession(pid, in_pipe[1], out_pipe[0]));
}

BashSession::~BashSession() { Close(); }

void BashSession::Close() {
  if (closed_) return;
  closed_ = true;
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (in_fd_ >= 0) close(in_fd_);
  if (out_fd_ >= 0) close(out_fd_);
  in_fd_ = out_fd_ = -1;
}

Result<BashExecResult> BashSession::Exec(const std::string& command, double timeout_ms,
                                         const std::atomic<bool>* cancel) {
  if (closed_) return Status::Unavailable("bash session terminated");
  // Drop whatever background jobs printed between calls (the SDK resets its
  // buffer at the start of each call).
  char chunk[65536];
  while (read(out_fd_, chunk, sizeof chunk) > 0) {
  }
  const std::string sentinel = "__ANT_CMD_" + RandomUuid() + "_DONE__";
  const std::string split = sentinel.substr(0, 8) + "''" + sentinel.substr(8);
  std::string pending = "{ " + command + "\n} </dev/null 2>&1; printf '\\n" + split + "%d\\n' $?\n";
  size_t written = 0;
  std::string buf;
  bool truncated = false;
  const int64_t deadline = MonoMs() + static_cast<int64_t>(timeout_ms);
  size_t found = std::string::npos;
  bool eof = false;
  while (found == std::string::npos) {
    if (cancel != nullptr && cancel->load()) {
      Close();
      return Status::Cancelled("bash command cancelled");
    }
    int64_t now = MonoMs();
    if (now >= deadline) {
      Close();
      return Status::Timeout("bash command timed out after " + JsNumber(timeout_ms) + "ms");
    }
    pollfd fds[2];
    int nfds = 0;
    fds[nfds++] = {out_fd_, POLLIN, 0};
    if (written < pending.size()) fds[nfds++] = {in_fd_, POLLOUT, 0};
    int wait_ms = static_cast<int>(std::min<int64_t>(deadline - now, 50));
    int r = poll(fds, nfds, wait_ms);
    if (r < 0 && errno != EINTR) {
      Close();
      return Status::Unavailable("bash session terminated");
    }
    if (r <= 0) continue;
    if (nfds == 2 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = write(in_fd_, pending.data() + written, pending.size() - written);
      if (n > 0) {
        written += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        written = pending.size();  // shell gone; EOF on the output follows
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      for (;;) {
        ssize_t n = read(out_fd_, chunk, sizeof chunk);
        if (n > 0) {
          buf.append(chunk, static_cast<size_t>(n));
          if (buf.size() > kBashOutputLimit) {
            buf.erase(0, buf.size() - kBashOutputLimit);
            truncated = true;
          }
          continue;
        }
        if (n == 0) eof = true;
        break;
      }
      found = buf.find(sentinel);
      if (found == std::string::npos && eof) {
        Close();
        return Status::Unavailable("bash session terminated");
      }
    }
  }
  BashExecResult res;
  std::string tail = buf.substr(found + sentinel.size());
  size_t i = 0;
  if (i < tail.size() && tail[i] == '-') ++i;
  size_t digits = i;
  while (digits < tail.size() && std::isdigit(static_cast<unsigned char>(tail[digits]))) ++digits;
  if (digits > i) {
    try {
      res.exit_code = std::stoi(tail.substr(0, digits));
    } catch (...) {
      res.exit_code = -1;
    }
  }
  std::string out = NormalizeCrlf(StripAnsi(RepairUtf8(buf.substr(0, found))));
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (truncated) out = "[output truncated]\n" + out;
  res.output = std::move(out);
  return res;
}

}  // namespace warren::runner
