// Sessions (spec 1.3).
#include "api/agent_config.h"
#include "api/pricing.h"
#include "api/service.h"
#include "api/validate.h"
#include "common/ids.h"

namespace warren::api {
namespace {

Json ZeroUsage() {
  return {{"input_tokens", 0},
          {"output_tokens", 0},
          {"cache_read_input_tokens", 0},
          {"cache_creation", {{"ephemeral_5m_input_tokens", 0}, {"ephemeral_1h_input_tokens", 0}}},
          {"server_tool_use", {{"web_search_requests", 0}, {"web_fetch_requests", 0}}},
          {"list_cost", MonetaryAmount(0)},
          {"active_seconds", 0}};
}

Status ValidateBudget(const Json& b, Json* out) {
  if (b.is_null()) {
    *out = nullptr;
    return Status::Ok();
  }
  WARREN_RETURN_IF_ERROR(ExpectObject(b, "budget"));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(b, {"type", "max_list_cost"}, "budget"));
  if (b.value("type", Json()) != "limit") return Invalid("budget.type", "must be 'limit'");
  if (!b.contains("max_list_cost")) return Invalid("budget.max_list_cost", "field required");
  int64_t micros = 0;
  if (!ParseMonetaryAmount(b["max_list_cost"], &micros) || micros <= 0)
    return Invalid("budget.max_list_cost",
                   "expected {\"amount\": \"<positive cents as an integer string>\", \"currency\": \"USD\"}");
  *out = {{"type", "limit"}, {"max_list_cost", b["max_list_cost"]}};
  return Status::Ok();
}

std::string RepoName(const std::string& url) {
  std::string u = url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  if (u.size() > 4 && u.substr(u.size() - 4) == ".git") u.resize(u.size() - 4);
  size_t slash = u.rfind('/');
  std::string name = slash == std::string::npos ? u : u.substr(slash + 1);
  return name.empty() ? "repo" : name;
}

Status ValidateMountPath(const Json& r, const std::string& path, std::optional<std::string>* out) {
  WARREN_RETURN_IF_ERROR(ReadString(r, "mount_path", path, {.nullable = true, .min = 1, .max = 1024}, out));
  if (*out && ((*out)->front() != '/' || (*out)->find("/../") != std::string::npos ||
               ((*out)->size() >= 3 && (*out)->substr((*out)->size() - 3) == "/..")))
    return Invalid(JoinPath(path, "mount_path"), "must be an absolute path without '..'");
  return Status::Ok();
}

}  // namespace

Result<Json> ApiService::ResolveSessionAgent(const Json& spec, const std::string& path) {
  std::string id;
  std::optional<int64_t> version;
  const Json* overrides = nullptr;
  if (spec.is_string()) {
    id = spec.get<std::string>();
  } else if (spec.is_object()) {
    std::optional<std::string> type, sid;
    WARREN_RETURN_IF_ERROR(ReadString(spec, "type", path, {.required = true, .min = 1, .max = 64}, &type));
    if (*type == "agent") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(spec, {"type", "id", "version"}, path));
    } else if (*type == "agent_with_overrides") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(
          spec, {"type", "id", "version", "model", "system", "tools", "mcp_servers", "skills"}, path));
      overrides = &spec;
    } else {
      return Invalid(JoinPath(path, "type"), "must be 'agent' or 'agent_with_overrides'");
    }
    WARREN_RETURN_IF_ERROR(ReadString(spec, "id", path, {.required = true, .min = 1, .max = 128}, &sid));
    id = *sid;
    WARREN_RETURN_IF_ERROR(ReadInt(spec, "version", path, 1, INT32_MAX, &version));
  } else {
    return Invalid(path, "expected an agent id or an agent object, got " + std::string(JsonTypeName(spec)));
  }
  if (id.empty()) return Invalid(path, "agent id must not be empty");
  auto agent_r = store_->GetAgent(id, version ? std::optional<int>(static_cast<int>(*version)) : std::nullopt);
  if (!agent_r.ok()) return agent_r.status();
  Json agent = *agent_r;
  // An archived agent is a state conflict, like every archived object
  // (docs/API.md): 409.
  if (!agent.value("archived_at", Json()).is_null())
    return Status::Conflict(path + ": agent " + id + " is archived; sessions cannot be created on it");
  Json out = {{"type", "agent"}};
  for (const char* k : {"id", "name", "description", "model", "system", "tools", "mcp_servers", "skills",
                        "multiagent", "execution_identity", "version"})
    out[k] = agent.value(k, Json());
  if (overrides) {
    const Json& o = *overrides;
    if (o.contains("model")) {
      if (o["model"].is_null()) return Invalid(JoinPath(path, "model"), "cannot be cleared");
      WARREN_ASSIGN_OR_RETURN(out["model"], NormalizeModel(o["model"], JoinPath(path, "model")));
    }
    if (o.contains("system")) {
      std::optional<std::string> s;
      WARREN_RETURN_IF_ERROR(ReadString(o, "system", path, {.nullable = true, .max = 100000}, &s));
      out["system"] = s && !s->empty() ? Json(*s) : Json(nullptr);
    }
    if (o.contains("tools")) {
      WARREN_ASSIGN_OR_RETURN(out["tools"], NormalizeTools(o["tools"], JoinPath(path, "tools")));
    }
    if (o.contains("mcp_servers")) {
      WARREN_ASSIGN_OR_RETURN(out["mcp_servers"], NormalizeMcpServers(o["mcp_servers"], JoinPath(path, "mcp_servers")));
    }
    if (o.contains("skills")) {
      WARREN_ASSIGN_OR_RETURN(out["skills"], NormalizeSkills(o["skills"], JoinPath(path, "skills")));
    }
    WARREN_RETURN_IF_ERROR(CheckMcpReferences(out["tools"], out["mcp_servers"], path));
    if (!out["skills"].empty() && !BuiltinToolPolicy(out["tools"], "read"))
      return Invalid(JoinPath(path, "tools"), "skills need the 'read' tool: keep agent_toolset_20260401 with read enabled");
  }
  return out;
}

Result<http::HandlerResult> ApiService::CreateSession(http::HttpRequest& req, const Params&, const Principal& p) {
  if (!p.is_org()) return Status::PermissionDenied("creating sessions requires an organization API key (x-api-key)");
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"agent", "environment_id", "title", "metadata", "resources",
                                                  "vault_ids", "initial_events", "budget"},
                                           ""));
  if (!body.contains("agent")) return Invalid("agent", "field required");
  std::optional<std::string> env_id, title;
  WARREN_RETURN_IF_ERROR(ReadString(body, "environment_id", "", {.required = true, .min = 1, .max = 128}, &env_id));
  WARREN_RETURN_IF_ERROR(ReadString(body, "title", "", {.nullable = true, .max = 1000}, &title));
  auto env_r = store_->GetEnvironment(*env_id);
  if (!env_r.ok()) return env_r.status().WithDetailCode("environment_not_found");
  const Json& env = *env_r;
  if (!env["archived_at"].is_null())
    return Status::InvalidArgument("environment " + *env_id + " is archived").WithDetailCode("environment_archived");
  const bool self_hosted = env["config"]["type"] == "self_hosted";
  WARREN_ASSIGN_OR_RETURN(Json agent, ResolveSessionAgent(body["agent"], "agent"));
  Json metadata = Json::object();
  if (body.contains("metadata") && !body["metadata"].is_null()) {
    WARREN_RETURN_IF_ERROR(ValidateMetadata(body["metadata"], "metadata", false));
    metadata = body["metadata"];
  }
  Json vaults = Json::array();
  if (body.contains("vault_ids") && !body["vault_ids"].is_null()) {
    if (!body["vault_ids"].is_array()) return Invalid("vault_ids", "expected an array of vault ids");
    for (size_t i = 0; i < body["vault_ids"].size(); i++) {
      const Json& v = body["vault_ids"][i];
      if (!v.is_string() || !HasIdShape(v.get<std::string>(), "vlt_"))
        return Invalid(IndexPath("vault_ids", i), "expected a vault id (vlt_...)");
      if (body["vault_ids"].size() > 20) return Invalid("vault_ids", "at most 20 vaults");
      WARREN_ASSIGN_OR_RETURN(Json vault, store_->GetVault(v.get<std::string>()));
      if (!FieldOrNull(vault, "archived_at").is_null())
        return Invalid(IndexPath("vault_ids", i), "vault " + v.get<std::string>() + " is archived");
      bool dup = false;
      for (const Json& seen : vaults) dup = dup || seen == v;
      if (!dup) vaults.push_back(v);
    }
  }
  Json budget = nullptr;
  if (body.contains("budget")) WARREN_RETURN_IF_ERROR(ValidateBudget(body["budget"], &budget));
  if (!budget.is_null() && !PriceFor(StringField(agent.value("model", Json::object()), "id")))
    return Status::InvalidArgument("budget: model '" + StringField(agent.value("model", Json::object()), "id") +
                                   "' has no public list price, so a budget cannot be tracked")
        .WithDetailCode("model_not_budgetable");
  std::string now = Now();
  std::string sid = NewId(idprefix::kSession);
  Json resources = Json::array();
  Json secrets = Json::object();
  if (body.contains("resources") && !body["resources"].is_null()) {
    const Json& rs = body["resources"];
    if (!rs.is_array()) return Invalid("resources", "expected an array");
    size_t files = 0, stores = 0;
    for (size_t i = 0; i < rs.size(); i++) {
      std::string rp = IndexPath("resources", i);
      const Json& r = rs[i];
      WARREN_RETURN_IF_ERROR(ExpectObject(r, rp));
      std::optional<std::string> type, s;
      WARREN_RETURN_IF_ERROR(ReadString(r, "type", rp, {.required = true, .min = 1, .max = 64}, &type));
      if (*type == "github_repository" || *type == "file") {
        if (self_hosted)
          return Status::InvalidArgument("Environment " + *env_id +
                                         " is a self-hosted environment. `resources` are not supported with "
                                         "self-hosted environments.");
      }
      std::string rid = NewId("sesrsc_");
      std::optional<std::string> mount;
      WARREN_RETURN_IF_ERROR(ValidateMountPath(r, rp, &mount));
      if (*type == "github_repository") {
        WARREN_RETURN_IF_ERROR(ExpectKnownFields(r, {"type", "url", "authorization_token", "checkout", "mount_path"}, rp));
        std::optional<std::string> url, token;
        WARREN_RETURN_IF_ERROR(ReadString(r, "url", rp, {.required = true, .min = 1, .max = 2048}, &url));
        if (url->rfind("https://", 0) != 0) return Invalid(JoinPath(rp, "url"), "must be an https:// repository URL");
        WARREN_RETURN_IF_ERROR(ReadString(r, "authorization_token", rp, {.required = true, .min = 1, .max = 4096}, &token));
        Json checkout = nullptr;
        if (r.contains("checkout") && !r["checkout"].is_null()) {
          const Json& c = r["checkout"];
          std::string cp = JoinPath(rp, "checkout");
          WARREN_RETURN_IF_ERROR(ExpectObject(c, cp));
          std::optional<std::string> ct, v;
          WARREN_RETURN_IF_ERROR(ReadString(c, "type", cp, {.required = true, .min = 1, .max = 16}, &ct));
          if (*ct == "branch") {
            WARREN_RETURN_IF_ERROR(ExpectKnownFields(c, {"type", "name"}, cp));
            WARREN_RETURN_IF_ERROR(ReadString(c, "name", cp, {.required = true, .min = 1, .max = 255}, &v));
          } else if (*ct == "commit") {
            WARREN_RETURN_IF_ERROR(ExpectKnownFields(c, {"type", "sha"}, cp));
            WARREN_RETURN_IF_ERROR(ReadString(c, "sha", cp, {.required = true, .min = 7, .max = 64}, &v));
          } else {
            return Invalid(JoinPath(cp, "type"), "must be 'branch' or 'commit'");
          }
          checkout = c;
        }
        resources.push_back({{"id", rid}, {"type", "github_repository"}, {"url", *url},
                             {"mount_path", mount.value_or("/workspace/" + RepoName(*url))}, {"checkout", checkout},
                             {"created_at", now}, {"updated_at", now}});
        secrets[rid] = *token;
      } else if (*type == "file") {
        WARREN_RETURN_IF_ERROR(ExpectKnownFields(r, {"type", "file_id", "mount_path"}, rp));
        WARREN_RETURN_IF_ERROR(ReadString(r, "file_id", rp, {.required = true, .min = 1, .max = 256}, &s));
        if (++files > 999) return Invalid("resources", "at most 999 file resources are allowed");
        return Status::NotFound("file " + *s + " not found");
      } else if (*type == "memory_store") {
        WARREN_RETURN_IF_ERROR(ExpectKnownFields(r, {"type", "memory_store_id", "access", "instructions"}, rp));
        WARREN_RETURN_IF_ERROR(ReadString(r, "memory_store_id", rp, {.required = true, .min = 1, .max = 256}, &s));
        std::optional<std::string> access, instr;
        WARREN_RETURN_IF_ERROR(ReadString(r, "access", rp, {.nullable = true, .max = 16}, &access));
        if (access && *access != "read_write" && *access != "read_only")
          return Invalid(JoinPath(rp, "access"), "must be 'read_write' or 'read_only'");
        WARREN_RETURN_IF_ERROR(ReadString(r, "instructions", rp, {.nullable = true, .max = 4096}, &instr));
        if (++stores > 8) return Invalid("resources", "at most 8 memory stores are allowed");
        return Status::NotFound("memory store " + *s + " not found");
      } else {
        return Invalid(JoinPath(rp, "type"), "unknown resource type '" + *type + "'");
      }
    }
  }
  Json session = {{"id", sid},
                  {"type", "session"},
                  {"status", "idle"},
                  {"agent", agent},
                  {"environment_id", *env_id},
                  {"title", title ? Json(*title) : Json(nullptr)},
                  {"metadata", metadata},
                  {"resources", resources},
                  {"vault_ids", vaults},
                  {"outcome_evaluations", Json::array()},
                  {"stats", {{"active_seconds", 0}, {"duration_seconds", 0}}},
                  {"usage", ZeroUsage()},
                  {"budget", budget},
                  {"deployment_id", nullptr},
                  {"created_at", now},
                  {"updated_at", now},
                  {"archived_at", nullptr}};
  std::vector<Json> initial;
  if (body.contains("initial_events") && !body["initial_events"].is_null()) {
    if (!body["initial_events"].is_array()) return Invalid("initial_events", "expected an array");
    if (body["initial_events"].size() > 50) return Invalid("initial_events", "at most 50 initial events are allowed");
    WARREN_ASSIGN_OR_RETURN(initial, ValidateClientEvents(body["initial_events"], session, "initial_events", true));
  }
  Json stored = session;
  if (!secrets.empty()) {
    // Secrets never ride in the session's JSON: sealed (AES-256-GCM, bound to
    // the session and resource ids) into their own table, before the session
    // row exists.
    if (options_.secret_box == nullptr)
      return Status::FailedPrecondition("this server has no secrets key, so it cannot keep a repository's "
                                        "authorization_token");
    std::map<std::string, std::string> sealed;
    for (auto it = secrets.begin(); it != secrets.end(); ++it) {
      WARREN_ASSIGN_OR_RETURN(sealed[it.key()],
                              options_.secret_box->Seal(it.value().get<std::string>(), sid + "/" + it.key()));
    }
    WARREN_RETURN_IF_ERROR(store_->PutSessionSecrets(sid, sealed));
  }
  WARREN_ASSIGN_OR_RETURN(auto events, store_->CreateSession(stored, initial, [&](const std::vector<store::StoredEvent>& evs) {
                            bus_->Publish(sid, evs);
                          }));
  bus_->SessionChanged(sid);
  for (SessionObserver* o : observers_) {
    o->OnSessionCreated(stored);
    if (!events.empty()) o->OnClientEvents(stored, events);
  }
  return JsonResult(session);
}

static Json PublicSession(Json s) {
  s.erase("_secrets");
  s.erase("_engine");
  return s;
}

Result<Json> ApiService::AccessibleSession(const std::string& id, const Principal& p) {
  WARREN_ASSIGN_OR_RETURN(Json s, store_->GetSession(id));
  if (!p.CanAccessSession(id, StringField(s, "environment_id")))
    return Status::PermissionDenied("this key cannot access session " + id);
  return s;
}

Result<http::HandlerResult> ApiService::GetSession(http::HttpRequest&, const Params& params, const Principal& p) {
  WARREN_ASSIGN_OR_RETURN(Json s, AccessibleSession(params.at("session_id"), p));
  return JsonResult(PublicSession(s));
}

Result<http::HandlerResult> ApiService::UpdateSession(http::HttpRequest& req, const Params& params, const Principal& p) {
  if (!p.is_org()) return Status::PermissionDenied("updating sessions requires an organization API key (x-api-key)");
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"title", "metadata", "budget", "agent", "vault_ids"}, ""));
  if (body.contains("vault_ids")) return Invalid("vault_ids", "cannot be changed after the session is created");
  std::optional<std::string> title;
  WARREN_RETURN_IF_ERROR(ReadString(body, "title", "", {.nullable = true, .max = 1000}, &title));
  if (body.contains("metadata") && !body["metadata"].is_null())
    WARREN_RETURN_IF_ERROR(ValidateMetadata(body["metadata"], "metadata", true));
  Json budget;
  if (body.contains("budget")) WARREN_RETURN_IF_ERROR(ValidateBudget(body["budget"], &budget));
  Json agent_patch = nullptr;
  if (body.contains("agent") && !body["agent"].is_null()) {
    const Json& a = body["agent"];
    WARREN_RETURN_IF_ERROR(ExpectObject(a, "agent"));
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(a, {"tools", "mcp_servers"}, "agent"));
    agent_patch = Json::object();
    if (a.contains("tools")) {
      WARREN_ASSIGN_OR_RETURN(agent_patch["tools"], NormalizeTools(a["tools"], "agent.tools"));
    }
    if (a.contains("mcp_servers")) {
      WARREN_ASSIGN_OR_RETURN(agent_patch["mcp_servers"], NormalizeMcpServers(a["mcp_servers"], "agent.mcp_servers"));
    }
  }
  const std::string& id = params.at("session_id");
  std::string now = Now();
  WARREN_ASSIGN_OR_RETURN(
      Json updated,
      store_->UpdateSession(
          id,
          [&](const Json& cur, std::vector<Json>* events) -> Result<Json> {
            if (!FieldOrNull(cur, "archived_at").is_null()) return Status::Conflict("session " + id + " is archived and read-only");
            Json next = cur;
            Json changed = Json::object();
            if (body.contains("title")) {
              next["title"] = title ? Json(*title) : Json(nullptr);
              if (next["title"] != FieldOrNull(cur, "title")) changed["title"] = next["title"];
            }
            if (body.contains("metadata") && !body["metadata"].is_null()) {
              ApplyMetadataPatch(&next["metadata"], body["metadata"]);
              WARREN_RETURN_IF_ERROR(ValidateMetadata(next["metadata"], "metadata", false));
              if (next["metadata"] != FieldOrNull(cur, "metadata")) changed["metadata"] = next["metadata"];
            }
            if (body.contains("budget")) {
              if (FieldOrNull(cur, "budget").is_null() && !budget.is_null())
                return Status::InvalidArgument("a budget can only be set when the session is created (budget_create_only)");
              if (!budget.is_null()) {
                int64_t max = 0, spent = 0;
                ParseMonetaryAmount(budget["max_list_cost"], &max);
                ParseMonetaryAmount(FieldOrNull(FieldOrNull(cur, "usage"), "list_cost"), &spent);
                if (max <= spent)
                  return Status::InvalidArgument("max_list_cost must stay above the consumed list cost (budget_not_raised)");
              }
              next["budget"] = budget;
              if (budget != FieldOrNull(cur, "budget")) changed["budget"] = budget;
            }
            if (!agent_patch.is_null()) {
              if (FieldOrNull(cur, "status") != "idle")
                return Status::Conflict("the session's agent can only be changed while the session is idle");
              for (auto it = agent_patch.begin(); it != agent_patch.end(); ++it) next["agent"][it.key()] = it.value();
              WARREN_RETURN_IF_ERROR(CheckMcpReferences(next["agent"]["tools"], next["agent"]["mcp_servers"], "agent"));
              if (next["agent"] != FieldOrNull(cur, "agent")) changed["agent"] = next["agent"];
            }
            if (!changed.empty()) {
              next["updated_at"] = now;
              changed["type"] = "session.updated";
              changed["id"] = NewId(idprefix::kEvent);
              changed["processed_at"] = now;
              events->push_back(changed);
            }
            return next;
          },
          [&](const std::vector<store::StoredEvent>& evs) { bus_->Publish(id, evs); }));
  return JsonResult(PublicSession(updated));
}

Result<http::HandlerResult> ApiService::ListSessions(http::HttpRequest& req, const Params&, const Principal& p) {
  if (p.kind == store::KeyKind::kSession) return Status::PermissionDenied("a sessions token cannot list sessions");
  WARREN_ASSIGN_OR_RETURN(auto spec, ParsePaging(req, 20, 100, store::Order::kDesc, true));
  store::SessionFilter f;
  WARREN_RETURN_IF_ERROR(ParseTimeRange(req, "created_at", &f.created));
  if (auto v = req.Query("include_archived")) WARREN_RETURN_IF_ERROR(ParseBoolParam(*v, "include_archived", &f.include_archived));
  if (auto v = req.Query("agent_id")) f.agent_id = *v;
  if (auto v = req.Query("agent_version")) {
    int64_t n;
    WARREN_RETURN_IF_ERROR(ParseIntParam(*v, "agent_version", 1, INT32_MAX, &n));
    f.agent_version = static_cast<int>(n);
  }
  if (auto v = req.Query("deployment_id")) f.deployment_id = *v;
  if (auto v = req.Query("memory_store_id")) f.memory_store_id = *v;
  for (const std::string& s : req.QueryAll("statuses[]")) {
    if (s != "rescheduling" && s != "running" && s != "idle" && s != "terminated")
      return Invalid("statuses[]", "unknown status '" + s.substr(0, 64) + "'");
    f.statuses.push_back(s);
  }
  if (p.kind == store::KeyKind::kEnvironment) f.environment_id = p.environment_id;
  WARREN_ASSIGN_OR_RETURN(auto page, store_->ListSessions(f, spec));
  for (Json& s : page.items) s = PublicSession(std::move(s));
  return JsonResult(PageBody(page, spec, true));
}

Result<http::HandlerResult> ApiService::ArchiveSession(http::HttpRequest& req, const Params& params, const Principal& p) {
  if (!p.is_org()) return Status::PermissionDenied("archiving sessions requires an organization API key (x-api-key)");
  WARREN_RETURN_IF_ERROR(NoFieldsBody(req));
  const std::string& id = params.at("session_id");
  std::string now = Now();
  WARREN_ASSIGN_OR_RETURN(Json s, store_->UpdateSession(
                                      id,
                                      [&](const Json& cur, std::vector<Json>*) -> Result<Json> {
                                        if (!FieldOrNull(cur, "archived_at").is_null()) return cur;
                                        if (FieldOrNull(cur, "status") == "running" || FieldOrNull(cur, "status") == "rescheduling")
                                          return Status::InvalidArgument("cannot archive session " + id + " while it is running");
                                        Json next = cur;
                                        next["archived_at"] = now;
                                        next["updated_at"] = now;
                                        return next;
                                      },
                                      nullptr));
  bus_->SessionChanged(id);
  return JsonResult(PublicSession(s));
}

Result<http::HandlerResult> ApiService::DeleteSession(http::HttpRequest&, const Params& params, const Principal& p) {
  if (!p.is_org()) return Status::PermissionDenied("deleting sessions requires an organization API key (x-api-key)");
  const std::string& id = params.at("session_id");
  WARREN_ASSIGN_OR_RETURN(Json s, store_->GetSession(id));
  if (s["status"] == "running" || s["status"] == "rescheduling")
    return Status::InvalidArgument("cannot delete session " + id + " while it is running; send user.interrupt first");
  WARREN_RETURN_IF_ERROR(store_->DeleteSession(id));
  bus_->EndSession(id, {{"type", "session.deleted"}, {"id", NewId(idprefix::kEvent)}, {"processed_at", Now()}});
  bus_->SessionChanged(id);
  for (SessionObserver* o : observers_) o->OnSessionDeleted(id);
  return JsonResult({{"id", id}, {"type", "session_deleted"}});
}

// ---------------------------------------------------------------- resources
// Session resources (spec 1.3.1): list, add, retrieve, update, delete.
// Decisions in docs/API.md ("Session resources").

namespace {

const Json* FindResource(const Json& session, const std::string& rid) {
  auto rs = session.find("resources");
  if (rs == session.end() || !rs->is_array()) return nullptr;
  for (const Json& r : *rs)
    if (StringField(r, "id") == rid) return &r;
  return nullptr;
}

}  // namespace

Result<http::HandlerResult> ApiService::ListSessionResources(http::HttpRequest& req, const Params& params,
                                                            const Principal& p) {
  const std::string& id = params.at("session_id");
  // `limit` 1..1000, omitted = all; `page` is the opaque cursor of a
  // previous answer (the id of the last resource it returned).
  int64_t limit = 1000;
  if (auto l = req.Query("limit")) WARREN_RETURN_IF_ERROR(ParseIntParam(*l, "limit", 1, 1000, &limit));
  std::optional<std::string> page = req.Query("page");
  WARREN_ASSIGN_OR_RETURN(Json s, AccessibleSession(id, p));
  Json all = s.value("resources", Json::array());
  if (!all.is_array()) all = Json::array();
  size_t start = 0;
  if (page && !page->empty()) {
    if (page->rfind("page_", 0) != 0) return Invalid("page", "invalid cursor");
    std::string after = page->substr(5);
    size_t i = 0;
    while (i < all.size() && StringField(all[i], "id") != after) i++;
    if (i == all.size()) return Invalid("page", "invalid cursor (the resource it points after is gone)");
    start = i + 1;
  }
  Json data = Json::array();
  for (size_t i = start; i < all.size() && data.size() < static_cast<size_t>(limit); i++) data.push_back(all[i]);
  Json next = nullptr;
  if (start + data.size() < all.size() && !data.empty()) next = "page_" + StringField(data.back(), "id");
  return JsonResult({{"data", data}, {"next_page", next}});
}

Result<http::HandlerResult> ApiService::GetSessionResource(http::HttpRequest&, const Params& params, const Principal& p) {
  WARREN_ASSIGN_OR_RETURN(Json s, AccessibleSession(params.at("session_id"), p));
  const std::string& rid = params.at("resource_id");
  const Json* r = FindResource(s, rid);
  if (!r) return Status::NotFound("resource " + rid + " not found in session " + params.at("session_id"));
  return JsonResult(*r);
}

Result<http::HandlerResult> ApiService::AddSessionResource(http::HttpRequest& req, const Params& params,
                                                          const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  std::optional<std::string> type, file_id, mount;
  WARREN_RETURN_IF_ERROR(ReadString(body, "type", "", {.required = true, .min = 1, .max = 64}, &type));
  if (*type == "github_repository" || *type == "memory_store")
    return Invalid("type", "only 'file' resources can be added after the session is created");
  if (*type != "file") return Invalid("type", "unknown resource type '" + type->substr(0, 64) + "'");
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"type", "file_id", "mount_path"}, ""));
  WARREN_RETURN_IF_ERROR(ReadString(body, "file_id", "", {.required = true, .min = 1, .max = 256}, &file_id));
  WARREN_RETURN_IF_ERROR(ValidateMountPath(body, "", &mount));
  const std::string& id = params.at("session_id");
  WARREN_ASSIGN_OR_RETURN(Json s, AccessibleSession(id, p));
  if (!s.value("archived_at", Json()).is_null()) return Status::Conflict("session " + id + " is archived and read-only");
  auto env = store_->GetEnvironment(StringField(s, "environment_id"));
  if (env.ok() && TypeOf(env->value("config", Json::object())) == "self_hosted")
    return Status::InvalidArgument("Environment " + StringField(s, "environment_id") +
                                   " is a self-hosted environment. `resources` are not supported with self-hosted "
                                   "environments.");
  // Warren has no Files API yet: no file id can name a file here (the same
  // answer as a file resource at session create).
  return Status::NotFound("file " + *file_id + " not found");
}

Result<http::HandlerResult> ApiService::UpdateSessionResource(http::HttpRequest& req, const Params& params,
                                                             const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"authorization_token"}, ""));
  std::optional<std::string> token;
  WARREN_RETURN_IF_ERROR(ReadString(body, "authorization_token", "", {.required = true, .min = 1, .max = 4096}, &token));
  const std::string& id = params.at("session_id");
  const std::string& rid = params.at("resource_id");
  WARREN_RETURN_IF_ERROR(AccessibleSession(id, p).status());
  std::string now = Now();
  Json out;
  WARREN_ASSIGN_OR_RETURN(
      Json updated, store_->UpdateSession(id, [&](const Json& cur, std::vector<Json>*) -> Result<Json> {
        if (!cur.value("archived_at", Json()).is_null())
          return Status::Conflict("session " + id + " is archived and read-only");
        const Json* r = FindResource(cur, rid);
        if (!r) return Status::NotFound("resource " + rid + " not found in session " + id);
        if (TypeOf(*r) != "github_repository")
          return Invalid("authorization_token", "only github_repository resources have a token to rotate");
        Json next = cur;
        for (Json& x : next["resources"]) {
          if (StringField(x, "id") != rid) continue;
          x["updated_at"] = now;
          out = x;
        }
        Json& secrets = next["_secrets"];
        if (!secrets.is_object()) secrets = Json::object();
        secrets[rid] = *token;
        next["updated_at"] = now;
        return next;
      }, nullptr));
  (void)updated;
  return JsonResult(out);
}

Result<http::HandlerResult> ApiService::DeleteSessionResource(http::HttpRequest&, const Params& params,
                                                             const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  const std::string& id = params.at("session_id");
  const std::string& rid = params.at("resource_id");
  WARREN_RETURN_IF_ERROR(AccessibleSession(id, p).status());
  WARREN_ASSIGN_OR_RETURN(
      Json updated, store_->UpdateSession(id, [&](const Json& cur, std::vector<Json>*) -> Result<Json> {
        if (!cur.value("archived_at", Json()).is_null())
          return Status::Conflict("session " + id + " is archived and read-only");
        if (!FindResource(cur, rid)) return Status::NotFound("resource " + rid + " not found in session " + id);
        Json next = cur;
        Json kept = Json::array();
        for (const Json& x : next["resources"])
          if (StringField(x, "id") != rid) kept.push_back(x);
        next["resources"] = kept;
        if (next.contains("_secrets") && next["_secrets"].is_object()) next["_secrets"].erase(rid);
        next["updated_at"] = Now();
        return next;
      }, nullptr));
  (void)updated;
  return JsonResult({{"id", rid}, {"type", "session_resource_deleted"}});
}

}  // namespace warren::api
