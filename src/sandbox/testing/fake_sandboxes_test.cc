#include "sandbox/testing/fake_sandboxes.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace warren::sandbox {
namespace {

ExecRequest Req(std::vector<std::string> argv) {
  ExecRequest r;
  r.argv = std::move(argv);
  return r;
}

TEST(FakeSandboxesTest, LifecycleFollowsTheRuntimeStates) {
  FakeClock clock;
  FakeSandboxes sb(&clock);
  Sandboxes& port = sb;  // used through the interface, as the orchestrator does
  CreateOptions o;
  o.name = "web";
  o.labels = {{"session", "s1"}};
  auto rec = port.Create(o);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->state, SandboxState::kStarted);
  EXPECT_EQ(port.Get("web")->id, rec->id);
  EXPECT_EQ(port.Create(o).status().code(), Code::kConflict);

  EXPECT_EQ(port.Pause(rec->id)->state, SandboxState::kPaused);
  EXPECT_EQ(port.Start(rec->id).status().code(), Code::kConflict);
  EXPECT_EQ(port.Exec(rec->id, Req({"true"})).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(port.Resume(rec->id)->state, SandboxState::kStarted);
  EXPECT_EQ(port.Stop(rec->id)->state, SandboxState::kStopped);
  EXPECT_EQ(port.Exec(rec->id, Req({"true"})).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(port.Archive(rec->id)->state, SandboxState::kArchived);
  EXPECT_EQ(port.Files(rec->id).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(port.Fork(rec->id, 1).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(port.Start(rec->id)->state, SandboxState::kStarted);  // restores first

  auto labelled = port.SetLabels(rec->id, {{"session", "s2"}});
  ASSERT_TRUE(labelled.ok());
  EXPECT_EQ(port.Get(rec->id)->labels.at("session"), "s2");

  auto kids = port.Fork(rec->id, 2);
  ASSERT_TRUE(kids.ok());
  ASSERT_EQ(kids->size(), 2u);
  EXPECT_EQ((*kids)[0].state, SandboxState::kStarted);
  EXPECT_EQ(port.Tree(rec->id)->children.size(), 2u);
  EXPECT_EQ(port.Tree((*kids)[1].id)->ancestors, std::vector<std::string>{rec->id});

  ASSERT_TRUE(port.Delete(rec->id).ok());
  EXPECT_EQ(port.Get(rec->id).status().code(), Code::kNotFound);
  EXPECT_TRUE(port.Delete(rec->id).ok());  // idempotent
  EXPECT_EQ(port.Tree((*kids)[0].id)->parent, rec->id);  // tombstone keeps the tree
  EXPECT_EQ(port.List()->size(), 2u);
}

TEST(FakeSandboxesTest, ExecRunsTheProgrammedHandler) {
  FakeSandboxes sb;
  sb.SetExecHandler([](const SandboxRecord& s, const ExecRequest& req) -> Result<ExecResult> {
    if (req.argv[0] == "fail") return ExecResult{3, false, "", "boom"};
    return ExecResult{0, false, s.labels.at("k") + ":" + req.argv.back(), ""};
  });
  CreateOptions o;
  o.labels = {{"k", "v"}};
  auto rec = sb.Create(o);
  ASSERT_TRUE(rec.ok());
  std::string streamed;
  ExecRequest req = Req({"echo", "hi"});
  req.on_stdout = [&](std::string_view d) { streamed += d; };
  auto r = sb.Exec(rec->id, req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_data, "v:hi");
  EXPECT_EQ(streamed, "v:hi");
  EXPECT_EQ(sb.Exec(rec->id, Req({"fail"}))->exit_code, 3);
  EXPECT_EQ(sb.Exec(rec->id, ExecRequest()).status().code(), Code::kInvalidArgument);

  ASSERT_TRUE(sb.CreateSession(rec->id, "main").ok());
  auto c = sb.SessionExec(rec->id, "main", "pwd");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->running);
  EXPECT_EQ(c->stdout_data, "v:pwd");
  EXPECT_EQ(sb.GetCommand(rec->id, "main", c->id)->stdout_data, "v:pwd");
  ASSERT_TRUE(sb.Stop(rec->id).ok());
  EXPECT_EQ(sb.GetSession(rec->id, "main").status().code(), Code::kNotFound);  // a stop ends sessions
}

TEST(FakeSandboxesTest, FailureInjectionAndCallCounts) {
  FakeSandboxes sb;
  sb.FailNext("Create", Status::Unavailable("pool full"), 2);
  EXPECT_EQ(sb.Create({}).status().code(), Code::kUnavailable);
  EXPECT_EQ(sb.Create({}).status().code(), Code::kUnavailable);
  auto rec = sb.Create({});
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(sb.Calls("Create"), 3);
  EXPECT_EQ(sb.List()->size(), 1u);  // failed calls changed nothing

  sb.FailNext("Stop", Status::Internal("cgroup busy"), -1);
  EXPECT_FALSE(sb.Stop(rec->id).ok());
  EXPECT_FALSE(sb.Stop(rec->id).ok());
  EXPECT_EQ(sb.Get(rec->id)->state, SandboxState::kStarted);
  sb.ClearFailures();
  EXPECT_TRUE(sb.Stop(rec->id).ok());

  ASSERT_TRUE(sb.Start(rec->id).ok());
  ASSERT_TRUE(sb.Crash(rec->id).ok());
  EXPECT_EQ(sb.Get(rec->id)->state, SandboxState::kStopped);
  CreateOptions missing;
  missing.snapshot = "nope";
  EXPECT_EQ(sb.Create(missing).status().code(), Code::kNotFound);
}

TEST(FakeSandboxesTest, IdlePoliciesFollowTheClock) {
  FakeClock clock;
  FakeSandboxes sb(&clock);
  CreateOptions o;
  o.auto_stop_minutes = 5;
  o.auto_archive_minutes = 10;
  auto a = sb.Create(o);
  CreateOptions d;
  d.auto_stop_minutes = 5;
  d.auto_delete_minutes = 0;
  auto b = sb.Create(d);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(sb.EnforceIdlePolicies()->stopped.empty());
  clock.Advance(6 * 60 * 1000000LL);
  auto r = sb.EnforceIdlePolicies();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stopped.size(), 2u);
  EXPECT_EQ(r->deleted, std::vector<std::string>{b->id});
  EXPECT_EQ(sb.Get(a->id)->state, SandboxState::kStopped);
  clock.Advance(11 * 60 * 1000000LL);
  EXPECT_EQ(sb.EnforceIdlePolicies()->archived, std::vector<std::string>{a->id});
  EXPECT_EQ(sb.Get(a->id)->state, SandboxState::kArchived);
}

TEST(FakeSandboxesTest, ABlockedExecDoesNotBlockOtherSandboxes) {
  FakeSandboxes sb;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false, entered = false;
  sb.SetExecHandler([&](const SandboxRecord&, const ExecRequest& req) -> Result<ExecResult> {
    if (req.argv[0] == "block") {
      std::unique_lock<std::mutex> l(mu);
      entered = true;
      cv.notify_all();
      cv.wait(l, [&] { return release; });
    }
    return ExecResult{0, false, "", ""};
  });
  auto a = sb.Create({});
  auto b = sb.Create({});
  ASSERT_TRUE(a.ok() && b.ok());
  std::thread t([&] { (void)sb.Exec(a->id, Req({"block"})); });
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return entered; });
  }
  // While a's exec is in flight, b's calls complete.
  EXPECT_TRUE(sb.Exec(b->id, Req({"true"})).ok());
  EXPECT_TRUE(sb.Stop(b->id).ok());
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  t.join();
}

TEST(FakeSandboxesTest, FilesAreARealDirectoryPerSandbox) {
  FakeSandboxes sb;
  auto a = sb.Create({});
  auto b = sb.Create({});
  ASSERT_TRUE(a.ok() && b.ok());
  auto fa = sb.Files(a->id);
  ASSERT_TRUE(fa.ok()) << fa.status().ToString();
  ASSERT_TRUE(fa->WriteFile("/hello", "world", 0644).ok());
  EXPECT_EQ(*sb.Files(a->id)->ReadFile("/hello", 100), "world");
  EXPECT_FALSE(sb.Files(b->id)->ReadFile("/hello", 100).ok());
  auto kids = sb.Fork(a->id, 1);
  ASSERT_TRUE(kids.ok());
  EXPECT_EQ(*sb.Files((*kids)[0].id)->ReadFile("/hello", 100), "world");  // the fork copies files
}

}  // namespace
}  // namespace warren::sandbox
