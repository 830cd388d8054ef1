#include "orchestrator/webhooks.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>

#include "common/ids.h"

namespace warren::orchestrator {
namespace {

constexpr std::string_view kPrefix = "whsec_";
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

Status Refuse(Code code, std::string_view detail, std::string msg) {
  Status s = code == Code::kInvalidArgument      ? Status::InvalidArgument(std::move(msg))
             : code == Code::kConflict           ? Status::Conflict(std::move(msg))
             : code == Code::kResourceExhausted  ? Status::ResourceExhausted(std::move(msg))
                                                 : Status::Unauthenticated(std::move(msg));
  return s.WithDetailCode(std::string(detail));
}

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == data.size()) {
    uint32_t v = uint8_t(data[i]) << 16;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

bool Base64Decode(std::string_view in, std::string* out) {
  out->clear();
  size_t pad = 0;
  while (!in.empty() && in.back() == '=' && pad < 2) {
    in.remove_suffix(1);
    ++pad;
  }
  if (in.size() % 4 == 1) return false;
  if (pad > 0 && (in.size() + pad) % 4 != 0) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

Result<WebhookKey> WebhookKey::Parse(std::string_view text) {
  if (text.substr(0, kPrefix.size()) == kPrefix) text.remove_prefix(kPrefix.size());
  std::string raw;
  if (!Base64Decode(text, &raw)) return Status::InvalidArgument("webhook key: not base64 (expected whsec_<base64>)");
  if (raw.empty()) return Status::InvalidArgument("webhook key: empty");
  return WebhookKey(std::move(raw));
}

WebhookKey WebhookKey::Generate() {
  std::string raw(32, '\0');
  RandomBytes(raw.data(), raw.size());
  return WebhookKey(std::move(raw));
}

std::string WebhookKey::ToString() const { return std::string(kPrefix) + Base64Encode(raw_); }

std::string WebhookSignature(const WebhookKey& key, std::string_view id, int64_t timestamp_seconds,
                             std::string_view body) {
  std::string msg;
  msg.reserve(id.size() + body.size() + 24);
  msg.append(id);
  msg += '.';
  msg += std::to_string(timestamp_seconds);
  msg += '.';
  msg.append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.raw().data(), static_cast<int>(key.raw().size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
  return Base64Encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

WebhookHeaders SignWebhook(const WebhookKey& key, std::string_view id, int64_t timestamp_seconds,
                           std::string_view body) {
  return WebhookHeaders{std::string(id), std::to_string(timestamp_seconds),
                        "v1," + WebhookSignature(key, id, timestamp_seconds, body)};
}

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
