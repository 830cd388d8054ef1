// Root integration tests: persistent shell sessions (state, separate
// streams, async + logs + follow, stdin, output cap, delete kills every
// descendant, shell death, isolation, stop/pause, idle policy) and PTYs
// from the sandbox's own devpts (tty path, size + resize, an interactive
// full-screen program, exit status).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "harness.h"

namespace warren::sandbox::testing {
namespace {

using std::chrono::milliseconds;

// Pids in a cgroup directory and all its children (v1 freezer or v2).
std::vector<pid_t> CgroupTreePids(const std::string& dir) {
  std::vector<pid_t> out;
  std::error_code ec;
  std::vector<std::string> dirs{dir};
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (e.is_directory()) dirs.push_back(e.path());
  }
  for (const auto& d : dirs) {
    std::ifstream in(d + "/cgroup.procs");
    pid_t p;
    while (in >> p) out.push_back(p);
  }
  return out;
}

class SessionTest : public RuntimeTest {
 protected:
  std::string CgroupDir(const std::string& name) {
    if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) return "/sys/fs/cgroup/" + prefix_ + "/" + name;
    return "/sys/fs/cgroup/freezer/" + prefix_ + "/" + name;
  }

  CommandInfo Run(const std::string& id, const std::string& session, const std::string& cmd) {
    SessionExecOptions o;
    o.timeout = milliseconds(30000);
    auto r = rt_->SessionExec(id, session, cmd, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    EXPECT_FALSE(r->running) << cmd;
    return *r;
  }

  void MustCreateSession(const std::string& id, const std::string& session, SessionOptions o = {}) {
    auto s = rt_->CreateSession(id, session, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE(s->alive);
  }
};

TEST_F(SessionTest, StatePersistsAcrossCommands) {
  auto sb = MustCreate();
  MustCreateSession(sb.id, "main");
  auto a = Run(sb.id, "main", "cd /tmp && export FOO=bar && greet() { echo hello-$1; }");
  EXPECT_EQ(a.exit_code, 0) << a.stderr_data;
  auto b = Run(sb.id, "main", "pwd; echo $FOO; greet you");
  EXPECT_EQ(b.stdout_data, "/tmp\nbar\nhello-you\n");
  EXPECT_EQ(b.exit_code, 0);
  // Quotes and multi-line commands survive the framing.
  auto c = Run(sb.id, "main", "echo 'it'\"'\"'s'\nfor i in 1 2; do\n  echo line$i\ndone");
  EXPECT_EQ(c.stdout_data, "it's\nline1\nline2\n");
  // A syntax error is the command's failure, not the session's.
  auto d = Run(sb.id, "main", "echo \"unterminated");
  EXPECT_NE(d.exit_code, 0);
  EXPECT_EQ(Run(sb.id, "main", "echo $FOO").stdout_data, "bar\n");
  auto info = rt_->GetSession(sb.id, "main");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->commands.size(), 5u);
  EXPECT_TRUE(info->alive);
}

TEST_F(SessionTest, SeparateStreamsAndExitCodes) {
  auto sb = MustCreate();
  MustCreateSession(sb.id, "s");
  auto a = Run(sb.id, "s", "echo out; echo err >&2; (exit 3)");
  EXPECT_EQ(a.stdout_data, "out\n");
  EXPECT_EQ(a.stderr_data, "err\n");
  EXPECT_EQ(a.exit_code, 3);
  auto b = Run(sb.id, "s", "printf no-newline; printf e2 >&2; false");
  EXPECT_EQ(b.stdout_data, "no-newline");
  EXPECT_EQ(b.stderr_data, "e2");
  EXPECT_EQ(b.exit_code, 1);
  auto c = Run(sb.id, "s", "no-such-cmd-xyz");
  EXPECT_EQ(c.exit_code, 127);
  EXPECT_TRUE(c.stdout_data.empty());
  EXPECT_NE(c.stderr_data.find("no-such-cmd-xyz"), std::string::npos);
  // Output that imitates a marker with the wrong nonce is plain output.
  auto d = Run(sb.id, "s", "printf '\\036WARREN-fake:99:0\\n'");
  EXPECT_EQ(d.stdout_data, "\036WARREN-fake:99:0\n");
}

TEST_F(SessionTest, AsyncCommandLogsAndFollow) {
  auto sb = MustCreate();
  MustCreateSession(sb.id, "s");
  SessionExecOptions async;
  async.async = true;
  auto started = rt_->SessionExec(sb.id, "s", "echo start; read go; echo end; echo warn >&2; exit_code() { return 4; }; exit_code", async);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  EXPECT_TRUE(started->running);
  std::string id = started->id;
  // Busy: a second command is refused while the first runs.
  EXPECT_EQ(rt_->SessionExec(sb.id, "s", "true").status().code(), Code::kFailedPrecondition);
  // Follow in another thread: it sees "start", then everything live.
  std::string out, err;
  std::thread follower([&] {
    auto r = rt_->CommandLogs(sb.id, "s", id, [&](LogStream s, std::string_view d) {
      (s == LogStream::kStdout ? out : err).append(d);
    }, milliseconds(30000));
    EXPECT_TRUE(r.ok());
    EXPECT_FALSE(r->running);
  });
  // Poll until "start" is logged (the command is blocked in `read`).
  for (int i = 0; i < 3000; ++i) {
    auto g = rt_->GetCommand(sb.id, "s", id);
    if (!g.ok() || g->stdout_data == "start\n") break;
    std::this_thread::sleep_for(milliseconds(5));
  }
  auto mid = rt_->GetCommand(sb.id, "s", id);
  EXPECT_TRUE(mid.ok() && mid->running);
  EXPECT_TRUE(mid.ok() && mid->stdout_data == "start\n");
  EXPECT_TRUE(rt_->SendInput(sb.id, "s", id, "now\n").ok());
  follower.join();
  EXPECT_EQ(out, "start\nend\n");
  EXPECT_EQ(err, "warn\n");
  auto fin = rt_->GetCommand(sb.id, "s", id);
  ASSERT_TRUE(fin.ok());
  EXPECT_FALSE(fin->running);
  EXPECT_EQ(fin->exit_code, 4);
  EXPECT_EQ(fin->stdout_data, "start\nend\n");
  // Logs of a finished command, without follow.
  auto again = rt_->CommandLogs(sb.id, "s", id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->stderr_data, "warn\n");
  // Unknown ids and input to a finished command.
  EXPECT_EQ(rt_->GetCommand(sb.id, "s", "cmd-999").status().code(), Code::kNotFound);
  EXPECT_EQ(rt_->SendInput(sb.id, "s", id, "x").code(), Code::kFailedPrecondition);
  EXPECT_EQ(rt_->GetCommand(sb.id, "nope", id).status().code(), Code::kNotFound);
}

TEST_F(SessionTest, StdinToInteractiveCommand) {
  auto sb = MustCreate();
  MustCreateSession(sb.id, "s");
  SessionExecOptions async;
  async.async = true;
  auto c = rt_->SessionExec(sb.id, "s", "read x; echo got $x; read y; echo and $y", async);
  ASSERT_TRUE(c.ok());
  // Input sent right away must reach the command, not the shell.
  ASSERT_TRUE(rt_->SendInput(sb.id, "s", c->id, "hello\n").ok());
  ASSERT_TRUE(rt_->SendInput(sb.id, "s", c->id, "world\n").ok());
  auto r = rt_->CommandLogs(sb.id, "s", c->id, [](LogStream, std::string_view) {}, milliseconds(30000));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->running);
  EXPECT_EQ(r->stdout_data, "got hello\nand world\n");
  EXPECT_EQ(r->exit_code, 0);
}

TEST_F(SessionTest, OutputIsCapped) {
  auto sb = MustCreate();
  SessionOptions o;
  o.output_cap = 1000;
  MustCreateSession(sb.id, "s", o);
  auto r = Run(sb.id, "s", "head -c 5000 /dev/zero | tr '\\0' a; head -c 3000 /dev/zero | tr '\\0' b >&2");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data, std::string(1000, 'a') + std::string(kTruncatedMarker));
  EXPECT_EQ(r.stdout_dropped, 4000);
  EXPECT_EQ(r.stderr_data.size(), 1000 + kTruncatedMarker.size());
  EXPECT_EQ(r.stderr_dropped, 2000);
  EXPECT_EQ(r.ToJson()["stdout_truncated_bytes"], 4000);
  // The session goes on normally.
  EXPECT_EQ(Run(sb.id, "s", "echo ok").stdout_data, "ok\n");
}

TEST_F(SessionTest, DeleteKillsEveryDescendant) {
  auto sb = MustCreate();
  MustCreateSession(sb.id, "s");
  // A background job, one that ignores SIGHUP and SIGTERM, and a
  // double-forked daemon in its own session (escapes the process group).
  // Each command waits until its process has exec'd.
  const char* wait_for = "\nuntil ps -o args | grep -q '^sleep %s'; do sleep 0.01; done";
  auto started = [&](const std::string& cmd, const std::string& tag) {
    char w[160];
    snprintf(w, sizeof(w), wait_for, tag.c_str());
    return Run(sb.id, "s", cmd + w).exit_code;
  };
  EXPECT_EQ(started("sleep 1001 >/dev/null 2>&1 &", "1001"), 0);
  EXPECT_EQ(started("(trap '' HUP TERM; exec sleep 1002) >/dev/null 2>&1 &", "1002"), 0);
  EXPECT_EQ(started("(setsid sh -c 'sleep 1003' </dev/null >/dev/null 2>&1 &)", "1003"), 0);
  // All of them are ps-visible inside the sandbox and in the session cgroup.
  auto ps = Sh(sb.id, "ps -o args | grep -c '^sleep 100[123]'");
  EXPECT_EQ(ps.stdout_data, "3\n");
  EXPECT_EQ(Sh(sb.id, "ps -o pgid,args | grep -c '^ *2 sleep 100[12]'").stdout_data, "2\n");
  std::string sess_cg = CgroupDir(sb.id + "/session-s");
  EXPECT_GE(CgroupTreePids(sess_cg).size(), 5u);  // shell + helper + 3 sleeps (+ the daemon's sh)
  // A long command is running while we delete.
  SessionExecOptions async;
  async.async = true;
  ASSERT_TRUE(rt_->SessionExec(sb.id, "s", "sleep 1004", async).ok());

  ASSERT_TRUE(rt_->DeleteSession(sb.id, "s").ok());
  EXPECT_EQ(Sh(sb.id, "ps -o args | grep -c '^sleep 100'").stdout_data, "0\n");
  EXPECT_FALSE(std::filesystem::exists(sess_cg));
  // Only the init is left in the sandbox cgroup.
  auto left = CgroupTreePids(CgroupDir(sb.id));
  EXPECT_EQ(left.size(), 1u);
  EXPECT_EQ(rt_->GetSession(sb.id, "s").status().code(), Code::kNotFound);
  EXPECT_EQ(rt_->DeleteSession(sb.id, "s").code(), Code::kNotFound);
  auto list = rt_->ListSessions(sb.id);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_F(SessionTest, SurvivesOtherExecsAndSessionsAreSeparate) {
  auto sb = MustCreate();
  MustCreateSession(sb.id, "one");
  MustCreateSession(sb.id, "two");
  EXPECT_EQ(rt_->CreateSession(sb.id, "one").status().code(), Code::kConflict);
  EXPECT_EQ(rt_->CreateSession(sb.id, "bad/id").status().code(), Code::kInvalidArgument);
  Run(sb.id, "one", "export X=1; cd /etc");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Sh(sb.id, "echo $X; pwd").stdout_data, "\n/\n");
  EXPECT_EQ(Run(sb.id, "two", "echo x=$X; pwd").stdout_data, "x=\n/\n");
  EXPECT_EQ(Run(sb.id, "one", "echo x=$X; pwd").stdout_data, "x=1\n/etc\n");
  auto list = rt_->ListSessions(sb.id);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].session_id, "one");
  EXPECT_EQ((*list)[0].shell, "/bin/bash");  // builtin:minimal has bash-static
}

TEST_F(SessionTest, UserCwdEnvOptions) {
  auto sb = MustCreate();
  SessionOptions o;
  o.user = "sandbox";
  o.cwd = "/tmp";
  o.env = {"GREETING=hi"};
  MustCreateSession(sb.id, "u", o);
  EXPECT_EQ(Run(sb.id, "u", "id -u; pwd; echo $GREETING").stdout_data, "1000\n/tmp\nhi\n");
  SessionOptions bad;
  bad.user = "no-such-user";
  EXPECT_FALSE(rt_->CreateSession(sb.id, "b", bad).ok());
  EXPECT_EQ(rt_->CreateSession("no-such-sandbox", "x").status().code(), Code::kNotFound);
}

TEST_F(SessionTest, ShellDeathIsReportedAndSessionRecreated) {
  auto sb = MustCreate();
  MustCreateSession(sb.id, "s");
  auto r = Run(sb.id, "s", "echo bye; exit 5");
  EXPECT_EQ(r.stdout_data, "bye\n");
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_TRUE(r.shell_exited);
  auto info = rt_->GetSession(sb.id, "s");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->alive);
  EXPECT_EQ(info->shell_exit_code, 5);
  EXPECT_EQ(info->ended, "shell exited with status 5");
  EXPECT_EQ(rt_->SessionExec(sb.id, "s", "true").status().code(), Code::kFailedPrecondition);
  // The shell killed from inside the sandbox.
  MustCreateSession(sb.id, "s");
  EXPECT_EQ(Run(sb.id, "s", "echo again").stdout_data, "again\n");
  SessionExecOptions async;
  async.async = true;
  auto k = rt_->SessionExec(sb.id, "s", "kill -9 $$", async);
  ASSERT_TRUE(k.ok());
  auto fin = rt_->CommandLogs(sb.id, "s", k->id, [](LogStream, std::string_view) {}, milliseconds(30000));
  ASSERT_TRUE(fin.ok());
  EXPECT_FALSE(fin->running);
  EXPECT_EQ(fin->exit_code, 128 + SIGKILL);
  EXPECT_TRUE(fin->shell_exited);
}

TEST_F(SessionTest, SessionsInTwoSandboxesAreIsolated) {
  auto a = MustCreate();
  auto b = MustCreate();
  MustCreateSession(a.id, "s");
  MustCreateSession(b.id, "s");
  Run(a.id, "s", "export V=a; echo a > /tmp/mark");
  EXPECT_EQ(Run(b.id, "s", "echo v=$V; cat /tmp/mark 2>/dev/null || echo none").stdout_data, "v=\nnone\n");
  EXPECT_NE(Run(a.id, "s", "hostname").stdout_data, Run(b.id, "s", "hostname").stdout_data);
  ASSERT_TRUE(rt_->DeleteSession(a.id, "s").ok());
  EXPECT_EQ(Run(b.id, "s", "echo alive").stdout_data, "alive\n");
  EXPECT_EQ(rt_->GetSession(a.id, "s").status().code(), Code::kNotFound);
}

TEST_F(SessionTest, StopPauseAndDeleteOfTheSandbox) {
  auto sb = MustCreate();
  MustCreateSession(sb.id, "s");
  SessionExecOptions async;
  async.async = true;
  // Pause freezes the session; commands are refused until resume.
  ASSERT_TRUE(rt_->Pause(sb.id).ok());
  EXPECT_EQ(rt_->SessionExec(sb.id, "s", "true").status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(rt_->DeleteSession(sb.id, "s").code(), Code::kFailedPrecondition);
  ASSERT_TRUE(rt_->Resume(sb.id).ok());
  EXPECT_EQ(Run(sb.id, "s", "echo thawed").stdout_data, "thawed\n");
  // Stop ends the session and its running command.
  auto c = rt_->SessionExec(sb.id, "s", "sleep 1000", async);
  ASSERT_TRUE(c.ok());
  auto stopped = rt_->Stop(sb.id);
  ASSERT_TRUE(stopped.ok()) << stopped.status().ToString();
  EXPECT_EQ(rt_->GetSession(sb.id, "s").status().code(), Code::kNotFound);
  auto list = rt_->ListSessions(sb.id);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  EXPECT_EQ(rt_->CreateSession(sb.id, "s").status().code(), Code::kFailedPrecondition);
  EXPECT_TRUE(CgroupDirs(prefix_).empty());
  ASSERT_TRUE(rt_->Start(sb.id).ok());
  MustCreateSession(sb.id, "s");
  EXPECT_EQ(Run(sb.id, "s", "echo back").stdout_data, "back\n");
  // Delete with a live session.
  ASSERT_TRUE(rt_->Delete(sb.id).ok());
  EXPECT_EQ(rt_->ListSessions(sb.id).status().code(), Code::kNotFound);
}

class SessionIdleTest : public SessionTest {
 protected:
  void SetUp() override {
    clock_ = &fake_;
    SessionTest::SetUp();
  }
  FakeClock fake_;
};

TEST_F(SessionIdleTest, RunningCommandsAreActivityIdleSessionsAreNot) {
  CreateOptions o;
  o.auto_stop_minutes = 1;
  auto busy = MustCreate(o);
  auto idle = MustCreate(o);
  MustCreateSession(busy.id, "s");
  MustCreateSession(idle.id, "s");
  SessionExecOptions async;
  async.async = true;
  ASSERT_TRUE(rt_->SessionExec(busy.id, "s", "read never", async).ok());
  fake_.Advance(2 * 60 * 1000000LL);
  auto stopped = rt_->EnforceIdlePolicies();
  ASSERT_TRUE(stopped.ok()) << stopped.status().ToString();
  EXPECT_EQ(stopped->stopped, std::vector<std::string>{idle.id});
  auto b = rt_->Get(busy.id);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->state, SandboxState::kStarted);
  EXPECT_EQ(rt_->ListSessions(idle.id)->size(), 0u);
}

// --- PTY ---

// Reads the master until the program exits and the terminal drains, or
// until `until` appears (when non-empty).
std::string ReadPty(PtySession& p, const std::string& until = "", milliseconds limit = milliseconds(20000)) {
  std::string out;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!until.empty() && out.find(until) != std::string::npos) break;
    struct pollfd pfd = {p.master(), POLLIN, 0};
    int rc = poll(&pfd, 1, 100);
    if (rc <= 0) continue;
    ssize_t n = read(p.master(), buf, sizeof(buf));
    if (n <= 0) break;  // EIO once every slave holder has gone
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Waits for the program's exit code, killing it after `limit`.
int WaitExit(PtySession& p, milliseconds limit = milliseconds(20000)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = p.TryWait();
    if (!r.ok()) return -1;
    if (r->has_value()) return **r;
    std::this_thread::sleep_for(milliseconds(10));
  }
  p.Kill();
  auto r = p.Wait();
  ADD_FAILURE() << "pty program did not exit";
  return r.ok() ? *r : -1;
}

TEST_F(SessionTest, PtyTtySizeAndExitStatus) {
  auto sb = MustCreate();
  PtyOptions o;
  o.argv = {"sh", "-c", "t=$(tty); echo tty=$t; test -c $t && echo exists; stty size; exit 7"};
  o.rows = 30;
  o.cols = 100;
  auto p = rt_->OpenPty(sb.id, o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::string out = ReadPty(**p);
  EXPECT_NE(out.find("tty=" + (*p)->tty_path()), std::string::npos) << out;
  EXPECT_EQ((*p)->tty_path().rfind("/dev/pts/", 0), 0u);
  EXPECT_NE(out.find("exists"), std::string::npos) << out;
  EXPECT_NE(out.find("30 100"), std::string::npos) << out;
  EXPECT_EQ(WaitExit(**p), 7);
  EXPECT_EQ(rt_->OpenPty(sb.id, PtyOptions{{"true"}, {}, "", "", 0, 80}).status().code(), Code::kInvalidArgument);
}

TEST_F(SessionTest, PtyResizeReachesTheProgram) {
  auto sb = MustCreate();
  PtyOptions o;
  o.argv = {"sh", "-c", "trap 'echo winch' WINCH; stty size; echo ready; read x; stty size; echo end"};
  auto p = rt_->OpenPty(sb.id, o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::string first = ReadPty(**p, "ready");
  EXPECT_NE(first.find("24 80"), std::string::npos) << first;
  ASSERT_TRUE((*p)->Resize(40, 120).ok());
  ASSERT_EQ(write((*p)->master(), "go\r", 3), 3);
  std::string rest = ReadPty(**p);
  EXPECT_NE(rest.find("40 120"), std::string::npos) << rest;
  EXPECT_NE(rest.find("end"), std::string::npos) << rest;
  EXPECT_EQ(WaitExit(**p), 0);
  EXPECT_EQ((*p)->Resize(0, 1).code(), Code::kInvalidArgument);
}

TEST_F(SessionTest, PtyRunsAFullScreenEditor) {
  auto sb = MustCreate();
  PtyOptions o;
  o.argv = {"vi", "/tmp/note.txt"};
  o.user = "sandbox";
  auto p = rt_->OpenPty(sb.id, o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  // Let vi draw its screen, then type, leave insert mode, write and quit.
  std::string screen = ReadPty(**p, "note.txt", milliseconds(10000));
  EXPECT_NE(screen.find("\033["), std::string::npos);  // escape sequences: it drew
  // Each step waits for vi's screen to show it took the previous keys (an
  // ESC followed too quickly by ':' reads as an escape sequence).
  const std::pair<const char*, const char*> steps[] = {
      {"ihello from vi", "hello from vi"}, {"\033", "- /tmp/note.txt"}, {":wq\r", ""}};
  for (const auto& [keys, shown] : steps) {
    ASSERT_GT(write((*p)->master(), keys, strlen(keys)), 0);
    if (*shown) {
      EXPECT_NE(ReadPty(**p, shown, milliseconds(10000)).find(shown), std::string::npos) << keys;
    }
  }
  std::string rest = ReadPty(**p, "", milliseconds(5000));
  EXPECT_EQ(WaitExit(**p, milliseconds(30000)), 0) << screen << "\n---\n" << rest;
  auto cat = Sh(sb.id, "cat /tmp/note.txt; stat -c %u /tmp/note.txt");
  EXPECT_EQ(cat.stdout_data, "hello from vi\n1000\n");
}

TEST_F(SessionTest, PtyDefaultShellIsInteractive) {
  auto sb = MustCreate();
  auto p = rt_->OpenPty(sb.id, PtyOptions{});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const char* cmds = "echo $((6*7)); exit 3\r";
  ASSERT_GT(write((*p)->master(), cmds, strlen(cmds)), 0);
  std::string out = ReadPty(**p);
  EXPECT_NE(out.find("42"), std::string::npos) << out;
  EXPECT_EQ(WaitExit(**p), 3);
}

}  // namespace
}  // namespace warren::sandbox::testing
