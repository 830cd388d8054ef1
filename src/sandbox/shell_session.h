// Persistent shell sessions inside a sandbox (Daytona's session model), with
// no agent in the sandbox: the runtime starts one shell per session through
// SpawnInSandbox and keeps its pipes.
//
// Framing. The shell reads its commands from a dedicated command channel
// (its stdin; SessionShellArgv arranges that), and the commands' stdin is a
// separate pipe (fd 3 of the shell) that SendInput writes to; stdout and
// stderr are separate pipes. Each command is sent as
//
//   eval '<command>' 0<&3 3<&-                            (quoted, one word)
//   __warren_rc=$?; printf '\036WARREN-<nonce>:<seq>:%d\n' "$__warren_rc";
//   printf '...same...' "$__warren_rc" >&2
//
// so cd, exported variables and functions persist in the shell. Each output
// stream is cut at its marker (FrameParser): bytes before it belong to the
// command, the stdout marker carries the exit code. The nonce is random per
// session, so command output cannot forge a marker by accident.
//
// Lifetime: sessions live in the process that hosts the runtime (e.g.
// `warren serve`). If that process exits, the command channel closes and
// the shell exits after its current command; DeleteSession or stopping the
// sandbox kills the session's whole cgroup.
//
// Thread-safety: every ShellSession method is thread-safe; a reader thread
// per session consumes the shell's output.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "common/status.h"
#include "sandbox/process.h"

namespace warren::sandbox {

// --- framing (pure functions, unit-tested) ---

// `s` as one single-quoted POSIX shell word.
std::string ShellQuote(std::string_view s);
// argv for a session shell spawned with a command channel (SpawnSpec): it
// moves the command channel (fd 4) to stdin, the command input pipe (its
// stdin) to fd 3, and execs `shell -s`.
std::vector<std::string> SessionShellArgv(const std::string& shell);
// The text written to the command channel to run `command` as number `seq`.
std::string FrameCommand(std::string_view nonce, uint64_t seq, std::string_view command);

// Splits one output stream into data and end-of-command markers
// ("\036WARREN-<nonce>:<seq>:<exit>\n"). Bytes that could be the start of a
// marker are held back until decided (at most a marker's length).
// Thread-compatible.
class FrameParser final {
 public:
  struct End {
    uint64_t seq = 0;
    int exit_code = 0;
  };
  using DataFn = std::function<void(std::string_view)>;
  using EndFn = std::function<void(const End&)>;

  explicit FrameParser(std::string nonce);
  // Passes data and markers to the callbacks in stream order.
  void Feed(std::string_view in, const DataFn& on_data, const EndFn& on_end);
  // End of stream: held-back bytes are data.
  void Flush(const DataFn& on_data);

 private:
  std::string prefix_;  // "\036WARREN-<nonce>:"
  std::string held_;
};

// Appends `data` to `buf` up to `cap` bytes; beyond, counts the dropped
// bytes in *dropped and appends `marker` once. Returns the bytes appended.
std::string_view AppendCapped(std::string* buf, std::string_view data, size_t cap, int64_t* dropped);
inline constexpr std::string_view kTruncatedMarker = "\n[warren: output truncated]\n";

// --- sessions ---

struct SessionOptions {
  std::string user;               // "" = the sandbox default
  std::string cwd;                // "" = the sandbox default
  std::vector<std::string> env;   // KEY=value on top of the sandbox's
  size_t output_cap = 1 << 20;    // per command and stream
  size_t max_commands = 100;      // finished commands kept for GetCommand
};

struct SessionExecOptions {
  bool async = false;
  // Sync only: return (still running) after this long; 0 = wait for the end.
  std::chrono::milliseconds timeout{0};
};

struct CommandInfo {
  std::string id;  // "cmd-<n>"
  std::string command;
  bool running = true;
  int exit_code = -1;  // once finished; the shell's status if the shell died
  bool shell_exited = false;  // the command ended the shell (exit, kill)
  std::string stdout_data, stderr_data;  // capped (see output_cap)
  int64_t stdout_dropped = 0, stderr_dropped = 0;
  int64_t started_at = 0, finished_at = 0;  // micros since epoch
  Json ToJson() const;
};

struct SessionInfo {
  std::string sandbox_id, session_id;
  std::string shell;  // "/bin/bash" or "/bin/sh"
  bool alive = true;
  std::string ended;        // why the session ended ("" while alive)
  int shell_exit_code = -1;  // once the shell exited
  std::string running_command;  // id, "" when idle
  std::vector<std::string> commands;  // ids, oldest first
  int64_t created_at = 0;
  Json ToJson() const;
};

enum class LogStream { kStdout, kStderr };
using LogSink = std::function<void(LogStream, std::string_view)>;

class ShellSession final {
 public:
  // Takes over `shell` (spawned with a command channel) and starts the
  // reader thread. `cgroup` is the session's own cgroup name.
  static Result<std::unique_ptr<ShellSession>> Start(SessionInfo info, SessionOptions opts, SandboxProcess shell,
                                                     std::string cgroup, Clock* clock);
  // Kills the shell's process group if still running and joins the reader.
  ~ShellSession();
  ShellSession(const ShellSession&) = delete;
  ShellSession& operator=(const ShellSession&) = delete;

  // Runs `command` in the shell. FailedPrecondition while another command
  // runs or after the shell ended. Sync: blocks until it finishes (or
  // opts.timeout); async: returns at once with running = true.
  Result<CommandInfo> Exec(const std::string& command, const SessionExecOptions& opts);
  Result<CommandInfo> Get(const std::string& command_id) const;
  // Streams a command's output to `follow`: what is there now, then live
  // bytes until the command ends (or `timeout`, 0 = none). Returns the
  // command's final (or current) state.
  Result<CommandInfo> Follow(const std::string& command_id, const LogSink& follow,
                             std::chrono::milliseconds timeout);
  // Writes `bytes` to the stdin of `command_id`, which must be running.
  Status SendInput(const std::string& command_id, std::string_view bytes);
  SessionInfo Info() const;
  bool Busy() const;
  bool Alive() const;
  // The shell and its host-side intermediate (not user activity).
  std::vector<pid_t> HelperPids() const;
  const std::string& cgroup() const { return cgroup_; }
  // Marks the session ended with `reason`, kills what is left of the shell
  // and joins the reader. Idempotent.
  void Close(const std::string& reason);

 private:
  struct Command {
    CommandInfo info;
    uint64_t seq = 0;
    bool out_done = false, err_done = false;
  };
  ShellSession(SessionInfo info, SessionOptions opts, SandboxProcess shell, std::string cgroup, Clock* clock);
  void ReaderLoop();
  void OnData(LogStream s, std::string_view data);
  void OnEnd(LogStream s, const FrameParser::End& e);
  void FinishLocked(Command& c, int exit_code, bool shell_exited);
  Status WriteCommand(const std::string& text);
  std::shared_ptr<Command> FindLocked(const std::string& id) const;

  SessionInfo info_;
  SessionOptions opts_;
  SandboxProcess shell_;
  std::string cgroup_;
  Clock* clock_;
  std::string nonce_;
  FrameParser out_parser_, err_parser_;
  UniqueFd wake_rd_, wake_wr_;
  std::thread reader_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_seq_ = 1;
  std::shared_ptr<Command> current_;
  std::map<std::string, std::shared_ptr<Command>> commands_;
  std::deque<std::string> order_;
  bool closed_ = false;
  std::mutex write_mu_;  // command channel and stdin writes
};

}  // namespace warren::sandbox
