// HeldItemStore: the work items a standalone orchestrator holds (acked, not
// ended yet), kept durably in a directory of its own data dir, so that after
// a SIGKILL the next process resumes them at once instead of waiting for
// their leases to lapse (an HTTP work source cannot list the items it held:
// the protocol has no such call for an environment key). docs/ORCHESTRATOR.md,
// "Restart safety: the standalone orchestrator".
//
// One file per item, `<dir>/<work id>.json` (mode 0600, the directory
// 0700: the file holds the item's work secret), written to a temporary file
// and renamed over the old one, so a reader sees either the old or the new
// content, never a torn one. Put and Remove are durable against a kill of
// the process when they return (the page cache outlives it), in a few
// microseconds; a background thread then fsyncs the file and the directory
// (about 8 ms here), so the entry also survives a crash of the host without
// that cost on the item's path (Flush waits for it). Work ids come from a remote
// service: only [A-Za-z0-9_-]{1,128} names a file (anything else is
// InvalidArgument and nothing is written). A file that cannot be parsed (a
// foreign file, a partly written temporary left by a crash) is removed by
// List() with a warning.
//
// Ownership: owns the directory descriptor. Thread-safety: thread-safe
// (callers on different items write different files; one mutex orders
// calls on the same item). One process per directory (the data dir's
// orchestrator.lock guarantees it).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "orchestrator/work_source.h"

namespace warren::orchestrator {

class HeldItemStore final {
 public:
  // Opens (creating, mode 0700) `dir`. The directory itself is opened
  // without following a symlink at its last component.
  static Result<std::unique_ptr<HeldItemStore>> Open(const std::string& dir);
  ~HeldItemStore();  // flushes
  HeldItemStore(const HeldItemStore&) = delete;
  HeldItemStore& operator=(const HeldItemStore&) = delete;

  // Records `item` (id, environment, type, session, secret, created_at),
  // replacing an earlier delivery of the same work id. `acked` false: the
  // ack is about to be sent (it may or may not reach the service); true:
  // the service answered it. Durable against a kill of the process on
  // return.
  Status Put(const WorkItem& item, bool acked = true);
  // Forgets the item if the stored delivery is the one given (same
  // secret): a late Remove for an earlier delivery of the same work id (its
  // runner ending after the lease moved on) leaves the newer one alone. An
  // empty `secret` removes whatever is stored. OK when absent.
  Status Remove(const std::string& work_id, const std::string& secret);
  struct Held {
    WorkItem item;
    bool acked = true;
  };
  // Every stored item, ordered by work id.
  Result<std::vector<Held>> List();

  // Waits until everything written so far is fsync'ed (file and directory).
  Status Flush();

  const std::string& dir() const { return dir_; }

  // True when `id` may name a file here.
  static bool ValidId(const std::string& id);

 private:
  HeldItemStore(std::string dir, UniqueFd fd);
  Result<Held> ReadLocked(const std::string& name);
  void SyncLoop();

  std::string dir_;
  UniqueFd fd_;
  std::mutex mu_;  // files; then sync_mu_ (never the other way)
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  std::set<std::string> to_sync_;  // files written since the last flush
  uint64_t written_ = 0;           // changes so far
  uint64_t synced_ = 0;            // changes fsync'ed
  Status sync_error_;
  bool closing_ = false;
  std::thread syncer_;
};

}  // namespace warren::orchestrator
