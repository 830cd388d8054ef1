#include "runner/session_runner.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <thread>

#include "runner/fake_server.h"

namespace warren::runner {
namespace {

using testing::FakeApi;

Json ToolUse(const std::string& id, const std::string& cmd, const char* perm = "allow") {
  Json ev = {{"type", "agent.tool_use"}, {"id", id}, {"name", "bash"}, {"input", {{"command", cmd}}}};
  if (perm != nullptr) ev["evaluated_permission"] = perm;
  return ev;
}

std::vector<Json> ResultsFor(FakeApi& api, const std::string& id) {
  std::vector<Json> out;
  for (const auto& e : api.PostedEvents()) {
    if (e.value("tool_use_id", "") == id) out.push_back(e);
  }
  return out;
}

struct Harness {
  explicit Harness(bool unix_socket = false, int64_t max_idle_ms = 0, std::string journal = "")
      : fake(unix_socket),
        api(HttpClient(*ParseBaseUrl(fake.base_url())), "tok", "session-tool-runner"),
        tools(ToolsetOptions{"/tmp"}) {
    SessionRunnerOptions o;
    o.session_id = "sesn_1";
    o.max_idle_ms = max_idle_ms;
    o.call_journal_dir = journal;
    o.reconnect_start_ms = 50;
    o.list_retry_start_ms = 10;
    runner = std::make_unique<SessionRunner>(&api, &tools, o);
  }
  void Start() {
    thread = std::thread([this] { end = runner->Run(); });
  }
  SessionRunner::End Finish() {
    if (thread.joinable()) thread.join();
    return end;
  }
  ~Harness() {
    runner->Stop(false);
    if (thread.joinable()) thread.join();
  }
  FakeApi fake;
  ApiClient api;
  Toolset tools;
  std::unique_ptr<SessionRunner> runner;
  std::thread thread;
  SessionRunner::End end = SessionRunner::End::kStopped;
};

TEST(BaseUrl, Forms) {
  auto a = ParseBaseUrl("https://api.anthropic.com");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "api.anthropic.com");
  EXPECT_EQ(a->port, "443");
  auto b = ParseBaseUrl("http://127.0.0.1:8400/prefix/");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->port, "8400");
  EXPECT_EQ(b->prefix, "/prefix");
  auto c = ParseBaseUrl("unix:/run/warren/api.sock");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->socket_path, "/run/warren/api.sock");
  auto d = ParseBaseUrl("http+unix://%2Frun%2Fw.sock/api");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->socket_path, "/run/w.sock");
  EXPECT_EQ(d->prefix, "/api");
  EXPECT_FALSE(ParseBaseUrl("ftp://x").ok());
  EXPECT_FALSE(ParseBaseUrl("unix:relative.sock").ok());
}

TEST(SessionRunner, ReconcilesHistoryThenServesTheStreamOncePerCall) {
  Harness h;
  // Before the runner attaches: one answered call, one pending call.
  h.fake.Append(ToolUse("sevt_old", "echo old"));
  h.fake.Append({{"type", "user.tool_result"}, {"tool_use_id", "sevt_old"}, {"content", Json::array()}});
  h.fake.Append(ToolUse("sevt_pending", "echo pending"));
  h.fake.page_size = 1;  // force paging
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return ResultsFor(h.fake, "sevt_pending").size() == 1; }));
  h.fake.Append(ToolUse("sevt_live", "echo live; echo err >&2; exit 3"));
  ASSERT_TRUE(h.fake.WaitFor([&] { return ResultsFor(h.fake, "sevt_live").size() == 1; }));
  // A replay of an already-seen call on the stream is not run again.
  h.fake.Append(ToolUse("sevt_live", "echo live again"));
  h.fake.Append({{"type", "session.status_terminated"}});
  EXPECT_EQ(h.Finish(), SessionRunner::End::kTerminated);
  EXPECT_TRUE(ResultsFor(h.fake, "sevt_old").empty());
  auto p = ResultsFor(h.fake, "sevt_pending");
  EXPECT_EQ(p[0]["type"], "user.tool_result");
  EXPECT_EQ(p[0]["is_error"], false);
  EXPECT_EQ(p[0]["content"][0]["text"], "pending");
  auto l = ResultsFor(h.fake, "sevt_live");
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0]["is_error"], true);
  EXPECT_EQ(l[0]["content"][0]["text"], "bash: bash session terminated");
  EXPECT_GE(h.fake.Requests("/events").size(), 4u);  // stream + 3 pages + posts
  auto reqs = h.fake.Requests("/events/stream");
  ASSERT_FALSE(reqs.empty());
  EXPECT_EQ(reqs[0].headers["authorization"], "Bearer tok");
  EXPECT_EQ(reqs[0].headers["anthropic-beta"], "managed-agents-2026-04-01");
}

TEST(SessionRunner, CallJournalNeverRunsACallTwice) {
  char tmpl[] = "/tmp/warren_journal_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string journal = dir + "/calls";
  const std::string side = dir + "/side.txt";
  {
    // A first runner runs and records a call; the result is posted.
    Harness h(false, 0, journal);
    h.fake.Append(ToolUse("sevt_a", "echo a >> " + side + "; echo ran-a"));
    h.Start();
    ASSERT_TRUE(h.fake.WaitFor([&] { return ResultsFor(h.fake, "sevt_a").size() == 1; }));
    h.fake.Append({{"type", "session.status_terminated"}});
    h.Finish();
  }
  // The journal as a runner leaves it when it dies: a call that finished
  // but whose result was never posted, and one that started and never
  // finished.
  ASSERT_EQ(system(("cp " + journal + "/sevt_a.result " + journal + "/sevt_b.result && sed -i s/sevt_a/sevt_b/ " +
                    journal + "/sevt_b.result && touch " + journal + "/sevt_b.started " + journal + "/sevt_c.started")
                       .c_str()),
            0);
  Harness h(false, 0, journal);
  h.fake.Append(ToolUse("sevt_b", "echo b >> " + side));
  h.fake.Append(ToolUse("sevt_c", "echo c >> " + side));
  h.fake.Append(ToolUse("sevt_d", "echo d >> " + side + "; echo ran-d"));
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return ResultsFor(h.fake, "sevt_d").size() == 1; }));
  h.fake.Append({{"type", "session.status_terminated"}});
  h.Finish();
  auto b = ResultsFor(h.fake, "sevt_b");
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0]["is_error"], false);
  EXPECT_EQ(b[0]["content"][0]["text"], "ran-a") << "the recorded result is posted, the call not run";
  auto c = ResultsFor(h.fake, "sevt_c");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]["is_error"], true);
  EXPECT_NE(c[0]["content"][0]["text"].get<std::string>().find("It was not run again"), std::string::npos);
  EXPECT_EQ(ResultsFor(h.fake, "sevt_d")[0]["content"][0]["text"], "ran-d");
  // The side effects: a and d ran once each; b and c never ran here.
  FILE* f = fopen(side.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[64] = {0};
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  EXPECT_EQ(std::string(buf, n), "a\nd\n");
  ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0);
}

TEST(SessionRunner, PermissionRoutingFailsClosed) {
  Harness h(/*unix_socket=*/true);
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return !h.fake.Requests("/events/stream").empty(); }));
  h.fake.Append(ToolUse("sevt_deny", "touch /tmp/warren-should-not-exist", "deny"));
  h.fake.Append(ToolUse("sevt_ask", "echo asked", "ask"));
  h.fake.Append(ToolUse("sevt_weird", "echo weird", "maybe"));
  h.fake.Append(ToolUse("sevt_askdeny", "echo no", "ask"));
  h.fake.Append({{"type", "agent.custom_tool_use"}, {"id", "sevt_custom"}, {"name", "lookup"}, {"input", Json::object()}});
  h.fake.Append({{"type", "agent.tool_use"}, {"id", "sevt_other"}, {"name", "web_fetch"}, {"input", Json::object()}});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(ResultsFor(h.fake, "sevt_ask").empty());  // held
  h.fake.Append({{"type", "user.tool_confirmation"}, {"tool_use_id", "sevt_ask"}, {"result", "allow"}});
  h.fake.Append({{"type", "user.tool_confirmation"}, {"tool_use_id", "sevt_askdeny"}, {"result", "deny"}});
  h.fake.Append({{"type", "user.tool_confirmation"}, {"tool_use_id", "sevt_weird"}, {"result", "sure"}});
  ASSERT_TRUE(h.fake.WaitFor([&] { return ResultsFor(h.fake, "sevt_ask").size() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  h.fake.Append({{"type", "session.deleted"}});
  EXPECT_EQ(h.Finish(), SessionRunner::End::kTerminated);
  EXPECT_EQ(ResultsFor(h.fake, "sevt_ask")[0]["content"][0]["text"], "asked");
  for (const char* id : {"sevt_deny", "sevt_weird", "sevt_askdeny", "sevt_custom", "sevt_other"}) {
    EXPECT_TRUE(ResultsFor(h.fake, id).empty()) << id;
  }
  EXPECT_NE(access("/tmp/warren-should-not-exist", F_OK), 0);
  EXPECT_EQ(h.fake.PostedEvents().size(), 1u);
}

TEST(SessionRunner, FailedHistoryReadDispatchesNothingUntilAFullRead) {
  Harness h;
  h.fake.Append(ToolUse("sevt_a", "echo a"));
  h.fake.fail_list = 1000;  // every retry of the read fails
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return h.fake.Requests("/events").size() >= 6; }));  // stream + 5 attempts
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(ResultsFor(h.fake, "sevt_a").empty());
  h.fake.fail_list = 0;
  h.fake.CloseStreams();  // reconnect: reconcile again, now successfully
  ASSERT_TRUE(h.fake.WaitFor([&] { return ResultsFor(h.fake, "sevt_a").size() == 1; }));
  h.fake.Append({{"type", "session.status_terminated"}});
  EXPECT_EQ(h.Finish(), SessionRunner::End::kTerminated);
  EXPECT_EQ(ResultsFor(h.fake, "sevt_a").size(), 1u);
}

// Issue 13, defect 3: one failed history read must not strand the calls.
TEST(SessionRunner, TransientHistoryReadsAreRetriedWithoutAReconnect) {
  Harness h;
  h.fake.Append(ToolUse("sevt_t", "echo t"));
  h.fake.fail_list = 2;
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return ResultsFor(h.fake, "sevt_t").size() == 1; }));
  EXPECT_EQ(h.fake.Requests("/events/stream").size(), 1u);
  h.fake.Append({{"type", "session.status_terminated"}});
  EXPECT_EQ(h.Finish(), SessionRunner::End::kTerminated);
}

// Issue 13, defect 1: the result post is committed but its answer is lost;
// the runner reads the history before posting again and finds it there.
TEST(SessionRunner, AResultWhoseAnswerWasLostIsNotPostedTwice) {
  Harness h;
  h.fake.drop_send_answer = 1;
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return !h.fake.Requests("/events/stream").empty(); }));
  h.fake.Append(ToolUse("sevt_l", "echo once"));
  ASSERT_TRUE(h.fake.WaitFor([&] {
    auto c = h.runner->calls();
    return c.size() == 1 && c[0].posted;
  }));
  h.fake.Append({{"type", "session.status_terminated"}});
  h.Finish();
  int posts = 0;
  for (const auto& r : h.fake.Requests("/events")) posts += r.method == "POST";
  EXPECT_EQ(posts, 1);
  EXPECT_EQ(ResultsFor(h.fake, "sevt_l").size(), 1u);
}

TEST(SessionRunner, ChunkedEventStream) {
  Harness h;
  h.fake.chunked_sse = true;
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return !h.fake.Requests("/events/stream").empty(); }));
  h.fake.Append(ToolUse("sevt_c", "echo chunked"));
  ASSERT_TRUE(h.fake.WaitFor([&] { return ResultsFor(h.fake, "sevt_c").size() == 1; }));
  h.fake.Append({{"type", "session.status_terminated"}});
  EXPECT_EQ(h.Finish(), SessionRunner::End::kTerminated);
  EXPECT_EQ(ResultsFor(h.fake, "sevt_c")[0]["content"][0]["text"], "chunked");
}

TEST(SessionRunner, RetriesTransientResultPosts) {
  Harness h;
  h.fake.fail_send = 1;
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return !h.fake.Requests("/events/stream").empty(); }));
  h.fake.Append(ToolUse("sevt_r", "echo retried"));
  ASSERT_TRUE(h.fake.WaitFor([&] { return ResultsFor(h.fake, "sevt_r").size() == 1; }));
  h.fake.Append({{"type", "session.status_terminated"}});
  h.Finish();
  int posts = 0;
  for (const auto& r : h.fake.Requests("/events")) posts += r.method == "POST";
  EXPECT_EQ(posts, 2);
  EXPECT_EQ(ResultsFor(h.fake, "sevt_r").size(), 1u);
  auto calls = h.runner->calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(calls[0].posted);
}

TEST(SessionRunner, IdleWatchdogStopsAfterEndTurnAndNotOnRequiresAction) {
  Harness h(false, /*max_idle_ms=*/400);
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return !h.fake.Requests("/events/stream").empty(); }));
  h.fake.Append({{"type", "session.status_idle"}, {"stop_reason", {{"type", "requires_action"}, {"event_ids", {"x"}}}}});
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_TRUE(h.thread.joinable());
  auto start = std::chrono::steady_clock::now();
  h.fake.Append({{"type", "session.status_idle"}, {"stop_reason", {{"type", "end_turn"}}}});
  EXPECT_EQ(h.Finish(), SessionRunner::End::kIdle);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
}

TEST(SessionRunner, StopCancelsTheRunningToolAndPostsItsError) {
  Harness h;
  h.Start();
  ASSERT_TRUE(h.fake.WaitFor([&] { return !h.fake.Requests("/events/stream").empty(); }));
  // Stop only once the call runs (a fixed sleep could stop the runner before
  // it even read the call, and then there is nothing to cancel or post).
  char tmpl[] = "/tmp/warren_slow_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  h.fake.Append(ToolUse("sevt_slow", "touch " + dir + "/running; sleep 30"));
  ASSERT_TRUE(h.fake.WaitFor([&] { return access((dir + "/running").c_str(), F_OK) == 0; }));
  h.runner->Stop(/*post_cancelled_result=*/true);
  EXPECT_EQ(h.Finish(), SessionRunner::End::kStopped);
  auto r = ResultsFor(h.fake, "sevt_slow");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["is_error"], true);
  EXPECT_EQ(r[0]["content"][0]["text"], "bash: This operation was aborted");
  ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0);
}

}  // namespace
}  // namespace warren::runner
