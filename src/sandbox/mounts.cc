#include "sandbox/mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "sandbox/sys.h"

namespace warren::sandbox {
namespace mounts {
namespace {

int Err() { return -errno; }

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

int OpenInRoot(int rootfd, const char* rel, int flags) {
  int fd = SysOpenat2(rootfd, rel, static_cast<uint64_t>(flags | O_CLOEXEC), 0,
                      RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
  return fd < 0 ? Err() : fd;
}

int NewFs(const char* fstype, const char* const* kv, unsigned attrs) {
  int fsfd = fsopen(fstype, FSOPEN_CLOEXEC);
  if (fsfd < 0) return Err();
  FdCloser c{fsfd};
  for (const char* const* p = kv; p != nullptr && p[0] != nullptr; p += 2) {
    int rc = p[1] == nullptr ? fsconfig(fsfd, FSCONFIG_SET_FLAG, p[0], nullptr, 0)
                             : fsconfig(fsfd, FSCONFIG_SET_STRING, p[0], p[1], 0);
    if (rc < 0) return Err();
  }
  if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) return Err();
  int mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
  return mfd < 0 ? Err() : mfd;
}

int AttachAt(int mntfd, int rootfd, const char* rel) {
  int tfd = OpenInRoot(rootfd, rel, O_PATH);
  if (tfd < 0) return tfd;
  FdCloser c{tfd};
  if (move_mount(mntfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) return Err();
  return 0;
}

int BindAt(const char* src, int rootfd, const char* rel, unsigned attrs, bool recursive) {
  int sfd = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
  if (sfd < 0) return Err();
  FdCloser c{sfd};
  if (attrs != 0) {
    struct mount_attr a;
    memset(&a, 0, sizeof(a));
    a.attr_set = attrs;
    if (mount_setattr(sfd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &a, sizeof(a)) < 0) return Err();
  }
  int tfd = OpenInRoot(rootfd, rel, O_PATH);
  if (tfd == -ENOENT) {
    struct stat st;
    if (fstat(sfd, &st) < 0) return Err();
    // Create the mount point: only single-component names relative to a
    // directory we resolved safely.
    if (S_ISDIR(st.st_mode)) {
      if (mkdirat(rootfd, rel, 0755) < 0 && errno != EEXIST) return Err();
    } else {
      int f = openat(rootfd, rel, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (f < 0 && errno != EEXIST) return Err();
      if (f >= 0) close(f);
    }
    tfd = OpenInRoot(rootfd, rel, O_PATH);
  }
  if (tfd < 0) return tfd;
  FdCloser t{tfd};
  if (move_mount(sfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) return Err();
  return 0;
}

int SetupProc(int rootfd, const char** where) {
  *where = "mkdir /proc";
  if (mkdirat(rootfd, "proc", 0555) < 0 && errno != EEXIST) return Err();
  *where = "mount proc";
  int pfd = NewFs("proc", nullptr, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  if (pfd < 0) return pfd;
  FdCloser pc{pfd};
  *where = "attach /proc";
  if (int rc = AttachAt(pfd, rootfd, "proc"); rc < 0) return rc;
  int procfd = OpenInRoot(rootfd, "proc", O_PATH | O_DIRECTORY);
  if (procfd < 0) return procfd;
  FdCloser prc{procfd};
  // Files hidden behind /dev/null.
  static const char* const kMaskFiles[] = {"kcore",      "keys",        "sysrq-trigger", "timer_list",
                                           "sched_debug", "latency_stats", "kallsyms",    "kmsg",
                                           "kpageflags", "kpagecount",  "kpagecgroup",   "config.gz",
                                           // The kernel command line names host devices and paths.
                                           "cmdline"};
  for (const char* f : kMaskFiles) {
    *where = f;
    int tfd = openat(procfd, f, O_PATH | O_CLOEXEC | O_NOFOLLOW);
    if (tfd < 0) continue;  // absent on this kernel
    FdCloser tc{tfd};
    int sfd = open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (sfd < 0) return Err();
    FdCloser sc{sfd};
    if (move_mount(sfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) return Err();
  }
  // Directories hidden behind an empty read-only tmpfs.
  static const char* const kMaskDirs[] = {"acpi", "scsi", "asound", "driver"};
  for (const char* d : kMaskDirs) {
    *where = d;
    int tfd = openat(procfd, d, O_PATH | O_CLOEXEC | O_NOFOLLOW | O_DIRECTORY);
    if (tfd < 0) continue;
    FdCloser tc{tfd};
    int mfd = NewFs("tmpfs", nullptr, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    if (mfd < 0) return mfd;
    FdCloser mc{mfd};
    if (move_mount(mfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) return Err();
  }
  // Read-only views.
  static const char* const kReadOnly[] = {"sys", "irq", "bus", "fs"};
  for (const char* d : kReadOnly) {
    *where = d;
    int sfd = open_tree(procfd, d, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (sfd < 0) {
      if (errno == ENOENT) continue;
      return Err();
    }
    FdCloser sc{sfd};
    struct mount_attr a;
    memset(&a, 0, sizeof(a));
    a.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    if (mount_setattr(sfd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof(a)) < 0) return Err();
    int tfd = openat(procfd, d, O_PATH | O_CLOEXEC | O_NOFOLLOW);
    if (tfd < 0) return Err();
    FdCloser tc{tfd};
    if (move_mount(sfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) return Err();
  }
  return 0;
}

int SetupDev(int rootfd, const char** where) {
  *where = "mkdir /dev";
  if (mkdirat(rootfd, "dev", 0755) < 0 && errno != EEXIST) return Err();
  static const char* const kTmpfsOpts[] = {"mode", "0755", "size", "1024k", nullptr};
  *where = "mount /dev tmpfs";
  int mfd = NewFs("tmpfs", kTmpfsOpts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  if (mfd < 0) return mfd;
  FdCloser mc{mfd};
  if (int rc = AttachAt(mfd, rootfd, "dev"); rc < 0) return rc;
  int devfd = OpenInRoot(rootfd, "dev", O_DIRECTORY | O_RDONLY);
  if (devfd < 0) return devfd;
  FdCloser dc{devfd};
  static const char* const kDevices[] = {"null", "zero", "full", "random", "urandom", "tty"};
  char src[32];
  for (const char* d : kDevices) {
    *where = d;
    strcpy(src, "/dev/");
    strcat(src, d);
    int f = openat(devfd, d, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (f < 0) return Err();
    close(f);
    int sfd = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (sfd < 0) return Err();
    FdCloser sc{sfd};
    if (move_mount(sfd, "", devfd, d, MOVE_MOUNT_F_EMPTY_PATH) < 0) return Err();
  }
  *where = "devpts";
  if (mkdirat(devfd, "pts", 0755) < 0) return Err();
  static const char* const kPtsOpts[] = {"newinstance", nullptr, "ptmxmode", "0666", "mode", "0620", nullptr};
  int pfd = NewFs("devpts", kPtsOpts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  if (pfd >= 0) {
    FdCloser pc{pfd};
    if (move_mount(pfd, "", devfd, "pts", MOVE_MOUNT_F_EMPTY_PATH) < 0) return Err();
    if (symlinkat("pts/ptmx", devfd, "ptmx") < 0) return Err();
  }
  *where = "/dev/shm";
  if (mkdirat(devfd, "shm", 01777) < 0) return Err();
  static const char* const kShmOpts[] = {"mode", "1777", "size", "65536k", nullptr};
  int sfd = NewFs("tmpfs", kShmOpts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  if (sfd < 0) return sfd;
  FdCloser shc{sfd};
  if (move_mount(sfd, "", devfd, "shm", MOVE_MOUNT_F_EMPTY_PATH) < 0) return Err();
  *where = "/dev symlinks";
  static const char* const kLinks[][2] = {{"/proc/self/fd", "fd"},
                                          {"/proc/self/fd/0", "stdin"},
                                          {"/proc/self/fd/1", "stdout"},
                                          {"/proc/self/fd/2", "stderr"}};
  for (const auto& l : kLinks) {
    if (symlinkat(l[0], devfd, l[1]) < 0) return Err();
  }
  // The /dev tmpfs itself becomes read-only once populated.
  struct mount_attr a;
  memset(&a, 0, sizeof(a));
  a.attr_set = MOUNT_ATTR_RDONLY;
  *where = "remount /dev ro";
  if (mount_setattr(devfd, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0) return Err();
  return 0;
}

namespace {

// Covers directory `rel` of the tree open at `dirfd` with an empty
// read-only tmpfs. 0 when covered or absent on this kernel.
int MaskDir(int dirfd, const char* rel) {
  int tfd = SysOpenat2(dirfd, rel, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW, 0,
                       RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (tfd < 0) return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? 0 : Err();
  FdCloser tc{tfd};
  static const char* const kOpts[] = {"size", "4k", "mode", "0555", nullptr};
  int mfd = NewFs("tmpfs", kOpts, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  if (mfd < 0) return mfd;
  FdCloser mc{mfd};
  if (move_mount(mfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) return Err();
  return 0;
}

}  // namespace

int SetupSys(int rootfd) {
  if (mkdirat(rootfd, "sys", 0555) < 0 && errno != EEXIST) return Err();
  int mfd = NewFs("sysfs", nullptr,
                  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  if (mfd < 0) return mfd;
  FdCloser mc{mfd};
  if (int rc = AttachAt(mfd, rootfd, "sys"); rc < 0) return rc;
  int sysfd = OpenInRoot(rootfd, "sys", O_PATH | O_DIRECTORY);
  if (sysfd < 0) return sysfd;
  FdCloser sc{sysfd};
  // Block devices name host storage: loop devices' backing files (every
  // sandbox pool file), disk models and serials, btrfs device lists. No
  // workload inside needs them: cover them all with empty directories.
  static const char* const kHidden[] = {"block",    "class/block", "dev/block", "devices/virtual/block",
                                        "fs/btrfs", "fs/ext4",     "firmware",  "class/loop"};
  for (const char* d : kHidden) {
    if (int rc = MaskDir(sysfd, d); rc < 0) {
      // Never leave the unmasked view: hide all of /sys instead.
      int all = MaskDir(rootfd, "sys");
      return all < 0 ? all : rc;
    }
  }
  return 0;
}

int PivotInto(int rootfd) {
  int oldroot = open("/", O_DIRECTORY | O_PATH | O_CLOEXEC);
  if (oldroot < 0) return Err();
  FdCloser oc{oldroot};
  if (fchdir(rootfd) < 0) return Err();
  if (SysPivotRoot(".", ".") < 0) return Err();
  if (fchdir(oldroot) < 0) return Err();
  if (mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) < 0) return Err();
  if (umount2(".", MNT_DETACH) < 0) return Err();
  if (chdir("/") < 0) return Err();
  return 0;
}

}  // namespace mounts

namespace {

Result<UniqueFd> IdmapClone(UniqueFd fd, const std::string& what, int userns_fd, unsigned extra_attrs) {
  struct mount_attr a;
  memset(&a, 0, sizeof(a));
  a.attr_set = MOUNT_ATTR_IDMAP | extra_attrs;
  a.userns_fd = static_cast<uint64_t>(userns_fd);
  if (mount_setattr(fd.get(), "", AT_EMPTY_PATH, &a, sizeof(a)) != 0) {
    return ErrnoStatus("mount_setattr idmap " + what);
  }
  return fd;
}

}  // namespace

Result<UniqueFd> CloneIdmappedTree(const std::string& path, int userns_fd, unsigned extra_attrs) {
  UniqueFd fd(open_tree(AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (!fd) return ErrnoStatus("open_tree " + path);
  return IdmapClone(std::move(fd), path, userns_fd, extra_attrs);
}

Result<UniqueFd> CloneIdmappedTreeAt(int dirfd, int userns_fd, unsigned extra_attrs) {
  // AT_EMPTY_PATH: the directory already resolved (safely) by the caller;
  // no path is looked up here, so nothing can be redirected.
  UniqueFd fd(open_tree(dirfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
  if (!fd) return ErrnoStatus("open_tree (fd)");
  return IdmapClone(std::move(fd), "(fd)", userns_fd, extra_attrs);
}

bool IsMountPoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mp;
    ls >> id >> parent >> devno >> root >> mp;
    if (mp == path) return true;
  }
  return false;
}

}  // namespace warren::sandbox
