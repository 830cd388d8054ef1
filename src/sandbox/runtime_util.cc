// SandboxRuntime: helpers shared by runtime*.cc (runtime_internal.h).
#include "sandbox/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "common/ids.h"
#include "common/log.h"
#include "sandbox/archive.h"
#include "sandbox/criu.h"
#include "sandbox/netfilter.h"
#include "sandbox/network.h"
#include "sandbox/egress_sniff.h"
#include "sandbox/runtime_internal.h"
#include "sandbox/sys.h"
#include "sandbox/userns.h"

namespace warren::sandbox {

using std::chrono::milliseconds;

using std::chrono::milliseconds;

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 63) return false;
  for (char c : n) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return std::isalnum(static_cast<unsigned char>(n[0]));
}

bool Live(SandboxState s) {
  return s == SandboxState::kStarted || s == SandboxState::kPaused;
}

// States in which the sandbox has no subvolume of its own (only an archive).
bool Archived(SandboxState s) {
  return s == SandboxState::kArchiving || s == SandboxState::kArchived || s == SandboxState::kRestoring;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Waits until `pid` (with `start`) has gone, up to `timeout`.
bool WaitGone(pid_t pid, uint64_t start, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (ProcessAlive(pid, start)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

// True when `pid` runs the exec'd warren-init (not the in-process fallback).
bool IsWarrenInit(pid_t pid) {
  char buf[256];
  std::string link = "/proc/" + std::to_string(pid) + "/exe";
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return false;
  return std::string_view(buf, static_cast<size_t>(n)).rfind("/memfd:warren-init", 0) == 0;
}

void KillInit(pid_t pid, uint64_t start) {
  if (pid <= 0) return;
  UniqueFd fd(SysPidfdOpen(pid, 0));
  // Re-check identity after opening the pidfd: the pid cannot be reused
  // while we hold it.
  if (fd && ProcessAlive(pid, start)) SysPidfdSendSignal(fd.get(), SIGKILL);
}

std::string EnvKey(const std::string& kv) { return kv.substr(0, kv.find('=')); }

// Appends `add` to `env`, replacing entries with the same key.
void MergeEnv(std::vector<std::string>* env, const std::vector<std::string>& add) {
  for (const auto& kv : add) {
    std::string k = EnvKey(kv);
    auto it = std::find_if(env->begin(), env->end(), [&](const std::string& e) { return EnvKey(e) == k; });
    if (it != env->end()) *it = kv;
    else env->push_back(kv);
  }
}

// Resolves "root", "1000", "1000:1000" or a name from the rootfs's
// /etc/passwd (read through the safe file API).
Result<UserIds> ResolveUser(const RootFs& fs, const std::string& user) {
  UserIds u;
  if (user.empty() || user == "root" || user == "0") return u;
  auto all_digits = [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  };
  std::string name = user, group;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    name = user.substr(0, colon);
    group = user.substr(colon + 1);
  }
  bool found = false;
  if (all_digits(name)) {
    u.uid = static_cast<uint32_t>(std::stoul(name));
    u.gid = u.uid;
    u.home = "/";
    found = true;
  }
  auto passwd = fs.ReadFile("/etc/passwd", 1 << 20);
  if (passwd.ok()) {
    std::istringstream in(*passwd);
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> f;
      std::stringstream ls(line);
      std::string x;
      while (std::getline(ls, x, ':')) f.push_back(x);
      if (f.size() < 6 || !all_digits(f[2]) || !all_digits(f[3])) continue;
      if (f[0] == name || (found && std::to_string(u.uid) == f[2])) {
        u.uid = static_cast<uint32_t>(std::stoul(f[2]));
        u.gid = static_cast<uint32_t>(std::stoul(f[3]));
        u.home = f[5];
        found = true;
        break;
      }
    }
  }
  if (!found) return Status::InvalidArgument("unknown user: " + user);
  if (!group.empty()) {
    if (!all_digits(group)) return Status::InvalidArgument("group must be numeric: " + group);
    u.gid = static_cast<uint32_t>(std::stoul(group));
  }
  if (u.uid >= kIdRangeSize || u.gid >= kIdRangeSize) return Status::InvalidArgument("user id outside the sandbox range");
  return u;
}

// Validates the network fields of a create request; on success
// `*cidrs` holds the allow list in canonical form.
Status ValidateNetwork(const CreateOptions& o, const Features& f, std::vector<std::string>* cidrs,
                       std::vector<std::string>* hosts) {
  if (o.network != "none" && o.network != "isolated" && o.network != "limited") {
    return Status::InvalidArgument("unknown network policy '" + o.network + "' (none, isolated, limited)");
  }
  if (o.network != "limited" && !o.allow_hosts.empty()) {
    return Status::InvalidArgument("allow_hosts needs network 'limited'");
  }
  if (o.network == "none") {
    if (!o.allow_cidrs.empty() || o.block_all || !o.dns.empty()) {
      return Status::InvalidArgument("allow_cidrs, block_all and dns need network 'isolated' or 'limited'");
    }
    return Status::Ok();
  }
  if (!f.network_isolated) {
    return Status::FailedPrecondition("network '" + o.network + "' is not available on this host: " + f.network_reason);
  }
  if (o.network == "limited") {
    WARREN_ASSIGN_OR_RETURN(HostAllowlist l, HostAllowlist::Parse(o.allow_hosts));
    *hosts = l.entries();
  }
  if (o.allow_cidrs.size() > 10) return Status::InvalidArgument("at most 10 allow_cidrs");
  for (const auto& c : o.allow_cidrs) {
    WARREN_ASSIGN_OR_RETURN(Ipv4Cidr cidr, ParseIpv4Cidr(c));
    std::string canon = cidr.ToString();
    if (std::find(cidrs->begin(), cidrs->end(), canon) == cidrs->end()) cidrs->push_back(canon);
  }
  if (o.dns.size() > 3) return Status::InvalidArgument("at most 3 dns servers");
  for (const auto& d : o.dns) {
    auto a = ParseIpv4(d);
    if (!a.ok()) return Status::InvalidArgument("dns: " + a.status().message());
  }
  return Status::Ok();
}

}  // namespace warren::sandbox
