// Files: a file API over a sandbox's root filesystem, used from the host.
// Every path is resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
// relative to the rootfs directory fd, so absolute symlinks and ".." inside
// the sandbox can never reach a host path, even if the sandbox swaps
// components while we resolve. Operations on a name itself (delete, move,
// mkdir, lstat) resolve the parent safely and act on the last component
// without following it.
//
// Files written here are owned by on-disk uid/gid 0, which the sandbox sees
// as its root (its rootfs is an idmapped mount). A view that shows host ids
// instead (an overlay pool volume whose host view is the running sandbox's
// own overlay instance) needs set_host_id_base(): writes then run with the
// sandbox root's host fsuid/fsgid, and reported owners are translated back.
// Ownership: a RootFs owns its directory fd. Thread-safety: thread-safe (all
// state is the fd; operations are independent syscalls).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace warren::sandbox {

struct FileInfo {
  std::string name;
  std::string type;  // "file", "dir", "symlink", "other"
  int64_t size = 0;
  uint32_t mode = 0;  // permission bits (07777)
  uint32_t uid = 0, gid = 0;
  int64_t mtime_micros = 0;
  std::string link_target;  // for symlinks
};

class RootFs final {
 public:
  static Result<RootFs> Open(const std::string& host_path);
  RootFs(RootFs&&) = default;
  RootFs& operator=(RootFs&&) = default;
  RootFs(const RootFs&) = delete;
  RootFs& operator=(const RootFs&) = delete;

  Result<std::vector<FileInfo>> List(const std::string& path) const;
  Result<FileInfo> Stat(const std::string& path) const;  // does not follow a final symlink
  Result<std::string> ReadFile(const std::string& path, int64_t max_bytes = 64LL << 20) const;
  Status WriteFile(const std::string& path, std::string_view data, uint32_t mode = 0644) const;
  Status Mkdir(const std::string& path, bool parents, uint32_t mode = 0755) const;
  Status Move(const std::string& from, const std::string& to) const;
  Status Delete(const std::string& path, bool recursive) const;
  Status Chmod(const std::string& path, uint32_t mode) const;
  // Writes `data` to `path` with no link followed anywhere, for files the
  // host leaves in a tree the sandbox may have prepared (tool outputs): the
  // parent directories are resolved and created (mode `dir_mode`) with
  // safe_path's MkdirBeneath (RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH |
  // RESOLVE_NO_XDEV: a symlink component fails with ELOOP); the bytes go to
  // a fresh temp file in that directory (O_CREAT | O_EXCL | O_NOFOLLOW) that
  // is then renamed over the last component, so an entry planted there (a
  // symlink to a host path, say) is replaced, never followed, and readers
  // see the old file or the whole new one.
  Status ReplaceFileNoFollow(const std::string& path, std::string_view data, uint32_t mode = 0644,
                             uint32_t dir_mode = 0755) const;
  // Opens `path` (following symlinks inside the root) for streaming I/O.
  Result<UniqueFd> OpenRead(const std::string& path) const;
  Result<UniqueFd> OpenWrite(const std::string& path, uint32_t mode = 0644) const;
  // Copies a host file or directory tree (symlinks copied as links) to `dst`.
  // Below `host_src` the walk is fd-relative and never follows a link;
  // `no_symlinks` also refuses (ELOOP) a symlink anywhere in `host_src`'s
  // own path (for sources someone else may write, e.g. a build context).
  Status CopyIn(const std::string& host_src, const std::string& dst, bool no_symlinks = false) const;

  int fd() const { return fd_.get(); }
  // The host uid/gid that the sandbox's root has in this view (-1: the view
  // shows on-disk ids, the default).
  void set_host_id_base(int64_t base) { id_base_ = base; }

 private:
  explicit RootFs(UniqueFd fd) : fd_(std::move(fd)) {}
  // Opens the parent directory of `path` and returns its last component.
  Result<std::pair<UniqueFd, std::string>> OpenParent(const std::string& path) const;
  Result<UniqueFd> Resolve(const std::string& path, int flags, uint32_t mode = 0) const;
  Status CopyInAt(int src_dirfd, const std::string& name, const std::string& display, const std::string& dst) const;
  // Translates host ids of this view back to sandbox ids.
  void MapIds(FileInfo* fi) const;
  UniqueFd fd_;
  int64_t id_base_ = -1;
};

}  // namespace warren::sandbox
