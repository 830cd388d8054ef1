#include "domain/tool_policy.h"

#include <algorithm>

namespace warren::domain {
namespace {

const Json& Member(const Json& j, std::string_view key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

}  // namespace

bool IsBuiltinTool(std::string_view name) {
  return std::find(std::begin(kBuiltinTools), std::end(kBuiltinTools), name) != std::end(kBuiltinTools);
}

std::optional<std::string> BuiltinToolPolicy(const Json& tools, std::string_view name) {
  if (!tools.is_array()) return std::nullopt;
  for (const Json& t : tools) {
    if (Member(t, "type") != "agent_toolset_20260401") continue;
    const Json& configs = Member(t, "configs");
    if (!configs.is_array()) continue;
    for (const Json& c : configs) {
      if (Member(c, "name") != name) continue;
      // A malformed entry fails closed: only an explicit `false` disables
      // the tool, and a policy that cannot be read asks.
      if (Member(c, "enabled") == false) return std::nullopt;
      const Json& policy = Member(Member(c, "permission_policy"), "type");
      if (!policy.is_string() || policy.get_ref<const std::string&>().empty()) return std::string("always_ask");
      return policy.get<std::string>();
    }
  }
  return std::nullopt;
}

namespace {
// enabled + policy of one config object; nullopt when disabled.
std::optional<std::string> PolicyOf(const Json& c) {
  if (Member(c, "enabled") == false) return std::nullopt;
  const Json& policy = Member(Member(c, "permission_policy"), "type");
  if (!policy.is_string() || policy.get_ref<const std::string&>().empty()) return std::string("always_ask");
  return policy.get<std::string>();
}
}  // namespace

std::optional<std::string> McpToolPolicy(const Json& tools, std::string_view server, std::string_view tool) {
  if (!tools.is_array()) return std::nullopt;
  for (const Json& t : tools) {
    if (Member(t, "type") != "mcp_toolset" || Member(t, "mcp_server_name") != server) continue;
    const Json& configs = Member(t, "configs");
    if (configs.is_array())
      for (const Json& c : configs)
        if (Member(c, "name") == tool) return PolicyOf(c);
    const Json& def = Member(t, "default_config");
    if (!def.is_object()) return std::string("always_allow");
    return PolicyOf(def);
  }
  return std::nullopt;
}

}  // namespace warren::domain
