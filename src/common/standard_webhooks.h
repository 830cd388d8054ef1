// Standard Webhooks (https://www.standardwebhooks.com) primitives shared by
// the orchestrator's incoming webhook verifier (orchestrator/webhooks.h) and
// Warren's outgoing webhooks (webhooks_out/): `whsec_` keys, the
// HMAC-SHA256 signature over "<id>.<timestamp>.<body>", the three headers,
// and standard base64.
//
// Keys: `whsec_<base64 of the raw key>` (the prefix is optional on input).
//
// Ownership: values only. Thread-safety: every function is reentrant.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace warren {

class WebhookKey final {
 public:
  // Accepts "whsec_<base64>" or bare base64 (standard alphabet, padding
  // optional). InvalidArgument if it does not decode or is empty.
  static Result<WebhookKey> Parse(std::string_view text);
  // A new random 32-byte key (getrandom).
  static WebhookKey Generate();
  // "whsec_<base64>".
  std::string ToString() const;
  const std::string& raw() const { return raw_; }

 private:
  explicit WebhookKey(std::string raw) : raw_(std::move(raw)) {}
  std::string raw_;
};

struct WebhookHeaders {
  std::string id;         // webhook-id
  std::string timestamp;  // webhook-timestamp, decimal Unix seconds
  std::string signature;  // webhook-signature, "v1,<b64>[ v1,<b64>...]"
};

// The base64 HMAC-SHA256 of "<id>.<timestamp>.<body>" (no "v1," prefix).
std::string WebhookSignature(const WebhookKey& key, std::string_view id, int64_t timestamp_seconds,
                             std::string_view body);

// The headers for an outgoing delivery: signature "v1,<b64>".
WebhookHeaders SignWebhook(const WebhookKey& key, std::string_view id, int64_t timestamp_seconds,
                           std::string_view body);

// Standard base64 (RFC 4648 alphabet) with padding; decode accepts missing
// padding and refuses anything else (false).
std::string Base64Encode(std::string_view data);
bool Base64Decode(std::string_view in, std::string* out);

}  // namespace warren
