#include "sandbox/shell_session.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include "common/ids.h"
#include "common/log.h"
#include "sandbox/sys.h"

namespace warren::sandbox {

namespace {

constexpr size_t kMaxCommandBytes = 1 << 20;
constexpr std::chrono::milliseconds kWriteTimeout{10000};

void SetNonBlocking(int fd) {
  if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// Writes all of `data` to the non-blocking `fd`, waiting for room up to
// kWriteTimeout (a frozen or stuck reader must not hang the caller).
Status WriteWithTimeout(int fd, std::string_view data, std::string_view what) {
  auto deadline = std::chrono::steady_clock::now() + kWriteTimeout;
  size_t off = 0;
  while (off < data.size()) {
    ssize_t w = write(fd, data.data() + off, data.size() - off);
    if (w > 0) {
      off += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN) return ErrnoStatus(what);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::Timeout(std::string(what) + ": the shell is not reading");
    struct pollfd p = {fd, POLLOUT, 0};
    (void)poll(&p, 1, static_cast<int>(left.count()));
  }
  return Status::Ok();
}

}  // namespace

// --- framing ---

std::string ShellQuote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  out += '\'';
  return out;
}

std::vector<std::string> SessionShellArgv(const std::string& shell) {
  return {shell, "-c", "exec 3<&0 0<&4 4<&- && exec " + ShellQuote(shell) + " -s"};
}

std::string FrameCommand(std::string_view nonce, uint64_t seq, std::string_view command) {
  std::string marker = "printf '\\036WARREN-%s:%s:%s\\n' '" + std::string(nonce) + "' " + std::to_string(seq) +
                       " \"$__warren_rc\"";
  return "eval " + ShellQuote(command) + " 0<&3 3<&-\n__warren_rc=$?; " + marker + "; " + marker + " >&2\n";
}

FrameParser::FrameParser(std::string nonce) : prefix_("\036WARREN-" + nonce + ":") {}

void FrameParser::Feed(std::string_view in, const DataFn& on_data, const EndFn& on_end) {
  std::string buf = std::move(held_);
  held_.clear();
  buf.append(in);
  size_t pos = 0;
  while (pos < buf.size()) {
    size_t m = buf.find('\036', pos);
    if (m == std::string::npos) {
      on_data(std::string_view(buf).substr(pos));
      return;
    }
    if (m > pos) on_data(std::string_view(buf).substr(pos, m - pos));
    size_t avail = buf.size() - m;
    size_t cmp = std::min(avail, prefix_.size());
    if (buf.compare(m, cmp, prefix_, 0, cmp) != 0) {
      on_data(std::string_view(buf).substr(m, 1));
      pos = m + 1;
      continue;
    }
    if (avail < prefix_.size()) {
      held_ = buf.substr(m);
      return;
    }
    // <seq>:<exit>\n with bounded digit counts.
    size_t p = m + prefix_.size();
    uint64_t seq = 0;
    int code = 0;
    size_t digits = 0;
    bool incomplete = false, bad = false;
    while (p < buf.size() && buf[p] >= '0' && buf[p] <= '9' && digits < 19) {
      seq = seq * 10 + static_cast<uint64_t>(buf[p] - '0');
      ++p;
      ++digits;
    }
    if (p == buf.size()) {
      incomplete = digits < 19;
      bad = !incomplete;
    } else if (digits == 0 || buf[p] != ':') {
      bad = true;
    } else {
      ++p;
      size_t cd = 0;
      while (p < buf.size() && buf[p] >= '0' && buf[p] <= '9' && cd < 3) {
        code = code * 10 + (buf[p] - '0');
        ++p;
        ++cd;
      }
      if (p == buf.size()) incomplete = true;  // more digits or the '\n' may follow
      else if (cd == 0 || buf[p] != '\n') bad = true;
    }
    if (incomplete && !bad) {
      held_ = buf.substr(m);
      return;
    }
    if (bad) {
      on_data(std::string_view(buf).substr(m, 1));
      pos = m + 1;
      continue;
    }
    on_end(End{seq, code});
    pos = p + 1;
  }
}

void FrameParser::Flush(const DataFn& on_data) {
  if (!held_.empty()) on_data(held_);
  held_.clear();
}

std::string_view AppendCapped(std::string* buf, std::string_view data, size_t cap, int64_t* dropped) {
  size_t before = buf->size();
  if (*dropped > 0) {
    *dropped += static_cast<int64_t>(data.size());
    return {};
  }
  size_t room = cap > before ? cap - before : 0;
  if (data.size() <= room) {
    buf->append(data);
  } else {
    buf->append(data.substr(0, room));
    buf->append(kTruncatedMarker);
    *dropped = static_cast<int64_t>(data.size() - room);
  }
  return std::string_view(*buf).substr(before);
}

// --- JSON ---

Json CommandInfo::ToJson() const {
  Json j = {{"id", id},
            {"command", command},
            {"running", running},
            {"stdout", stdout_data},
            {"stderr", stderr_data},
            {"started_at", started_at}};
  if (!running) {
    j["exit_code"] = exit_code;
    j["finished_at"] = finished_at;
  }
  if (shell_exited) j["shell_exited"] = true;
  if (stdout_dropped > 0) j["stdout_truncated_bytes"] = stdout_dropped;
  if (stderr_dropped > 0) j["stderr_truncated_bytes"] = stderr_dropped;
  return j;
}

Json SessionInfo::ToJson() const {
  Json j = {{"sandbox_id", sandbox_id}, {"session_id", session_id}, {"shell", shell},
            {"alive", alive},           {"commands", commands},     {"created_at", created_at}};
  if (!running_command.empty()) j["running_command"] = running_command;
  if (!alive) {
    j["ended"] = ended;
    if (shell_exit_code >= 0) j["shell_exit_code"] = shell_exit_code;
  }
  return j;
}

// --- ShellSession ---

ShellSession::ShellSession(SessionInfo info, SessionOptions opts, SandboxProcess shell, std::string cgroup,
                           Clock* clock)
    : info_(std::move(info)),
      opts_(std::move(opts)),
      shell_(std::move(shell)),
      cgroup_(std::move(cgroup)),
      clock_(clock ? clock : Clock::Real()),
      nonce_(NewId("", 16)),
      out_parser_(nonce_),
      err_parser_(nonce_) {}

Result<std::unique_ptr<ShellSession>> ShellSession::Start(SessionInfo info, SessionOptions opts,
                                                          SandboxProcess shell, std::string cgroup, Clock* clock) {
  if (!shell.command_wr || !shell.stdout_rd || !shell.stderr_rd || !shell.stdin_wr) {
    return Status::InvalidArgument("session shell needs pipes and a command channel");
  }
  std::unique_ptr<ShellSession> s(
      new ShellSession(std::move(info), std::move(opts), std::move(shell), std::move(cgroup), clock));
  int w[2];
  if (pipe2(w, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoStatus("pipe2");
  s->wake_rd_.reset(w[0]);
  s->wake_wr_.reset(w[1]);
  for (int fd : {s->shell_.stdout_rd.get(), s->shell_.stderr_rd.get(), s->shell_.stdin_wr.get(),
                 s->shell_.command_wr.get()}) {
    SetNonBlocking(fd);
  }
  s->info_.created_at = s->clock_->NowMicros();
  s->info_.alive = true;
  s->reader_ = std::thread([p = s.get()] { p->ReaderLoop(); });
  return s;
}

ShellSession::~ShellSession() { Close("session closed"); }

void ShellSession::Close(const std::string& reason) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return;
    closed_ = true;
    if (info_.alive) {
      info_.alive = false;
      info_.ended = reason;
    }
  }
  if (wake_wr_) (void)write(wake_wr_.get(), "x", 1);
  if (reader_.joinable()) reader_.join();
  shell_.Kill();
  (void)shell_.Wait();
  std::lock_guard<std::mutex> l(mu_);
  if (current_) FinishLocked(*current_, 128 + SIGKILL, true);
  cv_.notify_all();
}

void ShellSession::ReaderLoop() {
  UniqueFd* streams[2] = {&shell_.stdout_rd, &shell_.stderr_rd};
  FrameParser* parsers[2] = {&out_parser_, &err_parser_};
  char buf[65536];
  auto drain = [&](int i) {
    LogStream ls = i == 0 ? LogStream::kStdout : LogStream::kStderr;
    for (;;) {
      ssize_t r = read(streams[i]->get(), buf, sizeof(buf));
      if (r > 0) {
        parsers[i]->Feed(
            std::string_view(buf, static_cast<size_t>(r)), [&](std::string_view d) { OnData(ls, d); },
            [&](const FrameParser::End& e) { OnEnd(ls, e); });
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) {
        parsers[i]->Flush([&](std::string_view d) { OnData(ls, d); });
        streams[i]->reset();
      }
      return;
    }
  };
  for (;;) {
    struct pollfd pfds[4];
    int idx[2] = {-1, -1};
    int n = 0;
    for (int i = 0; i < 2; ++i) {
      if (*streams[i]) {
        idx[i] = n;
        pfds[n++] = {streams[i]->get(), POLLIN, 0};
      }
    }
    int idx_mid = n;
    pfds[n++] = {shell_.mid_pidfd.get(), POLLIN, 0};
    int idx_wake = n;
    pfds[n++] = {wake_rd_.get(), POLLIN, 0};
    int rc = poll(pfds, static_cast<nfds_t>(n), -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      log::Warn("sandbox.session.poll", {{"error", strerror(errno)}});
      return;
    }
    if (pfds[idx_wake].revents) return;
    for (int i = 0; i < 2; ++i) {
      if (idx[i] >= 0 && pfds[idx[i]].revents) drain(i);
    }
    if (pfds[idx_mid].revents) {
      // The shell is gone: take what is still buffered (background children
      // may hold the pipes open, so do not wait for EOF), then report.
      for (int i = 0; i < 2; ++i) {
        if (*streams[i]) drain(i);
      }
      for (int i = 0; i < 2; ++i) {
        LogStream ls = i == 0 ? LogStream::kStdout : LogStream::kStderr;
        parsers[i]->Flush([&](std::string_view d) { OnData(ls, d); });
      }
      auto code = shell_.Wait();
      std::lock_guard<std::mutex> l(mu_);
      int c = code.ok() ? *code : -1;
      if (info_.alive) {
        info_.alive = false;
        info_.ended = "shell exited with status " + std::to_string(c);
      }
      info_.shell_exit_code = c;
      if (current_) FinishLocked(*current_, c, true);
      cv_.notify_all();
      return;
    }
  }
}

void ShellSession::OnData(LogStream s, std::string_view data) {
  std::lock_guard<std::mutex> l(mu_);
  if (!current_) return;  // output of background jobs between commands
  Command& c = *current_;
  if (s == LogStream::kStdout) {
    if (c.out_done) return;
    AppendCapped(&c.info.stdout_data, data, opts_.output_cap, &c.info.stdout_dropped);
  } else {
    if (c.err_done) return;
    AppendCapped(&c.info.stderr_data, data, opts_.output_cap, &c.info.stderr_dropped);
  }
  cv_.notify_all();
}

void ShellSession::OnEnd(LogStream s, const FrameParser::End& e) {
  std::lock_guard<std::mutex> l(mu_);
  if (!current_ || e.seq != current_->seq) return;
  Command& c = *current_;
  if (s == LogStream::kStdout) {
    c.out_done = true;
    c.info.exit_code = e.exit_code;
  } else {
    c.err_done = true;
  }
  if (c.out_done && c.err_done) FinishLocked(c, c.info.exit_code, false);
  cv_.notify_all();
}

void ShellSession::FinishLocked(Command& c, int exit_code, bool shell_exited) {
  if (!c.info.running) return;
  c.info.running = false;
  c.info.exit_code = exit_code;
  c.info.shell_exited = shell_exited;
  c.info.finished_at = clock_->NowMicros();
  if (current_.get() == &c) current_.reset();
}

Status ShellSession::WriteCommand(const std::string& text) {
  std::lock_guard<std::mutex> l(write_mu_);
  return WriteWithTimeout(shell_.command_wr.get(), text, "write to session shell");
}

std::shared_ptr<ShellSession::Command> ShellSession::FindLocked(const std::string& id) const {
  auto it = commands_.find(id);
  return it == commands_.end() ? nullptr : it->second;
}

Result<CommandInfo> ShellSession::Exec(const std::string& command, const SessionExecOptions& opts) {
  if (command.size() > kMaxCommandBytes) return Status::TooLarge("command longer than 1 MiB");
  if (command.find('\0') != std::string::npos) return Status::InvalidArgument("command contains a NUL byte");
  std::shared_ptr<Command> cmd;
  uint64_t seq;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!info_.alive) return Status::FailedPrecondition("session " + info_.session_id + " has ended: " + info_.ended);
    if (current_) {
      return Status::FailedPrecondition("session " + info_.session_id + " is busy: " + current_->info.id +
                                        " is still running");
    }
    seq = next_seq_++;
    cmd = std::make_shared<Command>();
    cmd->seq = seq;
    cmd->info.id = "cmd-" + std::to_string(seq);
    cmd->info.command = command;
    cmd->info.started_at = clock_->NowMicros();
    current_ = cmd;
    commands_[cmd->info.id] = cmd;
    order_.push_back(cmd->info.id);
    while (order_.size() > std::max<size_t>(opts_.max_commands, 1)) {
      commands_.erase(order_.front());
      order_.pop_front();
    }
  }
  Status ws = WriteCommand(FrameCommand(nonce_, seq, command));
  std::unique_lock<std::mutex> l(mu_);
  if (!ws.ok()) {
    FinishLocked(*cmd, -1, false);
    return ws;
  }
  if (!opts.async) {
    auto done = [&] { return !cmd->info.running; };
    if (opts.timeout.count() > 0) cv_.wait_for(l, opts.timeout, done);
    else cv_.wait(l, done);
  }
  return cmd->info;
}

Result<CommandInfo> ShellSession::Get(const std::string& command_id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto c = FindLocked(command_id);
  if (!c) return Status::NotFound("no command " + command_id + " in session " + info_.session_id);
  return c->info;
}

Result<CommandInfo> ShellSession::Follow(const std::string& command_id, const LogSink& follow,
                                         std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  auto c = FindLocked(command_id);
  if (!c) return Status::NotFound("no command " + command_id + " in session " + info_.session_id);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t off_out = 0, off_err = 0;
  for (;;) {
    std::string out = c->info.stdout_data.substr(off_out);
    std::string err = c->info.stderr_data.substr(off_err);
    off_out += out.size();
    off_err += err.size();
    bool done = !c->info.running;
    if (follow && (!out.empty() || !err.empty())) {
      l.unlock();
      if (!out.empty()) follow(LogStream::kStdout, out);
      if (!err.empty()) follow(LogStream::kStderr, err);
      l.lock();
      continue;  // re-check for bytes that arrived meanwhile
    }
    if (done) break;
    auto more = [&] {
      return !c->info.running || c->info.stdout_data.size() > off_out || c->info.stderr_data.size() > off_err;
    };
    if (timeout.count() > 0) {
      if (!cv_.wait_until(l, deadline, more)) break;
    } else {
      cv_.wait(l, more);
    }
  }
  return c->info;
}

Status ShellSession::SendInput(const std::string& command_id, std::string_view bytes) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto c = FindLocked(command_id);
    if (!c) return Status::NotFound("no command " + command_id + " in session " + info_.session_id);
    if (!c->info.running || current_ != c) return Status::FailedPrecondition("command " + command_id + " is not running");
  }
  std::lock_guard<std::mutex> l(write_mu_);
  return WriteWithTimeout(shell_.stdin_wr.get(), bytes, "write to command stdin");
}

SessionInfo ShellSession::Info() const {
  std::lock_guard<std::mutex> l(mu_);
  SessionInfo i = info_;
  i.running_command = current_ ? current_->info.id : "";
  i.commands.assign(order_.begin(), order_.end());
  return i;
}

bool ShellSession::Busy() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_ != nullptr;
}

bool ShellSession::Alive() const {
  std::lock_guard<std::mutex> l(mu_);
  return info_.alive;
}

std::vector<pid_t> ShellSession::HelperPids() const { return {shell_.pid, shell_.mid}; }

}  // namespace warren::sandbox
