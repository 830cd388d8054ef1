#include "api/auth.h"

#include "common/ids.h"

namespace warren::api {

bool Principal::CanAccessSession(const std::string& sid, const std::string& env_id) const {
  switch (kind) {
    case store::KeyKind::kApi: return true;
    case store::KeyKind::kEnvironment: return env_id == environment_id;
    case store::KeyKind::kSession: return sid == session_id;
  }
  return false;
}

bool Principal::CanAccessEnvironment(const std::string& env_id) const {
  switch (kind) {
    case store::KeyKind::kApi: return true;
    case store::KeyKind::kEnvironment: return env_id == environment_id;
    case store::KeyKind::kSession: return env_id == environment_id;
  }
  return false;
}

Status RequireOrg(const Principal& p) {
  if (!p.is_org()) return Status::PermissionDenied("this operation requires an organization API key (x-api-key)");
  return Status::Ok();
}

Result<Principal> Authenticator::Authenticate(const http::HttpRequest& req) const {
  std::string key;
  if (const std::string* k = req.headers.Find("x-api-key"); k && !k->empty()) {
    key = *k;
  } else if (const std::string* a = req.headers.Find("authorization")) {
    std::string_view v = *a;
    if (v.size() > 7 && (v.substr(0, 7) == "Bearer " || v.substr(0, 7) == "bearer ")) key = std::string(v.substr(7));
    else return Status::Unauthenticated("Authorization header must be 'Bearer <token>'");
  }
  while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
  if (key.empty())
    return Status::Unauthenticated("missing credentials: send an x-api-key header or an Authorization: Bearer token");
  if (key.size() > 512) return Status::Unauthenticated("invalid x-api-key");
  WARREN_ASSIGN_OR_RETURN(auto rec, store_->LookupKey(Sha256Hex(key)));
  if (!rec) return Status::Unauthenticated("invalid x-api-key");
  Principal p;
  p.kind = rec->kind;
  p.environment_id = rec->environment_id;
  p.session_id = rec->session_id;
  p.work_id = rec->work_id;
  return p;
}

Result<std::string> Authenticator::IssueApiKey() {
  std::string key = NewId(idprefix::kApiKey, 40);
  WARREN_RETURN_IF_ERROR(store_->PutKey(Sha256Hex(key), store::KeyRecord{store::KeyKind::kApi}));
  return key;
}

Result<std::string> Authenticator::IssueEnvironmentKey(const std::string& environment_id) {
  std::string key = NewId(idprefix::kEnvironmentKey, 40);
  WARREN_RETURN_IF_ERROR(
      store_->PutKey(Sha256Hex(key), store::KeyRecord{store::KeyKind::kEnvironment, environment_id, "", ""}));
  return key;
}

Result<std::string> Authenticator::IssueSessionsToken(const std::string& session_id, const std::string& environment_id,
                                                      const std::string& work_id) {
  std::string key = NewId(idprefix::kSessionsToken, 40);
  WARREN_RETURN_IF_ERROR(store_->PutKey(
      Sha256Hex(key), store::KeyRecord{store::KeyKind::kSession, environment_id, session_id, work_id}));
  return key;
}

Status Authenticator::RegisterApiKey(const std::string& key) {
  if (key.size() < 16) return Status::InvalidArgument("WARREN_API_KEY must be at least 16 characters");
  std::string hash = Sha256Hex(key);
  WARREN_ASSIGN_OR_RETURN(auto rec, store_->LookupKey(hash));
  if (rec) return Status::Ok();
  return store_->PutKey(hash, store::KeyRecord{store::KeyKind::kApi});
}

}  // namespace warren::api
