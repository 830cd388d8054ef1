#include "sandbox/testing/fake_sandboxes.h"


#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "common/ids.h"
#include "sandbox/egress_sniff.h"

namespace warren::sandbox {

namespace {

constexpr int64_t kMicrosPerMinute = 60LL * 1000000;
constexpr const char* kBuiltin = "builtin:minimal";

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 63 || !std::isalnum(static_cast<unsigned char>(n[0]))) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

bool Live(SandboxState s) { return s == SandboxState::kStarted || s == SandboxState::kPaused; }

}  // namespace

FakeSandboxes::FakeSandboxes(Clock* clock) : clock_(clock ? clock : Clock::Real()) {
  features_.pool_kind = "fake";
  features_.copy_on_write_fork = true;
  features_.cgroup_version = "fake";
  features_.criu_reason = "fake";
  features_.disk_quota_reason = "fake: no quota accounting";
  features_.network_isolated = true;
  SnapshotRecord builtin;
  builtin.name = kBuiltin;
  builtin.hash = "fakebuiltin";
  builtin.layers = {"fakebuiltin"};
  builtin.resources = Resources{1, 1LL << 30, 1024, 0};
  snapshots_[kBuiltin] = builtin;
  std::string tmpl = (std::filesystem::temp_directory_path() / "warren-fake-sandboxes-XXXXXX").string();
  if (mkdtemp(tmpl.data()) != nullptr) root_ = tmpl;
}

FakeSandboxes::~FakeSandboxes() {
  if (!root_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
}

void FakeSandboxes::SetExecHandler(ExecHandler handler) {
  std::lock_guard<std::mutex> l(mu_);
  exec_ = std::move(handler);
}

void FakeSandboxes::FailNext(const std::string& op, Status status, int times) {
  std::lock_guard<std::mutex> l(mu_);
  failures_[op] = Failure{std::move(status), times};
}

void FakeSandboxes::ClearFailures() {
  std::lock_guard<std::mutex> l(mu_);
  failures_.clear();
}

int FakeSandboxes::Calls(const std::string& op) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

void FakeSandboxes::AddSnapshot(SnapshotRecord snapshot) {
  std::lock_guard<std::mutex> l(mu_);
  snapshots_[snapshot.name] = std::move(snapshot);
}

void FakeSandboxes::SetFeatures(Features features) {
  std::lock_guard<std::mutex> l(mu_);
  features_ = std::move(features);
}

Status FakeSandboxes::Enter(const std::string& op) {
  ++calls_[op];
  auto it = failures_.find(op);
  if (it == failures_.end() || it->second.times == 0) return Status::Ok();
  Status s = it->second.status;
  if (it->second.times > 0 && --it->second.times == 0) failures_.erase(it);
  return s;
}

SandboxRecord* FakeSandboxes::Find(const std::string& id_or_name) {
  auto it = sandboxes_.find(id_or_name);
  if (it != sandboxes_.end()) return it->second.state == SandboxState::kDestroyed ? nullptr : &it->second;
  for (auto& [id, rec] : sandboxes_) {
    if (!rec.name.empty() && rec.name == id_or_name && rec.state != SandboxState::kDestroyed) return &rec;
  }
  return nullptr;
}

Result<SandboxRecord*> FakeSandboxes::Load(const std::string& id_or_name) {
  SandboxRecord* r = Find(id_or_name);
  if (!r) return Status::NotFound("no sandbox " + id_or_name);
  return r;
}

void FakeSandboxes::SetState(SandboxRecord& rec, SandboxState s) {
  if (s == SandboxState::kStopped && rec.state != SandboxState::kStopped) rec.stopped_at = clock_->NowMicros();
  rec.state = s;
  rec.updated_at = clock_->NowMicros();
}

std::string FakeSandboxes::RootDir(const std::string& id) const { return root_ + "/" + id; }

void FakeSandboxes::EndSessions(const std::string& id, const std::string& reason) {
  for (auto it = sessions_.lower_bound(id + "/"); it != sessions_.end() && it->first.rfind(id + "/", 0) == 0;) {
    it = sessions_.erase(it);
  }
  (void)reason;
}

Status FakeSandboxes::StartLocked(SandboxRecord& rec) {
  if (rec.state == SandboxState::kStarted) return Status::Ok();
  if (rec.state == SandboxState::kPaused) return Status::Conflict("sandbox is paused; resume it");
  if (rec.state == SandboxState::kArchived) SetState(rec, SandboxState::kStopped);  // restore first
  if (rec.state != SandboxState::kStopped && rec.state != SandboxState::kError) {
    return Status::Conflict("cannot start a sandbox that is " + StateName(rec.state));
  }
  rec.init_pid = 1000 + rec.id_slot;
  rec.last_activity = clock_->NowMicros();
  rec.error.clear();
  SetState(rec, SandboxState::kStarted);
  return Status::Ok();
}

Status FakeSandboxes::StopLocked(SandboxRecord& rec) {
  if (!Live(rec.state)) return Status::Ok();
  rec.init_pid = -1;
  EndSessions(rec.id, "sandbox stopped");
  SetState(rec, SandboxState::kStopped);
  return Status::Ok();
}

Status FakeSandboxes::DestroyLocked(SandboxRecord& rec) {
  EndSessions(rec.id, "sandbox deleted");
  std::error_code ec;
  std::filesystem::remove_all(RootDir(rec.id), ec);
  if (!rec.parent.empty() || !rec.children.empty()) {
    rec.state = SandboxState::kDestroyed;
    rec.deleted = true;
    rec.init_pid = -1;
    return Status::Ok();
  }
  sandboxes_.erase(rec.id);
  return Status::Ok();
}

Result<SandboxRecord> FakeSandboxes::Create(const CreateOptions& o) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Create"));
  if (!o.name.empty() && !ValidName(o.name)) return Status::InvalidArgument("invalid sandbox name: " + o.name);
  if (o.network != "none" && o.network != "isolated" && o.network != "limited") {
    return Status::InvalidArgument("unknown network policy '" + o.network + "' (none, isolated, limited)");
  }
  if (o.network != "limited" && !o.allow_hosts.empty()) return Status::InvalidArgument("allow_hosts needs network 'limited'");
  std::vector<std::string> hosts;
  if (o.network == "limited") {
    WARREN_ASSIGN_OR_RETURN(HostAllowlist list, HostAllowlist::Parse(o.allow_hosts));
    hosts = list.entries();
  }
  for (const auto& kv : o.env) {
    if (kv.find('=') == std::string::npos || kv[0] == '=') return Status::InvalidArgument("env must be KEY=value: " + kv);
  }
  if (o.resources.disk_bytes > 0 && !features_.disk_quota) {
    return Status::FailedPrecondition("disk limits are not supported: " + features_.disk_quota_reason);
  }
  if (!o.name.empty() && Find(o.name)) return Status::Conflict("a sandbox named " + o.name + " exists");
  std::string snap_name = o.snapshot.empty() ? kBuiltin : o.snapshot;
  auto sit = snapshots_.find(snap_name);
  if (sit == snapshots_.end()) return Status::NotFound("no snapshot " + snap_name);
  SandboxRecord rec;
  rec.id = NewId("sbx_", 16);
  rec.name = o.name;
  rec.snapshot = sit->second.name;
  rec.snapshot_hash = sit->second.hash;
  rec.id_slot = next_slot_++;
  rec.labels = o.labels;
  rec.env = o.env;
  rec.resources = sit->second.resources;
  if (o.resources.cpus > 0) rec.resources.cpus = o.resources.cpus;
  if (o.resources.memory_bytes > 0) rec.resources.memory_bytes = o.resources.memory_bytes;
  if (o.resources.pids > 0) rec.resources.pids = o.resources.pids;
  if (o.resources.disk_bytes > 0) rec.resources.disk_bytes = o.resources.disk_bytes;
  rec.network = o.network;
  rec.allow_cidrs = o.allow_cidrs;
  rec.allow_hosts = hosts;
  rec.block_all = o.block_all;
  rec.dns = o.dns;
  rec.user = o.user;
  rec.workdir = o.workdir;
  rec.volumes = o.volumes;
  rec.auto_stop_minutes = o.auto_stop_minutes;
  rec.auto_archive_minutes = o.auto_archive_minutes;
  rec.auto_delete_minutes = o.auto_delete_minutes;
  rec.created_at = rec.last_activity = clock_->NowMicros();
  std::error_code ec;
  std::filesystem::create_directories(RootDir(rec.id), ec);
  if (ec) return Status::Internal("fake rootfs: " + ec.message());
  SetState(rec, SandboxState::kStopped);
  if (o.start) WARREN_RETURN_IF_ERROR(StartLocked(rec));
  sandboxes_[rec.id] = rec;
  return rec;
}

Result<SandboxRecord> FakeSandboxes::Get(const std::string& id_or_name) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Get"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id_or_name));
  return *r;
}

Result<std::vector<SandboxRecord>> FakeSandboxes::List() {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("List"));
  std::vector<SandboxRecord> out;
  for (const auto& [id, rec] : sandboxes_) {
    if (rec.state != SandboxState::kDestroyed) out.push_back(rec);
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.created_at < b.created_at; });
  return out;
}

Result<SandboxRecord> FakeSandboxes::Start(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Start"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  WARREN_RETURN_IF_ERROR(StartLocked(*r));
  return *r;
}

Result<SandboxRecord> FakeSandboxes::Stop(const std::string& id, bool force) {
  (void)force;
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Stop"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  WARREN_RETURN_IF_ERROR(StopLocked(*r));
  return *r;
}

Result<SandboxRecord> FakeSandboxes::Pause(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Pause"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  if (r->state == SandboxState::kPaused) return *r;
  if (r->state != SandboxState::kStarted) return Status::Conflict("sandbox is " + StateName(r->state) + ", not started");
  SetState(*r, SandboxState::kPaused);
  return *r;
}

Result<SandboxRecord> FakeSandboxes::Resume(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Resume"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  if (r->state == SandboxState::kStarted) return *r;
  if (r->state != SandboxState::kPaused) return Status::Conflict("sandbox is " + StateName(r->state) + ", not paused");
  r->last_activity = clock_->NowMicros();
  SetState(*r, SandboxState::kStarted);
  return *r;
}

Result<std::vector<SandboxRecord>> FakeSandboxes::Fork(const std::string& id, int count, int64_t disk_bytes) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Fork"));
  if (count < 1 || count > 100) return Status::InvalidArgument("fork count must be 1..100");
  if (disk_bytes < -1) return Status::InvalidArgument("fork disk limit must be -1 (inherit), 0 (none) or > 0");
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * parent, Load(id));
  if (parent->state == SandboxState::kArchived) {
    return Status::FailedPrecondition("sandbox is archived; restore it before forking");
  }
  if (!Live(parent->state) && parent->state != SandboxState::kStopped) {
    return Status::Conflict("cannot fork a sandbox that is " + StateName(parent->state));
  }
  std::vector<SandboxRecord> made;
  for (int i = 0; i < count; ++i) {
    SandboxRecord k = *parent;
    k.id = NewId("sbx_", 16);
    k.name.clear();
    k.parent = parent->id;
    k.children.clear();
    k.init_pid = -1;
    k.id_slot = next_slot_++;
    if (disk_bytes >= 0) k.resources.disk_bytes = disk_bytes;
    k.created_at = k.last_activity = clock_->NowMicros();
    k.state = SandboxState::kCreating;
    std::error_code ec;
    std::filesystem::create_directories(RootDir(k.id), ec);
    std::filesystem::copy(RootDir(parent->id), RootDir(k.id), std::filesystem::copy_options::recursive, ec);
    SetState(k, SandboxState::kStopped);
    if (parent->state == SandboxState::kStarted) (void)StartLocked(k);
    parent->children.push_back(k.id);
    made.push_back(k);
  }
  for (const auto& k : made) sandboxes_[k.id] = k;
  return made;
}

Result<ForkTree> FakeSandboxes::Tree(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Tree"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  ForkTree t;
  t.id = r->id;
  t.parent = r->parent;
  for (const auto& c : r->children) {
    auto it = sandboxes_.find(c);
    if (it != sandboxes_.end() && it->second.state != SandboxState::kDestroyed) t.children.push_back(c);
  }
  std::string cur = r->parent;
  std::set<std::string> seen{r->id};
  while (!cur.empty() && seen.insert(cur).second) {
    t.ancestors.push_back(cur);
    auto it = sandboxes_.find(cur);
    if (it == sandboxes_.end()) break;
    cur = it->second.parent;
  }
  return t;
}

Status FakeSandboxes::Delete(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Delete"));
  SandboxRecord* r = Find(id);
  if (!r) return Status::Ok();
  return DestroyLocked(*r);
}

Result<SandboxRecord> FakeSandboxes::Archive(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Archive"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  if (r->state == SandboxState::kArchived) return *r;
  WARREN_RETURN_IF_ERROR(StopLocked(*r));
  if (r->state != SandboxState::kStopped) return Status::Conflict("cannot archive a sandbox that is " + StateName(r->state));
  r->archive_bytes = 1;
  // The stop clock keeps running: archive does not reset stopped_at.
  r->state = SandboxState::kArchived;
  r->updated_at = clock_->NowMicros();
  return *r;
}

Result<SandboxRecord> FakeSandboxes::Restore(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Restore"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  if (r->state == SandboxState::kStopped || Live(r->state)) return *r;
  if (r->state != SandboxState::kArchived) return Status::Conflict("cannot restore a sandbox that is " + StateName(r->state));
  r->archive_bytes = 0;
  SetState(*r, SandboxState::kStopped);
  return *r;
}

Result<QuotaInfo> FakeSandboxes::DiskQuota(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("DiskQuota"));
  WARREN_RETURN_IF_ERROR(Load(id).status());
  return Status::NotFound("the fake pool has no quota accounting");
}

Result<SandboxRecord> FakeSandboxes::SetLabels(const std::string& id, std::map<std::string, std::string> labels) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("SetLabels"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  r->labels = std::move(labels);
  r->updated_at = clock_->NowMicros();
  return *r;
}

Result<SandboxRecord> FakeSandboxes::SetNetwork(const std::string& id, const NetworkPolicy& p) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("SetNetwork"));
  if (p.network != "none" && p.network != "isolated" && p.network != "limited") {
    return Status::InvalidArgument("unknown network policy '" + p.network + "' (none, isolated, limited)");
  }
  if (p.network != "limited" && !p.allow_hosts.empty()) return Status::InvalidArgument("allow_hosts needs network 'limited'");
  std::vector<std::string> hosts;
  if (p.network == "limited") {
    WARREN_ASSIGN_OR_RETURN(HostAllowlist list, HostAllowlist::Parse(p.allow_hosts));
    hosts = list.entries();
  }
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  r->network = p.network;
  r->allow_hosts = std::move(hosts);
  r->allow_cidrs = p.allow_cidrs;
  r->block_all = p.block_all;
  r->dns = p.dns;
  r->updated_at = clock_->NowMicros();
  return *r;
}

Result<ExecResult> FakeSandboxes::RunCommand(const SandboxRecord& rec, const ExecRequest& req) {
  ExecHandler handler;
  {
    std::lock_guard<std::mutex> l(mu_);
    handler = exec_;
  }
  if (!handler) return ExecResult{0, false, "", ""};
  return handler(rec, req);
}

Result<ExecResult> FakeSandboxes::Exec(const std::string& id, const ExecRequest& req) {
  SandboxRecord rec;
  {
    std::lock_guard<std::mutex> l(mu_);
    WARREN_RETURN_IF_ERROR(Enter("Exec"));
    if (req.argv.empty()) return Status::InvalidArgument("exec needs a command");
    WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
    if (r->state == SandboxState::kPaused) return Status::FailedPrecondition("sandbox is paused");
    if (r->state != SandboxState::kStarted) return Status::FailedPrecondition("sandbox is " + StateName(r->state));
    r->last_activity = clock_->NowMicros();
    rec = *r;
  }
  // Outside the lock: a handler may block (an exec in flight) without
  // holding up other sandboxes.
  WARREN_ASSIGN_OR_RETURN(ExecResult res, RunCommand(rec, req));
  if (req.on_stdout && !res.stdout_data.empty()) req.on_stdout(res.stdout_data);
  if (req.on_stderr && !res.stderr_data.empty()) req.on_stderr(res.stderr_data);
  return res;
}

Result<SessionInfo> FakeSandboxes::CreateSession(const std::string& id, const std::string& session_id,
                                                 const SessionOptions& opts) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("CreateSession"));
  if (!ValidName(session_id)) {
    return Status::InvalidArgument("session id must be 1-63 of [A-Za-z0-9_.-], starting alphanumeric");
  }
  if (opts.output_cap == 0) return Status::InvalidArgument("output_cap must be positive");
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  if (r->state != SandboxState::kStarted) return Status::FailedPrecondition("sandbox is " + StateName(r->state));
  std::string key = r->id + "/" + session_id;
  if (sessions_.count(key)) return Status::Conflict("session " + session_id + " already exists");
  Session s;
  s.info.sandbox_id = r->id;
  s.info.session_id = session_id;
  s.info.shell = "/bin/sh";
  s.info.created_at = clock_->NowMicros();
  r->last_activity = clock_->NowMicros();
  sessions_[key] = s;
  return s.info;
}

Result<CommandInfo> FakeSandboxes::SessionExec(const std::string& id, const std::string& session_id,
                                               const std::string& command, const SessionExecOptions& opts) {
  (void)opts;
  SandboxRecord rec;
  std::string key, cmd_id;
  {
    std::lock_guard<std::mutex> l(mu_);
    WARREN_RETURN_IF_ERROR(Enter("SessionExec"));
    WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
    if (r->state == SandboxState::kPaused) return Status::FailedPrecondition("sandbox is paused");
    if (r->state != SandboxState::kStarted) return Status::FailedPrecondition("sandbox is " + StateName(r->state));
    key = r->id + "/" + session_id;
    auto it = sessions_.find(key);
    if (it == sessions_.end()) return Status::NotFound("no session " + session_id + " in sandbox " + id);
    if (!it->second.info.running_command.empty()) {
      return Status::FailedPrecondition("session " + session_id + " is running a command");
    }
    cmd_id = "cmd-" + std::to_string(it->second.next_command++);
    CommandInfo c;
    c.id = cmd_id;
    c.command = command;
    c.started_at = clock_->NowMicros();
    it->second.commands[cmd_id] = c;
    it->second.info.commands.push_back(cmd_id);
    it->second.info.running_command = cmd_id;
    r->last_activity = clock_->NowMicros();
    rec = *r;
  }
  ExecRequest req;
  req.argv = {"sh", "-c", command};
  auto res = RunCommand(rec, req);
  std::lock_guard<std::mutex> l(mu_);
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return Status::FailedPrecondition("session " + session_id + " ended");
  CommandInfo& c = it->second.commands[cmd_id];
  c.running = false;
  c.finished_at = clock_->NowMicros();
  if (res.ok()) {
    c.exit_code = res->exit_code;
    c.stdout_data = res->stdout_data;
    c.stderr_data = res->stderr_data;
  } else {
    c.exit_code = 127;
    c.stderr_data = res.status().ToString();
  }
  it->second.info.running_command.clear();
  return c;
}

Result<CommandInfo> FakeSandboxes::GetCommand(const std::string& id, const std::string& session_id,
                                              const std::string& command_id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("GetCommand"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  auto it = sessions_.find(r->id + "/" + session_id);
  if (it == sessions_.end()) return Status::NotFound("no session " + session_id + " in sandbox " + id);
  auto c = it->second.commands.find(command_id);
  if (c == it->second.commands.end()) return Status::NotFound("no command " + command_id);
  return c->second;
}

Result<CommandInfo> FakeSandboxes::CommandLogs(const std::string& id, const std::string& session_id,
                                               const std::string& command_id, const LogSink& follow,
                                               std::chrono::milliseconds timeout) {
  (void)timeout;
  WARREN_ASSIGN_OR_RETURN(CommandInfo c, GetCommand(id, session_id, command_id));
  if (follow) {
    if (!c.stdout_data.empty()) follow(LogStream::kStdout, c.stdout_data);
    if (!c.stderr_data.empty()) follow(LogStream::kStderr, c.stderr_data);
  }
  return c;
}

Status FakeSandboxes::SendInput(const std::string& id, const std::string& session_id, const std::string& command_id,
                                std::string_view bytes) {
  (void)bytes;
  WARREN_ASSIGN_OR_RETURN(CommandInfo c, GetCommand(id, session_id, command_id));
  if (!c.running) return Status::FailedPrecondition("command " + command_id + " has finished");
  return Status::Ok();
}

Status FakeSandboxes::DeleteSession(const std::string& id, const std::string& session_id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("DeleteSession"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  if (r->state == SandboxState::kPaused) return Status::FailedPrecondition("sandbox is paused; resume it first");
  if (sessions_.erase(r->id + "/" + session_id) == 0) {
    return Status::NotFound("no session " + session_id + " in sandbox " + id);
  }
  return Status::Ok();
}

Result<SessionInfo> FakeSandboxes::GetSession(const std::string& id, const std::string& session_id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("GetSession"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  auto it = sessions_.find(r->id + "/" + session_id);
  if (it == sessions_.end()) return Status::NotFound("no session " + session_id + " in sandbox " + id);
  return it->second.info;
}

Result<std::vector<SessionInfo>> FakeSandboxes::ListSessions(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("ListSessions"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  std::vector<SessionInfo> out;
  for (auto it = sessions_.lower_bound(r->id + "/"); it != sessions_.end() && it->first.rfind(r->id + "/", 0) == 0;
       ++it) {
    out.push_back(it->second.info);
  }
  return out;
}

Result<std::unique_ptr<PtySession>> FakeSandboxes::OpenPty(const std::string& id, const PtyOptions& opts) {
  (void)opts;
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("OpenPty"));
  WARREN_RETURN_IF_ERROR(Load(id).status());
  return Status::Unimplemented("FakeSandboxes has no terminals");
}

Result<RootFs> FakeSandboxes::Files(const std::string& id) {
  std::string dir;
  {
    std::lock_guard<std::mutex> l(mu_);
    WARREN_RETURN_IF_ERROR(Enter("Files"));
    WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
    if (r->state == SandboxState::kArchived) {
      return Status::FailedPrecondition("sandbox is archived; restore or start it to use its files");
    }
    r->last_activity = clock_->NowMicros();
    dir = RootDir(r->id);
  }
  return RootFs::Open(dir);
}

Result<CgroupStats> FakeSandboxes::Stats(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("Stats"));
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id));
  CgroupStats s;
  if (Live(r->state)) s.pids = 1;
  return s;
}

Result<SnapshotRecord> FakeSandboxes::BuildSnapshot(const std::string& name, const std::string& recipe_text,
                                                    const std::string& context_dir, const BuildLog& log) {
  (void)context_dir;
  SnapshotRecord rec;
  {
    std::lock_guard<std::mutex> l(mu_);
    WARREN_RETURN_IF_ERROR(Enter("BuildSnapshot"));
    if (!ValidName(name)) return Status::InvalidArgument("invalid snapshot name: " + name);
    if (recipe_text.find("FROM") == std::string::npos) return Status::InvalidArgument("recipe needs a FROM line");
    rec.name = name;
    rec.recipe = recipe_text;
    rec.hash = "fake" + std::to_string(std::hash<std::string>{}(recipe_text));
    rec.layers = {rec.hash};
    rec.resources = Resources{0, 1LL << 30, 1024, 0};
    rec.created_at = clock_->NowMicros();
    snapshots_[name] = rec;
  }
  if (log) log("snapshot " + name + " ready");
  return rec;
}

Result<SnapshotRecord> FakeSandboxes::GetSnapshot(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("GetSnapshot"));
  auto it = snapshots_.find(name.empty() ? std::string(kBuiltin) : name);
  if (it == snapshots_.end()) return Status::NotFound("no snapshot " + name);
  return it->second;
}

Result<std::vector<SnapshotRecord>> FakeSandboxes::ListSnapshots() {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("ListSnapshots"));
  std::vector<SnapshotRecord> out;
  for (const auto& [name, rec] : snapshots_) out.push_back(rec);
  return out;
}

Status FakeSandboxes::DeleteSnapshot(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("DeleteSnapshot"));
  if (snapshots_.erase(name) == 0) return Status::NotFound("no snapshot " + name);
  return Status::Ok();
}

Result<IdleReport> FakeSandboxes::EnforceIdlePolicies() {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_RETURN_IF_ERROR(Enter("EnforceIdlePolicies"));
  IdleReport report;
  int64_t now = clock_->NowMicros();
  std::vector<std::string> ids;
  for (const auto& [id, rec] : sandboxes_) ids.push_back(id);
  for (const auto& id : ids) {
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) continue;
    SandboxRecord& rec = it->second;
    if (rec.state == SandboxState::kStarted && rec.auto_stop_minutes > 0 &&
        now - rec.last_activity > rec.auto_stop_minutes * kMicrosPerMinute) {
      (void)StopLocked(rec);
      report.stopped.push_back(id);
    }
    if (rec.state != SandboxState::kStopped && rec.state != SandboxState::kArchived) continue;
    int64_t since = std::max(rec.stopped_at ? rec.stopped_at : rec.updated_at,
                             rec.state == SandboxState::kStopped ? rec.last_activity : 0);
    int64_t idle = now - since;
    if (rec.auto_delete_minutes != kNeverDelete && idle >= rec.auto_delete_minutes * kMicrosPerMinute) {
      (void)DestroyLocked(rec);  // may erase `rec`
      report.deleted.push_back(id);
    } else if (rec.state == SandboxState::kStopped && rec.auto_archive_minutes > 0 &&
               idle >= rec.auto_archive_minutes * kMicrosPerMinute) {
      rec.state = SandboxState::kArchived;
      rec.archive_bytes = 1;
      report.archived.push_back(id);
    }
  }
  return report;
}

Status FakeSandboxes::Crash(const std::string& id_or_name) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_ASSIGN_OR_RETURN(SandboxRecord * r, Load(id_or_name));
  return StopLocked(*r);
}

}  // namespace warren::sandbox
