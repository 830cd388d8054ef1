// `warren sandbox shell` and `warren sandbox session ...`.
//
// Sessions live in the process that hosts the runtime. A CLI process exits
// after each command, so `session create` starts a small detached session
// host: a process that opens the runtime, creates the session and answers
// requests on <data>/sessions/<sandbox id>/<session>.sock (one JSON line
// in, JSON lines out). It exits when the session is deleted or ends.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <thread>

#include "common/json.h"
#include "cli/sandbox_cli.h"
#include "sandbox/runtime.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

struct Opts {
  std::string data_dir = "/var/lib/warren";
  bool json = false;
};

void Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  throw CLI::RuntimeError(1);
}

std::unique_ptr<SandboxRuntime> OpenRuntime(const Opts& o, bool recover = true) {
  RuntimeOptions ro;
  ro.data_dir = o.data_dir;
  ro.recover_on_open = recover;
  auto rt = SandboxRuntime::Open(ro);
  if (!rt.ok()) Fail(rt.status());
  return std::move(*rt);
}

void AddOpts(CLI::App* c, const std::shared_ptr<Opts>& o) {
  c->add_option("--data-dir", o->data_dir, "Warren data directory")->capture_default_str();
  c->add_flag("--json", o->json, "Print JSON");
}

// --- line protocol over a unix socket ---

Status SendLine(int fd, const Json& j) {
  std::string line = DumpJson(j) + "\n";
  int rc = WriteAll(fd, line.data(), line.size());
  return rc < 0 ? Status::FromErrno(-rc, "write session socket") : Status::Ok();
}

// Reads one line (without '\n') from `fd`, buffering leftovers in *buf.
Result<Json> RecvLine(int fd, std::string* buf) {
  for (;;) {
    size_t nl = buf->find('\n');
    if (nl != std::string::npos) {
      std::string line = buf->substr(0, nl);
      buf->erase(0, nl + 1);
      return ParseJson(line);
    }
    char tmp[65536];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read session socket");
    if (n == 0) return Status::Unavailable("session host closed the connection");
    buf->append(tmp, static_cast<size_t>(n));
  }
}

std::string SocketDir(const std::string& data_dir, const std::string& sandbox_id) {
  return data_dir + "/sessions/" + sandbox_id;
}

Result<UniqueFd> Connect(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus("socket");
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Status::InvalidArgument("socket path too long: " + path);
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) return Status::NotFound("no such session (no live session host)");
    return ErrnoStatus("connect " + path);
  }
  return fd;
}

Json StatusJson(const Status& s) { return Json{{"error", s.ToString()}, {"code", static_cast<int>(s.code())}}; }

// Serves one client connection of the session host.
void Serve(SandboxRuntime* rt, const std::string& id, const std::string& sid, UniqueFd conn,
           std::atomic<bool>* quit) {
  std::string buf;
  auto req = RecvLine(conn.get(), &buf);
  if (!req.ok() || !req->is_object()) return;
  std::string op = req->value("op", "");
  if (op == "exec") {
    SessionExecOptions o;
    o.async = req->value("async", false);
    auto r = rt->SessionExec(id, sid, req->value("command", ""), o);
    (void)SendLine(conn.get(), r.ok() ? r->ToJson() : StatusJson(r.status()));
  } else if (op == "logs") {
    std::string cid = req->value("command_id", "");
    LogSink sink;
    int fd = conn.get();
    if (req->value("follow", false)) {
      sink = [fd](LogStream s, std::string_view d) {
        (void)SendLine(fd, Json{{"stream", s == LogStream::kStdout ? "stdout" : "stderr"}, {"data", std::string(d)}});
      };
    }
    auto r = rt->CommandLogs(id, sid, cid, sink);
    (void)SendLine(conn.get(), r.ok() ? Json{{"done", r->ToJson()}} : StatusJson(r.status()));
  } else if (op == "input") {
    Status s = rt->SendInput(id, sid, req->value("command_id", ""), req->value("data", ""));
    (void)SendLine(conn.get(), s.ok() ? Json{{"ok", true}} : StatusJson(s));
  } else if (op == "info") {
    auto r = rt->GetSession(id, sid);
    (void)SendLine(conn.get(), r.ok() ? r->ToJson() : StatusJson(r.status()));
  } else if (op == "delete") {
    Status s = rt->DeleteSession(id, sid);
    (void)SendLine(conn.get(), s.ok() ? Json{{"deleted", sid}} : StatusJson(s));
    quit->store(true);
  } else {
    (void)SendLine(conn.get(), StatusJson(Status::InvalidArgument("unknown op " + op)));
  }
}

// The detached session host: never returns. Reports readiness (or the
// error) on `ready_fd` as one JSON line.
[[noreturn]] void SessionHost(const Opts& o, const std::string& id, const std::string& sid,
                              const SessionOptions& so, int ready_fd) {
  auto report = [&](const Json& j) {
    (void)SendLine(ready_fd, j);
    close(ready_fd);
  };
  RuntimeOptions ro;
  ro.data_dir = o.data_dir;
  ro.recover_on_open = false;  // other processes own the sandboxes' lifecycle
  auto rt = SandboxRuntime::Open(ro);
  if (!rt.ok()) {
    report(StatusJson(rt.status()));
    _exit(1);
  }
  auto info = (*rt)->CreateSession(id, sid, so);
  if (!info.ok()) {
    report(StatusJson(info.status()));
    _exit(1);
  }
  std::string dir = SocketDir(o.data_dir, info->sandbox_id);
  std::string path = dir + "/" + sid + ".sock";
  Status ms = MkdirAll(dir, 0700);
  UniqueFd lfd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (!ms.ok() || !lfd || path.size() >= sizeof(addr.sun_path)) {
    (void)(*rt)->DeleteSession(id, sid);
    report(StatusJson(ms.ok() ? Status::InvalidArgument("cannot listen on " + path) : ms));
    _exit(1);
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  unlink(path.c_str());
  if (bind(lfd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0 || listen(lfd.get(), 16) < 0) {
    Status s = ErrnoStatus("listen " + path);
    (void)(*rt)->DeleteSession(id, sid);
    report(StatusJson(s));
    _exit(1);
  }
  chmod(path.c_str(), 0600);
  report(info->ToJson());
  std::atomic<bool> quit{false};
  SandboxRuntime* runtime = rt->get();
  std::string sandbox_id = info->sandbox_id;
  while (!quit.load()) {
    struct pollfd p = {lfd.get(), POLLIN, 0};
    int rc = poll(&p, 1, 500);
    if (rc > 0) {
      UniqueFd conn(accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn) {
        std::thread([runtime, sandbox_id, sid, c = conn.release(), &quit] {
          Serve(runtime, sandbox_id, sid, UniqueFd(c), &quit);
        }).detach();
      }
    }
    // Exit once the session has ended (shell died, sandbox stopped).
    auto s = runtime->GetSession(sandbox_id, sid);
    if (!s.ok() || !s->alive) break;
  }
  unlink(path.c_str());
  // Give a delete reply time to flush, then leave without running
  // destructors under detached threads.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  (void)runtime->DeleteSession(sandbox_id, sid);
  _exit(0);
}

// Sends one request to a session host; prints its reply; returns it.
Json Request(const Opts& o, const std::string& id, const std::string& sid, const Json& req,
             const std::function<void(const Json&)>& on_line = nullptr) {
  auto rt = OpenRuntime(o);
  auto rec = rt->Get(id);
  if (!rec.ok()) Fail(rec.status());
  auto fd = Connect(SocketDir(o.data_dir, rec->id) + "/" + sid + ".sock");
  if (!fd.ok()) Fail(fd.status());
  if (Status s = SendLine(fd->get(), req); !s.ok()) Fail(s);
  std::string buf;
  for (;;) {
    auto line = RecvLine(fd->get(), &buf);
    if (!line.ok()) Fail(line.status());
    if (line->contains("error")) {
      std::cerr << "error: " << line->value("error", "") << "\n";
      throw CLI::RuntimeError(1);
    }
    if (line->contains("stream") && on_line) {
      on_line(*line);
      continue;
    }
    return *line;
  }
}

// Restores the terminal mode on scope exit.
class RawMode final {
 public:
  explicit RawMode(int fd) : fd_(fd) {
    if (tcgetattr(fd, &saved_) != 0) return;
    struct termios raw = saved_;
    cfmakeraw(&raw);
    active_ = tcsetattr(fd, TCSANOW, &raw) == 0;
  }
  ~RawMode() {
    if (active_) tcsetattr(fd_, TCSANOW, &saved_);
  }
  RawMode(const RawMode&) = delete;
  RawMode& operator=(const RawMode&) = delete;

 private:
  int fd_;
  struct termios saved_ {};
  bool active_ = false;
};

// Pumps the local terminal <-> the pty until the program exits; returns
// its exit code. Forwards window size changes (SIGWINCH).
int RunInteractive(PtySession& pty) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGWINCH);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd sfd(signalfd(-1, &mask, SFD_CLOEXEC));
  RawMode raw(0);
  bool stdin_open = true;
  char buf[65536];
  for (;;) {
    struct pollfd p[4] = {{pty.master(), POLLIN, 0}, {0, POLLIN, 0}, {sfd.get(), POLLIN, 0}, {pty.exit_fd(), POLLIN, 0}};
    if (!stdin_open) p[1].fd = -1;
    int rc = poll(p, 4, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) break;
    if (p[0].revents) {
      ssize_t n = read(pty.master(), buf, sizeof(buf));
      if (n > 0) (void)WriteAll(1, buf, static_cast<size_t>(n));
      else break;  // EIO: the program and everything on the tty are gone
    }
    if (p[1].revents) {
      ssize_t n = read(0, buf, sizeof(buf));
      if (n > 0) (void)WriteAll(pty.master(), buf, static_cast<size_t>(n));
      else stdin_open = false;
    }
    if (p[2].revents) {
      struct signalfd_siginfo si;
      (void)read(sfd.get(), &si, sizeof(si));
      struct winsize ws;
      if (ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) (void)pty.Resize(ws.ws_row, ws.ws_col);
    }
    if (p[3].revents) {
      // Drain what the program printed last.
      for (;;) {
        struct pollfd q = {pty.master(), POLLIN, 0};
        if (poll(&q, 1, 50) <= 0) break;
        ssize_t n = read(pty.master(), buf, sizeof(buf));
        if (n <= 0) break;
        (void)WriteAll(1, buf, static_cast<size_t>(n));
      }
      break;
    }
  }
  auto code = pty.Wait();
  return code.ok() ? *code : 1;
}

}  // namespace

void RegisterShellCommands(CLI::App* sb) {
  // sandbox shell
  {
    struct Args {
      std::string id, user, cwd;
      std::vector<std::string> env, argv;
    };
    auto a = std::make_shared<Args>();
    auto o = std::make_shared<Opts>();
    CLI::App* c = sb->add_subcommand(
        "shell", "Interactive shell (a PTY) in a sandbox: shell ID [-- CMD...]; pipes when stdin is not a tty");
    AddOpts(c, o);
    c->add_option("--user,-u", a->user, "User inside (name or uid[:gid])");
    c->add_option("--cwd", a->cwd, "Working directory inside");
    c->add_option("--env,-e", a->env, "KEY=value (repeatable)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_option("id", a->id, "Sandbox id or name")->required();
    c->add_option("command", a->argv, "Program (default: the sandbox's shell)");
    c->callback([a, o] {
      auto rt = OpenRuntime(*o);
      int code = 0;
      // --json: no terminal session (it has no JSON form); run like exec
      // with stdin piped in and print {exit_code, stdout, stderr}.
      if (isatty(0) && !o->json) {
        PtyOptions po;
        po.argv = a->argv;
        po.user = a->user;
        po.cwd = a->cwd;
        po.env = a->env;
        if (const char* term = getenv("TERM")) po.env.insert(po.env.begin(), std::string("TERM=") + term);
        struct winsize ws;
        if (ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
          po.rows = ws.ws_row;
          po.cols = ws.ws_col;
        }
        auto pty = rt->OpenPty(a->id, po);
        if (!pty.ok()) Fail(pty.status());
        code = RunInteractive(**pty);
      } else {
        // Not a terminal: run the shell (or command) with stdin piped in.
        std::string input;
        char buf[65536];
        ssize_t n;
        while ((n = read(0, buf, sizeof(buf))) > 0) input.append(buf, static_cast<size_t>(n));
        ExecRequest req;
        req.argv = a->argv.empty() ? std::vector<std::string>{"/bin/sh"} : a->argv;
        req.user = a->user;
        req.cwd = a->cwd;
        req.env = a->env;
        req.stdin_data = std::move(input);
        if (!o->json) {
          req.on_stdout = [](std::string_view d) { (void)WriteAll(1, d.data(), d.size()); };
          req.on_stderr = [](std::string_view d) { (void)WriteAll(2, d.data(), d.size()); };
        }
        auto r = rt->Exec(a->id, req);
        if (!r.ok()) Fail(r.status());
        code = r->exit_code;
        if (o->json)
          std::cout << Json{{"exit_code", r->exit_code}, {"timed_out", r->timed_out}, {"stdout", r->stdout_data},
                            {"stderr", r->stderr_data}}
                           .dump(2)
                    << "\n";
      }
      if (code != 0) throw CLI::RuntimeError(code);
    });
  }

  CLI::App* ss = sb->add_subcommand("session", "Persistent shell sessions (create|exec|logs|input|rm|list)");
  ss->require_subcommand(1);
  // session create
  {
    struct Args {
      std::string id, sid, user, cwd;
      std::vector<std::string> env;
    };
    auto a = std::make_shared<Args>();
    auto o = std::make_shared<Opts>();
    CLI::App* c = ss->add_subcommand("create", "Start a session (a detached session host keeps it)");
    AddOpts(c, o);
    c->add_option("--user,-u", a->user, "User inside");
    c->add_option("--cwd", a->cwd, "Working directory inside");
    c->add_option("--env,-e", a->env, "KEY=value (repeatable)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_option("id", a->id, "Sandbox id or name")->required();
    c->add_option("session", a->sid, "Session id")->required();
    c->callback([a, o] {
      SessionOptions so;
      so.user = a->user;
      so.cwd = a->cwd;
      so.env = a->env;
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) Fail(ErrnoStatus("pipe2"));
      pid_t child = fork();
      if (child < 0) Fail(ErrnoStatus("fork"));
      if (child == 0) {
        close(p[0]);
        setsid();
        pid_t host = fork();
        if (host != 0) _exit(host < 0 ? 1 : 0);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
          dup2(devnull, 0);
          dup2(devnull, 1);
          dup2(devnull, 2);
          if (devnull > 2) close(devnull);
        }
        SessionHost(*o, a->id, a->sid, so, p[1]);
      }
      close(p[1]);
      UniqueFd rd(p[0]);
      int st;
      while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
      }
      std::string buf;
      auto reply = RecvLine(rd.get(), &buf);
      if (!reply.ok()) Fail(reply.status().WithContext("session host"));
      if (reply->contains("error")) {
        std::cerr << "error: " << reply->value("error", "") << "\n";
        throw CLI::RuntimeError(1);
      }
      if (o->json) std::cout << reply->dump(2) << "\n";
      else std::cout << reply->value("session_id", "") << "\t" << reply->value("shell", "") << "\n";
    });
  }
  // session exec
  {
    struct Args {
      std::string id, sid, command;
      bool async = false;
    };
    auto a = std::make_shared<Args>();
    auto o = std::make_shared<Opts>();
    CLI::App* c = ss->add_subcommand("exec", "Run a command in a session: exec ID SESSION 'COMMAND'");
    AddOpts(c, o);
    c->add_flag("--async", a->async, "Return at once with the command id");
    c->add_option("id", a->id, "Sandbox id or name")->required();
    c->add_option("session", a->sid, "Session id")->required();
    c->add_option("command", a->command, "Shell command line")->required();
    c->callback([a, o] {
      Json r = Request(*o, a->id, a->sid, Json{{"op", "exec"}, {"command", a->command}, {"async", a->async}});
      if (o->json) {
        std::cout << r.dump(2) << "\n";
      } else if (a->async) {
        std::cout << r.value("id", "") << "\n";
      } else {
        std::string out = r.value("stdout", ""), err = r.value("stderr", "");
        (void)WriteAll(1, out.data(), out.size());
        (void)WriteAll(2, err.data(), err.size());
      }
      int code = r.value("exit_code", 0);
      if (!a->async && code != 0) throw CLI::RuntimeError(code);
    });
  }
  // session logs
  {
    struct Args {
      std::string id, sid, cid;
      bool follow = false;
    };
    auto a = std::make_shared<Args>();
    auto o = std::make_shared<Opts>();
    CLI::App* c = ss->add_subcommand("logs", "A command's output: logs ID SESSION COMMAND_ID [-f]");
    AddOpts(c, o);
    c->add_flag("--follow,-f", a->follow, "Stream until the command ends");
    c->add_option("id", a->id, "Sandbox id or name")->required();
    c->add_option("session", a->sid, "Session id")->required();
    c->add_option("command_id", a->cid, "Command id")->required();
    c->callback([a, o] {
      bool json = o->json;
      Json r = Request(*o, a->id, a->sid, Json{{"op", "logs"}, {"command_id", a->cid}, {"follow", a->follow}},
                       [json](const Json& line) {
                         if (json) {
                           std::cout << DumpJson(line) << "\n" << std::flush;
                           return;
                         }
                         std::string d = line.value("data", "");
                         (void)WriteAll(line.value("stream", "") == "stderr" ? 2 : 1, d.data(), d.size());
                       });
      Json done = r.value("done", Json::object());
      if (json) {
        std::cout << done.dump(2) << "\n";
      } else if (!a->follow) {
        std::string out = done.value("stdout", ""), err = done.value("stderr", "");
        (void)WriteAll(1, out.data(), out.size());
        (void)WriteAll(2, err.data(), err.size());
      }
    });
  }
  // session input
  {
    struct Args {
      std::string id, sid, cid, data;
    };
    auto a = std::make_shared<Args>();
    auto o = std::make_shared<Opts>();
    CLI::App* c = ss->add_subcommand("input", "Send stdin to a running command: input ID SESSION COMMAND_ID TEXT");
    AddOpts(c, o);
    c->add_option("id", a->id, "Sandbox id or name")->required();
    c->add_option("session", a->sid, "Session id")->required();
    c->add_option("command_id", a->cid, "Command id")->required();
    c->add_option("data", a->data, "Bytes to send (add \\n yourself)")->required();
    c->callback([a, o] {
      Json r = Request(*o, a->id, a->sid, Json{{"op", "input"}, {"command_id", a->cid}, {"data", a->data}});
      if (o->json) std::cout << r.dump(2) << "\n";
    });
  }
  // session rm
  {
    struct Args {
      std::string id;
      std::vector<std::string> sids;
    };
    auto a = std::make_shared<Args>();
    auto o = std::make_shared<Opts>();
    CLI::App* c = ss->add_subcommand("rm", "Delete sessions (kills every process they started)");
    AddOpts(c, o);
    c->add_option("id", a->id, "Sandbox id or name")->required();
    c->add_option("sessions", a->sids, "Session ids")->required();
    c->callback([a, o] {
      for (const auto& sid : a->sids) (void)Request(*o, a->id, sid, Json{{"op", "delete"}});
      if (o->json) std::cout << Json{{"deleted", a->sids}}.dump(2) << "\n";
      else for (const auto& sid : a->sids) std::cout << sid << "\n";
    });
  }
  // session list
  {
    auto id = std::make_shared<std::string>();
    auto o = std::make_shared<Opts>();
    CLI::App* c = ss->add_subcommand("list", "List a sandbox's sessions");
    AddOpts(c, o);
    c->add_option("id", *id, "Sandbox id or name")->required();
    c->callback([id, o] {
      auto rt = OpenRuntime(*o);
      auto rec = rt->Get(*id);
      if (!rec.ok()) Fail(rec.status());
      Json data = Json::array();
      std::string dir = SocketDir(o->data_dir, rec->id);
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        std::string path = e.path();
        if (e.path().extension() != ".sock") continue;
        auto fd = Connect(path);
        if (!fd.ok()) {
          if (fd.status().code() == Code::kNotFound) unlink(path.c_str());  // host gone
          continue;
        }
        if (!SendLine(fd->get(), Json{{"op", "info"}}).ok()) continue;
        std::string buf;
        auto line = RecvLine(fd->get(), &buf);
        if (line.ok() && !line->contains("error")) data.push_back(*line);
      }
      if (o->json) {
        std::cout << Json{{"data", data}}.dump(2) << "\n";
        return;
      }
      std::cout << "SESSION\tALIVE\tRUNNING\tCOMMANDS\n";
      for (const auto& s : data) {
        std::cout << s.value("session_id", "") << "\t" << (s.value("alive", false) ? "yes" : "no") << "\t"
                  << s.value("running_command", "-") << "\t" << s.value("commands", Json::array()).size() << "\n";
      }
    });
  }
}

}  // namespace warren::sandbox
