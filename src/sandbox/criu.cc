#include "sandbox/criu.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <thread>
#include <vector>

#include "common/unique_fd.h"

extern char** environ;

namespace warren::sandbox {

namespace {

std::string FirstLine(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) return line;
  }
  return "";
}

}  // namespace

CriuSupport DetectCriu(std::chrono::milliseconds timeout, const std::string& criu) {
  CriuSupport out;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    out.reason = "criu check: pipe2 failed";
    return out;
  }
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  // Nothing else of this process (Asio's sockets are not O_CLOEXEC; see
  // RunCommandStreaming).
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  std::vector<char*> argv = {const_cast<char*>(criu.c_str()), const_cast<char*>("check"), nullptr};
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    out.reason = rc == ENOENT ? "criu is not installed" : "criu check: cannot run " + criu;
    return out;
  }
  wr.reset();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string err;
  bool timed_out = false;
  // Read stderr until EOF or the deadline.
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd p = {rd.get(), POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;  // timeout: re-checked above
    char buf[4096];
    ssize_t r = read(rd.get(), buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (err.size() < 65536) err.append(buf, static_cast<size_t>(r));
  }
  // stderr closed: wait for the exit, still bounded by the deadline.
  int status = 0;
  bool reaped = false;
  while (!timed_out) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) {
      reaped = w == pid;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!reaped) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (timed_out) {
    out.reason = "criu check timed out after " + std::to_string(timeout.count()) + " ms";
    return out;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    out.available = true;
    out.reason = "criu check passed";
    return out;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    out.reason = "criu is not installed";
    return out;
  }
  out.reason = FirstLine(err);
  if (out.reason.empty()) {
    out.reason = WIFEXITED(status) ? "criu check exited with " + std::to_string(WEXITSTATUS(status))
                                   : "criu check killed by signal " + std::to_string(WTERMSIG(status));
  }
  return out;
}

}  // namespace warren::sandbox
