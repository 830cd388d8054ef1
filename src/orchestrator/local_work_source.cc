#include "orchestrator/local_work_source.h"

#include <algorithm>

#include "common/log.h"
#include "orchestrator/identity.h"

namespace warren::orchestrator {

static_assert(std::string_view(queue::kEnvironmentHeldCode) == std::string_view(kEnvironmentHeldCode),
              "the queue's refusal code and the orchestrator's must agree");

LocalWorkSource::LocalWorkSource(queue::WorkQueue* queue, store::Store* store, LocalWorkSourceOptions options)
    : queue_(queue), store_(store), options_(std::move(options)) {}

LocalWorkSource::~LocalWorkSource() {
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& env : envs_) queue_->RemoveWaiter(env, this);
}

Status LocalWorkSource::Refresh() {
  std::set<std::string> now(options_.self_hosted.begin(), options_.self_hosted.end());
  std::set<std::string> cloud;
  if (options_.serve_cloud) {
    // The newest 1000 environments (not archived).
    store::PageSpec page;
    page.limit = 1000;
    WARREN_ASSIGN_OR_RETURN(store::Page p, store_->ListEnvironments(false, page));
    for (const Json& env : p.items) {
      if (env.contains("config") && env["config"].is_object() && env["config"].value("type", "") == "cloud") {
        now.insert(env.value("id", ""));
        cloud.insert(env.value("id", ""));
      }
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& env : now) {
    if (envs_.count(env)) continue;
    queue_->AddWaiter(env, this, [this] {
      {
        std::lock_guard<std::mutex> wl(mu_);
        ++wakes_;
      }
      cv_.notify_all();
    });
  }
  for (const auto& env : envs_)
    if (!now.count(env)) queue_->RemoveWaiter(env, this);
  envs_ = std::move(now);
  cloud_ = std::move(cloud);
  refreshed_ = std::chrono::steady_clock::now();
  return Status::Ok();
}

std::vector<std::string> LocalWorkSource::Environments() {
  std::lock_guard<std::mutex> l(mu_);
  return {envs_.begin(), envs_.end()};
}

Result<std::optional<WorkItem>> LocalWorkSource::Poll(int block_ms, int64_t reclaim_older_than_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(block_ms);
  while (true) {
    bool stale;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (interrupted_) return std::optional<WorkItem>();
      stale = std::chrono::steady_clock::now() - refreshed_ >= options_.refresh;
    }
    if (stale) WARREN_RETURN_IF_ERROR(Refresh());
    uint64_t wakes_before;
    std::vector<std::string> envs;
    {
      std::lock_guard<std::mutex> l(mu_);
      wakes_before = wakes_;
      envs.assign(envs_.begin(), envs_.end());
    }
    for (size_t i = 0; i < envs.size(); ++i) {
      const std::string& env = envs[(next_ + i) % envs.size()];
      if (!options_.orchestrator_id.empty()) {
        const auto now = std::chrono::steady_clock::now();
        auto r = refused_.find(env);
        if (r != refused_.end() && now < r->second) continue;  // held by another: ask again later
        Status h = queue_->HoldEnvironment(env, options_.orchestrator_id, options_.orchestrator_host);
        if (h.code() == Code::kConflict && h.detail_code() == kEnvironmentHeldCode) {
          log::Error("orchestrator.environment_refused",
                     {{"environment_id", env},
                      {"error", h.message()},
                      {"action", "skipped; the other environments are served"},
                      {"retry_ms", static_cast<int64_t>(options_.refused_retry.count())}});
          refused_[env] = now + options_.refused_retry;
          continue;
        }
        if (!h.ok()) return h;
        if (r != refused_.end()) {
          refused_.erase(r);
          log::Info("orchestrator.environment_accepted", {{"environment_id", env}});
        }
      }
      (void)queue_->RecordWorker(env, options_.worker_id);
      auto c = queue_->Claim(env, reclaim_older_than_ms);
      if (!c.ok()) {
        if (c.status().code() == Code::kNotFound) continue;  // environment deleted meanwhile
        return c.status();
      }
      if (c->has_value()) {
        next_ = (next_ + i + 1) % std::max<size_t>(envs.size(), 1);
        WARREN_ASSIGN_OR_RETURN(WorkItem w, ParseWorkItem(**c));
        {
          std::lock_guard<std::mutex> l(mu_);
          w.sole_worker = cloud_.count(env) > 0;
        }
        return std::optional<WorkItem>(std::move(w));
      }
    }
    std::unique_lock<std::mutex> l(mu_);
    auto wait_until = std::min(deadline, refreshed_ + options_.refresh);
    if (std::chrono::steady_clock::now() >= deadline) return std::optional<WorkItem>();
    cv_.wait_until(l, wait_until, [&] { return interrupted_ || wakes_ != wakes_before; });
    if (interrupted_) return std::optional<WorkItem>();
  }
}

Status LocalWorkSource::Ack(const WorkItem& item) { return queue_->Ack(item.environment_id, item.id).status(); }

Status LocalWorkSource::Stop(const WorkItem& item, bool force) {
  auto r = queue_->StopWork(item.environment_id, item.id, force);
  if (!r.ok() && r.status().code() == Code::kConflict) return Status::Ok();
  return r.status();
}

Result<std::vector<WorkItem>> LocalWorkSource::HeldItems() {
  std::vector<WorkItem> out;
  if (!options_.serve_cloud) return out;
  store::PageSpec page;
  page.limit = 1000;
  WARREN_ASSIGN_OR_RETURN(store::Page envs, store_->ListEnvironments(false, page));
  for (const Json& env : envs.items) {
    if (!env.contains("config") || !env["config"].is_object() || env["config"].value("type", "") != "cloud") continue;
    const std::string env_id = env.value("id", "");
    WARREN_ASSIGN_OR_RETURN(store::Page items, store_->ListWork(env_id, page));
    for (const Json& w : items.items) {
      const std::string state = w.is_object() ? w.value("state", "") : "";
      if (state != "starting" && state != "active") continue;
      auto fresh = queue_->Reissue(env_id, w.value("id", ""));
      if (!fresh.ok()) continue;  // stopped or lapsed meanwhile
      auto item = ParseWorkItem(*fresh);
      if (!item.ok()) continue;
      item->sole_worker = true;  // a cloud environment's
      out.push_back(std::move(item).value());
    }
  }
  return out;
}

Status LocalWorkSource::FailItem(const WorkItem& item, const std::string& message) {
  if (!options_.fail_session) return WorkSource::FailItem(item, message);
  return options_.fail_session(item.session_id, message);
}

Result<Json> LocalWorkSource::GetSession(const std::string& /*environment_id*/, const std::string& session_id) {
  return store_->GetSession(session_id);
}

void LocalWorkSource::Invalidate() {
  std::lock_guard<std::mutex> l(mu_);
  refreshed_ = {};  // stale: the next Poll re-reads the environments
}

void LocalWorkSource::Interrupt() {
  {
    std::lock_guard<std::mutex> l(mu_);
    interrupted_ = true;
  }
  cv_.notify_all();
}

}  // namespace warren::orchestrator
