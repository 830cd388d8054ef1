// HttpWorkSource: the standalone WorkSource. Speaks only the documented work
// protocol of spec section 3 to `base_url` (a remote Warren or Anthropic's
// hosted API) with an environment key: GET .../work/poll (block_ms,
// reclaim_older_than_ms, Anthropic-Worker-ID), POST .../work/{id}/ack,
// POST .../work/{id}/stop, GET /v1/sessions/{id}. HTTP answers map onto
// Status codes (404 NotFound, 409 Conflict, 429 ResourceExhausted, 408 and
// 5xx Unavailable, ...), so the orchestrator's retry rule (4xx except 408
// and 429 are permanent) applies unchanged.
//
// Ownership: owns its HTTP client. Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/http_client.h"
#include "orchestrator/work_source.h"

namespace warren::orchestrator {

struct HttpWorkSourceOptions {
  std::string base_url;  // e.g. https://api.anthropic.com or http://127.0.0.1:8400
  std::string environment_id;
  std::string environment_key;  // Bearer
  std::string worker_id = "warren-orchestrator";
  std::shared_ptr<HttpClient> client;  // nullptr = libcurl
};

class HttpWorkSource final : public WorkSource {
 public:
  explicit HttpWorkSource(HttpWorkSourceOptions options);
  HttpWorkSource(const HttpWorkSource&) = delete;
  HttpWorkSource& operator=(const HttpWorkSource&) = delete;

  Result<std::optional<WorkItem>> Poll(int block_ms, int64_t reclaim_older_than_ms) override;
  Status Ack(const WorkItem& item) override;
  Status Stop(const WorkItem& item, bool force) override;
  Result<Json> GetSession(const std::string& environment_id, const std::string& session_id) override;
  std::vector<std::string> Environments() override { return {options_.environment_id}; }
  void Interrupt() override;
  Status FailItem(const WorkItem& item, const std::string& message) override;

 private:
  Result<Json> Call(const std::string& method, const std::string& path, const std::string& body,
                    int64_t timeout_ms);

  HttpWorkSourceOptions options_;
  CancelToken cancel_;
};

// The Status for an HTTP answer (OK for 2xx), with the error message of the
// spec's envelope when there is one.
Status StatusForHttp(int status, const std::string& body);

}  // namespace warren::orchestrator
