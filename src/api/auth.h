// Authentication and scopes (spec section 3.2).
//
//   org API key      x-api-key (or Bearer)  everything
//   environment key  Bearer                 one environment: its work queue, and read/stream/list/send
//                                           on that environment's sessions
//   sessions token   Bearer                 one session (and its work item)
//
// Keys are random secrets with Warren prefixes; only their SHA-256 is
// stored. Thread-safe.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"
#include "http/http_server.h"
#include "store/store.h"

namespace warren::api {

struct Principal {
  store::KeyKind kind = store::KeyKind::kApi;
  std::string environment_id;  // environment key
  std::string session_id;      // sessions token
  std::string work_id;         // sessions token

  bool is_org() const { return kind == store::KeyKind::kApi; }
  // May this principal act on a session of `environment_id` / id?
  bool CanAccessSession(const std::string& session_id, const std::string& env_id) const;
  bool CanAccessEnvironment(const std::string& env_id) const;
};

// PermissionDenied unless `p` is an organization API key.
Status RequireOrg(const Principal& p);

class Authenticator final {
 public:
  explicit Authenticator(store::Store* store) : store_(store) {}

  // 401 when no credential or an unknown one.
  Result<Principal> Authenticate(const http::HttpRequest& req) const;

  // Issues a key, stores its hash, returns the plaintext (shown once).
  Result<std::string> IssueApiKey();
  Result<std::string> IssueEnvironmentKey(const std::string& environment_id);
  Result<std::string> IssueSessionsToken(const std::string& session_id, const std::string& environment_id,
                                         const std::string& work_id);
  // Registers a caller-chosen API key (WARREN_API_KEY); idempotent.
  Status RegisterApiKey(const std::string& key);

 private:
  store::Store* store_;
};

}  // namespace warren::api
