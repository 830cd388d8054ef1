// warren-runner: serves a session's tool calls inside a sandbox.
//   warren-runner tool --workdir DIR       JSON lines in, results out (tests)
//   warren-runner run  ...                 serve one work item (`ant beta:worker run`)
//   warren-runner poll ...                 claim items in a loop (`ant beta:worker poll`)
// Flags and environment variables follow spec section 3.9; see docs/TOOLS.md.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "common/log.h"
#include "runner/tool_mode.h"
#include "runner/worker.h"

namespace {

using namespace warren;
using namespace warren::runner;

// "60s", "500ms", "2m", "1h", "90" (seconds), "0" -> milliseconds; -1 on error.
int64_t ParseDurationMs(const std::string& s) {
  if (s.empty()) return -1;
  int64_t total = 0;
  size_t i = 0;
  bool any = false;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
    if (j == i) return -1;
    double v = std::stod(s.substr(i, j - i));
    size_t k = j;
    while (k < s.size() && std::isalpha(static_cast<unsigned char>(s[k]))) ++k;
    std::string unit = s.substr(j, k - j);
    double mult = unit == "ms" ? 1 : unit == "s" || unit.empty() ? 1000 : unit == "m" ? 60000
                 : unit == "h" ? 3600000 : -1;
    if (mult < 0) return -1;
    total += static_cast<int64_t>(v * mult);
    any = true;
    i = k;
  }
  return any ? total : -1;
}

bool ReadSecretFile(const std::string& path, std::string* out, std::string* err) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    *err = "cannot stat work secret file " + path;
    return false;
  }
  if (st.st_mode & (S_IROTH | S_IWOTH)) {
    *err = "refusing work secret file " + path + ": it is world-readable or world-writable (chmod 600 it)";
    return false;
  }
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  size_t a = s.find_first_not_of(" \t\r\n");
  size_t b = s.find_last_not_of(" \t\r\n");
  *out = a == std::string::npos ? "" : s.substr(a, b - a + 1);
  return true;
}

// Blocks SIGTERM/SIGINT in every thread and hands them to `on_signal` on a
// dedicated thread.
void InstallShutdown(std::function<void()> on_signal) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set, on_signal]() {
    int sig = 0;
    while (sigwait(&set, &sig) == 0) {
      log::Info("signal received; shutting down", {{"signal", sig}});
      on_signal();
    }
  }).detach();
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  CLI::App app{"warren-runner: serves Managed Agents tool calls inside a sandbox"};
  app.require_subcommand(1);

  std::string workdir = ".";
  std::vector<std::string> allowed_roots, read_only_roots;
  std::string base_url = "https://api.anthropic.com";
  std::string env_id, env_key, session_id, work_id, secret_file, worker_id, on_work;
  std::string max_idle = "60s", log_format = "text", log_level = "info";
  bool unrestricted = false;

  auto add_common = [&](CLI::App* c) {
    c->add_option("--workdir", workdir, "working directory of the tools")->capture_default_str();
    c->add_option("--allowed-root", allowed_roots, "extra directory the file tools may reach");
    c->add_option("--read-only-root", read_only_roots, "directory write/edit refuse");
  };
  auto add_worker = [&](CLI::App* c) {
    c->add_option("--environment-id", env_id)->envname("ANTHROPIC_ENVIRONMENT_ID");
    c->add_option("--environment-key", env_key)->envname("ANTHROPIC_ENVIRONMENT_KEY");
    c->add_option("--base-url", base_url, "http(s)://host[:port], unix:/path.sock or http+unix://%2Fpath.sock")
        ->envname("ANTHROPIC_BASE_URL")->capture_default_str();
    c->add_option("--max-idle", max_idle, "stop this long after the turn ends (0 = never)")->capture_default_str();
    c->add_option("--log-format", log_format)->check(CLI::IsMember({"text", "json"}))->capture_default_str();
    c->add_option("--log-level", log_level)->check(CLI::IsMember({"debug", "info", "warn", "error"}));
    c->add_flag("--unrestricted-paths", unrestricted, "not supported (the file tools stay confined)");
  };

  CLI::App* tool = app.add_subcommand("tool", "read tool calls as JSON lines on stdin (one persistent context)");
  add_common(tool);
  CLI::App* run = app.add_subcommand("run", "serve one claimed work item (sandbox entrypoint)");
  add_common(run);
  add_worker(run);
  run->add_option("--session-id", session_id)->envname("ANTHROPIC_SESSION_ID");
  run->add_option("--work-id", work_id)->envname("ANTHROPIC_WORK_ID");
  run->add_option("--work-secret-file", secret_file)->envname("ANTHROPIC_WORK_SECRET_FILE");
  bool resume_lease = false;
  std::string call_journal;
  run->add_flag("--resume-lease", resume_lease,
                "take over the lease of a dead runner of the same delivery when its lease record in "
                "--call-journal proves it (supervisor relaunch); otherwise an ordinary first heartbeat");
  run->add_option("--call-journal", call_journal,
                  "directory recording started and finished calls, so a relaunched runner never runs one twice");
  bool sole_worker = false;
  run->add_flag("--sole-worker", sole_worker,
                "no other worker can hold a delivery of this item (Warren's embedded orchestrator on a cloud "
                "environment): a held lease this runner cannot prove its own is still its own");
  CLI::App* poll = app.add_subcommand("poll", "claim work items in a loop");
  add_common(poll);
  add_worker(poll);
  poll->add_option("--worker-id", worker_id)->envname("ANTHROPIC_WORKER_ID");
  poll->add_option("--on-work", on_work, "script run per claimed session item (empty or in-process: built in)");

  CLI11_PARSE(app, argc, argv);

  ToolsetOptions topts;
  topts.workdir = workdir;
  topts.allowed_roots = allowed_roots;
  topts.read_only_roots = read_only_roots;

  if (tool->parsed()) {
    Toolset tools(topts);
    return RunToolMode(&tools, stdin, stdout);
  }

  log::Format fmt;
  if (log::ParseFormat(log_format, &fmt)) log::SetFormat(fmt);
  log::Level lvl;
  if (log::ParseLevel(log_level, &lvl)) log::SetLevel(lvl);
  if (unrestricted) {
    log::Error("--unrestricted-paths is not supported: the file tools are confined to --workdir plus --allowed-root");
    return 2;
  }
  const int64_t idle_ms = ParseDurationMs(max_idle);
  if (idle_ms < 0) {
    log::Error("bad --max-idle", {{"value", max_idle}});
    return 2;
  }
  auto base = ParseBaseUrl(base_url);
  if (!base.ok()) {
    log::Error("bad --base-url", {{"error", base.status().message()}});
    return 2;
  }
  WorkerOptions wopts;
  wopts.environment_id = env_id;
  wopts.environment_key = env_key;
  wopts.worker_id = worker_id;
  wopts.tools = topts;
  wopts.max_idle_ms = idle_ms;
  wopts.on_work = on_work == "in-process" ? "" : on_work;
  wopts.resume_lease = resume_lease;
  wopts.sole_worker = sole_worker;
  wopts.call_journal_dir = call_journal;
  if (env_id.empty()) {
    log::Error("--environment-id (ANTHROPIC_ENVIRONMENT_ID) is required");
    return 2;
  }
  // The workdir is created when missing (the docs recommend /workspace).
  std::string partial;
  for (size_t i = 0; i <= workdir.size(); ++i) {
    if (i == workdir.size() || (workdir[i] == '/' && i > 0)) {
      partial = workdir.substr(0, i);
      mkdir(partial.c_str(), 0755);
    }
  }
  Worker worker(HttpClient(*base), wopts);
  InstallShutdown([&worker] { worker.Shutdown(); });

  if (run->parsed()) {
    if (session_id.empty() || work_id.empty()) {
      log::Error("--session-id and --work-id (ANTHROPIC_SESSION_ID, ANTHROPIC_WORK_ID) are required");
      return 2;
    }
    std::string secret;
    if (!secret_file.empty()) {
      std::string err;
      if (!ReadSecretFile(secret_file, &secret, &err)) {
        log::Error(err);
        return 2;
      }
    } else if (const char* s = getenv("ANTHROPIC_WORK_SECRET")) {
      secret = s;
    }
    if (env_key.empty() && SessionsTokenFromSecret(secret).empty()) {
      log::Error("--environment-key (ANTHROPIC_ENVIRONMENT_KEY) is required when there is no work secret");
      return 2;
    }
    // One runner per delivery in a sandbox: with a call journal (the
    // orchestrator's launches), the runner holds an exclusive flock on
    // <journal>/<work id>.lock for its whole life (released by the kernel
    // when it dies, even by SIGKILL). A second runner for the same item,
    // from a launch racing a restart of the orchestrator, leaves at once.
    if (!call_journal.empty()) {
      bool safe = !work_id.empty() && work_id.size() <= 200;
      for (char ch : work_id)
        safe = safe && (isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-');
      if (safe) {
        mkdir(call_journal.c_str(), 0700);
        const std::string lock_path = call_journal + "/" + work_id + ".lock";
        int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
          if (errno == EWOULDBLOCK) {
            log::Warn("another runner already serves this work item; leaving it to that one", {{"work_id", work_id}});
            return 0;
          }
        }
        // (fd stays open until exit: it holds the lock.)
      }
    }
    Status st = worker.HandleItem(work_id, session_id, secret);
    const LeaseEnd end = worker.last_lease_end();
    if (end == LeaseEnd::kLeaseLost || end == LeaseEnd::kAssumedLost) return kExitLeaseLost;
    if (!st.ok()) {
      log::Error("work item failed", {{"error", st.ToString()}});
      return 1;
    }
    return 0;
  }
  if (env_key.empty()) {
    log::Error("--environment-key (ANTHROPIC_ENVIRONMENT_KEY) is required");
    return 2;
  }
  Status st = worker.PollLoop();
  if (!st.ok()) {
    log::Error("poller stopped", {{"error", st.ToString()}});
    return 1;
  }
  return 0;
}
