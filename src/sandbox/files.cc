#include "sandbox/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "common/ids.h"
#include "sandbox/safe_path.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

constexpr uint64_t kResolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

Status PathError(int err, const std::string& op, const std::string& path) {
  if (err == ENOENT) return Status::NotFound(op + " " + path + ": no such file or directory");
  if (err == EEXIST) return Status::Conflict(op + " " + path + ": already exists");
  if (err == ENOTDIR) return Status::InvalidArgument(op + " " + path + ": not a directory");
  if (err == EISDIR) return Status::InvalidArgument(op + " " + path + ": is a directory");
  if (err == ENOTEMPTY) return Status::FailedPrecondition(op + " " + path + ": directory not empty");
  if (err == EACCES || err == EPERM || err == EXDEV || err == ELOOP) {
    return Status::PermissionDenied(op + " " + path + ": " + strerror(err));
  }
  return Status::FromErrno(err, op + " " + path);
}

std::string TypeOf(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "dir";
  if (S_ISLNK(m)) return "symlink";
  return "other";
}

FileInfo InfoFromStat(const std::string& name, const struct stat& st) {
  FileInfo fi;
  fi.name = name;
  fi.type = TypeOf(st.st_mode);
  fi.size = st.st_size;
  fi.mode = st.st_mode & 07777;
  fi.uid = st.st_uid;
  fi.gid = st.st_gid;
  fi.mtime_micros = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000 + st.st_mtim.tv_nsec / 1000;
  return fi;
}

// Splits "a/b/c" into ("a/b", "c"); leading slashes are dropped (paths are
// relative to the sandbox root either way). Refuses empty names, "." and "..".
Result<std::pair<std::string, std::string>> Split(const std::string& path) {
  std::string p = path;
  while (!p.empty() && p.back() == '/') p.pop_back();
  size_t s = p.find_first_not_of('/');
  if (s == std::string::npos) return Status::InvalidArgument("path names the root: " + path);
  p = p.substr(s);
  size_t slash = p.rfind('/');
  std::string parent = slash == std::string::npos ? "." : p.substr(0, slash);
  std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  if (name == "." || name == ".." || name.empty()) return Status::InvalidArgument("bad path: " + path);
  return std::make_pair(parent.empty() ? std::string(".") : parent, name);
}

std::string Rel(const std::string& path) {
  size_t s = path.find_first_not_of('/');
  return s == std::string::npos ? "." : path.substr(s);
}

Status RemoveAt(int parent_fd, const std::string& name, const std::string& display) {
  struct stat st;
  if (fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return PathError(errno, "stat", display);
  if (S_ISDIR(st.st_mode)) {
    int sub = openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) return PathError(errno, "open", display);
    DIR* d = fdopendir(sub);
    if (d == nullptr) {
      close(sub);
      return PathError(errno, "opendir", display);
    }
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      names.emplace_back(e->d_name);
    }
    Status s;
    for (const auto& n : names) {
      s = RemoveAt(dirfd(d), n, display + "/" + n);
      if (!s.ok()) break;
    }
    closedir(d);
    if (!s.ok()) return s;
    if (unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0) return PathError(errno, "rmdir", display);
    return Status::Ok();
  }
  if (unlinkat(parent_fd, name.c_str(), 0) != 0) return PathError(errno, "unlink", display);
  return Status::Ok();
}

}  // namespace

Result<RootFs> RootFs::Open(const std::string& host_path) {
  UniqueFd fd(open(host_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoStatus("open rootfs " + host_path);
  return RootFs(std::move(fd));
}

void RootFs::MapIds(FileInfo* fi) const {
  if (id_base_ < 0) return;
  auto map = [&](uint32_t* id) {
    int64_t v = static_cast<int64_t>(*id) - id_base_;
    if (v >= 0 && v < 65536) *id = static_cast<uint32_t>(v);
  };
  map(&fi->uid);
  map(&fi->gid);
}

// Runs the enclosing write as the sandbox root when the view shows host ids.
#define WARREN_AS_SANDBOX_ROOT()                                                          \
  std::optional<ScopedFsIds> as_root_;                                                    \
  if (id_base_ >= 0) {                                                                    \
    as_root_.emplace(static_cast<uint32_t>(id_base_), static_cast<uint32_t>(id_base_));   \
    if (!as_root_->status().ok()) return as_root_->status();                              \
  }

Result<UniqueFd> RootFs::Resolve(const std::string& path, int flags, uint32_t mode) const {
  int fd = SysOpenat2(fd_.get(), Rel(path).c_str(), static_cast<uint64_t>(flags | O_CLOEXEC), mode, kResolve);
  if (fd < 0) return PathError(errno, "open", path);
  return UniqueFd(fd);
}

Result<std::pair<UniqueFd, std::string>> RootFs::OpenParent(const std::string& path) const {
  WARREN_ASSIGN_OR_RETURN(auto parts, Split(path));
  WARREN_ASSIGN_OR_RETURN(UniqueFd pfd, Resolve(parts.first, O_RDONLY | O_DIRECTORY));
  return std::make_pair(std::move(pfd), parts.second);
}

Result<std::vector<FileInfo>> RootFs::List(const std::string& path) const {
  WARREN_ASSIGN_OR_RETURN(UniqueFd dfd, Resolve(path, O_RDONLY | O_DIRECTORY));
  int dup_fd = dup(dfd.get());
  if (dup_fd < 0) return ErrnoStatus("dup");
  DIR* d = fdopendir(dup_fd);
  if (d == nullptr) {
    close(dup_fd);
    return PathError(errno, "list", path);
  }
  std::vector<FileInfo> out;
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dfd.get(), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    FileInfo fi = InfoFromStat(e->d_name, st);
    MapIds(&fi);
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlinkat(dfd.get(), e->d_name, buf, sizeof(buf));
      if (n > 0) fi.link_target.assign(buf, static_cast<size_t>(n));
    }
    out.push_back(std::move(fi));
  }
  closedir(d);
  std::sort(out.begin(), out.end(), [](const FileInfo& a, const FileInfo& b) { return a.name < b.name; });
  return out;
}

Result<FileInfo> RootFs::Stat(const std::string& path) const {
  struct stat st;
  if (Rel(path) == ".") {
    if (fstat(fd_.get(), &st) != 0) return ErrnoStatus("stat /");
    FileInfo fi = InfoFromStat("/", st);
    MapIds(&fi);
    return fi;
  }
  WARREN_ASSIGN_OR_RETURN(auto parent, OpenParent(path));
  if (fstatat(parent.first.get(), parent.second.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return PathError(errno, "stat", path);
  }
  FileInfo fi = InfoFromStat(parent.second, st);
  MapIds(&fi);
  if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    ssize_t n = readlinkat(parent.first.get(), parent.second.c_str(), buf, sizeof(buf));
    if (n > 0) fi.link_target.assign(buf, static_cast<size_t>(n));
  }
  return fi;
}

Result<UniqueFd> RootFs::OpenRead(const std::string& path) const {
  WARREN_ASSIGN_OR_RETURN(UniqueFd fd, Resolve(path, O_RDONLY | O_NONBLOCK));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return ErrnoStatus("fstat");
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument("not a regular file: " + path);
  int fl = fcntl(fd.get(), F_GETFL);
  fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
  return fd;
}

Result<UniqueFd> RootFs::OpenWrite(const std::string& path, uint32_t mode) const {
  WARREN_AS_SANDBOX_ROOT();
  WARREN_ASSIGN_OR_RETURN(UniqueFd fd, Resolve(path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK, mode));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return ErrnoStatus("fstat");
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument("not a regular file: " + path);
  int fl = fcntl(fd.get(), F_GETFL);
  fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
  return fd;
}

Status RootFs::ReplaceFileNoFollow(const std::string& path, std::string_view data, uint32_t mode,
                                   uint32_t dir_mode) const {
  WARREN_AS_SANDBOX_ROOT();
  WARREN_ASSIGN_OR_RETURN(auto comps, SplitRelative(Rel(path)));
  if (comps.empty()) return Status::InvalidArgument("bad path: " + path);
  const std::string name = comps.back();
  comps.pop_back();
  std::string dir;
  for (const auto& c : comps) dir += (dir.empty() ? "" : "/") + c;
  UniqueFd dfd;
  if (dir.empty()) {
    WARREN_ASSIGN_OR_RETURN(dfd, OpenBeneath(fd_.get(), ".", O_PATH | O_DIRECTORY));
  } else {
    auto made = MkdirBeneath(fd_.get(), dir, dir_mode);
    if (!made.ok()) return made.status().WithContext("write " + path);
    dfd = std::move(made).value();
  }
  unsigned char rnd[8];
  RandomBytes(rnd, sizeof(rnd));
  std::string tmp = ".warren-";
  for (unsigned char b : rnd) {
    static const char* kHex = "0123456789abcdef";
    tmp += kHex[b >> 4];
    tmp += kHex[b & 15];
  }
  tmp += ".tmp";
  int fd = openat(dfd.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
  if (fd < 0) return PathError(errno, "create", path);
  UniqueFd out(fd);
  int rc = WriteAll(out.get(), data.data(), data.size());
  if (rc == 0 && fchmod(out.get(), mode & 07777) != 0) rc = -errno;  // exactly `mode`, whatever the umask
  if (rc < 0 || renameat(dfd.get(), tmp.c_str(), dfd.get(), name.c_str()) != 0) {
    int err = rc < 0 ? -rc : errno;
    unlinkat(dfd.get(), tmp.c_str(), 0);
    return PathError(err, "write", path);
  }
  return Status::Ok();
}

Result<std::string> RootFs::ReadFile(const std::string& path, int64_t max_bytes) const {
  WARREN_ASSIGN_OR_RETURN(UniqueFd fd, OpenRead(path));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (static_cast<int64_t>(out.size()) > max_bytes) return Status::TooLarge("file larger than limit: " + path);
  }
  return out;
}

Status RootFs::WriteFile(const std::string& path, std::string_view data, uint32_t mode) const {
  WARREN_ASSIGN_OR_RETURN(UniqueFd fd, OpenWrite(path, mode));
  int rc = WriteAll(fd.get(), data.data(), data.size());
  if (rc < 0) return Status::FromErrno(-rc, "write " + path);
  return Status::Ok();
}

Status RootFs::Mkdir(const std::string& path, bool parents, uint32_t mode) const {
  WARREN_AS_SANDBOX_ROOT();
  if (!parents) {
    WARREN_ASSIGN_OR_RETURN(auto parent, OpenParent(path));
    if (mkdirat(parent.first.get(), parent.second.c_str(), mode) != 0) return PathError(errno, "mkdir", path);
    return Status::Ok();
  }
  std::string rel = Rel(path);
  if (rel == ".") return Status::Ok();
  std::string cur;
  size_t pos = 0;
  while (pos <= rel.size()) {
    size_t next = rel.find('/', pos);
    if (next == std::string::npos) next = rel.size();
    std::string comp = rel.substr(pos, next - pos);
    pos = next + 1;
    if (comp.empty() || comp == ".") continue;
    cur = cur.empty() ? comp : cur + "/" + comp;
    auto existing = Resolve(cur, O_PATH | O_DIRECTORY);
    if (existing.ok()) continue;
    WARREN_ASSIGN_OR_RETURN(auto parent, OpenParent(cur));
    if (mkdirat(parent.first.get(), parent.second.c_str(), mode) != 0 && errno != EEXIST) {
      return PathError(errno, "mkdir", "/" + cur);
    }
  }
  return Status::Ok();
}

Status RootFs::Move(const std::string& from, const std::string& to) const {
  WARREN_AS_SANDBOX_ROOT();
  WARREN_ASSIGN_OR_RETURN(auto src, OpenParent(from));
  WARREN_ASSIGN_OR_RETURN(auto dst, OpenParent(to));
  if (renameat(src.first.get(), src.second.c_str(), dst.first.get(), dst.second.c_str()) != 0) {
    return PathError(errno, "move", from);
  }
  return Status::Ok();
}

Status RootFs::Delete(const std::string& path, bool recursive) const {
  WARREN_ASSIGN_OR_RETURN(auto parent, OpenParent(path));
  if (recursive) return RemoveAt(parent.first.get(), parent.second, path);
  struct stat st;
  if (fstatat(parent.first.get(), parent.second.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return PathError(errno, "stat", path);
  }
  int flags = S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0;
  if (unlinkat(parent.first.get(), parent.second.c_str(), flags) != 0) return PathError(errno, "delete", path);
  return Status::Ok();
}

Status RootFs::Chmod(const std::string& path, uint32_t mode) const {
  WARREN_ASSIGN_OR_RETURN(UniqueFd fd, Resolve(path, O_PATH));
  // fchmod refuses O_PATH fds; go through the host's /proc magic link to the
  // already-resolved inode.
  std::string proc = "/proc/self/fd/" + std::to_string(fd.get());
  if (chmod(proc.c_str(), mode & 07777) != 0) return PathError(errno, "chmod", path);
  return Status::Ok();
}

Status RootFs::CopyIn(const std::string& host_src, const std::string& dst, bool no_symlinks) const {
  std::string src = host_src;
  while (src.size() > 1 && src.back() == '/') src.pop_back();
  size_t slash = src.rfind('/');
  std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : src.substr(0, slash);
  std::string name = slash == std::string::npos ? src : src.substr(slash + 1);
  if (name.empty() || name == "..") return Status::InvalidArgument("bad copy source: " + host_src);
  // From here on the source tree is walked fd-relative and never through a
  // symlink, so swapping a component for a link while we copy (the source
  // may be writable by someone else, e.g. a build context in a volume)
  // cannot make us read a file outside it.
  int pfd = no_symlinks ? SysOpenat2(AT_FDCWD, parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                                     RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
                        : open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0) return ErrnoStatus("open " + parent);
  UniqueFd parent_fd(pfd);
  return CopyInAt(parent_fd.get(), name, host_src, dst);
}

Status RootFs::CopyInAt(int src_dirfd, const std::string& name, const std::string& display,
                        const std::string& dst) const {
  WARREN_AS_SANDBOX_ROOT();
  struct stat st;
  if (fstatat(src_dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoStatus("stat " + display);
  if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    ssize_t n = readlinkat(src_dirfd, name.c_str(), buf, sizeof(buf) - 1);
    if (n < 0) return ErrnoStatus("readlink " + display);
    buf[n] = '\0';
    WARREN_ASSIGN_OR_RETURN(auto parent, OpenParent(dst));
    unlinkat(parent.first.get(), parent.second.c_str(), 0);
    if (symlinkat(buf, parent.first.get(), parent.second.c_str()) != 0) return PathError(errno, "symlink", dst);
    return Status::Ok();
  }
  if (S_ISDIR(st.st_mode)) {
    WARREN_RETURN_IF_ERROR(Mkdir(dst, true, st.st_mode & 07777));
    int dfd = openat(src_dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return ErrnoStatus("open " + display);
    UniqueFd dir_fd(dfd);
    int lfd = dup(dfd);
    DIR* d = lfd < 0 ? nullptr : fdopendir(lfd);
    if (d == nullptr) {
      if (lfd >= 0) close(lfd);
      return ErrnoStatus("opendir " + display);
    }
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      names.emplace_back(e->d_name);
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    std::string base = dst;
    while (!base.empty() && base.back() == '/') base.pop_back();
    for (const auto& n : names) WARREN_RETURN_IF_ERROR(CopyInAt(dir_fd.get(), n, display + "/" + n, base + "/" + n));
    return Status::Ok();
  }
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument("cannot copy special file " + display);
  // O_NOFOLLOW: swapped for a symlink since the fstatat -> ELOOP, not followed.
  UniqueFd in(openat(src_dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!in) return ErrnoStatus("open " + display);
  struct stat ist;
  if (fstat(in.get(), &ist) != 0 || !S_ISREG(ist.st_mode)) return Status::InvalidArgument("not a regular file: " + display);
  WARREN_ASSIGN_OR_RETURN(UniqueFd out, OpenWrite(dst, st.st_mode & 07777));
  char buf[65536];
  for (;;) {
    ssize_t n = read(in.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + display);
    }
    if (n == 0) break;
    int rc = WriteAll(out.get(), buf, static_cast<size_t>(n));
    if (rc < 0) return Status::FromErrno(-rc, "write " + dst);
  }
  if (fchmod(out.get(), st.st_mode & 07777) != 0) return ErrnoStatus("chmod " + dst);
  return Status::Ok();
}

}  // namespace warren::sandbox
