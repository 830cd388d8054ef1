#include "api/mux_stream.h"

#include "common/log.h"

namespace warren::api {

Json PublicSessionJson(Json s) {
  s.erase("_secrets");
  s.erase("_engine");
  return s;
}

static std::string EnvOf(const Json& s) {
  auto it = s.find("environment_id");
  return it != s.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<SessionSnapshots::Snapshot> SessionSnapshots::Get(const std::string& session_id, uint64_t generation) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(session_id);
    if (it != cache_.end() && it->second.generation >= generation) return it->second.snapshot;
  }
  Snapshot snap;
  auto s = store_->GetSession(session_id);
  if (!s.ok() && s.status().code() != Code::kNotFound) return s.status();
  if (!s.ok()) {
    snap.deleted = true;
    Json gone = {{"id", session_id}, {"type", "session_deleted"}};
    snap.frame = std::make_shared<const std::string>("event: session\ndata: " + DumpJson(gone) + "\n\n");
  } else {
    snap.environment_id = EnvOf(*s);
    snap.frame =
        std::make_shared<const std::string>("event: session\ndata: " + DumpJson(PublicSessionJson(*s)) + "\n\n");
  }
  std::lock_guard<std::mutex> lock(mu_);
  // A cache, not a registry: past a bound it starts over (the next reader
  // of each session reads the store once more).
  if (cache_.size() >= 4096) cache_.clear();
  Entry& e = cache_[session_id];
  // The store was read after `generation` was announced, so the snapshot is
  // at least that new.
  if (e.generation <= generation) e = Entry{generation, snap};
  return snap;
}

MuxStream::MuxStream(EventBus* bus, SessionSnapshots* snapshots, Principal principal, bool sessions_list,
                     std::chrono::milliseconds keepalive)
    : bus_(bus), snapshots_(snapshots), principal_(std::move(principal)), sessions_list_(sessions_list),
      keepalive_(keepalive) {}

MuxStream::~MuxStream() { OnClose(); }

void MuxStream::AddSession(std::shared_ptr<SseStream> child) { children_.push_back(std::move(child)); }

void MuxStream::AddErrorFrame(const Json& envelope) {
  errors_.push_back(std::make_shared<const std::string>("event: error\ndata: " + DumpJson(envelope) + "\n\n"));
}

void MuxStream::Start() {
  if (!sessions_list_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    listening_ = true;
  }
  bus_->AddSessionListener(this);
}

void MuxStream::SetWaker(std::function<void()> waker) {
  for (auto& c : children_) c->SetWaker(waker);
  std::lock_guard<std::mutex> lock(mu_);
  waker_ = std::move(waker);
}

void MuxStream::OnSessionChanged(const std::string& session_id, uint64_t generation) {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    uint64_t& g = changed_[session_id];
    g = std::max(g, generation);
    wake = waker_;
  }
  if (wake) wake();
}

bool MuxStream::Pull(std::vector<std::shared_ptr<const std::string>>* out) {
  size_t bytes = 0;
  for (auto& e : errors_) {
    bytes += e->size();
    out->push_back(std::move(e));
  }
  errors_.clear();

  std::map<std::string, uint64_t> changed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    changed.swap(changed_);
  }
  for (const auto& [sid, gen] : changed) {
    auto snap = snapshots_->Get(sid, gen);
    if (!snap.ok()) {
      log::Warn("mux.session_read_failed", {{"session_id", sid}, {"error", snap.status().ToString()}});
      continue;
    }
    // Only sessions this key may see; a deletion only to org keys (the
    // environment of a deleted session is no longer known).
    if (snap->deleted ? !principal_.is_org() : !principal_.CanAccessSession(sid, snap->environment_id)) continue;
    bytes += snap->frame->size();
    out->push_back(snap->frame);
  }

  // Children in turn, starting after the last one served, until the budget
  // is spent (the server calls Pull again right after a non-empty batch).
  std::vector<std::shared_ptr<const std::string>> frames;
  for (size_t n = 0; n < children_.size() && bytes < kPullBudget;) {
    size_t i = (next_child_ + n) % children_.size();
    SseStream* c = children_[i].get();
    frames.clear();
    bool more = c->Pull(&frames);
    for (auto& f : frames) {
      bytes += f->size();
      out->push_back(std::move(f));
    }
    if (!more) {
      if (c->failed()) {
        // Fell behind (or its replay failed): end the whole stream so the
        // client resumes with its cursors, rather than silently miss events.
        return false;
      }
      // The session ended (deleted): the others go on.
      c->OnClose();
      children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i));
      if (next_child_ > i) next_child_--;
      continue;
    }
    n++;
    if (bytes >= kPullBudget) next_child_ = (i + 1) % children_.size();
  }
  return true;
}

void MuxStream::OnClose() {
  bool unlisten = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    unlisten = listening_;
    waker_ = nullptr;
  }
  if (unlisten) bus_->RemoveSessionListener(this);
  for (auto& c : children_) c->OnClose();
}

size_t MuxStream::sessions() const { return children_.size(); }

}  // namespace warren::api
