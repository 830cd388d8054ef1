// Persisted state: one JSON file per sandbox and per snapshot under the data
// dir, written atomically (temp file + fsync + rename). The files are the
// runtime's only memory across restarts. Thread-safety: StateStore is
// thread-compatible; the runtime serialises writers with its lock.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
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

// A position in the keyset order of sandbox records: (created_at, id).
struct RecordKey {
  int64_t created_at = 0;
  std::string id;
  bool operator<(const RecordKey& o) const { return created_at != o.created_at ? created_at < o.created_at : id < o.id; }
};

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

// A read cache over the sandbox records of a JsonDir. A record is read and
// parsed again only when its file changed; a file is judged unchanged when
// its inode, size, mtime and ctime are (every write is a new file renamed
// into place, so a rewrite gets a new inode unless the file system reuses
// the old one within one timestamp tick at the same size). A lookup by id
// stats its file, so a record written or removed behind the cache's back
// is seen at once.
//
// Scans (All, ForEach, FindByName: List, a lookup by name and the id-slot
// allocation of every create, the janitor's passes) go further when the
// cache has a write counter (`seq_path`, one 8-byte file shared through
// mmap by every RecordCache on the same directory, in any process): each
// Put/Remove bumps it before and after its write, so when the counter
// moved by exactly this cache's own bumps since its last full walk, no
// other writer touched the directory (nor is one half-way, nor died
// half-way) and the scan answers from memory. Otherwise it walks the
// directory: one readdir and one stat per record, a read and parse only
// for the changed ones (docs/SANDBOX.md; bench/orchestrator
// record_scan_bench). Without a counter every scan walks.
//
// Keeps one parsed SandboxRecord per file (about 1 KiB each).
// Thread-safety: thread-safe; no call holds its mutex across file I/O
// other than stat/readdir.
class RecordCache final {
 public:
  // `seq_path`: the shared write counter ("" = none); made if missing.
  explicit RecordCache(const JsonDir* dir, std::string seq_path = "") : dir_(dir), seq_path_(std::move(seq_path)) {}
  ~RecordCache();
  RecordCache(const RecordCache&) = delete;
  RecordCache& operator=(const RecordCache&) = delete;

  // The record of `key`: NotFound when its file is absent; the parse error
  // when it is not a valid record.
  Result<SandboxRecord> Get(const std::string& key);
  // Every valid record, by key order (unparseable files are skipped).
  std::vector<SandboxRecord> All();
  // Calls fn on every valid record, by key order, without copying them.
  // fn runs under the cache's mutex: it must not call back into the cache.
  void ForEach(const std::function<void(const SandboxRecord&)>& fn);
  // The key of the record named `name` whose state is not destroyed
  // (NotFound if none).
  Result<std::string> FindByName(const std::string& name);
  // Keyset listing: up to `limit` valid records that `pred` accepts (null:
  // all), in (created_at, key) order, strictly after `after` (null: from the
  // first). Copies only what it returns. While no other writer touched the
  // directory since the last walk (the write counter, above) it answers
  // from an index kept beside the records: O(log n + records skipped by
  // pred + limit) per page; else it walks once (as any scan), keeping the
  // `limit` smallest. Paging through n records by passing the last key of
  // each page as the next `after` returns every record present throughout
  // exactly once, in order, whatever is added or removed in between; a
  // record added behind the cursor is not returned. `pred` runs under the
  // cache's mutex: it must not call back into the cache. With `state`, only
  // records in that state, from a per-state index: O(log n + records of
  // that state skipped by pred + limit), however many records are in other
  // states (the orchestrator polls the busy states of 10,000 sandboxes).
  std::vector<SandboxRecord> Page(const std::optional<RecordKey>& after, size_t limit,
                                  const std::function<bool(const SandboxRecord&)>& pred = nullptr,
                                  std::optional<SandboxState> state = std::nullopt);
  // Writes the record's file (atomically) and caches it.
  Status Put(const SandboxRecord& rec);
  Status Remove(const std::string& key);
  // Files read and parsed so far (tests: a scan of unchanged files reads none).
  int64_t reads() const;
  // Scans that walked the directory (tests: a scan with no other writer
  // since the last walk does not).
  int64_t walks() const;

 private:
  struct Sig {
    uint64_t dev = 0, ino = 0;
    int64_t size = -1, mtime_ns = 0, ctime_ns = 0;
    bool operator==(const Sig& o) const {
      return dev == o.dev && ino == o.ino && size == o.size && mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
    }
  };
  struct Entry {
    Sig sig;
    SandboxRecord rec;
  };
  // The current record of `key` given the file's stat `sig`: the cached one
  // when it matches, else read and parsed (and cached if still current).
  Result<SandboxRecord> Load(const std::string& key, const Sig* sig);
  // Walks every file and brings the cache up to date; calls fn on each
  // valid record under the mutex (fn must not call back into the cache).
  template <typename Fn>
  void Scan(Fn fn);

  // entries_, order_ and by_state_ change together (mu_ held).
  void SetEntryLocked(const std::string& key, Entry e);
  void EraseEntryLocked(const std::string& key);
  std::map<std::string, Entry>::iterator EraseEntryLocked(std::map<std::string, Entry>::iterator it);
  // Drops the entry (key, rec)'s keys from order_ and by_state_ (mu_ held).
  void UnindexLocked(const std::string& key, const SandboxRecord& rec);
  // Memory holds the directory: no other writer since the last walk (mu_ held).
  bool CurrentLocked();

  // Maps the counter (mu_ held); false without one.
  bool OpenSeqLocked();
  // Bumps the shared counter for one of this cache's writes (mu_ held).
  void BumpLocked();

  const JsonDir* dir_;
  const std::string seq_path_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  std::set<RecordKey> order_;  // (created_at, key) of every entry: Page's index
  std::map<SandboxState, std::set<RecordKey>> by_state_;  // order_ split by the entry's state
  uint64_t writes_ = 0;  // bumped by every Put/Remove: a read that raced one is not cached
  int64_t reads_ = 0, walks_ = 0;
  uint64_t* seq_ = nullptr;  // the shared counter (mmap), or null
  bool seq_failed_ = false;  // could not be opened: walk every time
  bool complete_ = false;    // entries_ held every record at the last walk...
  uint64_t seq_base_ = 0;    // ...when the counter read this,
  uint64_t own_bumps_ = 0;   // and this cache bumped it this often since
};

}  // namespace warren::sandbox
