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
#include <chrono>
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

BashSession::BashSession(pid_t pid, int in_fd, int out_fd) : pid_(pid), in_fd_(in_fd), out_fd_(out_fd) {
  reader_ = std::thread([this] { ReadLoop(); });
}

BashSession::~BashSession() { Close(); }

void BashSession::ReadLoop() {
  char chunk[65536];
  while (!stop_reader_.load()) {
    pollfd pfd = {out_fd_, POLLIN, 0};
    int r = poll(&pfd, 1, 100);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    ssize_t n = read(out_fd_, chunk, sizeof chunk);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (n <= 0) {
      eof_ = true;
      cv_.notify_all();
      return;
    }
    buf_.append(chunk, static_cast<size_t>(n));
    // Keep the tail so the sentinel stays detectable and memory bounded.
    if (buf_.size() > kBashOutputLimit) {
      buf_.erase(0, buf_.size() - kBashOutputLimit);
      truncated_ = true;
    }
    cv_.notify_all();
  }
}

void BashSession::Close() {
  if (closed_) return;
  closed_ = true;
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  stop_reader_.store(true);
  if (reader_.joinable()) reader_.join();
  if (in_fd_ >= 0) close(in_fd_);
  if (out_fd_ >= 0) close(out_fd_);
  in_fd_ = out_fd_ = -1;
}

Result<BashExecResult> BashSession::Exec(const std::string& command, double timeout_ms,
                                         const std::atomic<bool>* cancel) {
  if (closed_) return Status::Unavailable("bash session terminated");
  const std::string sentinel = "__ANT_CMD_" + RandomUuid() + "_DONE__";
  const std::string split = sentinel.substr(0, 8) + "''" + sentinel.substr(8);
  const std::string pending =
      "{ " + command + "\n} </dev/null 2>&1; printf '\\n" + split + "%d\\n' $?\n";
  {
    // Output printed between calls (background jobs) is not this call's.
    std::lock_guard<std::mutex> lock(mu_);
    buf_.clear();
    truncated_ = false;
  }
  size_t written = 0;
  const int64_t deadline = MonoMs() + static_cast<int64_t>(timeout_ms);
  std::string buf;
  bool truncated = false;
  size_t found = std::string::npos;
  for (;;) {
    if (written < pending.size()) {
      ssize_t n = write(in_fd_, pending.data() + written, pending.size() - written);
      if (n > 0) {
        written += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        written = pending.size();  // the shell is gone; EOF on its output follows
      }
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Test before sleeping: output that arrived before this wait began
      // already notified (a plain wait_for here cost fast commands 50 ms).
      cv_.wait_for(lock, std::chrono::milliseconds(written < pending.size() ? 5 : 50),
                   [&] { return eof_ || buf_.find(sentinel) != std::string::npos; });
      found = buf_.find(sentinel);
      if (found != std::string::npos) {
        buf = buf_;
        truncated = truncated_;
        break;
      }
      if (eof_) {
        lock.unlock();
        Close();
        return Status::Unavailable("bash session terminated");
      }
    }
    if (cancel != nullptr && cancel->load()) {
      Close();
      return Status::Cancelled("bash command cancelled");
    }
    if (MonoMs() >= deadline) {
      Close();
      return Status::Timeout("bash command timed out after " + JsNumber(timeout_ms) + "ms");
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
