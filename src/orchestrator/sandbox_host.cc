#include "orchestrator/sandbox_host.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
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

Result<std::vector<SandboxProcess>> ProcessesInPidNamespaceOf(pid_t init_pid, uint64_t init_start_time) {
  std::vector<SandboxProcess> out;
  if (init_pid <= 0 || !sandbox::ProcessAlive(init_pid, init_start_time)) return out;
  const std::string ns = ReadLink("/proc/" + std::to_string(init_pid) + "/ns/pid");
  if (ns.empty()) return Status::IOError("cannot read the pid namespace of " + std::to_string(init_pid));
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return Status::IOError("opendir /proc");
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::string base = "/proc/" + std::string(e->d_name);
    if (ReadLink(base + "/ns/pid") != ns) continue;
    SandboxProcess p;
    p.host_pid = static_cast<pid_t>(pid);
    std::istringstream st(Slurp(base + "/status"));
    for (std::string line; std::getline(st, line);) {
      if (line.rfind("NSpid:", 0) != 0) continue;
      std::istringstream ids(line.substr(6));
      for (long v; ids >> v;) p.ns_pid = static_cast<pid_t>(v);  // the innermost
    }
    auto start = sandbox::ProcessStartTime(p.host_pid);
    if (!start.ok()) continue;  // gone meanwhile
    p.start_time = *start;
    std::string cmd = Slurp(base + "/cmdline");
    size_t pos = 0;
    while (pos < cmd.size()) {
      size_t z = cmd.find('\0', pos);
      if (z == std::string::npos) z = cmd.size();
      p.argv.push_back(cmd.substr(pos, z - pos));
      pos = z + 1;
    }
    out.push_back(std::move(p));
  }
  ::closedir(d);
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
