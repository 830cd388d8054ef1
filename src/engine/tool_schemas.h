// Model-facing definitions of the built-in toolset agent_toolset_20260401
// (input schemas of spec section 4.1) and the session's tool list.
#pragma once

#include <string>
#include <vector>

#include "common/json.h"
#include "domain/server_tools.h"
#include "models/model_types.h"

namespace warren::engine {

// Definition of built-in tool `name` (bash, read, write, edit, glob, grep).
// Returns false for tools Warren does not run (web_fetch, web_search).
bool BuiltinToolDefinition(const std::string& name, models::ToolDefinition* out);

// Tools offered to the model for a resolved session agent `tools` array:
// enabled built-ins and custom tools. web_fetch / web_search are offered
// only when `server` (may be null) has a definition for them, i.e. the
// service is configured to run them.
std::vector<models::ToolDefinition> ToolsForAgent(const Json& tools, const domain::ServerTools* server = nullptr);

}  // namespace warren::engine
