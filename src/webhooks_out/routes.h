// The delivery log and endpoint list of outgoing webhooks, Warren-only
// routes (docs/WEBHOOKS.md, docs/API.md), organization API keys only:
//
//   GET /v1/warren/webhooks/endpoints                 configured endpoints (never their secrets)
//                                                     with their state: disabled, consecutive_failures, disabled_at
//   POST /v1/warren/webhooks/endpoints/{name}/enable  re-enable; its held deliveries go out
//   GET /v1/warren/webhooks/deliveries                the log: ?endpoint= ?state=pending|delivered|failed
//                                                     ?webhook_id= ?limit=1..100 ?order= ?page=
//   GET /v1/warren/webhooks/deliveries/{delivery_id}  one row
//
// Endpoints are configured in the serve config (`webhooks.endpoints`), not
// through the API: their secrets then live where the operator keeps the
// other secrets, and no API call can point Warren's outbound traffic at a
// new host.
//
// Thread-safety: handlers run on the HTTP worker pool; the store is
// thread-safe and the config is immutable.
#pragma once

#include "api/service.h"
#include "webhooks_out/webhooks_out.h"

namespace warren::webhooks_out {

// `cfg`, `store` and `clock` must outlive the service.
void RegisterRoutes(api::ApiService* service, store::Store* store, const WebhooksConfig* cfg, Clock* clock);

}  // namespace warren::webhooks_out
