// Archive: a sandbox's root filesystem exported to / imported from one
// compressed file (`tar.zst`, pax format, libarchive).
//
// What survives a round trip: regular files, directories, symlinks,
// hardlinks (as tar hardlink entries), fifos, numeric owners (the on-disk
// ids, 0..65535 for an idmapped rootfs; no name lookup), permission bits
// including setuid/setgid/sticky, mtimes, extended attributes (pax
// SCHILY.xattr records) and holes in sparse files (pax sparse maps; holes
// stay holes on extract). Device nodes and sockets are skipped: a sandbox
// cannot create them (user namespace), so a rootfs holds none that matter.
//
// Thread-safety: both functions are reentrant; the caller must ensure that
// nothing modifies `src_dir` / `dst_dir` meanwhile (the runtime archives
// only stopped sandboxes, under its lock).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace warren::sandbox {

struct ArchiveStats {
  int64_t entries = 0;
  int64_t data_bytes = 0;     // file bytes stored (holes excluded)
  int64_t archive_bytes = 0;  // size of the compressed file
};

// Writes the tree at `src_dir` (not following symlinks, not crossing mount
// points) to `dst_file`: first to `dst_file + ".tmp"`, fsynced, then renamed
// over `dst_file` and the directory fsynced, so `dst_file` is either absent
// or complete. On error the temp file is removed.
Result<ArchiveStats> WriteTreeArchive(const std::string& src_dir, const std::string& dst_file);

// Extracts `file` into the existing directory `dst_dir` (normally an empty
// subvolume) and syncs its filesystem. Entry names must be relative without
// ".." components, and extraction never follows a symlink in a path (so an
// altered archive cannot write outside `dst_dir`). Entries owned by a uid or
// gid >= `max_id` are rejected (InvalidArgument): a restored rootfs must stay
// inside the sandbox's id range. On error `dst_dir` is left half-filled; the
// caller deletes it.
Result<ArchiveStats> ExtractTreeArchive(const std::string& file, const std::string& dst_dir, uint32_t max_id);

}  // namespace warren::sandbox
