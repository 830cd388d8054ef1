#include "cli/sandbox_cli.h"

#include <unistd.h>

#include <iostream>
#include <memory>

#include "common/clock.h"
#include "common/json.h"
#include "sandbox/runtime.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

struct Common {
  std::string data_dir = "/var/lib/warren";
  bool json = false;
  std::string debian_mirror;  // snapshot build only
};

std::unique_ptr<SandboxRuntime> OpenOrDie(const Common& c) {
  RuntimeOptions o;
  o.data_dir = c.data_dir;
  o.debian_mirror = c.debian_mirror;
  auto rt = SandboxRuntime::Open(o);
  if (!rt.ok()) {
    std::cerr << "error: " << rt.status().ToString() << "\n";
    throw CLI::RuntimeError(1);
  }
  return std::move(*rt);
}

void Check(const Status& s) {
  if (!s.ok()) {
    std::cerr << "error: " << s.ToString() << "\n";
    throw CLI::RuntimeError(1);
  }
}

Json Summary(const SandboxRecord& r) {
  Json j = r.ToJson();
  j["created"] = FormatRfc3339(r.created_at);
  j["last_activity_at"] = FormatRfc3339(r.last_activity);
  return j;
}

void PrintRecord(const Common& c, const SandboxRecord& r) {
  if (c.json) {
    std::cout << Summary(r).dump(2) << "\n";
  } else {
    std::cout << r.id << "\t" << StateName(r.state) << "\t" << (r.name.empty() ? "-" : r.name) << "\t"
              << r.snapshot << "\n";
  }
}

void AddCommon(CLI::App* cmd, const std::shared_ptr<Common>& c) {
  cmd->add_option("--data-dir", c->data_dir, "Warren data directory")->capture_default_str();
  cmd->add_flag("--json", c->json, "Print JSON");
}

std::pair<std::string, std::string> SplitKv(const std::string& kv) {
  auto eq = kv.find('=');
  if (eq == std::string::npos) return {kv, ""};
  return {kv.substr(0, eq), kv.substr(eq + 1)};
}

void RegisterVolumeCommands(CLI::App& app, const std::shared_ptr<Common>& common);

}  // namespace

bool ParseByteSize(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) return false;
  int64_t v = std::stoll(s.substr(0, i));
  std::string unit = s.substr(i);
  for (auto& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (unit == "IB" || unit == "B") unit = "";
  if (!unit.empty() && unit.back() == 'B') unit.pop_back();
  if (!unit.empty() && unit.back() == 'I') unit.pop_back();
  int shift = 0;
  if (unit.empty()) shift = 0;
  else if (unit == "K") shift = 10;
  else if (unit == "M") shift = 20;
  else if (unit == "G") shift = 30;
  else if (unit == "T") shift = 40;
  else return false;
  *out = v << shift;
  return true;
}

void RegisterSandboxCommands(CLI::App& app) {
  auto common = std::make_shared<Common>();
  CLI::App* sb = app.add_subcommand("sandbox", "Manage sandboxes");
  sb->require_subcommand(1);
  CLI::App* snap = app.add_subcommand("snapshot", "Manage snapshots (images)");
  snap->require_subcommand(1);

  // sandbox create
  {
    struct Args {
      std::string name, snapshot = "builtin:minimal", memory, disk, user, workdir, network = "none";
      double cpus = 0;
      int64_t pids = 0;
      int64_t auto_stop = 0, auto_archive = 0, auto_delete = kNeverDelete;
      std::vector<std::string> env, labels, volumes, allow_cidrs, dns, allow_hosts;
      bool no_start = false, block_all = false;
    };
    auto a = std::make_shared<Args>();
    CLI::App* c = sb->add_subcommand("create", "Create (and start) a sandbox");
    AddCommon(c, common);
    c->add_option("--name", a->name, "Unique name");
    c->add_option("--snapshot", a->snapshot, "Snapshot to create from")->capture_default_str();
    c->add_option("--cpus", a->cpus, "CPU limit in cores");
    c->add_option("--memory", a->memory, "Memory limit (e.g. 512M, 2G)");
    c->add_option("--pids", a->pids, "Process limit");
    c->add_option("--disk", a->disk, "Disk limit (e.g. 1G; btrfs pools only)");
    c->add_option("--auto-stop", a->auto_stop, "Stop after this many idle minutes (0 = never)");
    c->add_option("--auto-archive", a->auto_archive, "Archive after this many minutes stopped (0 = never)");
    c->add_option("--auto-delete", a->auto_delete,
                  "Delete after this many minutes stopped (-1 = never, 0 = at the first sweep after it stops)");
    c->add_option("--env,-e", a->env, "KEY=value (repeatable)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_option("--label,-l", a->labels, "key=value (repeatable)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_option("--volume,-v", a->volumes, "name:/path[:ro] (repeatable)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_option("--user", a->user, "Default exec user");
    c->add_option("--workdir", a->workdir, "Default exec directory");
    c->add_flag("--no-start", a->no_start, "Create stopped");
    c->add_option("--network", a->network,
                  "Network policy: none (loopback only), isolated (NAT egress) or limited (only --allow-host, "
                  "through the egress proxy of a running `warren serve` on this data dir)")
        ->capture_default_str();
    c->add_option("--allow-host", a->allow_hosts, "limited: host name, *.suffix or IPv4 literal (repeatable)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_option("--allow-cidr", a->allow_cidrs,
                  "isolated: IPv4 CIDR reachable despite the default blocks (repeatable, max 10)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_flag("--block-all", a->block_all, "isolated: block all egress except --allow-cidr");
    c->add_option("--dns", a->dns, "isolated: nameserver for /etc/resolv.conf (repeatable, max 3)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->callback([a, common] {
      CreateOptions o;
      o.name = a->name;
      o.snapshot = a->snapshot;
      o.resources.cpus = a->cpus;
      o.resources.pids = a->pids;
      if (!a->memory.empty() && !ParseByteSize(a->memory, &o.resources.memory_bytes)) {
        Check(Status::InvalidArgument("bad --memory " + a->memory));
      }
      if (!a->disk.empty() && !ParseByteSize(a->disk, &o.resources.disk_bytes)) {
        Check(Status::InvalidArgument("bad --disk " + a->disk));
      }
      o.auto_stop_minutes = a->auto_stop;
      o.auto_archive_minutes = a->auto_archive;
      o.auto_delete_minutes = a->auto_delete;
      o.env = a->env;
      for (const auto& l : a->labels) o.labels.insert(SplitKv(l));
      for (const auto& v : a->volumes) {
        VolumeMount m;
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
      o.user = a->user;
      o.workdir = a->workdir;
      o.start = !a->no_start;
      o.network = a->network;
      o.allow_cidrs = a->allow_cidrs;
      o.allow_hosts = a->allow_hosts;
      o.block_all = a->block_all;
      o.dns = a->dns;
      auto rt = OpenOrDie(*common);
      auto r = rt->Create(o);
      Check(r.status());
      PrintRecord(*common, *r);
    });
  }
  // sandbox list
  {
    CLI::App* c = sb->add_subcommand("list", "List sandboxes");
    AddCommon(c, common);
    c->callback([common] {
      auto rt = OpenOrDie(*common);
      auto list = rt->List();
      Check(list.status());
      if (common->json) {
        Json arr = Json::array();
        for (const auto& r : *list) arr.push_back(Summary(r));
        std::cout << Json{{"data", arr}}.dump(2) << "\n";
        return;
      }
      std::cout << "ID\tSTATE\tNAME\tSNAPSHOT\n";
      for (const auto& r : *list) PrintRecord(*common, r);
    });
  }
  // sandbox get
  {
    auto id = std::make_shared<std::string>();
    CLI::App* c = sb->add_subcommand("get", "Show one sandbox");
    AddCommon(c, common);
    c->add_option("id", *id, "Sandbox id or name")->required();
    c->callback([id, common] {
      auto rt = OpenOrDie(*common);
      auto r = rt->Get(*id);
      Check(r.status());
      std::cout << Summary(*r).dump(2) << "\n";
    });
  }
  // sandbox exec
  {
    struct Args {
      std::string id, cwd, user;
      std::vector<std::string> env, argv;
      double timeout = 0;
    };
    auto a = std::make_shared<Args>();
    CLI::App* c = sb->add_subcommand("exec", "Run a command in a sandbox: exec ID -- CMD [ARGS...]");
    AddCommon(c, common);
    c->add_option("--cwd", a->cwd, "Working directory inside");
    c->add_option("--user,-u", a->user, "User inside (name or uid[:gid])");
    c->add_option("--env,-e", a->env, "KEY=value (repeatable)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_option("--timeout", a->timeout, "Seconds before the command is killed");
    c->add_option("id", a->id, "Sandbox id or name")->required();
    c->add_option("command", a->argv, "Command and arguments")->required();
    c->callback([a, common] {
      auto rt = OpenOrDie(*common);
      ExecRequest req;
      req.argv = a->argv;
      req.cwd = a->cwd;
      req.user = a->user;
      req.env = a->env;
      req.timeout = std::chrono::milliseconds(static_cast<int64_t>(a->timeout * 1000));
      if (!common->json) {
        req.on_stdout = [](std::string_view d) { (void)WriteAll(1, d.data(), d.size()); };
        req.on_stderr = [](std::string_view d) { (void)WriteAll(2, d.data(), d.size()); };
      }
      auto r = rt->Exec(a->id, req);
      Check(r.status());
      if (common->json) {
        std::cout << Json{{"exit_code", r->exit_code},
                          {"timed_out", r->timed_out},
                          {"stdout", r->stdout_data},
                          {"stderr", r->stderr_data}}
                         .dump(2)
                  << "\n";
      }
      if (r->exit_code != 0) throw CLI::RuntimeError(r->exit_code);
    });
  }
  RegisterShellCommands(sb);
  // Simple one-id commands.
  auto simple = [&](const char* name, const char* help,
                    std::function<Result<SandboxRecord>(SandboxRuntime&, const std::string&, bool)> fn,
                    bool with_force) {
    auto id = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    CLI::App* c = sb->add_subcommand(name, help);
    AddCommon(c, common);
    c->add_option("id", *id, "Sandbox id or name")->required();
    if (with_force) c->add_flag("--force", *force, "Skip the grace period");
    c->callback([id, force, fn, common] {
      auto rt = OpenOrDie(*common);
      auto r = fn(*rt, *id, *force);
      Check(r.status());
      PrintRecord(*common, *r);
    });
  };
  simple("stop", "Stop a sandbox (files kept)",
         [](SandboxRuntime& rt, const std::string& id, bool f) { return rt.Stop(id, f); }, true);
  simple("start", "Start a stopped sandbox",
         [](SandboxRuntime& rt, const std::string& id, bool) { return rt.Start(id); }, false);
  simple("pause", "Freeze a sandbox (memory kept)",
         [](SandboxRuntime& rt, const std::string& id, bool) { return rt.Pause(id); }, false);
  simple("resume", "Thaw a paused sandbox",
         [](SandboxRuntime& rt, const std::string& id, bool) { return rt.Resume(id); }, false);
  simple("archive", "Stop a sandbox, export its files to <data>/archives and free its disk",
         [](SandboxRuntime& rt, const std::string& id, bool) { return rt.Archive(id); }, false);
  simple("restore", "Bring an archived sandbox's files back (stopped)",
         [](SandboxRuntime& rt, const std::string& id, bool) { return rt.Restore(id); }, false);
  // sandbox fork
  {
    auto id = std::make_shared<std::string>();
    auto count = std::make_shared<int>(1);
    auto disk = std::make_shared<std::string>();
    CLI::App* c = sb->add_subcommand("fork", "Fork a sandbox's filesystem into COUNT children");
    AddCommon(c, common);
    c->add_option("id", *id, "Sandbox id or name")->required();
    c->add_option("--count,-n", *count, "Number of children")->capture_default_str();
    c->add_option("--disk", *disk, "Children's disk limit (e.g. 2G; 0 = none; default: the parent's)");
    c->callback([id, count, disk, common] {
      int64_t disk_bytes = -1;
      if (!disk->empty() && !ParseByteSize(*disk, &disk_bytes)) Check(Status::InvalidArgument("bad --disk " + *disk));
      auto rt = OpenOrDie(*common);
      auto kids = rt->Fork(*id, *count, disk_bytes);
      Check(kids.status());
      if (common->json) {
        Json arr = Json::array();
        for (const auto& k : *kids) arr.push_back(Summary(k));
        std::cout << Json{{"data", arr}}.dump(2) << "\n";
      } else {
        for (const auto& k : *kids) PrintRecord(*common, k);
      }
    });
  }
  // sandbox tree
  {
    auto id = std::make_shared<std::string>();
    CLI::App* c = sb->add_subcommand("tree", "Show a sandbox's fork parent, ancestors and children");
    AddCommon(c, common);
    c->add_option("id", *id, "Sandbox id or name")->required();
    c->callback([id, common] {
      auto rt = OpenOrDie(*common);
      auto t = rt->Tree(*id);
      Check(t.status());
      Json j{{"id", t->id}, {"parent", t->parent}, {"ancestors", t->ancestors}, {"children", t->children}};
      if (common->json) {
        std::cout << j.dump(2) << "\n";
      } else {
        std::cout << "id:        " << t->id << "\nparent:    " << (t->parent.empty() ? "-" : t->parent)
                  << "\nancestors: " << t->ancestors.size() << "\n";
        for (const auto& a : t->ancestors) std::cout << "  " << a << "\n";
        std::cout << "children:  " << t->children.size() << "\n";
        for (const auto& k : t->children) std::cout << "  " << k << "\n";
      }
    });
  }
  // sandbox rm
  {
    auto ids = std::make_shared<std::vector<std::string>>();
    CLI::App* c = sb->add_subcommand("rm", "Delete sandboxes (from any state)");
    AddCommon(c, common);
    c->add_option("ids", *ids, "Sandbox ids or names")->required();
    c->callback([ids, common] {
      auto rt = OpenOrDie(*common);
      for (const auto& id : *ids) {
        Check(rt->Delete(id));
        if (!common->json) std::cout << id << "\n";
      }
      if (common->json) std::cout << Json{{"deleted", *ids}}.dump(2) << "\n";
    });
  }
  // snapshot build
  {
    struct Args {
      std::string name, file, context;
    };
    auto a = std::make_shared<Args>();
    CLI::App* c = snap->add_subcommand("build", "Build a snapshot from a recipe (Dockerfile subset)");
    AddCommon(c, common);
    c->add_option("name", a->name, "Snapshot name")->required();
    c->add_option("--file,-f", a->file, "Recipe file")->required();
    c->add_option("--context,-c", a->context, "Build context directory for COPY");
    c->add_option("--debian-mirror", common->debian_mirror,
                  "Mirror for FROM debian:<suite> (default: the one apt uses here)");
    c->callback([a, common] {
      auto text = ReadFileToString(a->file);
      Check(text.status());
      std::string ctx = a->context;
      if (ctx.empty()) {
        auto slash = a->file.rfind('/');
        ctx = slash == std::string::npos ? "." : a->file.substr(0, slash);
      }
      auto rt = OpenOrDie(*common);
      auto r = rt->BuildSnapshot(a->name, *text, ctx, [](std::string_view line) {
        std::cerr << line << "\n";
      });
      Check(r.status());
      if (common->json) std::cout << r->ToJson().dump(2) << "\n";
      else std::cout << r->Ref() << "\n";
    });
  }
  // snapshot list
  {
    CLI::App* c = snap->add_subcommand("list", "List snapshots");
    AddCommon(c, common);
    c->callback([common] {
      auto rt = OpenOrDie(*common);
      auto list = rt->ListSnapshots();
      Check(list.status());
      if (common->json) {
        Json arr = Json::array();
        for (const auto& s : *list) arr.push_back(s.ToJson());
        std::cout << Json{{"data", arr}}.dump(2) << "\n";
        return;
      }
      std::cout << "NAME\tHASH\tLAYERS\n";
      for (const auto& s : *list) std::cout << s.name << "\t" << s.hash.substr(0, 12) << "\t" << s.layers.size() << "\n";
    });
  }
  // snapshot rm
  {
    auto names = std::make_shared<std::vector<std::string>>();
    CLI::App* c = snap->add_subcommand("rm", "Delete snapshots (sandboxes made from them keep working)");
    AddCommon(c, common);
    c->add_option("names", *names, "Snapshot names")->required();
    c->callback([names, common] {
      auto rt = OpenOrDie(*common);
      for (const auto& n : *names) Check(rt->DeleteSnapshot(n));
      if (common->json) std::cout << Json{{"deleted", *names}}.dump(2) << "\n";
    });
  }
  RegisterVolumeCommands(app, common);
}

namespace {

void RegisterVolumeCommands(CLI::App& app, const std::shared_ptr<Common>& common) {
  CLI::App* vol = app.add_subcommand("volume", "Manage named volumes (mounted with sandbox create --volume)");
  vol->require_subcommand(1);
  auto print = [common](const VolumeInfo& v) {
    if (common->json) {
      std::cout << v.ToJson().dump(2) << "\n";
      return;
    }
    std::cout << v.name << "\t" << (v.size_bytes > 0 ? std::to_string(v.size_bytes) : "-") << "\t"
              << (v.used_bytes >= 0 ? std::to_string(v.used_bytes) : "-") << "\t" << v.sandboxes.size() << "\n";
  };
  // volume create
  {
    auto name = std::make_shared<std::string>();
    auto size = std::make_shared<std::string>();
    CLI::App* c = vol->add_subcommand("create", "Create a volume, optionally with a size limit");
    AddCommon(c, common);
    c->add_option("name", *name, "Volume name")->required();
    c->add_option("--size", *size, "Size limit (e.g. 512M, 10G; at least 1M; btrfs pools only). Default: none");
    c->callback([name, size, common, print] {
      int64_t bytes = 0;
      if (!size->empty() && !ParseByteSize(*size, &bytes)) Check(Status::InvalidArgument("bad --size " + *size));
      auto rt = OpenOrDie(*common);
      auto v = rt->CreateVolume(*name, bytes);
      Check(v.status());
      print(*v);
    });
  }
  // volume list / get
  {
    CLI::App* c = vol->add_subcommand("list", "List volumes (NAME SIZE USED SANDBOXES)");
    AddCommon(c, common);
    c->callback([common, print] {
      auto rt = OpenOrDie(*common);
      auto list = rt->ListVolumes();
      Check(list.status());
      if (common->json) {
        Json arr = Json::array();
        for (const auto& v : *list) arr.push_back(v.ToJson());
        std::cout << Json{{"data", arr}}.dump(2) << "\n";
        return;
      }
      std::cout << "NAME\tSIZE\tUSED\tSANDBOXES\n";
      for (const auto& v : *list) print(v);
    });
    auto name = std::make_shared<std::string>();
    CLI::App* g = vol->add_subcommand("get", "Show one volume");
    AddCommon(g, common);
    g->add_option("name", *name, "Volume name")->required();
    g->callback([name, common] {
      auto rt = OpenOrDie(*common);
      auto v = rt->GetVolume(*name);
      Check(v.status());
      std::cout << v->ToJson().dump(2) << "\n";
    });
  }
  // volume rm
  {
    auto names = std::make_shared<std::vector<std::string>>();
    CLI::App* c = vol->add_subcommand("rm", "Delete volumes and their files (refused while a sandbox lists them)");
    AddCommon(c, common);
    c->add_option("names", *names, "Volume names")->required();
    c->callback([names, common] {
      auto rt = OpenOrDie(*common);
      for (const auto& n : *names) Check(rt->DeleteVolume(n));
      if (common->json) std::cout << Json{{"deleted", *names}}.dump(2) << "\n";
    });
  }
}

}  // namespace

}  // namespace warren::sandbox
