#include "sandbox/locks.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "sandbox/sys.h"

namespace warren::sandbox {

namespace {

int OpenLockFile(const std::string& path) {
  return open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
}

bool Flock(int fd, int op) {
  while (flock(fd, op) != 0) {
    if (errno != EINTR) return false;
  }
  return true;
}

}  // namespace

LockSet::LockSet(std::string dir, std::string world_file) : dir_(std::move(dir)), world_file_(std::move(world_file)) {}

bool LockSet::Acquire(const std::string& name, bool try_only) {
  std::unique_lock<std::mutex> l(mu_);
  auto& e = entries_[name];
  if (!e) e = std::make_unique<Entry>();
  if (e->held && try_only) return false;
  ++e->waiters;
  e->cv.wait(l, [&] { return !e->held; });
  --e->waiters;
  e->held = true;
  return true;
}

void LockSet::Release(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  it->second->held = false;
  if (it->second->waiters > 0) {
    it->second->cv.notify_one();
  } else {
    entries_.erase(it);
  }
}

std::unique_ptr<NamedLock> LockSet::TryLock(const std::string& name) {
  std::unique_ptr<NamedLock> l(new NamedLock(this, name, true));
  if (!l->status().ok()) return nullptr;
  return l;
}

void LockSet::RemoveLockFile(const std::string& name) { unlink((dir_ + "/" + name).c_str()); }

NamedLock::NamedLock(LockSet* set, const std::string& name) : NamedLock(set, name, false) {}

NamedLock::NamedLock(LockSet* set, const std::string& name, bool try_only) : set_(set), name_(name) {
  if (name_.empty() || name_[0] == '.' || name_.find('/') != std::string::npos) {
    status_ = Status::InvalidArgument("bad lock name: " + name_);
    return;
  }
  if (!set_->Acquire(name_, try_only)) {
    status_ = Status::Unavailable("lock " + name_ + " is busy");
    return;
  }
  held_mutex_ = true;
  fd_ = OpenLockFile(set_->dir() + "/" + name_);
  if (fd_ < 0) {
    status_ = ErrnoStatus("open lock " + name_);
    return;
  }
  if (!Flock(fd_, LOCK_EX | (try_only ? LOCK_NB : 0))) {
    status_ = errno == EWOULDBLOCK ? Status::Unavailable("lock " + name_ + " is busy") : ErrnoStatus("flock " + name_);
    close(fd_);
    fd_ = -1;
  }
}

NamedLock::~NamedLock() {
  if (fd_ >= 0) close(fd_);  // releases the flock
  if (held_mutex_) set_->Release(name_);
}

WorldLock::WorldLock(LockSet* set, bool exclusive) : set_(set), exclusive_(exclusive) {
  if (exclusive_) {
    set_->world_mu_.lock();
  } else {
    set_->world_mu_.lock_shared();
  }
  fd_ = OpenLockFile(set_->world_file_);
  if (fd_ < 0) {
    status_ = ErrnoStatus("open lock");
    return;
  }
  if (!Flock(fd_, exclusive_ ? LOCK_EX : LOCK_SH)) {
    status_ = ErrnoStatus("flock");
    close(fd_);
    fd_ = -1;
  }
}

WorldLock::~WorldLock() {
  if (fd_ >= 0) close(fd_);
  if (exclusive_) {
    set_->world_mu_.unlock();
  } else {
    set_->world_mu_.unlock_shared();
  }
}

}  // namespace warren::sandbox
