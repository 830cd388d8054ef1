#include "orchestrator/webhooks.h"

#include <openssl/crypto.h>

#include <charconv>

#include "common/ids.h"

namespace warren::orchestrator {
namespace {

Status Refuse(Code code, std::string_view detail, std::string msg) {
  Status s = code == Code::kInvalidArgument      ? Status::InvalidArgument(std::move(msg))
             : code == Code::kConflict           ? Status::Conflict(std::move(msg))
             : code == Code::kResourceExhausted  ? Status::ResourceExhausted(std::move(msg))
                                                 : Status::Unauthenticated(std::move(msg));
  return s.WithDetailCode(std::string(detail));
}

}  // namespace

WebhookVerifier::WebhookVerifier(std::vector<WebhookKey> keys, Clock* clock, WebhookVerifierOptions options)
    : keys_(std::move(keys)), clock_(clock ? clock : Clock::Real()), opts_(options) {}

size_t WebhookVerifier::remembered() {
  std::lock_guard<std::mutex> l(mu_);
  ExpireLocked(clock_->MonoMicros());
  return seen_.size();
}

void WebhookVerifier::ExpireLocked(int64_t now) {
  while (!order_.empty() && order_.front().first <= now) {
    auto it = seen_.find(order_.front().second);
    if (it != seen_.end() && it->second == order_.front().first) seen_.erase(it);
    order_.pop_front();
  }
}

Status WebhookVerifier::Verify(const WebhookHeaders& h, std::string_view body) {
  if (keys_.empty()) return Status::FailedPrecondition("webhook verifier has no key");
  if (h.id.empty() || h.timestamp.empty() || h.signature.empty()) {
    return Refuse(Code::kInvalidArgument, webhook_error::kMalformed,
                  "missing webhook-id, webhook-timestamp or webhook-signature header");
  }
  if (h.id.size() > opts_.max_id_bytes) {
    return Refuse(Code::kInvalidArgument, webhook_error::kMalformed, "webhook-id is too long");
  }
  int64_t ts = 0;
  auto [end, ec] = std::from_chars(h.timestamp.data(), h.timestamp.data() + h.timestamp.size(), ts);
  if (ec != std::errc() || end != h.timestamp.data() + h.timestamp.size() || h.timestamp[0] == '-') {
    return Refuse(Code::kInvalidArgument, webhook_error::kMalformed, "webhook-timestamp is not Unix seconds");
  }
  const int64_t now_s = clock_->NowMicros() / 1'000'000;
  const int64_t tol = opts_.tolerance.count();
  if (ts < now_s - tol) {
    return Refuse(Code::kUnauthenticated, webhook_error::kStaleTimestamp, "webhook-timestamp is too old");
  }
  if (ts > now_s + tol) {
    return Refuse(Code::kUnauthenticated, webhook_error::kStaleTimestamp, "webhook-timestamp is too new");
  }
  // Every key's expected signature, compared with every v1 entry in
  // constant time (per entry; the number of entries is not secret).
  std::vector<std::string> expected;
  for (const auto& k : keys_) expected.push_back(WebhookSignature(k, h.id, ts, body));
  bool match = false;
  std::string_view rest = h.signature;
  while (!rest.empty()) {
    size_t sp = rest.find(' ');
    std::string_view entry = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
    if (entry.substr(0, 3) != "v1,") continue;  // other schemes (v1a) are not ours
    std::string_view sig = entry.substr(3);
    for (const auto& e : expected) {
      if (sig.size() == e.size() && CRYPTO_memcmp(sig.data(), e.data(), e.size()) == 0) match = true;
    }
  }
  if (!match) {
    return Refuse(Code::kUnauthenticated, webhook_error::kBadSignature, "no valid v1 webhook-signature");
  }
  std::lock_guard<std::mutex> l(mu_);
  const int64_t now = clock_->MonoMicros();
  ExpireLocked(now);
  if (seen_.count(h.id) != 0) {
    return Refuse(Code::kConflict, webhook_error::kReplay, "webhook " + h.id + " was already delivered");
  }
  if (seen_.size() >= opts_.max_remembered_ids) {
    return Refuse(Code::kResourceExhausted, webhook_error::kReplayCacheFull,
                  "too many webhook deliveries inside the tolerance window; retry later");
  }
  const int64_t expiry = now + 2 * tol * 1'000'000;
  seen_.emplace(h.id, expiry);
  order_.emplace_back(expiry, h.id);
  return Status::Ok();
}

}  // namespace warren::orchestrator
