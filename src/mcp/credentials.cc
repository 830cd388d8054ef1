#include "mcp/credentials.h"

#include <openssl/evp.h>

#include "common/log.h"

namespace warren::mcp {
namespace {

std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}
const Json& Obj(const Json& j, const char* key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it != j.end() ? *it : kNull;
}

std::string FormEncode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string Base64(std::string_view s) {
  std::string out(4 * ((s.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()),
                          static_cast<int>(s.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// `basic`: the Basic credential sent (client_id:client_secret, base64), or
// empty; scrubbed too, in case the server echoes the header.
Json HttpReport(const HttpResponse& r, const domain::CredentialSecrets& secrets, const std::string& basic,
                const std::string& new_tokens_scrub) {
  std::vector<std::string> scrub = secrets.All();
  if (!basic.empty()) scrub.push_back(basic);
  std::string body = domain::RedactAll(r.body, scrub);
  if (!new_tokens_scrub.empty()) {
    // A successful answer carries the new tokens: never shown.
    body = "(token response withheld)";
  }
  bool truncated = body.size() > 4096;
  if (truncated) body.resize(4096);
  return {{"status_code", r.status},
          {"content_type", r.Header("content-type").value_or("")},
          {"body", body},
          {"body_truncated", truncated}};
}

}  // namespace

std::string NormalizeServerUrl(std::string url) {
  if (url.size() > 1 && url.back() == '/') url.pop_back();
  return url;
}

Result<std::optional<ResolvedCredential>> CredentialResolver::Find(const Json& session, const std::string& server_url) {
  const Json& vaults = Obj(session, "vault_ids");
  if (!vaults.is_array()) return std::optional<ResolvedCredential>();
  const std::string want = NormalizeServerUrl(server_url);
  for (const Json& v : vaults) {
    if (!v.is_string()) continue;
    store::PageSpec spec;
    spec.limit = 100;
    spec.order = store::Order::kDesc;
    auto page = store_->ListCredentials(v.get<std::string>(), false, spec);
    if (!page.ok()) continue;
    for (const Json& c : page->items) {
      const Json& auth = Obj(c, "auth");
      if (NormalizeServerUrl(Str(auth, "mcp_server_url")) != want) continue;
      return std::optional<ResolvedCredential>(ResolvedCredential{v.get<std::string>(), Str(c, "id"), Str(auth, "type")});
    }
  }
  return std::optional<ResolvedCredential>();
}

Result<std::string> CredentialResolver::Bearer(const ResolvedCredential& c, bool force_refresh,
                                               const CancelToken* cancel) {
  if (box_ == nullptr) return Status::Unauthenticated("no secrets key: vault credentials cannot be opened");
  std::lock_guard<std::mutex> lock(refresh_mu_);
  WARREN_ASSIGN_OR_RETURN(auto rec, store_->GetCredential(c.vault_id, c.credential_id));
  if (!Obj(rec.body, "archived_at").is_null())
    return Status::Unauthenticated("credential " + c.credential_id + " is archived");
  auto sec = domain::OpenCredentialSecrets(*box_, c.credential_id, rec.sealed);
  if (!sec.ok()) return Status::Unauthenticated(sec.status().message());
  const Json& auth = Obj(rec.body, "auth");
  if (Str(auth, "type") == "static_bearer") {
    if (force_refresh) return Status::Unauthenticated("the static bearer token of credential " + c.credential_id + " was refused");
    return sec->token;
  }
  bool expired = false;
  if (auto exp = ParseRfc3339(Str(auth, "expires_at"))) expired = *exp <= clock_->NowMicros() + 60'000'000;
  if (!force_refresh && !expired) return sec->access_token;
  if (!Obj(auth, "refresh").is_object() || sec->refresh_token.empty()) {
    if (force_refresh || expired) {
      if (on_refresh_failed && force_refresh) on_refresh_failed(c.vault_id, c.credential_id);
      return Status::Unauthenticated("the access token of credential " + c.credential_id +
                                     (expired ? " has expired" : " was refused") + " and it has no refresh token");
    }
  }
  RefreshReport report;
  return RefreshLocked(c.vault_id, c.credential_id, cancel, &report);
}

RefreshReport CredentialResolver::Refresh(const std::string& vault_id, const std::string& credential_id,
                                          const CancelToken* cancel) {
  std::lock_guard<std::mutex> lock(refresh_mu_);
  RefreshReport report;
  (void)RefreshLocked(vault_id, credential_id, cancel, &report);
  return report;
}

Result<std::string> CredentialResolver::RefreshLocked(const std::string& vault_id, const std::string& credential_id,
                                                      const CancelToken* cancel, RefreshReport* report) {
  auto fail = [&](const std::string& status, const std::string& why) -> Status {
    report->status = status;
    log::Warn("vault_credential.refresh_failed", {{"vault", vault_id}, {"credential", credential_id}, {"reason", why}});
    if (on_refresh_failed) on_refresh_failed(vault_id, credential_id);
    return Status::Unauthenticated("refreshing credential " + credential_id + " failed: " + why);
  };
  if (box_ == nullptr) return fail("failed", "no secrets key");
  WARREN_ASSIGN_OR_RETURN(auto rec, store_->GetCredential(vault_id, credential_id));
  auto sec = domain::OpenCredentialSecrets(*box_, credential_id, rec.sealed);
  if (!sec.ok()) return fail("failed", "its secrets do not open under this key");
  const Json& refresh = Obj(Obj(rec.body, "auth"), "refresh");
  if (!refresh.is_object() || sec->refresh_token.empty()) {
    report->status = "no_refresh_token";
    return Status::Unauthenticated("credential " + credential_id + " has no refresh token");
  }
  const std::string auth_type = Str(Obj(refresh, "token_endpoint_auth"), "type");
  const std::string client_id = Str(refresh, "client_id");
  HttpRequest req;
  req.method = "POST";
  req.url = Str(refresh, "token_endpoint");
  req.connect_timeout_ms = 5000;
  req.total_timeout_ms = 30000;
  req.max_response_bytes = 1 << 20;
  req.proxy = "-";
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}};
  std::string form = "grant_type=refresh_token&refresh_token=" + FormEncode(sec->refresh_token);
  std::string basic;
  if (auth_type == "client_secret_basic") {
    basic = Base64(FormEncode(client_id) + ":" + FormEncode(sec->client_secret));
    req.headers.push_back({"Authorization", "Basic " + basic});
  } else {
    form += "&client_id=" + FormEncode(client_id);
    if (auth_type == "client_secret_post") form += "&client_secret=" + FormEncode(sec->client_secret);
  }
  if (!Str(refresh, "scope").empty()) form += "&scope=" + FormEncode(Str(refresh, "scope"));
  if (!Str(refresh, "resource").empty()) form += "&resource=" + FormEncode(Str(refresh, "resource"));
  req.body = form;
  auto r = http_->Send(req, cancel);
  if (!r.ok()) return fail("connect_error", "token endpoint unreachable (" + std::string(CodeName(r.status().code())) + ")");
  auto j = ParseJson(r->body);
  std::string access = j.ok() ? Str(*j, "access_token") : "";
  if (r->status < 200 || r->status >= 300 || access.empty()) {
    report->http_response = HttpReport(*r, *sec, basic, "");
    return fail("failed", "token endpoint answered HTTP " + std::to_string(r->status));
  }
  report->http_response = HttpReport(*r, *sec, basic, "withheld");
  domain::CredentialSecrets next = *sec;
  next.access_token = access;
  if (!Str(*j, "refresh_token").empty()) next.refresh_token = Str(*j, "refresh_token");
  Json expires_at = nullptr;
  if ((*j).contains("expires_in") && (*j)["expires_in"].is_number())
    expires_at = FormatRfc3339(clock_->NowMicros() + static_cast<int64_t>((*j)["expires_in"].get<double>() * 1e6));
  auto sealed = domain::SealCredentialSecrets(*box_, credential_id, next);
  if (!sealed.ok()) return fail("failed", "sealing the new tokens failed");
  std::string now = FormatRfc3339(clock_->NowMicros());
  auto up = store_->UpdateCredential(vault_id, credential_id, [&](store::CredentialRecord* c) {
    c->sealed = *sealed;
    c->body["auth"]["expires_at"] = expires_at;
    c->body["updated_at"] = now;
    return Status::Ok();
  });
  if (!up.ok()) return fail("failed", "storing the new tokens failed");
  report->status = "succeeded";
  log::Info("vault_credential.refreshed", {{"vault", vault_id}, {"credential", credential_id}});
  return access;
}

}  // namespace warren::mcp
