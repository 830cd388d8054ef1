// Orchestrator loop with fakes: a scripted WorkSource and an in-memory
// SandboxHost whose "runner" is a real child process (so the pidfd
// supervision is the production code path). FakeClock drives the janitor.
#include "orchestrator/orchestrator.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <set>
#include <thread>

#include "sandbox/sys.h"
#include "orchestrator/identity.h"

namespace warren::orchestrator {
namespace {

using sandbox::SandboxRecord;
using sandbox::SandboxState;

class FakeSource final : public WorkSource {
 public:
  Result<std::optional<WorkItem>> Poll(int block_ms, int64_t) override {
    std::unique_lock<std::mutex> l(mu);
    if (!poll_error.ok()) {
      ++error_polls;
      Status e = poll_error;
      l.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(block_ms, 10)));
      return e;
    }
    if (queue.empty()) {
      ++empty_polls;
      l.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(block_ms, 10)));
      return std::optional<WorkItem>();
    }
    WorkItem w = queue.front();
    queue.erase(queue.begin());
    return std::optional<WorkItem>(w);
  }
  Status Ack(const WorkItem& item) override {
    std::lock_guard<std::mutex> l(mu);
    if (ack_failures > 0) {
      --ack_failures;
      return Status::Unavailable("flaky");
    }
    acked.push_back(item.id);
    return Status::Ok();
  }
  Status Stop(const WorkItem& item, bool force) override {
    std::lock_guard<std::mutex> l(mu);
    stopped.push_back(item.id + (force ? ":force" : ""));
    return Status::Ok();
  }
  Result<Json> GetSession(const std::string&, const std::string& id) override {
    std::lock_guard<std::mutex> l(mu);
    auto it = sessions.find(id);
    if (it == sessions.end()) return Status::NotFound("no session " + id);
    return it->second;
  }
  std::vector<std::string> Environments() override { return {"env_1"}; }
  void Interrupt() override {}
  Status FailItem(const WorkItem& item, const std::string& message) override {
    std::lock_guard<std::mutex> l(mu);
    failed.push_back(item.session_id + ": " + message);
    return Status::Ok();
  }
  std::vector<std::string> failed;
  Result<std::vector<WorkItem>> HeldItems() override {
    std::lock_guard<std::mutex> l(mu);
    return held;
  }
  std::vector<WorkItem> held;
  void Release(const WorkItem& item) override {
    std::lock_guard<std::mutex> l(mu);
    released.push_back(item.id);
    released_secrets.push_back(item.secret);
  }
  std::vector<std::string> released;
  std::vector<std::string> released_secrets;  // which delivery each Release was for

  std::mutex mu;
  std::vector<WorkItem> queue;
  std::map<std::string, Json> sessions;
  std::vector<std::string> acked, stopped;
  int ack_failures = 0;
  int empty_polls = 0;  // polls that found the queue empty
  Status poll_error;    // every poll fails with it while not OK
  int error_polls = 0;  // polls answered with poll_error
};

class FakeSandboxes final : public SandboxHost {
 public:
  ~FakeSandboxes() override {
    for (auto& [id, pids] : procs)
      for (auto& p : pids) Kill(p.host_pid);
  }
  static void Kill(pid_t pid) {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  // A real process standing for one inside the sandbox.
  static SandboxProcess Spawn(std::vector<std::string> argv, pid_t ns_pid) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
    SandboxProcess p;
    p.host_pid = pid;
    p.ns_pid = ns_pid;
    p.start_time = sandbox::ProcessStartTime(pid).value();
    p.argv = std::move(argv);
    return p;
  }
  Result<SandboxRecord> Create(const sandbox::CreateOptions& o) override {
    std::lock_guard<std::mutex> l(mu);
    SandboxRecord r;
    r.id = "sbx_" + std::to_string(++next);
    r.name = o.name;
    r.snapshot = o.snapshot;
    r.labels = o.labels;
    r.host_binds = o.host_binds;
    r.network = o.network;
    auto hosts = sandbox::HostAllowlist::Parse(o.allow_hosts);  // canonical in the record, as the runtime's
    r.allow_hosts = hosts.ok() ? hosts->entries() : o.allow_hosts;
    r.allow_cidrs = o.allow_cidrs;
    r.state = o.start ? SandboxState::kStarted : SandboxState::kStopped;
    recs[r.id] = r;
    creates.push_back(o);
    return r;
  }
  Result<SandboxRecord> Get(const std::string& id) override {
    std::lock_guard<std::mutex> l(mu);
    auto it = recs.find(id);
    if (it == recs.end()) return Status::NotFound("no sandbox " + id);
    return it->second;
  }
  Result<std::vector<SandboxRecord>> List() override {
    std::lock_guard<std::mutex> l(mu);
    ++lists;
    std::vector<SandboxRecord> out;
    for (auto& [id, r] : recs) out.push_back(r);
    return out;
  }
  // As the runtime: filtered without a full listing (not counted in `lists`).
  Result<std::vector<SandboxRecord>> ListWithLabel(const std::string& key, const std::string& value) override {
    std::lock_guard<std::mutex> l(mu);
    std::vector<SandboxRecord> out;
    for (auto& [id, r] : recs)
      if (r.labels.count(key) && r.labels.at(key) == value) out.push_back(r);
    return out;
  }
  Result<std::vector<SandboxRecord>> ListInState(SandboxState state) override {
    std::lock_guard<std::mutex> l(mu);
    std::vector<SandboxRecord> out;
    for (auto& [id, r] : recs)
      if (r.state == state) out.push_back(r);
    return out;
  }
  Result<SandboxRecord> SetState(const std::string& id, SandboxState s) {
    std::lock_guard<std::mutex> l(mu);
    auto it = recs.find(id);
    if (it == recs.end()) return Status::NotFound("no sandbox " + id);
    it->second.state = s;
    log.push_back(id + ":" + sandbox::StateName(s));
    if (s != SandboxState::kStarted) {
      for (auto& p : procs[id]) Kill(p.host_pid);
      procs[id].clear();
    }
    if (s == SandboxState::kStopped || s == SandboxState::kArchived) it->second.stopped_at = stopped_at;
    return it->second;
  }
  Result<SandboxRecord> Start(const std::string& id) override { return SetState(id, SandboxState::kStarted); }
  // A stop waits while its sandbox is blocked (block_all_stops or
  // block_stops) until ReleaseStops(): a slow stop, for as long as a test
  // wants. It counts stops in flight, overall and per sandbox.
  Result<SandboxRecord> Stop(const std::string& id, bool) override {
    {
      std::unique_lock<std::mutex> l(mu);
      ++stop_calls[id];
      max_in_stop = std::max(max_in_stop, ++in_stop);
      if (++in_stop_of[id] > 1) ++overlapping_stops;
      stop_cv.wait(l, [&] { return stops_released || (!block_all_stops && block_stops.count(id) == 0); });
    }
    auto r = SetState(id, SandboxState::kStopped);
    std::lock_guard<std::mutex> l(mu);
    --in_stop;
    --in_stop_of[id];
    return r;
  }
  void ReleaseStops() {
    {
      std::lock_guard<std::mutex> l(mu);
      stops_released = true;
    }
    stop_cv.notify_all();
  }
  SandboxState State(const std::string& id) {
    std::lock_guard<std::mutex> l(mu);
    return recs.count(id) ? recs[id].state : SandboxState::kDestroyed;
  }
  int InStop() {
    std::lock_guard<std::mutex> l(mu);
    return in_stop;
  }
  Result<SandboxRecord> Archive(const std::string& id) override { return SetState(id, SandboxState::kArchived); }
  Result<SandboxRecord> Restore(const std::string& id) override { return SetState(id, SandboxState::kStopped); }
  Status Delete(const std::string& id) override {
    std::lock_guard<std::mutex> l(mu);
    recs.erase(id);
    log.push_back(id + ":deleted");
    return Status::Ok();
  }
  Result<SandboxRecord> SetLabels(const std::string& id, std::map<std::string, std::string> labels) override {
    std::lock_guard<std::mutex> l(mu);
    auto it = recs.find(id);
    if (it == recs.end()) return Status::NotFound("no sandbox " + id);
    it->second.labels = std::move(labels);
    return it->second;
  }
  Result<SandboxRecord> SetNetwork(const std::string& id, const sandbox::NetworkPolicy& p) override {
    std::lock_guard<std::mutex> l(mu);
    auto it = recs.find(id);
    if (it == recs.end()) return Status::NotFound("no sandbox " + id);
    it->second.network = p.network;
    it->second.allow_hosts = p.allow_hosts;
    it->second.allow_cidrs = p.allow_cidrs;
    it->second.dns = p.dns;
    it->second.block_all = p.block_all;
    network_sets.push_back(p);
    log.push_back(id + ":network=" + p.network + "/" + sandbox::StateName(it->second.state));
    return it->second;
  }
  Result<SandboxRecord> SetHostBinds(const std::string& id, std::vector<sandbox::HostBind> binds) override {
    std::lock_guard<std::mutex> l(mu);
    auto it = recs.find(id);
    if (it == recs.end()) return Status::NotFound("no sandbox " + id);
    if (it->second.state != SandboxState::kStopped) return Status::FailedPrecondition("not stopped");
    it->second.host_binds = std::move(binds);
    log.push_back(id + ":binds");
    return it->second;
  }
  Result<sandbox::ExecResult> Exec(const std::string& id, const sandbox::ExecRequest& req) override {
    std::lock_guard<std::mutex> l(mu);
    execs.push_back(req);
    scans_at_exec.push_back(scans);
    if (recs[id].state != SandboxState::kStarted) return Status::FailedPrecondition("not started");
    // The launch script backgrounds "$@": the runner's argv starts after "sh".
    std::vector<std::string> argv(req.argv.begin() + 4, req.argv.end());
    procs[id].push_back(Spawn(argv, 100 + static_cast<int>(procs[id].size())));
    return sandbox::ExecResult{0, false, "", ""};
  }
  Result<std::vector<SandboxProcess>> Processes(const std::string& id) override {
    std::lock_guard<std::mutex> l(mu);
    ++scans;
    std::vector<SandboxProcess> out;
    if (recs.count(id) == 0 || recs[id].state != SandboxState::kStarted) return out;
    SandboxProcess init;
    init.ns_pid = 1;
    out.push_back(init);
    for (auto& p : procs[id])
      if (sandbox::ProcessAlive(p.host_pid, p.start_time)) out.push_back(p);
    return out;
  }
  Result<std::map<std::string, std::vector<SandboxProcess>>> ProcessesOfMany(
      const std::vector<SandboxRecord>& started) override {
    std::map<std::string, std::vector<SandboxProcess>> out;
    {
      std::lock_guard<std::mutex> l(mu);
      ++many_scans;
    }
    for (const auto& r : started) {
      std::lock_guard<std::mutex> l(mu);
      if (recs.count(r.id) == 0 || recs[r.id].state != SandboxState::kStarted) continue;
      SandboxProcess init;
      init.ns_pid = 1;
      out[r.id].push_back(init);
      for (auto& p : procs[r.id])
        if (sandbox::ProcessAlive(p.host_pid, p.start_time)) out[r.id].push_back(p);
    }
    return out;
  }
  Result<std::string> ReadFile(const std::string&, const std::string& path) override {
    std::lock_guard<std::mutex> l(mu);
    auto it = files.find(path);
    if (it == files.end()) return Status::NotFound(path);
    return it->second;
  }
  // Ends the runner process(es) of a sandbox (the runner exits).
  void EndRunners(const std::string& id) {
    std::lock_guard<std::mutex> l(mu);
    auto& v = procs[id];
    for (auto it = v.begin(); it != v.end();) {
      if (!it->argv.empty() && it->argv[0] == kRunnerPath) {
        Kill(it->host_pid);
        it = v.erase(it);
      } else {
        ++it;
      }
    }
  }

  std::mutex mu;
  int next = 0;
  int lists = 0;  // full listings asked for
  int64_t stopped_at = 0;
  std::map<std::string, SandboxRecord> recs;
  std::map<std::string, std::vector<SandboxProcess>> procs;
  std::map<std::string, std::string> files;
  std::vector<sandbox::CreateOptions> creates;
  std::vector<sandbox::NetworkPolicy> network_sets;
  std::vector<sandbox::ExecRequest> execs;
  int scans = 0;                   // Processes() calls so far
  int many_scans = 0;              // ProcessesOfMany() calls so far
  std::vector<int> scans_at_exec;  // `scans` at each Exec()
  std::vector<std::string> log;
  // Slow stops (Stop above).
  std::condition_variable stop_cv;
  bool block_all_stops = false;
  std::set<std::string> block_stops;
  bool stops_released = false;
  int in_stop = 0, max_in_stop = 0, overlapping_stops = 0;
  std::map<std::string, int> in_stop_of, stop_calls;
};

// Waits up to 30 s for `pred` (the state a test asserts next), never for a
// fixed time.
template <typename Pred>
bool WaitFor(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

WorkItem Item(const std::string& id, const std::string& session, const std::string& created = "2026-01-01T00:00:00Z") {
  WorkItem w;
  w.id = id;
  w.environment_id = "env_1";
  w.type = "session";
  w.session_id = session;
  w.secret = "c2VjcmV0";
  w.created_at = created;
  return w;
}

Json Session(const std::string& id, const std::string& status = "idle", Json metadata = Json::object()) {
  return {{"id", id}, {"status", status}, {"archived_at", nullptr}, {"metadata", metadata}};
}

class OrchestratorTest : public ::testing::Test {
 protected:
  OrchestratorTest() {
    opts.runner_host_path = "/usr/lib/warren/warren-runner";
    opts.runner_base_url = "unix:/.warren/run/api.sock";
    opts.socket_host_dir = "/var/lib/warren-data/run";
    opts.sandbox_idle_stop = std::chrono::milliseconds(1000);
    opts.archived_retention = std::chrono::milliseconds(5000);
    opts.session_check_interval = std::chrono::milliseconds(0);
    opts.retry_initial = std::chrono::milliseconds(1);
    opts.max_item_attempts = 3;
    opts.janitor_interval = std::chrono::hours(1);  // passes are run by hand
  }
  std::unique_ptr<Orchestrator> Make() { return std::make_unique<Orchestrator>(&source, &sb, &clock, opts); }
  // `n` started sandboxes of this orchestrator, each of an idle session,
  // with nothing but init inside: due to stop once the idle window passed.
  std::vector<std::string> QuietIdleSandboxes(int n, const std::string& prefix = "q") {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      const std::string sid = prefix + std::to_string(i);
      sandbox::CreateOptions c;
      c.labels = {{kLabelSession, sid}, {kLabelEnvironment, "env_1"}, {kLabelMode, "session"},
                  {kLabelOrchestrator, "embedded"}};
      ids.push_back(sb.Create(c).value().id);
      std::lock_guard<std::mutex> l(source.mu);
      source.sessions[sid] = Session(sid, "idle");
    }
    return ids;
  }
  std::string OnlySandbox() {
    EXPECT_EQ(sb.recs.size(), 1u);
    return sb.recs.empty() ? "" : sb.recs.begin()->first;
  }

  FakeSource source;
  FakeSandboxes sb;
  FakeClock clock;
  OrchestratorOptions opts;
};

TEST_F(OrchestratorTest, DedupeKeepsNewestPerSession) {
  std::vector<WorkItem> items{Item("w1", "s1", "2026-01-01T00:00:01Z"), Item("w2", "s1", "2026-01-01T00:00:03Z"),
                              Item("w3", "s2"), Item("w4", "s1", "2026-01-01T00:00:02Z")};
  auto dropped = Orchestrator::Dedupe(&items);
  ASSERT_EQ(items.size(), 2u);
  std::set<std::string> kept{items[0].id, items[1].id};
  EXPECT_EQ(kept, (std::set<std::string>{"w2", "w3"}));
  std::set<std::string> gone;
  for (auto& d : dropped) gone.insert(d.id);
  EXPECT_EQ(gone, (std::set<std::string>{"w1", "w4"}));
}

TEST_F(OrchestratorTest, NewSessionGetsLabelledSandboxAndRunner) {
  source.sessions["s1"] = Session("s1", "running");
  auto o = Make();
  o->HandleItem(Item("w1", "s1"));
  EXPECT_EQ(source.acked, std::vector<std::string>{"w1"});
  ASSERT_EQ(sb.creates.size(), 1u);
  const auto& c = sb.creates[0];
  EXPECT_EQ(c.labels.at(kLabelSession), "s1");
  EXPECT_EQ(c.labels.at(kLabelEnvironment), "env_1");
  EXPECT_EQ(c.labels.at(kLabelMode), "session");
  EXPECT_EQ(c.snapshot, "builtin:minimal");
  ASSERT_EQ(c.host_binds.size(), 2u);
  EXPECT_EQ(c.host_binds[0].path, kRunnerPath);
  EXPECT_EQ(c.host_binds[1].path, kSocketDir);
  ASSERT_EQ(sb.execs.size(), 1u);
  const auto& env = sb.execs[0].env;
  EXPECT_NE(std::find(env.begin(), env.end(), "ANTHROPIC_WORK_SECRET=c2VjcmV0"), env.end());
  EXPECT_NE(std::find(env.begin(), env.end(), "ANTHROPIC_BASE_URL=unix:/.warren/run/api.sock"), env.end());
  EXPECT_EQ(o->Runners(), std::vector<std::string>{"w1"});
  EXPECT_TRUE(source.stopped.empty());
  // The same item again (a redelivery) does not launch a second runner.
  o->HandleItem(Item("w1", "s1"));
  EXPECT_EQ(sb.execs.size(), 1u);
}

TEST_F(OrchestratorTest, RunnerScanOnlyWhenTheSandboxWasAlreadyRunning) {
  // A sandbox this item created or started runs nothing but its init: the
  // runner is launched without first scanning for one (latency, docs/
  // ORCHESTRATOR.md "Latency"). A sandbox found running is scanned first,
  // so that a runner of the session already there is never doubled.
  source.sessions["s1"] = Session("s1", "running");
  auto o = Make();
  o->HandleItem(Item("w1", "s1"));  // created
  ASSERT_EQ(sb.scans_at_exec.size(), 1u);
  EXPECT_EQ(sb.scans_at_exec[0], 0);
  const std::string id = OnlySandbox();
  sb.EndRunners(id);
  ASSERT_TRUE(sb.Stop(id, false).ok());
  int before = sb.scans;
  o->HandleItem(Item("w2", "s1"));  // started from stopped
  ASSERT_EQ(sb.scans_at_exec.size(), 2u);
  EXPECT_EQ(sb.scans_at_exec[1], before);
  sb.EndRunners(id);
  before = sb.scans;
  o->HandleItem(Item("w3", "s1"));  // found running
  ASSERT_EQ(sb.scans_at_exec.size(), 3u);
  EXPECT_GT(sb.scans_at_exec[2], before);
  // A runner of the session that is still there (an earlier delivery) is
  // found by that scan: no second runner.
  before = static_cast<int>(sb.execs.size());
  o->HandleItem(Item("w4", "s1"));
  EXPECT_EQ(static_cast<int>(sb.execs.size()), before);
}

// At 10,000 sessions a full listing costs a stat and a copy per sandbox:
// serving an item finds its session's sandbox by label, never by listing
// every sandbox (docs/BENCHMARKS.md, idle footprint).
TEST_F(OrchestratorTest, ServingAnItemDoesNotListEverySandbox) {
  for (int i = 0; i < 50; ++i) {
    sandbox::CreateOptions c;
    c.labels = {{kLabelSession, "other" + std::to_string(i)}, {kLabelEnvironment, "env_1"},
                {kLabelMode, "session"}, {kLabelOrchestrator, "embedded"}};
    ASSERT_TRUE(sb.Create(c).ok());
  }
  sb.creates.clear();
  source.sessions["s1"] = Session("s1", "running");
  auto o = Make();
  o->HandleItem(Item("w1", "s1"));  // creates
  ASSERT_EQ(sb.creates.size(), 1u);
  sb.EndRunners("sbx_51");
  o->HandleItem(Item("w2", "s1"));  // finds it
  EXPECT_EQ(sb.creates.size(), 1u);
  EXPECT_EQ(sb.execs.size(), 2u);
  EXPECT_EQ(sb.lists, 0);
}

TEST_F(OrchestratorTest, SnapshotFromSessionMetadata) {
  source.sessions["s1"] = Session("s1", "running", {{"warren.snapshot", "py311"}});
  auto o = Make();
  o->HandleItem(Item("w1", "s1"));
  ASSERT_EQ(sb.creates.size(), 1u);
  EXPECT_EQ(sb.creates[0].snapshot, "py311");
}

TEST_F(OrchestratorTest, MissingOrEndedSessionStopsTheItem) {
  auto o = Make();
  o->HandleItem(Item("w1", "gone"));
  EXPECT_EQ(source.stopped, std::vector<std::string>{"w1:force"});
  EXPECT_TRUE(sb.creates.empty());

  source.sessions["s2"] = Session("s2", "running");
  o->HandleItem(Item("w2", "s2"));
  std::string id = OnlySandbox();
  source.sessions["s2"] = Session("s2", "terminated");
  o->HandleItem(Item("w3", "s2"));
  EXPECT_EQ(source.stopped.back(), "w3:force");
  EXPECT_EQ(sb.recs[id].state, SandboxState::kArchived);
}

TEST_F(OrchestratorTest, PreparedSandboxIsCheckedThenBound) {
  sandbox::CreateOptions p;
  p.labels = {{kLabelMode, "prepared"}, {kLabelEnvironment, "env_other"}};
  std::string wrong = sb.Create(p).value().id;
  p.labels[kLabelEnvironment] = "env_1";
  std::string right = sb.Create(p).value().id;
  sb.creates.clear();
  auto o = Make();
  source.sessions["s1"] = Session("s1", "running", {{"warren.sandbox_id", wrong}});
  o->HandleItem(Item("w1", "s1"));
  EXPECT_EQ(source.stopped, std::vector<std::string>{"w1:force"});  // permanent: another environment
  EXPECT_TRUE(sb.execs.empty());

  source.sessions["s2"] = Session("s2", "running", {{"warren.sandbox_id", right}});
  o->HandleItem(Item("w2", "s2"));
  EXPECT_TRUE(sb.creates.empty());
  EXPECT_EQ(sb.recs[right].labels[kLabelSession], "s2");
  EXPECT_EQ(sb.recs[right].labels[kLabelMode], "session");
  EXPECT_EQ(sb.execs.size(), 1u);
  // A bound sandbox cannot be handed to a second session.
  source.sessions["s3"] = Session("s3", "running", {{"warren.sandbox_id", right}});
  o->HandleItem(Item("w3", "s3"));
  EXPECT_EQ(source.stopped.back(), "w3:force");
}

TEST_F(OrchestratorTest, PreparedSandboxRunnerGetsItsCredentialsAndKeepsLabels) {
  sandbox::CreateOptions p;
  p.labels = {{kLabelMode, "prepared"},
              {kLabelEnvironment, "env_1"},
              {"warren.credentials_expire_at", "2026-01-01T01:00:00Z"},
              {"team", "blue"}};
  std::string prepared = sb.Create(p).value().id;
  std::vector<std::string> asked;
  opts.prepared_runner_env = [&](const std::string& id) -> Result<std::vector<std::string>> {
    asked.push_back(id);
    return std::vector<std::string>{"API_TOKEN=tok-123", "ANTHROPIC_WORK_SECRET=forged"};
  };
  auto o = Make();
  source.sessions["s1"] = Session("s1", "running", {{"warren.sandbox_id", prepared}});
  o->HandleItem(Item("w1", "s1"));
  ASSERT_EQ(sb.execs.size(), 1u);
  EXPECT_EQ(asked, std::vector<std::string>{prepared});
  const auto& env = sb.execs[0].env;
  EXPECT_NE(std::find(env.begin(), env.end(), "API_TOKEN=tok-123"), env.end());
  EXPECT_NE(std::find(env.begin(), env.end(), "ANTHROPIC_WORK_SECRET=c2VjcmV0"), env.end());
  EXPECT_EQ(std::find(env.begin(), env.end(), "ANTHROPIC_WORK_SECRET=forged"), env.end());  // never shadowed
  // Binding kept every other label (the credential expiry drives the sweep).
  auto& labels = sb.recs[prepared].labels;
  EXPECT_EQ(labels["warren.credentials_expire_at"], "2026-01-01T01:00:00Z");
  EXPECT_EQ(labels["team"], "blue");
  EXPECT_EQ(labels[kLabelPrepared], "true");
  // It was stopped, given the runner and the socket dir, and started.
  ASSERT_EQ(sb.recs[prepared].host_binds.size(), 2u);
  EXPECT_EQ(sb.recs[prepared].host_binds[0].path, kRunnerPath);
  EXPECT_EQ(sb.recs[prepared].host_binds[1].path, kSocketDir);
  EXPECT_EQ(sb.log, (std::vector<std::string>{prepared + ":stopped", prepared + ":binds", prepared + ":started"}));
  // A session sandbox that was not prepared gets no credentials.
  source.sessions["s2"] = Session("s2", "running");
  o->HandleItem(Item("w2", "s2"));
  EXPECT_EQ(asked.size(), 1u);
  // A failing credential store is transient: retried, then left to the lease.
  opts.prepared_runner_env = [](const std::string&) -> Result<std::vector<std::string>> {
    return Status::Unavailable("state dir unreadable");
  };
  sandbox::CreateOptions p2;
  p2.labels = {{kLabelMode, "prepared"}, {kLabelEnvironment, "env_1"}};
  std::string prepared2 = sb.Create(p2).value().id;
  auto o2 = Make();
  source.sessions["s3"] = Session("s3", "running", {{"warren.sandbox_id", prepared2}});
  size_t execs = sb.execs.size();
  o2->HandleItem(Item("w3", "s3"));
  EXPECT_EQ(sb.execs.size(), execs);
  EXPECT_TRUE(source.stopped.empty());
}

TEST_F(OrchestratorTest, ExpiredEnvCredentialsEndTheRunner) {
  sandbox::CreateOptions p;
  p.labels = {{kLabelMode, "prepared"}, {kLabelEnvironment, "env_1"}};
  std::string prepared = sb.Create(p).value().id;
  opts.prepared_runner_env = [](const std::string&) -> Result<std::vector<std::string>> {
    return std::vector<std::string>{"API_TOKEN=tok"};
  };
  std::vector<std::string> expired;
  int sweeps = 0;
  opts.sweep_credentials = [&]() -> Result<std::vector<std::string>> {
    ++sweeps;
    return expired;
  };
  source.sessions["s1"] = Session("s1", "running", {{"warren.sandbox_id", prepared}});
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  o->HandleItem(Item("w1", "s1"));
  ASSERT_EQ(o->Runners(), std::vector<std::string>{"w1"});
  o->JanitorPass();  // nothing expired: the runner stays
  EXPECT_EQ(sweeps, 1);
  EXPECT_EQ(o->Runners(), std::vector<std::string>{"w1"});
  expired = {"sbx_other"};
  o->JanitorPass();
  EXPECT_EQ(o->Runners(), std::vector<std::string>{"w1"});
  expired = {prepared};
  o->JanitorPass();
  EXPECT_EQ(o->stats().runners_credentials_expired, 1);
  // The fake runner dies of the SIGTERM; the supervisor sees it go.
  for (int i = 0; i < 3000 && !o->Runners().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(o->Runners().empty());
  o->Stop();
}

// Another orchestrator serves the environment (the service's 409 with
// kEnvironmentHeldCode): the poll loop stops for good and says so once;
// the runner already launched keeps running (its lease decides), and
// nothing queued afterwards is claimed.
TEST_F(OrchestratorTest, RefusedEnvironmentStopsClaimingAndKeepsRunners) {
  source.sessions["s1"] = Session("s1", "running");
  source.sessions["s2"] = Session("s2", "running");
  source.queue.push_back(Item("w1", "s1"));
  std::mutex cb_mu;
  std::vector<std::string> refusals;
  opts.on_environment_refused = [&](const Status& s) {
    std::lock_guard<std::mutex> l(cb_mu);
    refusals.push_back(s.message());
  };
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return o->Runners().size() == 1; }));
  {
    std::lock_guard<std::mutex> l(source.mu);
    source.poll_error = Status::Conflict("environment env_1 is served by another orchestrator (id orch_b)")
                            .WithDetailCode(kEnvironmentHeldCode);
  }
  // Refused, and told (the callback runs on the poll thread right after
  // the flag is set).
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> l(cb_mu);
    return o->refused() && !refusals.empty();
  }));
  {
    std::lock_guard<std::mutex> l(source.mu);
    source.poll_error = Status::Ok();  // even if it would be accepted again: the loop has ended
    source.queue.push_back(Item("w2", "s2"));
  }
  // The loop has ended: the refused poll was its last (a poll still in
  // flight when the flag was read would have been the refused one).
  {
    std::lock_guard<std::mutex> l(source.mu);
    EXPECT_EQ(source.error_polls, 1);
  }
  {
    std::lock_guard<std::mutex> l(cb_mu);
    ASSERT_EQ(refusals.size(), 1u);
    EXPECT_NE(refusals[0].find("orch_b"), std::string::npos);
  }
  EXPECT_EQ(o->Runners(), std::vector<std::string>{"w1"});
  EXPECT_EQ(o->stats().items_claimed, 1);
  o->Stop();
  EXPECT_EQ(source.queue.size(), 1u) << "w2 was never claimed";
  EXPECT_TRUE(source.stopped.empty()) << "the runner's item was not stopped";
}

// A Conflict without the refusal's detail code is an ordinary poll
// failure: retried, then the loop goes on.
TEST_F(OrchestratorTest, OtherPollConflictsAreRetried) {
  source.sessions["s1"] = Session("s1", "running");
  source.poll_error = Status::Conflict("some other conflict");
  bool called = false;
  opts.on_environment_refused = [&](const Status&) { called = true; };
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> l(source.mu);
    return source.error_polls >= 2;
  }));
  {
    std::lock_guard<std::mutex> l(source.mu);
    source.poll_error = Status::Ok();
    source.queue.push_back(Item("w1", "s1"));
  }
  ASSERT_TRUE(WaitFor([&] { return o->Runners().size() == 1; }));
  EXPECT_FALSE(o->refused());
  o->Stop();
  EXPECT_FALSE(called);
}

TEST_F(OrchestratorTest, WebhookModeDrainsOnWake) {
  opts.poll_continuously = false;
  opts.fallback_drain = std::chrono::hours(1);
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  for (int i = 0; i < 3000 && o->stats().drains < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(o->stats().drains, 1);  // the drain at start
  // ...has ended: it found the queue empty (items queued while it runs
  // would be its to claim).
  auto empty_polls = [&] {
    std::lock_guard<std::mutex> l(source.mu);
    return source.empty_polls;
  };
  for (int i = 0; i < 3000 && empty_polls() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(empty_polls(), 1);
  for (int i = 0; i < 3; ++i) {
    std::string s = "s" + std::to_string(i);
    std::lock_guard<std::mutex> l(source.mu);
    source.sessions[s] = Session(s, "running");
    source.queue.push_back(Item("w" + std::to_string(i), s));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(o->stats().items_claimed, 0);  // no poll between drains
  o->Wake();
  for (int i = 0; i < 3000 && o->Runners().size() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(o->Runners().size(), 3u);  // one wake-up drains everything waiting
  EXPECT_EQ(o->stats().drains, 2);
  o->Stop();
}

TEST_F(OrchestratorTest, WebhookModeFallbackDrain) {
  opts.poll_continuously = false;
  opts.fallback_drain = std::chrono::milliseconds(20);
  source.sessions["s1"] = Session("s1", "running");
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  for (int i = 0; i < 3000 && o->stats().drains < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  {
    std::lock_guard<std::mutex> l(source.mu);
    source.queue.push_back(Item("w1", "s1"));
  }
  for (int i = 0; i < 3000 && o->Runners().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(o->Runners(), std::vector<std::string>{"w1"});  // no Wake(): the fallback drain found it
  o->Stop();
}

TEST_F(OrchestratorTest, SnapshotFromEnvironmentPackages) {
  std::vector<std::string> asked;
  Status fail = Status::Ok();
  opts.environment_snapshot = [&](const std::string& env) -> Result<std::string> {
    asked.push_back(env);
    if (!fail.ok()) return fail;
    return std::string("pkgs-0123");
  };
  auto o = Make();
  source.sessions["s1"] = Session("s1", "running");
  o->HandleItem(Item("w1", "s1"));
  ASSERT_EQ(sb.creates.size(), 1u);
  EXPECT_EQ(sb.creates[0].snapshot, "pkgs-0123");
  EXPECT_EQ(asked, std::vector<std::string>{"env_1"});
  // The session's own snapshot wins (no build asked for).
  source.sessions["s2"] = Session("s2", "running", {{"warren.snapshot", "mine"}});
  o->HandleItem(Item("w2", "s2"));
  EXPECT_EQ(sb.creates.back().snapshot, "mine");
  EXPECT_EQ(asked.size(), 1u);
  // A package set that cannot be built stops the item; no sandbox.
  fail = Status::FailedPrecondition("config.packages: pip needs build networking");
  source.sessions["s3"] = Session("s3", "running");
  o->HandleItem(Item("w3", "s3"));
  EXPECT_EQ(source.stopped, std::vector<std::string>{"w3:force"});
  EXPECT_EQ(sb.creates.size(), 2u);
  // ... and the session is told why, in plain words (session.error and
  // error results for its calls), so it neither waits nor loops.
  ASSERT_EQ(source.failed.size(), 1u);
  EXPECT_EQ(source.failed[0],
            "s3: Warren could not prepare the sandbox for this session: config.packages: pip needs build networking");
  // A transient failure (a build that broke) is retried, not stopped.
  fail = Status::Unavailable("mirror down");
  source.sessions["s4"] = Session("s4", "running");
  o->HandleItem(Item("w4", "s4"));
  EXPECT_EQ(source.stopped.size(), 1u);
  EXPECT_EQ(sb.creates.size(), 2u);
  EXPECT_EQ(source.failed.size(), 1u) << "a transient failure is not reported to the session";
}

TEST_F(OrchestratorTest, NetworkFromEnvironment) {
  std::vector<std::string> asked;
  opts.network = "none";
  opts.allow_cidrs = {"192.0.2.0/24"};
  opts.environment_network = [&](const std::string& env, const Json& session)
      -> Result<OrchestratorOptions::SandboxNetworkChoice> {
    asked.push_back(env + "/" + session.value("id", ""));
    if (env == "env_bad") return Status::FailedPrecondition("config.networking: allowed host '*' is invalid");
    if (env == "env_open") return OrchestratorOptions::SandboxNetworkChoice{"isolated", {}};
    if (env == "env_self") return OrchestratorOptions::SandboxNetworkChoice{};
    return OrchestratorOptions::SandboxNetworkChoice{"limited", {"allowed.test", "*.pythonhosted.org"}};
  };
  auto o = Make();
  source.sessions["s1"] = Session("s1", "running");
  o->HandleItem(Item("w1", "s1"));
  ASSERT_EQ(sb.creates.size(), 1u);
  EXPECT_EQ(sb.creates[0].network, "limited");
  EXPECT_EQ(sb.creates[0].allow_hosts, (std::vector<std::string>{"allowed.test", "*.pythonhosted.org"}));
  EXPECT_EQ(sb.creates[0].allow_cidrs, opts.allow_cidrs);
  EXPECT_EQ(asked, std::vector<std::string>{"env_1/s1"});
  auto other_env = [&](const std::string& work, const std::string& session, const std::string& env) {
    WorkItem it = Item(work, session);
    it.environment_id = env;
    source.sessions[session] = Session(session, "running");
    o->HandleItem(it);
  };
  other_env("w2", "s2", "env_open");
  EXPECT_EQ(sb.creates.back().network, "isolated");
  EXPECT_TRUE(sb.creates.back().allow_hosts.empty());
  other_env("w3", "s3", "env_self");  // nothing decided: the orchestrator's own network
  EXPECT_EQ(sb.creates.back().network, "none");
  EXPECT_TRUE(sb.creates.back().allow_cidrs.empty());
  // A policy that cannot be enforced stops the item; no sandbox is made.
  size_t made = sb.creates.size();
  other_env("w4", "s4", "env_bad");
  EXPECT_EQ(sb.creates.size(), made);
  EXPECT_EQ(source.stopped, std::vector<std::string>{"w4:force"});
}

// An environment whose `networking` changed: the session's existing
// sandbox is brought to the new policy at its next claim (live: it is
// running), before the runner is launched; an unchanged policy, or one the
// environment does not decide, makes no call.
TEST_F(OrchestratorTest, ChangedEnvironmentNetworkReachesTheExistingSandbox) {
  OrchestratorOptions::SandboxNetworkChoice choice{"limited", {"Allowed.test"}};
  opts.allow_cidrs = {"192.0.2.0/24"};
  opts.environment_network = [&](const std::string&, const Json&) -> Result<OrchestratorOptions::SandboxNetworkChoice> {
    if (choice.network == "bad") return Status::FailedPrecondition("config.networking: allowed host '*' is invalid");
    return choice;
  };
  auto o = Make();
  source.sessions["s1"] = Session("s1", "running");
  o->HandleItem(Item("w1", "s1"));
  const std::string id = OnlySandbox();
  ASSERT_EQ(sb.creates.size(), 1u);
  sb.EndRunners(id);
  o->HandleItem(Item("w2", "s1"));  // same policy (canonically): no call
  EXPECT_TRUE(sb.network_sets.empty());

  choice = {"limited", {"allowed.test", "pypi.org"}};
  sb.EndRunners(id);
  size_t execs = sb.execs.size();
  o->HandleItem(Item("w3", "s1"));
  ASSERT_EQ(sb.network_sets.size(), 1u);
  EXPECT_EQ(sb.network_sets[0].network, "limited");
  EXPECT_EQ(sb.network_sets[0].allow_hosts, (std::vector<std::string>{"allowed.test", "pypi.org"}));
  EXPECT_EQ(sb.network_sets[0].allow_cidrs, opts.allow_cidrs);
  EXPECT_EQ(sb.Get(id)->allow_hosts, (std::vector<std::string>{"allowed.test", "pypi.org"}));
  EXPECT_EQ(sb.creates.size(), 1u) << "the same sandbox, not a new one";
  EXPECT_EQ(sb.execs.size(), execs + 1) << "and its runner launched after the change";
  EXPECT_NE(std::find(sb.log.begin(), sb.log.end(), id + ":network=limited/started"), sb.log.end())
      << "applied to the running sandbox";

  // A stopped sandbox gets it before it starts again.
  choice = {"isolated", {}};
  sb.EndRunners(id);
  ASSERT_TRUE(sb.Stop(id, false).ok());
  o->HandleItem(Item("w4", "s1"));
  ASSERT_EQ(sb.network_sets.size(), 2u);
  EXPECT_EQ(sb.network_sets[1].network, "isolated");
  EXPECT_TRUE(sb.network_sets[1].allow_hosts.empty());
  auto at = std::find(sb.log.begin(), sb.log.end(), id + ":network=isolated/stopped");
  ASSERT_NE(at, sb.log.end());
  EXPECT_NE(std::find(at, sb.log.end(), id + ":started"), sb.log.end());

  // Not decided by the environment: left alone.
  choice = {};
  sb.EndRunners(id);
  o->HandleItem(Item("w5", "s1"));
  EXPECT_EQ(sb.network_sets.size(), 2u);
  // A policy that cannot be enforced stops the item; the sandbox keeps its own.
  choice = {"bad", {}};
  sb.EndRunners(id);
  o->HandleItem(Item("w6", "s1"));
  EXPECT_EQ(sb.network_sets.size(), 2u);
  EXPECT_NE(std::find(source.stopped.begin(), source.stopped.end(), "w6:force"), source.stopped.end());
  EXPECT_EQ(sb.Get(id)->network, "isolated");
}

TEST_F(OrchestratorTest, OwnLimitedNetworkWhenTheEnvironmentDoesNotDecide) {
  // warren orchestrator --network limited --allow-host ... (standalone: no environments read).
  opts.network = "limited";
  opts.allow_hosts = {"api.example.com"};
  auto o = Make();
  source.sessions["s1"] = Session("s1", "running");
  o->HandleItem(Item("w1", "s1"));
  ASSERT_EQ(sb.creates.size(), 1u);
  EXPECT_EQ(sb.creates[0].network, "limited");
  EXPECT_EQ(sb.creates[0].allow_hosts, opts.allow_hosts);
}

TEST_F(OrchestratorTest, TransientFailuresAreRetried) {
  source.sessions["s1"] = Session("s1", "running");
  source.ack_failures = 2;
  auto o = Make();
  o->HandleItem(Item("w1", "s1"));
  EXPECT_EQ(source.acked, std::vector<std::string>{"w1"});
  EXPECT_EQ(sb.execs.size(), 1u);
  // More failures than attempts: the item is left to its lease, not stopped.
  source.ack_failures = 10;
  source.sessions["s2"] = Session("s2", "running");
  o->HandleItem(Item("w2", "s2"));
  EXPECT_TRUE(source.stopped.empty());
}

TEST_F(OrchestratorTest, JanitorStopsQuietIdleSandboxesOnly) {
  source.sessions["s1"] = Session("s1", "running");
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  o->HandleItem(Item("w1", "s1"));
  std::string id = OnlySandbox();
  o->JanitorPass();
  EXPECT_EQ(sb.recs[id].state, SandboxState::kStarted);  // runner alive
  // A process the agent started outlives the runner.
  {
    std::lock_guard<std::mutex> l(sb.mu);
    sb.procs[id].push_back(FakeSandboxes::Spawn({"/bin/sleep", "1000"}, 50));
  }
  sb.EndRunners(id);
  for (int i = 0; i < 3000 && !o->Runners().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(o->Runners().empty());  // the supervisor saw the runner exit
  source.sessions["s1"] = Session("s1", "idle");
  o->JanitorPass();
  clock.Advance(5'000'000);
  o->JanitorPass();
  EXPECT_EQ(sb.recs[id].state, SandboxState::kStarted);  // never stopped under a running process
  // The process ends: quiet from now on; stopped once the idle window passed.
  {
    std::lock_guard<std::mutex> l(sb.mu);
    for (auto& p : sb.procs[id]) FakeSandboxes::Kill(p.host_pid);
    sb.procs[id].clear();
  }
  o->JanitorPass();
  EXPECT_EQ(sb.recs[id].state, SandboxState::kStarted);
  clock.Advance(500'000);
  o->JanitorPass();
  EXPECT_EQ(sb.recs[id].state, SandboxState::kStarted);
  clock.Advance(600'000);
  o->JanitorPass();
  EXPECT_EQ(sb.recs[id].state, SandboxState::kStopped);
  // New work starts it again.
  source.sessions["s1"] = Session("s1", "running");
  o->HandleItem(Item("w2", "s1"));
  EXPECT_EQ(sb.recs[id].state, SandboxState::kStarted);
  EXPECT_EQ(sb.execs.size(), 2u);
  o->Stop();
}

// At 10,000 idle sessions nearly every sandbox is stopped: a janitor pass
// visits the started ones only, and one pass per session_check_interval
// visits them all (the session checks of the stopped ones).
TEST_F(OrchestratorTest, JanitorVisitsStoppedSandboxesOncePerSessionCheck) {
  opts.session_check_interval = std::chrono::milliseconds(60'000);
  std::map<std::string, std::string> old;  // session -> sandbox
  for (int i = 0; i < 20; ++i) {
    const std::string sid = "old" + std::to_string(i);
    sandbox::CreateOptions c;
    c.start = false;
    c.labels = {{kLabelSession, sid}, {kLabelEnvironment, "env_1"}, {kLabelMode, "session"},
                {kLabelOrchestrator, "embedded"}};
    old[sid] = sb.Create(c).value().id;
    source.sessions[sid] = Session(sid, "idle");
  }
  source.sessions["s1"] = Session("s1", "running");
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  const int lists_at_start = sb.lists;  // Start adopts: one listing
  o->HandleItem(Item("w1", "s1"));
  const std::string id = "sbx_21";  // after the 20 old ones
  ASSERT_EQ(sb.recs[id].state, SandboxState::kStarted);
  sb.EndRunners(id);
  for (int i = 0; i < 3000 && !o->Runners().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(o->Runners().empty());
  source.sessions["s1"] = Session("s1", "idle");
  o->JanitorPass();  // the first pass visits all
  EXPECT_EQ(sb.lists, lists_at_start + 1);
  source.sessions["old3"]["archived_at"] = "2026-01-01T00:00:00Z";
  clock.Advance(1'100'000);
  o->JanitorPass();  // started ones only: s1's sandbox is stopped, old3's not looked at
  EXPECT_EQ(sb.lists, lists_at_start + 1);
  EXPECT_EQ(sb.recs[id].state, SandboxState::kStopped);
  EXPECT_EQ(sb.recs[old["old3"]].state, SandboxState::kStopped);
  clock.Advance(60'000'000);
  o->JanitorPass();  // a full pass: the ended session's sandbox is archived
  EXPECT_EQ(sb.lists, lists_at_start + 2);
  EXPECT_EQ(sb.recs[old["old3"]].state, SandboxState::kArchived);
  EXPECT_EQ(sb.recs[old["old4"]].state, SandboxState::kStopped);
  o->Stop();
}

// A janitor pass looks at what runs in its started sandboxes through one
// snapshot (one /proc walk for the runtime), not one scan per sandbox: at
// thousands of started sandboxes a per-sandbox scan costs sandboxes x host
// processes and the janitor falls behind (docs/BENCHMARKS.md). Only the
// sandbox about to be stopped is scanned again, right before its stop.
TEST_F(OrchestratorTest, JanitorPassScansProcessesOnceNotPerSandbox) {
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    const std::string sid = "busy" + std::to_string(i);
    sandbox::CreateOptions c;
    c.labels = {{kLabelSession, sid}, {kLabelEnvironment, "env_1"}, {kLabelMode, "session"},
                {kLabelOrchestrator, "embedded"}};
    ids.push_back(sb.Create(c).value().id);
    source.sessions[sid] = Session(sid, "idle");
    // Something the agent started still runs in each: none may be stopped.
    std::lock_guard<std::mutex> l(sb.mu);
    sb.procs[ids.back()].push_back(FakeSandboxes::Spawn({"/bin/sleep", "60"}, 7));
  }
  auto o = Make();
  const int scans = sb.scans, many = sb.many_scans;
  o->JanitorPass();
  clock.Advance(10'000'000);
  o->JanitorPass();
  EXPECT_EQ(sb.many_scans, many + 2);
  EXPECT_EQ(sb.scans, scans);  // no per-sandbox scan: none was due to stop
  for (const auto& id : ids) EXPECT_EQ(sb.recs[id].state, SandboxState::kStarted) << id;
  // The processes end: each sandbox is quiet, and is stopped after a fresh
  // scan of its own.
  for (const auto& id : ids) {
    std::lock_guard<std::mutex> l(sb.mu);
    for (auto& p : sb.procs[id]) FakeSandboxes::Kill(p.host_pid);
    sb.procs[id].clear();
  }
  o->JanitorPass();
  clock.Advance(10'000'000);
  o->JanitorPass();
  for (const auto& id : ids) EXPECT_EQ(sb.recs[id].state, SandboxState::kStopped) << id;
  EXPECT_EQ(sb.scans, scans + static_cast<int>(ids.size()));
  o->Stop();
}

TEST_F(OrchestratorTest, JanitorKeepsQuietSandboxOfBusySession) {
  source.sessions["s1"] = Session("s1", "running");
  auto o = Make();
  o->HandleItem(Item("w1", "s1"));
  std::string id = OnlySandbox();
  sb.EndRunners(id);
  // Not supervised (Start not called): forget the runner the way the
  // supervisor would.
  o->JanitorPass();
  clock.Advance(10'000'000);
  o->JanitorPass();
  EXPECT_EQ(sb.recs[id].state, SandboxState::kStarted);  // session running: the model may call a tool
}

TEST_F(OrchestratorTest, JanitorArchivesEndedSessionsThenDeletes) {
  source.sessions["s1"] = Session("s1", "running");
  source.sessions["s2"] = Session("s2", "running");
  auto o = Make();
  o->HandleItem(Item("w1", "s1"));
  o->HandleItem(Item("w2", "s2"));
  ASSERT_EQ(sb.recs.size(), 2u);
  std::string a = sb.recs.begin()->first, b = std::next(sb.recs.begin())->first;
  source.sessions["s1"]["archived_at"] = "2026-01-01T00:00:00Z";
  source.sessions.erase("s2");  // deleted: the sandbox is an orphan
  sb.stopped_at = clock.NowMicros();
  o->JanitorPass();
  EXPECT_EQ(sb.recs[a].state, SandboxState::kArchived);
  EXPECT_EQ(sb.recs[b].state, SandboxState::kArchived);
  clock.Advance(4'000'000);
  o->JanitorPass();
  EXPECT_EQ(sb.recs.size(), 2u);
  clock.Advance(2'000'000);
  o->JanitorPass();
  EXPECT_TRUE(sb.recs.empty());
  EXPECT_EQ(o->stats().sandboxes_deleted, 2);
}

TEST_F(OrchestratorTest, OtherSandboxesAreNeverTouched) {
  sandbox::CreateOptions p;
  p.labels = {{kLabelSession, "s9"}, {kLabelOrchestrator, "someone-else"}};
  std::string id = sb.Create(p).value().id;
  auto o = Make();
  clock.Advance(100'000'000);
  o->JanitorPass();
  o->JanitorPass();
  EXPECT_EQ(sb.recs[id].state, SandboxState::kStarted);
}

TEST_F(OrchestratorTest, RestartAdoptsRunningRunners) {
  source.sessions["s1"] = Session("s1", "running");
  {
    auto o = Make();
    o->HandleItem(Item("w1", "s1"));
  }  // the orchestrator goes away; the runner keeps running
  auto o2 = Make();
  ASSERT_TRUE(o2->Start().ok());
  EXPECT_EQ(o2->Runners(), std::vector<std::string>{"w1"});
  EXPECT_EQ(o2->stats().runners_adopted, 1);
  // A redelivery of the adopted item launches nothing new.
  o2->HandleItem(Item("w1", "s1"));
  EXPECT_EQ(sb.execs.size(), 1u);
  o2->Stop();
}

TEST_F(OrchestratorTest, HeldItemWithoutRunnerIsResumedAtStart) {
  // The service died between the ack and the launch: at the next start the
  // item (still held, no runner) is relaunched with --resume-lease instead of
  // waiting for its lease to lapse; an item whose runner lives is adopted.
  source.sessions["s1"] = Session("s1", "running");
  source.sessions["s2"] = Session("s2", "running");
  {
    auto o = Make();
    o->HandleItem(Item("w2", "s2"));
  }
  source.held = {Item("w1", "s1"), Item("w2", "s2")};
  source.held[0].sole_worker = true;  // a cloud environment's (LocalWorkSource)
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  clock.Advance(1'000'000);  // past the settle delay
  // The relaunch counts itself after its runner is registered: wait for both.
  for (int i = 0; i < 3000 && (o->Runners().size() < 2 || o->stats().runners_relaunched < 1); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(o->Runners(), (std::vector<std::string>{"w1", "w2"}));
  ASSERT_EQ(sb.execs.size(), 2u) << "one launch for w2 before, one resume for w1";
  const auto& argv = sb.execs[1].argv;
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--resume-lease"), argv.end());
  EXPECT_NE(std::find(argv.begin(), argv.end(), "w1"), argv.end());
  // The source vouches that nobody else can hold w1's lease; w2's launch
  // (an ordinary item) carries no such flag.
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--sole-worker"), argv.end());
  EXPECT_EQ(std::find(sb.execs[0].argv.begin(), sb.execs[0].argv.end(), "--sole-worker"), sb.execs[0].argv.end());
  EXPECT_EQ(source.acked, std::vector<std::string>{"w2"}) << "a resumed item is not acked again";
  EXPECT_EQ(o->stats().runners_relaunched, 1);
  o->Stop();
}

TEST_F(OrchestratorTest, EndedRunnerReleasesItsItem) {
  // A runner that ends by itself (its idle window: it stopped its item) or
  // lost its lease: the source forgets the delivery (the standalone source's
  // held items); a crash does not release it (it is relaunched).
  source.sessions["s1"] = Session("s1", "running");
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  o->HandleItem(Item("w1", "s1"));
  std::string id = OnlySandbox();
  {
    std::lock_guard<std::mutex> l(sb.mu);
    sb.files[std::string(kRunnerStateDir) + "/w1.exit"] = "0\n";
  }
  sb.EndRunners(id);
  for (int i = 0; i < 3000 && !o->Runners().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(o->Runners().empty());
  // The release follows the runner's removal on the supervisor's thread.
  for (int i = 0; i < 3000; ++i) {
    {
      std::lock_guard<std::mutex> l(source.mu);
      if (!source.released.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard<std::mutex> l(source.mu);
    EXPECT_EQ(source.released, std::vector<std::string>{"w1"});
  }
  // A crash (exit 137): relaunched, not released.
  source.sessions["s1"] = Session("s1", "running");
  o->HandleItem(Item("w2", "s1"));
  {
    std::lock_guard<std::mutex> l(sb.mu);
    sb.files[std::string(kRunnerStateDir) + "/w2.exit"] = "137\n";
  }
  sb.EndRunners(id);
  for (int i = 0; i < 3000 && o->stats().runners_crashed == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(o->stats().runners_crashed, 1);
  {
    std::lock_guard<std::mutex> l(source.mu);
    EXPECT_EQ(source.released, std::vector<std::string>{"w1"});
  }
  o->Stop();
}

// The work secrets the runners were launched with, in launch order.
std::vector<std::string> LaunchedSecrets(FakeSandboxes& sb) {
  std::lock_guard<std::mutex> l(sb.mu);
  std::vector<std::string> out;
  for (const auto& e : sb.execs)
    for (const auto& v : e.env)
      if (v.rfind("ANTHROPIC_WORK_SECRET=", 0) == 0) out.push_back(v.substr(22));
  return out;
}

bool Resumes(const sandbox::ExecRequest& e) {
  return std::find(e.argv.begin(), e.argv.end(), "--resume-lease") != e.argv.end();
}

TEST_F(OrchestratorTest, PreparationLongerThanTheLeaseLaunchesTheNewestDeliveryOnly) {
  // The environment's packages build (blocked here until the test says)
  // outlasts the lease: the item is delivered again twice while the first
  // delivery builds, and the redeliveries wait for the session. Only the
  // newest delivery's token is valid: its runner is the one launched, never
  // a runner with an earlier delivery's (revoked) token that would exit at
  // its first heartbeat and leave the call to the next redelivery.
  std::mutex bm;
  std::condition_variable bcv;
  bool entered = false, built = false;
  opts.environment_snapshot = [&](const std::string&) -> Result<std::string> {
    std::unique_lock<std::mutex> l(bm);
    entered = true;
    bcv.notify_all();
    bcv.wait(l, [&] { return built; });
    return std::string("pkgs-0123");
  };
  opts.max_concurrent_items = 4;
  source.sessions["s1"] = Session("s1", "running");
  WorkItem a = Item("w1", "s1"), b = a, c = a;
  a.secret = "sA";
  b.secret = "sB";
  c.secret = "sC";
  {
    std::lock_guard<std::mutex> l(source.mu);
    source.queue = {a};
  }
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> l(bm);
    return entered;
  }));
  // Each redelivery is acked and waits for the session (its lock, held by
  // the build) before the next one comes.
  for (const WorkItem& w : {b, c}) {
    size_t acked;
    {
      std::lock_guard<std::mutex> l(source.mu);
      acked = source.acked.size();
      source.queue.push_back(w);
    }
    ASSERT_TRUE(WaitFor([&] {
      std::lock_guard<std::mutex> l(source.mu);
      return source.acked.size() == acked + 1 && o->session_lock_users("s1") == static_cast<int>(acked) + 1;
    }));
  }
  {
    std::lock_guard<std::mutex> l(bm);
    built = true;
  }
  bcv.notify_all();
  // Every delivery is done with the session (none holds or waits for it).
  ASSERT_TRUE(WaitFor([&] { return o->session_lock_users("s1") == 0 && !o->Runners().empty(); }));
  o->Stop();
  EXPECT_EQ(LaunchedSecrets(sb), std::vector<std::string>{"sC"});
  EXPECT_EQ(sb.creates.size(), 1u);
  {
    std::lock_guard<std::mutex> l(source.mu);
    EXPECT_TRUE(source.released.empty()) << "no delivery is forgotten before its runner ends";
    EXPECT_TRUE(source.stopped.empty());
  }
}

TEST_F(OrchestratorTest, RunnerOfAnEarlierDeliveryHandsTheItemToTheNewest) {
  // A runner launched with a delivery whose lease then lapsed: later
  // deliveries of its item find it tracked. When it exits with its lease
  // lost (3), the newest of them is launched at once with its own lease (an
  // ordinary first heartbeat); an older one that reaches the session after
  // the newest never replaces it. Then a crash of that runner with a newer
  // delivery waiting hands over to it too (not a --resume-lease relaunch of
  // the superseded delivery).
  source.sessions["s1"] = Session("s1", "running");
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  WorkItem a = Item("w1", "s1"), b = a, c = a, d = a;
  a.secret = "sA";
  o->HandleItem(a);
  ASSERT_EQ(LaunchedSecrets(sb), std::vector<std::string>{"sA"});
  const std::string sbx = OnlySandbox();
  // Stamped by claim order (the poll loop stamps them; set here so that an
  // older delivery reaches the session after a newer one).
  c.secret = "sC";
  c.claim_seq = 30;
  b.secret = "sB";
  b.claim_seq = 20;
  o->HandleItem(c);
  o->HandleItem(b);
  EXPECT_EQ(LaunchedSecrets(sb).size(), 1u) << "the runner of the earlier delivery still runs";
  {
    std::lock_guard<std::mutex> l(sb.mu);
    sb.files[std::string(kRunnerStateDir) + "/w1.exit"] = "3\n";
  }
  sb.EndRunners(sbx);
  ASSERT_TRUE(WaitFor([&] { return LaunchedSecrets(sb).size() == 2 && o->Runners().size() == 1; }));
  {
    std::lock_guard<std::mutex> l(sb.mu);
    EXPECT_FALSE(Resumes(sb.execs[1])) << "a fresh lease: an ordinary first heartbeat";
  }
  // The ended runner's delivery is forgotten, the newest one's is kept.
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> l(source.mu);
    return !source.released_secrets.empty();
  }));
  {
    std::lock_guard<std::mutex> l(source.mu);
    EXPECT_EQ(source.released_secrets, std::vector<std::string>{"sA"});
    EXPECT_EQ(source.acked.size(), 3u) << "the handed-over delivery is not acked again";
  }
  // An earlier delivery coming back (a retry) once the later one runs is
  // neither acked (the standalone source would record it over the later
  // delivery's held item) nor launched.
  o->HandleItem(b);
  EXPECT_EQ(LaunchedSecrets(sb).size(), 2u);
  {
    std::lock_guard<std::mutex> l(source.mu);
    EXPECT_EQ(source.acked.size(), 3u);
  }
  // A crash of that runner with a newer delivery waiting.
  d.secret = "sD";
  d.claim_seq = 40;
  o->HandleItem(d);
  EXPECT_EQ(LaunchedSecrets(sb).size(), 2u);
  {
    std::lock_guard<std::mutex> l(sb.mu);
    sb.files[std::string(kRunnerStateDir) + "/w1.exit"] = "137\n";
  }
  sb.EndRunners(sbx);
  ASSERT_TRUE(WaitFor([&] { return LaunchedSecrets(sb).size() == 3 && o->Runners().size() == 1; }));
  o->Stop();
  EXPECT_EQ(LaunchedSecrets(sb), (std::vector<std::string>{"sA", "sC", "sD"}))
      << "never a launch with an earlier delivery after a later one";
  std::lock_guard<std::mutex> l(sb.mu);
  EXPECT_FALSE(Resumes(sb.execs[2]));
  EXPECT_EQ(o->stats().runners_relaunched, 0);
}

TEST_F(OrchestratorTest, PollLoopServesConcurrentSessions) {
  for (int i = 0; i < 6; ++i) {
    std::string s = "s" + std::to_string(i);
    source.sessions[s] = Session(s, "running");
    source.queue.push_back(Item("w" + std::to_string(i), s));
  }
  opts.max_concurrent_items = 3;
  opts.poll_block_ms = 10;
  auto o = Make();
  ASSERT_TRUE(o->Start().ok());
  for (int i = 0; i < 3000 && o->Runners().size() < 6; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(o->Runners().size(), 6u);
  EXPECT_EQ(sb.recs.size(), 6u);
  o->Stop();
  EXPECT_EQ(o->session_locks_in_use(), 0u);  // six sessions served, no lock left
}

// The janitor's stops run on a pool of janitor_concurrency threads: with
// every stop slow, exactly that many are in flight and the rest wait their
// turn; a pass meanwhile hands nothing more for those sandboxes, so no
// sandbox ever sees two stops.
TEST_F(OrchestratorTest, JanitorStopsRunOnABoundedPool) {
  opts.janitor_concurrency = 3;
  auto ids = QuietIdleSandboxes(8);
  auto o = Make();
  o->JanitorPass();  // quiet from now
  clock.Advance(2'000'000);
  {
    std::lock_guard<std::mutex> l(sb.mu);
    sb.block_all_stops = true;
  }
  o->JanitorPass(/*wait=*/false);  // eight stops due: handed over, not waited for
  ASSERT_TRUE(WaitFor([&] { return sb.InStop() == 3 && o->janitor_queued() == 5; }))
      << "in stop " << sb.InStop() << ", queued " << o->janitor_queued();
  EXPECT_EQ(o->janitor_running(), 3u);
  const int64_t handed = o->stats().janitor_actions;
  // Passes while they are in flight hand nothing more for those sandboxes.
  clock.Advance(2'000'000);
  o->JanitorPass(false);
  o->JanitorPass(false);
  EXPECT_EQ(o->stats().janitor_actions, handed);
  sb.ReleaseStops();
  ASSERT_TRUE(WaitFor([&] { return o->stats().sandboxes_stopped == 8; }));
  o->JanitorPass();  // waits for the pool to be idle
  std::lock_guard<std::mutex> l(sb.mu);
  EXPECT_EQ(sb.max_in_stop, 3);
  EXPECT_EQ(sb.overlapping_stops, 0);
  for (const auto& id : ids) {
    EXPECT_EQ(sb.stop_calls[id], 1) << id;
    EXPECT_EQ(sb.recs[id].state, SandboxState::kStopped) << id;
  }
}

// One slow stop holds one pool thread: the other sandboxes are stopped
// meanwhile, later passes go on (new sandboxes due are stopped) without
// touching the slow one again, and work for its session waits for the stop
// (the session lock) instead of racing it.
TEST_F(OrchestratorTest, JanitorSlowStopHoldsBackNoOtherSandbox) {
  opts.janitor_concurrency = 2;
  auto ids = QuietIdleSandboxes(5);
  const std::string slow = ids[0];
  {
    std::lock_guard<std::mutex> l(sb.mu);
    sb.block_stops.insert(slow);
  }
  auto o = Make();
  o->JanitorPass();
  clock.Advance(2'000'000);
  o->JanitorPass(false);
  ASSERT_TRUE(WaitFor([&] { return o->stats().sandboxes_stopped == 4; }));
  EXPECT_EQ(sb.InStop(), 1);
  EXPECT_EQ(sb.State(slow), SandboxState::kStarted);
  // A sandbox that becomes due later is stopped by later passes.
  auto late = QuietIdleSandboxes(1, "late");
  o->JanitorPass(false);
  clock.Advance(2'000'000);
  ASSERT_TRUE(WaitFor([&] { return o->janitor_running() == 1 && o->janitor_queued() == 0; }));
  o->JanitorPass(false);
  ASSERT_TRUE(WaitFor([&] { return o->stats().sandboxes_stopped == 5; }));
  EXPECT_EQ(sb.State(late[0]), SandboxState::kStopped);
  // New work for the slow sandbox's session waits for its stop.
  {
    std::lock_guard<std::mutex> l(source.mu);
    source.sessions["q0"] = Session("q0", "running");
  }
  std::thread item([&] { o->HandleItem(Item("w1", "q0")); });
  ASSERT_TRUE(WaitFor([&] { return o->session_lock_users("q0") == 2; }));  // the stop holds it, the item waits
  {
    std::lock_guard<std::mutex> l(sb.mu);
    EXPECT_TRUE(sb.execs.empty());
    EXPECT_EQ(sb.stop_calls[slow], 1);
    EXPECT_EQ(sb.overlapping_stops, 0);
  }
  sb.ReleaseStops();
  item.join();
  o->JanitorPass();
  EXPECT_EQ(sb.State(slow), SandboxState::kStarted);  // stopped, then started again for the item
  {
    std::lock_guard<std::mutex> l(sb.mu);
    const auto stopped_at = std::find(sb.log.begin(), sb.log.end(), slow + ":stopped") - sb.log.begin();
    const auto started_at = std::find(sb.log.begin(), sb.log.end(), slow + ":started") - sb.log.begin();
    EXPECT_LT(stopped_at, static_cast<long>(sb.log.size()));
    EXPECT_LT(stopped_at, started_at);
    EXPECT_EQ(sb.execs.size(), 1u);
  }
  EXPECT_EQ(o->session_locks_in_use(), 0u);
}

// Stop() with stops in flight: the queued actions are dropped (the next
// start finds them due again), the running ones are waited for, and nothing
// runs after it returned.
TEST_F(OrchestratorTest, StopWaitsForInFlightStopsAndDropsQueuedOnes) {
  opts.janitor_concurrency = 2;
  auto ids = QuietIdleSandboxes(5);
  auto o = Make();
  o->JanitorPass();
  clock.Advance(2'000'000);
  {
    std::lock_guard<std::mutex> l(sb.mu);
    sb.block_all_stops = true;
  }
  o->JanitorPass(false);
  ASSERT_TRUE(WaitFor([&] { return sb.InStop() == 2 && o->janitor_queued() == 3; }));
  std::atomic<bool> returned{false};
  std::thread stopper([&] {
    o->Stop();
    returned = true;
  });
  ASSERT_TRUE(WaitFor([&] { return o->janitor_queued() == 0; }));  // the three waiting ones dropped
  EXPECT_FALSE(returned.load());  // two stops still run: Stop waits for them
  sb.ReleaseStops();
  stopper.join();
  EXPECT_EQ(o->janitor_running(), 0u);
  EXPECT_EQ(o->stats().sandboxes_stopped, 2);
  EXPECT_EQ(o->stats().janitor_actions_dropped, 3);
  int stopped = 0, started = 0, calls = 0;
  {
    std::lock_guard<std::mutex> l(sb.mu);
    for (const auto& id : ids) {
      stopped += sb.recs[id].state == SandboxState::kStopped;
      started += sb.recs[id].state == SandboxState::kStarted;
      calls += sb.stop_calls[id];
    }
    EXPECT_EQ(sb.in_stop, 0);
  }
  EXPECT_EQ(stopped, 2);
  EXPECT_EQ(started, 3);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(o->session_locks_in_use(), 0u);
  // A start after the stop runs the janitor again: the dropped ones are
  // stopped by its passes.
  ASSERT_TRUE(o->Start().ok());
  o->JanitorPass();
  EXPECT_EQ(o->stats().sandboxes_stopped, 5);
  o->Stop();
}

// The session lock table keeps an entry only while a session is in work.
TEST_F(OrchestratorTest, SessionLocksAreFreedOnceUnused) {
  for (int i = 0; i < 5; ++i) {
    const std::string sid = "s" + std::to_string(i);
    source.sessions[sid] = Session(sid, "running");
  }
  auto o = Make();
  for (int i = 0; i < 5; ++i) o->HandleItem(Item("w" + std::to_string(i), "s" + std::to_string(i)));
  EXPECT_EQ(sb.recs.size(), 5u);
  EXPECT_EQ(o->session_locks_in_use(), 0u);
  for (auto& [id, sess] : source.sessions) sess["archived_at"] = "2026-01-01T00:00:00Z";
  o->JanitorPass();  // archives each one under its session's lock
  EXPECT_EQ(o->stats().sandboxes_archived, 5);
  EXPECT_EQ(o->session_locks_in_use(), 0u);
}

}  // namespace
}  // namespace warren::orchestrator

// ------------------------------------------------------------ HttpWorkSource

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "common/ids.h"
#include "common/testing/fake_http_client.h"
#include "orchestrator/held_items.h"
#include "orchestrator/http_work_source.h"

namespace warren::orchestrator {
namespace {

TEST(HttpWorkSource, SpeaksTheDocumentedProtocol) {
  auto fake = std::make_shared<warren::testing::FakeHttpClient>();
  HttpWorkSourceOptions o;
  o.base_url = "http://svc:8400/";
  o.environment_id = "env_1";
  o.environment_key = "wrn-env-key";
  o.client = fake;
  HttpWorkSource src(o);
  fake->Push({Status::Ok(), 200, {}, {"null"}});
  auto none = src.Poll(999, 2000);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  fake->Push({Status::Ok(), 200, {},
              {R"({"type":"work","id":"work_1","environment_id":"env_1","data":{"type":"session","id":"sesn_1"},)"
               R"("secret":"c2VjcmV0","created_at":"2026-01-01T00:00:00Z","state":"queued"})"}});
  auto got = src.Poll(999, 2000);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->id, "work_1");
  EXPECT_EQ((*got)->session_id, "sesn_1");
  EXPECT_EQ((*got)->secret, "c2VjcmV0");
  EXPECT_TRUE((*got)->raw["secret"].is_null());  // never kept where it could be logged
  fake->Push({Status::Ok(), 200, {}, {R"({"type":"work","id":"work_1","state":"starting"})"}});
  EXPECT_TRUE(src.Ack(**got).ok());
  fake->Push({Status::Ok(), 409, {}, {R"({"type":"error","error":{"type":"invalid_request_error","message":"stopped"}})"}});
  EXPECT_TRUE(src.Stop(**got, true).ok());  // already stopped counts as done
  fake->Push({Status::Ok(), 404, {}, {R"({"type":"error","error":{"type":"not_found_error","message":"no session"}})"}});
  auto s = src.GetSession("env_1", "sesn_gone");
  EXPECT_EQ(s.status().code(), Code::kNotFound);
  auto reqs = fake->requests();
  ASSERT_EQ(reqs.size(), 5u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[0].url, "http://svc:8400/v1/environments/env_1/work/poll?reclaim_older_than_ms=2000&block_ms=999");
  EXPECT_EQ(reqs[2].url, "http://svc:8400/v1/environments/env_1/work/work_1/ack");
  EXPECT_EQ(reqs[3].url, "http://svc:8400/v1/environments/env_1/work/work_1/stop");
  EXPECT_EQ(reqs[3].body, R"({"force":true})");
  EXPECT_EQ(reqs[4].url, "http://svc:8400/v1/sessions/sesn_gone");
  EXPECT_EQ(FindHeader(reqs[0].headers, "authorization").value_or(""), "Bearer wrn-env-key");
}

// A private temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/warren-held-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string SecretFor(const std::string& token) {
  return Base64UrlEncode(DumpJson(Json{{"sessions_token", token}}));
}

WorkItem HeldItem(const std::string& id, const std::string& token) {
  WorkItem w = Item(id, "sesn_" + id);
  w.secret = SecretFor(token);
  return w;
}

TEST(HeldItemStore, PutListRemoveAndHostileNames) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/held";
  auto st = HeldItemStore::Open(dir);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  HeldItemStore& h = **st;
  struct stat sd {};
  ASSERT_EQ(::stat(dir.c_str(), &sd), 0);
  EXPECT_EQ(sd.st_mode & 0777, 0700u);
  ASSERT_TRUE(h.Put(HeldItem("work_b", "tok-b")).ok());
  ASSERT_TRUE(h.Put(HeldItem("work_a", "tok-a1"), /*acked=*/false).ok());
  ASSERT_TRUE(h.Flush().ok());
  struct stat sf {};
  ASSERT_EQ(::stat((dir + "/work_a.json").c_str(), &sf), 0);
  EXPECT_EQ(sf.st_mode & 0777, 0600u) << "the file holds the work secret";
  auto l = h.List();
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->size(), 2u);
  EXPECT_EQ((*l)[0].item.id, "work_a");
  EXPECT_EQ((*l)[0].item.session_id, "sesn_work_a");
  EXPECT_EQ((*l)[0].item.environment_id, "env_1");
  EXPECT_EQ((*l)[0].item.type, "session");
  EXPECT_EQ((*l)[0].item.created_at, "2026-01-01T00:00:00Z");
  EXPECT_EQ(SessionsTokenOf((*l)[0].item.secret), "tok-a1");
  EXPECT_TRUE((*l)[0].item.raw["secret"].is_null());
  EXPECT_FALSE((*l)[0].acked);
  EXPECT_TRUE((*l)[1].acked);
  // A later delivery of the same work id replaces the earlier one; a late
  // Remove for the earlier delivery leaves the new one alone.
  ASSERT_TRUE(h.Put(HeldItem("work_a", "tok-a2")).ok());
  ASSERT_TRUE(h.Remove("work_a", SecretFor("tok-a1")).ok());
  l = h.List();
  ASSERT_EQ(l->size(), 2u);
  EXPECT_EQ(SessionsTokenOf((*l)[0].item.secret), "tok-a2");
  ASSERT_TRUE(h.Remove("work_a", SecretFor("tok-a2")).ok());
  ASSERT_TRUE(h.Remove("work_b", "").ok());
  ASSERT_TRUE(h.Remove("work_gone", "").ok());
  EXPECT_TRUE(h.List()->empty());
  // Ids from a remote service never name a path outside the directory.
  for (const std::string& bad : std::vector<std::string>{"", "../escape", "a/b", ".hidden", "x.json", std::string(129, 'a')})
    EXPECT_EQ(h.Put(HeldItem(bad, "t")).code(), Code::kInvalidArgument) << bad;
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/escape.json"));
  // A crash mid-Put leaves a temporary; a foreign or corrupt file: dropped.
  std::ofstream(dir + "/.work_c.tmp") << "{\"id\":";
  std::ofstream(dir + "/work_d.json") << "not json";
  std::ofstream(dir + "/work_e.json") << R"({"id":"work_other","secret":"x"})";
  ASSERT_TRUE(h.Put(HeldItem("work_f", "tok-f")).ok());
  l = h.List();
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->size(), 1u);
  EXPECT_EQ((*l)[0].item.id, "work_f");
  EXPECT_FALSE(std::filesystem::exists(dir + "/.work_c.tmp"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/work_d.json"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/work_e.json"));
  // A new store on the same directory (the next process) sees it.
  st->reset();
  auto again = HeldItemStore::Open(dir);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->List()->size(), 1u);
  // The directory is not followed through a symlink.
  std::filesystem::create_symlink(dir, tmp.path() + "/link");
  EXPECT_FALSE(HeldItemStore::Open(tmp.path() + "/link").ok());
}

TEST(HttpWorkSource, RemembersHeldItemsAndChecksThemAtRestart) {
  TempDir tmp;
  auto held = HeldItemStore::Open(tmp.path() + "/held");
  ASSERT_TRUE(held.ok());
  auto fake = std::make_shared<warren::testing::FakeHttpClient>();
  HttpWorkSourceOptions o;
  o.base_url = "http://svc:8400";
  o.environment_id = "env_1";
  o.environment_key = "wrn-env-key";
  o.client = fake;
  o.held = held->get();
  HttpWorkSource src(o);
  const auto ok_work = [](const std::string& state) {
    return warren::testing::FakeHttpReply{Status::Ok(), 200, {}, {R"({"type":"work","state":")" + state + R"("})"}};
  };
  const auto error = [](int status) {
    return warren::testing::FakeHttpReply{
        Status::Ok(), status, {}, {R"({"type":"error","error":{"type":"x","message":"no"}})"}};
  };
  // Acked items are remembered; a failed ack is not.
  for (const char* id : {"work_a", "work_b", "work_c", "work_d", "work_e", "work_f", "work_g", "work_h"}) {
    fake->Push(ok_work("starting"));
    ASSERT_TRUE(src.Ack(HeldItem(id, std::string("tok-") + id)).ok());
  }
  fake->Push(error(409));
  EXPECT_FALSE(src.Ack(HeldItem("work_x", "tok-x")).ok());
  EXPECT_EQ((*held)->List()->size(), 8u);
  // Stopping an item forgets it; so does releasing the delivery it holds.
  fake->Push(ok_work("stopped"));
  ASSERT_TRUE(src.Stop(HeldItem("work_g", "tok-work_g"), true).ok());
  src.Release(HeldItem("work_h", "tok-other-delivery"));  // not the stored delivery: kept
  EXPECT_EQ((*held)->List()->size(), 7u);
  src.Release(HeldItem("work_h", "tok-work_h"));
  EXPECT_EQ((*held)->List()->size(), 6u);
  WorkItem no_token = HeldItem("work_i", "x");
  no_token.secret = "bm90LWpzb24";  // "not-json"
  ASSERT_TRUE((*held)->Put(no_token).ok());
  // Recorded right before an ack whose answer never came (the process died):
  ASSERT_TRUE((*held)->Put(HeldItem("work_c2", "tok-work_c2"), /*acked=*/false).ok());
  ASSERT_TRUE((*held)->Put(HeldItem("work_c3", "tok-work_c3"), /*acked=*/false).ok());
  ASSERT_TRUE((*held)->Put(HeldItem("work_f2", "tok-work_f2"), /*acked=*/false).ok());
  const size_t before = fake->requests().size();

  // The restart: each item is checked with an ack carrying its own token.
  fake->Push(ok_work("active"));    // work_a: still ours
  fake->Push(error(401));           // work_b: token revoked (lease lapsed)
  fake->Push(ok_work("stopping"));  // work_c: a stop was asked ...
  fake->Push(ok_work("stopped"));   //   ... and is forced now
  // work_c2: unconfirmed, nobody beat the lease: resumed with a fresh lease.
  fake->Push({Status::Ok(), 200, {}, {R"({"type":"work","state":"starting","latest_heartbeat_at":null})"}});
  // work_c3: unconfirmed and beaten: another worker's runner holds it.
  fake->Push({Status::Ok(), 200, {}, {R"({"type":"work","state":"active","latest_heartbeat_at":"2026-01-01T00:00:01Z"})"}});
  fake->Push(error(409));           // work_d: stopped
  fake->Push({Status::Unavailable("connection refused"), 0, {}, {}});  // work_e: unreachable
  // work_f: not checked after a transport failure (returned as held);
  // work_f2 (unconfirmed) cannot be checked: dropped, left to the queue.
  auto got = src.HeldItems();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  std::vector<std::string> ids;
  for (const auto& w : *got) ids.push_back(w.id + (w.fresh_lease ? "+fresh" : ""));
  EXPECT_EQ(ids, (std::vector<std::string>{"work_a", "work_c2+fresh", "work_e", "work_f"}));
  EXPECT_EQ(SessionsTokenOf((*got)[0].secret), "tok-work_a");
  auto reqs = fake->requests();
  ASSERT_EQ(reqs.size() - before, 8u);
  EXPECT_EQ(reqs[before].method, "POST");
  EXPECT_EQ(reqs[before].url, "http://svc:8400/v1/environments/env_1/work/work_a/ack");
  EXPECT_EQ(FindHeader(reqs[before].headers, "authorization").value_or(""), "Bearer tok-work_a");
  EXPECT_EQ(reqs[before + 3].url, "http://svc:8400/v1/environments/env_1/work/work_c/stop");
  EXPECT_EQ(reqs[before + 3].body, R"({"force":true})");
  EXPECT_EQ(FindHeader(reqs[before + 3].headers, "authorization").value_or(""), "Bearer wrn-env-key");
  EXPECT_EQ(FindHeader(reqs[before + 4].headers, "authorization").value_or(""), "Bearer tok-work_c2");
  // What is left on disk: the items that may still be ours (work_c2 now
  // confirmed).
  ids.clear();
  auto left = (*held)->List();
  ASSERT_TRUE(left.ok());
  for (const auto& h : *left) ids.push_back(h.item.id + (h.acked ? "" : "?"));
  EXPECT_EQ(ids, (std::vector<std::string>{"work_a", "work_c2", "work_e", "work_f"}));
}

TEST(HttpWorkSource, RecordsBeforeTheAckAndConfirmsAfter) {
  TempDir tmp;
  auto held = HeldItemStore::Open(tmp.path() + "/held");
  ASSERT_TRUE(held.ok());
  // A client that looks at the record while the ack is on the wire.
  class Peek final : public HttpClient {
   public:
    explicit Peek(HeldItemStore* h) : h_(h) {}
    Result<HttpResponse> Send(const HttpRequest& req, const CancelToken*) override {
      auto l = h_->List();
      seen.push_back(l.ok() && l->size() == 1 && !(*l)[0].acked ? "unconfirmed" : "other");
      HttpResponse r;
      r.status = req.url.find("work_2") != std::string::npos ? 404 : 200;
      r.body = r.status == 200 ? R"({"type":"work","state":"starting"})" : R"({"type":"error","error":{"message":"no"}})";
      return r;
    }
    Result<HttpResponse> Stream(const HttpRequest& req, const StreamHandlers&, const CancelToken* c) override {
      return Send(req, c);
    }
    void StreamAsync(HttpRequest, StreamHandlers, const CancelToken*, StreamDone done) override {
      done(Status::Unimplemented("no"));
    }
    std::vector<std::string> seen;

   private:
    HeldItemStore* h_;
  };
  auto peek = std::make_shared<Peek>(held->get());
  HttpWorkSourceOptions o;
  o.base_url = "http://svc:8400";
  o.environment_id = "env_1";
  o.environment_key = "k";
  o.client = peek;
  o.held = held->get();
  HttpWorkSource src(o);
  ASSERT_TRUE(src.Ack(HeldItem("work_1", "tok-1")).ok());
  auto l = (*held)->List();
  ASSERT_EQ(l->size(), 1u);
  EXPECT_TRUE((*l)[0].acked);
  EXPECT_EQ(src.Ack(HeldItem("work_2", "tok-2")).code(), Code::kNotFound);
  EXPECT_EQ(peek->seen, (std::vector<std::string>{"unconfirmed", "other"}));
  EXPECT_EQ((*held)->List()->size(), 1u) << "a refused ack leaves no record";
}

TEST(HttpWorkSource, RetryableAndPermanentAnswers) {
  EXPECT_TRUE(IsPermanent(StatusForHttp(400, "")));
  EXPECT_TRUE(IsPermanent(StatusForHttp(403, "")));
  EXPECT_TRUE(IsPermanent(StatusForHttp(404, "")));
  EXPECT_FALSE(IsPermanent(StatusForHttp(408, "")));
  EXPECT_FALSE(IsPermanent(StatusForHttp(429, "")));
  EXPECT_FALSE(IsPermanent(StatusForHttp(500, "")));
  EXPECT_FALSE(IsPermanent(StatusForHttp(529, "")));
  EXPECT_TRUE(StatusForHttp(204, "").ok());
  EXPECT_NE(StatusForHttp(400, R"({"error":{"message":"bad block_ms"}})").ToString().find("bad block_ms"),
            std::string::npos);
}

}  // namespace
}  // namespace warren::orchestrator
