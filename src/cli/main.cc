// warren: the command-line entry point (serve, keys, and the subsystems'
// commands). Scriptable: machine-readable output on stdout, logs on stderr.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
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
#include "common/log.h"
#include "common/unique_fd.h"
#include "engine/engine.h"
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
#ifdef WARREN_HAVE_ORCHESTRATOR_PARTS
#include "cli/prepare_cli.h"
#endif

namespace warren::cli {
namespace {

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

  // One server per data directory.
  UniqueFd lock(::open((cfg.data_dir + "/warren.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
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

  api::EventBus bus;
  api::ApiOptions api_opts;
  api_opts.sse_keepalive = std::chrono::milliseconds(cfg.sse_keepalive_ms);
  api::ApiService service(store.get(), &bus, &auth, Clock::Real(), api_opts);
  queue::WorkQueueOptions queue_opts;
  queue_opts.default_ttl_seconds = cfg.work_lease_ttl_seconds;
  queue_opts.min_ttl_seconds = std::min(queue_opts.min_ttl_seconds, cfg.work_lease_ttl_seconds);
  queue::WorkQueue work_queue(store.get(), &auth, Clock::Real(), queue_opts);  // spec 3.3; engine calls EnsureWork
  work_queue.RegisterRoutes(&service);
  service.add_observer(&work_queue);
  work_queue.Start();
  engine::EngineOptions engine_opts;
  engine_opts.threads = cfg.engine_threads;
  engine::Engine engine(store.get(), &bus, provider->get(), Clock::Real(), engine_opts);
  engine.set_work_needed([&work_queue](const std::string& session_id) {
    Status st = work_queue.EnsureWork(session_id);
    if (!st.ok()) log::Warn("engine.enqueue_failed", {{"session", session_id}, {"error", st.ToString()}});
  });
  service.add_observer(&engine);

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
  sb_opts.max_upload_bytes = cfg.sandbox_max_upload_bytes;
  sb_opts.long_call_threads = cfg.sandbox_long_call_threads;
  sb_opts.long_call_queue = static_cast<size_t>(cfg.sandbox_long_call_queue);
  sandbox_api::SandboxApi sandbox_api(&service, sb_opts);
  sandbox_api.StartIdleTicker(std::chrono::seconds(cfg.sandbox_idle_check_seconds));
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

  std::printf("Warren listening on %s\n", server.url().c_str());
  if (!first_key.empty()) std::printf("API key: %s\n", first_key.c_str());
  std::fflush(stdout);
  log::Info("serve.started", {{"url", server.url()}, {"data_dir", cfg.data_dir}, {"config", config_path},
                              {"model_provider", (*provider)->name()}});

  int sig = 0;
  sigwait(&sigs, &sig);
  log::Info("serve.stopping", {{"signal", sig}});
  bus.EndAll();
  server.Stop(std::chrono::seconds(10));
#ifdef WARREN_HAVE_SANDBOX_API
  sandbox_api.Stop();
#endif
  engine.Stop();
  log::Info("serve.stopped");
  return 0;
}

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

  // keys
  auto* keys = app.add_subcommand("keys", "Issue credentials");
  keys->require_subcommand(1);
  auto* create = keys->add_subcommand("create", "Create a key and print it on stdout");
  create->require_subcommand(1);
  std::string key_dir = "warren-data";
  auto* create_api = create->add_subcommand("api", "An organization API key (x-api-key)");
  create_api->add_option("--data-dir", key_dir, "Data directory");
  std::string env_id;
  auto* create_env = create->add_subcommand("environment", "An environment key (Bearer) for ENV_ID");
  create_env->add_option("ENV_ID", env_id, "Environment id")->required();
  create_env->add_option("--data-dir", key_dir, "Data directory");

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

  CLI11_PARSE(app, argc, argv);
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
    std::printf("%s\n", key->c_str());
    return 0;
  }
  return 0;
}
