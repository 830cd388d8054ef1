// Identifiers with the Managed Agents prefixes ("agent_", "sesn_", ...), and
// random secrets. Ids are the prefix followed by 26 base62 characters drawn
// from the kernel CSPRNG; they carry no ordering. Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace warren {

namespace idprefix {
inline constexpr std::string_view kAgent = "agent_";
inline constexpr std::string_view kEnvironment = "env_";
inline constexpr std::string_view kSession = "sesn_";
inline constexpr std::string_view kEvent = "sevt_";
inline constexpr std::string_view kWork = "work_";
inline constexpr std::string_view kThread = "sthr_";
inline constexpr std::string_view kRequest = "req_";
inline constexpr std::string_view kApiKey = "wrn-api-";
inline constexpr std::string_view kEnvironmentKey = "wrn-env-";
inline constexpr std::string_view kSessionsToken = "wrn-req-";
}  // namespace idprefix

// Returns `prefix` + `n` random base62 characters.
std::string NewId(std::string_view prefix, int n = 26);

// Fills `out` with `n` random bytes from getrandom(2). Aborts on failure
// (a machine without a CSPRNG cannot run Warren safely).
void RandomBytes(void* out, size_t n);

// True if `id` starts with `prefix` and continues with 1..64 characters of
// [A-Za-z0-9_-].
bool HasIdShape(std::string_view id, std::string_view prefix);

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// base64url (no padding) encode / decode (decode accepts padding). Decode
// returns false on invalid input.
std::string Base64UrlEncode(std::string_view data);
bool Base64UrlDecode(std::string_view in, std::string* out);

}  // namespace warren
