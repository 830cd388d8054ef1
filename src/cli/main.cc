// warren: the command-line entry point (serve, keys, and the subsystems'
// commands). Scriptable: machine-readable output on stdout, logs on stderr.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <thread>
#include <mutex>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "api/auth.h"
#include "api/errors.h"
#include "api/event_bus.h"
#include "api/service.h"
#include "cli/client.h"
#include "cli/config.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "engine/engine.h"
#include "mcp/gateway.h"
#include "webhooks_out/routes.h"
#include "webhooks_out/webhooks_out.h"
#include "webtools/web_tools.h"
#include "models/model_factory.h"
#include "http/http_server.h"
#include "queue/work_queue.h"
#include "store/sqlite_store.h"
#ifdef WARREN_HAVE_SANDBOX_CLI
#include "cli/sandbox_cli.h"
#endif
#ifdef WARREN_HAVE_SANDBOX_API
#include "sandbox_api/sandbox_api.h"
#endif
#ifdef WARREN_HAVE_CONSOLE
#include "console/console_routes.h"
#endif
#ifdef WARREN_HAVE_ORCHESTRATOR
#include "orchestrator/http_work_source.h"
#include "orchestrator/identity.h"
#include "orchestrator/local_work_source.h"
#include "orchestrator/orchestrator.h"
#include "orchestrator/networking.h"
#include "orchestrator/packages.h"
#include "orchestrator/prepare.h"
#include "orchestrator/runner_relay.h"
#include "orchestrator/webhooks.h"
#include "cli/orchestrator_webhook.h"
#include "cli/orchestrator_session_errors.h"
#include "orchestrator/sandbox_host.h"
#include "orchestrator/session_files.h"
#endif
#ifdef WARREN_HAVE_ORCHESTRATOR_PARTS
#include "cli/prepare_cli.h"
#endif

namespace warren::cli {
namespace {

// flock(LOCK_EX) that waits up to `grace` for the holder to go away. A
// predecessor killed a moment ago (SIGKILL, then an immediate restart) can
// leave helpers it had forked but not yet exec'd (sandbox exec and init
// helpers) holding its descriptors, this lock's included, for a few
// milliseconds more; a restart must not fail, or run without its
// orchestrator, because of them. A live server holds the lock for good and
// still gets the error.
bool FlockWithGrace(int fd, std::chrono::milliseconds grace = std::chrono::milliseconds(3000)) {
  const auto end = std::chrono::steady_clock::now() + grace;
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK || std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int Fail(const Status& s) {
  std::fprintf(stderr, "warren: %s\n", s.ToString().c_str());
  return 1;
}

#ifdef WARREN_HAVE_SANDBOX_API
// Lets the sandboxes' mapped ids traverse (not list) the data dir, after
// making every file in it private (0600; SQLite creates its -wal/-shm files
// with the database's mode).
Status OpenDataDirToSandboxes(const std::string& data_dir) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(data_dir, ec)) {
    if (e.is_symlink(ec) || !e.is_regular_file(ec)) continue;
    if (::chmod(e.path().c_str(), 0600) != 0) {
      return Status::IOError("chmod 0600 " + e.path().string() + ": " + std::strerror(errno));
    }
  }
  if (ec) return Status::IOError("list data dir " + data_dir + ": " + ec.message());
  if (::chmod(data_dir.c_str(), 0711) != 0) {
    return Status::IOError("chmod 0711 " + data_dir + ": " + std::strerror(errno));
  }
  return Status::Ok();
}
#endif

Result<std::unique_ptr<store::SqliteStore>> OpenStore(const std::string& data_dir, const std::string& sync) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return Status::IOError("create data dir " + data_dir + ": " + ec.message());
  ::chmod(data_dir.c_str(), 0700);
  // The composition root: the only place the real clock is chosen.
  return store::SqliteStore::Open({data_dir + "/warren.db", sync}, Clock::Real());
}

std::string AbsolutePath(const std::string& p) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(p, ec);
  return ec ? p : abs.lexically_normal().string();
}

// warren-runner for the sandboxes: the configured path, else beside this
// binary, else the build tree's src/runner/warren-runner.
std::string FindRunner(const std::string& configured) {
  if (!configured.empty()) return AbsolutePath(configured);
  if (const char* e = std::getenv("WARREN_RUNNER_BIN"); e && *e) return AbsolutePath(e);
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  for (auto cand : {self.parent_path() / "warren-runner", self.parent_path().parent_path() / "runner" / "warren-runner"}) {
    if (::access(cand.c_str(), X_OK) == 0) return cand.string();
  }
  return "";
}

#ifdef WARREN_HAVE_ORCHESTRATOR
// Prepared sandboxes (orchestrator/prepare.h): the runner of a bound one
// gets its live env credentials; the janitor sweeps expired ones.
void UsePreparer(orchestrator::Preparer* p, orchestrator::OrchestratorOptions* oo) {
  oo->prepared_runner_env = [p](const std::string& id) { return p->RunnerEnv(id); };
  oo->sweep_credentials = [p]() -> Result<std::vector<std::string>> {
    WARREN_ASSIGN_OR_RETURN(orchestrator::SweepReport rep, p->Sweep());
    if (!rep.files_removed.empty() || !rep.env_expired.empty())
      log::Info("orchestrator.credentials_swept", {{"report", rep.ToJson()}});
    return rep.env_expired;
  };
}

// A cloud environment's config.packages -> its snapshot (built once, cached
// by content; the build log goes to the service log). "" = none.
Result<std::string> EnvironmentSnapshot(store::Store* st, orchestrator::PackageSnapshots* snaps,
                                        const std::string& environment_id) {
  WARREN_ASSIGN_OR_RETURN(Json env, st->GetEnvironment(environment_id));
  return orchestrator::SnapshotForEnvironment(env, snaps, [environment_id](std::string_view line) {
    log::Info("orchestrator.packages_build", {{"environment_id", environment_id}, {"line", std::string(line)}});
  });
}

// A cloud environment's config.networking -> its session sandboxes' network
// (orchestrator/networking.h). `unrestricted` falls back to `none`, with a
// warning, where this host cannot build the isolated network; `limited`
// cannot fall back (it would either leak or break): a permanent failure.
Result<orchestrator::OrchestratorOptions::SandboxNetworkChoice> EnvironmentNetwork(
    store::Store* st, sandbox::SandboxRuntime* rt, const std::string& unrestricted, const std::string& environment_id,
    const Json& session) {
  WARREN_ASSIGN_OR_RETURN(Json env, st->GetEnvironment(environment_id));
  auto net = orchestrator::NetworkForEnvironment(env, session, unrestricted);
  if (!net.ok()) return net.status().WithContext("environment " + environment_id);
  if (net->network != "none" && !net->network.empty() && !rt->features().network_isolated) {
    if (net->network == "limited")
      return Status::FailedPrecondition("environment " + environment_id + " networking: limited needs the isolated "
                                        "network, unavailable here: " + rt->features().network_reason);
    log::Warn("orchestrator.network_unavailable",
              {{"environment_id", environment_id}, {"reason", rt->features().network_reason}, {"using", "none"}});
    net->network = "none";
  }
  return orchestrator::OrchestratorOptions::SandboxNetworkChoice{net->network, net->allow_hosts};
}
#endif

int Serve(ServeConfig cfg, const std::string& config_path) {
  log::Level level;
  log::Format format;
  if (!log::ParseLevel(cfg.log_level, &level)) return Fail(Status::InvalidArgument("bad log level " + cfg.log_level));
  if (!log::ParseFormat(cfg.log_format, &format)) return Fail(Status::InvalidArgument("bad log format " + cfg.log_format));
  log::SetLevel(level);
  log::SetFormat(format);

  // Block the signals we wait for before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto store_r = OpenStore(cfg.data_dir, cfg.sqlite_synchronous);
  if (!store_r.ok()) return Fail(store_r.status());
  auto store = std::move(store_r).value();
  // Outgoing webhooks: the outbox rule is installed before the first write,
  // so every event from now on has its deliveries in its own transaction.
  auto getenv_fn = [](const char* n) -> const char* { return std::getenv(n); };
  auto hooks_cfg = webhooks_out::WebhooksConfigFromJson(cfg.webhooks, getenv_fn);
  if (!hooks_cfg.ok()) return Fail(hooks_cfg.status());
  store->SetOutboxRule(webhooks_out::MakeOutboxRule(*hooks_cfg));
  store->SetObjectOutboxRule(webhooks_out::MakeObjectOutboxRule(*hooks_cfg));
  auto web_cfg = webtools::WebToolsConfigFromJson(cfg.web_tools, getenv_fn);
  if (!web_cfg.ok()) return Fail(web_cfg.status());
  auto outbound_http = NewCurlHttpClient();
  auto web_tools = webtools::WebTools::FromConfig(*web_cfg, outbound_http);
  if (!web_tools.ok()) return Fail(web_tools.status());

  // One server per data directory.
  UniqueFd lock(::open((cfg.data_dir + "/warren.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock || !FlockWithGrace(lock.get()))
    return Fail(Status::Unavailable("another warren serve is using " + cfg.data_dir));

  api::Authenticator auth(store.get());
  std::string first_key;
  if (const char* k = std::getenv("WARREN_API_KEY"); k && *k) {
    Status s = auth.RegisterApiKey(k);
    if (!s.ok()) return Fail(s);
  }
  auto n_keys = store->CountKeys(store::KeyKind::kApi);
  if (!n_keys.ok()) return Fail(n_keys.status());
  if (*n_keys == 0) {
    auto key = auth.IssueApiKey();
    if (!key.ok()) return Fail(key.status());
    first_key = *key;
  }

  auto model_cfg = models::ModelConfigFromJson(cfg.model);
  if (!model_cfg.ok()) return Fail(model_cfg.status().WithContext("model config"));
  auto provider = models::NewModelProvider(*model_cfg);
  if (!provider.ok()) return Fail(provider.status().WithContext("model provider"));

  // Session secrets and vault credentials are sealed under this key:
  // WARREN_SECRETS_KEY (64 hex digits) or DATA_DIR/secrets.key, created
  // (0600) on first start. Once a vault exists, a missing key is an error
  // (a fresh key could not open the stored credentials): docs/MCP.md.
  Result<SecretBox> secret_box = [&]() -> Result<SecretBox> {
    if (const char* k = std::getenv("WARREN_SECRETS_KEY"); k && *k) return SecretBox::FromHex(k);
    const std::string key_path = cfg.data_dir + "/secrets.key";
    if (::access(key_path.c_str(), F_OK) != 0) {
      auto vaults = store->CountVaults();
      if (!vaults.ok()) return vaults.status();
      if (*vaults > 0)
        return Status::FailedPrecondition(
            "the store holds " + std::to_string(*vaults) + " vault(s) but no secrets key was found: set WARREN_SECRETS_KEY "
            "or restore " + key_path + " (a new key could not open the stored credentials)");
    }
    return SecretBox::FromKeyFile(key_path);
  }();
  if (!secret_box.ok()) return Fail(secret_box.status().WithContext("secrets key"));

  api::EventBus bus;
  api::ApiOptions api_opts;
  api_opts.secret_box = &*secret_box;
  api_opts.sse_keepalive = std::chrono::milliseconds(cfg.sse_keepalive_ms);
  // MCP servers of agents (docs/MCP.md): the engine reaches them through
  // this gateway, with credentials from the sessions' vaults.
  std::shared_ptr<HttpClient> mcp_http = NewCurlHttpClient();
  mcp::McpGateway mcp_gateway(store.get(), mcp_http.get(), &*secret_box, Clock::Real());
  mcp_gateway.credentials().on_refresh_failed = [store = store.get()](const std::string& vault_id,
                                                                       const std::string& credential_id) {
    // vault_credential.refresh_failed (spec 3.8): a webhook delivery through
    // the outbox (each failure its own message); the log line names ids only.
    log::Warn("vault_credential.refresh_failed", {{"vault", vault_id}, {"credential", credential_id}});
    Status s = store->RecordObjectChange({"vault_credential.refresh_failed", credential_id, vault_id, NewId("chg_", 20),
                                          FormatRfc3339(Clock::Real()->NowMicros())});
    if (!s.ok()) log::Warn("webhooks.record_failed", {{"credential", credential_id}, {"error", s.ToString()}});
  };
  api_opts.validate_credential = [&mcp_gateway](const std::string& vault_id, const std::string& credential_id) {
    return mcp_gateway.Validate(vault_id, credential_id);
  };
  api::ApiService service(store.get(), &bus, &auth, Clock::Real(), api_opts);
#ifdef WARREN_HAVE_CONSOLE
  console::RegisterRoutes(&service.router());  // the web console at /console/ (docs/CONSOLE.md)
#endif
#ifdef WARREN_HAVE_SANDBOX_API
  // /v1/warren/ sandbox routes; the runtime opens on first use.
  sandbox_api::SandboxApiOptions sb_opts;
  sb_opts.enabled = cfg.sandbox_enabled.value_or(geteuid() == 0);
  // Default: DATA_DIR/sandbox, so that one data dir holds everything and two
  // services with different data dirs never share sandboxes. The sandboxes'
  // mapped ids must traverse DATA_DIR to reach their rootfs: DATA_DIR becomes
  // 0711 (traverse, no listing) and every file directly in it 0600.
  // `sandbox.data_dir` puts the runtime elsewhere (e.g. /var/lib/warren,
  // shared with `warren sandbox ...`).
  if (!cfg.sandbox_data_dir.empty()) {
    sb_opts.runtime.data_dir = cfg.sandbox_data_dir;
  } else {
    sb_opts.runtime.data_dir = (std::filesystem::path(cfg.data_dir) / "sandbox").string();
    if (Status s = OpenDataDirToSandboxes(cfg.data_dir); !s.ok()) return Fail(s);
  }
  if (sb_opts.runtime.data_dir[0] != '/') {
    std::error_code ec;
    auto abs = std::filesystem::absolute(sb_opts.runtime.data_dir, ec);
    if (!ec) sb_opts.runtime.data_dir = abs.string();
  }
  sb_opts.runtime.pool_file_bytes = static_cast<int64_t>(cfg.sandbox_pool_bytes);
  sb_opts.runtime.cgroup_prefix = cfg.sandbox_cgroup_prefix;
  // The service is long-lived: it runs the egress proxy of `limited`
  // sandboxes (docs/SANDBOX.md "limited").
  sb_opts.runtime.egress_proxy = true;
  if (auto hosts = ParseEgressHosts(cfg.sandbox_egress_hosts); hosts.ok()) sb_opts.runtime.egress.hosts_override = *hosts;
  sb_opts.max_upload_bytes = cfg.sandbox_max_upload_bytes;
  sb_opts.long_call_threads = cfg.sandbox_long_call_threads;
  sb_opts.long_call_queue = static_cast<size_t>(cfg.sandbox_long_call_queue);
  sandbox_api::SandboxApi sandbox_api(&service, sb_opts);
  sandbox_api.StartIdleTicker(std::chrono::seconds(cfg.sandbox_idle_check_seconds));
#endif

#ifdef WARREN_HAVE_ORCHESTRATOR
  // The built-in orchestrator (docs/ORCHESTRATOR.md): on by default wherever
  // the sandbox runtime opens; it serves the cloud environments and the
  // self_hosted ones the config names.
  sandbox::SandboxRuntime* orch_runtime = nullptr;
  std::string orch_off_reason;
  std::string runner_path = FindRunner(cfg.orchestrator_runner_path);
  UniqueFd orch_lock;
  orchestrator::OrchestratorIdentity orch_identity;  // one orchestrator per environment
  if (!cfg.orchestrator_enabled.value_or(true)) {
    orch_off_reason = "disabled (--no-orchestrator or orchestrator.enabled=false)";
  } else if (runner_path.empty()) {
    orch_off_reason = "warren-runner not found (set orchestrator.runner_path)";
  } else {
    auto rt = sandbox_api.runtime()->Get();
    if (!rt.ok()) {
      orch_off_reason = "sandbox runtime unavailable: " + rt.status().ToString();
    } else {
      // One orchestrator per runtime data dir: two would fight over the
      // same sandboxes (docs/ORCHESTRATOR.md, "several orchestrators").
      std::string lock_path = sb_opts.runtime.data_dir + "/orchestrator.lock";
      orch_lock.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
      if (!orch_lock || !FlockWithGrace(orch_lock.get())) {
        orch_off_reason = "another orchestrator holds " + lock_path;
      } else if (auto id = orchestrator::LoadIdentity(sb_opts.runtime.data_dir); !id.ok()) {
        orch_off_reason = "orchestrator id: " + id.status().ToString();
      } else {
        orch_identity = *id;
        orch_runtime = *rt;
      }
    }
  }
#endif

  queue::WorkQueueOptions queue_opts;
  queue_opts.default_ttl_seconds = cfg.work_lease_ttl_seconds;
  queue_opts.min_ttl_seconds = std::min(queue_opts.min_ttl_seconds, cfg.work_lease_ttl_seconds);
  queue_opts.orchestrator_ttl_ms = cfg.orchestrator_holder_ttl_ms;
#ifdef WARREN_HAVE_ORCHESTRATOR
  queue_opts.cloud_queues = orch_runtime != nullptr;
  service.set_cloud_tool_results(orch_runtime != nullptr);
#endif
  queue::WorkQueue work_queue(store.get(), &auth, Clock::Real(), queue_opts);  // spec 3.3; engine calls EnsureWork
  work_queue.RegisterRoutes(&service);
  service.add_observer(&work_queue);
  work_queue.Start();
  engine::EngineOptions engine_opts;
  engine_opts.threads = cfg.engine_threads;
  engine_opts.tool_threads = cfg.engine_tool_threads;
  engine_opts.tool_threads_per_key = cfg.engine_tool_threads_per_server;
  engine_opts.pin_model_calls = cfg.engine_pin_model_calls.value_or(false);
#ifdef WARREN_HAVE_ORCHESTRATOR
  engine_opts.cloud_workers = orch_runtime != nullptr;
#endif
  engine::Engine engine(store.get(), &bus, provider->get(), Clock::Real(), engine_opts);
  engine.set_mcp_tools(&mcp_gateway);
  engine.set_work_needed([&work_queue](const std::string& session_id) {
    Status st = work_queue.EnsureWork(session_id);
    if (!st.ok()) log::Warn("engine.enqueue_failed", {{"session", session_id}, {"error", st.ToString()}});
  });
  engine.set_server_tools(web_tools->get());
#ifdef WARREN_HAVE_ORCHESTRATOR
  // Outputs too large for the context go to a file in the session's sandbox
  // (docs/MCP.md "Large outputs"): the sandboxes of this orchestrator.
  std::unique_ptr<orchestrator::SandboxSessionFiles> session_files;
  if (orch_runtime != nullptr) {
    session_files = std::make_unique<orchestrator::SandboxSessionFiles>(orch_runtime);
    engine.set_session_files(session_files.get());
  }
#endif
  service.add_observer(&engine);
  webhooks_out::RegisterRoutes(&service, store.get(), &*hooks_cfg, Clock::Real());
  webhooks_out::WebhookDispatcher webhook_dispatcher(store.get(), outbound_http.get(), Clock::Real(), *hooks_cfg);

#ifdef WARREN_HAVE_ORCHESTRATOR
  // Package snapshots' registries and npm pin: a bad value stops the start
  // with the key named (never a build that fails later, per session).
  orchestrator::PackageRecipeOptions pkg_opts;
  pkg_opts.pip_index_url = cfg.orchestrator_packages_pip_index_url;
  pkg_opts.gem_source = cfg.orchestrator_packages_gem_source;
  pkg_opts.go_proxy = cfg.orchestrator_packages_go_proxy;
  pkg_opts.go_nosumdb = cfg.orchestrator_packages_go_nosumdb;
  pkg_opts.cargo_index = cfg.orchestrator_packages_cargo_index;
  pkg_opts.npm_version = cfg.orchestrator_packages_npm_version;
  pkg_opts.npm_integrity = cfg.orchestrator_packages_npm_integrity;
  if (Status ps = orchestrator::CheckPackageRecipeOptions(pkg_opts); !ps.ok()) {
    // Each message starts with the field's name: the key is named in full
    // ("orchestrator.packages_gem_source 'x': must start with http://...").
    return Fail(Status::InvalidArgument("orchestrator.packages_" + ps.message()));
  }
  // Wake-up by webhook (docs/ORCHESTRATOR.md): the route exists only with a
  // secret; the orchestrator is set once it runs (503 until then).
  std::unique_ptr<orchestrator::WebhookVerifier> webhook_verifier;
  std::atomic<orchestrator::Orchestrator*> webhook_target{nullptr};
  std::atomic<bool> webhook_closed{false};
  if (orch_runtime != nullptr && !cfg.orchestrator_webhook_secret.empty()) {
    auto key = orchestrator::WebhookKey::Parse(cfg.orchestrator_webhook_secret);
    if (!key.ok()) return Fail(key.status().WithContext("orchestrator.webhook_secret"));
    webhook_verifier = std::make_unique<orchestrator::WebhookVerifier>(
        std::vector<orchestrator::WebhookKey>{*key}, Clock::Real());
    service.router().Add("POST", kOrchestratorWebhookPath, [&](http::HttpRequest& req, const api::Params&) {
      orchestrator::Orchestrator* o = webhook_target.load();
      std::atomic<bool> not_ready{o == nullptr};
      return HandleOrchestratorWebhook(
          req, webhook_verifier.get(), [o] { if (o != nullptr) o->Wake(); },
          o == nullptr ? &not_ready : &webhook_closed);
    });
  }
#endif

  http::ServerOptions opts;
  opts.listen = cfg.listen;
  opts.max_body_bytes = cfg.max_body_bytes;
  opts.max_connections = cfg.max_connections;
  opts.worker_threads = cfg.worker_threads;
  opts.max_queued_requests = static_cast<size_t>(cfg.max_queued_requests);
  http::HttpServer server(opts, [&service](http::HttpRequest& req) { return service.Handle(req); }, api::RenderError);
  server.set_body_router([&service](http::HttpRequest& head) { return service.RouteBody(head); });
  Status s = engine.Start();
  if (!s.ok()) return Fail(s.WithContext("engine"));
  s = server.Start();
  if (!s.ok()) return Fail(s);
  webhook_dispatcher.Start();

#ifdef WARREN_HAVE_ORCHESTRATOR
  // The runners in the sandboxes reach the service over a unix socket in
  // DATA_DIR/run, a directory mounted read-only into each sandbox (the
  // socket is re-created at every start; the directory mount follows it).
  std::unique_ptr<http::HttpServer> socket_server;
  std::unique_ptr<orchestrator::RuntimeSandboxHost> orch_host;
  std::unique_ptr<orchestrator::LocalWorkSource> orch_source;
  std::unique_ptr<orchestrator::RuntimeSnapshotBackend> pkg_backend;  // one per process
  std::unique_ptr<orchestrator::PackageSnapshots> pkg_snapshots;
  std::unique_ptr<orchestrator::Orchestrator> orch;
  if (orch_runtime != nullptr) {
    std::string run_dir = AbsolutePath(cfg.data_dir) + "/run";
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    ::chmod(run_dir.c_str(), 0755);
    http::ServerOptions sopts = opts;
    sopts.listen = "unix:" + run_dir + "/api.sock";
    socket_server = std::make_unique<http::HttpServer>(
        sopts, [&service](http::HttpRequest& req) { return service.Handle(req); }, api::RenderError);
    socket_server->set_body_router([&service](http::HttpRequest& head) { return service.RouteBody(head); });
    s = socket_server->Start();
    if (!s.ok()) return Fail(s.WithContext("runner socket"));
    ::chmod((run_dir + "/api.sock").c_str(), 0666);

    orchestrator::LocalWorkSourceOptions src_opts;
    for (size_t pos = 0; pos < cfg.orchestrator_self_hosted.size();) {
      size_t comma = cfg.orchestrator_self_hosted.find(',', pos);
      if (comma == std::string::npos) comma = cfg.orchestrator_self_hosted.size();
      std::string id = cfg.orchestrator_self_hosted.substr(pos, comma - pos);
      if (!id.empty()) src_opts.self_hosted.push_back(id);
      pos = comma + 1;
    }
    src_opts.fail_session = [st = store.get(), b = &bus, observers = std::vector<api::SessionObserver*>{&work_queue, &engine}](
                                const std::string& session_id, const std::string& message) {
      return ReportSessionFailure(st, b, observers, session_id, message);
    };
    src_opts.orchestrator_id = orch_identity.id;
    src_opts.orchestrator_host = orch_identity.host;
    src_opts.refused_retry = std::chrono::milliseconds(cfg.orchestrator_holder_ttl_ms);
    orch_source = std::make_unique<orchestrator::LocalWorkSource>(&work_queue, store.get(), src_opts);
    orch_host = std::make_unique<orchestrator::RuntimeSandboxHost>(orch_runtime);
    orchestrator::OrchestratorOptions oo;
    oo.instance = "embedded";
    oo.max_concurrent_items = cfg.orchestrator_max_concurrent_items;
    oo.reclaim_older_than_ms = cfg.orchestrator_reclaim_older_than_ms;
    oo.default_snapshot = cfg.orchestrator_default_snapshot;
    oo.runner_host_path = runner_path;
    oo.runner_base_url = std::string("unix:") + orchestrator::kSocketDir + "/api.sock";
    oo.socket_host_dir = run_dir;
    oo.runner_max_idle = std::chrono::milliseconds(cfg.orchestrator_runner_idle_ms);
    oo.sandbox_idle_stop = std::chrono::milliseconds(cfg.orchestrator_sandbox_idle_stop_ms);
    oo.archived_retention = std::chrono::minutes(cfg.orchestrator_archived_retention_minutes);
    oo.janitor_interval = std::chrono::milliseconds(cfg.orchestrator_janitor_interval_ms);
    oo.janitor_concurrency = cfg.orchestrator_janitor_concurrency;
    oo.session_check_interval = std::chrono::milliseconds(cfg.orchestrator_session_check_interval_ms);
    oo.runner_max_relaunches = cfg.orchestrator_runner_max_relaunches;
    oo.relaunch_initial = std::chrono::milliseconds(cfg.orchestrator_relaunch_initial_ms);
    UsePreparer(sandbox_api.PreparerFor(orch_runtime), &oo);
    pkg_backend = std::make_unique<orchestrator::RuntimeSnapshotBackend>(orch_runtime);
    pkg_snapshots = std::make_unique<orchestrator::PackageSnapshots>(pkg_backend.get(), pkg_opts);
    oo.environment_snapshot = [st = store.get(), ps = pkg_snapshots.get()](const std::string& env_id) {
      return EnvironmentSnapshot(st, ps, env_id);
    };
    oo.environment_network = [st = store.get(), rt = orch_runtime, unrestricted = cfg.orchestrator_unrestricted_network](
                                 const std::string& env_id,
                                 const Json& session) -> Result<orchestrator::OrchestratorOptions::SandboxNetworkChoice> {
      return EnvironmentNetwork(st, rt, unrestricted, env_id, session);
    };
    oo.poll_continuously = webhook_verifier == nullptr;
    oo.fallback_drain = std::chrono::milliseconds(cfg.orchestrator_fallback_drain_ms);
    orch = std::make_unique<orchestrator::Orchestrator>(orch_source.get(), orch_host.get(), Clock::Real(), oo);
    s = orch->Start();
    if (!s.ok()) return Fail(s.WithContext("orchestrator"));
    webhook_target = orch.get();
    log::Info("serve.orchestrator", {{"enabled", true}, {"runner", runner_path}, {"socket", sopts.listen},
                                     {"sandbox_data_dir", sb_opts.runtime.data_dir},
                                     {"self_hosted", cfg.orchestrator_self_hosted},
                                     {"orchestrator_id", orch_identity.id},
                                     {"wake_up", webhook_verifier ? "webhook" : "poll"}});
  } else {
    log::Info("serve.orchestrator", {{"enabled", false}, {"reason", orch_off_reason}});
  }
#else
  log::Info("serve.orchestrator", {{"enabled", false}, {"reason", "built without the sandbox runtime"}});
#endif

  std::printf("Warren listening on %s\n", server.url().c_str());
  if (!first_key.empty()) std::printf("API key: %s\n", first_key.c_str());
  std::fflush(stdout);
  log::Info("serve.started", {{"url", server.url()}, {"data_dir", cfg.data_dir}, {"config", config_path},
                              {"model_provider", (*provider)->name()},
                              {"model_max_concurrent_calls", model_cfg->max_concurrent_calls}});

  int sig = 0;
  sigwait(&sigs, &sig);
  log::Info("serve.stopping", {{"signal", sig}});
#ifdef WARREN_HAVE_ORCHESTRATOR
  webhook_closed = true;  // deliveries answered 503 (the sender retries)
  if (orch) orch->Stop();  // runners keep running; the next start re-adopts them
#endif
  bus.EndAll();
  server.Stop(std::chrono::seconds(10));
#ifdef WARREN_HAVE_ORCHESTRATOR
  if (socket_server) socket_server->Stop(std::chrono::seconds(2));
#endif
#ifdef WARREN_HAVE_SANDBOX_API
  sandbox_api.Stop();
#endif
  webhook_dispatcher.Stop();
  engine.Stop();
  log::Info("serve.stopped");
  return 0;
}

#ifdef WARREN_HAVE_ORCHESTRATOR
struct StandaloneArgs {
  std::string base_url, environment_id, environment_key, data_dir = "/var/lib/warren-orchestrator";
  std::string runner_path, runner_base_url, network = "none", default_snapshot = "builtin:minimal";
  std::vector<std::string> allow_cidrs, allow_hosts;
  int max_concurrent_items = 16, runner_idle_ms = 60000, sandbox_idle_stop_ms = 60000, janitor_interval_ms = 5000;
  int archived_retention_minutes = 43200, session_check_interval_ms = 30000, relay_max_connections = 128;
  int janitor_concurrency = 4;
  std::string cgroup_prefix = "warren-orch";
  std::string ca_file;
  std::string webhook_listen, webhook_secret;  // wake-up by webhook (secret also ANTHROPIC_WEBHOOK_SIGNING_KEY)
  int fallback_drain_ms = 30000;
  int runner_max_relaunches = 3, relaunch_initial_ms = 200;
};

// `warren orchestrator`: the standalone orchestrator. Speaks only the
// documented work protocol to --base-url (a remote Warren or Anthropic's
// hosted API) and keeps its own sandbox runtime in --data-dir.
int Standalone(StandaloneArgs a) {
  log::SetFormat(log::Format::kJson);
  if (a.environment_key.empty()) {
    if (const char* k = std::getenv("ANTHROPIC_ENVIRONMENT_KEY"); k && *k) a.environment_key = k;
  }
  if (a.base_url.empty() || a.environment_id.empty() || a.environment_key.empty())
    return Fail(Status::InvalidArgument("--base-url, --environment-id and an environment key "
                                        "(--environment-key or ANTHROPIC_ENVIRONMENT_KEY) are required"));
  if (a.relay_max_connections < 1 || a.relay_max_connections > 4096)
    return Fail(Status::InvalidArgument("--relay-max-connections must be 1..4096"));
  std::string runner = FindRunner(a.runner_path);
  if (runner.empty()) return Fail(Status::NotFound("warren-runner not found (--runner-path)"));
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  sandbox::RuntimeOptions ro;
  ro.data_dir = AbsolutePath(a.data_dir);
  ro.cgroup_prefix = a.cgroup_prefix;
  ro.egress_proxy = true;  // long-lived: serves `--network limited` (docs/SANDBOX.md "limited")
  std::error_code ec;
  std::filesystem::create_directories(ro.data_dir, ec);
  UniqueFd lock(::open((ro.data_dir + "/orchestrator.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock || !FlockWithGrace(lock.get()))
    return Fail(Status::Unavailable("another orchestrator is using " + ro.data_dir +
                                    " (one orchestrator per sandbox data dir; docs/ORCHESTRATOR.md)"));
  // Its stable id (DATA_DIR/orchestrator.id): one orchestrator serves an
  // environment at a time; a replacement on this data dir is the same one
  // (docs/ORCHESTRATOR.md, "Several orchestrators").
  auto identity = orchestrator::LoadIdentity(ro.data_dir);
  if (!identity.ok()) return Fail(identity.status().WithContext("orchestrator id"));
  auto rt = sandbox::SandboxRuntime::Open(ro);
  if (!rt.ok()) return Fail(rt.status().WithContext("sandbox runtime"));
  // The runners reach --base-url through the relay: a unix socket in
  // DATA_DIR/run, mounted read-only into each sandbox like the embedded
  // service socket (docs/ORCHESTRATOR.md, "standalone mode: the relay").
  // --runner-base-url skips it (the sandbox network must then reach that URL).
  std::unique_ptr<orchestrator::RunnerRelay> relay;
  std::string run_dir;
  std::string runner_base_url = a.runner_base_url;
  if (runner_base_url.empty()) {
    run_dir = ro.data_dir + "/run";
    std::filesystem::create_directories(run_dir, ec);
    ::chmod(run_dir.c_str(), 0755);
    orchestrator::RunnerRelayOptions rlo;
    rlo.socket_path = run_dir + "/api.sock";
    rlo.upstream_url = a.base_url;
    rlo.max_connections = a.relay_max_connections;
    rlo.ca_file = a.ca_file;
    relay = std::make_unique<orchestrator::RunnerRelay>(rlo);
    if (Status s = relay->Start(); !s.ok()) return Fail(s.WithContext("runner relay"));
    runner_base_url = relay->RunnerBaseUrl(std::string(orchestrator::kSocketDir) + "/api.sock");
  }
  if (!a.runner_base_url.empty() && a.network == "none" && a.runner_base_url.rfind("unix:", 0) != 0)
    log::Warn("orchestrator.runner_unreachable",
              {{"runner_base_url", a.runner_base_url},
               {"hint", "sandboxes on network none reach only unix sockets: use --network isolated (and --allow-cidr)"}});
  // The items it holds, so that a restart resumes them at once
  // (docs/ORCHESTRATOR.md, "Restart safety"); under orchestrator.lock.
  auto held = orchestrator::HeldItemStore::Open(ro.data_dir + "/held");
  if (!held.ok()) return Fail(held.status().WithContext("held items"));
  orchestrator::HttpWorkSourceOptions so;
  so.base_url = a.base_url;
  so.environment_id = a.environment_id;
  so.environment_key = a.environment_key;
  so.held = held->get();
  so.orchestrator_id = identity->id;
  so.orchestrator_host = identity->host;
  orchestrator::HttpWorkSource source(so);
  orchestrator::RuntimeSandboxHost host(rt->get());
  orchestrator::OrchestratorOptions oo;
  oo.instance = "standalone-" + a.environment_id;
  oo.max_concurrent_items = a.max_concurrent_items;
  oo.default_snapshot = a.default_snapshot;
  oo.runner_host_path = runner;
  oo.runner_base_url = runner_base_url;
  oo.socket_host_dir = run_dir;
  oo.network = a.network;
  oo.allow_cidrs = a.allow_cidrs;
  oo.allow_hosts = a.allow_hosts;
  oo.runner_max_idle = std::chrono::milliseconds(a.runner_idle_ms);
  oo.sandbox_idle_stop = std::chrono::milliseconds(a.sandbox_idle_stop_ms);
  oo.archived_retention = std::chrono::minutes(a.archived_retention_minutes);
  oo.janitor_interval = std::chrono::milliseconds(a.janitor_interval_ms);
  oo.janitor_concurrency = std::clamp(a.janitor_concurrency, 1, 256);
  oo.session_check_interval = std::chrono::milliseconds(a.session_check_interval_ms);
  oo.runner_max_relaunches = std::clamp(a.runner_max_relaunches, 0, 100);
  oo.relaunch_initial = std::chrono::milliseconds(std::clamp(a.relaunch_initial_ms, 1, 600000));
  orchestrator::Preparer preparer(rt->get());
  UsePreparer(&preparer, &oo);
  // Wake-up by webhook: a small listener (put TLS in front of it).
  if (a.webhook_secret.empty()) {
    if (const char* k = std::getenv("ANTHROPIC_WEBHOOK_SIGNING_KEY"); k && *k) a.webhook_secret = k;
  }
  if (a.webhook_listen.empty() != a.webhook_secret.empty())
    return Fail(Status::InvalidArgument("--webhook-listen and --webhook-secret (or ANTHROPIC_WEBHOOK_SIGNING_KEY) go together"));
  std::unique_ptr<orchestrator::WebhookVerifier> verifier;
  if (!a.webhook_secret.empty()) {
    auto key = orchestrator::WebhookKey::Parse(a.webhook_secret);
    if (!key.ok()) return Fail(key.status().WithContext("--webhook-secret"));
    verifier = std::make_unique<orchestrator::WebhookVerifier>(std::vector<orchestrator::WebhookKey>{*key}, Clock::Real());
    oo.poll_continuously = false;
    oo.fallback_drain = std::chrono::milliseconds(std::max(100, a.fallback_drain_ms));
  }
  // Another orchestrator serves the environment (409 at start, or it took
  // over after this one was frozen past the holder TTL): exit non-zero with
  // the service's message. Runners keep serving their leases.
  std::mutex refused_mu;
  Status refused;
  oo.on_environment_refused = [&](const Status& s) {
    {
      std::lock_guard<std::mutex> l(refused_mu);
      refused = s;
    }
    ::kill(::getpid(), SIGTERM);  // wakes the sigwait below (blocked in every thread)
  };
  orchestrator::Orchestrator orch(&source, &host, Clock::Real(), oo);
  std::atomic<bool> closing{false};
  std::unique_ptr<http::HttpServer> webhook_server;
  if (verifier) {
    http::ServerOptions wo;
    wo.listen = a.webhook_listen;
    wo.max_body_bytes = 1 << 20;
    wo.worker_threads = 2;
    webhook_server = std::make_unique<http::HttpServer>(
        wo,
        [&](http::HttpRequest& req) -> http::HandlerResult {
          if (req.path != kOrchestratorWebhookPath && req.path != "/")
            return api::ApiService::ErrorResult(Status::NotFound("POST deliveries to / or " +
                                                                 std::string(kOrchestratorWebhookPath)), req);
          if (req.method != "POST") return api::ApiService::ErrorResult(Status::InvalidArgument("POST only"), req);
          return HandleOrchestratorWebhook(req, verifier.get(), [&orch] { orch.Wake(); }, &closing);
        },
        api::RenderError);
  }
  Status s = orch.Start();
  if (!s.ok()) return Fail(s);
  if (webhook_server) {
    s = webhook_server->Start();
    if (!s.ok()) return Fail(s.WithContext("--webhook-listen"));
    std::printf("Webhook receiver on %s%s\n", webhook_server->url().c_str(), kOrchestratorWebhookPath);
  }
  log::Info("orchestrator.standalone", {{"base_url", a.base_url}, {"environment_id", a.environment_id},
                                        {"data_dir", ro.data_dir}, {"orchestrator_id", identity->id},
                                        {"host", identity->host}, {"runner", runner}, {"network", a.network},
                                        {"runner_base_url", runner_base_url}, {"relay", relay != nullptr},
                                        {"wake_up", webhook_server ? "webhook" : "poll"}});
  std::printf("Warren orchestrator serving %s at %s\n", a.environment_id.c_str(), a.base_url.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&sigs, &sig);
  closing = true;
  orch.Stop();  // runners keep running; the next start re-adopts them
  if (webhook_server) webhook_server->Stop(std::chrono::seconds(2));
  if (relay) relay->Stop();
  // Like `warren serve`: the loop pool is unmounted when no sandbox runs.
  if (Status u = (*rt)->UnmountPoolIfIdle(); !u.ok() && u.code() != Code::kFailedPrecondition)
    log::Warn("orchestrator.unmount_failed", {{"error", u.ToString()}});
  {
    std::lock_guard<std::mutex> l(refused_mu);
    if (!refused.ok()) return Fail(refused);
  }
  return 0;
}
#endif

}  // namespace
}  // namespace warren::cli

int main(int argc, char** argv) {
  using namespace warren;
  using namespace warren::cli;
  CLI::App app{"Warren: a self-hosted platform for long-running AI agents in sandboxes"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "warren 0.1.0");

  // serve
  ServeConfig cfg;
  std::string config_path, data_dir_flag, listen_flag;
  auto* serve = app.add_subcommand("serve", "Run the API service on its embedded defaults");
  serve->add_option("--config", config_path, "JSON config file (default: DATA_DIR/warren.json if present)");
  serve->add_option("--data-dir", data_dir_flag, "Data directory (SQLite, storage pool)");
  serve->add_option("--listen", listen_flag, "HOST:PORT or unix:PATH (default 127.0.0.1:8400)");
  bool no_orchestrator = false;
  serve->add_flag("--no-orchestrator", no_orchestrator, "Do not run the built-in orchestrator (cloud tool calls then fail)");

  // keys
  auto* keys = app.add_subcommand("keys", "Issue credentials");
  keys->require_subcommand(1);
  auto* create = keys->add_subcommand("create", "Create a key and print it on stdout");
  create->require_subcommand(1);
  std::string key_dir = "warren-data";
  bool keys_json = false;
  auto* create_api = create->add_subcommand("api", "An organization API key (x-api-key)");
  create_api->add_option("--data-dir", key_dir, "Data directory");
  create_api->add_flag("--json", keys_json, "print {\"type\",\"key\"} instead of the key alone");
  std::string env_id;
  auto* create_env = create->add_subcommand("environment", "An environment key (Bearer) for ENV_ID");
  create_env->add_option("ENV_ID", env_id, "Environment id")->required();
  create_env->add_option("--data-dir", key_dir, "Data directory");
  create_env->add_flag("--json", keys_json, "print {\"type\",\"key\",\"environment_id\"} instead of the key alone");

  // Client commands against a running service (docs/CLI.md).
  int client_exit = -1;
  RegisterClientCommands(app, &client_exit);

#ifdef WARREN_HAVE_SANDBOX_CLI
  // warren sandbox ... / warren snapshot ... (docs/SANDBOX.md)
  sandbox::RegisterSandboxCommands(app);
#endif
#if defined(WARREN_HAVE_SANDBOX_CLI) && defined(WARREN_HAVE_ORCHESTRATOR_PARTS)
  // warren sandbox prepare (docs/CLI.md, docs/ORCHESTRATOR.md)
  warren::cli::RegisterPrepareCommand(app);
#endif

#ifdef WARREN_HAVE_ORCHESTRATOR
  StandaloneArgs orch_args;
  auto* orch_cmd = app.add_subcommand("orchestrator", "Serve one environment's work queue with local sandboxes (docs/ORCHESTRATOR.md)");
  orch_cmd->add_option("--base-url", orch_args.base_url, "the service (https://api.anthropic.com or a Warren)")->required();
  orch_cmd->add_option("--environment-id", orch_args.environment_id, "environment to serve")->required();
  orch_cmd->add_option("--environment-key", orch_args.environment_key, "environment key (default: ANTHROPIC_ENVIRONMENT_KEY)");
  orch_cmd->add_option("--data-dir", orch_args.data_dir, "its own sandbox runtime data dir")->capture_default_str();
  orch_cmd->add_option("--cgroup-prefix", orch_args.cgroup_prefix, "cgroup directory of its runtime")->capture_default_str();
  orch_cmd->add_option("--runner-path", orch_args.runner_path, "host path of warren-runner");
  orch_cmd->add_option("--runner-base-url", orch_args.runner_base_url,
                       "the service as seen from inside a sandbox (default: the relay socket, forwarding to --base-url)");
  orch_cmd->add_option("--relay-max-connections", orch_args.relay_max_connections,
                       "runner connections the relay forwards at once")->capture_default_str();
  orch_cmd->add_option("--ca-file", orch_args.ca_file, "PEM CA certificates the relay trusts for an https --base-url (default: the host's store)");
  orch_cmd->add_option("--network", orch_args.network, "sandbox network: none, isolated or limited (--allow-host)")->capture_default_str();
  orch_cmd->add_option("--allow-cidr", orch_args.allow_cidrs, "let this IPv4 CIDR through the isolated network's blocks (repeatable)");
  orch_cmd->add_option("--allow-host", orch_args.allow_hosts,
                       "--network limited: a host the sandboxes may reach (name, *.suffix or IPv4; repeatable)");
  orch_cmd->add_option("--default-snapshot", orch_args.default_snapshot)->capture_default_str();
  orch_cmd->add_option("--max-concurrent-items", orch_args.max_concurrent_items)->capture_default_str();
  orch_cmd->add_option("--runner-idle-ms", orch_args.runner_idle_ms)->capture_default_str();
  orch_cmd->add_option("--sandbox-idle-stop-ms", orch_args.sandbox_idle_stop_ms)->capture_default_str();
  orch_cmd->add_option("--janitor-interval-ms", orch_args.janitor_interval_ms)->capture_default_str();
  orch_cmd->add_option("--janitor-concurrency", orch_args.janitor_concurrency,
                       "lifecycle actions (stop, archive, delete) run at once, one per sandbox (1..256)")
      ->capture_default_str();
  orch_cmd->add_option("--session-check-interval-ms", orch_args.session_check_interval_ms)->capture_default_str();
  orch_cmd->add_option("--archived-retention-minutes", orch_args.archived_retention_minutes)->capture_default_str();
  orch_cmd->add_option("--runner-max-relaunches", orch_args.runner_max_relaunches,
                       "relaunches of a crashed runner per item, then the item is stopped")->capture_default_str();
  orch_cmd->add_option("--relaunch-initial-ms", orch_args.relaunch_initial_ms,
                       "backoff before the first relaunch (doubling)")->capture_default_str();
  orch_cmd->add_option("--webhook-listen", orch_args.webhook_listen,
                       "HOST:PORT of a webhook receiver (wake-up on session.status_run_started)");
  orch_cmd->add_option("--webhook-secret", orch_args.webhook_secret,
                       "whsec_... signing key (default: ANTHROPIC_WEBHOOK_SIGNING_KEY)");
  orch_cmd->add_option("--fallback-drain-ms", orch_args.fallback_drain_ms,
                       "webhook mode: drain this often anyway (lost deliveries)")->capture_default_str();
#endif

  CLI11_PARSE(app, argc, argv);
#ifdef WARREN_HAVE_ORCHESTRATOR
  if (orch_cmd->parsed()) return Standalone(orch_args);
#endif
  if (client_exit >= 0) return client_exit;

  if (serve->parsed()) {
    Status s;
    if (const char* d = std::getenv("WARREN_DATA_DIR"); d && *d) cfg.data_dir = d;
    if (!data_dir_flag.empty()) cfg.data_dir = data_dir_flag;
    std::string path = config_path.empty() ? cfg.data_dir + "/warren.json" : config_path;
    if (!config_path.empty() || std::filesystem::exists(path)) {
      s = LoadConfigFile(path, &cfg);
      if (!s.ok()) return Fail(s);
    } else {
      path.clear();
    }
    s = ApplyEnvironment(&cfg, [](const char* n) { return std::getenv(n); });
    if (!s.ok()) return Fail(s);
    if (!data_dir_flag.empty()) cfg.data_dir = data_dir_flag;
    if (!listen_flag.empty()) cfg.listen = listen_flag;
    if (no_orchestrator) cfg.orchestrator_enabled = false;
    return Serve(cfg, path);
  }
  if (create_api->parsed() || create_env->parsed()) {
    log::SetLevel(log::Level::kWarn);
    auto store = OpenStore(key_dir, "FULL");
    if (!store.ok()) return Fail(store.status());
    api::Authenticator auth(store->get());
    Result<std::string> key = Status::Internal("unreachable");
    if (create_api->parsed()) {
      key = auth.IssueApiKey();
    } else {
      auto env = (*store)->GetEnvironment(env_id);
      if (!env.ok()) return Fail(env.status());
      key = auth.IssueEnvironmentKey(env_id);
    }
    if (!key.ok()) return Fail(key.status());
    if (keys_json) {
      Json j = {{"type", create_api->parsed() ? "api_key" : "environment_key"}, {"key", *key}};
      if (create_env->parsed()) j["environment_id"] = env_id;
      std::printf("%s\n", DumpJson(j).c_str());
      return 0;
    }
    std::printf("%s\n", key->c_str());
    return 0;
  }
  return 0;
}
