#include "common/standard_webhooks.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/ids.h"

namespace warren {
namespace {

constexpr std::string_view kPrefix = "whsec_";
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

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

}  // namespace warren
