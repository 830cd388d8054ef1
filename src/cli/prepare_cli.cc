#include "cli/prepare_cli.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "common/json.h"
#include "orchestrator/prepare.h"
#include "cli/sandbox_cli.h"
#include "sandbox/runtime.h"

namespace warren::cli {
namespace {

using orchestrator::CredentialSpec;
using orchestrator::DatasetSource;
using orchestrator::PrepareRequest;
using orchestrator::Preparer;
using orchestrator::RepoSource;

void Check(const Status& s) {
  if (!s.ok()) {
    std::cerr << "error: " << s.ToString() << "\n";
    throw CLI::RuntimeError(1);
  }
}

std::string ReadHostFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Check(Status::InvalidArgument(what + ": cannot read " + path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "30", "30s", "15m", "2h", "1d" -> seconds (0 on a bad value).
int64_t ParseDuration(const std::string& s) {
  if (s.empty()) return 0;
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0 || i > 9) return 0;
  int64_t v = std::stoll(s.substr(0, i));
  std::string unit = s.substr(i);
  if (unit.empty() || unit == "s") return v;
  if (unit == "m") return v * 60;
  if (unit == "h") return v * 3600;
  if (unit == "d") return v * 86400;
  return 0;
}

// NAME=HOSTFILE, or NAME alone (env only: the value of the CLI's own
// environment variable NAME).
CredentialSpec Credential(const std::string& arg, CredentialSpec::Kind kind, int64_t ttl) {
  CredentialSpec c;
  c.kind = kind;
  c.ttl_seconds = ttl;
  auto eq = arg.find('=');
  if (eq != std::string::npos) {
    c.name = arg.substr(0, eq);
    c.value = ReadHostFile(arg.substr(eq + 1), "credential " + c.name);
  } else if (kind == CredentialSpec::Kind::kEnv) {
    c.name = arg;
    const char* v = getenv(arg.c_str());
    if (v == nullptr) Check(Status::InvalidArgument("credential " + arg + ": no such variable in this environment"));
    c.value = v;
  } else {
    Check(Status::InvalidArgument("--credential-file takes NAME=HOSTFILE"));
  }
  return c;
}

}  // namespace

void RegisterPrepareCommand(CLI::App& app) {
  CLI::App* sb = app.get_subcommand("sandbox");
  struct Args {
    std::string data_dir = "/var/lib/warren";
    bool json = false;
    std::string env_id, name, snapshot = "builtin:minimal", network = "none", memory, disk;
    std::string repo, repo_path = "/workspace", branch, commit, token_env, token_file, token_user = "x-access-token";
    std::vector<std::string> datasets, cred_files, cred_envs, labels, volumes, env;
    std::string ttl = "1h";
    bool no_start = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = sb->add_subcommand(
      "prepare", "Create a sandbox prepared for a session (warren.mode=prepared): repository, datasets, credentials");
  c->add_option("--data-dir", a->data_dir, "Warren data directory")->capture_default_str();
  c->add_flag("--json", a->json, "Print JSON");
  c->add_option("--environment,--environment-id", a->env_id, "Environment the sandbox is prepared for (env_...)")->required();
  c->add_option("--name", a->name, "Sandbox name");
  c->add_option("--snapshot", a->snapshot, "Snapshot")->capture_default_str();
  c->add_option("--network", a->network, "none | isolated")->capture_default_str();
  c->add_option("--memory", a->memory, "Memory limit (e.g. 1G)");
  c->add_option("--disk", a->disk, "Disk limit (e.g. 10G; btrfs pools)");
  c->add_option("--label,-l", a->labels, "k=v (repeatable; warren.* is reserved)");
  c->add_option("--env,-e", a->env, "KEY=value for every process (repeatable; not for secrets: see --credential-env)");
  c->add_option("--volume,-v", a->volumes, "name:/path[:ro] (repeatable)");
  c->add_option("--repo", a->repo, "Git repository: https://..., or a local path");
  c->add_option("--repo-path", a->repo_path, "Where the clone goes in the sandbox")->capture_default_str();
  c->add_option("--branch", a->branch, "Branch or tag to clone");
  c->add_option("--commit", a->commit, "Commit to check out");
  c->add_option("--token-env", a->token_env, "Read the repository token from this environment variable");
  c->add_option("--token-file", a->token_file, "Read the repository token from this file");
  c->add_option("--token-user", a->token_user, "Basic auth user sent with the token")->capture_default_str();
  c->add_option("--dataset", a->datasets, "SRC:/dest (SRC a host directory or tarball; repeatable)");
  c->add_option("--credential-file", a->cred_files,
                "NAME=HOSTFILE: placed at /run/warren/credentials/NAME until it expires (repeatable)");
  c->add_option("--credential-env", a->cred_envs,
                "NAME[=HOSTFILE]: an environment variable for the runner until it expires; without a file, "
                "the value of NAME in this environment (repeatable)");
  c->add_option("--credential-ttl", a->ttl, "Lifetime of the credentials: 30s, 15m, 2h, 1d")->capture_default_str();
  c->add_flag("--no-start", a->no_start, "Leave the sandbox stopped");
  c->callback([a] {
    PrepareRequest req;
    req.environment_id = a->env_id;
    req.allow_host_paths = true;
    auto& o = req.sandbox;
    o.name = a->name;
    o.snapshot = a->snapshot;
    o.network = a->network;
    o.start = !a->no_start;
    o.env = a->env;
    if (!a->memory.empty() && !sandbox::ParseByteSize(a->memory, &o.resources.memory_bytes)) {
      Check(Status::InvalidArgument("bad --memory " + a->memory));
    }
    if (!a->disk.empty() && !sandbox::ParseByteSize(a->disk, &o.resources.disk_bytes)) {
      Check(Status::InvalidArgument("bad --disk " + a->disk));
    }
    for (const auto& l : a->labels) {
      auto eq = l.find('=');
      o.labels[l.substr(0, eq)] = eq == std::string::npos ? "" : l.substr(eq + 1);
    }
    for (const auto& v : a->volumes) {
      sandbox::VolumeMount m;
      auto c1 = v.find(':');
      if (c1 == std::string::npos) Check(Status::InvalidArgument("volume must be name:/path[:ro]"));
      m.volume = v.substr(0, c1);
      m.path = v.substr(c1 + 1);
      if (m.path.size() > 3 && m.path.substr(m.path.size() - 3) == ":ro") {
        m.read_only = true;
        m.path.resize(m.path.size() - 3);
      }
      o.volumes.push_back(m);
    }
    if (!a->repo.empty()) {
      RepoSource r;
      r.url = a->repo;
      r.path = a->repo_path;
      r.branch = a->branch;
      r.commit = a->commit;
      r.username = a->token_user;
      if (!a->token_env.empty()) {
        const char* t = getenv(a->token_env.c_str());
        if (t == nullptr) Check(Status::InvalidArgument("--token-env: " + a->token_env + " is not set"));
        r.token = t;
      } else if (!a->token_file.empty()) {
        r.token = ReadHostFile(a->token_file, "--token-file");
        while (!r.token.empty() && (r.token.back() == '\n' || r.token.back() == '\r')) r.token.pop_back();
      }
      req.repos.push_back(r);
    } else if (!a->token_env.empty() || !a->token_file.empty() || !a->branch.empty() || !a->commit.empty()) {
      Check(Status::InvalidArgument("--token-*, --branch and --commit need --repo"));
    }
    for (const auto& d : a->datasets) {
      auto colon = d.rfind(":/");
      if (colon == std::string::npos || colon == 0) Check(Status::InvalidArgument("--dataset takes SRC:/dest"));
      DatasetSource ds;
      std::string src = d.substr(0, colon);
      ds.path = d.substr(colon + 1);
      struct stat st;
      if (stat(src.c_str(), &st) != 0) Check(Status::InvalidArgument("--dataset: cannot stat " + src));
      (S_ISDIR(st.st_mode) ? ds.host_dir : ds.tarball) = src;
      req.datasets.push_back(ds);
    }
    int64_t ttl = ParseDuration(a->ttl);
    if (ttl <= 0) Check(Status::InvalidArgument("bad --credential-ttl " + a->ttl));
    for (const auto& f : a->cred_files) req.credentials.push_back(Credential(f, CredentialSpec::Kind::kFile, ttl));
    for (const auto& e : a->cred_envs) req.credentials.push_back(Credential(e, CredentialSpec::Kind::kEnv, ttl));

    sandbox::RuntimeOptions ro;
    ro.data_dir = a->data_dir;
    auto rt = sandbox::SandboxRuntime::Open(ro);
    Check(rt.status());
    Preparer prep(rt->get());
    auto res = prep.Prepare(req);
    Check(res.status());
    if (a->json) {
      Json j = res->ToJson();
      j["sandbox"] = res->sandbox.ToJson();
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << res->sandbox.id << "\n";
    }
  });
}

}  // namespace warren::cli
