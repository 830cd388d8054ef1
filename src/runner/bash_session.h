// BashSession: one persistent `/bin/bash --noprofile --norc` (spec 4.2 bash).
//
// Commands are framed with a per-call sentinel written as two quoted halves
// (`__ANT_CMD_` + `''` + rest), so the echoed command can never contain it;
// stdin of each command is /dev/null and stderr is merged into stdout. The
// shell runs in its own session (setsid) so Close() kills it together with
// its foreground and background jobs.
//
// A reader thread drains the shell's output continuously (as the SDK does),
// so a background job that keeps printing between calls never blocks on a
// full pipe; what arrives between calls is dropped when the next call starts.
//
// Ownership: owns the child process, its pipes and the reader thread.
// Thread-compatible: one caller at a time (the tool serialises calls);
// `cancel` may be set from any thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <memory>
#include <string>

#include "common/status.h"

namespace warren::runner {

inline constexpr size_t kBashOutputLimit = 100 * 1024;

struct BashExecResult {
  std::string output;  // ANSI stripped, CRLF normalised, trailing newlines trimmed
  int exit_code = -1;  // -1 when the sentinel's code is unparsable
};

class BashSession final {
 public:
  // Starts the shell in `workdir` with exactly `env` plus PS1= PS2= TERM=dumb.
  static Result<std::unique_ptr<BashSession>> Start(const std::string& workdir,
                                                    std::map<std::string, std::string> env);
  ~BashSession();
  BashSession(const BashSession&) = delete;
  BashSession& operator=(const BashSession&) = delete;

  // Runs `command`. Errors: Timeout ("bash command timed out after <ms>ms"),
  // Cancelled (cancel flag set), Unavailable ("bash session terminated").
  // After any error the session is closed and must be discarded.
  Result<BashExecResult> Exec(const std::string& command, double timeout_ms,
                              const std::atomic<bool>* cancel);

  bool closed() const { return closed_; }
  void Close();

 private:
  BashSession(pid_t pid, int in_fd, int out_fd);
  void ReadLoop();

  pid_t pid_;
  int in_fd_;
  int out_fd_;
  bool closed_ = false;
  std::atomic<bool> stop_reader_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::string buf_;         // guarded by mu_: the tail of the output stream
  bool truncated_ = false;  // guarded by mu_
  bool eof_ = false;        // guarded by mu_
  std::thread reader_;
};

// The process environment without ANTHROPIC_* (any letter case).
std::map<std::string, std::string> ScrubbedEnv();

}  // namespace warren::runner
