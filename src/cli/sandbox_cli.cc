#include "cli/sandbox_cli.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "cli/progress.h"
#include "common/clock.h"
#include "common/ids.h"
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

using cli::Progress;

// Bytes this process has read so far (read(2) and friends, every thread:
// /proc/self/io "rchar"), or -1. The runtime archives and restores in
// process with plain reads, so the growth of this counter while it works is
// how far it got, without a hook into the archive code.
int64_t ProcessBytesRead() {
  std::ifstream io("/proc/self/io");
  std::string key;
  int64_t v;
  while (io >> key >> v)
    if (key == "rchar:") return v;
  return -1;
}

// Polls ProcessBytesRead() every 100 ms while alive and reports the growth
// since construction to `progress`. RAII: the destructor stops the thread.
class ReadMeter final {
 public:
  explicit ReadMeter(Progress* progress) : progress_(progress), base_(ProcessBytesRead()) {
    if (base_ >= 0) thread_ = std::thread([this] { Loop(); });
  }
  ~ReadMeter() { Stop(); }
  ReadMeter(const ReadMeter&) = delete;
  ReadMeter& operator=(const ReadMeter&) = delete;
  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> l(mu_);
    while (!cv_.wait_for(l, std::chrono::milliseconds(100), [this] { return stop_; })) {
      int64_t now = ProcessBytesRead();
      if (now >= base_) progress_->Update(now - base_);
    }
  }
  Progress* progress_;
  const int64_t base_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// File bytes an archive of `dir` reads: regular files' data, holes excluded
// (min(size, allocated)); symlinks not followed, mount points not crossed.
int64_t g_tree_bytes = 0;
int64_t TreeDataBytes(const std::string& dir) {
  g_tree_bytes = 0;
  nftw(
      dir.c_str(),
      [](const char*, const struct stat* st, int type, struct FTW*) {
        if (type == FTW_F && S_ISREG(st->st_mode))
          g_tree_bytes += std::min<int64_t>(st->st_size, static_cast<int64_t>(st->st_blocks) * 512);
        return 0;
      },
      64, FTW_PHYS | FTW_MOUNT);
  return g_tree_bytes;
}

// "[2/6] RUN apt-get ..." (the builder's step heads) -> 2, 6 and the text.
bool ParseStepHead(std::string_view line, int* step, int* total, std::string_view* text) {
  if (line.size() < 6 || line[0] != '[') return false;
  size_t slash = line.find('/'), close = line.find("] ");
  if (slash == std::string_view::npos || close == std::string_view::npos || slash > close) return false;
  try {
    *step = std::stoi(std::string(line.substr(1, slash - 1)));
    *total = std::stoi(std::string(line.substr(slash + 1, close - slash - 1)));
  } catch (...) {
    return false;
  }
  *text = line.substr(close + 2);
  return *step >= 1 && *total >= *step;
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
  // sandbox network
  {
    struct Args {
      std::string id, network;
      std::vector<std::string> allow_cidrs, dns, allow_hosts;
      bool block_all = false;
    };
    auto a = std::make_shared<Args>();
    CLI::App* c = sb->add_subcommand(
        "network",
        "Replace a sandbox's network policy; a running sandbox gets it at once, without a restart (new connections; "
        "open TLS connections keep going until they close)");
    AddCommon(c, common);
    c->add_option("id", a->id, "Sandbox id or name")->required();
    c->add_option("--network", a->network, "none, isolated or limited (the whole policy is replaced)")->required();
    c->add_option("--allow-host", a->allow_hosts, "limited: host name, *.suffix or IPv4 literal (repeatable)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_option("--allow-cidr", a->allow_cidrs, "IPv4 CIDR reachable despite the default blocks (repeatable, max 10)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->add_flag("--block-all", a->block_all, "isolated: block all egress except --allow-cidr");
    c->add_option("--dns", a->dns, "nameserver for /etc/resolv.conf (repeatable, max 3)")
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    c->callback([a, common] {
      NetworkPolicy p;
      p.network = a->network;
      p.allow_cidrs = a->allow_cidrs;
      p.allow_hosts = a->allow_hosts;
      p.block_all = a->block_all;
      p.dns = a->dns;
      auto rt = OpenOrDie(*common);
      auto r = rt->SetNetwork(a->id, p);
      Check(r.status());
      std::cout << Summary(*r).dump(2) << "\n";
    });
  }
  // sandbox list
  {
    CLI::App* c = sb->add_subcommand("list", "List sandboxes");
    AddCommon(c, common);
    c->callback([common] {
      auto rt = OpenOrDie(*common);
      // Keyset pages in creation order: each record is copied once, never
      // the whole set at once.
      Json arr = Json::array();
      if (!common->json) std::cout << "ID\tSTATE\tNAME\tSNAPSHOT\n";
      std::optional<sandbox::RecordKey> after;
      for (;;) {
        auto page = rt->ListPage(after, 256);
        Check(page.status());
        for (const auto& r : *page) {
          if (common->json) arr.push_back(Summary(r));
          else PrintRecord(*common, r);
        }
        if (page->size() < 256) break;
        after = sandbox::RecordKey{page->back().created_at, page->back().id};
      }
      if (common->json) std::cout << Json{{"data", arr}}.dump(2) << "\n";
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
  // sandbox cp: one regular file into or out of a sandbox, streamed with a
  // progress bar (bytes) on stderr.
  {
    struct Args {
      std::string src, dst;
    };
    auto a = std::make_shared<Args>();
    CLI::App* c = sb->add_subcommand(
        "cp", "Copy a file into or out of a sandbox: cp HOST_FILE ID:PATH | cp ID:PATH HOST_FILE ('-' = stdin/stdout)");
    AddCommon(c, common);
    c->add_option("src", a->src, "HOST_FILE or ID:PATH")->required();
    c->add_option("dst", a->dst, "ID:PATH or HOST_FILE")->required();
    c->footer(
        "Examples:\n"
        "  warren sandbox cp ./data.tar.gz box:/workspace/        # into the sandbox (keeps the name)\n"
        "  warren sandbox cp box:/workspace/out.log ./out.log     # out of it\n"
        "  tar c src | warren sandbox cp - box:/tmp/src.tar        # from stdin");
    c->callback([a, common] {
      // "ID:PATH" names a sandbox when the part before ':' has no '/'.
      auto remote = [](const std::string& s, std::string* id, std::string* path) {
        size_t colon = s.find(':');
        if (colon == std::string::npos || colon == 0 || s.substr(0, colon).find('/') != std::string::npos) return false;
        *id = s.substr(0, colon);
        *path = s.substr(colon + 1);
        return true;
      };
      std::string id, path;
      const bool upload = remote(a->dst, &id, &path);
      std::string id2, path2;
      if (upload == remote(a->src, &id2, &path2))
        Check(Status::InvalidArgument("cp: exactly one of SRC and DST is ID:PATH (the other a host file or '-')"));
      if (!upload) {
        id = id2;
        path = path2;
      }
      const std::string host = upload ? a->src : a->dst;
      if (!upload && host == "-" && common->json)
        Check(Status::InvalidArgument("cp: --json and '-' (the file on stdout) exclude each other"));
      auto base = [](const std::string& p) {
        size_t slash = p.find_last_of('/');
        return slash == std::string::npos ? p : p.substr(slash + 1);
      };
      if (path.empty()) path = "/";
      auto rt = OpenOrDie(*common);
      auto rec = rt->Get(id);
      Check(rec.status());
      auto fs = rt->Files(rec->id);
      Check(fs.status());
      int64_t copied = 0;
      auto pump = [&](int in, int out, Progress* prog) -> Status {
        std::vector<char> buf(1 << 20);
        for (;;) {
          ssize_t n = ::read(in, buf.data(), buf.size());
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return Status::FromErrno(errno, "cp: read");
          if (n == 0) return Status::Ok();
          if (int rc = WriteAll(out, buf.data(), static_cast<size_t>(n)); rc < 0) {
            if (-rc == ENOSPC || -rc == EDQUOT) return Status::ResourceExhausted("cp: no space left");
            return Status::FromErrno(-rc, "cp: write");
          }
          copied += n;
          prog->Update(copied);
        }
      };
      std::string sandbox_path, host_path = host;
      if (upload) {
        UniqueFd in(host == "-" ? ::dup(0) : ::open(host.c_str(), O_RDONLY | O_CLOEXEC));
        if (!in) Check(Status::FromErrno(errno, "cp: open " + host));
        struct stat st = {};
        if (::fstat(in.get(), &st) != 0) Check(Status::FromErrno(errno, "cp: stat " + host));
        if (host != "-" && !S_ISREG(st.st_mode))
          Check(Status::InvalidArgument("cp: " + host + " is not a regular file (for a tree: tar c DIR | warren "
                                        "sandbox exec ID -- tar x -C DEST)"));
        sandbox_path = path;
        if (sandbox_path.back() == '/') {
          sandbox_path += host == "-" ? "stdin" : base(host);
        } else if (auto fi = fs->Stat(sandbox_path); fi.ok() && fi->type == "dir") {
          sandbox_path += "/" + (host == "-" ? std::string("stdin") : base(host));
        }
        const uint32_t mode = S_ISREG(st.st_mode) ? (st.st_mode & 07777) : 0644;
        size_t slash = sandbox_path.find_last_of('/');
        const std::string tmp = sandbox_path.substr(0, slash + 1) + ".warren-upload-" + NewId("", 12);
        auto out = fs->OpenWrite(tmp, mode);
        Check(out.status());
        Progress prog("copy " + (host == "-" ? std::string("stdin") : base(host)) + " → " + rec->id + ":" + sandbox_path,
                      Progress::Unit::kBytes, S_ISREG(st.st_mode) ? st.st_size : 0, Progress::Style::Detect());
        Status s = pump(in.get(), out->get(), &prog);
        if (s.ok() && ::fchmod(out->get(), mode) != 0) s = Status::FromErrno(errno, "cp: chmod");
        if (s.ok() && ::fsync(out->get()) != 0) s = Status::FromErrno(errno, "cp: fsync");
        out->reset();
        if (s.ok()) s = fs->Move(tmp, sandbox_path);
        if (!s.ok()) (void)fs->Delete(tmp, false);
        Check(s);
        prog.Done();
      } else {
        sandbox_path = path;
        auto in = fs->OpenRead(sandbox_path);
        Check(in.status());
        struct stat st = {};
        if (::fstat(in->get(), &st) != 0) Check(Status::FromErrno(errno, "cp: stat " + sandbox_path));
        if (!S_ISREG(st.st_mode)) Check(Status::InvalidArgument("cp: " + sandbox_path + " is not a regular file"));
        struct stat hst = {};
        if (host != "-" && (host.back() == '/' || (::stat(host.c_str(), &hst) == 0 && S_ISDIR(hst.st_mode))))
          host_path = host + (host.back() == '/' ? "" : "/") + base(sandbox_path);
        Progress prog("copy " + rec->id + ":" + sandbox_path + " → " + (host == "-" ? "stdout" : host_path),
                      Progress::Unit::kBytes, st.st_size, Progress::Style::Detect());
        if (host == "-") {
          Check(pump(in->get(), 1, &prog));
        } else {
          // Written beside the target, then renamed: never half a file.
          const std::string tmp = host_path + ".warren-tmp-" + NewId("", 8);
          UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777));
          if (!out) Check(Status::FromErrno(errno, "cp: create " + tmp));
          Status s = pump(in->get(), out.get(), &prog);
          if (s.ok() && ::fsync(out.get()) != 0) s = Status::FromErrno(errno, "cp: fsync");
          out.reset();
          if (s.ok() && ::rename(tmp.c_str(), host_path.c_str()) != 0) s = Status::FromErrno(errno, "cp: rename");
          if (!s.ok()) ::unlink(tmp.c_str());
          Check(s);
        }
        prog.Done();
      }
      if (common->json)
        std::cout << Json{{"sandbox", rec->id},
                          {"direction", upload ? "in" : "out"},
                          {"path", sandbox_path},
                          {"host_path", host_path},
                          {"bytes", copied}}
                         .dump(2)
                  << "\n";
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
  // archive / restore: long (the whole rootfs, compressed), so with a
  // progress bar on stderr (cli/progress.h), in bytes read.
  simple("archive", "Stop a sandbox, export its files to <data>/archives and free its disk",
         [](SandboxRuntime& rt, const std::string& id, bool) -> Result<SandboxRecord> {
           WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, rt.Get(id));
           if (rec.state == SandboxState::kArchived) return rec;
           const int64_t total = TreeDataBytes(rt.RootfsPath(rec.id));
           Progress prog("archive " + rec.id, Progress::Unit::kBytes, total, Progress::Style::Detect());
           ReadMeter meter(&prog);
           auto r = rt.Archive(rec.id);
           meter.Stop();
           if (r.ok())
             prog.Done(cli::HumanBytes(total) + " into " + cli::HumanBytes(r->archive_bytes) + " (" +
                       rt.options().data_dir + "/archives/" + rec.id + ".tar.zst)");
           return r;
         },
         false);
  simple("restore", "Bring an archived sandbox's files back (stopped)",
         [](SandboxRuntime& rt, const std::string& id, bool) -> Result<SandboxRecord> {
           WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, rt.Get(id));
           if (rec.state != SandboxState::kArchived) return rt.Restore(rec.id);
           struct stat st = {};
           const std::string file = rt.options().data_dir + "/archives/" + rec.id + ".tar.zst";
           Progress prog("restore " + rec.id, Progress::Unit::kBytes, ::stat(file.c_str(), &st) == 0 ? st.st_size : 0,
                         Progress::Style::Detect());
           ReadMeter meter(&prog);
           auto r = rt.Restore(rec.id);
           meter.Stop();
           if (r.ok()) prog.Done("restored " + cli::HumanBytes(st.st_size) + " of archive (stopped)");
           return r;
         },
         false);
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
      // The build log goes to stderr as before; on a terminal a bar under it
      // shows the recipe step that runs (cli/progress.h).
      Progress prog("build " + a->name, Progress::Unit::kSteps, 0, Progress::Style::Detect());
      auto r = rt->BuildSnapshot(a->name, *text, ctx, [&prog](std::string_view line) {
        prog.Log(line);
        int step = 0, total = 0;
        std::string_view what;
        if (ParseStepHead(line, &step, &total, &what)) {
          prog.SetTotal(total);
          prog.Update(step - 1, what);
        }
      });
      Check(r.status());
      prog.Done("snapshot " + r->Ref() + " built");
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
