#include "sandbox/safe_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

constexpr uint64_t kStrict = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;

// RESOLVE_NO_SYMLINKS covers the last component too (ELOOP; O_NOFOLLOW
// would instead hand back the link itself with O_PATH).
int OpenStrict(int dirfd, const char* rel, int flags) {
  return SysOpenat2(dirfd, rel, static_cast<uint64_t>(flags | O_CLOEXEC), 0, kStrict);
}

// Removes everything inside the directory open at `dfd`.
Status EmptyDir(int dfd, const std::string& display, int depth) {
  if (depth > 4096) return Status::FailedPrecondition("tree too deep: " + display);
  // The DIR stream owns its own fd so `dfd` stays usable for unlinkat.
  int rfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (rfd < 0) return ErrnoStatus("open " + display);
  DIR* d = fdopendir(rfd);
  if (d == nullptr) {
    close(rfd);
    return ErrnoStatus("opendir " + display);
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  closedir(d);
  for (const auto& n : names) {
    struct stat st;
    if (fstatat(dfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return ErrnoStatus("stat " + display + "/" + n);
    }
    if (S_ISDIR(st.st_mode)) {
      // O_NOFOLLOW + RESOLVE_NO_SYMLINKS: a directory swapped for a symlink
      // since the fstatat fails (ELOOP/ENOTDIR) instead of being followed;
      // RESOLVE_NO_XDEV: a mount point is never entered.
      int sub = OpenStrict(dfd, n.c_str(), O_RDONLY | O_DIRECTORY);
      if (sub < 0) {
        if (errno == ENOENT) continue;
        return ErrnoStatus("open " + display + "/" + n);
      }
      UniqueFd subfd(sub);
      WARREN_RETURN_IF_ERROR(EmptyDir(subfd.get(), display + "/" + n, depth + 1));
      if (unlinkat(dfd, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        return ErrnoStatus("rmdir " + display + "/" + n);
      }
    } else if (unlinkat(dfd, n.c_str(), 0) != 0 && errno != ENOENT) {
      // EISDIR: swapped for a directory since the fstatat; retry as a tree.
      if (errno == EISDIR) return RemoveTreeAt(dfd, n);
      return ErrnoStatus("unlink " + display + "/" + n);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<std::string>> SplitRelative(std::string_view rel) {
  if (!rel.empty() && rel[0] == '/') return Status::InvalidArgument("path must be relative: " + std::string(rel));
  if (rel.find('\0') != std::string_view::npos) return Status::InvalidArgument("path contains NUL");
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= rel.size()) {
    size_t next = rel.find('/', pos);
    if (next == std::string_view::npos) next = rel.size();
    std::string_view c = rel.substr(pos, next - pos);
    pos = next + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") return Status::InvalidArgument("path must not contain ..: " + std::string(rel));
    if (c.size() > 255) return Status::InvalidArgument("path component too long");
    out.emplace_back(c);
  }
  return out;
}

Result<UniqueFd> OpenBeneath(int dirfd, std::string_view rel, int flags) {
  WARREN_ASSIGN_OR_RETURN(auto comps, SplitRelative(rel));
  std::string joined;
  for (const auto& c : comps) joined += (joined.empty() ? "" : "/") + c;
  if (joined.empty()) joined = ".";
  int fd = OpenStrict(dirfd, joined.c_str(), flags);
  if (fd < 0) return ErrnoStatus("open " + joined);
  return UniqueFd(fd);
}

Result<UniqueFd> MkdirBeneath(int dirfd, std::string_view rel, mode_t mode) {
  WARREN_ASSIGN_OR_RETURN(auto comps, SplitRelative(rel));
  int d0 = OpenStrict(dirfd, ".", O_PATH | O_DIRECTORY);
  if (d0 < 0) return ErrnoStatus("open base directory");
  UniqueFd cur(d0);
  std::string display;
  for (const auto& c : comps) {
    display += "/" + c;
    bool made = mkdirat(cur.get(), c.c_str(), mode) == 0;
    if (!made && errno != EEXIST) return ErrnoStatus("mkdir " + display);
    int next = OpenStrict(cur.get(), c.c_str(), O_PATH | O_DIRECTORY);
    if (next < 0) return ErrnoStatus("open " + display);
    UniqueFd nfd(next);
    if (made) {
      // mkdirat applied the umask; set exactly `mode` on what we created
      // (through the already-resolved fd: no path lookup).
      int rfd = openat(nfd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (rfd < 0 || fchmod(rfd, mode & 07777) != 0) {
        Status s = ErrnoStatus("chmod " + display);
        if (rfd >= 0) close(rfd);
        return s;
      }
      close(rfd);
    }
    cur = std::move(nfd);
  }
  return cur;
}

Status RemoveTreeAt(int dirfd, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return Status::InvalidArgument("bad entry name: " + name);
  }
  struct stat st;
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? Status::Ok() : ErrnoStatus("stat " + name);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) return ErrnoStatus("unlink " + name);
    return Status::Ok();
  }
  int sub = OpenStrict(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY);
  if (sub < 0) return errno == ENOENT ? Status::Ok() : ErrnoStatus("open " + name);
  {
    UniqueFd subfd(sub);
    WARREN_RETURN_IF_ERROR(EmptyDir(subfd.get(), name, 0));
  }
  if (unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return ErrnoStatus("rmdir " + name);
  return Status::Ok();
}

Result<UniqueFd> CloneTreeOfFd(int fd) {
  int t = open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
  if (t < 0) return ErrnoStatus("open_tree");
  return UniqueFd(t);
}

}  // namespace warren::sandbox
