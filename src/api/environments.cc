// Environments (spec 1.2).
#include "api/service.h"
#include "api/validate.h"
#include "common/host_names.h"
#include "common/ids.h"

namespace warren::api {
namespace {

Result<Json> StringArray(const Json& obj, const char* key, const std::string& path, size_t max_items) {
  if (!obj.contains(key) || obj[key].is_null()) return Json::array();
  const Json& a = obj[key];
  std::string p = JoinPath(path, key);
  if (!a.is_array()) return Invalid(p, "expected an array of strings");
  if (a.size() > max_items) return Invalid(p, "at most " + std::to_string(max_items) + " entries");
  for (size_t i = 0; i < a.size(); i++) {
    if (!a[i].is_string() || a[i].get<std::string>().empty() || a[i].get<std::string>().size() > 512)
      return Invalid(IndexPath(p, i), "expected a non-empty string of at most 512 characters");
  }
  return a;
}

// Validates a config and returns its full response form.
Result<Json> NormalizeConfig(const Json& c) {
  if (c.is_null()) {
    return Json{{"type", "cloud"},
                {"networking", {{"type", "unrestricted"}}},
                {"packages",
                 {{"type", "packages"}, {"apt", Json::array()}, {"cargo", Json::array()}, {"gem", Json::array()},
                  {"go", Json::array()}, {"npm", Json::array()}, {"pip", Json::array()}}}};
  }
  WARREN_RETURN_IF_ERROR(ExpectObject(c, "config"));
  std::optional<std::string> type;
  WARREN_RETURN_IF_ERROR(ReadString(c, "type", "config", {.required = true, .min = 1, .max = 32}, &type));
  if (*type == "self_hosted") {
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(c, {"type"}, "config"));
    return Json{{"type", "self_hosted"}};
  }
  if (*type != "cloud") return Invalid("config.type", "must be 'cloud' or 'self_hosted'");
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(c, {"type", "networking", "packages"}, "config"));
  Json out = {{"type", "cloud"}};
  Json net = {{"type", "unrestricted"}};
  if (c.contains("networking") && !c["networking"].is_null()) {
    const Json& n = c["networking"];
    WARREN_RETURN_IF_ERROR(ExpectObject(n, "config.networking"));
    std::optional<std::string> nt;
    WARREN_RETURN_IF_ERROR(ReadString(n, "type", "config.networking", {.required = true, .min = 1, .max = 32}, &nt));
    if (*nt == "unrestricted") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(n, {"type"}, "config.networking"));
    } else if (*nt == "limited") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(
          n, {"type", "allowed_hosts", "allow_mcp_servers", "allow_package_managers"}, "config.networking"));
      WARREN_ASSIGN_OR_RETURN(Json hosts, StringArray(n, "allowed_hosts", "config.networking", 1000));
      // What the egress proxy can enforce (docs/SANDBOX.md "limited"): names,
      // "*.suffix" patterns, IPv4 literals; refused here rather than when a
      // session's sandbox is made.
      for (size_t i = 0; i < hosts.size(); i++) {
        auto pattern = CanonicalHostPattern(hosts[i].get<std::string>());
        if (!pattern.ok())
          return Invalid(IndexPath("config.networking.allowed_hosts", i), pattern.status().message());
      }
      std::optional<bool> mcp, pkg;
      WARREN_RETURN_IF_ERROR(ReadBool(n, "allow_mcp_servers", "config.networking", &mcp));
      WARREN_RETURN_IF_ERROR(ReadBool(n, "allow_package_managers", "config.networking", &pkg));
      net = {{"type", "limited"},
             {"allowed_hosts", hosts},
             {"allow_mcp_servers", mcp.value_or(false)},
             {"allow_package_managers", pkg.value_or(false)}};
    } else {
      return Invalid("config.networking.type", "must be 'unrestricted' or 'limited'");
    }
  }
  out["networking"] = net;
  Json pk = {{"type", "packages"}};
  const Json empty = Json::object();
  const Json& pin = c.contains("packages") && !c["packages"].is_null() ? c["packages"] : empty;
  if (!pin.empty()) {
    WARREN_RETURN_IF_ERROR(ExpectObject(pin, "config.packages"));
    WARREN_RETURN_IF_ERROR(
        ExpectKnownFields(pin, {"type", "apt", "cargo", "gem", "go", "npm", "pip"}, "config.packages"));
    if (pin.contains("type") && pin["type"] != "packages") return Invalid("config.packages.type", "must be 'packages'");
  }
  for (const char* mgr : {"apt", "cargo", "gem", "go", "npm", "pip"}) {
    WARREN_ASSIGN_OR_RETURN(pk[mgr], StringArray(pin, mgr, "config.packages", 1000));
  }
  out["packages"] = pk;
  return out;
}

Status ApplyEnvFields(const Json& body, Json* env, bool update) {
  std::optional<std::string> s;
  if (body.contains("name")) {
    if (update && body["name"].is_null()) return Invalid("name", "cannot be cleared");
    WARREN_RETURN_IF_ERROR(ReadString(body, "name", "", {.required = true, .min = 1, .max = 256}, &s));
    (*env)["name"] = *s;
  }
  if (body.contains("description")) {
    WARREN_RETURN_IF_ERROR(ReadString(body, "description", "", {.nullable = true, .max = 2048}, &s));
    (*env)["description"] = s && !s->empty() ? Json(*s) : Json(nullptr);
  }
  if (body.contains("scope") && !body["scope"].is_null()) {
    WARREN_RETURN_IF_ERROR(ReadString(body, "scope", "", {.max = 32}, &s));
    if (*s != "organization" && *s != "account") return Invalid("scope", "must be 'organization' or 'account'");
    (*env)["scope"] = *s;
  }
  if (body.contains("config")) {
    if (update && body["config"].is_null()) return Status::Ok();
    WARREN_ASSIGN_OR_RETURN(Json cfg, NormalizeConfig(body["config"]));
    if (update && cfg["type"] != (*env)["config"]["type"])
      return Status::InvalidArgument("config.type cannot change from '" + TypeOf(env->value("config", Json::object())) +
                                     "' to '" + TypeOf(cfg) + "'")
          .WithDetailCode("invalid_config_type_change");
    (*env)["config"] = cfg;
  }
  if ((*env).contains("scope") && (*env)["scope"] == "account" && (*env)["config"]["type"] != "self_hosted")
    return Invalid("scope", "'account' scope is only available for self_hosted environments");
  if (body.contains("metadata") && !body["metadata"].is_null()) {
    WARREN_RETURN_IF_ERROR(ValidateMetadata(body["metadata"], "metadata", update));
    if (update) {
      Json merged = (*env)["metadata"];
      ApplyMetadataPatch(&merged, body["metadata"]);
      WARREN_RETURN_IF_ERROR(ValidateMetadata(merged, "metadata", false));
      (*env)["metadata"] = merged;
    } else {
      (*env)["metadata"] = body["metadata"];
    }
  }
  return Status::Ok();
}

}  // namespace

Result<http::HandlerResult> ApiService::CreateEnvironment(http::HttpRequest& req, const Params&, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"name", "description", "config", "metadata", "scope"}, ""));
  if (!body.contains("name")) return Invalid("name", "field required");
  std::string now = Now();
  Json env = {{"id", NewId(idprefix::kEnvironment)},
              {"type", "environment"},
              {"name", ""},
              {"description", nullptr},
              {"config", nullptr},
              {"metadata", Json::object()},
              {"created_at", now},
              {"updated_at", now},
              {"archived_at", nullptr}};
  WARREN_ASSIGN_OR_RETURN(env["config"], NormalizeConfig(body.value("config", Json())));
  WARREN_RETURN_IF_ERROR(ApplyEnvFields(body, &env, false));
  WARREN_RETURN_IF_ERROR(store_->CreateEnvironment(env));
  return JsonResult(env);
}

Result<http::HandlerResult> ApiService::GetEnvironment(http::HttpRequest& req, const Params& params, const Principal& p) {
  const std::string& id = params.at("environment_id");
  if (!p.CanAccessEnvironment(id)) return Status::PermissionDenied("this key cannot access environment " + id);
  WARREN_ASSIGN_OR_RETURN(Json env, store_->GetEnvironment(id));
  return JsonResult(env);
}

Result<http::HandlerResult> ApiService::UpdateEnvironment(http::HttpRequest& req, const Params& params,
                                                          const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"name", "description", "config", "metadata", "scope"}, ""));
  std::string now = Now();
  WARREN_ASSIGN_OR_RETURN(Json env, store_->UpdateEnvironment(params.at("environment_id"), [&](const Json& cur) -> Result<Json> {
                            if (!FieldOrNull(cur, "archived_at").is_null())
                              return Status::InvalidArgument("environment " + StringField(cur, "id") +
                                                             " is archived and cannot be updated")
                                  .WithDetailCode("environment_archived");
                            Json next = cur;
                            WARREN_RETURN_IF_ERROR(ApplyEnvFields(body, &next, true));
                            if (next != cur) next["updated_at"] = now;
                            return next;
                          }));
  return JsonResult(env);
}

Result<http::HandlerResult> ApiService::ListEnvironments(http::HttpRequest& req, const Params&, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(auto spec, ParsePaging(req, 20, 100, store::Order::kDesc, false));
  bool include_archived = false;
  if (auto ia = req.Query("include_archived")) WARREN_RETURN_IF_ERROR(ParseBoolParam(*ia, "include_archived", &include_archived));
  WARREN_ASSIGN_OR_RETURN(auto page, store_->ListEnvironments(include_archived, spec));
  return JsonResult(PageBody(page, spec, false));
}

Result<http::HandlerResult> ApiService::ArchiveEnvironment(http::HttpRequest& req, const Params& params,
                                                           const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_RETURN_IF_ERROR(NoFieldsBody(req));
  std::string now = Now();
  WARREN_ASSIGN_OR_RETURN(Json env, store_->UpdateEnvironment(params.at("environment_id"), [&](const Json& cur) -> Result<Json> {
                            if (!FieldOrNull(cur, "archived_at").is_null()) return cur;
                            Json next = cur;
                            next["archived_at"] = now;
                            next["updated_at"] = now;
                            return next;
                          }));
  return JsonResult(env);
}

Result<http::HandlerResult> ApiService::DeleteEnvironment(http::HttpRequest& req, const Params& params,
                                                          const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  const std::string& id = params.at("environment_id");
  WARREN_RETURN_IF_ERROR(store_->GetEnvironment(id).status());
  store::SessionFilter f;
  f.environment_id = id;
  f.statuses = {"running", "rescheduling"};
  store::PageSpec one;
  one.limit = 1;
  WARREN_ASSIGN_OR_RETURN(auto busy, store_->ListSessions(f, one));
  if (!busy.items.empty())
    return Status::Conflict("environment " + id + " has running sessions; interrupt or delete them first");
  WARREN_RETURN_IF_ERROR(store_->DeleteEnvironment(id));
  return JsonResult({{"id", id}, {"type", "environment_deleted"}});
}

}  // namespace warren::api
