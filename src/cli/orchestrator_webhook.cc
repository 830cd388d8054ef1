#include "cli/orchestrator_webhook.h"

#include "api/service.h"
#include "common/json.h"
#include "common/log.h"

namespace warren::cli {

http::HandlerResult HandleOrchestratorWebhook(http::HttpRequest& req, orchestrator::WebhookVerifier* verifier,
                                              const std::function<void()>& wake, const std::atomic<bool>* stopping) {
  if (stopping != nullptr && stopping->load())
    return api::ApiService::ErrorResult(Status::Unavailable("shutting down; retry later"), req);
  orchestrator::WebhookHeaders h;
  if (const std::string* v = req.headers.Find("webhook-id")) h.id = *v;
  if (const std::string* v = req.headers.Find("webhook-timestamp")) h.timestamp = *v;
  if (const std::string* v = req.headers.Find("webhook-signature")) h.signature = *v;
  Status s = verifier->Verify(h, req.body);
  if (!s.ok()) {
    log::Warn("orchestrator.webhook_refused", {{"webhook_id", h.id.substr(0, 64)}, {"error", s.ToString()}});
    return api::ApiService::ErrorResult(s, req);
  }
  Json body = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  std::string type;
  if (body.is_object() && body.contains("data") && body["data"].is_object() && body["data"].contains("type") &&
      body["data"]["type"].is_string()) {
    type = body["data"]["type"].get<std::string>();
  } else {
    // Authentic but not an event envelope: remembered (a replay is still
    // refused) and answered 400 so the sender sees its mistake.
    return api::ApiService::ErrorResult(
        Status::InvalidArgument("webhook body is not an event envelope ({\"data\":{\"type\":...}})"), req);
  }
  bool woke = type == "session.status_run_started";
  if (woke) wake();
  log::Info("orchestrator.webhook_received", {{"webhook_id", h.id}, {"event_type", type}, {"woke", woke}});
  return api::ApiService::JsonResult(Json{{"type", "webhook_received"}, {"woke", woke}});
}

}  // namespace warren::cli
