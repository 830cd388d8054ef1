// CredentialResolver: the bearer token a session sends to an MCP server,
// from the credentials of the session's vaults (spec 6, docs/MCP.md).
//
// Matching: the session's `vault_ids` in order; in each vault its
// credentials that are not archived, newest first; the first whose
// auth.mcp_server_url equals the server's URL (compared after dropping one
// trailing '/') wins. No match: no Authorization header.
//
// mcp_oauth: the access token is refreshed (RFC 6749 refresh_token grant at
// the credential's token_endpoint, with client_secret_basic,
// client_secret_post or none) before use when expires_at is within a minute,
// and once when the server answers 401. The new tokens (a rotated refresh
// token too) are sealed back into the store. A refresh that fails is
// reported through `on_refresh_failed` (vault_credential.refresh_failed,
// spec 3.8) and logged without any secret.
//
// Thread-safety: thread-safe; refreshes of one credential are serialised.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/http_client.h"
#include "common/json.h"
#include "common/secret_box.h"
#include "domain/vault_secrets.h"
#include "store/store.h"

namespace warren::mcp {

struct ResolvedCredential {
  std::string vault_id;
  std::string credential_id;
  std::string type;  // static_bearer | mcp_oauth
};

// Normalised URL for matching (one trailing '/' dropped).
std::string NormalizeServerUrl(std::string url);

// The result of one refresh attempt, in the shape of mcp_oauth_validate's
// `refresh` object (spec: status succeeded | failed | connect_error |
// no_refresh_token, http_response with secrets scrubbed).
struct RefreshReport {
  std::string status;
  Json http_response = nullptr;
};

class CredentialResolver final {
 public:
  CredentialResolver(store::Store* store, HttpClient* http, const SecretBox* box, Clock* clock)
      : store_(store), http_(http), box_(box), clock_(clock) {}
  CredentialResolver(const CredentialResolver&) = delete;
  CredentialResolver& operator=(const CredentialResolver&) = delete;

  std::function<void(const std::string& vault_id, const std::string& credential_id)> on_refresh_failed;

  // The credential for `server_url` among the session's vaults, if any.
  Result<std::optional<ResolvedCredential>> Find(const Json& session, const std::string& server_url);
  // Its bearer token; refreshed first when expired or when `force_refresh`.
  // kUnauthenticated when no usable token can be had.
  Result<std::string> Bearer(const ResolvedCredential& c, bool force_refresh, const CancelToken* cancel);
  // One refresh of an mcp_oauth credential (mcp_oauth_validate).
  RefreshReport Refresh(const std::string& vault_id, const std::string& credential_id, const CancelToken* cancel);

 private:
  // Refreshes and stores; the new access token.
  Result<std::string> RefreshLocked(const std::string& vault_id, const std::string& credential_id,
                                    const CancelToken* cancel, RefreshReport* report);

  store::Store* store_;
  HttpClient* http_;
  const SecretBox* box_;
  Clock* clock_;
  std::mutex refresh_mu_;
};

}  // namespace warren::mcp
