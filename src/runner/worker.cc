#include "runner/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <condition_variable>
#include <thread>

#include "common/ids.h"
#include "common/log.h"
#include "runner/journal_files.h"
#include "runner/skills.h"
#include "runner/text_util.h"

extern char** environ;

namespace warren::runner {
namespace {

constexpr int64_t kHeartbeatDefaultMs = 30000;
constexpr int64_t kTtlDefaultMs = 90000;

int64_t JitterMs(int64_t lo, int64_t hi) {
  uint32_t r;
  RandomBytes(&r, sizeof r);
  return lo + static_cast<int64_t>(r % static_cast<uint32_t>(std::max<int64_t>(1, hi - lo)));
}

// The lease of one item: why heartbeating ended, first reason wins.
class Lease final {
 public:
  void Finish(LeaseEnd why) {
    std::lock_guard<std::mutex> lock(mu_);
    if (end_ == LeaseEnd::kNone) end_ = why;
    cv_.notify_all();
  }
  bool done() const {
    std::lock_guard<std::mutex> lock(mu_);
    return end_ != LeaseEnd::kNone;
  }
  LeaseEnd end() const {
    std::lock_guard<std::mutex> lock(mu_);
    return end_;
  }
  bool lost() const {
    LeaseEnd e = end();
    return e == LeaseEnd::kLeaseLost || e == LeaseEnd::kAssumedLost;
  }
  // Waits up to `ms`; true if the lease ended meanwhile.
  bool WaitFor(int64_t ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return end_ != LeaseEnd::kNone; });
  }
  // A heartbeat succeeded: the lease is this runner's.
  void FirstBeatDone() {
    std::lock_guard<std::mutex> lock(mu_);
    first_beat_ = true;
    cv_.notify_all();
  }
  // Waits up to `ms` for the first successful heartbeat or the lease's end;
  // true once either happened.
  bool WaitFirstBeat(int64_t ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return first_beat_ || end_ != LeaseEnd::kNone; });
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  LeaseEnd end_ = LeaseEnd::kNone;
  bool first_beat_ = false;
};

}  // namespace

std::string SessionsTokenFromSecret(const std::string& secret) {
  if (secret.empty()) return "";
  std::string norm = secret;
  for (auto& c : norm) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  while (!norm.empty() && norm.back() == '=') norm.pop_back();
  std::string decoded;
  if (!Base64UrlDecode(norm, &decoded)) return "";
  auto parsed = ParseJson(decoded);
  if (!parsed.ok() || !parsed->is_object()) return "";
  const Json& j = *parsed;
  if (!j.contains("sessions_token") || !j["sessions_token"].is_string()) return "";
  return j["sessions_token"].get<std::string>();
}

int64_t BootMs() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string LeaseRecordPath(const std::string& journal_dir, const std::string& work_id) {
  if (journal_dir.empty() || work_id.empty() || work_id.size() > 200) return "";
  for (char c : work_id)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return "";
  return journal_dir + "/" + work_id + ".lease";
}

bool ReadLeaseRecord(const std::string& path, LeaseRecord* out) {
  std::string data;
  if (!ReadSmallFile(path, &data, 65536) || data.size() > 65536) return false;  // longer: not a record
  auto j = ParseJson(data);
  if (!j.ok() || !j->is_object()) return false;
  const Json& r = *j;
  auto str = [&](const char* k) { return r.contains(k) && r[k].is_string() ? r[k].get<std::string>() : std::string(); };
  auto num = [&](const char* k) { return r.contains(k) && r[k].is_number_integer() ? r[k].get<int64_t>() : int64_t{-1}; };
  LeaseRecord rec{str("delivery"), str("last_heartbeat"), num("sent_at_ms"), num("ttl_ms")};
  if (rec.delivery.empty() || rec.last_heartbeat.empty() || rec.sent_at_ms < 0 || rec.ttl_ms <= 0) return false;
  *out = std::move(rec);
  return true;
}

bool WriteLeaseRecord(const std::string& path, const LeaseRecord& record) {
  const std::string data = DumpJson(Json{{"delivery", record.delivery},
                                         {"last_heartbeat", record.last_heartbeat},
                                         {"sent_at_ms", record.sent_at_ms},
                                         {"ttl_ms", record.ttl_ms}});
  return WriteFileAtomic(path, data);
}

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string hex = RandomUuid();
  hex.erase(std::remove(hex.begin(), hex.end(), '-'), hex.end());
  std::string id = hex.substr(0, 12);
  return host[0] ? std::string(host) + "-" + id : id;
}

Worker::Worker(HttpClient http, WorkerOptions options) : http_(std::move(http)), opts_(std::move(options)) {
  if (opts_.worker_id.empty()) opts_.worker_id = DefaultWorkerId();
}

void Worker::Shutdown() {
  shutdown_.store(true);
  std::lock_guard<std::mutex> lock(mu_);
  if (active_runner_ != nullptr) active_runner_->Stop(/*post_cancelled_result=*/true);
  if (on_work_pid_ > 0) kill(on_work_pid_, SIGTERM);
}

Status Worker::HandleItem(const std::string& work_id, const std::string& session_id,
                          const std::string& secret, const std::string& data_type) {
  const std::string token = SessionsTokenFromSecret(secret);
  const std::string cred = token.empty() ? opts_.environment_key : token;
  if (cred.empty()) {
    return Status::InvalidArgument(
        "the work item carried no sessions token and there is no environment key to fall back to");
  }
  if (!secret.empty() && token.empty()) {
    log::Warn("work item carried a secret but no sessions token could be extracted; using the environment key",
              {{"work_id", work_id}});
  }
  ApiClient api(http_, cred, "environments-worker");
  const std::string env = opts_.environment_id;
  Lease lease;
  std::mutex runner_mu;
  SessionRunner* runner = nullptr;
  std::atomic<int64_t> ttl_ms{kTtlDefaultMs};

  auto stop_runner = [&](bool post) {
    std::lock_guard<std::mutex> lock(runner_mu);
    if (runner != nullptr) runner->Stop(post);
  };

  // The lease record (a sessions token names the delivery; the environment
  // key names none, so nothing is recorded or proven with it).
  const std::string record_path = token.empty() ? "" : LeaseRecordPath(opts_.call_journal_dir, work_id);
  const std::string delivery = token.empty() ? "" : Sha256Hex(token);

  std::thread heartbeat([&] {
    int64_t interval = kHeartbeatDefaultMs;
    int64_t ttl = kTtlDefaultMs;
    int64_t last_success = NowMs();
    std::string last = "NO_HEARTBEAT";
    // The previous beat got no answer: it may have been committed. A sole
    // worker's resumed lease starts that way: the dead runner's last beat is
    // its own, whatever the record says.
    bool answer_lost = opts_.resume_lease && opts_.sole_worker;
    // A resumed lease with a record of this delivery: until the first
    // answered beat (a compare-and-set on the record's token), a 412 may
    // still be the dead runner's unrecorded beat (WorkerOptions::resume_lease).
    LeaseRecord resumed;
    bool resuming = false;
    if (opts_.resume_lease) {
      if (!record_path.empty() && ReadLeaseRecord(record_path, &resumed) && resumed.delivery == delivery) {
        resuming = true;
        last = resumed.last_heartbeat;
        ttl = resumed.ttl_ms;
        interval = std::clamp<int64_t>(ttl / 2, 1000, kHeartbeatDefaultMs);
        log::Info("resuming the lease from this delivery's record",
                  {{"work_id", work_id}, {"record_age_ms", BootMs() - resumed.sent_at_ms}});
      } else {
        log::Info("no lease record of this delivery: nothing proves a held lease is ours; first heartbeat from NO_HEARTBEAT",
                  {{"work_id", work_id}});
      }
    }
    bool record_failed = false;  // warned once
    bool beat_ok = false;        // a beat succeeded: the lease is this runner's
    bool beat_now = false;     // adopted the server's token: renew at once, the lease still runs from the lost beat
    bool retry_soon = false;   // the last beat failed transiently
    auto beat = [&] {
      const std::string from = last;
      const int64_t sent_at = BootMs();
      ApiResult r = api.Heartbeat(env, work_id, last, std::chrono::milliseconds(interval),
                                  [&] { return lease.done(); });
      if (lease.done()) return;
      const bool prev_lost = answer_lost;
      answer_lost = r.status == 0;
      // (Until an answer that is not transient: a beat that got no answer,
      // a 5xx, 408 or 429 may still have been committed.)
      const bool first_resumed = resuming;
      if (!r.transient()) resuming = false;
      if (r.ok() && r.body.is_object()) {
        last_success = NowMs();
        if (r.body.contains("last_heartbeat") && r.body["last_heartbeat"].is_string()) {
          last = r.body["last_heartbeat"].get<std::string>();
        }
        if (r.body.contains("ttl_seconds") && r.body["ttl_seconds"].is_number() &&
            r.body["ttl_seconds"].get<double>() > 0) {
          ttl = static_cast<int64_t>(r.body["ttl_seconds"].get<double>() * 1000);
          interval = std::clamp<int64_t>(ttl / 2, 1000, kHeartbeatDefaultMs);
          ttl_ms.store(ttl);
          std::lock_guard<std::mutex> lock(runner_mu);
          if (runner != nullptr) runner->SetSendRetryWindow(ttl);
        }
        // Recorded before anything is served (the first answer gates the
        // session), so a runner that dies while it serves always leaves
        // its relaunch a record to prove the lease with.
        if (!record_path.empty() && last != from && last != "NO_HEARTBEAT") {
          if (!WriteLeaseRecord(record_path, LeaseRecord{delivery, last, sent_at, ttl}) && !record_failed) {
            record_failed = true;
            log::Warn("could not write the lease record; a relaunched runner will not take this lease over",
                      {{"work_id", work_id}, {"errno", errno}});
          }
        }
        // The session is served only from here on: a lease held by this
        // runner is proven by a successful beat, never by a failed one (a
        // beat with no answer or a 5xx says nothing about who holds it).
        if (!beat_ok) {
          beat_ok = true;
          log::Info("first heartbeat answered", {{"work_id", work_id}});
          lease.FirstBeatDone();
        }
        const std::string state = r.body.value("state", "");
        if (state == "stopping" || state == "stopped") {
          log::Info("heartbeat signals shutdown", {{"work_id", work_id}, {"state", state}});
          lease.Finish(LeaseEnd::kHeartbeatStop);
          stop_runner(true);
        } else if (r.body.contains("lease_extended") && r.body["lease_extended"].is_boolean() &&
                   !r.body["lease_extended"].get<bool>()) {
          log::Warn("lease not extended, shutting down", {{"work_id", work_id}});
          lease.Finish(LeaseEnd::kHeartbeatStop);
          stop_runner(true);
        }
        return;
      }
      if (r.status == 412) {
        Json cs;
        if (r.body.is_object() && r.body.contains("error") && r.body["error"].is_object() &&
            r.body["error"].contains("details") && r.body["error"]["details"].is_object()) {
          cs = r.body["error"]["details"].value("current_state", Json());
        }
        const std::string state = cs.is_object() ? cs.value("state", "") : "";
        const bool held = state == "active" || state == "starting";
        const std::string current = cs.is_object() && cs.contains("last_heartbeat") && cs["last_heartbeat"].is_string()
                                        ? cs["last_heartbeat"].get<std::string>()
                                        : "";
        // A resumed runner's compare-and-set on its record's token: the
        // lease held at another token is the dead runner's beat from that
        // token, answered after its last record, provided the lease cannot
        // have lapsed since (another chain could then hold it; Warren
        // revokes the token at a lapse, a server that does not is covered by
        // this bound).
        if (first_resumed) {
          const int64_t age = BootMs() - resumed.sent_at_ms;
          if (held && !current.empty() && current != from && age >= 0 && age < resumed.ttl_ms - resumed.ttl_ms / 10) {
            log::Warn("resumed lease: the dead runner beat after its last record; adopting the server's token",
                      {{"work_id", work_id}, {"record_age_ms", age}});
            last = current;
            beat_now = true;
            return;
          }
          if (!opts_.sole_worker) {
            log::Error("lease lost: the resumed lease is not provably this delivery's",
                       {{"work_id", work_id}, {"record_age_ms", age}, {"server_state", cs}});
            lease.Finish(LeaseEnd::kLeaseLost);
            stop_runner(false);
            return;
          }
        }
        // Our previous beat was committed but its answer was lost. With a
        // sessions token this is provable when that beat compared against a
        // token of our own: nobody else knows it (it was answered to us
        // only), and the token dies with the lease (a lapse answers 401,
        // not 412). Adopt the server's token and carry on. A lost answer to
        // a beat from NO_HEARTBEAT proves nothing: every delivery of the
        // item may send that one (two deliveries of one un-acked item both
        // hold valid tokens), except to a sole worker.
        if (prev_lost && !token.empty() && (from != "NO_HEARTBEAT" || opts_.sole_worker) && held && !current.empty()) {
          log::Warn("heartbeat answer was lost but the beat was recorded; adopting the server's token",
                    {{"work_id", work_id}});
          last = current;
          beat_now = true;
          return;
        }
        log::Error(from == "NO_HEARTBEAT" && (opts_.resume_lease || prev_lost) && !opts_.sole_worker
                       ? "lease lost: heartbeat precondition failed; the lease is held at a token this runner cannot prove its own"
                       : "lease lost: heartbeat precondition failed",
                   {{"work_id", work_id}, {"server_state", cs}});
        lease.Finish(LeaseEnd::kLeaseLost);
        stop_runner(false);
        return;
      }
      if (r.status == 401) {
        // The sessions token was revoked: the lease lapsed or the item was
        // stopped. The item is no longer ours; never stop it.
        log::Error("lease lost: credential revoked", {{"work_id", work_id}, {"error", r.Describe()}});
        lease.Finish(LeaseEnd::kLeaseLost);
        stop_runner(false);
        return;
      }
      if (r.fatal()) {
        log::Error("permanent heartbeat failure", {{"work_id", work_id}, {"error", r.Describe()}});
        lease.Finish(LeaseEnd::kRejected);
        stop_runner(true);
        return;
      }
      if (NowMs() - last_success > ttl) {
        log::Error("lease assumed lost: no successful heartbeat in ttl",
                   {{"work_id", work_id}, {"ttl_ms", ttl}, {"error", r.Describe()}});
        lease.Finish(LeaseEnd::kAssumedLost);
        stop_runner(false);
        return;
      }
      log::Warn("transient heartbeat failure", {{"work_id", work_id}, {"error", r.Describe()}});
      // Try again soon, not a whole interval later: the interval is half the
      // TTL, so one failed beat (a service restarting for a second) followed
      // by a full interval would land the next beat right on the lease's
      // expiry.
      retry_soon = true;
    };
    beat();
    while (!lease.done()) {
      const int64_t wait = retry_soon ? std::min<int64_t>(interval, JitterMs(500, 1500)) : interval;
      retry_soon = false;
      if (!beat_now && lease.WaitFor(wait)) break;
      beat_now = false;
      beat();
    }
  });

  Status result;
  do {
    if (data_type != "session") {
      // Still only after the first heartbeat (the item is acknowledged as held).
      while (!lease.WaitFirstBeat(50) && !shutdown_.load()) {
      }
      if (!lease.done()) log::Info("skipping non-session work item", {{"work_id", work_id}, {"type", data_type}});
      break;
    }
    // The session is read while the first heartbeat is in flight (a read
    // changes nothing, and the two round trips overlap). Transient failures
    // (resets, 5xx, lost answers) are retried with backoff while the lease
    // holds: giving the item up here would leave the session's calls
    // waiting until the lease lapses.
    ApiResult sess;
    for (int64_t backoff = 250;; backoff = std::min<int64_t>(backoff * 2, 5000)) {
      sess = api.GetSession(session_id, [&] { return lease.done() || shutdown_.load(); });
      if (sess.ok() || !sess.transient() || lease.done() || shutdown_.load()) break;
      log::Warn("session retrieve failed; retrying", {{"work_id", work_id}, {"backoff_ms", backoff}, {"error", sess.Describe()}});
      lease.WaitFor(backoff);
    }
    // Serve only once a heartbeat succeeded: a 412 means another worker
    // holds the lease, and running its calls too would double them; a beat
    // that failed transiently proves nothing yet.
    while (!lease.WaitFirstBeat(50) && !shutdown_.load()) {
    }
    if (lease.done() || shutdown_.load()) break;
    if (sess.status == 401) {
      log::Error("lease lost: credential revoked", {{"work_id", work_id}, {"error", sess.Describe()}});
      lease.Finish(LeaseEnd::kLeaseLost);
      break;
    }
    if (!sess.ok()) {
      result = Status::Unavailable("session retrieve failed: " + sess.Describe());
      log::Error("work item failed", {{"work_id", work_id}, {"error", sess.Describe()}});
      break;
    }
    if (sess.body.is_object() && sess.body.value("status", "") == "terminated") {
      log::Info("skipping the work item of a terminated session",
                {{"work_id", work_id}, {"session_id", session_id}});
      break;
    }
    if (lease.done() || shutdown_.load()) break;
    // Skills are downloaded after the first heartbeat (3.3: heartbeats begin
    // before the download) and removed when the item ends.
    std::vector<std::string> skill_dirs = DownloadSkills(http_, cred, sess.body, opts_.tools.workdir);
    struct SkillCleanup {
      std::vector<std::string>* dirs;
      ~SkillCleanup() { RemoveSkillDirs(*dirs); }
    } cleanup{&skill_dirs};
    Toolset tools(opts_.tools);
    SessionRunnerOptions ro;
    ro.session_id = session_id;
    ro.max_idle_ms = opts_.max_idle_ms;
    ro.tool_timeout_ms = opts_.tool_timeout_ms;
    ro.send_retry_window_ms = ttl_ms.load();
    ro.call_journal_dir = opts_.call_journal_dir;
    ApiClient runner_api = api.WithToken(cred, "session-tool-runner");
    SessionRunner session_runner(&runner_api, &tools, ro);
    {
      std::lock_guard<std::mutex> lock(runner_mu);
      runner = &session_runner;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_runner_ = &session_runner;
    }
    if (lease.done() || shutdown_.load()) session_runner.Stop(!lease.lost());
    SessionRunner::End end = session_runner.Run();
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_runner_ = nullptr;
    }
    {
      std::lock_guard<std::mutex> lock(runner_mu);
      runner = nullptr;
    }
    tools.Close();
    if (end == SessionRunner::End::kFatal && session_runner.fatal_status() == 401) {
      log::Error("lease lost: credential revoked", {{"work_id", work_id}});
      lease.Finish(LeaseEnd::kLeaseLost);
    } else if (end == SessionRunner::End::kFatal) {
      result = Status::Unavailable("session event stream failed");
    }
  } while (false);

  lease.Finish(shutdown_.load() ? LeaseEnd::kShutdown : LeaseEnd::kRunnerDone);
  heartbeat.join();
  last_lease_end_.store(lease.end());
  // The record served a relaunch after a crash; this runner ends normally
  // (the item is released or no longer ours), so nothing may resume it.
  // (Only this delivery's record: one of another delivery is not ours.)
  LeaseRecord mine;
  if (!record_path.empty() && ReadLeaseRecord(record_path, &mine) && mine.delivery == delivery)
    ::unlink(record_path.c_str());
  if (lease.lost()) {
    log::Info("lease lost; released without stopping it", {{"work_id", work_id}});
  } else {
    ApiResult s = api.StopWork(env, work_id, /*force=*/true);
    if (!s.ok() && s.status != 409) {
      log::Error("force-stop on exit failed", {{"work_id", work_id}, {"error", s.Describe()}});
    }
  }
  return result;
}

Status Worker::PollLoop() {
  ApiClient api(http_, opts_.environment_key, "environments-work-poller");
  int attempt = 0;
  auto stopped = [this] { return shutdown_.load(); };
  log::Info("poller starting", {{"environment_id", opts_.environment_id}, {"worker_id", opts_.worker_id}});
  while (!shutdown_.load()) {
    ApiResult r = api.Poll(opts_.environment_id, 999, opts_.worker_id, std::nullopt, stopped);
    if (shutdown_.load()) break;
    if (!r.ok()) {
      if (r.fatal()) {
        log::Error("poll failed permanently, stopping poller", {{"error", r.Describe()}});
        return Status::FailedPrecondition("poll failed: " + r.Describe());
      }
      int64_t wait = std::min<int64_t>(int64_t{1000} << std::min(attempt, 6), 60000) + JitterMs(0, 1000);
      ++attempt;
      log::Warn("poll failed, backing off", {{"error", r.Describe()}, {"backoff_ms", wait}});
      for (int64_t t = 0; t < wait && !shutdown_.load(); t += 50) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    attempt = 0;
    if (r.body.is_null() || !r.body.is_object()) {
      int64_t wait = JitterMs(1000, 3000);
      for (int64_t t = 0; t < wait && !shutdown_.load(); t += 50) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const Json work = r.body;
    const std::string work_id = work.value("id", "");
    const std::string env = work.value("environment_id", opts_.environment_id);
    const Json data = work.value("data", Json::object());
    const std::string type = data.is_object() ? data.value("type", "") : "";
    const std::string sid = data.is_object() ? data.value("id", "") : "";
    const std::string secret = work.contains("secret") && work["secret"].is_string() ? work["secret"].get<std::string>() : "";
    log::Info("claimed work", {{"work_id", work_id}, {"work_type", type}});
    ApiResult ack = api.Ack(env, work_id);
    if (!ack.ok()) {
      log::Error("ack failed", {{"work_id", work_id}, {"error", ack.Describe()}});
      continue;
    }
    if (!opts_.on_work.empty()) {
      if (type != "session") {
        log::Info("skipping non-session work item", {{"work_id", work_id}, {"type", type}});
        api.StopWork(env, work_id, true);
        continue;
      }
      int exit_code = -1;
      Status st = RunOnWork(work, &exit_code);
      if (st.code() == Code::kFailedPrecondition) return st;  // script cannot be run
      // Never stop an item that its runner no longer holds: a runner that
      // lost the lease says so by its exit code, and the stop is sent with
      // the item's sessions token, which the service revokes when the lease
      // lapses, so it cannot reach an item handed to another runner.
      if (exit_code == kExitLeaseLost) {
        log::Info("the runner lost the lease; not stopping the item", {{"work_id", work_id}});
        continue;
      }
      const std::string token = SessionsTokenFromSecret(secret);
      ApiResult s = token.empty() ? api.StopWork(env, work_id, /*force=*/false)
                                  : api.WithToken(token, "environments-work-poller").StopWork(env, work_id, false);
      if (s.status == 401) log::Info("item no longer held by this delivery; not stopped", {{"work_id", work_id}});
      else if (!s.ok() && s.status != 409) log::Warn("stop failed", {{"work_id", work_id}, {"error", s.Describe()}});
      continue;
    }
    Status st = HandleItem(work_id, sid, secret, type);
    if (!st.ok()) log::Error("work item failed", {{"work_id", work_id}, {"error", st.ToString()}});
  }
  return Status::Ok();
}

Status Worker::RunOnWork(const Json& work, int* exit_code) {
  const std::string payload = DumpJson(work);
  const Json data = work.value("data", Json::object());
  std::vector<std::string> env_storage;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env_storage.emplace_back(*e);
  auto set = [&](const std::string& k, const std::string& v) {
    env_storage.erase(std::remove_if(env_storage.begin(), env_storage.end(),
                                     [&](const std::string& kv) { return kv.rfind(k + "=", 0) == 0; }),
                      env_storage.end());
    env_storage.push_back(k + "=" + v);
  };
  set("ANTHROPIC_WORK_ID", work.value("id", ""));
  set("ANTHROPIC_ENVIRONMENT_ID", work.value("environment_id", opts_.environment_id));
  set("ANTHROPIC_SESSION_ID", data.value("id", ""));
  set("ANTHROPIC_ENVIRONMENT_KEY", opts_.environment_key);
  std::vector<char*> envp;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  int in_p[2], err_p[2];
  if (pipe2(in_p, O_CLOEXEC) != 0 || pipe2(err_p, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  std::string script = opts_.on_work;
  char* argv[] = {script.data(), nullptr};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in_p[0], 0);
    dup2(2, 1);  // the script's stdout goes to our stderr
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    execve(script.c_str(), argv, envp.data());
    int e = errno;
    (void)!write(err_p[1], &e, sizeof e);
    _exit(127);
  }
  close(in_p[0]);
  close(err_p[1]);
  if (pid < 0) {
    close(in_p[1]);
    close(err_p[0]);
    return Status::FromErrno(errno, "fork");
  }
  int exec_errno = 0;
  ssize_t got = read(err_p[0], &exec_errno, sizeof exec_errno);
  close(err_p[0]);
  if (got == sizeof exec_errno) {
    close(in_p[1]);
    waitpid(pid, nullptr, 0);
    log::Error("--on-work script cannot be run", {{"script", script}, {"error", strerror(exec_errno)}});
    return Status::FailedPrecondition("--on-work script cannot be run: " + std::string(strerror(exec_errno)));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    on_work_pid_ = pid;
  }
  size_t off = 0;
  while (off < payload.size()) {
    ssize_t n = write(in_p[1], payload.data() + off, payload.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  close(in_p[1]);
  int status = 0;
  int64_t term_sent_at = -1;
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (shutdown_.load()) {
      if (term_sent_at < 0) {
        kill(pid, SIGTERM);
        term_sent_at = NowMs();
      } else if (NowMs() - term_sent_at > opts_.on_work_kill_delay_ms) {
        kill(pid, SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    on_work_pid_ = -1;
  }
  if (exit_code) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  log::Info("--on-work script exited", {{"work_id", work.value("id", "")}, {"status", status}});
  return Status::Ok();
}

}  // namespace warren::runner
