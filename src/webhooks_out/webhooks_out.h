// Outgoing webhooks (spec 3.8, docs/WEBHOOKS.md): Warren notifies configured
// endpoints of session, agent, environment, vault and credential changes,
// signed per Standard Webhooks.
//
//   event committed ──(OutboxRule, same store transaction)──> outbox rows
//   object written ──(ObjectOutboxRule, same store transaction)──> outbox rows
//   WebhookDispatcher: N workers claim due rows (a lease), POST them signed,
//   and record the attempt: delivered, retried later (exponential backoff
//   with jitter), or failed after max_attempts. An endpoint that fails
//   `disable_after_failures` attempts in a row is disabled (its rows held,
//   not lost) until it is enabled again. Finished rows are pruned after
//   `retention_hours`. The store wakes the dispatcher when a transaction
//   adds rows; a slow poll covers rows written by another process.
//
// Delivery is at least once and survives restarts and SIGKILL: a row is
// written with its event, and one claimed by a process that died is due
// again when its lease ends. Each message keeps its webhook-id (the
// envelope's "id") on every retry, so receivers de-duplicate; the
// timestamp and signature are made afresh per attempt (receivers check the
// timestamp against a tolerance window).
//
// Envelope (thin; GET the resource for details):
//   {"type":"event","id":"event_...","created_at":"...",
//    "data":{"type":"session.status_run_started","id":"sesn_...",
//            "organization_id":"...","workspace_id":"..."}}
//
// Threads: one claimer keeps at most `concurrency` claimed rows between a
// hand-off queue and the `concurrency` sending workers (one claim
// transaction serves several deliveries).
//
// Ownership: the dispatcher borrows the Store, HttpClient and Clock (they
// outlive it). Thread-safety: Start/Stop from one thread; Wake from any.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/http_client.h"
#include "common/standard_webhooks.h"
#include "store/store.h"

namespace warren::webhooks_out {

struct Endpoint {
  std::string name;  // unique; the outbox rows name it
  std::string url;
  WebhookKey key = WebhookKey::Generate();
  std::vector<std::string> event_types;  // empty = every type
};

struct WebhooksConfig {
  std::vector<Endpoint> endpoints;
  int concurrency = 4;              // deliveries in flight at once
  int64_t timeout_ms = 10000;       // one attempt
  int64_t initial_backoff_ms = 1000;
  int64_t max_backoff_ms = 300000;  // 5 minutes
  int max_attempts = 20;            // then the row is `failed`
  // Fallback poll for rows another process wrote; rows written in this
  // process wake the dispatcher at once (Store::SetOutboxListener), and
  // retries are waited for until they are due.
  int64_t poll_interval_ms = 5000;
  int disable_after_failures = 20;  // consecutive failed attempts that disable an endpoint; 0 = never
  int64_t retention_hours = 168;    // delivered/failed rows are deleted after this; 0 = kept
  std::string organization_id = "org_warren";
  std::string workspace_id = "wrkspc_default";
};

// The data.type values Warren sends (spec 3.8; docs/WEBHOOKS.md lists the
// event each comes from).
const std::vector<std::string>& SupportedEventTypes();

// Parses the "webhooks" config object (keys: endpoints[{name,url,secret |
// secret_env,event_types}], concurrency, timeout_ms, initial_backoff_ms,
// max_backoff_ms, max_attempts, poll_interval_ms, disable_after_failures,
// retention_hours, organization_id, workspace_id). Secrets must be
// `whsec_<base64>`.
Result<WebhooksConfig> WebhooksConfigFromJson(const Json& j, const std::function<const char*(const char*)>& getenv_fn);

// The webhook data.types a session event causes (none for most).
std::vector<std::string> WebhookTypesFor(const Json& event);

// The store rule: for each configured endpoint that wants the type, one
// outbox message. Message ids are derived from (session, event id, type), so
// a retried transaction writes the same rows. Pure; thread-safe.
store::OutboxRule MakeOutboxRule(const WebhooksConfig& cfg);

// The same for object changes (agents, environments, vaults, credentials):
// the envelope's data is {type, id, organization_id, workspace_id} plus
// vault_id for a credential. Message ids come from (object, change_id,
// type). Pure; thread-safe.
store::ObjectOutboxRule MakeObjectOutboxRule(const WebhooksConfig& cfg);

// Backoff before attempt `attempts + 1` after `attempts` failures:
// min(max, initial * 2^(attempts-1)) scaled by jitter in [0.5, 1.0].
int64_t BackoffMs(const WebhooksConfig& cfg, int attempts, double jitter01);

class WebhookDispatcher final {
 public:
  // `jitter` returns values in [0, 1) (tests pass a constant); default random.
  WebhookDispatcher(store::Store* store, HttpClient* http, Clock* clock, WebhooksConfig cfg,
                    std::function<double()> jitter = {});
  ~WebhookDispatcher();
  WebhookDispatcher(const WebhookDispatcher&) = delete;
  WebhookDispatcher& operator=(const WebhookDispatcher&) = delete;

  // Starts the threads and installs the store's outbox listener (a commit
  // that adds rows wakes the claimer).
  void Start();
  // Removes the listener, cancels attempts in flight (their rows become due
  // again after the lease) and joins the workers.
  void Stop();
  // Looks for due rows now (e.g. after a commit that wrote some).
  void Wake();
  // One pass for tests: claims and delivers every row due now on the calling
  // thread; returns how many attempts were made.
  int RunOnce();
  // Deletes finished rows older than retention_hours, in batches; returns
  // how many. The claimer calls it about once a minute.
  int64_t Prune();

 private:
  void Claimer();
  void Worker();
  // Attempts one claimed row and records the outcome.
  void Deliver(const store::OutboxDelivery& d, const CancelToken* cancel);
  const Endpoint* FindEndpoint(const std::string& name) const;

  store::Store* store_;
  HttpClient* http_;
  Clock* clock_;
  WebhooksConfig cfg_;
  std::function<double()> jitter_;
  CancelToken cancel_;
  std::mutex mu_;
  std::condition_variable cv_;       // the claimer: room, wake-ups, stop
  std::condition_variable work_cv_;  // the workers: claimed rows, stop
  std::deque<store::OutboxDelivery> ready_;  // claimed, not yet being sent
  int busy_ = 0;                             // rows being sent
  bool stopping_ = false;
  int wakes_ = 0;
  int64_t next_prune_ = 0;  // micros (clock_); claimer thread only
  std::vector<std::thread> threads_;
};

}  // namespace warren::webhooks_out
