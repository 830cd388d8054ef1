// HttpWorkSource: the standalone WorkSource. Speaks only the documented work
// protocol of spec section 3 to `base_url` (a remote Warren or Anthropic's
// hosted API) with an environment key: GET .../work/poll (block_ms,
// reclaim_older_than_ms, Anthropic-Worker-ID), POST .../work/{id}/ack,
// POST .../work/{id}/stop, GET /v1/sessions/{id}. HTTP answers map onto
// Status codes (404 NotFound, 409 Conflict, 429 ResourceExhausted, 408 and
// 5xx Unavailable, ...), so the orchestrator's retry rule (4xx except 408
// and 429 are permanent) applies unchanged.
//
// Held items (optional `held`, docs/ORCHESTRATOR.md "Restart safety"): the
// protocol gives an environment key no way to list the items it holds, so
// the source records each item right before it acks it (unconfirmed), marks
// it acked once the service answered, and forgets it when it stops it or the
// orchestrator releases it. HeldItems() (called once at start) checks every
// recorded item with an ack carrying the item's own sessions token: ack is
// idempotent on a held item and changes no lease (a heartbeat would move the
// lease token under a runner that may still be starting), and the token dies
// with the lease, so
//   2xx starting/active  -> still ours: returned (the orchestrator resumes it);
//                           unconfirmed: only if nobody beat the lease yet
//                           (then `fresh_lease`), else dropped
//   2xx stopping         -> force-stopped and forgotten (a stop was asked)
//   2xx stopped, 401, 403, 404, 409 -> the lease lapsed or the item ended:
//                           forgotten
//   a transport error or 5xx -> returned unchecked (the resumed runner's own
//                           heartbeat decides; the service may be restarting);
//                           unconfirmed ones are dropped (left to the queue)
//
// Ownership: owns its HTTP client; borrows `held`. Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/http_client.h"
#include "orchestrator/held_items.h"
#include "orchestrator/work_source.h"

namespace warren::orchestrator {

struct HttpWorkSourceOptions {
  std::string base_url;  // e.g. https://api.anthropic.com or http://127.0.0.1:8400
  std::string environment_id;
  std::string environment_key;  // Bearer
  std::string worker_id = "warren-orchestrator";
  // Sent on every poll as warren-orchestrator-id / warren-orchestrator-host
  // (identity.h): a Warren service lets one orchestrator serve an
  // environment at a time and answers another with 409
  // (kEnvironmentHeldCode). Anthropic's API ignores unknown headers. ""
  // = not sent.
  std::string orchestrator_id;
  std::string orchestrator_host;
  std::shared_ptr<HttpClient> client;  // nullptr = libcurl
  HeldItemStore* held = nullptr;       // nullptr = held items are not remembered
  int64_t check_timeout_ms = 5000;     // per held item at start
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
  Result<std::vector<WorkItem>> HeldItems() override;
  void Release(const WorkItem& item) override;

 private:
  // `bearer` empty = the environment key.
  Result<Json> Call(const std::string& method, const std::string& path, const std::string& body,
                    int64_t timeout_ms, const std::string& bearer = "", bool identify = false);
  void Forget(const WorkItem& item, const std::string& secret, const char* why);

  HttpWorkSourceOptions options_;
  CancelToken cancel_;
  std::atomic<bool> accepted_{false};  // a poll succeeded (logged once)
};

// The Status for an HTTP answer (OK for 2xx), with the error message of the
// spec's envelope when there is one, and its error.details.error_code as
// the Status's detail code.
Status StatusForHttp(int status, const std::string& body);

// The sessions token inside a work secret (base64url JSON, padding
// optional); "" when there is none.
std::string SessionsTokenOf(const std::string& secret);

}  // namespace warren::orchestrator
