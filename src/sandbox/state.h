// Persisted state: one JSON file per sandbox and per snapshot under the data
// dir, written atomically (temp file + fsync + rename). The files are the
// runtime's only memory across restarts. Thread-safety: StateStore is
// thread-compatible; the runtime serialises writers with its lock.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"
#include "sandbox/cgroups.h"

namespace warren::sandbox {

enum class SandboxState {
  kCreating,
  kStarting,
  kStarted,
  kStopping,
  kStopped,
  kPausing,
  kPaused,
  kResuming,
  kForking,
  kDestroying,
  kDestroyed,  // tombstone kept while fork relatives exist
  kError,
  kArchiving,  // stopped -> archived: writing <data>/archives/<id>.tar.zst
  kArchived,   // rootfs only in the archive file; no subvolume
  kRestoring,  // archived -> stopped: extracting into a new subvolume
};

inline constexpr int64_t kNeverDelete = -1;

std::string StateName(SandboxState s);
Result<SandboxState> ParseState(const std::string& s);
bool IsTransitional(SandboxState s);

struct VolumeMount {
  std::string volume;   // name under <data>/volumes
  std::string path;     // absolute mount point inside the sandbox
  std::string subpath;  // optional directory inside the volume
  bool read_only = false;
};

// A host file or directory mounted read-only into the sandbox at `path`
// (nosuid, nodev; no id mapping: it keeps its host owner, which the sandbox
// sees as nobody). For operator-chosen paths only (the orchestrator mounts
// the warren-runner binary and the service's socket directory this way);
// the mount point inside is created and resolved without following links.
struct HostBind {
  std::string host_path;  // absolute host path
  std::string path;       // absolute path inside the sandbox
};

struct SandboxRecord {
  std::string id;
  std::string name;
  std::string snapshot;       // snapshot name it was created from
  std::string snapshot_hash;  // layer hash
  SandboxState state = SandboxState::kCreating;
  SandboxState prev_state = SandboxState::kStopped;  // before the current transition
  std::string error;
  int id_slot = -1;
  pid_t init_pid = -1;
  uint64_t init_start_time = 0;
  std::map<std::string, std::string> labels;
  std::vector<std::string> env;  // KEY=value, on top of the snapshot's
  Resources resources;
  std::string network = "none";         // "none", "isolated" or "limited"
  std::vector<std::string> allow_hosts;  // limited: the egress proxy's host allowlist (canonical)
  std::vector<std::string> allow_cidrs;  // isolated: IPv4 CIDRs let through the blocked ranges
  bool block_all = false;                // isolated: no egress except allow_cidrs
  std::vector<std::string> dns;          // isolated: nameservers written to /etc/resolv.conf
  std::string ip;                        // isolated and running: the sandbox's IPv4 address
  std::string user;     // default exec user ("" = snapshot's)
  std::string workdir;  // default exec cwd ("" = snapshot's)
  std::vector<VolumeMount> volumes;
  std::vector<HostBind> host_binds;
  std::string parent;                 // fork parent id, "" for roots
  std::vector<std::string> children;  // fork children ids (in order)
  int64_t created_at = 0;             // micros since epoch
  int64_t updated_at = 0;
  int64_t last_activity = 0;
  int64_t state_deadline = 0;  // micros; transitional states only
  int64_t auto_stop_minutes = 0;
  // Counted from stopped_at (Daytona semantics). Archive: 0 = off. Delete:
  // kNeverDelete (-1) = never, 0 = at the first idle sweep after it stops.
  int64_t auto_archive_minutes = 0;
  int64_t auto_delete_minutes = -1;
  int64_t stopped_at = 0;      // micros; when it last entered stopped
  int64_t archive_bytes = 0;   // size of the archive file while archived
  bool deleted = false;  // tombstone (kept so fork trees stay walkable)

  Json ToJson() const;
  static Result<SandboxRecord> FromJson(const Json& j);
};

struct SnapshotRecord {
  std::string name;
  std::string hash;  // hash of the final layer (content-addressed)
  std::vector<std::string> env;
  std::string workdir = "/";
  std::string user = "root";
  Resources resources;  // defaults for sandboxes created from it
  std::vector<std::string> layers;  // layer hashes, base first
  int64_t created_at = 0;
  std::string recipe;

  std::string Ref() const { return name + "@" + hash.substr(0, 12); }
  Json ToJson() const;
  static Result<SnapshotRecord> FromJson(const Json& j);
};

Json ResourcesToJson(const Resources& r);
Resources ResourcesFromJson(const Json& j);

// A directory of `<key>.json` files.
class JsonDir final {
 public:
  explicit JsonDir(std::string dir) : dir_(std::move(dir)) {}
  Status Put(const std::string& key, const Json& value) const;
  Result<Json> Get(const std::string& key) const;  // NotFound if absent
  Status Remove(const std::string& key) const;     // OK if absent
  std::vector<std::string> Keys() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

}  // namespace warren::sandbox
