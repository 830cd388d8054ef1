// SecretBox: authenticated encryption of small secrets at rest with
// AES-256-GCM (OpenSSL). A sealed value is "w1" | 12-byte random nonce |
// ciphertext | 16-byte tag; `aad` (e.g. the session id and secret name) is
// authenticated, so a sealed value copied to another row does not open.
//
// The key (32 bytes) comes from configuration (WARREN_SECRETS_KEY, 64 hex
// digits) or from a 0600 key file the service creates in its data dir; it
// is never logged. Immutable after construction; thread-safe.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "common/status.h"

namespace warren {

class SecretBox final {
 public:
  static constexpr size_t kKeySize = 32;

  // `hex`: 64 hex digits. InvalidArgument otherwise.
  static Result<SecretBox> FromHex(std::string_view hex);
  // Reads the key file at `path` (64 hex digits), creating it with a fresh
  // random key (mode 0600) if it does not exist.
  static Result<SecretBox> FromKeyFile(const std::string& path);

  Result<std::string> Seal(std::string_view plaintext, std::string_view aad) const;
  // InvalidArgument if `sealed` is malformed, or was sealed under another
  // key or `aad` (the tag does not verify).
  Result<std::string> Open(std::string_view sealed, std::string_view aad) const;

 private:
  explicit SecretBox(const std::array<unsigned char, kKeySize>& key) : key_(key) {}
  std::array<unsigned char, kKeySize> key_;
};

}  // namespace warren
