#include "sandbox/state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {
const char* const kStateNames[] = {"creating", "starting", "started",  "stopping",   "stopped", "pausing",
                                   "paused",   "resuming", "forking",  "destroying", "destroyed", "error",
                                   "archiving", "archived", "restoring"};
}

std::string StateName(SandboxState s) { return kStateNames[static_cast<int>(s)]; }

Result<SandboxState> ParseState(const std::string& s) {
  for (int i = 0; i < static_cast<int>(std::size(kStateNames)); ++i) {
    if (s == kStateNames[i]) return static_cast<SandboxState>(i);
  }
  return Status::InvalidArgument("unknown sandbox state: " + s);
}

bool IsTransitional(SandboxState s) {
  switch (s) {
    case SandboxState::kCreating:
    case SandboxState::kStarting:
    case SandboxState::kStopping:
    case SandboxState::kPausing:
    case SandboxState::kResuming:
    case SandboxState::kForking:
    case SandboxState::kDestroying:
    case SandboxState::kArchiving:
    case SandboxState::kRestoring:
      return true;
    default:
      return false;
  }
}

Json ResourcesToJson(const Resources& r) {
  return Json{{"cpus", r.cpus}, {"memory_bytes", r.memory_bytes}, {"pids", r.pids}, {"disk_bytes", r.disk_bytes}};
}

Resources ResourcesFromJson(const Json& j) {
  Resources r;
  if (!j.is_object()) return r;
  r.cpus = j.value("cpus", 0.0);
  r.memory_bytes = j.value("memory_bytes", int64_t{0});
  r.pids = j.value("pids", int64_t{0});
  r.disk_bytes = j.value("disk_bytes", int64_t{0});
  return r;
}

Json SandboxRecord::ToJson() const {
  Json binds = Json::array();
  for (const auto& b : host_binds) binds.push_back({{"host_path", b.host_path}, {"path", b.path}});
  Json vols = Json::array();
  for (const auto& v : volumes) {
    vols.push_back({{"volume", v.volume}, {"path", v.path}, {"subpath", v.subpath}, {"read_only", v.read_only}});
  }
  return Json{{"id", id},
              {"name", name},
              {"snapshot", snapshot},
              {"snapshot_hash", snapshot_hash},
              {"state", StateName(state)},
              {"prev_state", StateName(prev_state)},
              {"error", error},
              {"id_slot", id_slot},
              {"init_pid", init_pid},
              {"init_start_time", init_start_time},
              {"labels", labels},
              {"env", env},
              {"resources", ResourcesToJson(resources)},
              {"network", network},
              {"allow_cidrs", allow_cidrs},
              {"allow_hosts", allow_hosts},
              {"block_all", block_all},
              {"dns", dns},
              {"ip", ip},
              {"user", user},
              {"workdir", workdir},
              {"volumes", vols},
              {"host_binds", binds},
              {"parent", parent},
              {"children", children},
              {"created_at", created_at},
              {"updated_at", updated_at},
              {"last_activity", last_activity},
              {"state_deadline", state_deadline},
              {"auto_stop_minutes", auto_stop_minutes},
              {"auto_archive_minutes", auto_archive_minutes},
              {"auto_delete_minutes", auto_delete_minutes},
              {"stopped_at", stopped_at},
              {"archive_bytes", archive_bytes},
              {"deleted", deleted}};
}

Result<SandboxRecord> SandboxRecord::FromJson(const Json& j) {
  if (!j.is_object()) return Status::InvalidArgument("sandbox record is not an object");
  SandboxRecord r;
  try {
    r.id = j.at("id").get<std::string>();
    r.name = j.value("name", "");
    r.snapshot = j.value("snapshot", "");
    r.snapshot_hash = j.value("snapshot_hash", "");
    WARREN_ASSIGN_OR_RETURN(r.state, ParseState(j.value("state", "error")));
    WARREN_ASSIGN_OR_RETURN(r.prev_state, ParseState(j.value("prev_state", "stopped")));
    r.error = j.value("error", "");
    r.id_slot = j.value("id_slot", -1);
    r.init_pid = j.value("init_pid", -1);
    r.init_start_time = j.value("init_start_time", uint64_t{0});
    if (j.contains("labels")) r.labels = j.at("labels").get<std::map<std::string, std::string>>();
    if (j.contains("env")) r.env = j.at("env").get<std::vector<std::string>>();
    r.resources = ResourcesFromJson(j.value("resources", Json::object()));
    r.network = j.value("network", "none");
    if (j.contains("allow_cidrs")) r.allow_cidrs = j.at("allow_cidrs").get<std::vector<std::string>>();
    if (j.contains("allow_hosts")) r.allow_hosts = j.at("allow_hosts").get<std::vector<std::string>>();
    r.block_all = j.value("block_all", false);
    if (j.contains("dns")) r.dns = j.at("dns").get<std::vector<std::string>>();
    r.ip = j.value("ip", "");
    r.user = j.value("user", "");
    r.workdir = j.value("workdir", "");
    for (const auto& v : j.value("volumes", Json::array())) {
      r.volumes.push_back(VolumeMount{v.value("volume", ""), v.value("path", ""), v.value("subpath", ""),
                                      v.value("read_only", false)});
    }
    for (const auto& b : j.value("host_binds", Json::array())) {
      r.host_binds.push_back(HostBind{b.value("host_path", ""), b.value("path", "")});
    }
    r.parent = j.value("parent", "");
    if (j.contains("children")) r.children = j.at("children").get<std::vector<std::string>>();
    r.created_at = j.value("created_at", int64_t{0});
    r.updated_at = j.value("updated_at", int64_t{0});
    r.last_activity = j.value("last_activity", int64_t{0});
    r.state_deadline = j.value("state_deadline", int64_t{0});
    r.auto_stop_minutes = j.value("auto_stop_minutes", int64_t{0});
    r.auto_archive_minutes = j.value("auto_archive_minutes", int64_t{0});
    r.auto_delete_minutes = j.value("auto_delete_minutes", kNeverDelete);
    r.stopped_at = j.value("stopped_at", int64_t{0});
    r.archive_bytes = j.value("archive_bytes", int64_t{0});
    r.deleted = j.value("deleted", false);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("bad sandbox record: ") + e.what());
  }
  return r;
}

Json SnapshotRecord::ToJson() const {
  return Json{{"name", name},       {"hash", hash},     {"env", env},
              {"workdir", workdir}, {"user", user},     {"resources", ResourcesToJson(resources)},
              {"layers", layers},   {"created_at", created_at}, {"recipe", recipe}, {"ref", Ref()}};
}

Result<SnapshotRecord> SnapshotRecord::FromJson(const Json& j) {
  if (!j.is_object()) return Status::InvalidArgument("snapshot record is not an object");
  SnapshotRecord r;
  try {
    r.name = j.at("name").get<std::string>();
    r.hash = j.at("hash").get<std::string>();
    if (j.contains("env")) r.env = j.at("env").get<std::vector<std::string>>();
    r.workdir = j.value("workdir", "/");
    r.user = j.value("user", "root");
    r.resources = ResourcesFromJson(j.value("resources", Json::object()));
    if (j.contains("layers")) r.layers = j.at("layers").get<std::vector<std::string>>();
    r.created_at = j.value("created_at", int64_t{0});
    r.recipe = j.value("recipe", "");
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("bad snapshot record: ") + e.what());
  }
  return r;
}

Status JsonDir::Put(const std::string& key, const Json& value) const {
  WARREN_RETURN_IF_ERROR(MkdirAll(dir_));
  return WriteFileAtomic(dir_ + "/" + key + ".json", value.dump(2) + "\n");
}

Result<Json> JsonDir::Get(const std::string& key) const {
  auto text = ReadFileToString(dir_ + "/" + key + ".json");
  if (!text.ok()) return text.status();
  return ParseJson(*text);
}

Status JsonDir::Remove(const std::string& key) const {
  std::string p = dir_ + "/" + key + ".json";
  if (unlink(p.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink " + p);
  return Status::Ok();
}

std::vector<std::string> JsonDir::Keys() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    std::string f = e.path().filename();
    if (f.size() > 5 && f.substr(f.size() - 5) == ".json") out.push_back(f.substr(0, f.size() - 5));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ------------------------------------------------------------ RecordCache

namespace {

constexpr std::string_view kJsonSuffix = ".json";

template <typename SigT>
void FillSig(const struct stat& st, SigT* s) {
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->size = st.st_size;
  s->mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  s->ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
}

// A key names one file of the directory: no separator, no dot-dot.
bool PlainKey(const std::string& key) {
  return !key.empty() && key != "." && key != ".." && key.find('/') == std::string::npos &&
         key.find('\0') == std::string::npos;
}

}  // namespace

RecordCache::~RecordCache() {
  if (seq_) ::munmap(seq_, sizeof(uint64_t));
}

void RecordCache::UnindexLocked(const std::string& key, const SandboxRecord& rec) {
  const RecordKey k{rec.created_at, key};
  order_.erase(k);
  if (auto s = by_state_.find(rec.state); s != by_state_.end()) {
    s->second.erase(k);
    if (s->second.empty()) by_state_.erase(s);
  }
}

void RecordCache::SetEntryLocked(const std::string& key, Entry e) {
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    UnindexLocked(key, it->second.rec);
    it->second = std::move(e);
  } else {
    it = entries_.emplace(key, std::move(e)).first;
  }
  order_.insert(RecordKey{it->second.rec.created_at, key});
  by_state_[it->second.rec.state].insert(RecordKey{it->second.rec.created_at, key});
}

void RecordCache::EraseEntryLocked(const std::string& key) {
  auto it = entries_.find(key);
  if (it != entries_.end()) EraseEntryLocked(it);
}

std::map<std::string, RecordCache::Entry>::iterator RecordCache::EraseEntryLocked(
    std::map<std::string, Entry>::iterator it) {
  UnindexLocked(it->first, it->second.rec);
  return entries_.erase(it);
}

bool RecordCache::CurrentLocked() {
  if (!OpenSeqLocked()) return false;
  return complete_ && __atomic_load_n(seq_, __ATOMIC_SEQ_CST) - seq_base_ == own_bumps_;
}

bool RecordCache::OpenSeqLocked() {
  if (seq_) return true;
  if (seq_path_.empty() || seq_failed_) return false;
  UniqueFd fd(::open(seq_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) {
    if (errno != ENOENT) seq_failed_ = true;  // ENOENT: the data dir is not made yet
    return false;
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      (st.st_size < static_cast<off_t>(sizeof(uint64_t)) && ::ftruncate(fd.get(), sizeof(uint64_t)) != 0)) {
    seq_failed_ = true;
    return false;
  }
  void* p = ::mmap(nullptr, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) {
    seq_failed_ = true;
    return false;
  }
  seq_ = static_cast<uint64_t*>(p);
  complete_ = false;  // counted from the next walk on
  return true;
}

void RecordCache::BumpLocked() {
  if (!OpenSeqLocked()) return;
  __atomic_fetch_add(seq_, 1, __ATOMIC_SEQ_CST);
  ++own_bumps_;
}

Result<SandboxRecord> RecordCache::Get(const std::string& key) {
  if (!PlainKey(key)) return Status::NotFound("no record " + key);
  const std::string path = dir_->dir() + "/" + key + std::string(kJsonSuffix);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT && errno != ENOTDIR) return ErrnoStatus("stat " + path);
    std::lock_guard<std::mutex> l(mu_);
    EraseEntryLocked(key);
    return Status::NotFound("no such file: " + path);
  }
  Sig sig;
  FillSig(st, &sig);
  return Load(key, &sig);
}

Result<SandboxRecord> RecordCache::Load(const std::string& key, const Sig* sig) {
  uint64_t gen;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.sig == *sig) return it->second.rec;
    gen = writes_;
  }
  const std::string path = dir_->dir() + "/" + key + std::string(kJsonSuffix);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno != ENOENT) return ErrnoStatus("open " + path);
    std::lock_guard<std::mutex> l(mu_);
    EraseEntryLocked(key);
    return Status::NotFound("no such file: " + path);
  }
  // The signature of the file actually read (it may have been replaced
  // since the caller's stat).
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("fstat " + path);
  Sig read_sig;
  FillSig(st, &read_sig);
  std::string text;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + path);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  fd.reset();
  auto j = ParseJson(text);
  Result<SandboxRecord> rec = j.ok() ? SandboxRecord::FromJson(*j) : Result<SandboxRecord>(j.status());
  std::lock_guard<std::mutex> l(mu_);
  ++reads_;
  if (!rec.ok()) {
    EraseEntryLocked(key);
    return rec.status();
  }
  // A Put or Remove while this read ran may have cached something newer:
  // keep it (the next call stats again anyway).
  if (writes_ == gen) SetEntryLocked(key, Entry{read_sig, *rec});
  return rec;
}

template <typename Fn>
void RecordCache::Scan(Fn fn) {
  uint64_t gen, seq_start = 0;
  bool counted;
  {
    std::lock_guard<std::mutex> l(mu_);
    counted = OpenSeqLocked();
    if (counted) {
      seq_start = __atomic_load_n(seq_, __ATOMIC_SEQ_CST);
      if (complete_ && seq_start - seq_base_ == own_bumps_) {
        // Nobody else wrote since the last walk: memory is the directory.
        for (const auto& [key, e] : entries_) fn(e.rec);
        return;
      }
    }
    gen = writes_;
    ++walks_;
  }
  std::vector<std::pair<std::string, Sig>> files;
  if (DIR* d = ::opendir(dir_->dir().c_str())) {
    const int dfd = ::dirfd(d);
    while (struct dirent* e = ::readdir(d)) {
      std::string_view f = e->d_name;
      if (f.size() <= kJsonSuffix.size() || f.substr(f.size() - kJsonSuffix.size()) != kJsonSuffix) continue;
      struct stat st;
      if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
      Sig sig;
      FillSig(st, &sig);
      files.emplace_back(std::string(f.substr(0, f.size() - kJsonSuffix.size())), sig);
    }
    ::closedir(d);
  }
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<size_t> changed;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < files.size(); ++i) {
      auto it = entries_.find(files[i].first);
      if (it == entries_.end() || !(it->second.sig == files[i].second)) changed.push_back(i);
    }
  }
  // Read the changed files without the mutex.
  std::map<std::string, SandboxRecord> fresh;
  for (size_t i : changed) {
    auto r = Load(files[i].first, &files[i].second);
    if (r.ok()) fresh.emplace(files[i].first, std::move(r).value());
  }
  std::lock_guard<std::mutex> l(mu_);
  // A write of this cache during the walk may have added a file the walk
  // did not see: then nothing is dropped, and the next scan walks again.
  const bool quiet = writes_ == gen;
  if (quiet) {
    // Drop the records whose files are gone.
    size_t fi = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
      while (fi < files.size() && files[fi].first < it->first) ++fi;
      if (fi < files.size() && files[fi].first == it->first) {
        ++it;
      } else {
        it = EraseEntryLocked(it);
      }
    }
  }
  for (const auto& [key, sig] : files) {
    if (auto f = fresh.find(key); f != fresh.end()) {
      fn(f->second);
    } else if (auto it = entries_.find(key); it != entries_.end()) {
      fn(it->second.rec);
    }  // else: not a valid record
  }
  // Every valid file read during a quiet walk was cached (Load caches when
  // no write raced it): memory now holds the directory as of seq_start.
  complete_ = counted && quiet;
  if (complete_) {
    seq_base_ = seq_start;
    own_bumps_ = 0;
  }
}

std::vector<SandboxRecord> RecordCache::All() {
  std::vector<SandboxRecord> out;
  Scan([&](const SandboxRecord& r) { out.push_back(r); });
  return out;
}

void RecordCache::ForEach(const std::function<void(const SandboxRecord&)>& fn) { Scan(fn); }

Result<std::string> RecordCache::FindByName(const std::string& name) {
  std::string id;
  Scan([&](const SandboxRecord& r) {
    if (id.empty() && !name.empty() && r.name == name && r.state != SandboxState::kDestroyed) id = r.id;
  });
  if (id.empty()) return Status::NotFound("no sandbox " + name);
  return id;
}

std::vector<SandboxRecord> RecordCache::Page(const std::optional<RecordKey>& after, size_t limit,
                                             const std::function<bool(const SandboxRecord&)>& pred,
                                             std::optional<SandboxState> state) {
  std::vector<SandboxRecord> out;
  if (limit == 0) return out;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (CurrentLocked()) {
      // Memory is the directory: from the index (of `state`, if given),
      // starting after the cursor.
      const std::set<RecordKey>* index = &order_;
      if (state) {
        auto s = by_state_.find(*state);
        if (s == by_state_.end()) return out;
        index = &s->second;
      }
      for (auto it = after ? index->upper_bound(*after) : index->begin(); it != index->end() && out.size() < limit;
           ++it) {
        const SandboxRecord& r = entries_.at(it->id).rec;
        if (!pred || pred(r)) out.push_back(r);
      }
      return out;
    }
  }
  // Another writer since the last walk: walk (which brings the index up to
  // date for the next page), keeping the `limit` smallest keys after the
  // cursor in a max-heap.
  auto less = [](const SandboxRecord& a, const SandboxRecord& b) {
    return RecordKey{a.created_at, a.id} < RecordKey{b.created_at, b.id};
  };
  Scan([&](const SandboxRecord& r) {
    if (after && !(*after < RecordKey{r.created_at, r.id})) return;
    if ((state && r.state != *state) || (pred && !pred(r))) return;
    if (out.size() < limit) {
      out.push_back(r);
      std::push_heap(out.begin(), out.end(), less);
    } else if (less(r, out.front())) {
      std::pop_heap(out.begin(), out.end(), less);
      out.back() = r;
      std::push_heap(out.begin(), out.end(), less);
    }
  });
  std::sort_heap(out.begin(), out.end(), less);
  return out;
}

Status RecordCache::Put(const SandboxRecord& rec) {
  const Json j = rec.ToJson();
  {
    std::lock_guard<std::mutex> l(mu_);
    BumpLocked();  // before: a walk elsewhere sees a write under way
  }
  Status s = dir_->Put(rec.id, j);
  const std::string path = dir_->dir() + "/" + rec.id + std::string(kJsonSuffix);
  struct stat st;
  const bool have = s.ok() && ::stat(path.c_str(), &st) == 0;
  // What a reader would parse from the file just written.
  auto back = SandboxRecord::FromJson(j);
  std::lock_guard<std::mutex> l(mu_);
  ++writes_;
  if (have && back.ok()) {
    Sig sig;
    FillSig(st, &sig);
    SetEntryLocked(rec.id, Entry{sig, std::move(back).value()});
  } else {
    EraseEntryLocked(rec.id);
    complete_ = false;  // the file may or may not hold it: walk next time
  }
  BumpLocked();
  return s;
}

Status RecordCache::Remove(const std::string& key) {
  {
    std::lock_guard<std::mutex> l(mu_);
    BumpLocked();
  }
  Status s = dir_->Remove(key);
  std::lock_guard<std::mutex> l(mu_);
  ++writes_;
  EraseEntryLocked(key);
  if (!s.ok()) complete_ = false;
  BumpLocked();
  return s;
}

int64_t RecordCache::walks() const {
  std::lock_guard<std::mutex> l(mu_);
  return walks_;
}

int64_t RecordCache::reads() const {
  std::lock_guard<std::mutex> l(mu_);
  return reads_;
}

}  // namespace warren::sandbox
