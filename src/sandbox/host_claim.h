// Host-wide claim of a runtime's cgroup prefix by its data dir.
//
// A runtime's host-side names are keyed by its cgroup prefix, not by its data
// dir: the cgroup directory, the veth names (NetIfPrefix) and the nft table
// (FirewallTableName). Recovery treats every cgroup and veth under that
// prefix that its own records do not name as an orphan and removes it, and
// the firewall is re-rendered from its own records. So two data dirs opened
// with the same prefix (two `warren serve`s left at the default, or the CLI's
// default /var/lib/warren beside a server's ./warren-data) would kill each
// other's sandboxes. This module makes that a clear start-up error instead:
// the first data dir to open a prefix claims it in `registry_dir`
// (/run/warren/runtimes, gone at reboot like the cgroups and veths it
// protects); a second data dir is refused while the first still exists.
//
// Same data dir = same device and inode (a moved data dir keeps its claim
// once the old path is gone). A claim whose data dir no longer exists, or is
// another directory now (another device or inode; a new directory that reuses
// the old inode number cannot be told apart and keeps the claim), is stale
// and taken over. Every file is opened
// relative to the registry's directory fd without following links; the check
// and the write run under an flock on that directory, so two runtimes opening
// at once cannot both win.
//
// Thread-safety: stateless; safe to call concurrently (the flock serialises).
#pragma once

#include <string>

#include "common/status.h"

namespace warren::sandbox {

// Claims `prefix` for the data dir `data_dir` (which must exist). OK when the
// prefix is free, stale, or already this data dir's. FailedPrecondition when
// another existing data dir holds it (the message names it and says how to
// choose another prefix). Other errors: the registry cannot be used (a link
// planted as an entry gives ELOOP, the registry dir as a link ENOTDIR).
Status ClaimCgroupPrefix(const std::string& registry_dir, const std::string& prefix, const std::string& data_dir);

}  // namespace warren::sandbox
