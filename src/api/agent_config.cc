#include "api/agent_config.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "api/validate.h"

namespace warren::api {
namespace {

bool IsBuiltin(std::string_view name) {
  return std::find(std::begin(kBuiltinTools), std::end(kBuiltinTools), name) != std::end(kBuiltinTools);
}

Result<Json> NormalizePolicy(const Json& p, std::string_view path) {
  WARREN_RETURN_IF_ERROR(ExpectObject(p, path));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(p, {"type"}, path));
  std::optional<std::string> type;
  WARREN_RETURN_IF_ERROR(ReadString(p, "type", path, {.required = true, .min = 1, .max = 64}, &type));
  if (*type != "always_allow" && *type != "always_ask")
    return Invalid(JoinPath(path, "type"), "must be 'always_allow' or 'always_ask'");
  return Json{{"type", *type}};
}

// {enabled?, permission_policy?} with defaults from `base`.
Result<Json> NormalizeToolConfig(const Json& c, std::string_view path, const Json& base) {
  Json out = base;
  std::optional<bool> enabled;
  WARREN_RETURN_IF_ERROR(ReadBool(c, "enabled", path, &enabled));
  if (enabled) out["enabled"] = *enabled;
  if (c.contains("permission_policy") && !c["permission_policy"].is_null()) {
    WARREN_ASSIGN_OR_RETURN(out["permission_policy"], NormalizePolicy(c["permission_policy"], JoinPath(path, "permission_policy")));
  }
  return out;
}

Status ValidateSchema(const Json& schema, std::string_view path, int depth) {
  if (depth > 32) return Invalid(path, "schema nested too deeply");
  if (schema.is_object()) {
    for (auto it = schema.begin(); it != schema.end(); ++it) {
      if (it.key() == "$ref") return Invalid(JoinPath(path, "$ref"), "$ref is not supported in input_schema");
      WARREN_RETURN_IF_ERROR(ValidateSchema(it.value(), JoinPath(path, it.key()), depth + 1));
    }
  } else if (schema.is_array()) {
    for (size_t i = 0; i < schema.size(); i++)
      WARREN_RETURN_IF_ERROR(ValidateSchema(schema[i], IndexPath(path, i), depth + 1));
  }
  return Status::Ok();
}

bool NameChars(const std::string& s, bool allow_dot) {
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              (allow_dot && c == '.');
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Result<Json> NormalizeModel(const Json& model, std::string_view path) {
  if (model.is_string()) {
    const std::string& id = model.get_ref<const std::string&>();
    if (id.empty() || id.size() > 256) return Invalid(path, "model id must be 1-256 characters");
    return Json{{"id", id}};
  }
  if (!model.is_object())
    return Invalid(path, "expected a model id string or an object, got " + std::string(JsonTypeName(model)));
  WARREN_RETURN_IF_ERROR(ExpectKnownFields(model, {"id", "effort", "inference_geo", "speed"}, path));
  std::optional<std::string> id, geo, speed;
  WARREN_RETURN_IF_ERROR(ReadString(model, "id", path, {.required = true, .min = 1, .max = 256}, &id));
  Json out = {{"id", *id}};
  if (model.contains("effort") && !model["effort"].is_null()) {
    const Json& e = model["effort"];
    static const std::set<std::string> kEfforts = {"low", "medium", "high", "xhigh", "max"};
    if (e.is_string()) {
      if (!kEfforts.count(e.get<std::string>()))
        return Invalid(JoinPath(path, "effort"), "must be one of low, medium, high, xhigh, max");
    } else if (e.is_object()) {
      std::optional<std::string> t;
      WARREN_RETURN_IF_ERROR(ReadString(e, "type", JoinPath(path, "effort"), {.required = true, .min = 1, .max = 16}, &t));
      if (!kEfforts.count(*t)) return Invalid(JoinPath(path, "effort.type"), "must be one of low, medium, high, xhigh, max");
    } else {
      return Invalid(JoinPath(path, "effort"), "expected a string or an object");
    }
    out["effort"] = e;
  }
  WARREN_RETURN_IF_ERROR(ReadString(model, "inference_geo", path, {.nullable = true, .min = 1, .max = 64}, &geo));
  if (geo) out["inference_geo"] = *geo;
  WARREN_RETURN_IF_ERROR(ReadString(model, "speed", path, {.nullable = true, .max = 16}, &speed));
  if (speed) {
    if (*speed != "standard" && *speed != "fast") return Invalid(JoinPath(path, "speed"), "must be 'standard' or 'fast'");
    out["speed"] = *speed;
  }
  return out;
}

// The `default_config` and `configs` of a toolset entry `t` at `p`
// (agent_toolset_20260401 and mcp_toolset share the shape). Unknown fields
// and duplicate names are errors; `check_name` may reject a name. With
// `typed` (the agent toolset) an entry may also carry `type`, which the SDK
// declares as the tool's name again (`{"name":"bash","type":"bash"}`): it
// must equal `name`.
struct ToolsetConfigs {
  Json def;                                    // the normalized default_config
  std::vector<std::pair<std::string, Json>> per_tool;  // in request order
};
Result<ToolsetConfigs> ParseToolsetConfigs(const Json& t, const std::string& p, size_t max_name, bool typed,
                                           const std::function<Status(const std::string&, const std::string&)>& check_name) {
  ToolsetConfigs out;
  out.def = {{"enabled", true}, {"permission_policy", {{"type", "always_allow"}}}};
  if (t.contains("default_config") && !t["default_config"].is_null()) {
    std::string dp = JoinPath(p, "default_config");
    WARREN_RETURN_IF_ERROR(ExpectObject(t["default_config"], dp));
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(t["default_config"], {"enabled", "permission_policy"}, dp));
    WARREN_ASSIGN_OR_RETURN(out.def, NormalizeToolConfig(t["default_config"], dp, out.def));
  }
  if (!t.contains("configs") || t["configs"].is_null()) return out;
  const Json& cs = t["configs"];
  if (!cs.is_array()) return Invalid(JoinPath(p, "configs"), "expected an array");
  std::set<std::string> seen;
  for (size_t j = 0; j < cs.size(); j++) {
    std::string cp = IndexPath(JoinPath(p, "configs"), j);
    WARREN_RETURN_IF_ERROR(ExpectObject(cs[j], cp));
    if (typed) WARREN_RETURN_IF_ERROR(ExpectKnownFields(cs[j], {"name", "type", "enabled", "permission_policy"}, cp));
    else WARREN_RETURN_IF_ERROR(ExpectKnownFields(cs[j], {"name", "enabled", "permission_policy"}, cp));
    std::optional<std::string> name, ctype;
    WARREN_RETURN_IF_ERROR(ReadString(cs[j], "name", cp, {.required = true, .min = 1, .max = max_name}, &name));
    if (check_name) WARREN_RETURN_IF_ERROR(check_name(*name, JoinPath(cp, "name")));
    if (typed) {
      WARREN_RETURN_IF_ERROR(ReadString(cs[j], "type", cp, {.min = 1, .max = max_name}, &ctype));
      if (ctype && *ctype != *name)
        return Invalid(JoinPath(cp, "type"), "must equal the tool's name '" + *name + "', got '" + *ctype + "'");
    }
    if (!seen.insert(*name).second) return Invalid(JoinPath(cp, "name"), "duplicate config for tool '" + *name + "'");
    WARREN_ASSIGN_OR_RETURN(Json c, NormalizeToolConfig(cs[j], cp, out.def));
    out.per_tool.emplace_back(*name, std::move(c));
  }
  return out;
}

Json ConfigEntry(const std::string& name, const Json& c) {
  return {{"name", name}, {"enabled", c["enabled"]}, {"permission_policy", c["permission_policy"]}};
}

Result<Json> NormalizeTools(const Json& tools, std::string_view path) {
  if (tools.is_null()) return Json::array();
  if (!tools.is_array()) return Invalid(path, "expected an array, got " + std::string(JsonTypeName(tools)));
  if (tools.size() > 128) return Invalid(path, "at most 128 tools are allowed");
  Json out = Json::array();
  std::set<std::string> custom_names;
  bool have_toolset = false;
  std::set<std::string> mcp_names;
  for (size_t i = 0; i < tools.size(); i++) {
    std::string p = IndexPath(path, i);
    const Json& t = tools[i];
    WARREN_RETURN_IF_ERROR(ExpectObject(t, p));
    std::optional<std::string> type;
    WARREN_RETURN_IF_ERROR(ReadString(t, "type", p, {.required = true, .min = 1, .max = 64}, &type));
    if (*type == "agent_toolset_20260401") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(t, {"type", "default_config", "configs"}, p));
      if (have_toolset) return Invalid(p, "agent_toolset_20260401 may appear only once");
      have_toolset = true;
      WARREN_ASSIGN_OR_RETURN(
          ToolsetConfigs tc,
          ParseToolsetConfigs(t, p, 64, /*typed=*/true, [](const std::string& name, const std::string& np) -> Status {
            if (IsBuiltin(name)) return Status::Ok();
            return Invalid(np, "unknown tool '" + name +
                                   "' (expected bash, edit, read, write, glob, grep, web_fetch or web_search)");
          }));
      const Json& def = tc.def;
      std::map<std::string, Json> per(tc.per_tool.begin(), tc.per_tool.end());
      Json configs = Json::array();
      for (std::string_view name : kBuiltinTools) {
        auto it = per.find(std::string(name));
        Json entry = ConfigEntry(std::string(name), it != per.end() ? it->second : def);
        entry["type"] = std::string(name);  // the SDK's resolved config carries it
        configs.push_back(std::move(entry));
      }
      out.push_back({{"type", *type}, {"default_config", def}, {"configs", configs}});
    } else if (*type == "mcp_toolset") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(t, {"type", "mcp_server_name", "default_config", "configs"}, p));
      std::optional<std::string> server;
      WARREN_RETURN_IF_ERROR(ReadString(t, "mcp_server_name", p, {.required = true, .min = 1, .max = 255}, &server));
      if (!mcp_names.insert(*server).second) return Invalid(p, "duplicate mcp_toolset for server '" + *server + "'");
      WARREN_ASSIGN_OR_RETURN(ToolsetConfigs tc, ParseToolsetConfigs(t, p, 128, /*typed=*/false, nullptr));
      const Json& def = tc.def;
      Json configs = Json::array();
      for (const auto& [name, c] : tc.per_tool) configs.push_back(ConfigEntry(name, c));
      out.push_back({{"type", *type}, {"mcp_server_name", *server}, {"default_config", def}, {"configs", configs}});
    } else if (*type == "custom") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(t, {"type", "name", "description", "input_schema"}, p));
      std::optional<std::string> name, desc;
      WARREN_RETURN_IF_ERROR(ReadString(t, "name", p, {.required = true, .min = 1, .max = 128}, &name));
      if (!NameChars(*name, false)) return Invalid(JoinPath(p, "name"), "must match [A-Za-z0-9_-]{1,128}");
      if (name->rfind("mcp__", 0) == 0) return Invalid(JoinPath(p, "name"), "the prefix 'mcp__' is reserved");
      if (IsBuiltin(*name)) return Invalid(JoinPath(p, "name"), "'" + *name + "' collides with a built-in tool name");
      if (!custom_names.insert(*name).second) return Invalid(JoinPath(p, "name"), "duplicate custom tool name '" + *name + "'");
      WARREN_RETURN_IF_ERROR(ReadString(t, "description", p, {.required = true, .min = 1, .max = 10000}, &desc));
      if (!t.contains("input_schema")) return Invalid(JoinPath(p, "input_schema"), "field required");
      const Json& schema = t["input_schema"];
      std::string sp = JoinPath(p, "input_schema");
      WARREN_RETURN_IF_ERROR(ExpectObject(schema, sp));
      if (schema.value("type", Json()) != "object") return Invalid(JoinPath(sp, "type"), "must be 'object'");
      for (const char* k : {"oneOf", "anyOf", "allOf"})
        if (schema.contains(k)) return Invalid(JoinPath(sp, k), "top-level combinators are not supported");
      WARREN_RETURN_IF_ERROR(ValidateSchema(schema, sp, 0));
      if (schema.contains("properties")) {
        if (!schema["properties"].is_object()) return Invalid(JoinPath(sp, "properties"), "expected an object");
        for (auto it = schema["properties"].begin(); it != schema["properties"].end(); ++it)
          if (it.key().empty() || it.key().size() > 64 || !NameChars(it.key(), true))
            return Invalid(JoinPath(sp, "properties"), "property name '" + it.key().substr(0, 80) + "' must match [A-Za-z0-9_.-]{1,64}");
      }
      out.push_back({{"type", "custom"}, {"name", *name}, {"description", *desc}, {"input_schema", schema}});
    } else {
      return Invalid(JoinPath(p, "type"), "unknown tool type '" + *type + "' (expected agent_toolset_20260401, mcp_toolset or custom)");
    }
  }
  return out;
}

Result<Json> NormalizeMcpServers(const Json& servers, std::string_view path) {
  if (servers.is_null()) return Json::array();
  if (!servers.is_array()) return Invalid(path, "expected an array, got " + std::string(JsonTypeName(servers)));
  if (servers.size() > 20) return Invalid(path, "at most 20 MCP servers are allowed");
  Json out = Json::array();
  std::set<std::string> names;
  for (size_t i = 0; i < servers.size(); i++) {
    std::string p = IndexPath(path, i);
    WARREN_RETURN_IF_ERROR(ExpectObject(servers[i], p));
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(servers[i], {"type", "name", "url"}, p));
    std::optional<std::string> type, name, url;
    WARREN_RETURN_IF_ERROR(ReadString(servers[i], "type", p, {.required = true, .min = 1, .max = 16}, &type));
    if (*type != "url") return Invalid(JoinPath(p, "type"), "must be 'url'");
    WARREN_RETURN_IF_ERROR(ReadString(servers[i], "name", p, {.required = true, .min = 1, .max = 255}, &name));
    WARREN_RETURN_IF_ERROR(ReadString(servers[i], "url", p, {.required = true, .min = 1, .max = 2048}, &url));
    if (url->rfind("http://", 0) != 0 && url->rfind("https://", 0) != 0)
      return Invalid(JoinPath(p, "url"), "must be an http(s) URL");
    if (!names.insert(*name).second) return Invalid(JoinPath(p, "name"), "duplicate MCP server name '" + *name + "'");
    out.push_back({{"type", "url"}, {"name", *name}, {"url", *url}});
  }
  return out;
}

Status CheckMcpReferences(const Json& tools, const Json& servers, std::string_view path) {
  std::set<std::string> names, used;
  for (const Json& s : servers) names.insert(StringField(s, "name"));
  for (const Json& t : tools) {
    if (TypeOf(t) != "mcp_toolset") continue;
    std::string n = StringField(t, "mcp_server_name");
    if (!names.count(n)) return Invalid(JoinPath(path, "tools"), "mcp_toolset references unknown MCP server '" + n + "'");
    used.insert(n);
  }
  for (const std::string& n : names)
    if (!used.count(n)) return Invalid(JoinPath(path, "mcp_servers"), "MCP server '" + n + "' is not referenced by any mcp_toolset");
  return Status::Ok();
}

Result<Json> NormalizeSkills(const Json& skills, std::string_view path) {
  if (skills.is_null()) return Json::array();
  if (!skills.is_array()) return Invalid(path, "expected an array, got " + std::string(JsonTypeName(skills)));
  if (skills.size() > 20) return Invalid(path, "at most 20 skills are allowed");
  Json out = Json::array();
  for (size_t i = 0; i < skills.size(); i++) {
    std::string p = IndexPath(path, i);
    WARREN_RETURN_IF_ERROR(ExpectObject(skills[i], p));
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(skills[i], {"type", "skill_id", "version"}, p));
    std::optional<std::string> type, id, version;
    WARREN_RETURN_IF_ERROR(ReadString(skills[i], "type", p, {.required = true, .min = 1, .max = 16}, &type));
    if (*type != "anthropic" && *type != "custom") return Invalid(JoinPath(p, "type"), "must be 'anthropic' or 'custom'");
    WARREN_RETURN_IF_ERROR(ReadString(skills[i], "skill_id", p, {.required = true, .min = 1, .max = 256}, &id));
    WARREN_RETURN_IF_ERROR(ReadString(skills[i], "version", p, {.nullable = true, .min = 1, .max = 64}, &version));
    out.push_back({{"type", *type}, {"skill_id", *id}, {"version", version.value_or("latest")}});
  }
  return out;
}

Status ValidateExecutionIdentity(const Json& ei, std::string_view path) {
  WARREN_RETURN_IF_ERROR(ExpectObject(ei, path));
  std::optional<std::string> type;
  WARREN_RETURN_IF_ERROR(ReadString(ei, "type", path, {.required = true, .min = 1, .max = 64}, &type));
  if (*type == "service_account") return ExpectKnownFields(ei, {"type"}, path);
  if (*type == "aws_role") return Status::Ok();
  return Invalid(JoinPath(path, "type"), "must be 'service_account' or 'aws_role'");
}

}  // namespace warren::api
