#include "webhooks_out/routes.h"

#include <charconv>

#include "api/validate.h"
#include "common/log.h"

namespace warren::webhooks_out {

using api::ApiService;
using api::Params;
using api::Principal;
using http::HandlerResult;
using http::HttpRequest;

namespace {

Status InvalidParam(std::string_view name, std::string_view problem) {
  return Status::InvalidArgument(std::string(name) + ": " + std::string(problem));
}

Json EndpointJson(const Endpoint& e, const store::EndpointState& st) {
  return {{"type", "webhook_endpoint"},
          {"name", e.name},
          {"url", e.url},
          {"event_types", e.event_types.empty() ? Json(SupportedEventTypes()) : Json(e.event_types)},
          {"disabled", st.disabled_at.has_value()},
          {"consecutive_failures", st.consecutive_failures},
          {"disabled_at", st.disabled_at ? Json(FormatRfc3339(*st.disabled_at)) : Json()}};
}

}  // namespace

void RegisterRoutes(ApiService* service, store::Store* store, const WebhooksConfig* cfg, Clock* clock) {
  using Fn = std::function<Result<HandlerResult>(HttpRequest&, const Params&, const Principal&)>;
  auto add = [service](const char* method, const char* pattern, Fn fn) {
    service->router().Add(method, pattern, [service, fn](HttpRequest& req, const Params& params) -> HandlerResult {
      auto principal = service->Authenticate(req);
      if (!principal.ok()) return ApiService::ErrorResult(principal.status(), req);
      Status org = api::RequireOrg(*principal);
      if (!org.ok()) return ApiService::ErrorResult(org, req);
      auto r = fn(req, params, *principal);
      if (!r.ok()) return ApiService::ErrorResult(r.status(), req);
      return std::move(r).value();
    });
  };

  add("GET", "/v1/warren/webhooks/endpoints", [store, cfg](HttpRequest&, const Params&, const Principal&) -> Result<HandlerResult> {
    WARREN_ASSIGN_OR_RETURN(auto states, store->ListEndpointStates());
    Json data = Json::array();
    for (const Endpoint& e : cfg->endpoints) {
      store::EndpointState st;
      for (const auto& s : states)
        if (s.name == e.name) st = s;
      data.push_back(EndpointJson(e, st));
    }
    return ApiService::JsonResult({{"data", data}});
  });

  // Re-enables an endpoint (auto-disabled after consecutive failures): its
  // held deliveries become due now. Enabling an enabled endpoint is a no-op.
  add("POST", "/v1/warren/webhooks/endpoints/{name}/enable",
      [store, cfg, clock](HttpRequest& req, const Params& params, const Principal&) -> Result<HandlerResult> {
        // The body (none, or an empty object) is checked before the name.
        WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req, true));
        WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {}, ""));
        const std::string& name = params.at("name");
        const Endpoint* ep = nullptr;
        for (const Endpoint& e : cfg->endpoints)
          if (e.name == name) ep = &e;
        if (ep == nullptr) return Status::NotFound("no webhook endpoint '" + name.substr(0, 64) + "' is configured");
        WARREN_ASSIGN_OR_RETURN(auto st, store->EnableEndpoint(name, clock->NowMicros()));
        log::Info("webhooks.endpoint_enabled", {{"endpoint", name}});
        return ApiService::JsonResult(EndpointJson(*ep, st));
      });

  add("GET", "/v1/warren/webhooks/deliveries", [store, cfg](HttpRequest& req, const Params&, const Principal&) -> Result<HandlerResult> {
    WARREN_ASSIGN_OR_RETURN(auto spec, api::ParsePaging(req, 20, 100, store::Order::kDesc, true));
    store::DeliveryFilter f;
    if (auto e = req.Query("endpoint")) {
      bool known = false;
      for (const Endpoint& ep : cfg->endpoints) known = known || ep.name == *e;
      if (!known) return InvalidParam("endpoint", "no endpoint '" + e->substr(0, 64) + "' is configured");
      f.endpoint = *e;
    }
    if (auto s = req.Query("state")) {
      if (*s != "pending" && *s != "delivered" && *s != "failed")
        return InvalidParam("state", "must be one of pending, delivered, failed");
      f.state = *s;
    }
    if (auto w = req.Query("webhook_id")) {
      if (w->empty() || w->size() > 128) return InvalidParam("webhook_id", "must be 1 to 128 characters");
      f.message_id = *w;
    }
    WARREN_ASSIGN_OR_RETURN(auto page, store->ListDeliveries(f, spec));
    return ApiService::JsonResult(api::PageBody(page, spec, true));
  });

  add("GET", "/v1/warren/webhooks/deliveries/{delivery_id}",
      [store](HttpRequest&, const Params& params, const Principal&) -> Result<HandlerResult> {
        const std::string& id = params.at("delivery_id");
        constexpr std::string_view kPrefix = "whdlv_";
        int64_t seq = 0;
        if (id.rfind(kPrefix, 0) != 0)
          return Status::NotFound("webhook delivery " + id.substr(0, 64) + " not found");
        std::string_view digits(id);
        digits.remove_prefix(kPrefix.size());
        auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), seq);
        if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || seq <= 0)
          return Status::NotFound("webhook delivery " + id.substr(0, 64) + " not found");
        WARREN_ASSIGN_OR_RETURN(auto d, store->GetDelivery(seq));
        return ApiService::JsonResult(d.ToJson());
      });
}

}  // namespace warren::webhooks_out
