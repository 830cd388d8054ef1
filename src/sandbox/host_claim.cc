#include "sandbox/host_claim.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/json.h"
#include "common/unique_fd.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

// nullopt: no such entry.
Result<std::optional<std::string>> ReadAllAt(int dirfd, const std::string& name) {
  UniqueFd fd(openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd && errno == ENOENT) return std::optional<std::string>();
  if (!fd) return Status::FromErrno(errno, "open claim " + name);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "read claim " + name);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 64 * 1024) return Status::InvalidArgument("claim " + name + " is too large");
  }
  return std::optional<std::string>(std::move(out));
}

Status WriteAt(int dirfd, const std::string& name, const std::string& body) {
  const std::string tmp = name + ".tmp";
  (void)unlinkat(dirfd, tmp.c_str(), 0);
  UniqueFd fd(openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return Status::FromErrno(errno, "create claim " + tmp);
  if (int rc = WriteAll(fd.get(), body.data(), body.size()); rc < 0) return Status::FromErrno(-rc, "write claim " + tmp);
  if (renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) return Status::FromErrno(errno, "rename claim " + name);
  return Status::Ok();
}

// True when the claim names a directory that still exists as the same
// device and inode.
bool ClaimAlive(const Json& j) {
  const std::string dir = j.value("data_dir", "");
  struct stat st;
  return !dir.empty() && stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
         static_cast<uint64_t>(st.st_dev) == j.value("dev", uint64_t{0}) &&
         static_cast<uint64_t>(st.st_ino) == j.value("ino", uint64_t{0});
}

// Removes the claims of data dirs that are gone (one small file per test
// data dir would otherwise pile up until reboot). Called under the flock.
void PruneStale(int dirfd, const std::string& keep) {
  UniqueFd listfd(openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listfd) return;
  DIR* d = fdopendir(listfd.release());
  if (!d) return;
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.rfind("prefix-", 0) == 0 && n != keep) names.push_back(n);
  }
  closedir(d);
  for (const auto& n : names) {
    auto body = ReadAllAt(dirfd, n);
    if (!body.ok() || !*body) continue;
    Json j = Json::parse(**body, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && !ClaimAlive(j)) (void)unlinkat(dirfd, n.c_str(), 0);
  }
}

}  // namespace

Status ClaimCgroupPrefix(const std::string& registry_dir, const std::string& prefix, const std::string& data_dir) {
  if (registry_dir.empty() || registry_dir[0] != '/') return Status::InvalidArgument("registry dir must be absolute");
  struct stat own;
  if (stat(data_dir.c_str(), &own) != 0) return Status::FromErrno(errno, "stat data dir " + data_dir);
  char real[PATH_MAX];
  const std::string own_path = realpath(data_dir.c_str(), real) ? std::string(real) : data_dir;

  // The registry: an operator's path (/run/warren/runtimes), made root-only;
  // the directory itself is opened without following a link.
  for (size_t pos = 1; pos <= registry_dir.size(); ++pos) {
    if (pos != registry_dir.size() && registry_dir[pos] != '/') continue;
    const std::string part = registry_dir.substr(0, pos);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno(errno, "mkdir " + part);
  }
  UniqueFd dir(open(registry_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return Status::FromErrno(errno, "open runtime registry " + registry_dir);
  while (flock(dir.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return Status::FromErrno(errno, "lock runtime registry " + registry_dir);
  }

  const std::string name = "prefix-" + Sha256Hex(prefix).substr(0, 24) + ".json";
  WARREN_ASSIGN_OR_RETURN(std::optional<std::string> body, ReadAllAt(dir.get(), name));
  if (body) {
    Json j = Json::parse(*body, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("prefix", "") == prefix) {
      const std::string other = j.value("data_dir", "");
      const uint64_t dev = j.value("dev", uint64_t{0}), ino = j.value("ino", uint64_t{0});
      if (dev == static_cast<uint64_t>(own.st_dev) && ino == static_cast<uint64_t>(own.st_ino)) {
        if (other == own_path) return Status::Ok();  // ours, unchanged
      } else {
        if (ClaimAlive(j)) {
          return Status::FailedPrecondition(
              "the sandbox cgroup prefix '" + prefix + "' is used on this host by the data dir " + other +
              " (its cgroups, veths and nft table are named after the prefix, and this data dir's recovery would "
              "remove them as orphans); open that data dir instead (--data-dir " + other +
              "), or give this one a prefix of its own before its first open (sandbox.cgroup_prefix / "
              "WARREN_SANDBOX_CGROUP_PREFIX for warren serve, --cgroup-prefix for warren orchestrator) and a "
              "network_pool that does not overlap; a data dir that is gone frees its prefix");
        }
      }
    }
    // Malformed, stale (its data dir is gone or another directory now), or
    // this data dir under a new path: (re)written below.
  }
  PruneStale(dir.get(), name);
  Json claim = {{"prefix", prefix},
                {"data_dir", own_path},
                {"dev", static_cast<uint64_t>(own.st_dev)},
                {"ino", static_cast<uint64_t>(own.st_ino)},
                {"pid", static_cast<int64_t>(getpid())}};
  return WriteAt(dir.get(), name, claim.dump() + "\n");
}

}  // namespace warren::sandbox
