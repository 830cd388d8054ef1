#include "cli/config.h"

#include <cctype>

#include <fstream>
#include <sstream>

namespace warren::cli {
namespace {

struct Key {
  const char* name;
  const char* env;
  enum Kind { kString, kSize, kInt, kModelField, kBool } kind;
  void* slot;
};

std::vector<Key> Keys(ServeConfig* c) {
  return {
      {"data_dir", "WARREN_DATA_DIR", Key::kString, &c->data_dir},
      {"listen", "WARREN_LISTEN", Key::kString, &c->listen},
      {"log_level", "WARREN_LOG_LEVEL", Key::kString, &c->log_level},
      {"log_format", "WARREN_LOG_FORMAT", Key::kString, &c->log_format},
      {"sqlite_synchronous", "WARREN_SQLITE_SYNCHRONOUS", Key::kString, &c->sqlite_synchronous},
      {"max_body_bytes", "WARREN_MAX_BODY_BYTES", Key::kSize, &c->max_body_bytes},
      {"max_connections", "WARREN_MAX_CONNECTIONS", Key::kSize, &c->max_connections},
      {"worker_threads", "WARREN_WORKER_THREADS", Key::kInt, &c->worker_threads},
      {"max_queued_requests", "WARREN_MAX_QUEUED_REQUESTS", Key::kInt, &c->max_queued_requests},
      {"sse_keepalive_ms", "WARREN_SSE_KEEPALIVE_MS", Key::kInt, &c->sse_keepalive_ms},
      {"engine_threads", "WARREN_ENGINE_THREADS", Key::kInt, &c->engine_threads},
      {"engine_tool_threads", "WARREN_ENGINE_TOOL_THREADS", Key::kInt, &c->engine_tool_threads},
      {"engine_tool_threads_per_server", "WARREN_ENGINE_TOOL_THREADS_PER_SERVER", Key::kInt,
       &c->engine_tool_threads_per_server},
      {"engine_pin_model_calls", "WARREN_ENGINE_PIN_MODEL_CALLS", Key::kBool, &c->engine_pin_model_calls},
      {"work_lease_ttl_seconds", "WARREN_WORK_LEASE_TTL_SECONDS", Key::kInt, &c->work_lease_ttl_seconds},
      {"sandbox.enabled", "WARREN_SANDBOX_ENABLED", Key::kBool, &c->sandbox_enabled},
      {"sandbox.data_dir", "WARREN_SANDBOX_DATA_DIR", Key::kString, &c->sandbox_data_dir},
      {"sandbox.pool_bytes", "WARREN_SANDBOX_POOL_BYTES", Key::kSize, &c->sandbox_pool_bytes},
      {"sandbox.cgroup_prefix", "WARREN_SANDBOX_CGROUP_PREFIX", Key::kString, &c->sandbox_cgroup_prefix},
      {"sandbox.max_upload_bytes", "WARREN_SANDBOX_MAX_UPLOAD_BYTES", Key::kSize, &c->sandbox_max_upload_bytes},
      {"sandbox.idle_check_seconds", "WARREN_SANDBOX_IDLE_CHECK_SECONDS", Key::kInt, &c->sandbox_idle_check_seconds},
      {"sandbox.egress_hosts", "WARREN_SANDBOX_EGRESS_HOSTS", Key::kString, &c->sandbox_egress_hosts},
      {"sandbox.long_call_threads", "WARREN_SANDBOX_LONG_CALL_THREADS", Key::kInt, &c->sandbox_long_call_threads},
      {"sandbox.long_call_queue", "WARREN_SANDBOX_LONG_CALL_QUEUE", Key::kInt, &c->sandbox_long_call_queue},
      {"orchestrator.enabled", "WARREN_ORCHESTRATOR_ENABLED", Key::kBool, &c->orchestrator_enabled},
      {"orchestrator.self_hosted_environments", "WARREN_ORCHESTRATOR_SELF_HOSTED_ENVIRONMENTS", Key::kString,
       &c->orchestrator_self_hosted},
      {"orchestrator.runner_path", "WARREN_ORCHESTRATOR_RUNNER_PATH", Key::kString, &c->orchestrator_runner_path},
      {"orchestrator.default_snapshot", "WARREN_ORCHESTRATOR_DEFAULT_SNAPSHOT", Key::kString,
       &c->orchestrator_default_snapshot},
      {"orchestrator.max_concurrent_items", "WARREN_ORCHESTRATOR_MAX_CONCURRENT_ITEMS", Key::kInt,
       &c->orchestrator_max_concurrent_items},
      {"orchestrator.runner_idle_ms", "WARREN_ORCHESTRATOR_RUNNER_IDLE_MS", Key::kInt, &c->orchestrator_runner_idle_ms},
      {"orchestrator.sandbox_idle_stop_ms", "WARREN_ORCHESTRATOR_SANDBOX_IDLE_STOP_MS", Key::kInt,
       &c->orchestrator_sandbox_idle_stop_ms},
      {"orchestrator.archived_retention_minutes", "WARREN_ORCHESTRATOR_ARCHIVED_RETENTION_MINUTES", Key::kInt,
       &c->orchestrator_archived_retention_minutes},
      {"orchestrator.janitor_interval_ms", "WARREN_ORCHESTRATOR_JANITOR_INTERVAL_MS", Key::kInt,
       &c->orchestrator_janitor_interval_ms},
      {"orchestrator.janitor_concurrency", "WARREN_ORCHESTRATOR_JANITOR_CONCURRENCY", Key::kInt,
       &c->orchestrator_janitor_concurrency},
      {"orchestrator.session_check_interval_ms", "WARREN_ORCHESTRATOR_SESSION_CHECK_INTERVAL_MS", Key::kInt,
       &c->orchestrator_session_check_interval_ms},
      {"orchestrator.reclaim_older_than_ms", "WARREN_ORCHESTRATOR_RECLAIM_OLDER_THAN_MS", Key::kInt,
       &c->orchestrator_reclaim_older_than_ms},
      {"orchestrator.holder_ttl_ms", "WARREN_ORCHESTRATOR_HOLDER_TTL_MS", Key::kInt, &c->orchestrator_holder_ttl_ms},
      {"orchestrator.unrestricted_network", "WARREN_ORCHESTRATOR_UNRESTRICTED_NETWORK", Key::kString,
       &c->orchestrator_unrestricted_network},
      {"orchestrator.webhook_secret", "WARREN_ORCHESTRATOR_WEBHOOK_SECRET", Key::kString,
       &c->orchestrator_webhook_secret},
      {"orchestrator.fallback_drain_ms", "WARREN_ORCHESTRATOR_FALLBACK_DRAIN_MS", Key::kInt,
       &c->orchestrator_fallback_drain_ms},
      {"orchestrator.runner_max_relaunches", "WARREN_ORCHESTRATOR_RUNNER_MAX_RELAUNCHES", Key::kInt,
       &c->orchestrator_runner_max_relaunches},
      {"orchestrator.relaunch_initial_ms", "WARREN_ORCHESTRATOR_RELAUNCH_INITIAL_MS", Key::kInt,
       &c->orchestrator_relaunch_initial_ms},
      {"orchestrator.packages_pip_index_url", "WARREN_ORCHESTRATOR_PACKAGES_PIP_INDEX_URL", Key::kString,
       &c->orchestrator_packages_pip_index_url},
      {"orchestrator.packages_gem_source", "WARREN_ORCHESTRATOR_PACKAGES_GEM_SOURCE", Key::kString,
       &c->orchestrator_packages_gem_source},
      {"orchestrator.packages_go_proxy", "WARREN_ORCHESTRATOR_PACKAGES_GO_PROXY", Key::kString,
       &c->orchestrator_packages_go_proxy},
      {"orchestrator.packages_go_nosumdb", "WARREN_ORCHESTRATOR_PACKAGES_GO_NOSUMDB", Key::kString,
       &c->orchestrator_packages_go_nosumdb},
      {"orchestrator.packages_cargo_index", "WARREN_ORCHESTRATOR_PACKAGES_CARGO_INDEX", Key::kString,
       &c->orchestrator_packages_cargo_index},
      {"orchestrator.packages_npm_version", "WARREN_ORCHESTRATOR_PACKAGES_NPM_VERSION", Key::kString,
       &c->orchestrator_packages_npm_version},
      {"orchestrator.packages_npm_integrity", "WARREN_ORCHESTRATOR_PACKAGES_NPM_INTEGRITY", Key::kString,
       &c->orchestrator_packages_npm_integrity},
      // Environment shortcuts into the "model" object.
      {"provider", "WARREN_MODEL_PROVIDER", Key::kModelField, &c->model},
      {"script", "WARREN_MODEL_SCRIPT", Key::kModelField, &c->model},
      {"model", "WARREN_MODEL", Key::kModelField, &c->model},
      {"base_url", "WARREN_MODEL_BASE_URL", Key::kModelField, &c->model},
      {"max_concurrent_calls", "WARREN_MODEL_MAX_CONCURRENT", Key::kModelField, &c->model},
  };
}

Status SetFromString(const Key& k, const std::string& v) {
  switch (k.kind) {
    case Key::kString: *static_cast<std::string*>(k.slot) = v; return Status::Ok();
    case Key::kModelField: (*static_cast<Json*>(k.slot))[k.name] = v; return Status::Ok();
    case Key::kBool: {
      auto* b = static_cast<std::optional<bool>*>(k.slot);
      if (v == "true" || v == "1") *b = true;
      else if (v == "false" || v == "0") *b = false;
      else return Status::InvalidArgument(std::string(k.name) + ": expected true or false, got '" + v + "'");
      return Status::Ok();
    }
    case Key::kSize:
    case Key::kInt: {
      try {
        size_t pos = 0;
        long long n = std::stoll(v, &pos);
        if (pos != v.size() || n < 0) throw std::invalid_argument("x");
        if (k.kind == Key::kSize) *static_cast<size_t*>(k.slot) = static_cast<size_t>(n);
        else *static_cast<int*>(k.slot) = static_cast<int>(n);
      } catch (...) {
        return Status::InvalidArgument(std::string(k.name) + ": expected a non-negative integer, got '" + v + "'");
      }
      return Status::Ok();
    }
  }
  return Status::Ok();
}

Status Check(const ServeConfig& c) {
  if (c.sqlite_synchronous != "FULL" && c.sqlite_synchronous != "NORMAL")
    return Status::InvalidArgument("sqlite_synchronous must be FULL or NORMAL");
  if (c.worker_threads < 1 || c.worker_threads > 256) return Status::InvalidArgument("worker_threads must be 1..256");
  if (c.max_queued_requests < 1 || c.max_queued_requests > 1000000)
    return Status::InvalidArgument("max_queued_requests must be 1..1000000");
  if (c.sse_keepalive_ms < 100) return Status::InvalidArgument("sse_keepalive_ms must be at least 100");
  if (c.max_body_bytes < 1024) return Status::InvalidArgument("max_body_bytes must be at least 1024");
  if (c.engine_threads < 1 || c.engine_threads > 1024) return Status::InvalidArgument("engine_threads must be 1..1024");
  if (c.engine_tool_threads < 1 || c.engine_tool_threads > 1024)
    return Status::InvalidArgument("engine_tool_threads must be 1..1024");
  if (c.engine_tool_threads_per_server < 1 || c.engine_tool_threads_per_server > 1024)
    return Status::InvalidArgument("engine_tool_threads_per_server must be 1..1024");
  if (c.work_lease_ttl_seconds < 1 || c.work_lease_ttl_seconds > 600)
    return Status::InvalidArgument("work_lease_ttl_seconds must be 1..600");
  if (c.sandbox_pool_bytes < (256ULL << 20)) return Status::InvalidArgument("sandbox.pool_bytes must be at least 268435456");
  if (c.sandbox_idle_check_seconds < 1) return Status::InvalidArgument("sandbox.idle_check_seconds must be at least 1");
  if (c.sandbox_long_call_threads < 1 || c.sandbox_long_call_threads > 1024)
    return Status::InvalidArgument("sandbox.long_call_threads must be 1..1024");
  if (c.sandbox_long_call_queue < 0 || c.sandbox_long_call_queue > (1 << 20))
    return Status::InvalidArgument("sandbox.long_call_queue must be 0..1048576");
  if (c.sandbox_max_upload_bytes < 1024) return Status::InvalidArgument("sandbox.max_upload_bytes must be at least 1024");
  if (c.sandbox_cgroup_prefix.empty() || c.sandbox_cgroup_prefix.find('/') != std::string::npos ||
      c.sandbox_cgroup_prefix.find("..") != std::string::npos)
    return Status::InvalidArgument("sandbox.cgroup_prefix must be a single path component");
  if (c.orchestrator_max_concurrent_items < 1 || c.orchestrator_max_concurrent_items > 1024)
    return Status::InvalidArgument("orchestrator.max_concurrent_items must be 1..1024");
  if (c.orchestrator_janitor_interval_ms < 10) return Status::InvalidArgument("orchestrator.janitor_interval_ms must be at least 10");
  if (c.orchestrator_janitor_concurrency < 1 || c.orchestrator_janitor_concurrency > 256)
    return Status::InvalidArgument("orchestrator.janitor_concurrency must be 1..256");
  if (c.orchestrator_fallback_drain_ms < 100)
    return Status::InvalidArgument("orchestrator.fallback_drain_ms must be at least 100");
  if (c.orchestrator_runner_max_relaunches < 0 || c.orchestrator_runner_max_relaunches > 100)
    return Status::InvalidArgument("orchestrator.runner_max_relaunches must be 0..100");
  if (c.orchestrator_relaunch_initial_ms < 1 || c.orchestrator_relaunch_initial_ms > 600000)
    return Status::InvalidArgument("orchestrator.relaunch_initial_ms must be 1..600000");
  if (c.orchestrator_holder_ttl_ms < 1000 || c.orchestrator_holder_ttl_ms > 3600000)
    return Status::InvalidArgument("orchestrator.holder_ttl_ms must be 1000..3600000");
  if (c.orchestrator_reclaim_older_than_ms < 1)
    return Status::InvalidArgument("orchestrator.reclaim_older_than_ms must be at least 1");
  if (c.orchestrator_unrestricted_network != "isolated" && c.orchestrator_unrestricted_network != "none")
    return Status::InvalidArgument("orchestrator.unrestricted_network must be 'isolated' or 'none'");
  if (!ParseEgressHosts(c.sandbox_egress_hosts).ok())
    return ParseEgressHosts(c.sandbox_egress_hosts).status().WithContext("sandbox.egress_hosts");
  return Status::Ok();
}

}  // namespace

Result<std::map<std::string, std::string>> ParseEgressHosts(const std::string& spec) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t comma = spec.find(',', pos);
    if (comma == std::string::npos) comma = spec.size();
    std::string item = spec.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      return Status::InvalidArgument("'" + item + "' is not name=IPv4");
    std::string name = item.substr(0, eq), ip = item.substr(eq + 1);
    int dots = 0;
    bool digits_and_dots = !ip.empty();
    for (char ch : ip) {
      if (ch == '.') ++dots;
      else if (ch < '0' || ch > '9') digits_and_dots = false;
    }
    if (!digits_and_dots || dots != 3) return Status::InvalidArgument("'" + ip + "' is not an IPv4 address");
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out[name] = ip;
  }
  return out;
}

Status ApplyConfigJson(const Json& file, ServeConfig* cfg) {
  if (!file.is_object()) return Status::InvalidArgument("config file must hold a JSON object");
  auto keys = Keys(cfg);
  // "sandbox": {"enabled": true} is the same as "sandbox.enabled": true.
  std::vector<std::pair<std::string, const Json*>> items;
  for (auto it = file.begin(); it != file.end(); ++it) {
    if (it.key() == "sandbox" || it.key() == "orchestrator") {
      if (!it.value().is_object()) return Status::InvalidArgument(it.key() + ": expected an object");
      for (auto s = it.value().begin(); s != it.value().end(); ++s)
        items.emplace_back(it.key() + "." + s.key(), &s.value());
    } else {
      items.emplace_back(it.key(), &it.value());
    }
  }
  for (const auto& [name, value] : items) {
    if (name == "model") {
      if (!value->is_object()) return Status::InvalidArgument("model: expected an object (see docs/MODELS.md)");
      cfg->model = *value;
      continue;
    }
    if (name == "web_tools" || name == "webhooks") {
      // Checked key by key when `serve` starts (webtools/, webhooks_out/).
      if (!value->is_object())
        return Status::InvalidArgument(name + ": expected an object (see docs/" +
                                       (name == "webhooks" ? "WEBHOOKS" : "WEBTOOLS") + ".md)");
      (name == "webhooks" ? cfg->webhooks : cfg->web_tools) = *value;
      continue;
    }
    const Key* key = nullptr;
    for (const Key& k : keys)
      if (name == k.name && k.kind != Key::kModelField) key = &k;
    if (!key) return Status::InvalidArgument("unknown config key '" + name + "'");
    const Json& v = *value;
    if (key->kind == Key::kString) {
      if (!v.is_string()) return Status::InvalidArgument(name + ": expected a string");
      WARREN_RETURN_IF_ERROR(SetFromString(*key, v.get<std::string>()));
    } else if (key->kind == Key::kBool) {
      if (!v.is_boolean()) return Status::InvalidArgument(name + ": expected true or false");
      WARREN_RETURN_IF_ERROR(SetFromString(*key, v.get<bool>() ? "true" : "false"));
    } else {
      if (!v.is_number_integer()) return Status::InvalidArgument(name + ": expected an integer");
      WARREN_RETURN_IF_ERROR(SetFromString(*key, std::to_string(v.get<long long>())));
    }
  }
  return Check(*cfg);
}

Status ApplyEnvironment(ServeConfig* cfg, const std::function<const char*(const char*)>& getenv_fn) {
  for (const Key& k : Keys(cfg)) {
    const char* v = getenv_fn(k.env);
    if (v && *v) WARREN_RETURN_IF_ERROR(SetFromString(k, v).WithContext(k.env));
  }
  return Check(*cfg);
}

Status LoadConfigFile(const std::string& path, ServeConfig* cfg) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  if (!j.ok()) return j.status().WithContext(path);
  return ApplyConfigJson(*j, cfg).WithContext(path);
}

}  // namespace warren::cli
