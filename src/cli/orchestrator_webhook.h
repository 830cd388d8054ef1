// The orchestrator's webhook receiver (docs/ORCHESTRATOR.md, "Wake-up by
// webhook"): transport glue between an HTTP request and the domain's
// WebhookVerifier and Orchestrator::Wake. Mounted at
// POST /v1/warren/orchestrator/webhook on `warren serve` and on the
// standalone orchestrator's `--webhook-listen` listener.
//
// Answers: 200 {"type":"webhook_received","woke":bool} for an authentic,
// fresh, new delivery (woke: its data.type was session.status_run_started);
// 400 malformed headers or body; 401 bad signature or a timestamp outside
// the tolerance; 409 a replayed webhook-id; 429 replay cache full; 503 while
// shutting down (the sender retries). Errors use the spec's error envelope.
//
// Ownership: borrows the verifier and the wake callback's target.
// Thread-safety: thread-safe (the verifier is).
#pragma once

#include <atomic>
#include <functional>

#include "http/http_server.h"
#include "orchestrator/webhooks.h"

namespace warren::cli {

inline constexpr const char* kOrchestratorWebhookPath = "/v1/warren/orchestrator/webhook";

http::HandlerResult HandleOrchestratorWebhook(http::HttpRequest& req, orchestrator::WebhookVerifier* verifier,
                                              const std::function<void()>& wake, const std::atomic<bool>* stopping);

}  // namespace warren::cli
