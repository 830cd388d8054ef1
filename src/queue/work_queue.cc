#include "queue/work_queue.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <set>

#include "api/validate.h"
#include "common/ids.h"
#include "common/log.h"

namespace warren::queue {
namespace {

constexpr const char* kQueued = "queued";
constexpr const char* kStarting = "starting";
constexpr const char* kActive = "active";
constexpr const char* kStopping = "stopping";
constexpr const char* kStopped = "stopped";

constexpr int64_t kMicrosPerSecond = 1'000'000;

// Client events that mean the session needs a worker (spec 8, "When to
// enqueue"). Tool results come from the worker that holds the item.
bool NeedsWorker(const std::string& type) {
  return type == "user.message" || type == "user.interrupt" || type == "user.tool_confirmation" ||
         type == "user.custom_tool_result";
}

void SetState(store::WorkRecord* w, const char* state) {
  w->state = state;
  w->body["state"] = state;
}

// The next compare-and-set token: the current time, strictly after the
// previous token so that two beats never share a value.
std::string NextHeartbeat(const std::optional<std::string>& prev, int64_t now) {
  int64_t t = now;
  if (prev) {
    if (auto p = ParseRfc3339(*prev); p && *p >= t) t = *p + 1;
  }
  return FormatRfc3339(t);
}

Json LeaseState(const store::WorkRecord& w) {
  return {{"state", w.state},
          {"ttl_seconds", w.ttl_seconds},
          {"last_heartbeat", w.last_heartbeat ? Json(*w.last_heartbeat) : Json(nullptr)},
          {"lease_extended", false}};
}

Json HeartbeatBody(const store::WorkRecord& w, bool extended) {
  return {{"type", "work_heartbeat"},
          {"last_heartbeat", w.last_heartbeat.value_or("")},
          {"lease_extended", extended},
          {"state", w.state},
          {"ttl_seconds", w.ttl_seconds}};
}

}  // namespace

WorkQueue::WorkQueue(store::Store* store, api::Authenticator* auth, Clock* clock, WorkQueueOptions options)
    : store_(store), auth_(auth), clock_(clock), options_(options) {}

WorkQueue::~WorkQueue() { Stop(); }

void WorkQueue::Start() {
  // Start-up: leases that lapsed while the service was down, then every
  // session whose calls wait without a live item.
  if (auto r = Sweep(); !r.ok()) log::Warn("work.sweep_failed", {{"error", r.status().ToString()}});
  if (auto r = CheckAllSessions(); !r.ok())
    log::Error("work.invariant_check_failed", {{"after", "start"}, {"error", r.status().ToString()}});
  if (options_.sweep_interval.count() <= 0) return;
  std::lock_guard<std::mutex> lock(sweeper_mu_);
  if (sweeper_.joinable()) return;
  sweeper_stop_ = false;
  sweeper_ = std::thread([this] { SweeperLoop(); });
}

void WorkQueue::Stop() {
  {
    std::lock_guard<std::mutex> lock(sweeper_mu_);
    sweeper_stop_ = true;
  }
  sweeper_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
}

void WorkQueue::SweeperLoop() {
  std::unique_lock<std::mutex> lock(sweeper_mu_);
  while (!sweeper_stop_) {
    sweeper_cv_.wait_for(lock, options_.sweep_interval, [this] { return sweeper_stop_; });
    if (sweeper_stop_) break;
    lock.unlock();
    auto r = Sweep();
    if (!r.ok()) log::Warn("work.sweep_failed", {{"error", r.status().ToString()}});
    lock.lock();
  }
}

Json WorkQueue::Render(const store::WorkRecord& w, const Json& secret) {
  Json j = w.body;
  j["state"] = w.state;
  j["secret"] = secret;
  return j;
}

// ------------------------------------------------------------------ enqueue

Result<Json> WorkQueue::SelfHostedEnvironment(const std::string& environment_id) {
  auto env = store_->GetEnvironment(environment_id);
  if (!env.ok()) {
    if (env.status().code() == Code::kNotFound) return env.status().WithDetailCode("environment_not_found");
    return env.status();
  }
  if ((*env)["config"]["type"] != "self_hosted" && !(options_.cloud_queues && (*env)["config"]["type"] == "cloud"))
    return Status::InvalidArgument("environment " + environment_id +
                                   " is not a self_hosted environment: only self_hosted environments have a work queue");
  return std::move(env).value();
}

Status WorkQueue::Enqueue(const std::string& session_id, const std::string& environment_id) {
  // Apply due expiries first: a session whose item sits in `stopping` past
  // its deadline must be able to get a fresh item now.
  auto swept = Sweep(environment_id);
  if (!swept.ok()) return swept.status();
  Status s = InsertItem(session_id, environment_id);
  if (s.code() == Code::kConflict) return Status::Ok();  // the session already has a live item
  return s;
}

Status WorkQueue::InsertItem(const std::string& session_id, const std::string& environment_id) {
  int64_t now = clock_->NowMicros();
  std::string ts = FormatRfc3339(now);
  store::WorkRecord w;
  w.id = NewId(idprefix::kWork);
  w.environment_id = environment_id;
  w.session_id = session_id;
  w.state = kQueued;
  w.created_at = now;
  w.ttl_seconds = options_.default_ttl_seconds;
  w.body = {{"type", "work"},
            {"id", w.id},
            {"environment_id", environment_id},
            {"data", {{"type", "session"}, {"id", session_id}}},
            {"state", kQueued},
            {"metadata", Json::object()},
            {"secret", nullptr},
            {"created_at", ts},
            {"acknowledged_at", nullptr},
            {"started_at", nullptr},
            {"latest_heartbeat_at", nullptr},
            {"stop_requested_at", nullptr},
            {"stopped_at", nullptr}};
  WARREN_RETURN_IF_ERROR(store_->CreateWork(w));
  log::Info("work.enqueued", {{"work_id", w.id}, {"session_id", session_id}, {"environment_id", environment_id}});
  Wake(environment_id);
  return Status::Ok();
}

Status WorkQueue::EnsureWork(const std::string& session_id) { return EnsureWorkFor(session_id, true); }

Status WorkQueue::EnsureWorkFor(const std::string& session_id, bool tool_calls_waiting) {
  WARREN_ASSIGN_OR_RETURN(Json session, store_->GetSession(session_id));
  if (!session["archived_at"].is_null() || session["status"] == "terminated") return Status::Ok();
  std::string env_id = session["environment_id"].get<std::string>();
  auto env = store_->GetEnvironment(env_id);
  if (!env.ok()) return env.status().code() == Code::kNotFound ? Status::Ok() : env.status();
  const Json& type = (*env)["config"]["type"];
  // Cloud sessions get a sandbox only when a built-in tool call waits for
  // one (the engine's EnsureWork), not for every session created or message.
  if (type != "self_hosted" && !(options_.cloud_queues && type == "cloud" && tool_calls_waiting)) return Status::Ok();
  return Enqueue(session_id, env_id);
}

Result<bool> WorkQueue::HasCallsForWorker(const std::string& session_id) {
  store::EventFilter filter;
  filter.types = {"agent.tool_use", "user.tool_result", "user.tool_confirmation", "user.interrupt"};
  store::PageSpec page;
  page.limit = 1000;
  page.order = store::Order::kAsc;
  std::map<std::string, bool> open;  // agent.tool_use id -> runnable (allow, or confirmed)
  auto str = [](const Json& e, const char* k) {
    auto it = e.find(k);
    return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(store::Page p, store_->ListEvents(session_id, filter, page));
    for (const Json& e : p.items) {
      const std::string type = str(e, "type");
      if (type == "agent.tool_use") {
        const std::string perm = str(e, "evaluated_permission");
        if (perm != "deny") open[str(e, "id")] = perm == "allow" || perm.empty();
      } else if (type == "user.tool_result") {
        open.erase(str(e, "tool_use_id"));
      } else if (type == "user.tool_confirmation") {
        auto it = open.find(str(e, "tool_use_id"));
        if (it == open.end()) continue;
        if (str(e, "result") == "allow") it->second = true;
        else open.erase(it);
      } else if (type == "user.interrupt") {
        open.clear();  // the engine settles every open call as interrupted
      }
    }
    if (!p.more_after || p.seqs.empty()) break;
    page.after = p.seqs.back();
  }
  for (const auto& [id, runnable] : open)
    if (runnable) return true;
  return false;
}

Result<bool> WorkQueue::CheckSession(const std::string& session_id) {
  auto session = store_->GetSession(session_id);
  if (!session.ok()) return session.status().code() == Code::kNotFound ? Result<bool>(false) : session.status();
  if (!(*session)["archived_at"].is_null() || (*session)["status"] == "terminated") return false;
  std::string env_id = (*session)["environment_id"].get<std::string>();
  auto env = store_->GetEnvironment(env_id);
  if (!env.ok()) return env.status().code() == Code::kNotFound ? Result<bool>(false) : env.status();
  const Json& type = (*env)["config"]["type"];
  if (type != "self_hosted" && !(options_.cloud_queues && type == "cloud")) return false;
  WARREN_ASSIGN_OR_RETURN(bool needs, HasCallsForWorker(session_id));
  if (!needs) return false;
  Status s = InsertItem(session_id, env_id);
  if (s.code() == Code::kConflict) return false;  // a live item exists
  WARREN_RETURN_IF_ERROR(s);
  log::Info("work.invariant_enqueued", {{"session_id", session_id}, {"environment_id", env_id}});
  return true;
}

void WorkQueue::CheckAfterStop(const std::string& session_id, const char* why) {
  if (session_id.empty()) return;
  auto r = CheckSession(session_id);
  if (!r.ok())
    log::Error("work.invariant_check_failed", {{"session_id", session_id}, {"after", why}, {"error", r.status().ToString()}});
}

Result<int> WorkQueue::CheckAllSessions() {
  int queued = 0;
  store::PageSpec envs_page;
  envs_page.limit = 100;
  envs_page.order = store::Order::kAsc;
  for (;;) {
    WARREN_ASSIGN_OR_RETURN(store::Page envs, store_->ListEnvironments(/*include_archived=*/true, envs_page));
    for (const Json& env : envs.items) {
      if (!env.contains("config") || !env["config"].is_object()) continue;
      const std::string type = env["config"].value("type", "");
      if (type != "self_hosted" && !(options_.cloud_queues && type == "cloud")) continue;
      store::SessionFilter f;
      f.environment_id = env["id"].get<std::string>();
      store::PageSpec page;
      page.limit = 100;
      page.order = store::Order::kAsc;
      for (;;) {
        WARREN_ASSIGN_OR_RETURN(store::Page sessions, store_->ListSessions(f, page));
        for (const Json& s : sessions.items) {
          if (s.value("status", "") == "terminated") continue;
          WARREN_ASSIGN_OR_RETURN(bool q, CheckSession(s["id"].get<std::string>()));
          if (q) queued++;
        }
        if (!sessions.more_after || sessions.seqs.empty()) break;
        page.after = sessions.seqs.back();
      }
    }
    if (!envs.more_after || envs.seqs.empty()) break;
    envs_page.after = envs.seqs.back();
  }
  log::Info("work.invariant_checked", {{"queued", queued}});
  return queued;
}

void WorkQueue::OnSessionCreated(const Json& session) {
  Status s = EnsureWorkFor(session["id"].get<std::string>(), false);
  if (!s.ok()) log::Error("work.enqueue_failed", {{"session_id", session["id"]}, {"error", s.ToString()}});
}

void WorkQueue::OnClientEvents(const Json& session, const std::vector<store::StoredEvent>& events) {
  bool needs = std::any_of(events.begin(), events.end(),
                           [](const store::StoredEvent& e) { return NeedsWorker(e.body.value("type", "")); });
  if (!needs) return;
  // A confirmation releases a built-in call that waits for a worker, on
  // cloud environments too.
  bool confirms = std::any_of(events.begin(), events.end(), [](const store::StoredEvent& e) {
    return e.body.value("type", "") == "user.tool_confirmation";
  });
  Status s = EnsureWorkFor(session["id"].get<std::string>(), confirms);
  if (!s.ok()) log::Error("work.enqueue_failed", {{"session_id", session["id"]}, {"error", s.ToString()}});
}

void WorkQueue::OnSessionDeleted(const std::string& session_id) {
  auto items = store_->UnstoppedWorkForSession(session_id);
  if (!items.ok()) {
    log::Error("work.session_delete_failed", {{"session_id", session_id}, {"error", items.status().ToString()}});
    return;
  }
  for (const store::WorkRecord& item : *items) {
    std::string now = NowString();
    auto r = store_->UpdateWork(item.id, [&](store::WorkRecord* w) -> Status {
      if (w->state == kStopped) return Status::Ok();
      if (w->body["stop_requested_at"].is_null()) w->body["stop_requested_at"] = now;
      SetState(w, kStopped);
      w->body["stopped_at"] = now;
      w->deadline.reset();
      w->delivered_at.reset();
      return Status::Ok();
    });
    if (!r.ok()) log::Error("work.stop_failed", {{"work_id", item.id}, {"error", r.status().ToString()}});
    else log::Info("work.stopped", {{"work_id", item.id}, {"reason", "session_deleted"}});
  }
}

// --------------------------------------------------------------- operations

Result<store::WorkRecord> WorkQueue::LoadInEnvironment(const std::string& environment_id, const std::string& work_id) {
  auto w = store_->GetWork(work_id);
  if (!w.ok()) return w.status();
  if (w->environment_id != environment_id)
    return Status::NotFound("work item " + work_id + " not found in environment " + environment_id);
  return std::move(w).value();
}

Status WorkQueue::RecordWorker(const std::string& environment_id, const std::string& worker_id) {
  if (worker_id.empty()) return Status::Ok();
  return store_->RecordWorkerPoll(environment_id, worker_id, clock_->NowMicros());
}

namespace {

bool ValidOrchestratorId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.' && c != ':') return false;
  return true;
}

// A host name for messages: printable ASCII, at most 255 bytes.
std::string CleanHost(const std::string& host) {
  std::string out = host.substr(0, 255);
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '?';
  return out;
}

}  // namespace

Status WorkQueue::HoldEnvironment(const std::string& environment_id, const std::string& orchestrator_id,
                                  const std::string& host) {
  if (!ValidOrchestratorId(orchestrator_id))
    return Status::InvalidArgument(std::string(kOrchestratorIdHeader) +
                                   ": an orchestrator id is 1..128 characters of A-Z a-z 0-9 _ . : -");
  const int64_t now = clock_->NowMicros();
  const int64_t ttl = std::max<int64_t>(options_.orchestrator_ttl_ms, 1) * 1000;
  {
    std::lock_guard<std::mutex> l(holders_mu_);
    auto it = renewed_.find(environment_id);
    if (it != renewed_.end() && it->second.orchestrator_id == orchestrator_id && now >= it->second.at &&
        now - it->second.at < ttl / 4)
      return Status::Ok();
  }
  const std::string clean_host = CleanHost(host);
  WARREN_ASSIGN_OR_RETURN(store::EnvironmentHolder h,
                          store_->HoldEnvironment(environment_id, orchestrator_id, clean_host, now, now - ttl));
  if (h.orchestrator_id == orchestrator_id) {
    std::lock_guard<std::mutex> l(holders_mu_);
    renewed_[environment_id] = Renewal{orchestrator_id, now};
    return Status::Ok();
  }
  const int64_t age_ms = std::max<int64_t>(0, (now - h.seen_at) / 1000);
  char age[32];
  std::snprintf(age, sizeof age, "%.1f", static_cast<double>(age_ms) / 1000.0);
  char wait[32];
  std::snprintf(wait, sizeof wait, "%.1f", static_cast<double>(options_.orchestrator_ttl_ms) / 1000.0);
  return Status::Conflict("environment " + environment_id + " is served by another orchestrator (id " +
                          h.orchestrator_id + ", host " + (h.host.empty() ? "unknown" : h.host) + ", last seen " +
                          age + " s ago); one orchestrator serves an environment at a time: stop that one, or wait: "
                          "this one is accepted once that one has not polled for " + wait +
                          " s. See docs/ORCHESTRATOR.md, \"Several orchestrators\"")
      .WithDetailCode(kEnvironmentHeldCode);
}

Result<std::optional<Json>> WorkQueue::Claim(const std::string& environment_id, int64_t reclaim_older_than_ms) {
  WARREN_RETURN_IF_ERROR(Sweep(environment_id).status());
  int64_t now = clock_->NowMicros();
  WARREN_ASSIGN_OR_RETURN(auto claimed, store_->ClaimWork(environment_id, now, now - reclaim_older_than_ms * 1000));
  if (!claimed) return std::optional<Json>();
  const store::WorkRecord& w = *claimed;
  Json secret = nullptr;
  if (!w.session_id.empty()) {
    // A fresh sessions token per delivery, scoped to this session and item.
    WARREN_ASSIGN_OR_RETURN(std::string token, auth_->IssueSessionsToken(w.session_id, environment_id, w.id));
    secret = Base64UrlEncode(DumpJson(Json{{"sessions_token", token}}));
  }
  log::Info("work.delivered", {{"work_id", w.id}, {"environment_id", environment_id}, {"delivery", w.deliveries}});
  return std::optional<Json>(Render(w, secret));
}

Result<Json> WorkQueue::Reissue(const std::string& environment_id, const std::string& work_id) {
  WARREN_RETURN_IF_ERROR(Sweep(environment_id).status());
  WARREN_ASSIGN_OR_RETURN(auto w, LoadInEnvironment(environment_id, work_id));
  if (w.state != kStarting && w.state != kActive)
    return Status::FailedPrecondition("work item " + work_id + " is " + w.state + ", not held");
  WARREN_ASSIGN_OR_RETURN(std::string token, auth_->IssueSessionsToken(w.session_id, environment_id, w.id));
  Json secret = Base64UrlEncode(DumpJson(Json{{"sessions_token", token}}));
  log::Info("work.reissued", {{"work_id", w.id}, {"environment_id", environment_id}});
  return Render(w, secret);
}

Result<Json> WorkQueue::Ack(const std::string& environment_id, const std::string& work_id) {
  WARREN_RETURN_IF_ERROR(Sweep(environment_id).status());
  int64_t now = clock_->NowMicros();
  WARREN_ASSIGN_OR_RETURN(auto w, store_->UpdateWork(work_id, [&](store::WorkRecord* w) -> Status {
                            if (w->environment_id != environment_id)
                              return Status::NotFound("work item " + work_id + " not found in environment " +
                                                      environment_id);
                            if (w->state == kStopped) return Status::Conflict("work item " + work_id + " is stopped");
                            // Acked already: idempotent; the heartbeat's
                            // compare-and-set decides who holds the lease.
                            if (w->state != kQueued) return Status::Ok();
                            SetState(w, kStarting);
                            w->body["acknowledged_at"] = FormatRfc3339(now);
                            w->delivered_at.reset();
                            w->last_heartbeat.reset();
                            w->deadline = now + int64_t{w->ttl_seconds} * kMicrosPerSecond;
                            return Status::Ok();
                          }));
  return Render(w);
}

Result<Json> WorkQueue::Heartbeat(const std::string& environment_id, const std::string& work_id,
                                  const std::optional<std::string>& expected_last_heartbeat,
                                  std::optional<int64_t> desired_ttl_seconds,
                                  Json* current_state) {
  WARREN_RETURN_IF_ERROR(Sweep(environment_id).status());
  int64_t now = clock_->NowMicros();
  Json out;
  auto r = store_->UpdateWork(work_id, [&](store::WorkRecord* w) -> Status {
    if (w->environment_id != environment_id)
      return Status::NotFound("work item " + work_id + " not found in environment " + environment_id);
    if (w->state == kStopped) {  // not compared; the worker learns it must stop
      out = HeartbeatBody(*w, false);
      return Status::Ok();
    }
    int ttl = w->ttl_seconds;
    if (desired_ttl_seconds)
      ttl = static_cast<int>(std::clamp<int64_t>(*desired_ttl_seconds, options_.min_ttl_seconds, options_.max_ttl_seconds));
    if (w->state == kStopping) {
      // Not compared either: report `stopping` so the holder winds down.
      // The stopping deadline is not moved.
      w->last_heartbeat = NextHeartbeat(w->last_heartbeat, now);
      w->body["latest_heartbeat_at"] = *w->last_heartbeat;
      w->ttl_seconds = ttl;
      out = HeartbeatBody(*w, true);
      return Status::Ok();
    }
    const std::string stored = w->last_heartbeat.value_or(std::string(kNoHeartbeat));
    if (w->state == kQueued || (expected_last_heartbeat && *expected_last_heartbeat != stored)) {
      if (current_state) *current_state = LeaseState(*w);
      std::string why = w->state == kQueued
                            ? "work item " + work_id + " is queued: its lease is not held (acknowledge it first)"
                            : "expected_last_heartbeat does not match the stored heartbeat: another worker may hold "
                              "the lease of work item " + work_id;
      return Status::FailedPrecondition(why).WithDetailCode("heartbeat_precondition_failed");
    }
    w->last_heartbeat = NextHeartbeat(w->last_heartbeat, now);
    w->body["latest_heartbeat_at"] = *w->last_heartbeat;
    w->ttl_seconds = ttl;
    w->deadline = now + int64_t{ttl} * kMicrosPerSecond;
    if (w->state == kStarting) {
      SetState(w, kActive);
      w->body["started_at"] = FormatRfc3339(now);
    }
    out = HeartbeatBody(*w, true);
    return Status::Ok();
  });
  if (!r.ok()) {
    log::Debug("work.heartbeat", {{"work_id", work_id}, {"status", r.status().ToString()}});
    return r.status();
  }
  log::Debug("work.heartbeat", {{"work_id", work_id}, {"state", out.value("state", "")}});
  return out;
}

Result<Json> WorkQueue::StopWork(const std::string& environment_id, const std::string& work_id, bool force) {
  WARREN_RETURN_IF_ERROR(Sweep(environment_id).status());
  int64_t now = clock_->NowMicros();
  std::string ts = FormatRfc3339(now);
  std::string from;
  WARREN_ASSIGN_OR_RETURN(auto w, store_->UpdateWork(work_id, [&](store::WorkRecord* w) -> Status {
                            if (w->environment_id != environment_id)
                              return Status::NotFound("work item " + work_id + " not found in environment " +
                                                      environment_id);
                            if (w->state == kStopped)
                              return Status::Conflict("work item " + work_id + " is already stopped");
                            from = w->state;
                            if (w->body["stop_requested_at"].is_null()) w->body["stop_requested_at"] = ts;
                            // Force, a holder confirming a requested stop, or
                            // an item no worker holds: stopped at once.
                            if (force || w->state == kStopping || w->state == kQueued) {
                              SetState(w, kStopped);
                              w->body["stopped_at"] = ts;
                              w->deadline.reset();
                              w->delivered_at.reset();
                              return Status::Ok();
                            }
                            // starting / active: the holder sees `stopping`
                            // on its next heartbeat; forced after one TTL.
                            SetState(w, kStopping);
                            w->deadline = now + int64_t{w->ttl_seconds} * kMicrosPerSecond;
                            return Status::Ok();
                          }));
  log::Info("work.stop", {{"work_id", work_id}, {"from", from}, {"to", w.state}, {"force", force}});
  if (w.state == kStopped) CheckAfterStop(w.session_id, "stop");
  return Render(w);
}

Result<Json> WorkQueue::Get(const std::string& environment_id, const std::string& work_id) {
  WARREN_RETURN_IF_ERROR(Sweep(environment_id).status());
  WARREN_ASSIGN_OR_RETURN(auto w, LoadInEnvironment(environment_id, work_id));
  return Render(w);
}

Result<Json> WorkQueue::UpdateMetadata(const std::string& environment_id, const std::string& work_id,
                                       const Json& patch) {
  Status v = api::ValidateMetadata(patch, "metadata", true);
  if (!v.ok()) return v.WithDetailCode("invalid_metadata");
  WARREN_ASSIGN_OR_RETURN(auto w, store_->UpdateWork(work_id, [&](store::WorkRecord* w) -> Status {
                            if (w->environment_id != environment_id)
                              return Status::NotFound("work item " + work_id + " not found in environment " +
                                                      environment_id);
                            Json merged = w->body.value("metadata", Json::object());
                            api::ApplyMetadataPatch(&merged, patch);
                            Status m = api::ValidateMetadata(merged, "metadata", false);
                            if (!m.ok()) return m.WithDetailCode("invalid_metadata");
                            w->body["metadata"] = merged;
                            return Status::Ok();
                          }));
  return Render(w);
}

Result<store::Page> WorkQueue::List(const std::string& environment_id, const store::PageSpec& page) {
  WARREN_RETURN_IF_ERROR(Sweep(environment_id).status());
  WARREN_ASSIGN_OR_RETURN(auto p, store_->ListWork(environment_id, page));
  for (Json& item : p.items) item["secret"] = nullptr;
  return p;
}

Result<Json> WorkQueue::Stats(const std::string& environment_id) {
  WARREN_RETURN_IF_ERROR(Sweep(environment_id).status());
  int64_t now = clock_->NowMicros();
  WARREN_ASSIGN_OR_RETURN(auto c, store_->CountWork(environment_id, now - options_.workers_window_ms * 1000));
  return Json{{"type", "work_queue_stats"},
              {"depth", c.depth},
              {"pending", c.pending},
              {"oldest_queued_at", c.oldest_queued_at ? Json(FormatRfc3339(*c.oldest_queued_at)) : Json(nullptr)},
              {"workers_polling", c.workers}};
}

// ------------------------------------------------------------------- leases

Result<int> WorkQueue::Sweep(const std::string& environment_id) {
  constexpr int kBatch = 100;
  int changed = 0;
  std::set<std::string> requeued_in;
  for (int round = 0; round < 100; round++) {
    int64_t now = clock_->NowMicros();
    WARREN_ASSIGN_OR_RETURN(auto ids, store_->DueWork(environment_id, now, kBatch));
    for (const std::string& id : ids) {
      std::string from;
      auto r = store_->UpdateWork(id, [&](store::WorkRecord* w) -> Status {
        from.clear();
        if (!w->deadline || *w->deadline >= now) return Status::Ok();  // renewed meanwhile
        if (w->state == kStarting || w->state == kActive) {
          // Lease expired: back to the queue, lease reset so the next
          // claimant's NO_HEARTBEAT matches and the old holder gets 412.
          from = w->state;
          SetState(w, kQueued);
          w->deadline.reset();
          w->delivered_at.reset();
          w->last_heartbeat.reset();
          w->ttl_seconds = options_.default_ttl_seconds;
          w->body["acknowledged_at"] = nullptr;
          w->body["started_at"] = nullptr;
          w->body["latest_heartbeat_at"] = nullptr;
        } else if (w->state == kStopping) {
          from = w->state;
          SetState(w, kStopped);
          w->deadline.reset();
          w->body["stopped_at"] = FormatRfc3339(now);
        }
        return Status::Ok();
      });
      if (!r.ok()) {
        if (r.status().code() == Code::kNotFound) continue;
        return r.status();
      }
      if (from.empty()) continue;
      changed++;
      log::Info("work.lease_expired", {{"work_id", id}, {"from", from}, {"to", r->state}});
      if (r->state == kQueued) requeued_in.insert(r->environment_id);
      // A lapsed lease requeues the same item (still live); a lapsed stop
      // ends it, so the session may need a new one.
      if (r->state == kStopped) {
        CheckAfterStop(r->session_id, "lease_lapse");
        requeued_in.insert(r->environment_id);
      }
    }
    if (static_cast<int>(ids.size()) < kBatch) break;
  }
  for (const std::string& env : requeued_in) Wake(env);
  return changed;
}

// ----------------------------------------------------------------- waiters

void WorkQueue::AddWaiter(const std::string& environment_id, const void* key, std::function<void()> waker) {
  std::lock_guard<std::mutex> lock(waiters_mu_);
  waiters_[environment_id][key] = std::move(waker);
}

void WorkQueue::RemoveWaiter(const std::string& environment_id, const void* key) {
  std::lock_guard<std::mutex> lock(waiters_mu_);
  auto it = waiters_.find(environment_id);
  if (it == waiters_.end()) return;
  it->second.erase(key);
  if (it->second.empty()) waiters_.erase(it);
}

void WorkQueue::Wake(const std::string& environment_id) {
  std::vector<std::function<void()>> wakers;
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    auto it = waiters_.find(environment_id);
    if (it == waiters_.end()) return;
    for (const auto& [key, fn] : it->second) wakers.push_back(fn);
  }
  for (auto& fn : wakers) fn();
}

size_t WorkQueue::waiters(const std::string& environment_id) {
  std::lock_guard<std::mutex> lock(waiters_mu_);
  auto it = waiters_.find(environment_id);
  return it == waiters_.end() ? 0 : it->second.size();
}

}  // namespace warren::queue
