// Networking: a cloud environment's `config.networking` -> the network
// policy of its session sandboxes (docs/ORCHESTRATOR.md "Networking").
//
//   {"type":"unrestricted"}  -> network `unrestricted_network` (default
//       "isolated": NAT to the internet; the host, private ranges and
//       cloud metadata stay blocked);
//   {"type":"limited", "allowed_hosts":[...], "allow_package_managers",
//    "allow_mcp_servers"} -> network "limited": only the allowed hosts,
//       through the runtime's egress proxy (sandbox/egress_proxy.h); the
//       package managers' hosts (PackageManagerHosts) when
//       allow_package_managers; the hosts of the session agent's MCP
//       servers when allow_mcp_servers.
//   no networking (a self_hosted environment the orchestrator serves) ->
//       nothing decided here ("": the orchestrator's own --network).
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace warren::orchestrator {

struct SandboxNetwork {
  std::string network;                   // "" = not decided by the environment
  std::vector<std::string> allow_hosts;  // "limited" only
};

// The hosts the common package managers need (apt for Debian and Ubuntu,
// pip, npm/yarn, cargo, RubyGems, Go modules, GitHub release downloads),
// as HostAllowlist entries.
const std::vector<std::string>& PackageManagerHosts();

// The host names of session.agent.mcp_servers[].url (http/https URLs;
// anything else skipped).
std::vector<std::string> McpServerHosts(const Json& session);

// `environment` is the environment object (or its config); `session` the
// retrieved session. FailedPrecondition for a shape that cannot be enforced
// (a bad host pattern, an unknown type): a permanent failure of the item.
Result<SandboxNetwork> NetworkForEnvironment(const Json& environment, const Json& session,
                                             const std::string& unrestricted_network = "isolated");

}  // namespace warren::orchestrator
