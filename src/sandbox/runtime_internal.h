// Helpers shared by the files that implement SandboxRuntime (runtime*.cc).
// Internal to the sandbox library: not part of its interface.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "sandbox/files.h"
#include "sandbox/runtime.h"
#include "sandbox/state.h"

namespace warren::sandbox {

bool ValidName(const std::string& n);
bool Live(SandboxState s);
// States in which the sandbox has no subvolume of its own (only an archive).
bool Archived(SandboxState s);

constexpr int64_t kMicrosPerMinute = 60LL * 1000000;

bool FileExists(const std::string& path);
// Waits until `pid` (with `start`) has gone, up to `timeout`.
bool WaitGone(pid_t pid, uint64_t start, std::chrono::milliseconds timeout);
// True when `pid` runs the exec'd warren-init (not the in-process fallback).
bool IsWarrenInit(pid_t pid);
void KillInit(pid_t pid, uint64_t start);
std::string EnvKey(const std::string& kv);
// Appends `add` to `env`, replacing entries with the same key.
void MergeEnv(std::vector<std::string>* env, const std::vector<std::string>& add);

struct UserIds {
  uint32_t uid = 0, gid = 0;
  std::string home = "/root";
};

// Resolves "root", "1000", "1000:1000" or a name from the rootfs's
// /etc/passwd (read through the safe file API).
Result<UserIds> ResolveUser(const RootFs& fs, const std::string& user);
// Validates the network fields of a create request; on success
// `*cidrs` and `*hosts` hold the allow lists in canonical form.
Status ValidateNetwork(const CreateOptions& o, const Features& f, std::vector<std::string>* cidrs,
                       std::vector<std::string>* hosts);
// Networks with a veth and rules ("isolated", "limited").
inline bool RoutedNetwork(const std::string& n) { return n == "isolated" || n == "limited"; }

}  // namespace warren::sandbox
