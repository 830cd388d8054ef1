// The secret half of a vault credential (spec 6) and how it is sealed at
// rest. The public half is the credential's API JSON (store body); the
// secrets below are sealed with AES-256-GCM (common/secret_box.h) under the
// service's secrets key, bound to the credential id (the AAD), so a sealed
// value copied to another row does not open. Secrets never appear in any
// response, log line, event or error (docs/MCP.md). Values only; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/json.h"
#include "common/secret_box.h"
#include "common/status.h"

namespace warren::domain {

struct CredentialSecrets {
  std::string token;          // static_bearer
  std::string access_token;   // mcp_oauth
  std::string refresh_token;  // mcp_oauth (optional)
  std::string client_secret;  // mcp_oauth client_secret_basic / client_secret_post

  // Every non-empty secret (for scrubbing text that may echo one).
  std::vector<std::string> All() const;
};

Result<std::string> SealCredentialSecrets(const SecretBox& box, const std::string& credential_id,
                                          const CredentialSecrets& secrets);
Result<CredentialSecrets> OpenCredentialSecrets(const SecretBox& box, const std::string& credential_id,
                                                const std::string& sealed);

// Replaces every occurrence of each secret in `text` by "[redacted]", in
// the forms a server may echo it back in: as is, percent-encoded (form and
// URL encoding, either hex case, '+' for a space) and JSON-escaped (also
// with "\/"). Secrets shorter than 4 bytes are left alone.
std::string Redact(std::string text, const CredentialSecrets& secrets);
// The same for any list of secret strings (for example a Basic
// Authorization credential built from a client secret).
std::string RedactAll(std::string text, const std::vector<std::string>& secrets);

}  // namespace warren::domain
