// Drives the `warren-sandbox` binary (the same commands `warren sandbox` /
// `warren snapshot` register) end to end with --json, as root.
#include "harness.h"

#ifndef WARREN_SANDBOX_CLI
#define WARREN_SANDBOX_CLI ""
#endif

namespace warren::sandbox::testing {
namespace {

class CliTest : public RuntimeTest {
 protected:
  static long VerbEnd(const std::vector<std::string>& args) { return args.size() > 2 && args[1] == "session" ? 3 : 2; }
  // Runs the CLI with --data-dir appended; returns exit code and output.
  int Run(std::vector<std::string> args, std::string* out) {
    // Options go right after "sandbox <verb>" ("sandbox session <verb>"), before any "--".
    args.insert(args.begin() + VerbEnd(args), {"--data-dir", data_dir_});
    args.insert(args.begin(), WARREN_SANDBOX_CLI);
    auto rc = RunCommand(args, out);
    EXPECT_TRUE(rc.ok());
    return rc.value_or(-1);
  }
  Json RunJson(std::vector<std::string> args) {
    args.insert(args.begin() + VerbEnd(args), "--json");
    std::string out;
    EXPECT_EQ(Run(args, &out), 0) << out;
    // Log lines go to stderr, merged here: the JSON starts at the first '{'.
    auto j = ParseJson(out.substr(std::min(out.find('{'), out.size())));
    EXPECT_TRUE(j.ok()) << out;
    return j.ok() ? *j : Json();
  }
};

TEST_F(CliTest, SandboxAndSnapshotCommands) {
  // The CLI opens the runtime itself: let go of the fixture's (same data
  // dir; the flock makes sharing safe anyway).
  Json created = RunJson({"sandbox", "create", "--name", "cli-box", "--memory", "256M", "-l", "k=v"});
  EXPECT_EQ(created["state"], "started");
  EXPECT_EQ(created["labels"]["k"], "v");
  EXPECT_EQ(created["resources"]["memory_bytes"], 256LL << 20);
  std::string out;
  EXPECT_EQ(Run({"sandbox", "exec", "cli-box", "--", "sh", "-c", "echo hi; exit 4"}, &out), 4);
  EXPECT_NE(out.find("hi\n"), std::string::npos);
  Json ex = RunJson({"sandbox", "exec", "cli-box", "-e", "A=b", "--", "sh", "-c", "echo $A"});
  EXPECT_EQ(ex["stdout"], "b\n");
  Json kids = RunJson({"sandbox", "fork", "cli-box", "-n", "2"});
  ASSERT_EQ(kids["data"].size(), 2u);
  Json tree = RunJson({"sandbox", "tree", "cli-box"});
  EXPECT_EQ(tree["children"].size(), 2u);
  EXPECT_EQ(RunJson({"sandbox", "pause", "cli-box"})["state"], "paused");
  EXPECT_EQ(RunJson({"sandbox", "resume", "cli-box"})["state"], "started");
  EXPECT_EQ(RunJson({"sandbox", "stop", "cli-box"})["state"], "stopped");
  EXPECT_EQ(RunJson({"sandbox", "start", "cli-box"})["state"], "started");
  EXPECT_EQ(RunJson({"sandbox", "list"})["data"].size(), 3u);
  ASSERT_TRUE(WriteStringToFile(data_dir_ + "/Recipe", "FROM builtin:minimal\nENV X=1\nRUN echo built > /b\n").ok());
  Json snap = RunJson({"snapshot", "build", "cli-snap", "-f", data_dir_ + "/Recipe"});
  EXPECT_EQ(snap["name"], "cli-snap");
  EXPECT_EQ(RunJson({"snapshot", "list"})["data"].size(), 2u);
  Json from = RunJson({"sandbox", "create", "--snapshot", "cli-snap"});
  Json cat = RunJson({"sandbox", "exec", from["id"], "--", "cat", "/b"});
  EXPECT_EQ(cat["stdout"], "built\n");
  EXPECT_NE(Run({"sandbox", "exec", "no-such-box", "--", "true"}, &out), 0);
  EXPECT_NE(out.find("NotFound"), std::string::npos) << out;
  EXPECT_EQ(Run({"sandbox", "rm", "cli-box", from["id"]}, &out), 0) << out;
  EXPECT_EQ(Run({"snapshot", "rm", "cli-snap"}, &out), 0) << out;
  EXPECT_EQ(RunJson({"sandbox", "list"})["data"].size(), 2u);  // the two forks remain
  // The CLI used the data dir's cgroup prefix, so the fixture's teardown
  // (which checks for leaked cgroups) sees and removes its sandboxes.
  EXPECT_EQ(CgroupDirs(prefix_).size(), 2u * 4);
}

TEST_F(CliTest, VolumeCommands) {
  std::string out;
  EXPECT_NE(Run({"volume", "create", "v1", "--size", "12X"}, &out), 0);
  EXPECT_NE(out.find("bad --size"), std::string::npos) << out;
  EXPECT_NE(Run({"volume", "create", "v1", "--size", "4K"}, &out), 0);
  EXPECT_NE(out.find("at least 1 MiB"), std::string::npos) << out;
  Json v = RunJson({"volume", "create", "v1", "--size", "8M"});
  EXPECT_EQ(v["name"], "v1");
  EXPECT_EQ(v["size_bytes"], 8LL << 20);
  Json sb = RunJson({"sandbox", "create", "-v", "v1:/v"});
  ASSERT_EQ(sb["state"], "started");
  Json list = RunJson({"volume", "list"});
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["sandboxes"][0], sb["id"]);
  EXPECT_NE(Run({"volume", "rm", "v1"}, &out), 0);
  EXPECT_NE(out.find("used by sandbox"), std::string::npos) << out;
  ASSERT_TRUE(rt_->Delete(sb["id"].get<std::string>()).ok());
  EXPECT_EQ(Run({"volume", "rm", "v1"}, &out), 0) << out;
  EXPECT_EQ(RunJson({"volume", "list"})["data"].size(), 0u);
}

TEST_F(CliTest, IsolatedNetwork) {
  if (!rt_->features().network_isolated) GTEST_SKIP() << rt_->features().network_reason;
  Json created = RunJson({"sandbox", "create", "--network", "isolated", "--allow-cidr", "10.99.0.0/24",
                          "--allow-cidr", "10.99.0.0/24", "--dns", "192.0.2.53"});
  EXPECT_EQ(created["network"], "isolated");
  EXPECT_EQ(created["allow_cidrs"], Json::array({"10.99.0.0/24"}));
  EXPECT_EQ(created["dns"], Json::array({"192.0.2.53"}));
  EXPECT_NE(created["ip"], "");
  Json ex = RunJson({"sandbox", "exec", created["id"], "--", "sh", "-c", "ls /sys/class/net | tr '\\n' ' '"});
  EXPECT_EQ(ex["stdout"], "eth0 lo ");
  std::string out;
  EXPECT_NE(Run({"sandbox", "create", "--network", "isolated", "--allow-cidr", "10.99.0.1/24"}, &out), 0);
  EXPECT_NE(out.find("host bits"), std::string::npos) << out;
  EXPECT_NE(Run({"sandbox", "create", "--network", "bridge"}, &out), 0);
  EXPECT_NE(out.find("unknown network policy"), std::string::npos) << out;
  EXPECT_EQ(Run({"sandbox", "rm", created["id"]}, &out), 0) << out;
  EXPECT_TRUE(LinksWithPrefix(NetIfPrefix(prefix_)).empty());
}

TEST_F(CliTest, ArchiveRestoreAndIdlePolicyFlags) {
  Json created = RunJson({"sandbox", "create", "--name", "arch-box", "--auto-stop", "15", "--auto-archive", "60",
                          "--auto-delete", "1440"});
  EXPECT_EQ(created["auto_stop_minutes"], 15);
  EXPECT_EQ(created["auto_archive_minutes"], 60);
  EXPECT_EQ(created["auto_delete_minutes"], 1440);
  EXPECT_EQ(RunJson({"sandbox", "get", "arch-box"})["auto_delete_minutes"], 1440);
  std::string out;
  ASSERT_EQ(Run({"sandbox", "exec", "arch-box", "--", "sh", "-c", "echo kept > /root/k"}, &out), 0) << out;
  Json archived = RunJson({"sandbox", "archive", "arch-box"});
  EXPECT_EQ(archived["state"], "archived");
  EXPECT_GT(archived["archive_bytes"].get<int64_t>(), 0);
  EXPECT_NE(Run({"sandbox", "exec", "arch-box", "--", "true"}, &out), 0);
  EXPECT_NE(out.find("FailedPrecondition"), std::string::npos) << out;
  EXPECT_EQ(RunJson({"sandbox", "restore", "arch-box"})["state"], "stopped");
  EXPECT_EQ(RunJson({"sandbox", "start", "arch-box"})["state"], "started");
  EXPECT_EQ(RunJson({"sandbox", "exec", "arch-box", "--", "cat", "/root/k"})["stdout"], "kept\n");
  // Defaults: delete never (-1), archive off (0).
  Json plain = RunJson({"sandbox", "create", "--no-start"});
  EXPECT_EQ(plain["auto_delete_minutes"], -1);
  EXPECT_EQ(plain["auto_archive_minutes"], 0);
  Json kid = RunJson({"sandbox", "fork", "arch-box", "--disk", "0"});
  ASSERT_EQ(kid["data"].size(), 1u);
  EXPECT_EQ(kid["data"][0]["resources"]["disk_bytes"], 0);
  EXPECT_NE(Run({"sandbox", "fork", "arch-box", "--disk", "-3"}, &out), 0);
  EXPECT_NE(Run({"sandbox", "create", "--disk", "lots"}, &out), 0);
  EXPECT_NE(out.find("bad --disk"), std::string::npos) << out;
}

TEST_F(CliTest, ShellAndSessionCommands) {
  Json created = RunJson({"sandbox", "create", "--name", "sess-box"});
  ASSERT_EQ(created["state"], "started");
  // Sessions: a detached session host keeps the shell between invocations.
  Json s = RunJson({"sandbox", "session", "create", "sess-box", "work"});
  EXPECT_EQ(s["session_id"], "work");
  EXPECT_TRUE(s["alive"].get<bool>());
  Json a = RunJson({"sandbox", "session", "exec", "sess-box", "work", "cd /tmp; export V=kept; echo e >&2"});
  EXPECT_EQ(a["exit_code"], 0);
  EXPECT_EQ(a["stderr"], "e\n");
  Json b = RunJson({"sandbox", "session", "exec", "sess-box", "work", "pwd; echo $V; exit_with() { return $1; }"});
  EXPECT_EQ(b["stdout"], "/tmp\nkept\n");
  std::string out;
  // Exits with the command's code (the function defined above persists).
  EXPECT_EQ(Run({"sandbox", "session", "exec", "sess-box", "work", "echo plain; exit_with 6"}, &out), 6);
  EXPECT_NE(out.find("plain\n"), std::string::npos);
  // Async + input + logs.
  Json c = RunJson({"sandbox", "session", "exec", "--async", "sess-box", "work", "read x; echo got $x"});
  std::string cid = c["id"];
  EXPECT_TRUE(c["running"].get<bool>());
  RunJson({"sandbox", "session", "input", "sess-box", "work", cid, "hi\n"});
  EXPECT_EQ(Run({"sandbox", "session", "logs", "-f", "sess-box", "work", cid}, &out), 0);
  EXPECT_NE(out.find("got hi\n"), std::string::npos) << out;
  Json logs = RunJson({"sandbox", "session", "logs", "sess-box", "work", cid});
  EXPECT_EQ(logs["stdout"], "got hi\n");
  EXPECT_EQ(logs["exit_code"], 0);
  Json list = RunJson({"sandbox", "session", "list", "sess-box"});
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["commands"].size(), 4u);
  // Errors: duplicate session, unknown session.
  EXPECT_NE(Run({"sandbox", "session", "create", "sess-box", "work"}, &out), 0);
  EXPECT_NE(Run({"sandbox", "session", "exec", "sess-box", "nope", "true"}, &out), 0);
  EXPECT_NE(out.find("no such session"), std::string::npos) << out;
  // rm kills the session (and its host).
  RunJson({"sandbox", "session", "exec", "sess-box", "work", "sleep 1000 >/dev/null 2>&1 &"});
  RunJson({"sandbox", "session", "rm", "sess-box", "work"});
  EXPECT_EQ(RunJson({"sandbox", "session", "list", "sess-box"})["data"].size(), 0u);
  Json ps = RunJson({"sandbox", "exec", "sess-box", "--", "sh", "-c", "ps -o args | grep -c '^sleep 1000' || true"});
  EXPECT_EQ(ps["stdout"], "0\n");

  // shell, stdin not a terminal: the script is piped in.
  std::string cli = WARREN_SANDBOX_CLI;
  auto rc = RunCommand({"sh", "-c", "printf 'echo piped-$((2+3))\\nexit 3\\n' | " + cli + " sandbox shell --data-dir " +
                                        data_dir_ + " sess-box"},
                       &out);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 3);
  EXPECT_NE(out.find("piped-5\n"), std::string::npos) << out;
  // shell on a terminal (script(1) provides one): a PTY from the sandbox's devpts.
  if (access("/usr/bin/script", X_OK) == 0) {
    rc = RunCommand({"script", "-qec",
                     cli + " sandbox shell --data-dir " + data_dir_ + " sess-box -- sh -c 'tty; stty size; exit 4'",
                     "/dev/null"},
                    &out);
    ASSERT_TRUE(rc.ok());
    EXPECT_EQ(*rc, 4) << out;
    EXPECT_NE(out.find("/dev/pts/"), std::string::npos) << out;
  }
}

// Progress of long commands (docs/CLI.md, "Progress of long work"): a bar
// redrawn in place on a terminal (script(1) provides one), coloured unless
// NO_COLOR; plain lines without any escape through a pipe. Also --json on
// the commands the other tests leave out (cp, shell, get, rm).
TEST_F(CliTest, ProgressOnATerminalAndPlainLinesOnAPipe) {
  Json box = RunJson({"sandbox", "create", "--name", "prog-box"});
  ASSERT_EQ(box["state"], "started");
  const std::string id = box["id"];
  // 24 MiB of incompressible data on the host.
  const std::string big = data_dir_ + "/big.bin";
  std::string out;
  ASSERT_EQ(RunCommand({"dd", "if=/dev/urandom", "of=" + big, "bs=1M", "count=24", "status=none"}, &out).value_or(-1), 0)
      << out;
  auto count = [](const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) n++;
    return n;
  };

  // A pipe: plain lines, one per 10%, then the summary; stdout is the JSON.
  Json cp = RunJson({"sandbox", "cp", big, "prog-box:/tmp/"});
  EXPECT_EQ(cp["direction"], "in");
  EXPECT_EQ(cp["path"], "/tmp/big.bin");
  EXPECT_EQ(cp["bytes"], 24 << 20);
  EXPECT_EQ(cp["sandbox"], id);
  ASSERT_EQ(Run({"sandbox", "cp", big, "prog-box:/tmp/again.bin"}, &out), 0) << out;
  EXPECT_EQ(out.find('\033'), std::string::npos) << "no escapes on a pipe: " << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  for (int d = 10; d <= 90; d += 10) EXPECT_EQ(count(out, ": " + std::to_string(d) + "% ("), 1u) << d << "\n" << out;
  EXPECT_NE(out.find("30% (8.0 MiB of 24.0 MiB)\n"), std::string::npos) << out;  // 1 MiB pieces
  EXPECT_NE(out.find(":/tmp/again.bin: 24.0 MiB in "), std::string::npos) << out;
  // Out again, byte for byte.
  Json back = RunJson({"sandbox", "cp", "prog-box:/tmp/big.bin", data_dir_ + "/back.bin"});
  EXPECT_EQ(back["direction"], "out");
  EXPECT_EQ(back["bytes"], 24 << 20);
  ASSERT_EQ(RunCommand({"cmp", big, data_dir_ + "/back.bin"}, &out).value_or(-1), 0) << out;
  EXPECT_NE(Run({"sandbox", "cp", big, data_dir_ + "/x"}, &out), 0);
  EXPECT_NE(out.find("exactly one of SRC and DST"), std::string::npos) << out;
  EXPECT_NE(Run({"sandbox", "cp", "prog-box:/tmp", data_dir_ + "/x"}, &out), 0);
  EXPECT_NE(out.find("not a regular file"), std::string::npos) << out;

  // --json on shell (run like exec) and get.
  std::string cli = WARREN_SANDBOX_CLI;
  ASSERT_EQ(RunCommand({"sh", "-c", "echo 'echo via-shell; exit 2' | " + cli + " sandbox shell --json --data-dir " +
                                        data_dir_ + " prog-box 2>/dev/null"},
                       &out)
                .value_or(-1),
            2);
  auto shell = ParseJson(out);
  ASSERT_TRUE(shell.ok()) << out;
  EXPECT_EQ((*shell)["stdout"], "via-shell\n");
  EXPECT_EQ((*shell)["exit_code"], 2);
  EXPECT_EQ(RunJson({"sandbox", "get", "prog-box"})["id"], id);

  if (access("/usr/bin/script", X_OK) != 0) GTEST_SKIP() << "script(1) is not installed: no terminal to test the bar";
  // A terminal: the bar is drawn (\r + erase line), in colour unless NO_COLOR.
  auto in_pty = [&](const std::string& env, const std::string& args, std::string* o) {
    auto rc = RunCommand({"script", "-qec", env + " " + cli + " " + args, "/dev/null"}, o);
    return rc.value_or(-1);
  };
  ASSERT_EQ(in_pty("env -u NO_COLOR", "sandbox cp --data-dir " + data_dir_ + " " + big + " prog-box:/tmp/tty.bin", &out), 0)
      << out;
  EXPECT_NE(out.find("\r\033[K"), std::string::npos) << out;
  EXPECT_NE(out.find("░"), std::string::npos) << "a bar: " << out;
  EXPECT_NE(out.find("\033[36m"), std::string::npos) << "colour on a terminal: " << out;
  EXPECT_NE(out.find(" / 24.0 MiB"), std::string::npos) << out;
  EXPECT_NE(out.find(":/tmp/tty.bin:\033[0m 24.0 MiB in "), std::string::npos) << out;
  EXPECT_EQ(count(out, "% ("), 0u) << "no plain 10% lines on a terminal: " << out;
  ASSERT_EQ(in_pty("env NO_COLOR=1", "sandbox cp --data-dir " + data_dir_ + " " + big + " prog-box:/tmp/tty2.bin", &out), 0)
      << out;
  EXPECT_NE(out.find("\r\033[K"), std::string::npos) << out;
  EXPECT_EQ(out.find("\033[3"), std::string::npos) << "NO_COLOR: no colour: " << out;
  EXPECT_EQ(out.find("\033[1m"), std::string::npos) << out;

  // A snapshot build: the step bar on a terminal, the log alone on a pipe.
  ASSERT_TRUE(WriteStringToFile(data_dir_ + "/Recipe", "FROM builtin:minimal\nENV X=1\nRUN echo built > /b\n").ok());
  ASSERT_EQ(in_pty("env NO_COLOR=1", "snapshot build --data-dir " + data_dir_ + " prog-snap -f " + data_dir_ + "/Recipe",
                   &out),
            0)
      << out;
  EXPECT_NE(out.find("build prog-snap  ["), std::string::npos) << out;
  EXPECT_NE(out.find("3/3  RUN echo built > /b"), std::string::npos) << out;
  EXPECT_NE(out.find("[2/3] ENV X=1"), std::string::npos) << "the log scrolls above the bar: " << out;
  EXPECT_NE(out.find("build prog-snap: snapshot prog-snap"), std::string::npos) << out;
  ASSERT_EQ(Run({"snapshot", "build", "prog-snap2", "-f", data_dir_ + "/Recipe"}, &out), 0) << out;
  EXPECT_EQ(out.find('\033'), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_NE(out.find("[3/3] RUN echo built > /b\n"), std::string::npos) << out;
  EXPECT_NE(out.find("build prog-snap2: snapshot prog-snap2"), std::string::npos) << out;
  Json del = RunJson({"snapshot", "rm", "prog-snap", "prog-snap2"});
  EXPECT_EQ(del["deleted"], Json::array({"prog-snap", "prog-snap2"}));

  // Archive and restore: bytes read, against the rootfs's data (which now
  // holds 4 x 24 MiB).
  ASSERT_EQ(in_pty("env -u NO_COLOR", "sandbox archive --data-dir " + data_dir_ + " prog-box", &out), 0) << out;
  EXPECT_NE(out.find("archive " + id + "\033[0m  [\033[36m"), std::string::npos) << out;
  EXPECT_NE(out.find("archive " + id + ":"), std::string::npos) << out;
  EXPECT_NE(out.find(" into "), std::string::npos) << out;
  EXPECT_EQ(out.find("sandbox.archived"), std::string::npos) << "info logs wait while the bar is up: " << out;
  EXPECT_EQ(RunJson({"sandbox", "get", "prog-box"})["state"], "archived");
  ASSERT_EQ(Run({"sandbox", "restore", "prog-box"}, &out), 0) << out;
  EXPECT_EQ(out.find('\033'), std::string::npos) << out;
  EXPECT_NE(out.find("restore " + id + ": restored "), std::string::npos) << out;
  // However fast the restore, no 10% line twice (how many pass depends on
  // the 100 ms polling, so not asserted).
  for (int d = 10; d <= 90; d += 10) EXPECT_LE(count(out, "restore " + id + ": " + std::to_string(d) + "% ("), 1u);
  Json started = RunJson({"sandbox", "start", "prog-box"});
  EXPECT_EQ(RunJson({"sandbox", "exec", "prog-box", "--", "sh", "-c", "cmp /tmp/big.bin /tmp/tty2.bin && echo same"})["stdout"],
            "same\n");
  Json rm = RunJson({"sandbox", "rm", "prog-box"});
  EXPECT_EQ(rm["deleted"], Json::array({"prog-box"}));
}

}  // namespace
}  // namespace warren::sandbox::testing
