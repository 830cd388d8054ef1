// Mounts: building a sandbox's mount table with the new mount API
// (fsopen/fsmount/open_tree/move_mount/mount_setattr). Every target inside a
// rootfs is opened relative to the rootfs directory fd with openat2
// RESOLVE_IN_ROOT, so a symlink planted in the image cannot redirect a mount
// onto a host path.
//
// The functions in namespace `mounts` are async-signal-safe (syscalls only,
// no heap) and return 0 or -errno: they run in the sandbox's init between
// clone() and its main loop. CloneIdmappedTree is host-side.
// Thread-safety: no shared state.
#pragma once

#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace warren::sandbox {

namespace mounts {

// openat2(rootfd, rel, flags|O_CLOEXEC, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS).
int OpenInRoot(int rootfd, const char* rel, int flags);
// Creates a filesystem context, applies `kv` (NULL-terminated key, value
// pairs; a NULL value sets a flag) and returns a detached mount fd.
int NewFs(const char* fstype, const char* const* kv, unsigned attrs);
// Moves the detached mount `mntfd` onto `rel` inside `rootfd`.
int AttachAt(int mntfd, int rootfd, const char* rel);
// Bind-mounts host `src` onto `rel` inside `rootfd` (which it creates as a
// file or directory when missing), with mount attributes `attrs`.
int BindAt(const char* src, int rootfd, const char* rel, unsigned attrs, bool recursive);
// Mounts /proc (the caller's pid namespace) with its sensitive entries
// masked (kcore, keys, sysrq-trigger, ...) and sys/irq/bus/fs read-only.
// `where` receives a static description of the failing step.
int SetupProc(int rootfd, const char** where);
// A tmpfs /dev with null, zero, full, random, urandom, tty bound from the
// host, a private devpts instance, /dev/shm, and the usual symlinks.
int SetupDev(int rootfd, const char** where);
// Read-only sysfs at /sys (best effort: skipped when the kernel refuses).
int SetupSys(int rootfd);
// pivot_root into `rootfd` (a mount point) and detach the old root.
int PivotInto(int rootfd);

}  // namespace mounts

// Host side: a detached clone of the mount at `path` whose ids are mapped
// through the user namespace `userns_fd` (on-disk uid 0 appears as the
// namespace's root), plus `extra_attrs` (MOUNT_ATTR_NODEV, ...).
// `path` must be host-trusted (it is resolved following symlinks).
Result<UniqueFd> CloneIdmappedTree(const std::string& path, int userns_fd, unsigned extra_attrs);
// The same for a directory the caller already opened (O_PATH is enough):
// the form to use for anything a sandbox could have written.
Result<UniqueFd> CloneIdmappedTreeAt(int dirfd, int userns_fd, unsigned extra_attrs);

// True when `path` is a mount point in the calling process's namespace.
bool IsMountPoint(const std::string& path);

}  // namespace warren::sandbox
