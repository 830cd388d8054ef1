#include "runner/worker.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/ids.h"
#include "runner/fake_server.h"
#include "runner/skills.h"

namespace warren::runner {
namespace {

using testing::FakeApi;

std::vector<std::string> Expected(FakeApi& f) {
  std::vector<std::string> out;
  for (const auto& r : f.Requests("/heartbeat")) out.push_back(r.query.at("expected_last_heartbeat"));
  return out;
}

std::vector<testing::ReceivedRequest> Stops(FakeApi& f) { return f.Requests("/stop"); }

std::string Slurp0(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

WorkerOptions Opts() {
  WorkerOptions o;
  o.environment_id = "env_1";
  o.environment_key = "envkey";
  o.tools.workdir = "/tmp";
  o.max_idle_ms = 0;
  return o;
}

std::string Secret(const std::string& token) {
  return Base64UrlEncode("{\"sessions_token\":\"" + token + "\"}");
}

TEST(Worker, SecretDecoding) {
  EXPECT_EQ(SessionsTokenFromSecret(Secret("tok")), "tok");
  EXPECT_EQ(SessionsTokenFromSecret(Secret("tok") + "=="), "tok");
  EXPECT_EQ(SessionsTokenFromSecret("!!!"), "");
  EXPECT_EQ(SessionsTokenFromSecret(Base64UrlEncode("{\"x\":1}")), "");
}

TEST(Worker, HeartbeatsCompareAndSetAndAStopRequestEndsServing) {
  FakeApi f;
  f.ttl_seconds = 2;  // interval clamp(ttl/2) = 1 s
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), Opts());
  std::thread t([&] { EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", Secret("sess-token")).ok()); });
  ASSERT_TRUE(f.WaitFor([&] { return f.Requests("/heartbeat").size() >= 2; }));
  f.SetWorkState("stopping");
  t.join();  // returns only because the stop request ended serving (see last_lease_end)
  auto exp = Expected(f);
  ASSERT_GE(exp.size(), 2u);
  EXPECT_EQ(exp[0], "NO_HEARTBEAT");
  EXPECT_EQ(exp[1], "2026-11-24T06:00:00.100001Z");
  EXPECT_EQ(f.Requests("/heartbeat")[0].headers["authorization"], "Bearer sess-token");
  auto stops = Stops(f);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0].body["force"], true);
  EXPECT_EQ(w.last_lease_end(), LeaseEnd::kHeartbeatStop);
}

TEST(Worker, A412StopsServingWithoutStoppingTheItem) {
  FakeApi f;
  f.heartbeat_412 = 1;
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), Opts());
  EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", "").ok());
  EXPECT_EQ(w.last_lease_end(), LeaseEnd::kLeaseLost);
  EXPECT_TRUE(Stops(f).empty());
  EXPECT_EQ(f.Requests("/heartbeat")[0].headers["authorization"], "Bearer envkey");
}

// Issue 13, defect 3: a revoked sessions token (the lease lapsed) is a lost
// lease, not a failure: the item is someone else's now and is not stopped.
TEST(Worker, A401HeartbeatIsALostLeaseAndTheItemIsNotStopped) {
  FakeApi f;
  f.heartbeat_401 = 1;
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), Opts());
  EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", Secret("revoked")).ok());
  EXPECT_EQ(w.last_lease_end(), LeaseEnd::kLeaseLost);
  EXPECT_TRUE(Stops(f).empty());
}

// Issue 13, defect 3: a beat that was committed but whose answer was lost is
// not a lost lease: the 412 that follows reports the lease still held, and
// the worker adopts the server's token and keeps serving.
TEST(Worker, ALostHeartbeatAnswerIsNotALostLease) {
  FakeApi f;
  f.ttl_seconds = 2;  // interval 1 s
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), Opts());
  std::thread t([&] { EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", Secret("sess-token")).ok()); });
  ASSERT_TRUE(f.WaitFor([&] { return f.Requests("/heartbeat").size() >= 1; }));
  f.drop_heartbeat_answer = 1;
  ASSERT_TRUE(f.WaitFor([&] { return f.Requests("/heartbeat").size() >= 4; }));
  f.SetWorkState("stopping");
  t.join();
  EXPECT_EQ(w.last_lease_end(), LeaseEnd::kHeartbeatStop);
  ASSERT_EQ(Stops(f).size(), 1u);
  // Somewhere a token was sent twice (the lost beat and its 412), and the
  // beat after that carried the server's newer token.
  auto exp = Expected(f);
  bool adopted = false;
  for (size_t i = 0; i + 2 < exp.size(); ++i)
    if (exp[i] == exp[i + 1] && exp[i + 2] != exp[i]) adopted = true;
  EXPECT_TRUE(adopted) << ::testing::PrintToString(exp);
}

// Requests that carried `token` as their Bearer credential.
std::vector<testing::ReceivedRequest> By(FakeApi& f, const std::string& path, const std::string& token) {
  std::vector<testing::ReceivedRequest> out;
  for (auto& r : f.Requests(path))
    if (r.headers["authorization"] == "Bearer " + token) out.push_back(r);
  return out;
}

// A temporary directory, removed when the test ends (a failed ASSERT too).
struct TempDir {
  explicit TempDir(const char* prefix) {
    std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { (void)!system(("rm -rf " + path).c_str()); }
  std::string path;
};

// A worker with a call journal records each beat's token, naming its
// delivery by the sessions token's hash, and removes the record when it ends
// normally (only a crash leaves one for a relaunch).
TEST(Worker, RecordsTheLeaseForARelaunchAndRemovesItAtTheEnd) {
  FakeApi f;
  f.ttl_seconds = 2;  // interval 1 s
  f.never_lapse = true;
  TempDir tmp("warren-lease");
  const std::string journal = tmp.path;
  WorkerOptions o = Opts();
  o.call_journal_dir = journal;
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), o);
  std::thread t([&] { EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", Secret("tok-a")).ok()); });
  const std::string path = LeaseRecordPath(journal, "work_1");
  ASSERT_EQ(path, journal + "/work_1.lease");
  LeaseRecord rec;
  // (Tokens are ordered: the record follows the beats.)
  ASSERT_TRUE(f.WaitFor([&] { return ReadLeaseRecord(path, &rec) && rec.last_heartbeat > "2026-11-24T06:00:00.100001Z"; }));
  EXPECT_EQ(rec.delivery, Sha256Hex("tok-a"));
  EXPECT_EQ(rec.ttl_ms, 2000);
  EXPECT_LE(rec.sent_at_ms, BootMs());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  f.SetWorkState("stopping");
  t.join();
  EXPECT_NE(stat(path.c_str(), &st), 0) << "removed when the runner ended";
  // Ids that do not belong in a file name get no record.
  EXPECT_EQ(LeaseRecordPath(journal, "../x"), "");
  EXPECT_EQ(LeaseRecordPath("", "work_1"), "");
}

// The edge case of docs/ORCHESTRATOR.md: two deliveries of one un-acked item
// (the reclaim after reclaim_older_than_ms) both hold valid sessions tokens.
// B's runner beat first and holds the lease; A's runner never beat, and A's
// supervisor relaunches it with --resume-lease. It has no record of its own
// delivery (the journal even holds B's record for the same item), so it
// must not take the lease over: it yields as a lost lease, does not stop the
// item and never reads the session, and B keeps its lease.
TEST(Worker, AResumedRunnerDoesNotTakeOverAnotherDeliverysLease) {
  FakeApi f;
  f.ttl_seconds = 2;  // B beats every second
  f.never_lapse = true;
  TempDir tmp("warren-lease");
  const std::string journal = tmp.path;
  WorkerOptions ob = Opts();
  ob.call_journal_dir = journal;
  Worker b(HttpClient(*ParseBaseUrl(f.base_url())), ob);
  std::thread tb([&] { EXPECT_TRUE(b.HandleItem("work_1", "sesn_1", Secret("tok-b")).ok()); });
  ASSERT_TRUE(f.WaitFor([&] { return !By(f, "/events/stream", "tok-b").empty(); }));  // B serves
  LeaseRecord rb;
  ASSERT_TRUE(ReadLeaseRecord(LeaseRecordPath(journal, "work_1"), &rb));
  ASSERT_EQ(rb.delivery, Sha256Hex("tok-b"));

  WorkerOptions oa = ob;
  oa.resume_lease = true;
  Worker a(HttpClient(*ParseBaseUrl(f.base_url())), oa);
  std::atomic<bool> a_ended{false};
  std::thread ta([&] {
    EXPECT_TRUE(a.HandleItem("work_1", "sesn_1", Secret("tok-a")).ok());
    a_ended = true;
  });
  const bool yielded = f.WaitFor([&] { return a_ended.load(); });
  // B still holds the lease: two more of its beats are answered after A
  // ended, and the one that says `stopping` ends it (not a 412).
  const size_t b_beats = By(f, "/heartbeat", "tok-b").size();
  EXPECT_TRUE(f.WaitFor([&] { return By(f, "/heartbeat", "tok-b").size() >= b_beats + 2; }));
  f.SetWorkState("stopping");
  tb.join();
  ta.join();  // (today's code: A took the lease over and ends only here)
  EXPECT_TRUE(yielded) << "A's relaunch took over B's lease";
  EXPECT_EQ(a.last_lease_end(), LeaseEnd::kLeaseLost);
  EXPECT_EQ(b.last_lease_end(), LeaseEnd::kHeartbeatStop);
  auto a_beats = By(f, "/heartbeat", "tok-a");
  ASSERT_EQ(a_beats.size(), 1u);
  EXPECT_EQ(a_beats[0].query.at("expected_last_heartbeat"), "NO_HEARTBEAT");
  EXPECT_TRUE(By(f, "/events/stream", "tok-a").empty()) << "A never served the session";
  EXPECT_TRUE(By(f, "/stop", "tok-a").empty()) << "A did not stop the item";
  EXPECT_EQ(By(f, "/stop", "tok-b").size(), 1u);
}

// A relaunch of the same delivery whose predecessor beat after its last
// record (the beat committed, the runner died before it wrote the answer):
// the 412 shows the lease at a newer token, which only this delivery's chain
// can have produced while the lease cannot have lapsed. Within the bound it
// is adopted; a record too old to rule out a lapse proves nothing.
TEST(Worker, AResumedRunnerAdoptsItsOwnUnrecordedBeatOnlyWithinTheTtl) {
  for (int variant : {0, 1, 2}) {
    const bool fresh = variant != 1;
    SCOPED_TRACE(variant == 0 ? "fresh record" : variant == 1 ? "record older than the ttl"
                                                              : "fresh record, the first beat answered 503");
    FakeApi f;
    f.ttl_seconds = 600;
    f.never_lapse = true;
    TempDir tmp("warren-lease");
  const std::string journal = tmp.path;
    // The dead runner's last recorded beat moved the lease to 100001; its
    // next beat (to 100002) was committed but never recorded.
    ApiClient dead(HttpClient(*ParseBaseUrl(f.base_url())), "tok-a", "test");
    auto never = [] { return false; };
    ASSERT_TRUE(dead.Heartbeat("env_1", "work_1", "NO_HEARTBEAT", std::chrono::seconds(30), never).ok());
    ASSERT_TRUE(dead.Heartbeat("env_1", "work_1", "2026-11-24T06:00:00.100001Z", std::chrono::seconds(30), never).ok());
    const int64_t ttl_ms = 600000;
    ASSERT_TRUE(WriteLeaseRecord(LeaseRecordPath(journal, "work_1"),
                                 LeaseRecord{Sha256Hex("tok-a"), "2026-11-24T06:00:00.100001Z",
                                             fresh ? BootMs() : BootMs() - ttl_ms, ttl_ms}));
    WorkerOptions o = Opts();
    o.call_journal_dir = journal;
    o.resume_lease = true;
    // A 503 proves nothing either way: the 412 after it is still the first
    // real answer to the compare-and-set on the record.
    if (variant == 2) f.fail_heartbeat = 1;
    Worker w(HttpClient(*ParseBaseUrl(f.base_url())), o);
    std::thread t([&] { EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", Secret("tok-a")).ok()); });
    if (fresh) {
      ASSERT_TRUE(f.WaitFor([&] { return !By(f, "/events/stream", "tok-a").empty(); }));
      f.Append({{"type", "session.status_terminated"}});
    }
    t.join();
    auto exp = Expected(f);
    if (variant == 2) {  // the 503'd beat, then the same compare-and-set again
      ASSERT_GE(exp.size(), 3u);
      EXPECT_EQ(exp[2], "2026-11-24T06:00:00.100001Z");
      exp.erase(exp.begin() + 2);
    }
    ASSERT_GE(exp.size(), 3u);
    EXPECT_EQ(exp[2], "2026-11-24T06:00:00.100001Z") << "the first beat compares against the record";
    if (fresh) {
      ASSERT_GE(exp.size(), 4u);
      EXPECT_EQ(exp[3], "2026-11-24T06:00:00.100002Z") << "then renews from the adopted token";
      EXPECT_EQ(w.last_lease_end(), LeaseEnd::kRunnerDone);
    } else {
      EXPECT_EQ(exp.size(), 3u);
      EXPECT_EQ(w.last_lease_end(), LeaseEnd::kLeaseLost);
      EXPECT_TRUE(By(f, "/events/stream", "tok-a").empty());
      EXPECT_TRUE(Stops(f).empty());
    }
    }
}

// A first heartbeat (NO_HEARTBEAT) whose answer was lost, followed by a 412
// with the lease held: every delivery of the item may send that beat, so
// nothing proves the lease is this runner's. It yields without stopping the
// item (if the beat was its own, the lease lapses and the queue delivers the
// item again).
TEST(Worker, ALostAnswerToTheFirstHeartbeatProvesNothing) {
  FakeApi f;
  f.ttl_seconds = 600;
  f.never_lapse = true;
  f.drop_heartbeat_answer = 1;
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), Opts());
  EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", Secret("tok-a")).ok());
  EXPECT_EQ(w.last_lease_end(), LeaseEnd::kLeaseLost);
  EXPECT_EQ(Expected(f), (std::vector<std::string>{"NO_HEARTBEAT", "NO_HEARTBEAT"}));
  EXPECT_TRUE(f.Requests("/events/stream").empty());
  EXPECT_TRUE(Stops(f).empty());
}

// A sole worker (the embedded orchestrator's runner on a cloud environment,
// which nobody else can serve) keeps the old rule: a held lease it cannot
// prove its own is still its own. A resume without a record adopts the
// server's token, and so does a lost answer to the first beat.
TEST(Worker, ASoleWorkerAdoptsAHeldLeaseItCannotProve) {
  for (bool resume : {true, false}) {
    SCOPED_TRACE(resume ? "resumed without a record" : "first beat's answer lost");
    FakeApi f;
    f.ttl_seconds = 600;
    f.never_lapse = true;
    if (resume) {  // the dead runner beat and left no record (no journal)
      ApiClient dead(HttpClient(*ParseBaseUrl(f.base_url())), "tok-a", "test");
      ASSERT_TRUE(dead.Heartbeat("env_1", "work_1", "NO_HEARTBEAT", std::chrono::seconds(30), [] { return false; }).ok());
    } else {
      f.drop_heartbeat_answer = 1;
    }
    WorkerOptions o = Opts();
    o.resume_lease = resume;
    o.sole_worker = true;
    Worker w(HttpClient(*ParseBaseUrl(f.base_url())), o);
    std::thread t([&] { EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", Secret("tok-a")).ok()); });
    ASSERT_TRUE(f.WaitFor([&] { return !By(f, "/events/stream", "tok-a").empty(); }));
    f.Append({{"type", "session.status_terminated"}});
    t.join();
    EXPECT_EQ(w.last_lease_end(), LeaseEnd::kRunnerDone);
    auto exp = By(f, "/heartbeat", "tok-a");
    ASSERT_GE(exp.size(), 3u);
    // NO_HEARTBEAT (412, or its answer lost then 412), then the adopted token.
    EXPECT_EQ(exp.back().query.at("expected_last_heartbeat"), "2026-11-24T06:00:00.100001Z");
  }
}

// Issue 13, defect 3: one transient failure of the session retrieve must not
// make the worker give the item up.
TEST(Worker, TransientSessionRetrieveIsRetried) {
  FakeApi f;
  f.fail_session_get = 2;
  f.Append({{"type", "agent.tool_use"}, {"id", "sevt_g"}, {"name", "bash"}, {"input", {{"command", "echo got"}}},
            {"evaluated_permission", "allow"}});
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), Opts());
  std::thread t([&] { EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", Secret("sess-token")).ok()); });
  ASSERT_TRUE(f.WaitFor([&] { return f.PostedEvents().size() == 1; }));
  f.SetWorkState("stopping");
  t.join();
  EXPECT_EQ(f.PostedEvents()[0]["tool_use_id"], "sevt_g");
  EXPECT_EQ(f.Requests("/v1/sessions/sesn_1").size() >= 3, true);
}

TEST(Worker, TerminatedSessionIsReleasedWithoutRunningTools) {
  FakeApi f;
  f.session_status = "terminated";
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), Opts());
  EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", "").ok());
  EXPECT_TRUE(f.Requests("/events/stream").empty());
  ASSERT_EQ(Stops(f).size(), 1u);
}

TEST(Worker, LeaseLostMidToolPostsNothing) {
  FakeApi f;
  f.ttl_seconds = 2;
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), Opts());
  std::thread t([&] { EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", "").ok()); });
  ASSERT_TRUE(f.WaitFor([&] { return !f.Requests("/events/stream").empty(); }));
  f.Append({{"type", "agent.tool_use"}, {"id", "sevt_1"}, {"name", "bash"}, {"input", {{"command", "sleep 20"}}}});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  f.heartbeat_412 = 1;
  t.join();
  EXPECT_EQ(w.last_lease_end(), LeaseEnd::kLeaseLost);
  EXPECT_TRUE(f.PostedEvents().empty());
  EXPECT_TRUE(Stops(f).empty());
}

TEST(Worker, DownloadsSkillsIntoTheWorkdirAndRemovesThemAfterwards) {
  if (system("command -v tar >/dev/null") != 0) GTEST_SKIP() << "no tar";
  char tmpl[] = "/tmp/warren-skills-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string src = dir + "/src";
  ASSERT_EQ(system(("mkdir -p " + src + "/pdf-tools/bin && echo '# PDF' > " + src + "/pdf-tools/SKILL.md && " +
                    "printf '#!/bin/sh\\necho ok\\n' > " + src + "/pdf-tools/bin/run.sh && chmod 700 " + src +
                    "/pdf-tools/bin/run.sh && ln -s /etc/passwd " + src + "/pdf-tools/leak && tar czf " + dir +
                    "/skill.tgz -C " + src + " pdf-tools").c_str()), 0);
  FakeApi f;
  f.session_agent = {{"skills", {{{"type", "custom"}, {"skill_id", "skill_1"}, {"version", "latest"}}}}};
  f.skill_versions = {{{"version", "1759178010641129"}}, {{"version", "1759178010641130"}}, {{"version", "x"}}};
  f.skill_name = "pdf-tools";
  f.skill_archive = Slurp0(dir + "/skill.tgz");
  WorkerOptions o = Opts();
  o.tools.workdir = dir + "/work";
  Worker w(HttpClient(*ParseBaseUrl(f.base_url())), o);
  std::thread t([&] { EXPECT_TRUE(w.HandleItem("work_1", "sesn_1", "").ok()); });
  ASSERT_TRUE(f.WaitFor([&] { return !f.Requests("/events/stream").empty(); }));
  f.Append({{"type", "agent.tool_use"}, {"id", "sevt_s"}, {"name", "bash"},
            {"input", {{"command", "cd skills/pdf-tools && cat SKILL.md && stat -c '%a %n' bin/run.sh SKILL.md . && ls -A"}}}});
  ASSERT_TRUE(f.WaitFor([&] { return f.PostedEvents().size() == 1; }));
  f.Append({{"type", "session.status_terminated"}});
  t.join();
  EXPECT_EQ(f.PostedEvents()[0]["content"][0]["text"], "# PDF\n755 bin/run.sh\n644 SKILL.md\n700 .\nSKILL.md\nbin");
  EXPECT_FALSE(f.Requests("/v1/skills/skill_1/versions/1759178010641130/content").empty());
  struct stat st;
  EXPECT_NE(stat((dir + "/work/skills/pdf-tools").c_str(), &st), 0);  // removed at the end
  system(("rm -rf " + dir).c_str());
}

TEST(Skills, UnsafeArchivesAreRefused) {
  if (system("command -v tar >/dev/null") != 0) GTEST_SKIP() << "no tar";
  char tmpl[] = "/tmp/warren-skills-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  ASSERT_EQ(system(("mkdir -p " + dir + "/a/b " + dir + "/dest && echo x > " + dir + "/a/evil && cd " + dir +
                    "/a/b && tar cPf " + dir + "/bad.tar ../evil 2>/dev/null").c_str()), 0);
  std::string err = ExtractSkillArchive(Slurp0(dir + "/bad.tar"), dir + "/dest");
  EXPECT_NE(err.find("unsafe archive member"), std::string::npos) << err;
  system(("rm -rf " + dir).c_str());
}

// --- the real binary ---

std::string Slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pid_t Spawn(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  pid_t pid = fork();
  if (pid == 0) {
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int WaitExit(pid_t pid, int ms) {
  for (int i = 0; i < ms / 20; ++i) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

TEST(RunnerBinary, RunOverUnixSocketExitsCleanlyOnSigterm) {
  FakeApi f(/*unix_socket=*/true);
  char tmpl[] = "/tmp/warren-run-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string secret_file = dir + "/secret";
  std::ofstream(secret_file) << Secret("sess-token") << "\n";
  chmod(secret_file.c_str(), 0644);
  std::vector<std::string> base = {WARREN_RUNNER_BIN, "run", "--workdir", dir, "--base-url", f.base_url(),
                                   "--work-secret-file", secret_file};
  std::vector<std::string> env = {"ANTHROPIC_SESSION_ID=sesn_1", "ANTHROPIC_WORK_ID=work_1",
                                  "ANTHROPIC_ENVIRONMENT_ID=env_1"};
  // World-readable secret files are refused.
  EXPECT_EQ(WaitExit(Spawn(base, env), 10000), 2);
  chmod(secret_file.c_str(), 0600);
  pid_t pid = Spawn(base, env);
  ASSERT_TRUE(f.WaitFor([&] { return !f.Requests("/events/stream").empty(); }));
  f.Append({{"type", "agent.tool_use"}, {"id", "sevt_1"}, {"name", "bash"},
            {"input", {{"command", "echo $ANTHROPIC_SESSION_ID-x; touch " + dir + "/running; sleep 30"}}}});
  // SIGTERM only once the call runs: before the runner read it, there is no
  // call to cancel and nothing would be posted.
  ASSERT_TRUE(f.WaitFor([&] { return access((dir + "/running").c_str(), F_OK) == 0; }));
  kill(pid, SIGTERM);
  EXPECT_EQ(WaitExit(pid, 10000), 0);
  auto posted = f.PostedEvents();
  ASSERT_EQ(posted.size(), 1u);
  EXPECT_EQ(posted[0]["tool_use_id"], "sevt_1");
  EXPECT_EQ(posted[0]["is_error"], true);
  auto stops = Stops(f);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0].body["force"], true);
  EXPECT_EQ(stops[0].headers["authorization"], "Bearer sess-token");
  system(("rm -rf " + dir).c_str());
}

TEST(RunnerBinary, AKilledRunnersCallIsServedOnceByTheNextRunner) {
  FakeApi f;
  f.ttl_seconds = 2;
  char tmpl[] = "/tmp/warren-kill-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::vector<std::string> args = {WARREN_RUNNER_BIN, "run", "--workdir", dir, "--base-url", f.base_url(),
                                   "--session-id", "sesn_1", "--work-id", "work_1", "--environment-id", "env_1",
                                   "--environment-key", "envkey", "--max-idle", "0"};
  pid_t a = Spawn(args, {});
  ASSERT_TRUE(f.WaitFor([&] { return !f.Requests("/events/stream").empty(); }));
  f.Append({{"type", "agent.tool_use"}, {"id", "sevt_k"}, {"name", "bash"}, {"evaluated_permission", "allow"},
            {"input", {{"command", "echo run >> " + dir + "/runs; sleep 1; echo finished"}}}});
  ASSERT_TRUE(f.WaitFor([&] { return Slurp(dir + "/runs") == "run\n"; }));
  kill(a, SIGKILL);
  waitpid(a, nullptr, 0);
  EXPECT_TRUE(f.PostedEvents().empty());
  // A second runner cannot take the lease while it is live ... (a long ttl
  // keeps it live however slowly `early` starts: with 2 s it could lapse
  // before early's first beat on a loaded machine)
  f.ttl_seconds = 600;
  size_t streams_live = f.Requests("/events/stream").size();
  pid_t early = Spawn(args, {});
  EXPECT_EQ(WaitExit(early, 60000), kExitLeaseLost);  // 412 on its first beat
  EXPECT_TRUE(f.PostedEvents().empty());
  EXPECT_EQ(f.Requests("/events/stream").size(), streams_live);  // never attached
  EXPECT_EQ(Slurp(dir + "/runs"), "run\n");
  // ... but can once it expired (ttl 2 s without heartbeats; a's last beat
  // was before its kill, so 2.5 s from now is past the ttl).
  f.ttl_seconds = 2;
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  size_t streams_before = f.Requests("/events/stream").size();
  pid_t b = Spawn(args, {});
  ASSERT_TRUE(f.WaitFor([&] { return f.PostedEvents().size() == 1; }));
  f.Append({{"type", "session.status_terminated"}});
  EXPECT_EQ(WaitExit(b, 10000), 0);
  EXPECT_GT(f.Requests("/events/stream").size(), streams_before);
  auto posted = f.PostedEvents();
  ASSERT_EQ(posted.size(), 1u);  // not lost, not doubled
  EXPECT_EQ(posted[0]["tool_use_id"], "sevt_k");
  EXPECT_EQ(posted[0]["content"][0]["text"], "finished");
  EXPECT_EQ(Slurp(dir + "/runs"), "run\nrun\n");  // at-least-once execution
  system(("rm -rf " + dir).c_str());
}

// The real binary across a SIGKILL, as the orchestrator relaunches it: the
// same delivery's relaunch takes the lease over (its record proves it), also
// after a beat its predecessor never recorded; a relaunch of another
// delivery (whose runner never beat) exits 3 without stopping the item.
TEST(RunnerBinary, AResumedRunnerTakesOverOnlyTheLeaseItsRecordProves) {
  FakeApi f;
  f.ttl_seconds = 600;  // no lapse however slowly the runners start
  TempDir tmp("warren-resume");
  const std::string dir = tmp.path;
  const std::string journal = dir + "/calls";
  std::vector<std::string> args = {WARREN_RUNNER_BIN, "run", "--workdir", dir, "--base-url", f.base_url(),
                                   "--session-id", "sesn_1", "--work-id", "work_1", "--environment-id", "env_1",
                                   "--max-idle", "0", "--call-journal", journal};
  std::vector<std::string> resume = args;
  resume.push_back("--resume-lease");
  const std::string mine = "ANTHROPIC_WORK_SECRET=" + Secret("tok-a");
  const std::string theirs = "ANTHROPIC_WORK_SECRET=" + Secret("tok-z");
  const std::string path = LeaseRecordPath(journal, "work_1");
  // Runners still running when an ASSERT ends the test early are killed.
  struct Reaper {
    std::vector<pid_t> live;
    ~Reaper() {
      for (pid_t p : live) {
        kill(p, SIGKILL);
        waitpid(p, nullptr, 0);
      }
    }
    pid_t Add(pid_t p) {
      live.push_back(p);
      return p;
    }
    void Reaped(pid_t p) { live.erase(std::remove(live.begin(), live.end(), p), live.end()); }
  } reaper;

  // 1. A runner beats and serves; it is killed.
  pid_t a = reaper.Add(Spawn(args, {mine}));
  ASSERT_TRUE(f.WaitFor([&] { return By(f, "/events/stream", "tok-a").size() == 1; }));
  LeaseRecord rec;
  ASSERT_TRUE(ReadLeaseRecord(path, &rec));  // written before anything is served
  EXPECT_EQ(rec.delivery, Sha256Hex("tok-a"));
  kill(a, SIGKILL);
  waitpid(a, nullptr, 0);
  reaper.Reaped(a);
  ASSERT_TRUE(ReadLeaseRecord(path, &rec));
  const std::string l1 = rec.last_heartbeat;

  // 2. Its relaunch compares against the record and takes the lease over.
  size_t beats = f.Requests("/heartbeat").size();
  pid_t a2 = reaper.Add(Spawn(resume, {mine}));
  ASSERT_TRUE(f.WaitFor([&] { return By(f, "/events/stream", "tok-a").size() == 2; }));
  EXPECT_EQ(Expected(f).at(beats), l1);
  ASSERT_TRUE(ReadLeaseRecord(path, &rec));
  EXPECT_GT(rec.last_heartbeat, l1);
  kill(a2, SIGKILL);
  waitpid(a2, nullptr, 0);
  reaper.Reaped(a2);
  ASSERT_TRUE(ReadLeaseRecord(path, &rec));
  const std::string l2 = rec.last_heartbeat;
  // ... and beat once more, committed but never recorded (the answer was
  // lost with the runner).
  ApiClient dead(HttpClient(*ParseBaseUrl(f.base_url())), "tok-a", "test");
  ApiResult unrecorded = dead.Heartbeat("env_1", "work_1", l2, std::chrono::seconds(30), [] { return false; });
  ASSERT_TRUE(unrecorded.ok());
  const std::string l3 = unrecorded.body.value("last_heartbeat", "");

  // 3. A relaunch of another delivery has nothing to prove: exit 3, no
  //    stop, never attached to the session, the lease not moved.
  beats = f.Requests("/heartbeat").size();
  pid_t z = reaper.Add(Spawn(resume, {theirs}));
  EXPECT_EQ(WaitExit(z, 60000), kExitLeaseLost);  // (WaitExit reaps it, or kills it at the deadline)
  reaper.Reaped(z);
  auto z_beats = By(f, "/heartbeat", "tok-z");
  ASSERT_EQ(z_beats.size(), 1u);
  EXPECT_EQ(z_beats[0].query.at("expected_last_heartbeat"), "NO_HEARTBEAT");
  EXPECT_TRUE(By(f, "/events/stream", "tok-z").empty());
  EXPECT_TRUE(Stops(f).empty());
  ASSERT_TRUE(ReadLeaseRecord(path, &rec)) << "another delivery's runner leaves this delivery's record alone";
  EXPECT_EQ(rec.delivery, Sha256Hex("tok-a"));

  // 4. The same delivery's relaunch adopts the unrecorded beat and serves.
  pid_t a3 = reaper.Add(Spawn(resume, {mine}));
  ASSERT_TRUE(f.WaitFor([&] { return By(f, "/events/stream", "tok-a").size() == 3; }));
  auto exp = Expected(f);
  ASSERT_GE(exp.size(), beats + 3);
  EXPECT_EQ(exp[beats + 1], l2);  // the record's token: 412
  EXPECT_EQ(exp[beats + 2], l3);  // the adopted one: renewed
  f.Append({{"type", "agent.tool_use"}, {"id", "sevt_r"}, {"name", "bash"}, {"evaluated_permission", "allow"},
            {"input", {{"command", "echo resumed"}}}});
  ASSERT_TRUE(f.WaitFor([&] { return f.PostedEvents().size() == 1; }));
  EXPECT_EQ(f.PostedEvents()[0]["content"][0]["text"], "resumed");
  f.Append({{"type", "session.status_terminated"}});
  EXPECT_EQ(WaitExit(a3, 10000), 0);
  reaper.Reaped(a3);
  EXPECT_FALSE(ReadLeaseRecord(path, &rec)) << "removed at the normal end";
  }

TEST(RunnerBinary, PollHandsItemsToTheOnWorkScript) {
  FakeApi f;
  char tmpl[] = "/tmp/warren-poll-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string script = dir + "/on-work.sh";
  std::ofstream(script) << "#!/bin/sh\n"
                        << "echo \"$ANTHROPIC_WORK_ID $ANTHROPIC_SESSION_ID $ANTHROPIC_ENVIRONMENT_ID "
                           "$ANTHROPIC_ENVIRONMENT_KEY\" > " << dir << "/env.txt\n"
                        << "cat > " << dir << "/stdin.json\n";
  chmod(script.c_str(), 0755);
  f.QueueWork({{"type", "work"}, {"id", "work_9"}, {"environment_id", "env_1"},
               {"data", {{"type", "session"}, {"id", "sesn_9"}}}, {"state", "queued"}, {"secret", Secret("t9")}});
  pid_t pid = Spawn({WARREN_RUNNER_BIN, "poll", "--environment-id", "env_1", "--environment-key", "envkey",
                     "--base-url", f.base_url(), "--worker-id", "w-test", "--on-work", script},
                    {});
  ASSERT_TRUE(f.WaitFor([&] { return !Stops(f).empty(); }));
  kill(pid, SIGTERM);
  EXPECT_EQ(WaitExit(pid, 10000), 0);
  EXPECT_EQ(Slurp(dir + "/env.txt"), "work_9 sesn_9 env_1 envkey\n");
  auto item = ParseJson(Slurp(dir + "/stdin.json"));
  ASSERT_TRUE(item.ok());
  EXPECT_EQ((*item)["secret"], Secret("t9"));
  EXPECT_EQ(Stops(f)[0].body["force"], false);
  // The stop travels with the item's sessions token, which dies with the
  // lease: it can never stop an item handed to another runner.
  EXPECT_EQ(Stops(f)[0].headers["authorization"], "Bearer t9");
  auto polls = f.Requests("/work/poll");
  ASSERT_FALSE(polls.empty());
  EXPECT_EQ(polls[0].headers["anthropic-worker-id"], "w-test");
  EXPECT_EQ(polls[0].query["block_ms"], "999");
  EXPECT_EQ(f.Requests("/ack").size(), 1u);
  system(("rm -rf " + dir).c_str());
}

// Issue 13, defect 3: a runner that lost its lease exits 3, and the poller
// then leaves the item alone.
TEST(RunnerBinary, PollDoesNotStopAnItemWhoseRunnerLostTheLease) {
  FakeApi f;
  char tmpl[] = "/tmp/warren-poll-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string script = dir + "/on-work.sh";
  std::ofstream(script) << "#!/bin/sh\ncat > /dev/null\n[ \"$ANTHROPIC_WORK_ID\" = work_lost ] && exit 3\nexit 0\n";
  chmod(script.c_str(), 0755);
  for (const char* id : {"work_lost", "work_done"})
    f.QueueWork({{"type", "work"}, {"id", id}, {"environment_id", "env_1"},
                 {"data", {{"type", "session"}, {"id", "sesn_9"}}}, {"state", "queued"}, {"secret", Secret("t9")}});
  pid_t pid = Spawn({WARREN_RUNNER_BIN, "poll", "--environment-id", "env_1", "--environment-key", "envkey",
                     "--base-url", f.base_url(), "--worker-id", "w-test", "--on-work", script},
                    {});
  ASSERT_TRUE(f.WaitFor([&] { return !Stops(f).empty(); }));
  kill(pid, SIGTERM);
  EXPECT_EQ(WaitExit(pid, 10000), 0);
  auto stops = Stops(f);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_NE(stops[0].path.find("work_done"), std::string::npos);
  EXPECT_EQ(f.Requests("/ack").size(), 2u);
  system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace warren::runner
