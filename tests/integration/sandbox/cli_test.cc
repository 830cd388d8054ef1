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

}  // namespace
}  // namespace warren::sandbox::testing
