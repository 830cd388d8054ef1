// Locks of the sandbox runtime: named exclusive locks that hold both within
// the process (a mutex per name) and across processes (flock on a file per
// name), and the data dir's shared/exclusive "world" lock.
//
// flock locks belong to an open file description, so each holder opens its
// own descriptor: two threads of one process exclude each other as two
// processes do. The in-process mutex comes first, so threads of one process
// queue on it rather than all sleeping in flock.
//
// Lock files are never deleted while the data dir is in use (deleting a
// lock file while someone waits on it would split the lock in two);
// SandboxRuntime::Recover() removes those of sandboxes that are gone, under
// the exclusive world lock.
//
// Ownership: a LockSet owns its mutex table; a held lock (NamedLock,
// WorldLock) borrows the LockSet and must not outlive it. Thread-safety:
// LockSet is thread-safe; a held lock object belongs to one thread.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "common/status.h"

namespace warren::sandbox {

class LockSet;

// An exclusive lock on one name (a sandbox id, "registry", ...), held from
// construction to destruction. ok() is false only when the lock file could
// not be opened (then nothing is held).
class NamedLock final {
 public:
  NamedLock(LockSet* set, const std::string& name);
  ~NamedLock();
  NamedLock(const NamedLock&) = delete;
  NamedLock& operator=(const NamedLock&) = delete;
  const Status& status() const { return status_; }

 private:
  friend class LockSet;
  NamedLock(LockSet* set, const std::string& name, bool try_only);
  LockSet* set_;
  std::string name_;
  bool held_mutex_ = false;
  int fd_ = -1;
  Status status_;
};

// The data dir as a whole: shared by every operation, exclusive for
// recovery (which reasons about every record at once).
class WorldLock final {
 public:
  WorldLock(LockSet* set, bool exclusive);
  ~WorldLock();
  WorldLock(const WorldLock&) = delete;
  WorldLock& operator=(const WorldLock&) = delete;
  const Status& status() const { return status_; }

 private:
  LockSet* set_;
  bool exclusive_;
  int fd_ = -1;
  Status status_;
};

class LockSet final {
 public:
  // Lock files live in `dir` (created if missing); the world lock is
  // `world_file`.
  LockSet(std::string dir, std::string world_file);
  LockSet(const LockSet&) = delete;
  LockSet& operator=(const LockSet&) = delete;

  // Takes `name` if nobody holds it (in this process or another); nullptr
  // when it is busy or its lock file cannot be opened.
  std::unique_ptr<NamedLock> TryLock(const std::string& name);
  // Removes the lock file of `name` (caller holds the world lock exclusively).
  void RemoveLockFile(const std::string& name);
  const std::string& dir() const { return dir_; }

 private:
  friend class NamedLock;
  friend class WorldLock;
  struct Entry {
    bool held = false;
    int waiters = 0;
    std::condition_variable cv;
  };
  // In-process part of a named lock.
  bool Acquire(const std::string& name, bool try_only);
  void Release(const std::string& name);

  std::string dir_, world_file_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::shared_mutex world_mu_;
};

}  // namespace warren::sandbox
