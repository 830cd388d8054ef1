#include "api/service.h"

#include "api/agent_config.h"
#include "api/errors.h"
#include "api/validate.h"
#include "common/ids.h"
#include "common/log.h"

namespace warren::api {

ApiService::ApiService(store::Store* store, EventBus* bus, Authenticator* auth, Clock* clock, ApiOptions options)
    : store_(store), bus_(bus), auth_(auth), clock_(clock), options_(options),
      snapshots_(std::make_unique<SessionSnapshots>(store)) {
  RegisterRoutes();
}

void ApiService::Route(const char* method, const char* pattern, Fn fn) {
  router_.Add(method, pattern, [this, fn](http::HttpRequest& req, const Params& params) -> http::HandlerResult {
    auto principal = auth_->Authenticate(req);
    if (!principal.ok()) return ErrorResult(principal.status(), req);
    auto r = (this->*fn)(req, params, *principal);
    if (!r.ok()) return ErrorResult(r.status(), req);
    return std::move(r).value();
  });
}

void ApiService::RegisterRoutes() {
  Route("POST", "/v1/agents", &ApiService::CreateAgent);
  Route("GET", "/v1/agents", &ApiService::ListAgents);
  Route("GET", "/v1/agents/{agent_id}", &ApiService::GetAgent);
  Route("POST", "/v1/agents/{agent_id}", &ApiService::UpdateAgent);
  Route("POST", "/v1/agents/{agent_id}/archive", &ApiService::ArchiveAgent);
  Route("GET", "/v1/agents/{agent_id}/versions", &ApiService::ListAgentVersions);

  Route("POST", "/v1/environments", &ApiService::CreateEnvironment);
  Route("GET", "/v1/environments", &ApiService::ListEnvironments);
  Route("GET", "/v1/environments/{environment_id}", &ApiService::GetEnvironment);
  Route("POST", "/v1/environments/{environment_id}", &ApiService::UpdateEnvironment);
  Route("DELETE", "/v1/environments/{environment_id}", &ApiService::DeleteEnvironment);
  Route("POST", "/v1/environments/{environment_id}/archive", &ApiService::ArchiveEnvironment);

  Route("POST", "/v1/sessions", &ApiService::CreateSession);
  Route("GET", "/v1/sessions", &ApiService::ListSessions);
  Route("GET", "/v1/sessions/{session_id}", &ApiService::GetSession);
  Route("POST", "/v1/sessions/{session_id}", &ApiService::UpdateSession);
  Route("DELETE", "/v1/sessions/{session_id}", &ApiService::DeleteSession);
  Route("POST", "/v1/sessions/{session_id}/archive", &ApiService::ArchiveSession);
  Route("GET", "/v1/sessions/{session_id}/resources", &ApiService::ListSessionResources);
  Route("POST", "/v1/sessions/{session_id}/resources", &ApiService::AddSessionResource);
  Route("GET", "/v1/sessions/{session_id}/resources/{resource_id}", &ApiService::GetSessionResource);
  Route("POST", "/v1/sessions/{session_id}/resources/{resource_id}", &ApiService::UpdateSessionResource);
  Route("DELETE", "/v1/sessions/{session_id}/resources/{resource_id}", &ApiService::DeleteSessionResource);
  Route("POST", "/v1/sessions/{session_id}/events", &ApiService::SendEvents);
  Route("GET", "/v1/sessions/{session_id}/events", &ApiService::ListEvents);
  Route("GET", "/v1/sessions/{session_id}/events/stream", &ApiService::StreamEvents);
  Route("GET", "/v1/warren/stream", &ApiService::MultiplexedStream);
  RegisterVaultRoutes();
}

http::HandlerResult ApiService::JsonResult(const Json& body, int status) {
  http::HandlerResult r;
  r.response.status = status;
  r.response.body = DumpJson(body);
  return r;
}

http::HandlerResult ApiService::ErrorResult(const Status& s, const http::HttpRequest& req) {
  if (s.code() == Code::kIOError || s.code() == Code::kInternal)
    log::Error("api.internal_error", {{"error", s.ToString()}, {"path", req.path}, {"request_id", req.request_id}});
  http::HandlerResult r;
  r.response = ErrorResponse(s, req.request_id);
  return r;
}

http::HandlerResult ApiService::Handle(http::HttpRequest& req) {
  std::string path = req.path;
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  const RouteHandler* handler = nullptr;
  Params params;
  switch (router_.Match(req.method, path, &handler, &params)) {
    case Router::MatchResult::kFound: return (*handler)(req, params);
    case Router::MatchResult::kWrongMethod:
      return ErrorResult(Status::NotFound("method " + req.method + " is not allowed on " + path), req);
    case Router::MatchResult::kNoPath: break;
  }
  return ErrorResult(Status::NotFound("no route for " + req.method + " " + path), req);
}

http::BodyRoute ApiService::RouteBody(http::HttpRequest& head) {
  std::string path = head.path;
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  Params params;
  const UploadHandler* upload = router_.MatchUpload(head.method, path, &params);
  if (!upload) return {};
  return (*upload)(head, params);
}

// ------------------------------------------------------------------ helpers

Result<Json> BodyObject(const http::HttpRequest& req, bool allow_empty) {
  bool blank = req.body.find_first_not_of(" \t\r\n") == std::string::npos;
  if (blank) {
    if (allow_empty) return Json::object();
    return Status::InvalidArgument("request body must be a JSON object");
  }
  if (const std::string* ct = req.headers.Find("content-type")) {
    // Lenient like most JSON APIs (curl -d sends form encoding), but a
    // multipart upload is certainly not a JSON body.
    if (ct->find("multipart/") != std::string::npos)
      return Status::InvalidArgument("unsupported content-type '" + ct->substr(0, 100) + "': send application/json");
  }
  auto j = ParseJson(req.body);
  if (!j.ok()) return Status::InvalidArgument("request body is not valid JSON: " + j.status().message());
  if (!j->is_object()) return Status::InvalidArgument("request body must be a JSON object, got " + std::string(JsonTypeName(*j)));
  return std::move(j).value();
}

Status NoFieldsBody(const http::HttpRequest& req) {
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req, true));
  return ExpectKnownFields(body, {}, "");
}

static std::string EncodeCursor(store::Order order, const char* dir, int64_t seq) {
  Json c = {{"o", order == store::Order::kAsc ? "asc" : "desc"}, {dir, seq}};
  return "page_" + Base64UrlEncode(DumpJson(c));
}

Result<store::PageSpec> ParsePaging(const http::HttpRequest& req, int default_limit, int max_limit,
                                    store::Order default_order, bool allow_order) {
  store::PageSpec spec;
  spec.limit = default_limit;
  spec.order = default_order;
  if (auto l = req.Query("limit")) {
    int64_t v;
    WARREN_RETURN_IF_ERROR(ParseIntParam(*l, "limit", 1, max_limit, &v));
    spec.limit = static_cast<int>(v);
  }
  bool order_given = false;
  if (auto o = req.Query("order")) {
    if (!allow_order) return Invalid("order", "this list does not support ordering");
    if (*o == "asc") spec.order = store::Order::kAsc;
    else if (*o == "desc") spec.order = store::Order::kDesc;
    else return Invalid("order", "must be 'asc' or 'desc'");
    order_given = true;
  }
  if (auto p = req.Query("page"); p && !p->empty()) {
    std::string raw;
    if (p->rfind("page_", 0) != 0 || !Base64UrlDecode(p->substr(5), &raw)) return Invalid("page", "invalid page cursor");
    auto c = ParseJson(raw);
    if (!c.ok() || !c->is_object() || !(*c)["o"].is_string()) return Invalid("page", "invalid page cursor");
    store::Order co = (*c)["o"] == "asc" ? store::Order::kAsc : store::Order::kDesc;
    if (order_given && co != spec.order)
      return Invalid("page", "the cursor was issued for a different order; restart paging without it");
    spec.order = co;
    if (c->contains("a") && (*c)["a"].is_number_integer()) spec.after = (*c)["a"].get<int64_t>();
    else if (c->contains("b") && (*c)["b"].is_number_integer()) spec.before = (*c)["b"].get<int64_t>();
    else return Invalid("page", "invalid page cursor");
  }
  return spec;
}

Status ParseTimeRange(const http::HttpRequest& req, const std::string& field, store::TimeRange* range) {
  struct Op {
    const char* name;
    std::optional<int64_t>* slot;
  } ops[] = {{"gt", &range->gt}, {"gte", &range->gte}, {"lt", &range->lt}, {"lte", &range->lte}};
  for (auto& op : ops) {
    std::string key = field + "[" + op.name + "]";
    if (auto v = req.Query(key)) {
      auto t = ParseRfc3339(*v);
      if (!t) return Invalid(key, "expected an RFC 3339 timestamp, got '" + v->substr(0, 64) + "'");
      *op.slot = *t;
    }
  }
  for (const auto& [k, v] : req.query)
    if (k.rfind(field + "[", 0) == 0 && k != field + "[gt]" && k != field + "[gte]" && k != field + "[lt]" &&
        k != field + "[lte]")
      return Invalid(k, "unknown filter (expected gt, gte, lt or lte)");
  return Status::Ok();
}

Json PageBody(const store::Page& page, const store::PageSpec& spec, bool bidirectional) {
  Json body = {{"data", page.items}};
  body["next_page"] = page.more_after && !page.seqs.empty() ? Json(EncodeCursor(spec.order, "a", page.seqs.back()))
                                                            : Json(nullptr);
  if (bidirectional)
    body["prev_page"] = page.more_before && !page.seqs.empty() ? Json(EncodeCursor(spec.order, "b", page.seqs.front()))
                                                               : Json(nullptr);
  return body;
}

// ------------------------------------------------------------------- agents

// Validates and applies agent fields from `body` onto `agent` (create: all
// defaults present already). `update` enables clear-by-null semantics.
static Status ApplyAgentFields(const Json& body, Json* agent, bool update) {
  std::optional<std::string> s;
  if (body.contains("name")) {
    if (update && body["name"].is_null()) return Invalid("name", "cannot be cleared");
    WARREN_RETURN_IF_ERROR(ReadString(body, "name", "", {.required = true, .min = 1, .max = 256}, &s));
    (*agent)["name"] = *s;
  }
  if (body.contains("model")) {
    if (body["model"].is_null()) return Invalid("model", update ? "cannot be cleared" : "field required");
    WARREN_ASSIGN_OR_RETURN((*agent)["model"], NormalizeModel(body["model"], "model"));
  }
  if (body.contains("system")) {
    WARREN_RETURN_IF_ERROR(ReadString(body, "system", "", {.nullable = true, .max = 100000}, &s));
    (*agent)["system"] = s && !s->empty() ? Json(*s) : Json(nullptr);
  }
  if (body.contains("description")) {
    WARREN_RETURN_IF_ERROR(ReadString(body, "description", "", {.nullable = true, .max = 2048}, &s));
    (*agent)["description"] = s && !s->empty() ? Json(*s) : Json(nullptr);
  }
  if (body.contains("tools")) {
    WARREN_ASSIGN_OR_RETURN((*agent)["tools"], NormalizeTools(body["tools"], "tools"));
  }
  if (body.contains("mcp_servers")) {
    WARREN_ASSIGN_OR_RETURN((*agent)["mcp_servers"], NormalizeMcpServers(body["mcp_servers"], "mcp_servers"));
  }
  if (body.contains("skills")) {
    WARREN_ASSIGN_OR_RETURN((*agent)["skills"], NormalizeSkills(body["skills"], "skills"));
  }
  if (body.contains("execution_identity")) {
    if (body["execution_identity"].is_null()) {
      (*agent)["execution_identity"] = {{"type", "service_account"}};
    } else {
      WARREN_RETURN_IF_ERROR(ValidateExecutionIdentity(body["execution_identity"], "execution_identity"));
      (*agent)["execution_identity"] = body["execution_identity"];
    }
  }
  if (body.contains("metadata")) {
    if (update) {
      if (!body["metadata"].is_null()) {
        WARREN_RETURN_IF_ERROR(ValidateMetadata(body["metadata"], "metadata", true));
        Json merged = (*agent)["metadata"];
        ApplyMetadataPatch(&merged, body["metadata"]);
        WARREN_RETURN_IF_ERROR(ValidateMetadata(merged, "metadata", false));
        (*agent)["metadata"] = merged;
      }
    } else {
      if (!body["metadata"].is_null()) {
        WARREN_RETURN_IF_ERROR(ValidateMetadata(body["metadata"], "metadata", false));
        (*agent)["metadata"] = body["metadata"];
      }
    }
  }
  WARREN_RETURN_IF_ERROR(CheckMcpReferences((*agent)["tools"], (*agent)["mcp_servers"], ""));
  return Status::Ok();
}

static Status ValidateMultiagent(const Json& m, const std::string& self_id, int self_version, store::Store* store,
                                 Json* out) {
  if (m.is_null()) {
    *out = nullptr;
    return Status::Ok();
  }
  WARREN_RETURN_IF_ERROR(ExpectObject(m, "multiagent"));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(m, {"type", "agents"}, "multiagent"));
  if (m.value("type", Json()) != "coordinator") return Invalid("multiagent.type", "must be 'coordinator'");
  if (!m.contains("agents") || !m["agents"].is_array()) return Invalid("multiagent.agents", "expected an array");
  const Json& agents = m["agents"];
  if (agents.empty() || agents.size() > 20) return Invalid("multiagent.agents", "must list 1 to 20 agents");
  Json roster = Json::array();
  std::set<std::string> seen;
  int selfs = 0;
  for (size_t i = 0; i < agents.size(); i++) {
    std::string p = IndexPath("multiagent.agents", i);
    const Json& a = agents[i];
    std::string id;
    std::optional<int64_t> version;
    if (a.is_string()) {
      id = a.get<std::string>();
    } else if (a.is_object() && TypeOf(a) == "self") {
      if (++selfs > 1) return Invalid(p, "at most one 'self' entry is allowed");
      id = self_id;
      version = self_version;
    } else if (a.is_object() && TypeOf(a) == "agent") {
      std::optional<std::string> sid;
      WARREN_RETURN_IF_ERROR(ReadString(a, "id", p, {.required = true, .min = 1, .max = 128}, &sid));
      id = *sid;
      WARREN_RETURN_IF_ERROR(ReadInt(a, "version", p, 1, INT32_MAX, &version));
    } else if (a.is_object() && TypeOf(a) == "advisor") {
      if (!a.contains("model")) return Invalid(JoinPath(p, "model"), "field required");
      WARREN_ASSIGN_OR_RETURN(Json model, NormalizeModel(a["model"], JoinPath(p, "model")));
      roster.push_back({{"type", "advisor"}, {"model", model}});
      continue;
    } else {
      return Invalid(p, "expected an agent id, {type:'agent',id}, {type:'self'} or {type:'advisor',model}");
    }
    if (!seen.insert(id).second) return Invalid(p, "agent '" + id + "' is listed twice");
    if (id != self_id) {
      auto ag = store->GetAgent(id, version ? std::optional<int>(static_cast<int>(*version)) : std::nullopt);
      if (!ag.ok()) return Invalid(p, ag.status().message());
      if (!(*ag)["multiagent"].is_null()) return Invalid(p, "agent '" + id + "' is itself a coordinator (depth is limited to 1)");
      auto v = ag->find("version");
      if (v == ag->end() || !v->is_number_integer()) return Status::Internal("agent " + id + " has no version");
      version = v->get<int64_t>();
    }
    roster.push_back({{"type", "agent"}, {"id", id}, {"version", *version}});
  }
  *out = {{"type", "coordinator"}, {"agents", roster}};
  return Status::Ok();
}

Result<http::HandlerResult> ApiService::CreateAgent(http::HttpRequest& req, const Params&, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"name", "model", "system", "description", "tools", "mcp_servers",
                                                  "skills", "multiagent", "metadata", "execution_identity"},
                                           ""));
  if (!body.contains("name")) return Invalid("name", "field required");
  if (!body.contains("model")) return Invalid("model", "field required").WithDetailCode("agent_model_required");
  std::string now = Now();
  Json agent = {{"id", NewId(idprefix::kAgent)},
                {"type", "agent"},
                {"name", ""},
                {"description", nullptr},
                {"model", nullptr},
                {"system", nullptr},
                {"tools", Json::array()},
                {"mcp_servers", Json::array()},
                {"skills", Json::array()},
                {"multiagent", nullptr},
                {"metadata", Json::object()},
                {"execution_identity", {{"type", "service_account"}}},
                {"version", 1},
                {"created_at", now},
                {"updated_at", now},
                {"archived_at", nullptr}};
  WARREN_RETURN_IF_ERROR(ApplyAgentFields(body, &agent, false));
  if (body.contains("multiagent"))
    WARREN_RETURN_IF_ERROR(ValidateMultiagent(body["multiagent"], agent["id"], 1, store_, &agent["multiagent"]));
  WARREN_RETURN_IF_ERROR(store_->CreateAgent(agent));
  return JsonResult(agent);
}

Result<http::HandlerResult> ApiService::GetAgent(http::HttpRequest& req, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  std::optional<int> version;
  if (auto v = req.Query("version")) {
    int64_t n;
    WARREN_RETURN_IF_ERROR(ParseIntParam(*v, "version", 1, INT32_MAX, &n));
    version = static_cast<int>(n);
  }
  WARREN_ASSIGN_OR_RETURN(Json agent, store_->GetAgent(params.at("agent_id"), version));
  return JsonResult(agent);
}

Result<http::HandlerResult> ApiService::UpdateAgent(http::HttpRequest& req, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(Json body, BodyObject(req));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(body, {"name", "model", "system", "description", "tools", "mcp_servers",
                                                  "skills", "multiagent", "metadata", "execution_identity", "version"},
                                           ""));
  std::optional<int64_t> expected;
  WARREN_RETURN_IF_ERROR(ReadInt(body, "version", "", 1, INT32_MAX, &expected));
  std::string now = Now();
  const std::string& agent_id = params.at("agent_id");
  // The roster reads other agents, so it is resolved before the
  // transaction: a mutator never calls the Store (store.h contract 4). Its
  // "self" entries get their version inside, from the version updated.
  Json roster;
  if (body.contains("multiagent")) {
    WARREN_RETURN_IF_ERROR(store_->GetAgent(agent_id, std::nullopt).status());
    WARREN_RETURN_IF_ERROR(ValidateMultiagent(body["multiagent"], agent_id, 0, store_, &roster));
  }
  WARREN_ASSIGN_OR_RETURN(
      Json updated, store_->UpdateAgent(agent_id, [&](const Json& current) -> Result<Json> {
        if (!current["archived_at"].is_null())
          return Status::Conflict("agent " + StringField(current, "id") + " is archived and read-only");
        auto v = current.find("version");
        if (v == current.end() || !v->is_number_integer()) return Status::Internal("stored agent has no version");
        int64_t cur = v->get<int64_t>();
        if (expected && *expected != cur)
          return Status::Conflict("version " + std::to_string(*expected) + " is stale: the current version is " +
                                  std::to_string(cur));
        Json next = current;
        WARREN_RETURN_IF_ERROR(ApplyAgentFields(body, &next, true));
        if (body.contains("multiagent")) {
          Json m = roster;
          if (m.is_object() && m.contains("agents") && m["agents"].is_array())
            for (Json& a : m["agents"])
              if (a.value("type", "") == "agent" && a.value("id", "") == agent_id) a["version"] = cur + 1;
          next["multiagent"] = m;
        }
        if (next == current) return current;  // nothing changed: no new version
        next["version"] = cur + 1;
        next["updated_at"] = now;
        return next;
      }));
  return JsonResult(updated);
}

Result<http::HandlerResult> ApiService::ListAgents(http::HttpRequest& req, const Params&, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(auto spec, ParsePaging(req, 20, 100, store::Order::kDesc, false));
  store::AgentFilter f;
  WARREN_RETURN_IF_ERROR(ParseTimeRange(req, "created_at", &f.created));
  if (auto ia = req.Query("include_archived")) WARREN_RETURN_IF_ERROR(ParseBoolParam(*ia, "include_archived", &f.include_archived));
  WARREN_ASSIGN_OR_RETURN(auto page, store_->ListAgents(f, spec));
  return JsonResult(PageBody(page, spec, false));
}

Result<http::HandlerResult> ApiService::ArchiveAgent(http::HttpRequest& req, const Params& params, const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_RETURN_IF_ERROR(NoFieldsBody(req));
  std::string now = Now();
  WARREN_ASSIGN_OR_RETURN(Json agent, store_->UpdateAgent(params.at("agent_id"), [&](const Json& cur) -> Result<Json> {
                            if (!FieldOrNull(cur, "archived_at").is_null()) return cur;  // idempotent
                            Json next = cur;
                            next["archived_at"] = now;
                            next["updated_at"] = now;
                            return next;
                          }));
  return JsonResult(agent);
}

Result<http::HandlerResult> ApiService::ListAgentVersions(http::HttpRequest& req, const Params& params,
                                                          const Principal& p) {
  WARREN_RETURN_IF_ERROR(RequireOrg(p));
  WARREN_ASSIGN_OR_RETURN(auto spec, ParsePaging(req, 20, 100, store::Order::kDesc, false));
  WARREN_ASSIGN_OR_RETURN(auto page, store_->ListAgentVersions(params.at("agent_id"), spec));
  return JsonResult(PageBody(page, spec, false));
}

}  // namespace warren::api
