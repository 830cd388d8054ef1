// The sandbox terminal of the web console (docs/SANDBOX_API.md, "Terminal"):
// a WebSocket bridged to a PTY inside a sandbox.
//
// Browsers cannot set headers on a WebSocket, and an API key must never be
// in a URL, so the socket is opened with a ticket: POST .../terminal_tickets
// (API key) issues one; GET .../terminal?ticket= redeems it. A ticket is
// single use, lives 30 s, and is bound to its sandbox and the terminal's
// settings (size, command, user, cwd).
//
// PtyPump: ONE thread with epoll serves every open terminal (PTY output and
// program exit), so an open terminal costs a PTY and its buffers, not a
// thread. TerminalBridge is the WebSocket handler of one terminal: binary
// frames are raw PTY bytes both ways, client text frames are JSON control
// ({"type":"resize","cols":N,"rows":N}), and when the program exits the
// server sends {"type":"exit","code":N} and closes with 1000. Backpressure:
// PTY output stops being read while the socket's send queue is full; client
// input stops being read while the PTY does not take it.
//
// Thread-safety: TerminalTickets and PtyPump are thread-safe. Ownership: the
// pump owns the bridges it serves until their connection closes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/clock.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "http/http_server.h"
#include "sandbox/sandboxes.h"

namespace warren::sandbox_api {

struct TerminalSpec {
  std::string sandbox_id;
  std::string sandbox_name;  // the ticket also opens .../{name}/terminal
  sandbox::PtyOptions pty;
};

class TerminalTickets final {
 public:
  static constexpr int64_t kLifetimeMicros = 30'000'000;
  static constexpr size_t kMaxOutstanding = 4096;
  explicit TerminalTickets(Clock* clock) : clock_(clock) {}
  TerminalTickets(const TerminalTickets&) = delete;
  TerminalTickets& operator=(const TerminalTickets&) = delete;

  struct Issued {
    std::string ticket;  // "wtt_" + 40 random base62 characters
    int64_t expires_at_micros = 0;
  };
  // ResourceExhausted when kMaxOutstanding live tickets exist.
  Result<Issued> Issue(TerminalSpec spec);
  // The spec of a live ticket for `sandbox_id`, consuming it. Unauthenticated
  // for an unknown, used or expired ticket, or one for another sandbox (the
  // ticket is consumed then too).
  Result<TerminalSpec> Redeem(const std::string& ticket, const std::string& sandbox_id);
  size_t outstanding() const;

 private:
  struct Entry {
    TerminalSpec spec;
    int64_t expires = 0;
  };
  void PruneLocked(int64_t now);
  Clock* clock_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> tickets_;
};

class TerminalBridge;

class PtyPump final {
 public:
  PtyPump();
  ~PtyPump();  // stops the thread; programs still running are killed
  PtyPump(const PtyPump&) = delete;
  PtyPump& operator=(const PtyPump&) = delete;

  Status status() const { return status_; }  // non-OK when epoll could not be set up

  // A WebSocket handler for `session` (a PTY already open in a sandbox).
  // The program runs until it exits or the socket closes (then it is killed).
  std::shared_ptr<http::WebSocketHandler> Bridge(std::unique_ptr<sandbox::PtySession> session);
  // Terminals open now.
  size_t open() const;

 private:
  friend class TerminalBridge;
  void Run();
  // Runs `fn` on the pump thread.
  void Post(std::function<void()> fn);
  void Watch(TerminalBridge* b);
  void Unwatch(TerminalBridge* b);
  void Update(TerminalBridge* b);  // re-arms the master's events

  Status status_;
  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  bool stop_ = false;
  // Pump thread only.
  uint64_t next_token_ = 1;
  std::map<uint64_t, std::shared_ptr<TerminalBridge>> bridges_;
  std::atomic<size_t> open_{0};
};

}  // namespace warren::sandbox_api
