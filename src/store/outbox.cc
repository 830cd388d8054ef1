// Shared pieces of the webhook outbox (store.h): the delivery log's JSON and
// the effect of one attempt, the same in every Store implementation.
#include "common/clock.h"
#include "store/store.h"

namespace warren::store {

Json OutboxDelivery::ToJson() const {
  auto time = [](const std::optional<int64_t>& t) -> Json { return t ? Json(FormatRfc3339(*t)) : Json(); };
  Json j = {{"type", "webhook_delivery"},
            {"id", "whdlv_" + std::to_string(seq)},
            {"webhook_id", message.message_id},
            {"endpoint", message.endpoint},
            {"event_type", message.event_type},
            {"session_id", message.session_id.empty() ? Json() : Json(message.session_id)},
            {"object_id", !message.object_id.empty() ? Json(message.object_id)
                          : message.session_id.empty() ? Json() : Json(message.session_id)},
            {"state", state},
            {"attempts", attempts},
            {"created_at", FormatRfc3339(created_at)},
            {"next_attempt_at", state == "pending" && !held() ? Json(FormatRfc3339(next_attempt_at)) : Json()},
            {"last_attempt_at", time(last_attempt_at)},
            {"delivered_at", time(delivered_at)},
            {"last_status", last_status == 0 ? Json() : Json(last_status)},
            {"last_error", last_error.empty() ? Json() : Json(last_error)}};
  return j;
}

bool ApplyAttempt(const DeliveryAttempt& a, OutboxDelivery* d, EndpointState* ep) {
  d->attempts++;
  d->last_attempt_at = a.at;
  d->last_status = a.status;
  d->last_error = a.delivered ? "" : a.error;
  if (a.delivered) {
    d->state = "delivered";
    d->delivered_at = a.at;
    ep->consecutive_failures = 0;
    return false;
  }
  ep->consecutive_failures++;
  bool disabled_now = false;
  if (!ep->disabled_at && a.disable_endpoint_after > 0 && ep->consecutive_failures >= a.disable_endpoint_after) {
    ep->disabled_at = a.at;
    disabled_now = true;
  }
  if (ep->disabled_at) {
    // Held, not failed: the row goes out after the endpoint is enabled.
    d->next_attempt_at = kHeldUntilEnabled;
  } else if (a.retry_at) {
    d->next_attempt_at = *a.retry_at;
  } else {
    d->state = "failed";
  }
  return disabled_now;
}

}  // namespace warren::store
