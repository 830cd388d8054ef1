#include "orchestrator/sandbox_host.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "sandbox/sys.h"

namespace warren::orchestrator {
namespace {

std::string ReadLink(const std::string& path) {
  char buf[256];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Result<std::vector<sandbox::SandboxRecord>> SandboxHost::ListWithLabel(const std::string& key,
                                                                       const std::string& value) {
  WARREN_ASSIGN_OR_RETURN(auto all, List());
  std::vector<sandbox::SandboxRecord> out;
  for (auto& r : all) {
    auto it = r.labels.find(key);
    if (it != r.labels.end() && it->second == value) out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<sandbox::SandboxRecord>> SandboxHost::ListInState(sandbox::SandboxState state) {
  WARREN_ASSIGN_OR_RETURN(auto all, List());
  std::vector<sandbox::SandboxRecord> out;
  for (auto& r : all)
    if (r.state == state) out.push_back(std::move(r));
  return out;
}

// One process of the host's /proc (`name` is its pid), or nothing if it is
// gone meanwhile.
static std::optional<SandboxProcess> ReadProcess(const char* name, long pid) {
  std::string base = "/proc/" + std::string(name);
  SandboxProcess p;
  p.host_pid = static_cast<pid_t>(pid);
  std::istringstream st(Slurp(base + "/status"));
  for (std::string line; std::getline(st, line);) {
    if (line.rfind("NSpid:", 0) != 0) continue;
    std::istringstream ids(line.substr(6));
    for (long v; ids >> v;) p.ns_pid = static_cast<pid_t>(v);  // the innermost
  }
  auto start = sandbox::ProcessStartTime(p.host_pid);
  if (!start.ok()) return std::nullopt;  // gone meanwhile
  p.start_time = *start;
  std::string cmd = Slurp(base + "/cmdline");
  size_t pos = 0;
  while (pos < cmd.size()) {
    size_t z = cmd.find('\0', pos);
    if (z == std::string::npos) z = cmd.size();
    p.argv.push_back(cmd.substr(pos, z - pos));
    pos = z + 1;
  }
  return p;
}

// Walks /proc once; each process whose pid namespace is a key of `by_ns`
// goes to that key's list in `out`.
static Status ScanProc(const std::map<std::string, std::string>& by_ns,
                       std::map<std::string, std::vector<SandboxProcess>>* out) {
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return Status::IOError("opendir /proc");
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    auto it = by_ns.find(ReadLink("/proc/" + std::string(e->d_name) + "/ns/pid"));
    if (it == by_ns.end()) continue;
    if (auto p = ReadProcess(e->d_name, pid)) (*out)[it->second].push_back(std::move(*p));
  }
  ::closedir(d);
  return Status::Ok();
}

Result<std::vector<SandboxProcess>> ProcessesInPidNamespaceOf(pid_t init_pid, uint64_t init_start_time) {
  if (init_pid <= 0 || !sandbox::ProcessAlive(init_pid, init_start_time)) return std::vector<SandboxProcess>{};
  const std::string ns = ReadLink("/proc/" + std::to_string(init_pid) + "/ns/pid");
  if (ns.empty()) return Status::IOError("cannot read the pid namespace of " + std::to_string(init_pid));
  std::map<std::string, std::vector<SandboxProcess>> out;
  WARREN_RETURN_IF_ERROR(ScanProc({{ns, ""}}, &out));
  return std::move(out[""]);
}

Result<std::map<std::string, std::vector<SandboxProcess>>> SandboxHost::ProcessesOfMany(
    const std::vector<sandbox::SandboxRecord>& started) {
  std::map<std::string, std::vector<SandboxProcess>> out;
  for (const auto& rec : started) {
    WARREN_ASSIGN_OR_RETURN(auto procs, Processes(rec.id));
    if (!procs.empty()) out[rec.id] = std::move(procs);
  }
  return out;
}

Result<std::map<std::string, std::vector<SandboxProcess>>> RuntimeSandboxHost::ProcessesOfMany(
    const std::vector<sandbox::SandboxRecord>& started) {
  // One /proc walk for the whole pass, not one per sandbox: a pass over
  // thousands of started sandboxes must not cost sandboxes x processes.
  std::map<std::string, std::string> by_ns;  // pid namespace -> sandbox id
  for (const auto& rec : started) {
    if (rec.state != sandbox::SandboxState::kStarted || rec.init_pid <= 0) continue;
    if (!sandbox::ProcessAlive(rec.init_pid, rec.init_start_time)) continue;
    const std::string ns = ReadLink("/proc/" + std::to_string(rec.init_pid) + "/ns/pid");
    if (!ns.empty()) by_ns[ns] = rec.id;
  }
  std::map<std::string, std::vector<SandboxProcess>> out;
  if (by_ns.empty()) return out;
  WARREN_RETURN_IF_ERROR(ScanProc(by_ns, &out));
  return out;
}

Result<std::vector<SandboxProcess>> RuntimeSandboxHost::Processes(const std::string& id) {
  WARREN_ASSIGN_OR_RETURN(sandbox::SandboxRecord rec, rt_->Get(id));
  if (rec.state != sandbox::SandboxState::kStarted) return std::vector<SandboxProcess>{};
  return ProcessesInPidNamespaceOf(rec.init_pid, rec.init_start_time);
}

Result<std::string> RuntimeSandboxHost::ReadFile(const std::string& id, const std::string& path) {
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs fs, rt_->Files(id));
  return fs.ReadFile(path, 1 << 20);
}

}  // namespace warren::orchestrator
