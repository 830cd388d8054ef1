#include "orchestrator/held_items.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/json.h"
#include "common/log.h"

namespace warren::orchestrator {
namespace {

constexpr size_t kMaxFileBytes = 64 * 1024;

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string StringField(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

}  // namespace

bool HeldItemStore::ValidId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

Result<std::unique_ptr<HeldItemStore>> HeldItemStore::Open(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno(errno, "mkdir " + dir);
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Status::FromErrno(errno, "open " + dir);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + dir);
  if (st.st_uid != ::geteuid()) return Status::PermissionDenied(dir + " is owned by another user");
  if ((st.st_mode & 077) != 0 && ::fchmod(fd.get(), 0700) != 0) return Status::FromErrno(errno, "chmod " + dir);
  return std::unique_ptr<HeldItemStore>(new HeldItemStore(dir, std::move(fd)));
}

HeldItemStore::HeldItemStore(std::string dir, UniqueFd fd) : dir_(std::move(dir)), fd_(std::move(fd)) {
  syncer_ = std::thread([this] { SyncLoop(); });
}

HeldItemStore::~HeldItemStore() {
  (void)Flush();
  {
    std::lock_guard<std::mutex> l(sync_mu_);
    closing_ = true;
  }
  sync_cv_.notify_all();
  syncer_.join();
}

void HeldItemStore::SyncLoop() {
  std::unique_lock<std::mutex> l(sync_mu_);
  for (;;) {
    sync_cv_.wait(l, [this] { return closing_ || synced_ < written_; });
    if (synced_ >= written_) return;  // closing, nothing pending
    const uint64_t upto = written_;
    std::set<std::string> files;
    files.swap(to_sync_);
    l.unlock();
    Status err;
    for (const std::string& name : files) {
      // Gone again (removed since): the directory fsync covers it.
      UniqueFd f(::openat(fd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (f && ::fsync(f.get()) != 0) err = Status::FromErrno(errno, "fsync " + dir_ + "/" + name);
    }
    if (::fsync(fd_.get()) != 0) err = Status::FromErrno(errno, "fsync " + dir_);
    if (!err.ok()) log::Warn("orchestrator.held_items_sync_failed", {{"error", err.ToString()}});
    l.lock();
    synced_ = upto;
    if (!err.ok()) sync_error_ = err;
    sync_cv_.notify_all();
  }
}

Status HeldItemStore::Flush() {
  std::unique_lock<std::mutex> l(sync_mu_);
  const uint64_t want = written_;
  sync_cv_.wait(l, [&] { return synced_ >= want; });
  Status s = sync_error_;
  sync_error_ = Status::Ok();
  return s;
}

Status HeldItemStore::Put(const WorkItem& item, bool acked) {
  if (!ValidId(item.id)) return Status::InvalidArgument("work id '" + item.id.substr(0, 64) + "' cannot name a file");
  Json j = Json::object();
  j["id"] = item.id;
  j["environment_id"] = item.environment_id;
  j["type"] = item.type;
  j["session_id"] = item.session_id;
  j["secret"] = item.secret;
  j["created_at"] = item.created_at;
  j["acked"] = acked;
  const std::string data = DumpJson(j);
  const std::string name = item.id + ".json";
  const std::string tmp = "." + item.id + ".tmp";
  std::lock_guard<std::mutex> l(mu_);
  UniqueFd f(::openat(fd_.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!f) return Status::FromErrno(errno, "create " + dir_ + "/" + tmp);
  if (!WriteAll(f.get(), data)) {
    int err = errno;
    ::unlinkat(fd_.get(), tmp.c_str(), 0);
    return Status::FromErrno(err, "write " + dir_ + "/" + tmp);
  }
  f.reset();
  if (::renameat(fd_.get(), tmp.c_str(), fd_.get(), name.c_str()) != 0) {
    int err = errno;
    ::unlinkat(fd_.get(), tmp.c_str(), 0);
    return Status::FromErrno(err, "rename " + dir_ + "/" + name);
  }
  std::lock_guard<std::mutex> sl(sync_mu_);
  to_sync_.insert(name);
  ++written_;
  sync_cv_.notify_all();
  return Status::Ok();
}

Result<HeldItemStore::Held> HeldItemStore::ReadLocked(const std::string& name) {
  UniqueFd f(::openat(fd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!f) {
    if (errno == ENOENT) return Status::NotFound(name);
    return Status::FromErrno(errno, "open " + dir_ + "/" + name);
  }
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(f.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "read " + dir_ + "/" + name);
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxFileBytes) return Status::InvalidArgument(name + " is too large");
  }
  auto j = ParseJson(data);
  if (!j.ok() || !j->is_object()) return Status::InvalidArgument(name + " is not a held item");
  WorkItem w;
  w.id = StringField(*j, "id");
  w.environment_id = StringField(*j, "environment_id");
  w.type = StringField(*j, "type");
  w.session_id = StringField(*j, "session_id");
  w.secret = StringField(*j, "secret");
  w.created_at = StringField(*j, "created_at");
  if (!ValidId(w.id) || name != w.id + ".json") return Status::InvalidArgument(name + " names another item");
  w.raw = Json{{"type", "work"}, {"id", w.id}, {"environment_id", w.environment_id},
               {"data", {{"type", w.type}, {"id", w.session_id}}}, {"secret", nullptr}, {"created_at", w.created_at}};
  Held h;
  h.item = std::move(w);
  h.acked = !j->contains("acked") || !(*j)["acked"].is_boolean() || (*j)["acked"].get<bool>();
  return h;
}

Status HeldItemStore::Remove(const std::string& work_id, const std::string& secret) {
  if (!ValidId(work_id)) return Status::Ok();  // never stored
  const std::string name = work_id + ".json";
  std::lock_guard<std::mutex> l(mu_);
  if (!secret.empty()) {
    auto cur = ReadLocked(name);
    if (!cur.ok() && cur.status().code() == Code::kNotFound) return Status::Ok();
    // A newer delivery of the same work id (other secret) stays.
    if (cur.ok() && cur->item.secret != secret) return Status::Ok();
  }
  if (::unlinkat(fd_.get(), name.c_str(), 0) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, "unlink " + dir_ + "/" + name);
  }
  std::lock_guard<std::mutex> sl(sync_mu_);
  to_sync_.erase(name);
  ++written_;
  sync_cv_.notify_all();
  return Status::Ok();
}

Result<std::vector<HeldItemStore::Held>> HeldItemStore::List() {
  std::lock_guard<std::mutex> l(mu_);
  int dup = ::openat(fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return Status::FromErrno(errno, "open " + dir_);
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    int err = errno;
    ::close(dup);
    return Status::FromErrno(err, "opendir " + dir_);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    names.push_back(std::move(n));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  std::vector<Held> out;
  for (const std::string& n : names) {
    const bool tmp = n.size() > 4 && n[0] == '.' && n.compare(n.size() - 4, 4, ".tmp") == 0;
    const bool json = n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0;
    auto w = json ? ReadLocked(n) : Result<Held>(Status::InvalidArgument(n + " is not a held item"));
    if (w.ok()) {
      out.push_back(std::move(w).value());
      continue;
    }
    if (w.status().code() == Code::kNotFound) continue;
    // A temporary left by a crash mid-Put (the rename never happened, so the
    // previous content, if any, is still in place) or a foreign file.
    if (!tmp) log::Warn("orchestrator.held_item_dropped", {{"file", dir_ + "/" + n}, {"error", w.status().ToString()}});
    ::unlinkat(fd_.get(), n.c_str(), 0);
  }
  return out;
}

}  // namespace warren::orchestrator
