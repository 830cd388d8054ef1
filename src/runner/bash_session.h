// BashSession: one persistent `/bin/bash --noprofile --norc` (spec 4.2 bash).
//
// Commands are framed with a per-call sentinel written as two quoted halves
// (`__ANT_CMD_` + `''` + rest), so the echoed command can never contain it;
// stdin of each command is /dev/null and stderr is merged into stdout. The
// shell runs in its own session (setsid) so Close() kills it together with
// its foreground and background jobs.
//
// Ownership: owns the child process and its pipes. Thread-compatible: one
// caller at a time (the tool serialises calls); `cancel` may be set from any
// thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
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
  BashSession(pid_t pid, int in_fd, int out_fd) : pid_(pid), in_fd_(in_fd), out_fd_(out_fd) {}
  pid_t pid_;
  int in_fd_;
  int out_fd_;
  bool closed_ = false;
};

// The process environment without ANTHROPIC_* (any letter case).
std::map<std::string, std::string> ScrubbedEnv();

}  // namespace warren::runner
