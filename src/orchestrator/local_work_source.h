// LocalWorkSource: the embedded WorkSource, calling the in-process
// queue::WorkQueue and Store directly (no HTTP). It serves every `cloud`
// environment (Warren is their cloud) plus the `self_hosted` environments
// named in `self_hosted`. The set of cloud environments is re-read from the
// store every `refresh`, so environments created later are served.
//
// Built as its own library (warren_orchestrator_local) because the queue
// sits on the API layer's SessionObserver; the orchestrator core does not.
//
// Ownership: borrows the queue and store (must outlive it).
// Thread-safety: thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "orchestrator/work_source.h"
#include "queue/work_queue.h"
#include "store/store.h"

namespace warren::orchestrator {

struct LocalWorkSourceOptions {
  bool serve_cloud = true;
  std::vector<std::string> self_hosted;  // environment ids
  std::chrono::milliseconds refresh{2000};
  std::string worker_id = "warren-orchestrator";
  // One orchestrator per environment (docs/ORCHESTRATOR.md, "Several
  // orchestrators"): each environment is taken or renewed for this id
  // (identity.h) before it is polled, through the queue's HoldEnvironment
  // like a standalone orchestrator's poll. One held by another orchestrator
  // is logged (orchestrator.environment_refused) and skipped for
  // `refused_retry` while the others are served. "" = no check.
  std::string orchestrator_id;
  std::string orchestrator_host;
  std::chrono::milliseconds refused_retry{30000};
  // WorkSource::FailItem for the embedded service (wired by `warren serve`:
  // appends session.error and error tool results through the service).
  std::function<Status(const std::string& session_id, const std::string& message)> fail_session;
};

class LocalWorkSource final : public WorkSource {
 public:
  LocalWorkSource(queue::WorkQueue* queue, store::Store* store, LocalWorkSourceOptions options);
  ~LocalWorkSource() override;
  LocalWorkSource(const LocalWorkSource&) = delete;
  LocalWorkSource& operator=(const LocalWorkSource&) = delete;

  Result<std::optional<WorkItem>> Poll(int block_ms, int64_t reclaim_older_than_ms) override;
  Status Ack(const WorkItem& item) override;
  Status Stop(const WorkItem& item, bool force) override;
  Result<Json> GetSession(const std::string& environment_id, const std::string& session_id) override;
  std::vector<std::string> Environments() override;
  void Interrupt() override;
  void Invalidate() override;
  Status FailItem(const WorkItem& item, const std::string& message) override;
  // Held items of the cloud environments (only this orchestrator serves
  // them), the newest 1000 items of each environment.
  Result<std::vector<WorkItem>> HeldItems() override;

 private:
  Status Refresh();

  queue::WorkQueue* queue_;
  store::Store* store_;
  LocalWorkSourceOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool interrupted_ = false;
  uint64_t wakes_ = 0;
  std::set<std::string> envs_;
  std::set<std::string> cloud_;  // the cloud ones among envs_ (WorkItem::sole_worker)
  std::chrono::steady_clock::time_point refreshed_{};
  size_t next_ = 0;  // round-robin start
  // Refused environments -> when to ask again (poll thread only).
  std::map<std::string, std::chrono::steady_clock::time_point> refused_;
};

}  // namespace warren::orchestrator
