// Validation and normalisation of agent configuration (spec 1.1): model,
// tools (agent_toolset_20260401 resolved in full, mcp_toolset, custom),
// mcp_servers, skills, multiagent. Shared by agents and by session
// `agent_with_overrides`. Stateless; thread-safe.
#pragma once

#include <string_view>

#include "common/json.h"
#include "common/status.h"

namespace warren::api {

inline constexpr std::string_view kBuiltinTools[] = {"bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search"};

// "claude-x" or {"id":...,"effort"?,"inference_geo"?,"speed"?} -> the object form.
Result<Json> NormalizeModel(const Json& model, std::string_view path);
// Validates `tools` and returns the resolved response form.
Result<Json> NormalizeTools(const Json& tools, std::string_view path);
Result<Json> NormalizeMcpServers(const Json& servers, std::string_view path);
Result<Json> NormalizeSkills(const Json& skills, std::string_view path);
// Every mcp_toolset names a server in `servers`, and every server is used.
Status CheckMcpReferences(const Json& tools, const Json& servers, std::string_view path);
Status ValidateExecutionIdentity(const Json& ei, std::string_view path);

// Effective permission policy ("always_allow"/"always_ask") and enabled
// flag of built-in tool `name` under resolved `tools`; nullopt if the
// toolset is absent or the tool is disabled.
std::optional<std::string> BuiltinToolPolicy(const Json& tools, std::string_view name);

}  // namespace warren::api
