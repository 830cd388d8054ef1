#include "sandbox_api/terminal.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "common/ids.h"
#include "common/json.h"
#include "common/log.h"

namespace warren::sandbox_api {

// ---------------------------------------------------------------- tickets

void TerminalTickets::PruneLocked(int64_t now) {
  for (auto it = tickets_.begin(); it != tickets_.end();) {
    if (it->second.expires <= now) it = tickets_.erase(it);
    else ++it;
  }
}

Result<TerminalTickets::Issued> TerminalTickets::Issue(TerminalSpec spec) {
  const int64_t now = clock_->MonoMicros();
  std::lock_guard<std::mutex> lock(mu_);
  PruneLocked(now);
  if (tickets_.size() >= kMaxOutstanding)
    return Status::ResourceExhausted("too many unused terminal tickets; use or let some expire (30 s)");
  Issued out;
  out.ticket = NewId("wtt_", 40);
  out.expires_at_micros = clock_->NowMicros() + kLifetimeMicros;
  tickets_[out.ticket] = Entry{std::move(spec), now + kLifetimeMicros};
  return out;
}

Result<TerminalSpec> TerminalTickets::Redeem(const std::string& ticket, const std::string& sandbox_id) {
  const int64_t now = clock_->MonoMicros();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tickets_.find(ticket);
  if (it == tickets_.end())
    return Status::Unauthenticated("unknown or already used terminal ticket; create one with POST "
                                   "/v1/warren/sandboxes/{id}/terminal_tickets");
  Entry e = std::move(it->second);
  tickets_.erase(it);  // single use, whatever happens next
  if (e.expires <= now) return Status::Unauthenticated("terminal ticket expired (tickets live 30 s)");
  if (e.spec.sandbox_id != sandbox_id && (e.spec.sandbox_name.empty() || e.spec.sandbox_name != sandbox_id))
    return Status::Unauthenticated("terminal ticket was issued for another sandbox");
  return std::move(e.spec);
}

size_t TerminalTickets::outstanding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tickets_.size();
}

// ---------------------------------------------------------------- bridge

class TerminalBridge final : public http::WebSocketHandler, public std::enable_shared_from_this<TerminalBridge> {
 public:
  static constexpr size_t kMaxPendingInput = 64 * 1024;
  static constexpr size_t kReadChunk = 64 * 1024;

  TerminalBridge(PtyPump* pump, std::unique_ptr<sandbox::PtySession> s) : pump_(pump), session_(std::move(s)) {
    int fl = fcntl(session_->master(), F_GETFL);
    if (fl >= 0) (void)fcntl(session_->master(), F_SETFL, fl | O_NONBLOCK);
  }

  http::WebSocketLimits Limits() const override {
    http::WebSocketLimits l;
    l.max_message_bytes = 256 * 1024;
    l.idle_timeout = std::chrono::seconds(60);
    l.max_send_queue_bytes = 1 << 20;
    return l;
  }

  void OnOpen(std::shared_ptr<http::WebSocketConnection> conn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      conn_ = std::move(conn);
    }
    auto self = shared_from_this();
    pump_->Post([self] { self->pump_->Watch(self.get()); });
  }

  bool OnMessage(std::string_view data, bool binary) override {
    if (!binary) {
      Control(data);
      return true;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (master_eof_ || exited_) return true;  // nobody reads the terminal any more
    pending_in_.append(data);
    FlushInputLocked();
    if (!pending_in_.empty()) {
      auto self = shared_from_this();
      pump_->Post([self] { self->pump_->Update(self.get()); });
      if (pending_in_.size() > kMaxPendingInput) {
        input_paused_ = true;
        return false;
      }
    }
    return true;
  }

  void OnDrained() override {
    auto self = shared_from_this();
    pump_->Post([self] {
      self->output_paused_ = false;
      self->pump_->Update(self.get());
    });
  }

  void OnClose() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      conn_.reset();
    }
    auto self = shared_from_this();
    pump_->Post([self] { self->pump_->Unwatch(self.get()); });
  }

  // ---- pump thread

  // Events wanted on the master now.
  uint32_t MasterEvents() {
    std::lock_guard<std::mutex> lock(mu_);
    uint32_t ev = 0;
    if (!output_paused_ && !master_eof_) ev |= EPOLLIN;
    if (!pending_in_.empty() && !master_eof_) ev |= EPOLLOUT;
    return ev;
  }

  void OnMasterEvent(uint32_t events) {
    if (events & EPOLLOUT) {
      std::shared_ptr<http::WebSocketConnection> resume;
      {
        std::lock_guard<std::mutex> lock(mu_);
        FlushInputLocked();
        if (input_paused_ && pending_in_.size() <= kMaxPendingInput / 2) {
          input_paused_ = false;
          resume = conn_;
        }
      }
      if (resume) resume->ResumeReading();
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadOutput(/*at_exit=*/false);
  }

  // Reads what the PTY has; false once the master is at its end.
  void ReadOutput(bool at_exit) {
    char buf[kReadChunk];
    for (int i = 0; i < (at_exit ? 64 : 8); i++) {
      ssize_t n = read(session_->master(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        // EIO: every holder of the slave is gone.
        std::lock_guard<std::mutex> lock(mu_);
        master_eof_ = true;
        return;
      }
      auto c = Conn();
      if (!c) return;
      if (c->Send(std::string(buf, static_cast<size_t>(n)), true) == http::WebSocketConnection::SendResult::kFull &&
          !at_exit) {
        output_paused_ = true;
        return;
      }
    }
  }

  void OnExit() {
    ReadOutput(/*at_exit=*/true);
    int code = -1;
    auto w = session_->TryWait();
    if (w.ok() && w->has_value()) code = **w;
    {
      std::lock_guard<std::mutex> lock(mu_);
      exited_ = true;
    }
    if (auto c = Conn()) {
      c->Send(DumpJson(Json{{"type", "exit"}, {"code", code}}), false);
      c->Close(1000, "exit");
    }
  }

  void Kill() { session_->Kill(); }
  int master() const { return session_->master(); }
  int exit_fd() const { return session_->exit_fd(); }

  uint64_t token_ = 0;          // pump thread
  bool output_paused_ = false;  // pump thread
  bool master_watched_ = false;  // pump thread
  bool exit_watched_ = false;    // pump thread

 private:
  std::shared_ptr<http::WebSocketConnection> Conn() {
    std::lock_guard<std::mutex> lock(mu_);
    return conn_;
  }

  void FlushInputLocked() {
    while (!pending_in_.empty()) {
      ssize_t n = write(session_->master(), pending_in_.data(), pending_in_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        pending_in_.clear();
        return;
      }
      pending_in_.erase(0, static_cast<size_t>(n));
    }
  }

  void Control(std::string_view text) {
    auto reply_error = [this](const std::string& msg) {
      if (auto c = Conn()) c->Send(DumpJson(Json{{"type", "error"}, {"message", msg}}), false);
    };
    auto j = ParseJson(text);
    if (!j.ok() || !j->is_object()) return reply_error("control messages are JSON objects");
    auto type = j->find("type");
    if (type == j->end() || !type->is_string()) return reply_error("control message without a string 'type'");
    if (*type != "resize") return reply_error("unknown control message type '" + type->get<std::string>().substr(0, 64) + "'");
    auto dim = [&](const char* k) -> int {
      auto it = j->find(k);
      if (it == j->end() || !it->is_number_integer()) return -1;
      int64_t v = it->get<int64_t>();
      return v >= 1 && v <= 1000 ? static_cast<int>(v) : -1;
    };
    int cols = dim("cols"), rows = dim("rows");
    if (cols < 0 || rows < 0) return reply_error("resize needs integer cols and rows in 1..1000");
    Status s = session_->Resize(static_cast<uint16_t>(rows), static_cast<uint16_t>(cols));
    if (!s.ok()) reply_error("resize failed: " + s.ToString());
  }

  PtyPump* pump_;
  std::unique_ptr<sandbox::PtySession> session_;
  std::mutex mu_;
  std::shared_ptr<http::WebSocketConnection> conn_;
  std::string pending_in_;
  bool input_paused_ = false;
  bool master_eof_ = false;
  bool exited_ = false;
  bool closed_ = false;
};

// ---------------------------------------------------------------- pump

PtyPump::PtyPump() {
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!epoll_ || !wake_) {
    status_ = Status::FromErrno(errno, "terminal pump: epoll/eventfd");
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0) {
    status_ = Status::FromErrno(errno, "terminal pump: epoll_ctl");
    return;
  }
  thread_ = std::thread([this] { Run(); });
}

PtyPump::~PtyPump() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  if (wake_) {
    uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<http::WebSocketHandler> PtyPump::Bridge(std::unique_ptr<sandbox::PtySession> session) {
  return std::make_shared<TerminalBridge>(this, std::move(session));
}

size_t PtyPump::open() const { return open_.load(); }

void PtyPump::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof one);
}

void PtyPump::Watch(TerminalBridge* b) {
  auto self = b->shared_from_this();
  b->token_ = next_token_++;
  bridges_[b->token_] = self;
  open_++;
  epoll_event ev{};
  ev.events = b->MasterEvents();
  ev.data.u64 = b->token_ << 1;
  b->master_watched_ = epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, b->master(), &ev) == 0;
  ev.events = EPOLLIN;
  ev.data.u64 = (b->token_ << 1) | 1;
  b->exit_watched_ = epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, b->exit_fd(), &ev) == 0;
  if (!b->master_watched_ || !b->exit_watched_)
    log::Warn("terminal.watch_failed", {{"errno", errno}});
}

void PtyPump::Update(TerminalBridge* b) {
  if (!b->master_watched_) return;
  epoll_event ev{};
  ev.events = b->MasterEvents();
  ev.data.u64 = b->token_ << 1;
  (void)epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, b->master(), &ev);
}

void PtyPump::Unwatch(TerminalBridge* b) {
  if (b->master_watched_) (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b->master(), nullptr);
  if (b->exit_watched_) (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b->exit_fd(), nullptr);
  b->master_watched_ = b->exit_watched_ = false;
  if (bridges_.erase(b->token_) > 0) open_--;  // the program is killed with its PtySession
}

void PtyPump::Run() {
  epoll_event events[64];
  for (;;) {
    int n = epoll_wait(epoll_.get(), events, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      log::Error("terminal.epoll_failed", {{"errno", errno}});
      break;
    }
    for (int i = 0; i < n; i++) {
      uint64_t data = events[i].data.u64;
      if (data == 0) continue;  // the eventfd
      auto it = bridges_.find(data >> 1);
      if (it == bridges_.end()) continue;
      std::shared_ptr<TerminalBridge> b = it->second;
      if (data & 1) {
        // The program exited: stop watching, drain, report, close.
        if (b->exit_watched_) (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b->exit_fd(), nullptr);
        b->exit_watched_ = false;
        if (b->master_watched_) (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b->master(), nullptr);
        b->master_watched_ = false;
        b->OnExit();
      } else {
        b->OnMasterEvent(events[i].events);
        if (events[i].events & (EPOLLHUP | EPOLLERR)) {
          // The slave side is gone: HUP cannot be masked, so stop watching
          // the master (the exit fd tells when the program is over).
          (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b->master(), nullptr);
          b->master_watched_ = false;
        } else {
          Update(b.get());
        }
      }
    }
    uint64_t v;
    (void)!read(wake_.get(), &v, sizeof v);
    std::vector<std::function<void()>> fns;
    bool stop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fns.swap(posted_);
      stop = stop_;
    }
    for (auto& fn : fns) fn();
    if (stop) break;
  }
  // Programs still running are killed (their sockets then see the exit).
  for (auto& [t, b] : bridges_) {
    b->Kill();
    if (b->master_watched_) (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b->master(), nullptr);
    if (b->exit_watched_) (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b->exit_fd(), nullptr);
  }
  bridges_.clear();
  open_ = 0;
}

}  // namespace warren::sandbox_api
