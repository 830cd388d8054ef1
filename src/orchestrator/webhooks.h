// Webhooks: Standard Webhooks (https://www.standardwebhooks.com) signatures,
// both ways.
//
//  - Receiving (the orchestrator's wake-up, issue 10 item 4): a delivery
//    carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//    `webhook-signature` (one or more space-separated `v1,<base64>`
//    entries). Each is HMAC-SHA256 with the endpoint key over
//    "<id>.<timestamp>.<raw body>". WebhookVerifier checks, in this order:
//    the headers are well formed (kInvalidArgument, detail
//    "webhook_malformed"), the timestamp is within the tolerance window in
//    either direction (kUnauthenticated, "webhook_stale_timestamp"), one
//    v1 signature matches in constant time (kUnauthenticated,
//    "webhook_bad_signature"), and the id was not accepted before within the
//    window (kConflict, "webhook_replay"). Only a delivery with a valid
//    signature is remembered, so an unauthenticated caller cannot fill the
//    replay cache. The cache is bounded (`max_remembered_ids`); entries
//    expire after twice the tolerance (after that the timestamp check
//    refuses the delivery anyway). When the cache is full of live entries a
//    new delivery is refused with kResourceExhausted ("webhook_replay_cache_full",
//    the sender retries) rather than forgetting an id early, which would let
//    a replay through.
//  - Sending (Warren's own outgoing webhooks): SignWebhook() produces the
//    three headers for a body.
//
// Keys: `whsec_<base64 of the raw key>` (the prefix is optional on input).
// Several keys may be configured on a verifier (key rotation): a signature
// made with any of them is accepted.
//
// Ownership: WebhookKey and WebhookHeaders are values. WebhookVerifier owns
// its replay cache and borrows the Clock (must outlive it). Thread-safety:
// WebhookVerifier::Verify is thread-safe (one mutex around the cache); the
// free functions are reentrant.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/standard_webhooks.h"
#include "common/status.h"

namespace warren::orchestrator {

// Detail codes on the Status of a refused delivery (Status::detail_code()).
namespace webhook_error {
inline constexpr std::string_view kMalformed = "webhook_malformed";
inline constexpr std::string_view kStaleTimestamp = "webhook_stale_timestamp";
inline constexpr std::string_view kBadSignature = "webhook_bad_signature";
inline constexpr std::string_view kReplay = "webhook_replay";
inline constexpr std::string_view kReplayCacheFull = "webhook_replay_cache_full";
}  // namespace webhook_error

// Keys, headers, signing and base64 live in common/standard_webhooks.h
// (shared with the outgoing webhooks of src/webhooks_out).
using warren::Base64Decode;
using warren::Base64Encode;
using warren::SignWebhook;
using warren::WebhookHeaders;
using warren::WebhookKey;
using warren::WebhookSignature;

struct WebhookVerifierOptions {
  std::chrono::seconds tolerance{300};   // both directions
  size_t max_remembered_ids = 100000;    // replay cache bound
  size_t max_id_bytes = 256;             // longer ids are malformed
};

class WebhookVerifier final {
 public:
  // `keys` must not be empty. `clock` nullptr = Clock::Real().
  WebhookVerifier(std::vector<WebhookKey> keys, Clock* clock, WebhookVerifierOptions options = {});
  WebhookVerifier(const WebhookVerifier&) = delete;
  WebhookVerifier& operator=(const WebhookVerifier&) = delete;

  // OK when the delivery is authentic, fresh and new (and remembers its id);
  // otherwise the Status described above. `body` is the raw request body.
  Status Verify(const WebhookHeaders& headers, std::string_view body);

  // Ids currently remembered, after dropping expired ones (tests, metrics).
  size_t remembered();

 private:
  void ExpireLocked(int64_t now_micros);

  std::vector<WebhookKey> keys_;
  Clock* clock_;
  WebhookVerifierOptions opts_;
  std::mutex mu_;
  // id -> expiry (micros), and the ids in order of expiry (all entries get
  // the same lifetime, so insertion order is expiry order).
  std::unordered_map<std::string, int64_t> seen_;
  std::deque<std::pair<int64_t, std::string>> order_;
};

}  // namespace warren::orchestrator
