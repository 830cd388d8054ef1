// Built-in tool names and their permission policy under an agent's resolved
// `tools` (spec 1.1). Used by the API (validation) and by the engine
// (evaluated_permission). Reads are checked: a damaged tools array reads as
// "not enabled", never throws. Stateless; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/json.h"

namespace warren::domain {

inline constexpr std::string_view kBuiltinTools[] = {"bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search"};

bool IsBuiltinTool(std::string_view name);

// Effective permission policy ("always_allow"/"always_ask") of built-in tool
// `name` under resolved `tools`; nullopt if the toolset is absent or the
// tool is disabled. A malformed entry fails closed: "always_ask".
std::optional<std::string> BuiltinToolPolicy(const Json& tools, std::string_view name);

// Effective permission policy of tool `tool` of MCP server `server` under
// the agent's `mcp_toolset` for that server (spec 1.1.1): a per-tool config
// overrides the toolset's default_config. nullopt if there is no toolset
// for the server or the tool is disabled. Malformed entries fail closed.
std::optional<std::string> McpToolPolicy(const Json& tools, std::string_view server, std::string_view tool);

}  // namespace warren::domain
