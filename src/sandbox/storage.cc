#include "sandbox/storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <endian.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "common/log.h"
#include "common/unique_fd.h"
#include "sandbox/mounts.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

bool IsBtrfs(const std::string& path) {
  struct statfs sf;
  return statfs(path.c_str(), &sf) == 0 && sf.f_type == BTRFS_SUPER_MAGIC;
}

std::pair<std::string, std::string> SplitParent(const std::string& path) {
  size_t p = path.rfind('/');
  if (p == std::string::npos) return {".", path};
  return {p == 0 ? "/" : path.substr(0, p), path.substr(p + 1)};
}

// The source device of the mount at `mountpoint` ("" if none).
std::string MountSource(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mp;
    ls >> id >> parent >> devno >> root >> mp;
    if (mp != mountpoint) continue;
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) return "";
    std::istringstream rest(line.substr(dash + 3));
    std::string fstype, source;
    rest >> fstype >> source;
    return source;
  }
  return "";
}


// The subvolume (tree) id of the btrfs directory open at `fd`.
Result<uint64_t> SubvolumeId(int fd) {
  struct btrfs_ioctl_ino_lookup_args args;
  memset(&args, 0, sizeof(args));
  args.treeid = 0;
  args.objectid = BTRFS_FIRST_FREE_OBJECTID;
  if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &args) != 0) return ErrnoStatus("BTRFS_IOC_INO_LOOKUP");
  return static_cast<uint64_t>(args.treeid);
}

// Calls fn(offset, item, item_len) for every item of `type` with key
// objectid `objectid` in tree `tree` (BTRFS_IOC_TREE_SEARCH, restarted past
// the last key until the range is exhausted). NotFound if the tree does not
// exist (e.g. no quota tree while accounting is off).
Status SearchTree(int fd, uint64_t tree, uint64_t objectid, uint32_t type,
                  const std::function<void(uint64_t, const char*, uint32_t)>& fn) {
  struct btrfs_ioctl_search_args args;
  memset(&args, 0, sizeof(args));
  auto& k = args.key;
  k.tree_id = tree;
  k.min_objectid = k.max_objectid = objectid;
  k.min_type = k.max_type = type;
  k.min_offset = 0;
  k.max_offset = UINT64_MAX;
  k.min_transid = 0;
  k.max_transid = UINT64_MAX;
  for (;;) {
    k.nr_items = 4096;
    if (ioctl(fd, BTRFS_IOC_TREE_SEARCH, &args) != 0) {
      if (errno == ENOENT) return Status::NotFound("no btrfs tree " + std::to_string(tree));
      return ErrnoStatus("BTRFS_IOC_TREE_SEARCH");
    }
    if (k.nr_items == 0) return Status::Ok();
    size_t off = 0;
    uint64_t last = 0;
    for (uint32_t i = 0; i < k.nr_items; ++i) {
      struct btrfs_ioctl_search_header sh;
      memcpy(&sh, args.buf + off, sizeof(sh));
      off += sizeof(sh);
      if (sh.objectid == objectid && sh.type == type) fn(sh.offset, args.buf + off, sh.len);
      off += sh.len;
      last = sh.offset;
    }
    if (last == UINT64_MAX) return Status::Ok();
    k.min_offset = last + 1;
  }
}

uint64_t Le64At(const char* p, size_t field) {
  uint64_t v;
  memcpy(&v, p + field * sizeof(uint64_t), sizeof(v));
  return le64toh(v);
}

class BtrfsPool final : public StoragePool {
 public:
  BtrfsPool(std::string root, std::string kind, std::string loopdev)
      : root_(std::move(root)), kind_(std::move(kind)), loopdev_(std::move(loopdev)) {}

  std::string Kind() const override { return kind_; }
  bool CopyOnWrite() const override { return true; }
  const std::string& root() const override { return root_; }
  std::string LoopDevice() const override { return loopdev_; }

  Status CreateVolume(const std::string& path) override {
    auto [parent, name] = SplitParent(path);
    WARREN_RETURN_IF_ERROR(MkdirAll(parent));
    UniqueFd pfd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!pfd) return ErrnoStatus("open " + parent);
    struct btrfs_ioctl_vol_args args;
    memset(&args, 0, sizeof(args));
    if (name.size() >= sizeof(args.name)) return Status::InvalidArgument("volume name too long");
    strncpy(args.name, name.c_str(), sizeof(args.name) - 1);
    if (ioctl(pfd.get(), BTRFS_IOC_SUBVOL_CREATE, &args) != 0) return ErrnoStatus("btrfs subvolume create " + path);
    return Status::Ok();
  }

  Status Snapshot(const std::string& src, const std::string& dst, bool read_only) override {
    auto [parent, name] = SplitParent(dst);
    WARREN_RETURN_IF_ERROR(MkdirAll(parent));
    UniqueFd sfd(open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!sfd) return ErrnoStatus("open " + src);
    UniqueFd pfd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!pfd) return ErrnoStatus("open " + parent);
    struct btrfs_ioctl_vol_args_v2 args;
    memset(&args, 0, sizeof(args));
    args.fd = sfd.get();
    args.flags = read_only ? BTRFS_SUBVOL_RDONLY : 0;
    if (name.size() >= sizeof(args.name)) return Status::InvalidArgument("volume name too long");
    strncpy(args.name, name.c_str(), sizeof(args.name) - 1);
    if (ioctl(pfd.get(), BTRFS_IOC_SNAP_CREATE_V2, &args) != 0) {
      return ErrnoStatus("btrfs snapshot " + src + " -> " + dst);
    }
    return Status::Ok();
  }

  Status DeleteVolume(const std::string& path) override {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return errno == ENOENT ? Status::Ok() : ErrnoStatus("stat " + path);
    if (st.st_ino != 256) return RemoveTree(path);  // a plain directory (half-made)
    uint64_t subvol = 0;
    {
      UniqueFd vfd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (vfd) {
        auto id = SubvolumeId(vfd.get());
        if (id.ok()) subvol = *id;
      }
    }
    auto [parent, name] = SplitParent(path);
    UniqueFd pfd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!pfd) return ErrnoStatus("open " + parent);
    // A read-only snapshot must become writable before nested cleanup; the
    // destroy ioctl itself works on read-only subvolumes as root.
    struct btrfs_ioctl_vol_args args;
    memset(&args, 0, sizeof(args));
    strncpy(args.name, name.c_str(), sizeof(args.name) - 1);
    bool nested_done = false;
    for (int i = 0; i < 200; ++i) {
      if (ioctl(pfd.get(), BTRFS_IOC_SNAP_DESTROY, &args) == 0) {
        if (subvol != 0) RemoveQuotaGroup(subvol);
        return Status::Ok();
      }
      if (errno == ENOTEMPTY && !nested_done) {
        // Subvolumes nested inside (made by a sandbox before BTRFS ioctls
        // were refused to it, or by a recipe step): destroy them
        // depth-first, then retry. Without this a delete sticks forever.
        nested_done = true;
        int e = errno;
        UniqueFd vfd(SysOpenat2(pfd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0,
                                RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV));
        if (!vfd) return Status::FromErrno(e, "btrfs subvolume delete " + path);
        WARREN_RETURN_IF_ERROR(DestroyNested(vfd.get(), path, 0).WithContext("nested subvolumes of " + path));
        --i;
        continue;
      }
      if (errno != EBUSY) break;
      // A just-exited sandbox's mount namespace may still pin it briefly.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return ErrnoStatus("btrfs subvolume delete " + path);
  }

  bool SupportsQuota(std::string*) const override { return true; }

  // Destroys every subvolume below the directory open at `dfd` (children
  // before parents), clearing read-only flags on the way. The walk is
  // fd-relative, never follows symlinks and never leaves the mount.
  Status DestroyNested(int dfd, const std::string& display, int depth) {
    if (depth > 256) return Status::FailedPrecondition("subvolume tree too deep at " + display);
    int rfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0) return ErrnoStatus("open " + display);
    DIR* d = fdopendir(rfd);
    if (d == nullptr) {
      close(rfd);
      return ErrnoStatus("opendir " + display);
    }
    std::vector<std::string> dirs;
    while (struct dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      if (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN) dirs.emplace_back(e->d_name);
    }
    closedir(d);
    for (const auto& n : dirs) {
      UniqueFd sub(SysOpenat2(dfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0,
                              RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV));
      if (!sub) {
        if (errno == ENOTDIR || errno == ELOOP || errno == ENOENT) continue;  // not a directory (any more)
        return ErrnoStatus("open " + display + "/" + n);
      }
      struct stat st;
      if (fstat(sub.get(), &st) != 0) return ErrnoStatus("stat " + display + "/" + n);
      bool subvolume = st.st_ino == BTRFS_FIRST_FREE_OBJECTID;
      uint64_t flags = 0;
      if (subvolume && ioctl(sub.get(), BTRFS_IOC_SUBVOL_GETFLAGS, &flags) == 0 && (flags & BTRFS_SUBVOL_RDONLY)) {
        // Writable first: its own nested subvolumes are unlinked from it.
        flags &= ~static_cast<uint64_t>(BTRFS_SUBVOL_RDONLY);
        (void)ioctl(sub.get(), BTRFS_IOC_SUBVOL_SETFLAGS, &flags);
      }
      WARREN_RETURN_IF_ERROR(DestroyNested(sub.get(), display + "/" + n, depth + 1));
      if (!subvolume) continue;  // a plain directory
      auto id = SubvolumeId(sub.get());
      sub.reset();
      struct btrfs_ioctl_vol_args args;
      memset(&args, 0, sizeof(args));
      strncpy(args.name, n.c_str(), sizeof(args.name) - 1);
      if (ioctl(dfd, BTRFS_IOC_SNAP_DESTROY, &args) != 0) return ErrnoStatus("btrfs subvolume delete " + display + "/" + n);
      if (id.ok()) RemoveQuotaGroup(*id);
      log::Info("sandbox.pool.nested_subvolume_deleted", {{"path", display + "/" + n}});
    }
    return Status::Ok();
  }

  Status SetQuota(const std::string& path, int64_t bytes) override {
    if (bytes < 0) return Status::InvalidArgument("disk limit must be >= 0");
    UniqueFd vfd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!vfd) return ErrnoStatus("open " + path);
    if (bytes > 0) WARREN_RETURN_IF_ERROR(EnableQuota());
    struct btrfs_ioctl_qgroup_limit_args args;
    memset(&args, 0, sizeof(args));
    args.qgroupid = 0;  // the subvolume `vfd` is in
    args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    args.lim.max_rfer = bytes > 0 ? static_cast<uint64_t>(bytes) : UINT64_MAX;  // -1 clears the limit
    if (ioctl(vfd.get(), BTRFS_IOC_QGROUP_LIMIT, &args) != 0) {
      if (bytes == 0 && (errno == ENOTCONN || errno == ENOENT)) return Status::Ok();  // no accounting: no limit
      return ErrnoStatus("BTRFS_IOC_QGROUP_LIMIT " + path);
    }
    return Status::Ok();
  }

  Result<QuotaInfo> GetQuota(const std::string& path) override {
    UniqueFd vfd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!vfd) return ErrnoStatus("open " + path);
    WARREN_ASSIGN_OR_RETURN(uint64_t id, SubvolumeId(vfd.get()));
    QuotaInfo q;
    bool found = false;
    auto info = [&](uint64_t off, const char* item, uint32_t len) {
      if (off != id || len < sizeof(struct btrfs_qgroup_info_item)) return;
      found = true;
      q.referenced_bytes = static_cast<int64_t>(Le64At(item, 1));
      q.exclusive_bytes = static_cast<int64_t>(Le64At(item, 3));
    };
    auto limit = [&](uint64_t off, const char* item, uint32_t len) {
      if (off != id || len < sizeof(struct btrfs_qgroup_limit_item)) return;
      if (Le64At(item, 0) & BTRFS_QGROUP_LIMIT_MAX_RFER) q.limit_bytes = static_cast<int64_t>(Le64At(item, 1));
    };
    WARREN_RETURN_IF_ERROR(SearchTree(vfd.get(), BTRFS_QUOTA_TREE_OBJECTID, 0, BTRFS_QGROUP_INFO_KEY, info));
    if (!found) return Status::NotFound("no quota group for " + path);
    WARREN_RETURN_IF_ERROR(SearchTree(vfd.get(), BTRFS_QUOTA_TREE_OBJECTID, 0, BTRFS_QGROUP_LIMIT_KEY, limit));
    q.qgroup = id;
    return q;
  }

  Result<std::vector<uint64_t>> ListQuotaGroups() override {
    UniqueFd rfd(open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!rfd) return ErrnoStatus("open " + root_);
    std::vector<uint64_t> ids;
    Status s = SearchTree(rfd.get(), BTRFS_QUOTA_TREE_OBJECTID, 0, BTRFS_QGROUP_INFO_KEY,
                          [&](uint64_t off, const char*, uint32_t) {
                            if ((off >> 48) == 0) ids.push_back(off);  // level 0 only
                          });
    if (!s.ok() && s.code() != Code::kNotFound) return s;
    return ids;
  }

  Result<int> RemoveStaleQuotaGroups() override {
    WARREN_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, ListQuotaGroups());
    UniqueFd rfd(open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!rfd) return ErrnoStatus("open " + root_);
    int removed = 0;
    for (uint64_t id : ids) {
      if (id < BTRFS_FIRST_FREE_OBJECTID) continue;  // the top-level subvolume (5) and internal trees
      bool exists = false;
      Status s = SearchTree(rfd.get(), BTRFS_ROOT_TREE_OBJECTID, id, BTRFS_ROOT_ITEM_KEY,
                            [&](uint64_t, const char*, uint32_t) { exists = true; });
      if (!s.ok() || exists) continue;
      if (RemoveQuotaGroup(id)) ++removed;
    }
    return removed;
  }

  Status Unmount() override {
    if (kind_ != "btrfs-loop") return Status::Ok();
    if (!IsMountPoint(root_)) return Status::Ok();
    if (umount2(root_.c_str(), 0) != 0 && umount2(root_.c_str(), MNT_DETACH) != 0) {
      return ErrnoStatus("umount " + root_);
    }
    // LO_FLAGS_AUTOCLEAR detaches the loop device asynchronously once the
    // last reference is gone (later under load); wait, bounded, so that a
    // caller sees the device released when Unmount returns.
    if (!loopdev_.empty()) {
      std::string backing = "/sys/block/" + loopdev_.substr(loopdev_.rfind('/') + 1) + "/loop/backing_file";
      // Bound: 20 s; a pool with qgroups on can take seconds to tear down
      // under load (the last commit accounts for freshly deleted subvolumes).
      for (int i = 0; i < 2000 && access(backing.c_str(), F_OK) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return Status::Ok();
  }

 private:
  // Turns quota accounting on (idempotent in the kernel) and waits for the
  // rescan that accounts for existing data.
  Status EnableQuota() {
    if (quota_on_) return Status::Ok();
    UniqueFd rfd(open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!rfd) return ErrnoStatus("open " + root_);
    struct btrfs_ioctl_quota_ctl_args ctl;
    memset(&ctl, 0, sizeof(ctl));
    ctl.cmd = BTRFS_QUOTA_CTL_ENABLE;
    if (ioctl(rfd.get(), BTRFS_IOC_QUOTA_CTL, &ctl) != 0) return ErrnoStatus("BTRFS_IOC_QUOTA_CTL enable");
    if (ioctl(rfd.get(), BTRFS_IOC_QUOTA_RESCAN_WAIT, 0) != 0 && errno != ENOTCONN) {
      return ErrnoStatus("BTRFS_IOC_QUOTA_RESCAN_WAIT");
    }
    quota_on_ = true;
    return Status::Ok();
  }

  // Removes qgroup 0/<id>. Best effort: without accounting (ENOTCONN) or
  // qgroup (ENOENT) there is nothing to do; EBUSY means the kernel still
  // holds usage for a subvolume being cleaned (kernels >= 6.10 drop the
  // qgroup themselves once it is cleaned; RemoveStaleQuotaGroups catches the
  // rest).
  bool RemoveQuotaGroup(uint64_t id) {
    UniqueFd rfd(open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!rfd) return false;
    struct btrfs_ioctl_qgroup_create_args args;
    memset(&args, 0, sizeof(args));
    args.create = 0;
    args.qgroupid = id;
    if (ioctl(rfd.get(), BTRFS_IOC_QGROUP_CREATE, &args) == 0) return true;
    if (errno != ENOTCONN && errno != ENOENT && errno != EBUSY) {
      log::Warn("sandbox.pool.qgroup_remove_failed", {{"qgroup", id}, {"error", strerror(errno)}});
    }
    return false;
  }

  std::string root_, kind_, loopdev_;
  bool quota_on_ = false;
};

class CopyPool final : public StoragePool {
 public:
  explicit CopyPool(std::string root) : root_(std::move(root)) {}
  std::string Kind() const override { return "copy"; }
  bool CopyOnWrite() const override { return false; }
  const std::string& root() const override { return root_; }
  std::string LoopDevice() const override { return ""; }
  Status CreateVolume(const std::string& path) override {
    if (mkdir(path.c_str(), 0755) != 0) {
      if (errno == ENOENT) {
        WARREN_RETURN_IF_ERROR(MkdirAll(path));
        return Status::Ok();
      }
      return ErrnoStatus("mkdir " + path);
    }
    return Status::Ok();
  }
  Status Snapshot(const std::string& src, const std::string& dst, bool) override {
    auto [parent, name] = SplitParent(dst);
    WARREN_RETURN_IF_ERROR(MkdirAll(parent));
    std::string out;
    WARREN_ASSIGN_OR_RETURN(int rc, RunCommand({"cp", "-a", "--reflink=auto", src, dst}, &out));
    if (rc != 0) return Status::IOError("cp -a " + src + ": " + out);
    return Status::Ok();
  }
  Status DeleteVolume(const std::string& path) override { return RemoveTree(path); }
  bool SupportsQuota(std::string* why) const override {
    if (why) *why = "the copy pool has plain directories, not btrfs subvolumes: no per-sandbox quota groups";
    return false;
  }
  Status SetQuota(const std::string&, int64_t bytes) override {
    if (bytes == 0) return Status::Ok();
    return Status::Unimplemented("disk limits need a btrfs pool (this pool is copy)");
  }
  Result<QuotaInfo> GetQuota(const std::string& path) override {
    return Status::NotFound("no quota accounting on the copy pool");
  }
  Result<std::vector<uint64_t>> ListQuotaGroups() override { return std::vector<uint64_t>{}; }
  Result<int> RemoveStaleQuotaGroups() override { return 0; }
  Status Unmount() override { return Status::Ok(); }

 private:
  std::string root_;
};

// Overlay pool (see storage.h). Paths: `layers/<h>/{diff,lowers}`; a
// volume at `<root>/<rel>` keeps its state in `<root>/ovl/<rel>/` (upper,
// work, lowers, and `view` = the host uid of the sandbox root when the host
// view is a sandbox's instance) and is an overlay mount point itself.
class OverlayPool final : public StoragePool {
 public:
  explicit OverlayPool(std::string root) : root_(std::move(root)) {}
  std::string Kind() const override { return "overlay"; }
  bool CopyOnWrite() const override { return false; }
  const std::string& root() const override { return root_; }
  std::string LoopDevice() const override { return ""; }
  bool SupportsQuota(std::string* why) const override {
    if (why) *why = "the overlay pool keeps upper dirs on the data dir's filesystem: no per-sandbox quota (no XFS project quotas)";
    return false;
  }
  Status SetQuota(const std::string&, int64_t bytes) override {
    if (bytes == 0) return Status::Ok();
    return Status::Unimplemented("disk limits need a btrfs pool (this pool is overlay)");
  }
  Result<QuotaInfo> GetQuota(const std::string&) override {
    return Status::NotFound("no quota accounting on the overlay pool");
  }
  Result<std::vector<uint64_t>> ListQuotaGroups() override { return std::vector<uint64_t>{}; }
  Result<int> RemoveStaleQuotaGroups() override { return 0; }

  // Mounts the host view of every volume that has state but no mount (after
  // a reboot or UnmountPoolIfIdle), so recovery sees every volume.
  Status MountAll() {
    WARREN_RETURN_IF_ERROR(MkdirAll(root_ + "/ovl/empty"));
    for (const char* d : {"sandboxes", "tmp"}) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(root_ + "/ovl/" + d, ec)) {
        std::string vol = root_ + "/" + d + "/" + e.path().filename().string();
        if (IsMountPoint(vol)) continue;
        (void)unlink((e.path().string() + "/view").c_str());
        WARREN_RETURN_IF_ERROR(MkdirAll(vol));
        WARREN_RETURN_IF_ERROR(MountHostView(vol));
      }
    }
    return Status::Ok();
  }

  Status CreateVolume(const std::string& path) override {
    WARREN_ASSIGN_OR_RETURN(std::string st, StateDir(path));
    WARREN_RETURN_IF_ERROR(NewState(st, {}));
    WARREN_RETURN_IF_ERROR(MkdirAll(path));
    return MountHostView(path);
  }

  Status Snapshot(const std::string& src, const std::string& dst, bool read_only) override {
    if (IsLayer(dst)) {
      // Volume -> layer: its upper becomes the layer's diff.
      if (!read_only) return Status::InvalidArgument("overlay layers are read-only");
      WARREN_ASSIGN_OR_RETURN(std::string sst, StateDir(src));
      WARREN_ASSIGN_OR_RETURN(std::string lowers, ReadFileToString(sst + "/lowers"));
      std::string tmp = dst + ".partial";
      (void)RemoveTree(tmp);
      WARREN_RETURN_IF_ERROR(MkdirAll(tmp));
      WARREN_RETURN_IF_ERROR(CopyTree(sst + "/upper", tmp + "/diff"));
      WARREN_RETURN_IF_ERROR(WriteFileAtomic(tmp + "/lowers", lowers));
      if (rename(tmp.c_str(), dst.c_str()) != 0) return ErrnoStatus("rename " + tmp);
      return Status::Ok();
    }
    WARREN_ASSIGN_OR_RETURN(std::string dst_st, StateDir(dst));
    if (IsLayer(src)) {
      // Layer -> volume: an empty upper over the layer and its lowers.
      std::string name = src.substr(src.rfind('/') + 1);
      WARREN_ASSIGN_OR_RETURN(std::string below, ReadFileToString(src + "/lowers"));
      WARREN_RETURN_IF_ERROR(NewState(dst_st, name + "\n" + below));
    } else {
      // Volume -> volume (fork): copy the writable layer.
      WARREN_ASSIGN_OR_RETURN(std::string src_st, StateDir(src));
      WARREN_ASSIGN_OR_RETURN(std::string lowers, ReadFileToString(src_st + "/lowers"));
      (void)RemoveTree(dst_st);
      WARREN_RETURN_IF_ERROR(MkdirAll(dst_st + "/work"));
      WARREN_RETURN_IF_ERROR(CopyTree(src_st + "/upper", dst_st + "/upper"));
      WARREN_RETURN_IF_ERROR(WriteFileAtomic(dst_st + "/lowers", lowers));
    }
    WARREN_RETURN_IF_ERROR(MkdirAll(dst));
    return MountHostView(dst);
  }

  Status DeleteVolume(const std::string& path) override {
    if (IsLayer(path)) {
      (void)RemoveTree(path + ".partial");
      return RemoveTree(path);
    }
    WARREN_RETURN_IF_ERROR(UnmountAll(path));
    if (rmdir(path.c_str()) != 0 && errno != ENOENT) {
      // Not a bare mount point (a half-made volume): remove whatever is there.
      WARREN_RETURN_IF_ERROR(RemoveTree(path));
    }
    auto st = StateDir(path);
    if (st.ok()) WARREN_RETURN_IF_ERROR(RemoveTree(*st));
    return Status::Ok();
  }

  Status Unmount() override {
    for (const char* d : {"sandboxes", "tmp"}) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(root_ + "/" + d, ec)) {
        WARREN_RETURN_IF_ERROR(UnmountAll(e.path()));
      }
    }
    return Status::Ok();
  }

  Result<UniqueFd> SandboxRootMount(const std::string& path, int userns_fd, uint32_t host_root,
                                    unsigned attrs) override {
    WARREN_ASSIGN_OR_RETURN(std::string st, StateDir(path));
    WARREN_ASSIGN_OR_RETURN(auto lowers, LowerDirs(st));
    // Idmapped clones of every layer and of the state dir (upper and work
    // must share one mount), reached through /proc/self/fd magic links.
    std::vector<UniqueFd> held;
    std::vector<std::string> lower_paths;
    for (const auto& l : lowers) {
      WARREN_ASSIGN_OR_RETURN(UniqueFd fd, CloneIdmappedTree(l, userns_fd, MOUNT_ATTR_RDONLY));
      lower_paths.push_back("/proc/self/fd/" + std::to_string(fd.get()));
      held.push_back(std::move(fd));
    }
    WARREN_ASSIGN_OR_RETURN(UniqueFd state, CloneIdmappedTree(st, userns_fd, 0));
    std::string fdp = "/proc/self/fd/" + std::to_string(state.get());
    std::string upper = fdp + "/upper", work = fdp + "/work";
    UniqueFd mnt;
    {
      // Overlayfs does its own upper-layer work (work dir, copy-up) with the
      // mounter's credentials; through idmapped layers those must be ids the
      // mapping knows, i.e. the sandbox root's host ids.
      ScopedFsIds ids(host_root, host_root);
      WARREN_RETURN_IF_ERROR(ids.status());
      WARREN_ASSIGN_OR_RETURN(mnt, NewOverlay(lower_paths, upper, work, attrs));
    }
    // Replace the host view with a clone of this instance.
    UniqueFd view(open_tree(mnt.get(), "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
    if (!view) return ErrnoStatus("open_tree overlay");
    WARREN_RETURN_IF_ERROR(UnmountAll(path));
    if (move_mount(view.get(), "", AT_FDCWD, path.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
      Status s = ErrnoStatus("move_mount overlay view " + path);
      (void)MountHostView(path);
      return s;
    }
    WARREN_RETURN_IF_ERROR(WriteFileAtomic(st + "/view", std::to_string(host_root)));
    return mnt;
  }

  int64_t HostViewIdBase(const std::string& path) const override {
    auto st = StateDir(path);
    if (!st.ok()) return -1;
    auto v = ReadFileToString(*st + "/view");
    if (!v.ok() || v->empty()) return -1;
    return std::strtoll(v->c_str(), nullptr, 10);
  }

  std::vector<std::string> VolumeLayers(const std::string& path) const override {
    auto st = StateDir(path);
    if (!st.ok()) return {};
    auto l = ReadFileToString(*st + "/lowers");
    return l.ok() ? SplitLines(*l) : std::vector<std::string>{};
  }

  std::set<std::string> ReferencedLayers() const override {
    std::set<std::string> out;
    for (const char* d : {"sandboxes", "tmp"}) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(root_ + "/ovl/" + d, ec)) {
        auto l = ReadFileToString(e.path().string() + "/lowers");
        if (!l.ok()) continue;
        for (auto& n : SplitLines(*l)) out.insert(std::move(n));
      }
    }
    return out;
  }

 private:
  static std::vector<std::string> SplitLines(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) out.push_back(line);
    }
    return out;
  }

  bool IsLayer(const std::string& path) const { return path.rfind(root_ + "/layers/", 0) == 0; }

  Result<std::string> StateDir(const std::string& path) const {
    if (path.rfind(root_ + "/", 0) != 0 || IsLayer(path) || path.find("/../") != std::string::npos) {
      return Status::InvalidArgument("not a volume of this pool: " + path);
    }
    return root_ + "/ovl/" + path.substr(root_.size() + 1);
  }

  static Status NewState(const std::string& st, const std::string& lowers) {
    (void)RemoveTree(st);
    WARREN_RETURN_IF_ERROR(MkdirAll(st + "/upper"));
    WARREN_RETURN_IF_ERROR(MkdirAll(st + "/work"));
    return WriteFileAtomic(st + "/lowers", lowers);
  }

  static Status CopyTree(const std::string& from, const std::string& to) {
    std::string out;
    WARREN_ASSIGN_OR_RETURN(int rc, RunCommand({"cp", "-a", "--reflink=auto", from, to}, &out));
    if (rc != 0) return Status::IOError("cp -a " + from + ": " + out);
    return Status::Ok();
  }

  // Lower directories of a volume, topmost first (an empty dir when none).
  Result<std::vector<std::string>> LowerDirs(const std::string& st) const {
    WARREN_ASSIGN_OR_RETURN(std::string l, ReadFileToString(st + "/lowers"));
    std::vector<std::string> out;
    for (const auto& n : SplitLines(l)) {
      if (!ValidLayerName(n)) return Status::Internal("bad layer name in " + st + "/lowers");
      std::string d = root_ + "/layers/" + n + "/diff";
      if (access(d.c_str(), F_OK) != 0) return Status::FailedPrecondition("layer " + n + " is missing");
      out.push_back(d);
    }
    if (out.size() > 500) return Status::FailedPrecondition("more than 500 layers");
    if (out.empty()) out.push_back(root_ + "/ovl/empty");
    return out;
  }

  static bool ValidLayerName(const std::string& n) {
    if (n.empty() || n.size() > 128) return false;
    for (char c : n) {
      if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
    }
    return n != "." && n != "..";
  }

  // A detached overlay mount. Layers are passed one by one ("lowerdir+",
  // kernel >= 6.8) so the chain is not bound by the one-page option string.
  static Result<UniqueFd> NewOverlay(const std::vector<std::string>& lowers, const std::string& upper,
                                     const std::string& work, unsigned attrs) {
    std::vector<const char*> kv;
    for (const auto& l : lowers) {
      kv.push_back("lowerdir+");
      kv.push_back(l.c_str());
    }
    for (const char* p : {"upperdir", upper.c_str(), "workdir", work.c_str(), "index", "off", "redirect_dir",
                          "off", "metacopy", "off"}) {
      kv.push_back(p);
    }
    kv.push_back(nullptr);
    kv.push_back(nullptr);
    int fd = mounts::NewFs("overlay", kv.data(), attrs);
    if (fd < 0) return Status::FromErrno(-fd, "mount overlay (upper " + upper + ")");
    return UniqueFd(fd);
  }

  // The host view: an overlay with plain (not idmapped) layers, on-disk ids.
  Status MountHostView(const std::string& path) {
    WARREN_ASSIGN_OR_RETURN(std::string st, StateDir(path));
    WARREN_ASSIGN_OR_RETURN(auto lowers, LowerDirs(st));
    WARREN_ASSIGN_OR_RETURN(UniqueFd mnt, NewOverlay(lowers, st + "/upper", st + "/work", MOUNT_ATTR_NODEV));
    if (move_mount(mnt.get(), "", AT_FDCWD, path.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
      return ErrnoStatus("move_mount overlay " + path);
    }
    (void)unlink((st + "/view").c_str());
    return Status::Ok();
  }

  // Unmounts every mount stacked on `path`.
  static Status UnmountAll(const std::string& path) {
    for (int i = 0; i < 16 && IsMountPoint(path); ++i) {
      if (umount2(path.c_str(), MNT_DETACH) != 0) return ErrnoStatus("umount " + path);
    }
    return Status::Ok();
  }

  std::string root_;
};

// Attaches `file` to a free loop device with LO_FLAGS_AUTOCLEAR. The
// returned fd must stay open until the device is mounted: autoclear detaches
// the device at the last close otherwise.
Result<std::pair<std::string, UniqueFd>> AttachLoop(const std::string& file) {
  UniqueFd ctl(open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!ctl) return ErrnoStatus("open /dev/loop-control");
  UniqueFd ffd(open(file.c_str(), O_RDWR | O_CLOEXEC));
  if (!ffd) return ErrnoStatus("open " + file);
  for (int attempt = 0; attempt < 20; ++attempt) {
    int n = ioctl(ctl.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return ErrnoStatus("LOOP_CTL_GET_FREE");
    std::string dev = "/dev/loop" + std::to_string(n);
    UniqueFd lfd(open(dev.c_str(), O_RDWR | O_CLOEXEC));
    if (!lfd && errno == ENOENT) {
      if (mknod(dev.c_str(), S_IFBLK | 0660, makedev(7, n)) != 0 && errno != EEXIST) {
        return ErrnoStatus("mknod " + dev);
      }
      lfd.reset(open(dev.c_str(), O_RDWR | O_CLOEXEC));
    }
    if (!lfd) return ErrnoStatus("open " + dev);
    struct loop_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.fd = static_cast<uint32_t>(ffd.get());
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    strncpy(reinterpret_cast<char*>(cfg.info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);
    if (ioctl(lfd.get(), LOOP_CONFIGURE, &cfg) == 0) return std::make_pair(dev, std::move(lfd));
    if (errno != EBUSY) return ErrnoStatus("LOOP_CONFIGURE " + dev);
  }
  return Status::Unavailable("no free loop device");
}

}  // namespace

Result<UniqueFd> StoragePool::SandboxRootMount(const std::string& path, int userns_fd, uint32_t host_root,
                                               unsigned attrs) {
  (void)host_root;
  return CloneIdmappedTree(path, userns_fd, attrs);
}

namespace {

bool OverlaySupported() {
  std::ifstream in("/proc/filesystems");
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() >= 7 && line.compare(line.size() - 7, 7, "overlay") == 0) return true;
  }
  return false;
}

// The pool used when btrfs is unavailable: overlay when the kernel has it.
Result<std::unique_ptr<StoragePool>> Fallback(const std::string& root, const std::string& reason) {
  if (OverlaySupported()) {
    log::Warn("sandbox.pool.fallback", {{"kind", "overlay"}, {"reason", reason}});
    auto pool = std::make_unique<OverlayPool>(root);
    WARREN_RETURN_IF_ERROR(MkdirAll(root + "/ovl"));
    WARREN_RETURN_IF_ERROR(pool->MountAll());
    return std::unique_ptr<StoragePool>(std::move(pool));
  }
  log::Warn("sandbox.pool.fallback", {{"kind", "copy"}, {"reason", reason + "; no overlayfs either"}});
  return std::unique_ptr<StoragePool>(std::make_unique<CopyPool>(root));
}

}  // namespace

Result<std::unique_ptr<StoragePool>> OpenStoragePool(const PoolOptions& opts) {
  if (opts.data_dir.empty() || opts.data_dir[0] != '/') return Status::InvalidArgument("data dir must be absolute");
  WARREN_RETURN_IF_ERROR(MkdirAll(opts.data_dir));
  std::string root = opts.data_dir + "/pool";
  WARREN_RETURN_IF_ERROR(MkdirAll(root));
  std::unique_ptr<StoragePool> pool;
  // A data dir keeps the pool kind it was made with: an overlay pool is
  // recognised by its state dir (auto-selection must not mount a new btrfs
  // pool over it).
  bool was_overlay = !IsMountPoint(root) && access((root + "/ovl").c_str(), F_OK) == 0;
  if (opts.kind == "copy") {
    pool = std::make_unique<CopyPool>(root);
  } else if (opts.kind == "overlay" || (opts.kind.empty() && was_overlay)) {
    if (!OverlaySupported()) return Status::Unavailable("the kernel has no overlayfs");
    auto ov = std::make_unique<OverlayPool>(root);
    WARREN_RETURN_IF_ERROR(MkdirAll(root + "/ovl"));
    WARREN_RETURN_IF_ERROR(ov->MountAll());
    pool = std::move(ov);
  } else if (opts.kind.empty() && IsBtrfs(opts.data_dir)) {
    pool = std::make_unique<BtrfsPool>(root, "btrfs", "");
  } else if (opts.kind.empty() || opts.kind == "btrfs-loop") {
    if (!IsMountPoint(root)) {
      std::string img = opts.data_dir + "/pool.img";
      struct stat st;
      bool fresh = stat(img.c_str(), &st) != 0;
      if (fresh) {
        UniqueFd fd(open(img.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!fd) return ErrnoStatus("create " + img);
        if (ftruncate(fd.get(), opts.pool_file_bytes) != 0) return ErrnoStatus("truncate " + img);
        fd.reset();
        std::string out;
        auto rc = RunCommand({opts.mkfs_btrfs, "-q", "-f", img}, &out);
        if (!rc.ok() || *rc != 0) {
          unlink(img.c_str());
          std::string why = rc.ok() ? "mkfs.btrfs failed: " + out : "mkfs.btrfs unavailable: " + rc.status().ToString();
          if (!opts.kind.empty()) return Status::Unavailable(why);
          WARREN_ASSIGN_OR_RETURN(pool, Fallback(root, why));
        }
      }
      if (!pool) {
        auto loop = AttachLoop(img);
        Status s = loop.status();
        if (loop.ok() && mount(loop->first.c_str(), root.c_str(), "btrfs", MS_NOATIME, nullptr) != 0) {
          s = ErrnoStatus("mount " + loop->first);
          ioctl(loop->second.get(), LOOP_CLR_FD, 0);
        }
        if (!s.ok()) {
          if (!opts.kind.empty()) return s;
          if (fresh) unlink(img.c_str());
          WARREN_ASSIGN_OR_RETURN(pool, Fallback(root, "loop device unavailable: " + s.ToString()));
        }
      }
    }
    if (!pool) {
      if (!IsBtrfs(root)) return Status::FailedPrecondition(root + " is mounted but not btrfs");
      pool = std::make_unique<BtrfsPool>(root, "btrfs-loop", MountSource(root));
    }
  } else {
    return Status::InvalidArgument("unknown pool kind: " + opts.kind);
  }
  for (const char* d : {"layers", "sandboxes", "tmp"}) WARREN_RETURN_IF_ERROR(MkdirAll(root + "/" + d));
  return pool;
}

}  // namespace warren::sandbox
