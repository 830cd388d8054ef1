// McpTools: the port through which the engine reaches the MCP servers of a
// session's agent (spec 1.1.1 mcp_servers / mcp_toolset). The production
// implementation is mcp::McpGateway (src/mcp: transports, credentials from
// the session's vaults, per-session tool cache); engine tests use a fake.
//
// Tools appear to the model as `mcp__<server>__<tool>` (McpExposedName).
// Failures never throw and never stall other servers: a server that cannot
// be reached or refuses its credentials is reported in `failures` (and its
// tools are absent), while the other servers' tools are listed.
//
// Thread-safety: implementations are called concurrently from engine
// threads, for different sessions and for several calls of one session.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http_client.h"
#include "common/json.h"

namespace warren::domain {

// The model-facing name of MCP tool `tool` of server `server`:
// "mcp__<server>__<tool>" with every character outside [A-Za-z0-9_-]
// replaced by '_'; names longer than 128 characters are cut and end with 8
// hex digits of a hash of the full name, so they stay distinct.
std::string McpExposedName(std::string_view server, std::string_view tool);

struct McpToolDef {
  std::string exposed_name;
  std::string server;
  std::string tool;
  std::string description;
  Json input_schema = Json::object();
};

// A server that failed: error_type is mcp_connection_failed_error or
// mcp_authentication_failed_error (spec 2.3); the message names the server
// and never carries a credential.
struct McpServerFailure {
  std::string server;
  std::string error_type;
  std::string message;
};

struct McpListing {
  std::vector<McpToolDef> tools;  // enabled tools of reachable servers
  // Failures not reported to this session before (a server that keeps
  // failing is reported once until it recovers).
  std::vector<McpServerFailure> failures;
};

struct McpCallOutcome {
  Json content = Json::array();  // client content blocks (text/image)
  bool is_error = false;
  std::optional<McpServerFailure> failure;  // the server failed (not the tool)
  // Set when `content` was cut to fit the model's context: the text of
  // every text block of the result, in full (the engine writes it to the
  // session's sandbox when it has one; domain/session_files.h).
  std::optional<std::string> full_text;
};

class McpTools {
 public:
  virtual ~McpTools() = default;
  // Tools of every MCP server of the session's agent that has an enabled
  // mcp_toolset. Cached per session; refreshed after list_changed.
  virtual McpListing ListTools(const Json& session, const CancelToken* cancel) = 0;
  // Calls one tool. Cancelled (is_error, "cancelled") when `cancel` fires.
  virtual McpCallOutcome CallTool(const Json& session, const std::string& server, const std::string& tool,
                                  const Json& input, const CancelToken* cancel) = 0;
  // Drops the session's connections and caches.
  virtual void ForgetSession(const std::string& session_id) = 0;
};

}  // namespace warren::domain
