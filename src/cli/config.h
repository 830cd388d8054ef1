// ServeConfig: `warren serve` settings from, in rising precedence, built-in
// defaults, a JSON config file (`--config FILE`, else DATA_DIR/warren.json
// when present), WARREN_* environment variables, and command-line flags.
// See docs/CONFIG.md for every key.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "common/json.h"
#include "common/status.h"

namespace warren::cli {

struct ServeConfig {
  std::string data_dir = "warren-data";
  std::string listen = "127.0.0.1:8400";
  std::string log_level = "info";
  std::string log_format = "text";
  std::string sqlite_synchronous = "FULL";
  size_t max_body_bytes = 8 * 1024 * 1024;
  size_t max_connections = 20000;
  int worker_threads = 4;
  int max_queued_requests = 1024;  // HTTP requests waiting for a worker; beyond: 503
  int sse_keepalive_ms = 15000;
  int engine_threads = 4;
  // Service-run tool calls (MCP, web_fetch, web_search) in flight at once:
  // they run on this pool, never on the engine threads (docs/MCP.md).
  int engine_tool_threads = 32;
  // Of those, at most this many for one MCP server (by URL) or web tool.
  int engine_tool_threads_per_server = 8;
  // The pre-async mode, a benchmark peer: each model call holds an engine
  // thread (docs/MODELS.md). Unset = off.
  std::optional<bool> engine_pin_model_calls;
  // Work-queue lease TTL reported to workers (spec 3.3: heartbeat every
  // ttl/2). Lower it for fault tests; desired_ttl_seconds may not go below
  // min(30, this).
  int work_lease_ttl_seconds = 90;
  // The sandbox REST API (/v1/warren/, docs/SANDBOX_API.md); keys
  // "sandbox.enabled" etc., or a "sandbox" object in the config file.
  std::optional<bool> sandbox_enabled;    // unset = enabled when running as root
  std::string sandbox_data_dir;           // "" = DATA_DIR/sandbox
  int sandbox_long_call_threads = 32;     // sandbox API executor (long calls at once)
  int sandbox_long_call_queue = 256;      // long calls waiting; past that 503
  size_t sandbox_pool_bytes = 32ULL << 30;  // sparse btrfs pool file size
  std::string sandbox_cgroup_prefix = "warren";
  size_t sandbox_max_upload_bytes = 1ULL << 30;
  int sandbox_idle_check_seconds = 60;  // EnforceIdlePolicies() period
  // The egress proxy of `limited` sandboxes (docs/SANDBOX.md): names it
  // resolves itself, "name=IPv4,name=IPv4" (tests: hosts in network
  // namespaces; split horizon). The addresses still pass the blocked-range
  // check.
  std::string sandbox_egress_hosts;
  // The built-in orchestrator (docs/ORCHESTRATOR.md); keys
  // "orchestrator.enabled" etc., or an "orchestrator" object in the file.
  std::optional<bool> orchestrator_enabled;  // unset = on when the sandbox runtime can open
  std::string orchestrator_self_hosted;      // comma-separated self_hosted environment ids it also serves
  std::string orchestrator_runner_path;      // "" = warren-runner beside the warren binary (or the build tree's)
  std::string orchestrator_default_snapshot = "builtin:minimal";
  int orchestrator_max_concurrent_items = 16;
  int orchestrator_runner_idle_ms = 60000;        // runner --max-idle after a turn ends
  int orchestrator_sandbox_idle_stop_ms = 60000;  // quiet sandbox of an idle session -> stopped
  int orchestrator_archived_retention_minutes = 43200;  // archived sandbox -> deleted (30 days)
  int orchestrator_janitor_interval_ms = 5000;
  int orchestrator_janitor_concurrency = 4;  // lifecycle actions (stop, archive, delete) at once, one per sandbox
  int orchestrator_session_check_interval_ms = 30000;
  int orchestrator_reclaim_older_than_ms = 2000;
  // One orchestrator per environment (docs/ORCHESTRATOR.md "Several
  // orchestrators"): the holder keeps an environment this long after its
  // last poll; then another orchestrator may take it over.
  int orchestrator_holder_ttl_ms = 30000;
  // The network of a cloud environment with `networking: unrestricted`:
  // "isolated" (NAT egress; host, private and metadata addresses blocked)
  // or "none" (offline sandboxes).
  std::string orchestrator_unrestricted_network = "isolated";
  // Wake-up by webhook: with a secret (whsec_...), POST
  // /v1/warren/orchestrator/webhook verifies deliveries and the poller drains
  // on session.status_run_started and every fallback_drain_ms.
  std::string orchestrator_webhook_secret;
  int orchestrator_fallback_drain_ms = 30000;
  int orchestrator_runner_max_relaunches = 3;  // relaunches of a crashed runner per item, then the item is stopped
  int orchestrator_relaunch_initial_ms = 200;  // backoff before the first relaunch (doubling)
  // Package snapshots (docs/ORCHESTRATOR.md "Packages"): pip's index (PEP
  // 503, "" = PyPI), gem's source ("" = rubygems.org), go's module proxy
  // ("" = proxy.golang.org) and its GONOSUMDB, cargo's git index ("" =
  // crates.io), and the npm release bootstrapped with its sha512 ("" = the
  // built-in pin). Checked at start (orchestrator/packages.h).
  std::string orchestrator_packages_pip_index_url;
  std::string orchestrator_packages_gem_source;
  std::string orchestrator_packages_go_proxy;
  std::string orchestrator_packages_go_nosumdb;
  std::string orchestrator_packages_cargo_index;
  std::string orchestrator_packages_npm_version;
  std::string orchestrator_packages_npm_integrity;
  // The model provider (models::ModelConfigFromJson keys); scripted offline
  // by default.
  Json model = Json{{"provider", "scripted"}};
  // Service-side web_fetch / web_search (docs/WEBTOOLS.md) and outgoing
  // webhooks (docs/WEBHOOKS.md): objects parsed by their modules at start.
  Json web_tools = Json::object();
  Json webhooks = Json::object();
};

// Applies the keys of `file` (a JSON object) onto `cfg`; unknown keys and
// wrong types are errors.
Status ApplyConfigJson(const Json& file, ServeConfig* cfg);
// "name=IPv4,name=IPv4" (sandbox.egress_hosts) -> lower-case name -> address.
Result<std::map<std::string, std::string>> ParseEgressHosts(const std::string& spec);
// Applies WARREN_LISTEN, WARREN_DATA_DIR, WARREN_LOG_LEVEL, ... from
// `getenv`.
Status ApplyEnvironment(ServeConfig* cfg, const std::function<const char*(const char*)>& getenv_fn);
// Reads and applies a config file.
Status LoadConfigFile(const std::string& path, ServeConfig* cfg);

}  // namespace warren::cli
