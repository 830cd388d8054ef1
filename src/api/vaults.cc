// Vaults and their credentials (spec 6): /v1/vaults, /v1/vaults/{id}/credentials,
// archive, mcp_oauth_validate. Secrets are write-only: they are sealed
// (domain/vault_secrets.h) before they reach the store and no response,
// log line or error message ever carries them. docs/MCP.md has the rules.
#include "api/service.h"
#include "api/validate.h"
#include "common/ids.h"
#include "common/log.h"
#include "domain/vault_secrets.h"

namespace warren::api {
namespace {

constexpr int kMaxCredentialsPerVault = 20;
constexpr size_t kMaxSecret = 16384;

Status HttpUrl(const std::string& url, const std::string& path) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) return Invalid(path, "must be an http(s) URL");
  if (url.size() > 2048) return Invalid(path, "at most 2048 characters");
  return Status::Ok();
}

// An optional RFC 3339 timestamp or null; *set says whether the field was given.
Status ReadTime(const Json& obj, const char* key, const std::string& path, bool* set, Json* out) {
  *set = obj.contains(key);
  if (!*set) return Status::Ok();
  const Json& v = obj[key];
  if (v.is_null()) {
    *out = nullptr;
    return Status::Ok();
  }
  if (!v.is_string() || !ParseRfc3339(v.get<std::string>()))
    return Invalid(JoinPath(path, key), "expected an RFC 3339 timestamp or null");
  *out = FormatRfc3339(*ParseRfc3339(v.get<std::string>()));
  return Status::Ok();
}

// token_endpoint_auth of a refresh block: its public form and client_secret.
Status ReadTokenEndpointAuth(const Json& a, const std::string& p, bool update, Json* pub, std::string* secret,
                             bool* secret_set) {
  WARREN_RETURN_IF_ERROR(ExpectObject(a, p));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(a, {"type", "client_secret"}, p));
  std::optional<std::string> type, cs;
  WARREN_RETURN_IF_ERROR(ReadString(a, "type", p, {.required = true, .min = 1, .max = 64}, &type));
  if (*type != "none" && *type != "client_secret_basic" && *type != "client_secret_post")
    return Invalid(JoinPath(p, "type"), "must be 'none', 'client_secret_basic' or 'client_secret_post'");
  if (update && *type == "none") return Invalid(JoinPath(p, "type"), "must be 'client_secret_basic' or 'client_secret_post'");
  WARREN_RETURN_IF_ERROR(ReadString(a, "client_secret", p, {.nullable = true, .min = 1, .max = kMaxSecret}, &cs));
  if (*type == "none" && cs) return Invalid(JoinPath(p, "client_secret"), "not allowed with type 'none'");
  if (*type != "none" && !cs && !update) return Invalid(JoinPath(p, "client_secret"), "field required");
  *pub = {{"type", *type}};
  *secret_set = cs.has_value();
  if (cs) *secret = *cs;
  return Status::Ok();
}

// Validates a create `auth` and fills the public form and the secrets.
Status ParseCreateAuth(const Json& a, Json* pub, domain::CredentialSecrets* sec) {
  const std::string p = "auth";
  WARREN_RETURN_IF_ERROR(ExpectObject(a, p));
  std::optional<std::string> type, url, s;
  WARREN_RETURN_IF_ERROR(ReadString(a, "type", p, {.required = true, .min = 1, .max = 64}, &type));
  if (*type == "environment_variable")
    return Invalid(JoinPath(p, "type"),
                   "'environment_variable' credentials are not supported by this server (no egress substitution); "
                   "use 'static_bearer' or 'mcp_oauth'");
  if (*type == "static_bearer") {
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(a, {"type", "token", "mcp_server_url"}, p));
    WARREN_RETURN_IF_ERROR(ReadString(a, "token", p, {.required = true, .min = 1, .max = kMaxSecret}, &s));
    WARREN_RETURN_IF_ERROR(ReadString(a, "mcp_server_url", p, {.required = true, .min = 1, .max = 2048}, &url));
    WARREN_RETURN_IF_ERROR(HttpUrl(*url, JoinPath(p, "mcp_server_url")));
    sec->token = *s;
    *pub = {{"type", "static_bearer"}, {"mcp_server_url", *url}};
    return Status::Ok();
  }
  if (*type != "mcp_oauth")
    return Invalid(JoinPath(p, "type"), "must be 'static_bearer' or 'mcp_oauth'");
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(a, {"type", "access_token", "mcp_server_url", "expires_at", "refresh"}, p));
  WARREN_RETURN_IF_ERROR(ReadString(a, "access_token", p, {.required = true, .min = 1, .max = kMaxSecret}, &s));
  WARREN_RETURN_IF_ERROR(ReadString(a, "mcp_server_url", p, {.required = true, .min = 1, .max = 2048}, &url));
  WARREN_RETURN_IF_ERROR(HttpUrl(*url, JoinPath(p, "mcp_server_url")));
  sec->access_token = *s;
  *pub = {{"type", "mcp_oauth"}, {"mcp_server_url", *url}, {"expires_at", nullptr}, {"refresh", nullptr}};
  bool set = false;
  WARREN_RETURN_IF_ERROR(ReadTime(a, "expires_at", p, &set, &(*pub)["expires_at"]));
  if (a.contains("refresh") && !a["refresh"].is_null()) {
    const std::string rp = JoinPath(p, "refresh");
    const Json& r = a["refresh"];
    WARREN_RETURN_IF_ERROR(ExpectObject(r, rp));
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(
        r, {"client_id", "refresh_token", "token_endpoint", "token_endpoint_auth", "resource", "scope"}, rp));
    std::optional<std::string> client_id, rt, te, resource, scope;
    WARREN_RETURN_IF_ERROR(ReadString(r, "client_id", rp, {.required = true, .min = 1, .max = 1024}, &client_id));
    WARREN_RETURN_IF_ERROR(ReadString(r, "refresh_token", rp, {.required = true, .min = 1, .max = kMaxSecret}, &rt));
    WARREN_RETURN_IF_ERROR(ReadString(r, "token_endpoint", rp, {.required = true, .min = 1, .max = 2048}, &te));
    WARREN_RETURN_IF_ERROR(HttpUrl(*te, JoinPath(rp, "token_endpoint")));
    WARREN_RETURN_IF_ERROR(ReadString(r, "resource", rp, {.nullable = true, .max = 2048}, &resource));
    WARREN_RETURN_IF_ERROR(ReadString(r, "scope", rp, {.nullable = true, .max = 4096}, &scope));
    if (!r.contains("token_endpoint_auth")) return Invalid(JoinPath(rp, "token_endpoint_auth"), "field required");
    Json tea;
    bool cs_set = false;
    WARREN_RETURN_IF_ERROR(ReadTokenEndpointAuth(r["token_endpoint_auth"], JoinPath(rp, "token_endpoint_auth"), false,
                                                 &tea, &sec->client_secret, &cs_set));
    sec->refresh_token = *rt;
    (*pub)["refresh"] = {{"client_id", *client_id},
                         {"token_endpoint", *te},
                         {"token_endpoint_auth", tea},
                         {"resource", resource ? Json(*resource) : Json(nullptr)},
                         {"scope", scope ? Json(*scope) : Json(nullptr)}};
  }
  return Status::Ok();
}

// Applies an update `auth` to the public form and the secrets.
Status ApplyUpdateAuth(const Json& a, Json* pub, domain::CredentialSecrets* sec) {
  const std::string p = "auth";
  WARREN_RETURN_IF_ERROR(ExpectObject(a, p));
  std::optional<std::string> type, s;
  WARREN_RETURN_IF_ERROR(ReadString(a, "type", p, {.required = true, .min = 1, .max = 64}, &type));
  const std::string current = StringField(*pub, "type");
  if (*type != current)
    return Invalid(JoinPath(p, "type"), "the credential's type is '" + current + "' and cannot change");
  if (*type == "static_bearer") {
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(a, {"type", "token"}, p));
    WARREN_RETURN_IF_ERROR(ReadString(a, "token", p, {.nullable = true, .min = 1, .max = kMaxSecret}, &s));
    if (s) sec->token = *s;
    return Status::Ok();
  }
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(a, {"type", "access_token", "expires_at", "refresh"}, p));
  WARREN_RETURN_IF_ERROR(ReadString(a, "access_token", p, {.nullable = true, .min = 1, .max = kMaxSecret}, &s));
  if (s) sec->access_token = *s;
  bool set = false;
  Json exp;
  WARREN_RETURN_IF_ERROR(ReadTime(a, "expires_at", p, &set, &exp));
  if (set) (*pub)["expires_at"] = exp;
  if (a.contains("refresh") && !a["refresh"].is_null()) {
    const std::string rp = JoinPath(p, "refresh");
    const Json& r = a["refresh"];
    WARREN_RETURN_IF_ERROR(ExpectObject(r, rp));
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(r, {"refresh_token", "scope", "token_endpoint_auth"}, rp));
    if (!FieldOrNull(*pub, "refresh").is_object())
      return Invalid(rp, "this credential was created without a refresh block; create a new credential to add one");
    std::optional<std::string> rt, scope;
    WARREN_RETURN_IF_ERROR(ReadString(r, "refresh_token", rp, {.nullable = true, .min = 1, .max = kMaxSecret}, &rt));
    WARREN_RETURN_IF_ERROR(ReadString(r, "scope", rp, {.nullable = true, .max = 4096}, &scope));
    if (rt) sec->refresh_token = *rt;
    if (r.contains("scope")) (*pub)["refresh"]["scope"] = scope ? Json(*scope) : Json(nullptr);
    if (r.contains("token_endpoint_auth") && !r["token_endpoint_auth"].is_null()) {
      Json tea;
      std::string cs;
      bool cs_set = false;
      WARREN_RETURN_IF_ERROR(ReadTokenEndpointAuth(r["token_endpoint_auth"], JoinPath(rp, "token_endpoint_auth"), true,
                                                   &tea, &cs, &cs_set));
      if (tea["type"] != (*pub)["refresh"]["token_endpoint_auth"]["type"] && !cs_set)
        return Invalid(JoinPath(JoinPath(rp, "token_endpoint_auth"), "client_secret"),
                       "required when token_endpoint_auth.type changes");
      (*pub)["refresh"]["token_endpoint_auth"] = tea;
      if (cs_set) sec->client_secret = cs;
    }
  }
  return Status::Ok();
}

Status ApplyCommonFields(const Json& body, Json* obj, bool update, bool display_required) {
  std::optional<std::string> s;
  if (body.contains("display_name")) {
    if (update && body["display_name"].is_null()) {
      // null keeps the current name
    } else {
      WARREN_RETURN_IF_ERROR(
          ReadString(body, "display_name", "", {.required = display_required, .nullable = !display_required, .min = 1, .max = 255}, &s));
      (*obj)["display_name"] = s ? Json(*s) : Json(nullptr);
    }
  } else if (display_required) {
    return Invalid("display_name", "field required");
  }
  if (body.contains("metadata") && !body["metadata"].is_null()) {
    WARREN_RETURN_IF_ERROR(ValidateMetadata(body["metadata"], "metadata", update));
    Json merged = update ? (*obj)["metadata"] : Json::object();
    ApplyMetadataPatch(&merged, body["metadata"]);
    WARREN_RETURN_IF_ERROR(ValidateMetadata(merged, "metadata", false));
    (*obj)["metadata"] = merged;
  }
  return Status::Ok();
}

Status ArchivedError(const Json& cur, const char* what) {
  return Status::InvalidArgument(std::string(what) + " " + StringField(cur, "id") + " is archived and cannot be changed")
      .WithDetailCode(std::string(what) + "_archived");
}

}  // namespace

void ApiService::RegisterVaultRoutes() {
  Route("POST", "/v1/vaults", &ApiService::CreateVault);
  Route("GET", "/v1/vaults", &ApiService::ListVaults);
  Route("GET", "/v1/vaults/{vault_id}", &ApiService::GetVault);
  Route("POST", "/v1/vaults/{vault_id}", &ApiService::UpdateVault);
  Route("DELETE", "/v1/vaults/{vault_id}", &ApiService::DeleteVault);
  Route("POST", "/v1/vaults/{vault_id}/archive", &ApiService::ArchiveVault);
  Route("POST", "/v1/vaults/{vault_id}/credentials", &ApiService::CreateCredential);
  Route("GET", "/v1/vaults/{vault_id}/credentials", &ApiService::ListCredentials);
  Route("GET", "/v1/vaults/{vault_id}/credentials/{credential_id}", &ApiService::GetCredential);
  Route("POST", "/v1/vaults/{vault_id}/credentials/{credential_id}", &ApiService::UpdateCredential);
  Route("DELETE", "/v1/vaults/{vault_id}/credentials/{credential_id}", &ApiService::DeleteCredential);
  Route("POST", "/v1/vaults/{vault_id}/credentials/{credential_id}/archive", &ApiService::ArchiveCredential);
  Route("POST", "/v1/vaults/{vault_id}/credentials/{credential_id}/mcp_oauth_validate",
        &ApiService::ValidateCredential);
}

Result<http::HandlerResult> ApiService::CreateVault(http::HttpRequest& req, const Params&, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"display_name", "metadata"}, ""));
  std::string now = Now();
  Json v = {{"id", NewId("vlt_")},     {"type", "vault"},    {"display_name", ""}, {"metadata", Json::object()},
            {"created_at", now},       {"updated_at", now},  {"archived_at", nullptr}};
  WARREN_RETURN_IF_ERROR(ApplyCommonFields(body, &v, false, true));
  WARREN_RETURN_IF_ERROR(store_->CreateVault(v));
  log::Info("vault.created", {{"vault", v["id"]}});
  return JsonResult(v);
}

Result<http::HandlerResult> ApiService::GetVault(http::HttpRequest&, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(Json v, store_->GetVault(params.at("vault_id")));
  return JsonResult(v);
}

Result<http::HandlerResult> ApiService::UpdateVault(http::HttpRequest& req, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"display_name", "metadata"}, ""));
  std::string now = Now();
  WARREN_ASSIGN_OR_RETURN(Json v, store_->UpdateVault(params.at("vault_id"), [&](const Json& cur) -> Result<Json> {
                            if (!FieldOrNull(cur, "archived_at").is_null()) return ArchivedError(cur, "vault");
                            Json next = cur;
                            WARREN_RETURN_IF_ERROR(ApplyCommonFields(body, &next, true, false));
                            if (next != cur) next["updated_at"] = now;
                            return next;
                          }));
  return JsonResult(v);
}

Result<http::HandlerResult> ApiService::ListVaults(http::HttpRequest& req, const Params&, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(auto spec, ParsePaging(req, 20, 100, store::Order::kDesc, false));
  bool include_archived = false;
  if (auto ia = req.Query("include_archived")) WARREN_RETURN_IF_ERROR(ParseBoolParam(*ia, "include_archived", &include_archived));
  WARREN_ASSIGN_OR_RETURN(auto page, store_->ListVaults(include_archived, spec));
  return JsonResult(PageBody(page, spec, false));
}

Result<http::HandlerResult> ApiService::ArchiveVault(http::HttpRequest& req, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_RETURN_IF_ERROR(NoFieldsBody(req));
  const std::string& id = params.at("vault_id");
  std::string now = Now();
  WARREN_ASSIGN_OR_RETURN(Json v, store_->UpdateVault(id, [&](const Json& cur) -> Result<Json> {
                            if (!FieldOrNull(cur, "archived_at").is_null()) return cur;
                            Json next = cur;
                            next["archived_at"] = now;
                            next["updated_at"] = now;
                            return next;
                          }));
  // The vault's credentials are archived with it (read-only, never used).
  store::PageSpec spec;
  spec.limit = 1000;
  spec.order = store::Order::kAsc;
  WARREN_ASSIGN_OR_RETURN(auto creds, store_->ListCredentials(id, false, spec));
  for (const Json& c : creds.items) {
    (void)store_->UpdateCredential(id, StringField(c, "id"), [&](store::CredentialRecord* r) {
      if (FieldOrNull(r->body, "archived_at").is_null()) {
        r->body["archived_at"] = now;
        r->body["updated_at"] = now;
      }
      return Status::Ok();
    });
  }
  log::Info("vault.archived", {{"vault", id}});
  return JsonResult(v);
}

Result<http::HandlerResult> ApiService::DeleteVault(http::HttpRequest&, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  const std::string& id = params.at("vault_id");
  WARREN_RETURN_IF_ERROR(store_->DeleteVault(id));
  log::Info("vault.deleted", {{"vault", id}});
  return JsonResult({{"id", id}, {"type", "vault_deleted"}});
}

Result<http::HandlerResult> ApiService::CreateCredential(http::HttpRequest& req, const Params& params,
                                                         const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  const std::string& vault_id = params.at("vault_id");
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"auth", "display_name", "metadata"}, ""));
  WARREN_ASSIGN_OR_RETURN(Json vault, store_->GetVault(vault_id));
  if (!body.contains("auth")) return Invalid("auth", "field required");
  std::string now = Now();
  Json c = {{"id", NewId("vcrd_")},   {"type", "vault_credential"}, {"vault_id", vault_id}, {"display_name", nullptr},
            {"auth", nullptr},        {"metadata", Json::object()}, {"created_at", now},    {"updated_at", now},
            {"archived_at", nullptr}};
  domain::CredentialSecrets sec;
  WARREN_RETURN_IF_ERROR(ParseCreateAuth(body["auth"], &c["auth"], &sec));
  WARREN_RETURN_IF_ERROR(ApplyCommonFields(body, &c, false, false));
  if (!FieldOrNull(vault, "archived_at").is_null()) return ArchivedError(vault, "vault");
  if (options_.secret_box == nullptr) return Status::Unavailable("this server has no secrets key; vaults are disabled");
  WARREN_ASSIGN_OR_RETURN(std::string sealed, domain::SealCredentialSecrets(*options_.secret_box, StringField(c, "id"), sec));
  WARREN_RETURN_IF_ERROR(store_->CreateCredential({c, sealed}, kMaxCredentialsPerVault));
  log::Info("vault_credential.created", {{"vault", vault_id}, {"credential", c["id"]}, {"auth_type", c["auth"]["type"]}});
  return JsonResult(c);
}

Result<http::HandlerResult> ApiService::GetCredential(http::HttpRequest&, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(auto r, store_->GetCredential(params.at("vault_id"), params.at("credential_id")));
  return JsonResult(r.body);
}

Result<http::HandlerResult> ApiService::ListCredentials(http::HttpRequest& req, const Params& params,
                                                        const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(auto spec, ParsePaging(req, 20, 100, store::Order::kDesc, false));
  bool include_archived = false;
  if (auto ia = req.Query("include_archived")) WARREN_RETURN_IF_ERROR(ParseBoolParam(*ia, "include_archived", &include_archived));
  WARREN_RETURN_IF_ERROR(store_->GetVault(params.at("vault_id")).status());
  WARREN_ASSIGN_OR_RETURN(auto page, store_->ListCredentials(params.at("vault_id"), include_archived, spec));
  return JsonResult(PageBody(page, spec, false));
}

Result<http::HandlerResult> ApiService::UpdateCredential(http::HttpRequest& req, const Params& params,
                                                         const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  const std::string& vault_id = params.at("vault_id");
  const std::string& id = params.at("credential_id");
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"auth", "display_name", "metadata"}, ""));
  if (options_.secret_box == nullptr) return Status::Unavailable("this server has no secrets key; vaults are disabled");
  const SecretBox& box = *options_.secret_box;
  std::string now = Now();
  WARREN_ASSIGN_OR_RETURN(auto r, store_->UpdateCredential(vault_id, id, [&](store::CredentialRecord* rec) -> Status {
                            if (!FieldOrNull(rec->body, "archived_at").is_null()) return ArchivedError(rec->body, "vault_credential");
                            Json next = rec->body;
                            if (body.contains("auth") && !body["auth"].is_null()) {
                              WARREN_ASSIGN_OR_RETURN(auto sec, domain::OpenCredentialSecrets(box, id, rec->sealed));
                              auto before = sec.All();
                              WARREN_RETURN_IF_ERROR(ApplyUpdateAuth(body["auth"], &next["auth"], &sec));
                              if (sec.All() != before) {
                                WARREN_ASSIGN_OR_RETURN(rec->sealed, domain::SealCredentialSecrets(box, id, sec));
                              }
                            }
                            WARREN_RETURN_IF_ERROR(ApplyCommonFields(body, &next, true, false));
                            if (next != rec->body || body.contains("auth")) next["updated_at"] = now;
                            rec->body = next;
                            return Status::Ok();
                          }));
  log::Info("vault_credential.updated", {{"vault", vault_id}, {"credential", id}});
  return JsonResult(r.body);
}

Result<http::HandlerResult> ApiService::ArchiveCredential(http::HttpRequest& req, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_RETURN_IF_ERROR(NoFieldsBody(req));
  std::string now = Now();
  WARREN_ASSIGN_OR_RETURN(auto r, store_->UpdateCredential(params.at("vault_id"), params.at("credential_id"),
                                                           [&](store::CredentialRecord* rec) {
                                                             if (FieldOrNull(rec->body, "archived_at").is_null()) {
                                                               rec->body["archived_at"] = now;
                                                               rec->body["updated_at"] = now;
                                                             }
                                                             return Status::Ok();
                                                           }));
  log::Info("vault_credential.archived", {{"vault", params.at("vault_id")}, {"credential", params.at("credential_id")}});
  return JsonResult(r.body);
}

Result<http::HandlerResult> ApiService::DeleteCredential(http::HttpRequest&, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  const std::string& id = params.at("credential_id");
  WARREN_RETURN_IF_ERROR(store_->DeleteCredential(params.at("vault_id"), id));
  log::Info("vault_credential.deleted", {{"vault", params.at("vault_id")}, {"credential", id}});
  return JsonResult({{"id", id}, {"type", "vault_credential_deleted"}});
}

Result<http::HandlerResult> ApiService::ValidateCredential(http::HttpRequest& req, const Params& params,
                                                           const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_RETURN_IF_ERROR(NoFieldsBody(req));
  const std::string& vault_id = params.at("vault_id");
  const std::string& id = params.at("credential_id");
  WARREN_ASSIGN_OR_RETURN(auto r, store_->GetCredential(vault_id, id));
  if (StringField(FieldOrNull(r.body, "auth"), "type") != "mcp_oauth")
    return Status::InvalidArgument("credential " + id + " is not an mcp_oauth credential");
  if (!FieldOrNull(r.body, "archived_at").is_null()) return ArchivedError(r.body, "vault_credential");
  Json out;
  if (options_.validate_credential) {
    WARREN_ASSIGN_OR_RETURN(out, options_.validate_credential(vault_id, id));
  } else {
    out = {{"status", "unknown"}, {"mcp_probe", nullptr}, {"refresh", nullptr}, {"has_refresh_token", false}};
  }
  out["type"] = "vault_credential_validation";
  out["credential_id"] = id;
  out["vault_id"] = vault_id;
  out["validated_at"] = Now();
  return JsonResult(out);
}

}  // namespace warren::api
