#include "webhooks_out/webhooks_out.h"

#include <openssl/sha.h>
#include <sys/random.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "common/log.h"

namespace warren::webhooks_out {
namespace {

std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string MessageId(const std::string& object_id, const std::string& change_id, const std::string& type) {
  std::string in = object_id + "\n" + change_id + "\n" + type;
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(in.data()), in.size(), md);
  static const char* kHex = "0123456789abcdef";
  std::string out = "event_";
  for (int i = 0; i < 13; i++) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

// A claim outlasts one attempt (its timeout) with a margin.
int64_t LeaseMs(const WebhooksConfig& cfg) { return 2 * cfg.timeout_ms + 1000; }

constexpr int kPruneBatch = 500;
constexpr int kPruneBatchesPerRound = 20;   // at most 10,000 rows per round; the rest next round
constexpr int64_t kPruneEveryUs = 60'000'000;

double RandomJitter() {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) return 0.5;
  return static_cast<double>(v >> 11) / static_cast<double>(uint64_t{1} << 53);
}

}  // namespace

const std::vector<std::string>& SupportedEventTypes() {
  static const std::vector<std::string> kTypes = {
      "session.created",         "session.status_run_started", "session.status_idled",
      "session.requires_action", "session.budget_reached",     "session.status_rescheduled",
      "session.status_terminated", "session.updated",          "session.archived",
      "session.deleted",         "session.thread_created",     "session.thread_idled",
      "session.thread_terminated", "session.outcome_evaluation_ended",
      "agent.created",           "agent.updated",              "agent.archived",
      "agent.deleted",  // accepted, never sent: agents cannot be deleted (spec 1.1)
      "environment.created",     "environment.updated",        "environment.archived",
      "environment.deleted",     "vault.created",              "vault.archived",
      "vault.deleted",           "vault_credential.created",   "vault_credential.archived",
      "vault_credential.deleted", "vault_credential.refresh_failed"};
  return kTypes;
}

std::vector<std::string> WebhookTypesFor(const Json& event) {
  const std::string t = Str(event, "type");
  if (t == "session.status_running") return {"session.status_run_started"};
  if (t == "session.status_idle") {
    std::vector<std::string> out = {"session.status_idled"};
    const std::string reason = event.is_object() && event.contains("stop_reason") ? Str(event["stop_reason"], "type") : "";
    if (reason == "requires_action") out.push_back("session.requires_action");
    if (reason == "budget_reached") out.push_back("session.budget_reached");
    return out;
  }
  if (t == "session.status_rescheduled") return {"session.status_rescheduled"};
  if (t == "session.status_terminated") return {"session.status_terminated"};
  if (t == "session.updated" || t == "session.created" || t == "session.deleted" || t == "session.archived" ||
      t == "session.thread_created")
    return {t};
  if (t == "session.thread_status_idle") return {"session.thread_idled"};
  if (t == "session.thread_status_terminated") return {"session.thread_terminated"};
  if (t == "span.outcome_evaluation_end") return {"session.outcome_evaluation_ended"};
  return {};
}

Result<WebhooksConfig> WebhooksConfigFromJson(const Json& j, const std::function<const char*(const char*)>& getenv_fn) {
  WebhooksConfig c;
  if (j.is_null()) return c;
  if (!j.is_object()) return Status::InvalidArgument("webhooks: expected an object");
  std::set<std::string> names;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string name = "webhooks." + it.key();
    const Json& v = it.value();
    auto integer = [&](int64_t lo, int64_t hi, int64_t* out) -> Status {
      if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
        return Status::InvalidArgument(name + ": expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
      *out = v.get<int64_t>();
      return Status::Ok();
    };
    int64_t n = 0;
    if (it.key() == "concurrency") {
      WARREN_RETURN_IF_ERROR(integer(1, 64, &n));
      c.concurrency = static_cast<int>(n);
    } else if (it.key() == "timeout_ms") {
      WARREN_RETURN_IF_ERROR(integer(100, 120000, &c.timeout_ms));
    } else if (it.key() == "initial_backoff_ms") {
      WARREN_RETURN_IF_ERROR(integer(10, 3600000, &c.initial_backoff_ms));
    } else if (it.key() == "max_backoff_ms") {
      WARREN_RETURN_IF_ERROR(integer(10, 86400000, &c.max_backoff_ms));
    } else if (it.key() == "max_attempts") {
      WARREN_RETURN_IF_ERROR(integer(1, 1000, &n));
      c.max_attempts = static_cast<int>(n);
    } else if (it.key() == "poll_interval_ms") {
      WARREN_RETURN_IF_ERROR(integer(10, 60000, &c.poll_interval_ms));
    } else if (it.key() == "disable_after_failures") {
      WARREN_RETURN_IF_ERROR(integer(0, 100000, &n));
      c.disable_after_failures = static_cast<int>(n);
    } else if (it.key() == "retention_hours") {
      WARREN_RETURN_IF_ERROR(integer(0, 87600, &c.retention_hours));
    } else if (it.key() == "organization_id" || it.key() == "workspace_id") {
      if (!v.is_string() || v.get<std::string>().empty()) return Status::InvalidArgument(name + ": expected a string");
      (it.key() == "organization_id" ? c.organization_id : c.workspace_id) = v.get<std::string>();
    } else if (it.key() == "endpoints") {
      if (!v.is_array()) return Status::InvalidArgument(name + ": expected an array");
      for (size_t i = 0; i < v.size(); i++) {
        const Json& e = v[i];
        const std::string at = name + "[" + std::to_string(i) + "]";
        if (!e.is_object()) return Status::InvalidArgument(at + ": expected an object");
        Endpoint ep;
        std::string secret;
        bool have_secret = false;
        for (auto k = e.begin(); k != e.end(); ++k) {
          const Json& f = k.value();
          if (k.key() == "name" || k.key() == "url" || k.key() == "secret" || k.key() == "secret_env") {
            if (!f.is_string()) return Status::InvalidArgument(at + "." + k.key() + ": expected a string");
            const std::string s = f.get<std::string>();
            if (k.key() == "name") ep.name = s;
            if (k.key() == "url") ep.url = s;
            if (k.key() == "secret") { secret = s; have_secret = true; }
            if (k.key() == "secret_env") {
              const char* env = getenv_fn(s.c_str());
              if (env == nullptr || *env == '\0')
                return Status::InvalidArgument(at + ".secret_env: environment variable " + s + " is not set");
              secret = env;
              have_secret = true;
            }
          } else if (k.key() == "event_types") {
            if (!f.is_array()) return Status::InvalidArgument(at + ".event_types: expected an array of strings");
            for (const Json& t : f) {
              if (!t.is_string()) return Status::InvalidArgument(at + ".event_types: expected an array of strings");
              const auto& known = SupportedEventTypes();
              if (std::find(known.begin(), known.end(), t.get<std::string>()) == known.end())
                return Status::InvalidArgument(at + ".event_types: unknown event type '" + t.get<std::string>() + "'");
              ep.event_types.push_back(t.get<std::string>());
            }
          } else {
            return Status::InvalidArgument("unknown config key '" + at + "." + k.key() + "'");
          }
        }
        if (ep.name.empty()) ep.name = "endpoint_" + std::to_string(i);
        if (ep.name.size() > 64 || ep.name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != std::string::npos)
          return Status::InvalidArgument(at + ".name: 1 to 64 characters of A-Z a-z 0-9 _ . - (it is a URL path segment)");
        if (!names.insert(ep.name).second) return Status::InvalidArgument(at + ".name: '" + ep.name + "' is used twice");
        if (ep.url.rfind("https://", 0) != 0 && ep.url.rfind("http://", 0) != 0)
          return Status::InvalidArgument(at + ".url: expected an http(s) URL");
        if (!have_secret) return Status::InvalidArgument(at + ": a secret (whsec_...) or secret_env is required");
        if (secret.rfind("whsec_", 0) != 0) return Status::InvalidArgument(at + ".secret: expected whsec_<base64>");
        auto key = WebhookKey::Parse(secret);
        // Never echo the secret in an error.
        if (!key.ok()) return Status::InvalidArgument(at + ".secret: not a valid whsec_<base64> key");
        ep.key = *key;
        c.endpoints.push_back(std::move(ep));
      }
    } else {
      return Status::InvalidArgument("unknown config key '" + name + "'");
    }
  }
  if (c.max_backoff_ms < c.initial_backoff_ms)
    return Status::InvalidArgument("webhooks.max_backoff_ms must be at least initial_backoff_ms");
  return c;
}

store::OutboxRule MakeOutboxRule(const WebhooksConfig& cfg) {
  if (cfg.endpoints.empty()) return {};
  struct Target {
    std::string name;
    std::set<std::string> types;
  };
  std::vector<Target> targets;
  for (const Endpoint& e : cfg.endpoints) targets.push_back({e.name, {e.event_types.begin(), e.event_types.end()}});
  const std::string org = cfg.organization_id, ws = cfg.workspace_id;
  return [targets, org, ws](const std::string& session_id, const Json& event) {
    std::vector<store::OutboxMessage> out;
    for (const std::string& type : WebhookTypesFor(event)) {
      const std::string id = MessageId(session_id, Str(event, "id"), type);
      std::string created = Str(event, "processed_at");
      Json body = {{"type", "event"},
                   {"id", id},
                   {"created_at", created.empty() ? Json() : Json(created)},
                   {"data", {{"type", type}, {"id", session_id}, {"organization_id", org}, {"workspace_id", ws}}}};
      const std::string payload = DumpJson(body);
      for (const Target& t : targets) {
        if (!t.types.empty() && !t.types.count(type)) continue;
        out.push_back(store::OutboxMessage{id, t.name, type, session_id, payload, session_id});
      }
    }
    return out;
  };
}

store::ObjectOutboxRule MakeObjectOutboxRule(const WebhooksConfig& cfg) {
  if (cfg.endpoints.empty()) return {};
  std::vector<std::pair<std::string, std::set<std::string>>> targets;
  for (const Endpoint& e : cfg.endpoints) targets.emplace_back(e.name, std::set<std::string>(e.event_types.begin(), e.event_types.end()));
  const std::string org = cfg.organization_id, ws = cfg.workspace_id;
  return [targets, org, ws](const store::ObjectChange& c) {
    std::vector<store::OutboxMessage> out;
    const auto& known = SupportedEventTypes();
    if (std::find(known.begin(), known.end(), c.type) == known.end()) return out;
    const std::string id = MessageId(c.id, c.change_id, c.type);
    Json data = {{"type", c.type}, {"id", c.id}, {"organization_id", org}, {"workspace_id", ws}};
    if (c.type.rfind("vault_credential.", 0) == 0) data["vault_id"] = c.parent_id;
    Json body = {{"type", "event"}, {"id", id}, {"created_at", c.at.empty() ? Json() : Json(c.at)}, {"data", data}};
    const std::string payload = DumpJson(body);
    for (const auto& [name, types] : targets) {
      if (!types.empty() && !types.count(c.type)) continue;
      out.push_back(store::OutboxMessage{id, name, c.type, "", payload, c.id});
    }
    return out;
  };
}

int64_t BackoffMs(const WebhooksConfig& cfg, int attempts, double jitter01) {
  double base = static_cast<double>(cfg.initial_backoff_ms) * std::pow(2.0, std::max(0, attempts - 1));
  base = std::min(base, static_cast<double>(cfg.max_backoff_ms));
  double j = std::clamp(jitter01, 0.0, 1.0);
  return std::max<int64_t>(1, static_cast<int64_t>(base * (0.5 + 0.5 * j)));
}

WebhookDispatcher::WebhookDispatcher(store::Store* store, HttpClient* http, Clock* clock, WebhooksConfig cfg,
                                     std::function<double()> jitter)
    : store_(store), http_(http), clock_(clock), cfg_(std::move(cfg)), jitter_(std::move(jitter)) {
  if (!jitter_) jitter_ = RandomJitter;
}

WebhookDispatcher::~WebhookDispatcher() { Stop(); }

void WebhookDispatcher::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!threads_.empty() || cfg_.endpoints.empty()) return;
    stopping_ = false;
    threads_.emplace_back([this] { Claimer(); });
    for (int i = 0; i < cfg_.concurrency; i++) threads_.emplace_back([this] { Worker(); });
  }
  // Outside mu_: the listener runs under the store's lock and takes mu_.
  store_->SetOutboxListener([this] { Wake(); });
}

void WebhookDispatcher::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    threads.swap(threads_);
  }
  if (!threads.empty()) store_->SetOutboxListener({});
  cancel_.Cancel();
  cv_.notify_all();
  work_cv_.notify_all();
  for (auto& t : threads) t.join();
}

void WebhookDispatcher::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wakes_++;
  }
  cv_.notify_all();
}

const Endpoint* WebhookDispatcher::FindEndpoint(const std::string& name) const {
  for (const Endpoint& e : cfg_.endpoints)
    if (e.name == name) return &e;
  return nullptr;
}

int WebhookDispatcher::RunOnce() {
  int n = 0;
  for (;;) {
    const int64_t now = clock_->NowMicros();
    auto claimed = store_->ClaimDeliveries(now, now + LeaseMs(cfg_) * 1000, 16);
    if (!claimed.ok() || claimed->empty()) return n;
    for (const auto& d : *claimed) {
      Deliver(d, nullptr);
      n++;
    }
  }
}

int64_t WebhookDispatcher::Prune() {
  if (cfg_.retention_hours <= 0) return 0;
  const int64_t before = clock_->NowMicros() - cfg_.retention_hours * 3'600'000'000;
  int64_t total = 0;
  for (int i = 0; i < kPruneBatchesPerRound; i++) {
    auto n = store_->PruneDeliveries(before, kPruneBatch);
    if (!n.ok()) {
      log::Warn("webhooks.prune_failed", {{"error", n.status().ToString()}});
      break;
    }
    total += *n;
    if (*n < kPruneBatch) break;
  }
  if (total > 0) log::Info("webhooks.pruned", {{"rows", total}, {"retention_hours", cfg_.retention_hours}});
  return total;
}

// One claimer fills a hand-off queue with at most `concurrency` claimed rows
// (claimed + being sent <= concurrency), so one claim transaction serves
// several deliveries; the workers send them. A claimed row waits at most one
// attempt for a free worker, which its lease (2 attempts + 1 s) covers.
void WebhookDispatcher::Claimer() {
  for (;;) {
    int room = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || static_cast<int>(ready_.size()) + busy_ < cfg_.concurrency; });
      if (stopping_) return;
      room = cfg_.concurrency - static_cast<int>(ready_.size()) - busy_;
    }
    int64_t now = clock_->NowMicros();
    if (now >= next_prune_) {
      Prune();
      next_prune_ = now + kPruneEveryUs;
    }
    // A wake-up that arrives from here on is seen by the wait below.
    int seen = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen = wakes_;
    }
    auto claimed = store_->ClaimDeliveries(now, now + LeaseMs(cfg_) * 1000, room);
    if (!claimed.ok()) log::Warn("webhooks.claim_failed", {{"error", claimed.status().ToString()}});
    if (claimed.ok() && !claimed->empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& d : *claimed) ready_.push_back(std::move(d));
      work_cv_.notify_all();
      continue;
    }
    // Nothing due: sleep until the next row is due (a retry, or a lease that
    // ends), a commit wakes us, or the fallback poll.
    int64_t wait_ms = cfg_.poll_interval_ms;
    if (auto next = store_->NextDeliveryDue(); next.ok() && next->has_value()) {
      now = clock_->NowMicros();
      wait_ms = std::clamp<int64_t>((**next - now + 999) / 1000, 5, cfg_.poll_interval_ms);
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stopping_ || wakes_ != seen; });
  }
}

void WebhookDispatcher::Worker() {
  for (;;) {
    store::OutboxDelivery d;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !ready_.empty(); });
      // On stop, rows still in ready_ stay claimed: due again after their lease.
      if (stopping_) return;
      d = std::move(ready_.front());
      ready_.pop_front();
      busy_++;
    }
    Deliver(d, &cancel_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy_--;
    }
    cv_.notify_all();  // room for the claimer
  }
}

void WebhookDispatcher::Deliver(const store::OutboxDelivery& d, const CancelToken* cancel) {
  store::DeliveryAttempt a;
  const Endpoint* ep = FindEndpoint(d.message.endpoint);
  if (ep == nullptr) {
    a.at = clock_->NowMicros();
    a.error = "endpoint '" + d.message.endpoint + "' is no longer configured";
    auto r = store_->FinishDelivery(d.seq, a);
    (void)r;
    return;
  }
  a.disable_endpoint_after = cfg_.disable_after_failures;
  const int64_t ts = clock_->NowMicros() / 1000000;
  WebhookHeaders h = SignWebhook(ep->key, d.message.message_id, ts, d.message.payload);
  HttpRequest req;
  req.method = "POST";
  req.url = ep->url;
  req.body = d.message.payload;
  req.headers = {{"Content-Type", "application/json"},
                 {"webhook-id", h.id},
                 {"webhook-timestamp", h.timestamp},
                 {"webhook-signature", h.signature}};
  req.connect_timeout_ms = std::min<int64_t>(cfg_.timeout_ms, 10000);
  req.total_timeout_ms = cfg_.timeout_ms;
  req.max_response_bytes = 64 * 1024;
  req.proxy = "-";
  auto resp = http_->Send(req, cancel);
  a.at = clock_->NowMicros();
  if (!resp.ok() && resp.status().code() == Code::kCancelled) {
    // Shutdown: the row stays claimed and is due again after its lease.
    return;
  }
  if (resp.ok()) {
    a.status = resp->status;
    // 2xx only: a 3xx is a failure (spec 3.8), redirects are not followed.
    a.delivered = resp->status >= 200 && resp->status < 300;
    if (!a.delivered) a.error = "HTTP " + std::to_string(resp->status);
  } else {
    a.error = resp.status().message().substr(0, 500);
  }
  if (!a.delivered) {
    if (d.attempts + 1 < cfg_.max_attempts) a.retry_at = a.at + BackoffMs(cfg_, d.attempts + 1, jitter_()) * 1000;
  }
  auto r = store_->FinishDelivery(d.seq, a);
  if (!r.ok()) {
    log::Warn("webhooks.record_failed", {{"delivery", d.seq}, {"error", r.status().ToString()}});
    return;
  }
  if (r->disabled_endpoint)
    log::Warn("webhooks.endpoint_disabled",
              {{"endpoint", d.message.endpoint}, {"consecutive_failures", r->endpoint.consecutive_failures},
               {"error", a.error}, {"hint", "its deliveries are held; POST /v1/warren/webhooks/endpoints/" +
                                                d.message.endpoint + "/enable sends them"}});
  if (r->delivery.state == "failed")
    log::Warn("webhooks.delivery_failed", {{"endpoint", d.message.endpoint}, {"webhook_id", d.message.message_id},
                                           {"attempts", r->delivery.attempts}, {"error", a.error}});
}

}  // namespace warren::webhooks_out
