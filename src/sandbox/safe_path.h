// Safe path primitives for host-side operations on trees a sandbox can write
// (volumes, rootfs views, archive scratch): every component is resolved
// relative to a directory fd the host opened itself, with openat2
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
// RESOLVE_NO_XDEV, so a symlink, a "..", a magic link or a mount point
// planted by the sandbox (or swapped in while we walk) makes the operation
// fail instead of reaching a host path. Missing directories are created
// with mkdirat relative to the fd of their parent, with the requested mode.
//
// A sandbox cannot hard-link a directory, and a hard link to a file outside
// the tree can only be made by someone who can already name that file, so
// fd-relative resolution plus no-follow closes both link tricks.
//
// Thread-safety: stateless; every function is safe to call concurrently.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace warren::sandbox {

// Splits a relative path into components, rejecting absolute paths, "..",
// NUL bytes and over-long names. "." and empty components are dropped.
Result<std::vector<std::string>> SplitRelative(std::string_view rel);

// Opens `rel` beneath `dirfd` (O_PATH|O_DIRECTORY unless `flags` says
// otherwise) without following any symlink and without leaving the mount of
// `dirfd`. ELOOP: a component is a symlink; EXDEV: a component is a mount
// point or tries to leave; ENOTDIR: a component is not a directory.
Result<UniqueFd> OpenBeneath(int dirfd, std::string_view rel, int flags = O_PATH | O_DIRECTORY);

// Like OpenBeneath for a directory, creating each missing component with
// mkdirat(parent_fd, name, mode) (mode is applied exactly: the umask is
// bypassed with fchmod on what we created). Returns an O_PATH directory fd.
Result<UniqueFd> MkdirBeneath(int dirfd, std::string_view rel, mode_t mode);

// Removes the entry `name` of directory `dirfd` and, when it is a
// directory, everything below it: fd-relative, never following a symlink,
// never descending into another mount (fails with EXDEV rather than touch
// it). A missing entry is not an error.
Status RemoveTreeAt(int dirfd, const std::string& name);

// A detached clone (OPEN_TREE_CLONE) of the directory open at `fd`.
Result<UniqueFd> CloneTreeOfFd(int fd);

}  // namespace warren::sandbox
