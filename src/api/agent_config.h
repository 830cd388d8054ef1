// Validation and normalisation of agent configuration (spec 1.1): model,
// tools (agent_toolset_20260401 resolved in full, mcp_toolset, custom),
// mcp_servers, skills, multiagent. Shared by agents and by session
// `agent_with_overrides`. Stateless; thread-safe.
#pragma once

#include <string_view>

#include "common/json.h"
#include "common/status.h"
#include "domain/tool_policy.h"

namespace warren::api {

// Built-in tool names and policy live in the domain layer (domain/tool_policy.h).
using domain::BuiltinToolPolicy;
using domain::kBuiltinTools;

// "claude-x" or {"id":...,"effort"?,"inference_geo"?,"speed"?} -> the object form.
Result<Json> NormalizeModel(const Json& model, std::string_view path);
// Validates `tools` and returns the resolved response form.
Result<Json> NormalizeTools(const Json& tools, std::string_view path);
Result<Json> NormalizeMcpServers(const Json& servers, std::string_view path);
Result<Json> NormalizeSkills(const Json& skills, std::string_view path);
// Every mcp_toolset names a server in `servers`, and every server is used.
Status CheckMcpReferences(const Json& tools, const Json& servers, std::string_view path);
Status ValidateExecutionIdentity(const Json& ei, std::string_view path);


}  // namespace warren::api
