// RunnerRelay: the standalone orchestrator's bridge between the runners in
// its sandboxes and the service at --base-url (docs/ORCHESTRATOR.md,
// "standalone mode: the relay").
//
// A sandbox's network is `none` (or `isolated`, which blocks the host's own
// addresses), so a runner cannot reach a service on the host's loopback, and
// an https base URL would need CA certificates inside every image. The relay
// listens on a unix socket in a host directory that the orchestrator
// bind-mounts read-only into each sandbox (the same way the embedded mode
// mounts the service socket), and forwards each HTTP/1.1 request it receives
// to the one configured upstream over TCP or TLS (certificate and host name
// verified with the host's CA store):
//   - only origin-form targets under the base URL's path are forwarded
//     (absolute-form or CONNECT: 400): it is not an open proxy, the upstream
//     is fixed at construction;
//   - the Host header is rewritten to the upstream's, `Connection: close` is
//     forced (one request per connection, as warren-runner sends), the body
//     is forwarded by Content-Length (chunked request bodies: 411);
//   - the answer is streamed back byte for byte until the upstream closes,
//     so SSE streams and long polls pass through unbuffered; when the runner
//     hangs up, the upstream connection is shut down at once;
//   - at most `max_connections` at once (two threads each); beyond that a
//     connection gets 503 and is closed.
// Credentials are the runner's own (its work item's), forwarded unchanged;
// the relay adds none and logs no header.
//
// This is transport code (Boost.Asio + OpenSSL); the orchestrator core only
// sees its result as a runner endpoint (socket dir + runner base URL in
// OrchestratorOptions).
// Ownership: owns its listening socket and connection threads.
// Thread-safety: Start/Stop from one thread; connections are internal.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <set>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"

namespace warren::orchestrator {

struct RunnerRelayOptions {
  std::string socket_path;   // unix socket to listen on (re-created)
  std::string upstream_url;  // http://host[:port][/prefix] or https://...
  std::string ca_file;       // PEM CAs for an https upstream ("" = the host's store)
  int max_connections = 128;
  size_t max_header_bytes = 64 * 1024;
};

// The parts of an upstream URL.
struct UpstreamUrl {
  bool tls = false;
  std::string host;
  std::string port;
  std::string prefix;  // "" or "/a/b" (no trailing slash)
};
Result<UpstreamUrl> ParseUpstreamUrl(const std::string& url);

// Rewrites one request head (request line + headers, without the final
// CRLFCRLF) for `up`: checks the target, sets Host, forces Connection:
// close. Returns the new head (with CRLFCRLF) and the body length; an error
// Status carries the HTTP status to answer (InvalidArgument 400,
// FailedPrecondition 411).
struct RelayedHead {
  std::string head;
  size_t content_length = 0;
};
Result<RelayedHead> RewriteRequestHead(const std::string& head, const UpstreamUrl& up);

class RunnerRelay final {
 public:
  explicit RunnerRelay(RunnerRelayOptions options);
  ~RunnerRelay();
  RunnerRelay(const RunnerRelay&) = delete;
  RunnerRelay& operator=(const RunnerRelay&) = delete;

  Status Start();
  void Stop();
  // The runner base URL for a runner that sees the socket at
  // `socket_in_sandbox` ("unix:<socket>[:<prefix>]").
  std::string RunnerBaseUrl(const std::string& socket_in_sandbox) const;

 private:
  void AcceptLoop();
  void Serve(int fd);

  RunnerRelayOptions options_;
  UpstreamUrl upstream_;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*, for https upstreams
  std::set<int> conns_;      // open fds (runner and upstream sides), shut down by Stop
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;
  int listen_fd_ = -1;
  std::thread acceptor_;
};

}  // namespace warren::orchestrator
