#include "orchestrator/orchestrator.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "common/log.h"
#include "orchestrator/identity.h"
#include "sandbox/sys.h"

namespace warren::orchestrator {
namespace {

using sandbox::SandboxRecord;
using sandbox::SandboxState;

std::string Label(const SandboxRecord& r, const char* key) {
  auto it = r.labels.find(key);
  return it == r.labels.end() ? std::string() : it->second;
}

std::string MetaString(const Json& session, const char* key) {
  const Json* meta = session.is_object() && session.contains("metadata") ? &session["metadata"] : nullptr;
  if (meta == nullptr || !meta->is_object() || !meta->contains(key) || !(*meta)[key].is_string()) return "";
  return (*meta)[key].get<std::string>();
}

std::string JsonString(const Json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "";
  return j[key].get<std::string>();
}

// The session no longer wants a sandbox: archived, terminated.
bool SessionGone(const Json& s) {
  if (!s.is_object()) return true;
  if (s.contains("archived_at") && !s["archived_at"].is_null()) return true;
  return JsonString(s, "status") == "terminated";
}

bool IsRunnerArgv(const std::vector<std::string>& argv) {
  return !argv.empty() && argv[0] == kRunnerPath && argv.size() > 1 && argv[1] == "run";
}

// The launch shell of LaunchRunner (and its subshell, which waits for the
// runner): /bin/sh -c SCRIPT sh RUNNER run --work-id ... It lives as long as
// its runner, and briefly before the runner exists.
bool IsLauncherArgv(const std::vector<std::string>& argv) {
  return argv.size() > 5 && argv[0] == "/bin/sh" && argv[3] == "sh" && argv[4] == kRunnerPath && argv[5] == "run";
}

std::string ArgAfter(const std::vector<std::string>& argv, const std::string& flag) {
  for (size_t i = 0; i + 1 < argv.size(); ++i)
    if (argv[i] == flag) return argv[i + 1];
  return "";
}

bool Live(SandboxState s) { return s != SandboxState::kDestroyed && s != SandboxState::kDestroying; }

// ANTHROPIC_WORK_SECRET from the environment of a host process ("" when
// unreadable).
std::string RunnerSecret(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/environ";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string env;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || env.size() > (1u << 20)) break;
    env.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  static constexpr std::string_view kKey = "ANTHROPIC_WORK_SECRET=";
  size_t pos = 0;
  while (pos < env.size()) {
    size_t end = env.find('\0', pos);
    if (end == std::string::npos) end = env.size();
    std::string_view e(env.data() + pos, end - pos);
    if (e.substr(0, kKey.size()) == kKey) return std::string(e.substr(kKey.size()));
    pos = end + 1;
  }
  return "";
}

}  // namespace

Result<WorkItem> ParseWorkItem(const Json& work) {
  if (!work.is_object()) return Status::InvalidArgument("work item is not an object");
  WorkItem w;
  w.id = JsonString(work, "id");
  w.environment_id = JsonString(work, "environment_id");
  w.created_at = JsonString(work, "created_at");
  w.secret = JsonString(work, "secret");
  if (work.contains("data") && work["data"].is_object()) {
    w.type = JsonString(work["data"], "type");
    w.session_id = JsonString(work["data"], "id");
  }
  if (w.id.empty()) return Status::InvalidArgument("work item has no id");
  w.raw = work;
  w.raw["secret"] = nullptr;
  return w;
}

std::vector<std::string> UnansweredToolUses(const std::vector<Json>& events) {
  std::vector<std::string> uses;
  std::set<std::string> answered;
  for (const Json& e : events) {
    const std::string type = JsonString(e, "type");
    if (type == "agent.tool_use") uses.push_back(JsonString(e, "id"));
    else if (type == "user.tool_result" || type == "agent.tool_result") answered.insert(JsonString(e, "tool_use_id"));
  }
  std::vector<std::string> out;
  for (auto& id : uses)
    if (!id.empty() && !answered.count(id)) out.push_back(id);
  return out;
}

Json FailedToolResult(const std::string& tool_use_id, const std::string& message) {
  Json block = Json::object();
  block["type"] = "text";
  block["text"] = message;
  Json e = Json::object();
  e["type"] = "user.tool_result";
  e["tool_use_id"] = tool_use_id;
  e["is_error"] = true;
  e["content"] = Json::array({block});
  return e;
}

bool IsPermanent(const Status& s) {
  switch (s.code()) {
    case Code::kInvalidArgument:
    case Code::kUnauthenticated:
    case Code::kPermissionDenied:
    case Code::kNotFound:
    case Code::kConflict:
    case Code::kFailedPrecondition:
    case Code::kTooLarge:
      return true;
    default:
      return false;
  }
}

bool IsEnvironmentRefusal(const Status& s) {
  return s.code() == Code::kConflict && s.detail_code() == kEnvironmentHeldCode;
}

Orchestrator::Orchestrator(WorkSource* source, SandboxHost* sandboxes, Clock* clock, OrchestratorOptions options)
    : source_(source), sandboxes_(sandboxes), clock_(clock), options_(std::move(options)) {
  if (options_.max_concurrent_items < 1) options_.max_concurrent_items = 1;
  if (options_.drain_batch < 1) options_.drain_batch = 1;
  options_.janitor_concurrency = std::clamp(options_.janitor_concurrency, 1, 256);
  janitor_pool_ = std::make_unique<KeyedExecutor>(options_.janitor_concurrency);
}

Orchestrator::~Orchestrator() {
  Stop();
  for (auto& [id, r] : runners_)
    if (r.pidfd >= 0) ::close(r.pidfd);
}

Status Orchestrator::Start() {
  if (stopping_) janitor_pool_ = std::make_unique<KeyedExecutor>(options_.janitor_concurrency);  // after a Stop
  stopping_ = false;
  Adopt();
  ResumeHeldItems();
  for (int i = 0; i < options_.max_concurrent_items; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  poller_ = std::thread([this] { PollLoop(); });
  supervisor_ = std::thread([this] { SupervisorLoop(); });
  janitor_ = std::thread([this] { JanitorLoop(); });
  log::Info("orchestrator.started", {{"instance", options_.instance},
                                     {"max_concurrent_items", options_.max_concurrent_items},
                                     {"janitor_concurrency", options_.janitor_concurrency},
                                     {"runners_adopted", stats().runners_adopted}});
  return Status::Ok();
}

void Orchestrator::Stop() {
  if (stopping_.exchange(true)) return;
  source_->Interrupt();
  cv_.notify_all();
  space_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
  if (supervisor_.joinable()) supervisor_.join();
  if (janitor_.joinable()) janitor_.join();
  // No pass runs any more: drop the actions not started (the next start's
  // passes find them due again), wait for the running ones.
  const size_t dropped = janitor_pool_->Shutdown();
  {
    std::lock_guard<std::mutex> l(mu_);
    stats_.janitor_actions_dropped += static_cast<int64_t>(dropped);
  }
  log::Info("orchestrator.stopped", {{"instance", options_.instance}, {"janitor_actions_dropped", dropped}});
}

bool Orchestrator::Sleep(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, d, [this] { return stopping_.load(); });
  return !stopping_;
}

bool Orchestrator::Ours(const SandboxRecord& rec) const {
  return !rec.deleted && Label(rec, kLabelOrchestrator) == options_.instance && !Label(rec, kLabelSession).empty();
}

OrchestratorStats Orchestrator::stats() {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

std::vector<std::string> Orchestrator::Runners() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const auto& [id, r] : runners_) out.push_back(id);
  return out;
}

// ------------------------------------------------------------------ claiming

std::vector<WorkItem> Orchestrator::Dedupe(std::vector<WorkItem>* items) {
  std::map<std::string, size_t> newest;  // session -> index
  std::vector<WorkItem> keep, drop;
  for (size_t i = 0; i < items->size(); ++i) {
    const WorkItem& w = (*items)[i];
    if (w.type != "session" || w.session_id.empty()) {
      keep.push_back(w);  // HandleItem force-stops other types
      continue;
    }
    auto it = newest.find(w.session_id);
    if (it == newest.end()) {
      newest[w.session_id] = i;
    } else if ((*items)[it->second].created_at < w.created_at) {
      drop.push_back((*items)[it->second]);
      it->second = i;
    } else {
      drop.push_back(w);
    }
  }
  for (const auto& [sid, i] : newest) keep.push_back((*items)[i]);
  *items = std::move(keep);
  return drop;
}

bool Orchestrator::ClaimBatch(int block_ms, int* failures) {
  {
    std::unique_lock<std::mutex> l(mu_);
    space_cv_.wait(l, [this] {
      return stopping_ || busy_ + static_cast<int>(items_.size()) < options_.max_concurrent_items;
    });
    if (stopping_) return true;
  }
  auto first = source_->Poll(block_ms, options_.reclaim_older_than_ms);
  if (!first.ok() && IsEnvironmentRefusal(first.status())) {
    // Another orchestrator serves the environment (at start, or it took
    // over while this one was frozen past the holder TTL): claim nothing
    // more. Runners already launched keep serving their leases; the
    // queue's lease compare-and-set keeps one serving runner per session.
    refused_ = true;
    log::Error("orchestrator.environment_refused",
               {{"instance", options_.instance},
                {"error", first.status().message()},
                {"action", "stopped claiming new items; running runners keep serving their leases"}});
    if (options_.on_environment_refused) options_.on_environment_refused(first.status());
    return true;
  }
  if (!first.ok()) {
    ++*failures;
    auto backoff = std::min(options_.retry_max, options_.retry_initial * (1 << std::min(*failures, 6)));
    log::Warn("orchestrator.poll_failed", {{"error", first.status().ToString()}, {"retry_ms", backoff.count()}});
    Sleep(backoff);
    return false;
  }
  *failures = 0;
  if (!first->has_value()) return true;
  std::vector<WorkItem> batch{std::move(**first)};
  // Drain what else is waiting (non-blocking), bounded by the batch size
  // and by the free pool slots.
  int room;
  {
    std::lock_guard<std::mutex> l(mu_);
    room = options_.max_concurrent_items - busy_ - static_cast<int>(items_.size());
  }
  while (static_cast<int>(batch.size()) < std::min(options_.drain_batch, std::max(room, 1)) && !stopping_) {
    auto more = source_->Poll(0, options_.reclaim_older_than_ms);
    if (!more.ok() || !more->has_value()) break;
    batch.push_back(std::move(**more));
  }
  std::vector<WorkItem> dupes = Dedupe(&batch);
  for (const WorkItem& d : dupes) {
    log::Info("orchestrator.duplicate_stopped", {{"work_id", d.id}, {"session_id", d.session_id}});
    Status s = source_->Stop(d, true);
    if (!s.ok()) log::Warn("orchestrator.stop_failed", {{"work_id", d.id}, {"error", s.ToString()}});
  }
  std::lock_guard<std::mutex> l(mu_);
  stats_.items_claimed += static_cast<int64_t>(batch.size() + dupes.size());
  stats_.items_deduped += static_cast<int64_t>(dupes.size());
  for (auto& w : batch) {
    NoteDeliveryLocked(&w);
    items_.push_back(Job{std::move(w), 0});
  }
  cv_.notify_all();
  return true;
}

void Orchestrator::Wake() {
  source_->Invalidate();  // the run may be in an environment made since the last refresh
  {
    std::lock_guard<std::mutex> l(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void Orchestrator::PollLoop() {
  int failures = 0;
  if (options_.poll_continuously) {
    while (!stopping_ && !refused_) ClaimBatch(options_.poll_block_ms, &failures);
    return;
  }
  // Webhook mode: drain on Wake() and every fallback_drain. A drain claims
  // until the queue is empty (or the pool is full: then it waits for room
  // and goes on, so nothing woken for is left behind).
  bool first = true;  // one drain at start: work queued while we were down
  while (!stopping_ && !refused_) {
    std::string reason = "start";
    if (!first) {
      std::unique_lock<std::mutex> l(mu_);
      bool woken = cv_.wait_for(l, options_.fallback_drain, [this] { return stopping_ || wake_; });
      if (stopping_) return;
      reason = woken ? "webhook" : "fallback";
    }
    first = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      wake_ = false;
      ++stats_.drains;
    }
    log::Info("orchestrator.drain", {{"reason", reason}});
    int64_t before;
    do {
      before = stats().items_claimed;
      if (!ClaimBatch(0, &failures)) break;
    } while (!stopping_ && !refused_ && stats().items_claimed > before);
  }
}

void Orchestrator::WorkerLoop() {
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stopping_ || !items_.empty(); });
      if (stopping_) return;  // queued items are acked later by redelivery
      job = std::move(items_.front());
      items_.pop_front();
      ++busy_;
    }
    if (job.relaunch > 0) {
      Relaunch(job.item, job.relaunch);
    } else {
      ServeDelivery(job.item, job.claimed, /*ack=*/!job.acked);
      EndDelivery(job.item);
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      --busy_;
    }
    space_cv_.notify_all();
  }
}

// ------------------------------------------------------------------ per item

void Orchestrator::Timing::Mark(const char* name) {
  auto now = std::chrono::steady_clock::now();
  phases[name] = std::chrono::duration<double, std::milli>(now - last).count();
  last = now;
}

void Orchestrator::NoteDeliveryLocked(WorkItem* w) {
  if (w->claim_seq == 0) w->claim_seq = ++claim_seq_;
  Deliveries& d = deliveries_[w->id];
  d.newest = std::max(d.newest, w->claim_seq);
  ++d.in_flight;
}

void Orchestrator::EndDelivery(const WorkItem& w) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = deliveries_.find(w.id);
  if (it != deliveries_.end() && --it->second.in_flight <= 0) deliveries_.erase(it);
}

bool Orchestrator::SupersededLocked(const WorkItem& item) const {
  auto d = deliveries_.find(item.id);
  if (d != deliveries_.end() && d->second.newest > item.claim_seq) return true;
  auto r = runners_.find(item.id);
  return r != runners_.end() && r->second.item.claim_seq > item.claim_seq && r->second.item.secret != item.secret;
}

void Orchestrator::HandleItem(const WorkItem& item_in, std::chrono::steady_clock::time_point claimed) {
  WorkItem item = item_in;
  {
    std::lock_guard<std::mutex> l(mu_);
    NoteDeliveryLocked(&item);
  }
  ServeDelivery(item, claimed, /*ack=*/true);
  EndDelivery(item);
}

void Orchestrator::ServeDelivery(const WorkItem& item, std::chrono::steady_clock::time_point claimed, bool ack) {
  if (item.type != "session" || item.session_id.empty()) {
    log::Info("orchestrator.item_ignored", {{"work_id", item.id}, {"type", item.type}});
    (void)source_->Stop(item, true);
    return;
  }
  auto backoff = options_.retry_initial;
  for (int attempt = 1; !stopping_; ++attempt) {
    Timing t;
    t.start = claimed;
    t.Mark("queued_ms");  // claim -> a pool worker took it
    {
      // A later delivery of the item was claimed meanwhile (this one waited
      // for a worker, or is retrying): its token is the valid one. An ack
      // now would record this delivery over the later one's held-item
      // record (standalone), and the later delivery serves the item.
      std::lock_guard<std::mutex> l(mu_);
      if (SupersededLocked(item)) {
        log::Info("orchestrator.delivery_superseded",
                  {{"work_id", item.id}, {"session_id", item.session_id}, {"at", "ack"}, {"attempt", attempt}});
        return;
      }
    }
    Status s = ack ? source_->Ack(item) : Status::Ok();
    t.Mark("ack_ms");
    if (s.ok()) s = ServeItem(item, false, &t);
    if (s.ok()) {
      Json f = {{"work_id", item.id}, {"session_id", item.session_id}, {"path", t.path}, {"attempt", attempt},
                {"total_ms", std::chrono::duration<double, std::milli>(t.last - t.start).count()}};
      f.update(t.phases);
      log::Info("orchestrator.item_timing", f);
      return;
    }
    if (IsPermanent(s)) {
      log::Warn("orchestrator.item_failed",
                {{"work_id", item.id}, {"session_id", item.session_id}, {"error", s.ToString()}, {"permanent", true}});
      ReportToSession(item, s);
      // The item cannot be served (stopped already, session gone, bad
      // metadata): release it so nothing waits on it.
      if (s.code() != Code::kConflict) (void)source_->Stop(item, true);
      else source_->Release(item);
      return;
    }
    if (attempt >= options_.max_item_attempts) {
      // Never lost: the item keeps its lease until it lapses, then it is
      // delivered again.
      log::Error("orchestrator.item_deferred",
                 {{"work_id", item.id}, {"session_id", item.session_id}, {"error", s.ToString()}, {"attempts", attempt}});
      source_->Release(item);
      return;
    }
    log::Warn("orchestrator.item_retry", {{"work_id", item.id}, {"session_id", item.session_id},
                                          {"error", s.ToString()}, {"retry_ms", backoff.count()}});
    if (!Sleep(backoff)) return;
    backoff = std::min(options_.retry_max, backoff * 2);
  }
}

Status Orchestrator::ServeItem(const WorkItem& item, bool resume, Timing* t) {
  auto session = source_->GetSession(item.environment_id, item.session_id);
  if (t) t->Mark("session_check_ms");
  if (!session.ok()) {
    if (session.status().code() == Code::kNotFound) {
      log::Info("orchestrator.session_gone", {{"work_id", item.id}, {"session_id", item.session_id}});
      (void)source_->Stop(item, true);
      return Status::Ok();
    }
    return session.status();
  }
  KeyedLocks::Guard sl = session_locks_.Lock(item.session_id);
  if (t) t->Mark("session_lock_ms");
  if (SessionGone(*session)) {
    log::Info("orchestrator.session_ended", {{"work_id", item.id}, {"session_id", item.session_id}});
    (void)source_->Stop(item, true);
    auto rec = FindSessionSandbox(item.session_id);
    if (rec.ok()) ArchiveFor(*rec, "session ended");
    return Status::Ok();
  }
  bool fresh = false;
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, EnsureSandbox(item, *session, t, &fresh));
  return LaunchRunner(item, rec, resume, t, fresh);
}

std::vector<sandbox::HostBind> Orchestrator::RunnerBinds() const {
  std::vector<sandbox::HostBind> b;
  if (!options_.runner_host_path.empty()) b.push_back({options_.runner_host_path, kRunnerPath});
  if (!options_.socket_host_dir.empty()) b.push_back({options_.socket_host_dir, kSocketDir});
  return b;
}

Result<SandboxRecord> Orchestrator::FindSessionSandbox(const std::string& session_id) {
  WARREN_ASSIGN_OR_RETURN(auto all, sandboxes_->ListWithLabel(kLabelSession, session_id));
  for (auto& r : all) {
    if (r.deleted || !Live(r.state)) continue;
    if (Label(r, kLabelSession) == session_id) return r;
  }
  return Status::NotFound("no sandbox for session " + session_id);
}

Result<sandbox::NetworkPolicy> Orchestrator::WantedNetwork(const WorkItem& item, const Json& session, bool* decided) {
  *decided = false;
  sandbox::NetworkPolicy p;
  p.network = options_.network;
  if (p.network == "limited") p.allow_hosts = options_.allow_hosts;
  if (options_.environment_network) {
    WARREN_ASSIGN_OR_RETURN(auto net, options_.environment_network(item.environment_id, session));
    if (!net.network.empty()) {
      *decided = true;
      p.network = net.network;
      p.allow_hosts = p.network == "limited" ? net.allow_hosts : std::vector<std::string>{};
    }
  }
  if (p.network == "isolated" || p.network == "limited") p.allow_cidrs = options_.allow_cidrs;
  return p;
}

Status Orchestrator::ApplyEnvironmentNetwork(const WorkItem& item, const Json& session, SandboxRecord* rec) {
  bool decided = false;
  auto wanted = WantedNetwork(item, session, &decided);
  // An environment that is gone decides nothing for a sandbox that exists.
  if (!wanted.ok() && wanted.status().code() == Code::kNotFound) return Status::Ok();
  WARREN_ASSIGN_OR_RETURN(sandbox::NetworkPolicy want, std::move(wanted));
  if (!decided) return Status::Ok();  // the sandbox keeps what it was made with
  // Compared in the record's canonical forms (host patterns, CIDRs).
  if (want.network == "limited") {
    auto hosts = sandbox::HostAllowlist::Parse(want.allow_hosts);
    if (!hosts.ok()) return Status::FailedPrecondition("config.networking: " + hosts.status().message());
    want.allow_hosts = hosts->entries();
  }
  std::vector<std::string> cidrs;
  for (const auto& c : want.allow_cidrs) {
    auto cidr = sandbox::ParseIpv4Cidr(c);
    std::string canon = cidr.ok() ? cidr->ToString() : c;
    if (std::find(cidrs.begin(), cidrs.end(), canon) == cidrs.end()) cidrs.push_back(canon);
  }
  want.allow_cidrs = std::move(cidrs);
  // What the environment does not speak about stays as it is.
  want.dns = want.network == "none" ? std::vector<std::string>{} : rec->dns;
  want.block_all = want.network == "none" ? false : rec->block_all;
  if (rec->network == want.network && rec->allow_hosts == want.allow_hosts && rec->allow_cidrs == want.allow_cidrs &&
      rec->dns == want.dns && rec->block_all == want.block_all) {
    return Status::Ok();
  }
  std::string before = rec->network;
  WARREN_ASSIGN_OR_RETURN(*rec, sandboxes_->SetNetwork(rec->id, want));
  log::Info("orchestrator.sandbox_network_updated", {{"sandbox", rec->id},
                                                     {"session_id", item.session_id},
                                                     {"from", before},
                                                     {"network", rec->network},
                                                     {"allow_hosts", static_cast<int64_t>(rec->allow_hosts.size())}});
  return Status::Ok();
}

Result<SandboxRecord> Orchestrator::EnsureSandbox(const WorkItem& item, const Json& session, Timing* t,
                                                  bool* fresh) {
  *fresh = false;
  auto found = FindSessionSandbox(item.session_id);
  if (t) t->Mark("find_ms");
  SandboxRecord rec;
  if (found.ok()) {
    rec = std::move(found).value();
    if (t) t->path = sandbox::StateName(rec.state) == "started" ? "running" : sandbox::StateName(rec.state);
    if (Label(rec, kLabelEnvironment) != item.environment_id)
      return Status::FailedPrecondition("sandbox " + rec.id + " of session " + item.session_id +
                                        " belongs to another environment");
    WARREN_RETURN_IF_ERROR(ApplyEnvironmentNetwork(item, session, &rec));
    if (t) t->Mark("network_ms");
  } else if (found.status().code() != Code::kNotFound) {
    return found.status();
  } else if (std::string prepared = MetaString(session, "warren.sandbox_id"); !prepared.empty()) {
    auto p = sandboxes_->Get(prepared);
    if (!p.ok()) {
      if (p.status().code() == Code::kNotFound)
        return Status::FailedPrecondition("prepared sandbox " + prepared + " does not exist");
      return p.status();
    }
    if (Label(*p, kLabelMode) != "prepared" || !Label(*p, kLabelSession).empty())
      return Status::FailedPrecondition("sandbox " + prepared + " is not a prepared sandbox (warren.mode=prepared, unbound)");
    if (Label(*p, kLabelEnvironment) != item.environment_id)
      return Status::FailedPrecondition("prepared sandbox " + prepared + " belongs to another environment");
    auto labels = p->labels;
    labels[kLabelSession] = item.session_id;
    labels[kLabelMode] = "session";
    labels[kLabelOrchestrator] = options_.instance;
    labels[kLabelPrepared] = "true";  // every other label (credential expiry, the caller's) is kept
    WARREN_ASSIGN_OR_RETURN(rec, sandboxes_->SetLabels(p->id, labels));
    if (t) t->path = "bound";
    log::Info("orchestrator.sandbox_bound", {{"sandbox", rec.id}, {"session_id", item.session_id}});
  } else {
    sandbox::CreateOptions c;
    c.name = item.session_id;
    std::string snap = MetaString(session, "warren.snapshot");
    if (snap.empty() && options_.environment_snapshot) {
      WARREN_ASSIGN_OR_RETURN(snap, options_.environment_snapshot(item.environment_id));
    }
    c.snapshot = snap.empty() ? options_.default_snapshot : snap;
    c.labels = {{kLabelSession, item.session_id},
                {kLabelEnvironment, item.environment_id},
                {kLabelMode, "session"},
                {kLabelOrchestrator, options_.instance}};
    bool decided = false;
    WARREN_ASSIGN_OR_RETURN(sandbox::NetworkPolicy net, WantedNetwork(item, session, &decided));
    c.network = net.network;
    c.allow_hosts = net.allow_hosts;
    c.allow_cidrs = net.allow_cidrs;
    c.workdir = options_.workdir;
    c.host_binds = RunnerBinds();
    if (t) {
      t->Mark("create_options_ms");  // snapshot and network choice
      t->path = "cold";
    }
    auto created = sandboxes_->Create(c);
    if (t) t->Mark("sandbox_create_ms");
    if (!created.ok()) {
      // A bad snapshot name in metadata is the session's problem, not a
      // transient one.
      if (created.status().code() == Code::kNotFound) return Status::FailedPrecondition(created.status().ToString());
      return created.status();
    }
    rec = std::move(created).value();
    *fresh = rec.state == SandboxState::kStarted;
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.sandboxes_created;
    log::Info("orchestrator.sandbox_created", {{"sandbox", rec.id}, {"session_id", item.session_id},
                                               {"snapshot", c.snapshot}, {"network", c.network}});
  }
  if (Label(rec, kLabelPrepared) == "true") {
    // A prepared sandbox was made without the runner and the socket dir:
    // they are bind mounts, fixed at start, so it is stopped (its files
    // kept), given them, and started below. Idempotent after a crash.
    std::vector<sandbox::HostBind> binds = RunnerBinds();
    bool missing = false;
    for (const auto& b : binds) {
      bool has = std::any_of(rec.host_binds.begin(), rec.host_binds.end(),
                             [&](const sandbox::HostBind& h) { return h.path == b.path && h.host_path == b.host_path; });
      missing = missing || !has;
    }
    if (missing) {
      for (const auto& h : rec.host_binds)
        if (std::none_of(binds.begin(), binds.end(), [&](const sandbox::HostBind& b) { return b.path == h.path; }))
          binds.push_back(h);
      if (rec.state == SandboxState::kArchived) {
        WARREN_ASSIGN_OR_RETURN(rec, sandboxes_->Restore(rec.id));
      }
      if (rec.state == SandboxState::kStarted || rec.state == SandboxState::kPaused || rec.state == SandboxState::kError) {
        WARREN_ASSIGN_OR_RETURN(rec, sandboxes_->Stop(rec.id, false));
      }
      WARREN_ASSIGN_OR_RETURN(rec, sandboxes_->SetHostBinds(rec.id, binds));
      log::Info("orchestrator.runner_mounted", {{"sandbox", rec.id}, {"session_id", item.session_id}});
    }
  }
  if (rec.state == SandboxState::kArchived) {
    WARREN_ASSIGN_OR_RETURN(rec, sandboxes_->Restore(rec.id));
    if (t) t->Mark("sandbox_restore_ms");
    log::Info("orchestrator.sandbox_restored", {{"sandbox", rec.id}, {"session_id", item.session_id}});
  }
  if (rec.state == SandboxState::kStopped || rec.state == SandboxState::kError) {
    WARREN_ASSIGN_OR_RETURN(rec, sandboxes_->Start(rec.id));
    if (t) t->Mark("sandbox_start_ms");
    *fresh = true;
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.sandboxes_started;
    log::Info("orchestrator.sandbox_started", {{"sandbox", rec.id}, {"session_id", item.session_id}});
  }
  if (rec.state != SandboxState::kStarted)
    return Status::Unavailable("sandbox " + rec.id + " is " + sandbox::StateName(rec.state));
  std::lock_guard<std::mutex> l(mu_);
  memo_[rec.id].quiet_since = 0;
  return rec;
}

Status Orchestrator::LaunchRunner(const WorkItem& item, const SandboxRecord& rec, bool resume, Timing* t,
                                  bool fresh) {
  {
    std::lock_guard<std::mutex> l(mu_);
    // A later delivery of this item was claimed (its runner tracked, or it
    // is on its way here): only its token is valid. A delivery whose
    // preparation (a packages build) outlasted its lease ends here, and the
    // later one launches.
    if (SupersededLocked(item)) {
      log::Info("orchestrator.delivery_superseded",
                {{"work_id", item.id}, {"session_id", item.session_id}, {"at", "launch"}});
      return Status::Ok();
    }
    if (auto it = runners_.find(item.id); it != runners_.end()) {
      // A runner of this item runs. Launched with an earlier delivery, its
      // lease is lost (the queue redelivered the item): it exits at its
      // next heartbeat (3), and this delivery is launched then, at once
      // (OnRunnerExit), instead of at the next redelivery. Only the newest
      // such delivery is kept.
      if (it->second.item.secret != item.secret && it->second.item.claim_seq < item.claim_seq) {
        auto sit = successors_.find(item.id);
        if (sit == successors_.end() || sit->second.claim_seq < item.claim_seq) {
          successors_[item.id] = item;
          log::Info("orchestrator.delivery_waiting", {{"work_id", item.id},
                                                      {"session_id", item.session_id},
                                                      {"reason", "the item's runner was launched with an earlier "
                                                                 "delivery; this one is launched when it exits"}});
        }
      }
      return Status::Ok();  // already served (a redelivery of an item we run)
    }
    if (resume) {
      // Never two runners for one session: a relaunch yields to any live
      // runner of the session (it serves the session's calls).
      for (const auto& [id, r] : runners_) {
        if (r.item.session_id == item.session_id) {
          log::Info("orchestrator.relaunch_skipped", {{"work_id", item.id}, {"session_id", item.session_id},
                                                      {"reason", "runner " + id + " serves the session"}});
          return Status::Ok();
        }
      }
    }
  }
  // A runner already serving this item (adopted after a restart)? A launch
  // of an earlier incarnation of this process may still be under way (its
  // shell survives a SIGKILL of the service and starts the runner a moment
  // later): wait for it to settle rather than launch a second runner.
  std::vector<SandboxProcess> procs;
  for (int settle = 0; !fresh; ++settle) {
    WARREN_ASSIGN_OR_RETURN(procs, sandboxes_->Processes(rec.id));
    bool launching = false;
    for (const auto& p : procs) {
      if (IsRunnerArgv(p.argv) && ArgAfter(p.argv, "--work-id") == item.id) {
        Track(Runner{item, rec.id, p.host_pid, p.start_time, -1, NowMs(), true});
        log::Info("orchestrator.runner_adopted", {{"work_id", item.id}, {"session_id", item.session_id},
                                                  {"sandbox", rec.id}});
        return Status::Ok();
      }
      if (IsRunnerArgv(p.argv) && ArgAfter(p.argv, "--session-id") == item.session_id) {
        if (resume) {
          log::Info("orchestrator.relaunch_skipped", {{"work_id", item.id}, {"session_id", item.session_id},
                                                      {"reason", "a runner of the session runs in its sandbox"}});
          return Status::Ok();
        }
        // A runner of an earlier delivery (its lease lapsed while the
        // service was down, say) is still winding down: it ends at its next
        // heartbeat, after recording the result of a call in flight in the
        // journal. Never two runners for one session: wait for it (retried
        // with backoff).
        return Status::Unavailable("a runner of an earlier delivery (" + ArgAfter(p.argv, "--work-id") +
                                   ") still runs in sandbox " + rec.id);
      }
      if (IsLauncherArgv(p.argv) && ArgAfter(p.argv, "--session-id") == item.session_id) launching = true;
    }
    if (!launching) break;
    if (t) t->Mark("runner_settle_ms");
    if (settle >= 150 || stopping_) {
      return Status::Unavailable("a launch of a runner for session " + item.session_id + " is still under way in sandbox " +
                                 rec.id);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // The runner is detached inside the sandbox (its own session, output to
  // a log file there) so that it outlives this process; the subshell records
  // its exit status next to the log.
  const std::string dir = kRunnerStateDir;
  // (The subshell's own stdio is redirected too, or the exec would wait
  // for the runner to close its output pipes.)
  std::string script = "mkdir -p " + dir + " \"" + options_.workdir + "\" || exit 1; rm -f " + dir +
                       "/$ANTHROPIC_WORK_ID.exit; ( \"$@\" >>" + dir +
                       "/$ANTHROPIC_WORK_ID.log 2>&1; echo $? >" + dir +
                       "/$ANTHROPIC_WORK_ID.exit ) </dev/null >/dev/null 2>&1 & exit 0";
  sandbox::ExecRequest req;
  req.argv = {"/bin/sh", "-c", script, "sh", kRunnerPath, "run", "--work-id", item.id, "--session-id",
              item.session_id, "--environment-id", item.environment_id, "--workdir", options_.workdir,
              "--max-idle", std::to_string(options_.runner_max_idle.count()) + "ms", "--log-format", "json",
              "--call-journal", dir + "/calls"};
  if (resume) req.argv.push_back("--resume-lease");
  if (item.sole_worker) req.argv.push_back("--sole-worker");
  req.env = {"ANTHROPIC_WORK_ID=" + item.id, "ANTHROPIC_WORK_SECRET=" + item.secret,
             "ANTHROPIC_BASE_URL=" + options_.runner_base_url};
  if (Label(rec, kLabelPrepared) == "true" && options_.prepared_runner_env) {
    // The prepared sandbox's live env credentials (never expired ones). A
    // credential never shadows the runner's own variables.
    WARREN_ASSIGN_OR_RETURN(std::vector<std::string> extra, options_.prepared_runner_env(rec.id));
    for (auto& e : extra) {
      std::string name = e.substr(0, e.find('='));
      if (name == "ANTHROPIC_WORK_ID" || name == "ANTHROPIC_WORK_SECRET" || name == "ANTHROPIC_BASE_URL") {
        log::Warn("orchestrator.credential_skipped", {{"sandbox", rec.id}, {"name", name}});
        continue;
      }
      req.env.push_back(std::move(e));
    }
  }
  req.cwd = "/";  // the workdir may not exist yet: the script makes it
  req.timeout = std::chrono::milliseconds(30000);
  if (t) t->Mark("runner_check_ms");  // the scan for a runner already there
  WARREN_ASSIGN_OR_RETURN(sandbox::ExecResult r, sandboxes_->Exec(rec.id, req));
  if (t) t->Mark("runner_exec_ms");
  if (r.exit_code != 0)
    return Status::Internal("runner launch exited " + std::to_string(r.exit_code) + ": " + r.stderr_data.substr(0, 500));
  // Find it (the subshell has forked it by now or very soon). The runner is
  // already at work meanwhile: this only starts its supervision, so look
  // often (every 2 ms, for up to 2 s).
  const auto find_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (int i = 0; std::chrono::steady_clock::now() < find_deadline && !stopping_; ++i) {
    WARREN_ASSIGN_OR_RETURN(procs, sandboxes_->Processes(rec.id));
    for (const auto& p : procs) {
      if (IsRunnerArgv(p.argv) && ArgAfter(p.argv, "--work-id") == item.id) {
        if (t) t->Mark("runner_found_ms");
        Track(Runner{item, rec.id, p.host_pid, p.start_time, -1, NowMs(), false});
        log::Info("orchestrator.runner_launched", {{"work_id", item.id}, {"session_id", item.session_id},
                                                   {"sandbox", rec.id}, {"pid", p.host_pid}});
        return Status::Ok();
      }
    }
    if (i % 5 == 4) {  // (a file read records activity on the sandbox: not at every look)
      auto exit_file = sandboxes_->ReadFile(rec.id, dir + "/" + item.id + ".exit");
      if (exit_file.ok()) {
        // It ran and ended already (a stopped item, say): nothing to supervise.
        log::Info("orchestrator.runner_exited", {{"work_id", item.id}, {"status", exit_file.value()}});
        source_->Release(item);
        return Status::Ok();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (auto exit_file = sandboxes_->ReadFile(rec.id, dir + "/" + item.id + ".exit"); exit_file.ok()) {
    log::Info("orchestrator.runner_exited", {{"work_id", item.id}, {"status", exit_file.value()}});
    source_->Release(item);
    return Status::Ok();
  }
  return Status::Internal("runner for " + item.id + " did not start");
}

void Orchestrator::Track(Runner r) {
  r.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, r.host_pid, 0));
  if (r.pidfd >= 0 && !sandbox::ProcessAlive(r.host_pid, r.start_time)) {
    ::close(r.pidfd);
    r.pidfd = -1;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (r.adopted) ++stats_.runners_adopted;
  else ++stats_.runners_launched;
  memo_[r.sandbox_id].quiet_since = 0;
  bool inserted = runners_.emplace(r.item.id, r).second;
  if (!inserted) {
    if (r.pidfd >= 0) ::close(r.pidfd);
  }
}

void Orchestrator::Adopt() {
  auto all = sandboxes_->List();
  if (!all.ok()) {
    log::Warn("orchestrator.adopt_failed", {{"error", all.status().ToString()}});
    return;
  }
  for (const auto& rec : *all) {
    if (!Ours(rec) || rec.state != SandboxState::kStarted) continue;
    auto procs = sandboxes_->Processes(rec.id);
    if (!procs.ok()) continue;
    for (const auto& p : *procs) {
      if (!IsRunnerArgv(p.argv)) continue;
      WorkItem w;
      w.id = ArgAfter(p.argv, "--work-id");
      w.session_id = ArgAfter(p.argv, "--session-id");
      w.environment_id = ArgAfter(p.argv, "--environment-id");
      w.type = "session";
      w.sole_worker = std::find(p.argv.begin(), p.argv.end(), "--sole-worker") != p.argv.end();
      if (w.id.empty()) continue;
      // The delivery's credentials, so that a crash of this runner can be
      // relaunched with them (its environment, read through /proc).
      w.secret = RunnerSecret(p.host_pid);
      Track(Runner{w, rec.id, p.host_pid, p.start_time, -1, NowMs(), true});
      log::Info("orchestrator.runner_adopted", {{"work_id", w.id}, {"session_id", w.session_id}, {"sandbox", rec.id}});
    }
  }
}

void Orchestrator::ResumeHeldItems() {
  auto held = source_->HeldItems();
  if (!held.ok()) {
    log::Warn("orchestrator.resume_failed", {{"error", held.status().ToString()}});
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  for (WorkItem& w : *held) {
    if (w.type != "session" || w.session_id.empty() || runners_.count(w.id)) continue;  // adopted: its runner lives
    // Relaunched like a crashed runner (resume the lease), a moment later
    // so that a launch of the previous incarnation still under way is seen
    // by LaunchRunner (which then adopts its runner instead).
    log::Info("orchestrator.item_resumed", {{"work_id", w.id}, {"session_id", w.session_id}});
    const std::string id = w.id;
    relaunches_[id] = PendingRelaunch{std::move(w), "", 1, NowMs() + 300};
  }
}

// ---------------------------------------------------------------- supervision

void Orchestrator::SupervisorLoop() {
  while (!stopping_) {
    std::vector<pollfd> fds;
    std::vector<std::string> ids;
    std::vector<std::string> dead;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [id, r] : runners_) {
        if (r.pidfd < 0) {
          if (!sandbox::ProcessAlive(r.host_pid, r.start_time)) dead.push_back(id);
          continue;
        }
        fds.push_back({r.pidfd, POLLIN, 0});
        ids.push_back(id);
      }
    }
    ReleaseDueRelaunches();
    if (dead.empty()) {
      int n = ::poll(fds.data(), fds.size(), 100);
      if (n > 0) {
        for (size_t i = 0; i < fds.size(); ++i)
          if (fds[i].revents != 0) dead.push_back(ids[i]);
      }
    }
    for (const auto& id : dead) {
      Runner r;
      {
        std::lock_guard<std::mutex> l(mu_);
        auto it = runners_.find(id);
        if (it == runners_.end()) continue;
        r = it->second;
        runners_.erase(it);
        if (r.pidfd >= 0) ::close(r.pidfd);
      }
      OnRunnerExit(r, ReadRunnerExit(r.sandbox_id, id));
    }
  }
}

std::string Orchestrator::ReadRunnerExit(const std::string& sandbox_id, const std::string& work_id) {
  // The subshell that launched the runner writes its status after the
  // runner's exit, whenever it is scheduled again: under load that can be
  // long after the pidfd fired. Reading "unknown" too early counts a clean
  // exit as a crash (and, for an adopted runner, force-stops its item), so
  // wait while the subshell still lives in the sandbox (its argv carries the
  // work id), up to kRunnerExitWaitMs; stop at once when it is gone.
  constexpr int64_t kRunnerExitWaitMs = 30000;
  const std::string path = std::string(kRunnerStateDir) + "/" + work_id + ".exit";
  const int64_t deadline = NowMs() + kRunnerExitWaitMs;
  auto read = [&]() -> std::string {
    auto f = sandboxes_->ReadFile(sandbox_id, path);
    if (!f.ok() || f->empty()) return "";
    std::string status = *f;
    while (!status.empty() && (status.back() == '\n' || status.back() == ' ')) status.pop_back();
    return status;
  };
  for (int i = 0;; ++i) {
    if (std::string status = read(); !status.empty()) return status;
    if (stopping_ || NowMs() >= deadline) return "unknown";
    if (i % 5 == 4) {  // every ~50 ms: is the writer still there?
      auto procs = sandboxes_->Processes(sandbox_id);
      bool writer = false;
      if (procs.ok()) {
        for (const auto& p : *procs) {
          for (const auto& a : p.argv) writer = writer || a == work_id;
        }
      }
      if (!writer) {
        std::string status = read();  // it may have written just before leaving
        return status.empty() ? "unknown" : status;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Orchestrator::ReleaseDueRelaunches() {
  std::lock_guard<std::mutex> l(mu_);
  const int64_t now = NowMs();
  bool any = false;
  for (auto it = relaunches_.begin(); it != relaunches_.end();) {
    if (it->second.due_ms > now) {
      ++it;
      continue;
    }
    items_.push_back(Job{std::move(it->second.item), it->second.attempt});
    it = relaunches_.erase(it);
    any = true;
  }
  if (any) cv_.notify_all();
}

void Orchestrator::OnRunnerExit(const Runner& r, const std::string& status) {
  const std::string& id = r.item.id;
  // A later delivery of the item waiting for this runner (LaunchRunner):
  // the runner's own lease is lost, so whatever its exit, the later
  // delivery is launched now with its own lease.
  std::optional<WorkItem> next;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = successors_.find(id);
    if (it != successors_.end()) {
      if (it->second.claim_seq > r.item.claim_seq) next = std::move(it->second);
      successors_.erase(it);
    }
  }
  // 0: the idle window ended or the item stopped. 3: the lease was lost
  // (the item is someone else's now). 2: a usage error, which a relaunch
  // cannot fix. Anything else (a signal: 128+N, a failure, no status at
  // all) is a crash.
  if (status == "0" || status == "2" || status == "3" || next) {
    {
      std::lock_guard<std::mutex> l(mu_);
      relaunch_count_.erase(id);
      if (next && status != "0" && status != "2" && status != "3") ++stats_.runners_crashed;
    }
    log::Info("orchestrator.runner_exited",
              {{"work_id", id}, {"session_id", r.item.session_id}, {"sandbox", r.sandbox_id}, {"exit", status}});
    // The runner stopped its item or lost the lease. (The standalone
    // source forgets this delivery only: a later one's record is kept.)
    source_->Release(r.item);
    if (next) LaunchSuccessor(*next, status);
    return;
  }
  int attempt;
  {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.runners_crashed;
    attempt = relaunch_count_[id] + 1;
  }
  log::Warn("orchestrator.runner_crashed",
            {{"work_id", id}, {"session_id", r.item.session_id}, {"sandbox", r.sandbox_id}, {"exit", status}});
  ScheduleRelaunch(r.item, r.sandbox_id, attempt, "runner exited " + status);
}

void Orchestrator::LaunchSuccessor(const WorkItem& next_in, const std::string& after) {
  if (stopping_) return;  // the later delivery's lease lapses; the queue delivers the item again
  WorkItem next = next_in;
  next.fresh_lease = false;  // an ordinary first heartbeat: nobody beat this delivery's lease yet
  log::Info("orchestrator.delivery_handed_over",
            {{"work_id", next.id}, {"session_id", next.session_id}, {"previous_runner_exit", after}});
  {
    std::lock_guard<std::mutex> l(mu_);
    NoteDeliveryLocked(&next);  // keeps its stamp; in flight until served
    items_.push_back(Job{next, 0, std::chrono::steady_clock::now(), /*acked=*/true});
  }
  cv_.notify_all();
}

void Orchestrator::ScheduleRelaunch(const WorkItem& item, const std::string& sandbox_id, int attempt,
                                    const std::string& why) {
  if (stopping_) return;  // the next start re-adopts or the lease lapses
  const bool no_secret = item.secret.empty();
  if (no_secret || attempt > options_.runner_max_relaunches) {
    {
      std::lock_guard<std::mutex> l(mu_);
      relaunch_count_.erase(item.id);
      ++stats_.items_given_up;
    }
    log::Error("orchestrator.runner_gave_up",
               {{"work_id", item.id},
                {"session_id", item.session_id},
                {"sandbox", sandbox_id},
                {"relaunches", attempt - 1},
                {"error", why},
                {"reason", no_secret ? "the item's credentials are unknown (adopted runner)"
                                     : "the runner kept crashing"},
                {"action", "work item force-stopped; the queue delivers the session's pending calls again"}});
    Status s = source_->Stop(item, true);
    if (!s.ok()) log::Warn("orchestrator.stop_failed", {{"work_id", item.id}, {"error", s.ToString()}});
    return;
  }
  auto delay = options_.relaunch_initial * (1 << std::min(attempt - 1, 10));
  delay = std::min(delay, options_.retry_max);
  {
    std::lock_guard<std::mutex> l(mu_);
    relaunches_[item.id] = PendingRelaunch{item, sandbox_id, attempt, NowMs() + delay.count()};
    if (!sandbox_id.empty()) memo_[sandbox_id].quiet_since = 0;
  }
  log::Info("orchestrator.runner_relaunch_scheduled", {{"work_id", item.id},
                                                       {"session_id", item.session_id},
                                                       {"attempt", attempt},
                                                       {"max", options_.runner_max_relaunches},
                                                       {"delay_ms", delay.count()}});
}

void Orchestrator::ReportToSession(const WorkItem& item, const Status& s) {
  // FailedPrecondition / InvalidArgument: the session's own setup cannot be
  // served (its environment's packages, a prepared sandbox or a snapshot
  // named in its metadata). Without a word to the session its calls would
  // wait, and be delivered again, forever.
  if (s.code() != Code::kFailedPrecondition && s.code() != Code::kInvalidArgument) return;
  const std::string message = "Warren could not prepare the sandbox for this session: " + s.message();
  Status r = source_->FailItem(item, message);
  if (r.ok()) {
    log::Info("orchestrator.session_error_reported", {{"work_id", item.id}, {"session_id", item.session_id},
                                                      {"message", message}});
  } else {
    log::Warn("orchestrator.session_error_unreported",
              {{"work_id", item.id}, {"session_id", item.session_id}, {"error", r.ToString()}});
  }
}

void Orchestrator::Relaunch(const WorkItem& item_in, int attempt) {
  {
    std::lock_guard<std::mutex> l(mu_);
    relaunch_count_[item_in.id] = attempt;
  }
  // A resumed item whose lease nobody beat yet takes it like a first
  // launch; any later relaunch of its runner takes over that runner's lease.
  WorkItem item = item_in;
  item.fresh_lease = false;
  Status s = ServeItem(item, /*resume=*/!item_in.fresh_lease);
  if (s.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.runners_relaunched;
    log::Info("orchestrator.runner_relaunched",
              {{"work_id", item.id}, {"session_id", item.session_id}, {"attempt", attempt}});
    return;
  }
  if (IsPermanent(s)) {
    log::Warn("orchestrator.item_failed",
              {{"work_id", item.id}, {"session_id", item.session_id}, {"error", s.ToString()}, {"permanent", true}});
    {
      std::lock_guard<std::mutex> l(mu_);
      relaunch_count_.erase(item.id);
    }
    ReportToSession(item, s);
    if (s.code() != Code::kConflict) (void)source_->Stop(item, true);
    else source_->Release(item);
    return;
  }
  ScheduleRelaunch(item, "", attempt + 1, s.ToString());
}

// ------------------------------------------------------------------- janitor

void Orchestrator::JanitorLoop() {
  // The pass hands its actions to the pool and returns: the next pass
  // starts on time even while a slow stop runs (it skips that sandbox).
  while (Sleep(options_.janitor_interval)) JanitorPass(/*wait=*/false);
}

void Orchestrator::ExpireCredentials() {
  if (!options_.sweep_credentials) return;
  auto expired = options_.sweep_credentials();
  if (!expired.ok()) {
    log::Warn("orchestrator.credential_sweep_failed", {{"error", expired.status().ToString()}});
    return;
  }
  for (const std::string& sbx : *expired) {
    // The runner's environment still holds the expired values: end it. It
    // posts a cancelled result for a tool call in flight and releases its
    // item; the next work item of the session launches a runner without
    // them (LaunchRunner reads the live entries only).
    std::vector<Runner> victims;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [id, r] : runners_)
        if (r.sandbox_id == sbx) victims.push_back(r);
    }
    for (const Runner& r : victims) {
      int rc = -1;
      if (r.pidfd >= 0) {
        rc = static_cast<int>(::syscall(SYS_pidfd_send_signal, r.pidfd, SIGTERM, nullptr, 0));
      } else if (sandbox::ProcessAlive(r.host_pid, r.start_time)) {
        rc = ::kill(r.host_pid, SIGTERM);
      }
      std::lock_guard<std::mutex> l(mu_);
      if (rc == 0) ++stats_.runners_credentials_expired;
      log::Info("orchestrator.runner_credentials_expired",
                {{"work_id", r.item.id}, {"session_id", r.item.session_id}, {"sandbox", sbx}, {"signalled", rc == 0}});
    }
  }
}

void Orchestrator::JanitorPass(bool wait) {
  if (stopping_) return;
  ExpireCredentials();
  // The started sandboxes at every pass (idle stop, orphaned runners); all
  // of them (the session checks of stopped ones, the retention of archived
  // ones) once per session_check_interval: a pass costs O(started), not
  // O(every sandbox ever made), between those.
  const int64_t now = NowMs();
  const bool full = last_full_pass_ < 0 || now - last_full_pass_ >= options_.session_check_interval.count();
  if (full) last_full_pass_ = now;
  auto all = full ? sandboxes_->List() : sandboxes_->ListInState(SandboxState::kStarted);
  if (!all.ok()) {
    log::Warn("orchestrator.janitor_failed", {{"error", all.status().ToString()}});
    return;
  }
  // What runs in the started ones: one snapshot for the pass (one /proc
  // walk, not one per sandbox). A stop re-checks its sandbox on its own.
  // A sandbox with an action in flight is left out of this pass.
  std::vector<SandboxRecord> started;
  for (const auto& rec : *all)
    if (rec.state == SandboxState::kStarted && Ours(rec) && !janitor_pool_->Busy(rec.id)) started.push_back(rec);
  std::map<std::string, std::vector<SandboxProcess>> procs;
  if (!started.empty()) {
    auto snap = sandboxes_->ProcessesOfMany(started);
    if (!snap.ok()) {
      log::Warn("orchestrator.janitor_failed", {{"error", snap.status().ToString()}});
      return;
    }
    procs = std::move(*snap);
  }
  static const std::vector<SandboxProcess> kNone;
  for (const auto& rec : *all) {
    if (stopping_) return;
    if (!Ours(rec) || janitor_pool_->Busy(rec.id)) continue;
    auto it = procs.find(rec.id);
    const JanitorAction action = JanitorVisit(rec, full, it != procs.end() ? it->second : kNone, now);
    if (action == JanitorAction::kNone) continue;
    // Busy was false just above and only this thread submits: accepted
    // unless the pool is shutting down.
    auto act = [this, id = rec.id, sid = Label(rec, kLabelSession), env = Label(rec, kLabelEnvironment), action, now] {
      JanitorAct(id, sid, env, action, now);
    };
    if (janitor_pool_->Submit(rec.id, std::move(act))) {
      std::lock_guard<std::mutex> l(mu_);
      ++stats_.janitor_actions;
    }
  }
  if (wait) janitor_pool_->WaitIdle();
}

void Orchestrator::ArchiveFor(const SandboxRecord& rec, const std::string& why) {
  if (rec.state == SandboxState::kArchived) return;
  auto r = sandboxes_->Archive(rec.id);
  if (!r.ok()) {
    log::Warn("orchestrator.archive_failed", {{"sandbox", rec.id}, {"error", r.status().ToString()}});
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  ++stats_.sandboxes_archived;
  memo_.erase(rec.id);
  log::Info("orchestrator.sandbox_archived", {{"sandbox", rec.id}, {"session_id", Label(rec, kLabelSession)},
                                              {"reason", why}});
}

Orchestrator::JanitorAction Orchestrator::JanitorVisit(const SandboxRecord& rec_in, bool full_pass,
                                                       const std::vector<SandboxProcess>& seen, int64_t now) {
  if (rec_in.state == SandboxState::kArchived) {
    int64_t since = (rec_in.stopped_at > 0 ? rec_in.stopped_at : rec_in.updated_at) / 1000;
    return now - since >= options_.archived_retention.count() ? JanitorAction::kDelete : JanitorAction::kNone;
  }
  if (rec_in.state != SandboxState::kStarted && rec_in.state != SandboxState::kStopped) return JanitorAction::kNone;
  const std::string sid = Label(rec_in, kLabelSession);
  // Session liveness: every pass for started sandboxes that are quiet,
  // every session_check_interval for the others.
  bool quiet = false;
  if (rec_in.state == SandboxState::kStarted) {
    quiet = std::all_of(seen.begin(), seen.end(), [](const SandboxProcess& p) { return p.ns_pid == 1; });
    // A runner nobody supervises (its launch finished after a restart of
    // this process had already re-adopted the sandbox): adopt it now, so
    // that a crash of it is seen and relaunched.
    for (const auto& p : seen) {
      if (!IsRunnerArgv(p.argv)) continue;
      const std::string wid = ArgAfter(p.argv, "--work-id");
      bool known;
      {
        std::lock_guard<std::mutex> l(mu_);
        known = wid.empty() || runners_.count(wid) > 0;
      }
      if (known) continue;
      WorkItem w;
      w.id = wid;
      w.session_id = ArgAfter(p.argv, "--session-id");
      w.environment_id = ArgAfter(p.argv, "--environment-id");
      w.type = "session";
      w.sole_worker = std::find(p.argv.begin(), p.argv.end(), "--sole-worker") != p.argv.end();
      w.secret = RunnerSecret(p.host_pid);
      Track(Runner{w, rec_in.id, p.host_pid, p.start_time, -1, NowMs(), true});
      log::Info("orchestrator.runner_adopted", {{"work_id", wid}, {"session_id", w.session_id}, {"sandbox", rec_in.id},
                                                {"by", "janitor"}});
    }
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [id, r] : runners_)
      if (r.sandbox_id == rec_in.id) quiet = false;
    for (const auto& [id, p] : relaunches_)
      if (p.sandbox_id == rec_in.id || p.item.session_id == sid) quiet = false;
    for (const auto& j : items_)
      if (j.item.session_id == sid) quiet = false;
    SandboxMemo& m = memo_[rec_in.id];
    if (!quiet) {
      m.quiet_since = 0;
    } else if (m.quiet_since == 0) {
      m.quiet_since = now;
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  SandboxMemo& m = memo_[rec_in.id];
  const bool stop_due = quiet && now - m.quiet_since >= options_.sandbox_idle_stop.count();
  if (!stop_due && !full_pass && now - m.session_checked < options_.session_check_interval.count())
    return JanitorAction::kNone;
  m.session_checked = now;
  return JanitorAction::kCheck;
}

void Orchestrator::JanitorAct(const std::string& sandbox_id, const std::string& sid, const std::string& env,
                              JanitorAction action, int64_t now) {
  if (stopping_) return;  // the next start's passes find it due again
  Result<Json> session = Status::Internal("not retrieved");
  if (action == JanitorAction::kCheck) {
    session = source_->GetSession(env, sid);
    if (!session.ok() && session.status().code() != Code::kNotFound) return;  // try again later
    if (stopping_) return;
  }
  // Tried, not waited for: a session whose item is being served (its
  // sandbox created, started, a runner launched) is not idle, and a pool
  // thread is not left waiting behind a slow start. A later pass retries.
  KeyedLocks::Guard sl = session_locks_.TryLock(sid);
  if (!sl) return;
  auto rec = sandboxes_->Get(sandbox_id);  // re-read under the session lock
  if (!rec.ok()) return;
  if (action == JanitorAction::kDelete) {
    // Still archived (an item may have restored it meanwhile) and past its
    // retention.
    if (rec->state != SandboxState::kArchived) return;
    int64_t since = (rec->stopped_at > 0 ? rec->stopped_at : rec->updated_at) / 1000;
    if (now - since < options_.archived_retention.count()) return;
    Status s = sandboxes_->Delete(rec->id);
    std::lock_guard<std::mutex> l(mu_);
    if (s.ok()) {
      ++stats_.sandboxes_deleted;
      memo_.erase(rec->id);
      log::Info("orchestrator.sandbox_deleted", {{"sandbox", rec->id}, {"session_id", sid}});
    } else {
      log::Warn("orchestrator.delete_failed", {{"sandbox", rec->id}, {"error", s.ToString()}});
    }
    return;
  }
  if (!session.ok() || SessionGone(*session)) {
    ArchiveFor(*rec, session.ok() ? "session ended" : "session deleted");
    return;
  }
  if (rec->state != SandboxState::kStarted) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    SandboxMemo& m = memo_[rec->id];
    if (m.quiet_since == 0 || now - m.quiet_since < options_.sandbox_idle_stop.count()) return;
    for (const auto& [id, r] : runners_)
      if (r.sandbox_id == rec->id) return;
    for (const auto& [id, p] : relaunches_)
      if (p.item.session_id == sid) return;
    for (const auto& j : items_)
      if (j.item.session_id == sid) return;
  }
  if (JsonString(*session, "status") != "idle") return;
  // Re-check what runs inside right before stopping: a process the agent
  // started is never killed by an idle stop.
  auto procs = sandboxes_->Processes(rec->id);
  if (!procs.ok()) return;
  for (const auto& p : *procs) {
    if (p.ns_pid != 1) {
      std::lock_guard<std::mutex> l(mu_);
      memo_[rec->id].quiet_since = 0;
      return;
    }
  }
  auto stopped = sandboxes_->Stop(rec->id, false);
  if (!stopped.ok()) {
    log::Warn("orchestrator.stop_failed", {{"sandbox", rec->id}, {"error", stopped.status().ToString()}});
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  ++stats_.sandboxes_stopped;
  memo_[rec->id].quiet_since = 0;
  log::Info("orchestrator.sandbox_stopped", {{"sandbox", rec->id}, {"session_id", sid}, {"reason", "idle"}});
}

}  // namespace warren::orchestrator
