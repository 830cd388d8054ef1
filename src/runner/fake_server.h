// FakeApi: an in-test HTTP/1.1 server (Boost.Beast, thread per connection)
// that scripts the Managed Agents wire protocol a worker sees: the work
// endpoints of spec 3.3 (poll/ack/heartbeat/stop) and one session's events
// (list with paging, SSE stream without replay, send with echo). Tests inject
// events, flip knobs (failures, 412, stopping) and inspect what was received.
// Thread-safe; listens on 127.0.0.1:0 or on a unix socket.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"

namespace warren::runner::testing {

struct ReceivedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;
  Json body;
};

class FakeApi {
 public:
  explicit FakeApi(bool unix_socket = false);
  ~FakeApi();

  std::string base_url() const;

  // Appends a server event (an id is assigned if missing) to the history and
  // pushes it to every open stream. Returns its id.
  std::string Append(Json ev);
  void CloseStreams();  // ends every open SSE response (clients reconnect)

  std::vector<ReceivedRequest> Requests(const std::string& path_substr = "") const;
  std::vector<Json> PostedEvents() const;  // user.* events sent by the client
  // Waits until `pred` holds (checked every 20 ms), up to `ms`. The default
  // is generous: it ends as soon as `pred` holds, and CI runs on 2 loaded cores.
  bool WaitFor(const std::function<bool()>& pred, int ms = 60000);

  // Knobs.
  std::atomic<int> fail_list{0};        // next N list calls answer 500
  std::atomic<int> fail_send{0};        // next N sends answer 503
  std::atomic<int> page_size{1000};     // events per list page
  std::atomic<int> heartbeat_412{0};    // 1: every heartbeat answers 412
  std::atomic<int> heartbeat_401{0};    // 1: every heartbeat answers 401 (token revoked)
  std::atomic<int> fail_session_get{0};  // next N GET /v1/sessions/{id} answer 503
  std::atomic<int> fail_heartbeat{0};    // next N heartbeats answer 503 (nothing committed)
  // Next N sends / heartbeats are committed, then the connection is closed
  // without an answer (the "committed, answer lost" crash point).
  std::atomic<int> drop_send_answer{0};
  std::atomic<int> drop_heartbeat_answer{0};
  std::atomic<int> ttl_seconds{2};
  std::atomic<bool> never_lapse{false};  // the lease never expires (a short interval without a timing risk)
  std::atomic<bool> chunked_sse{false};  // SSE with Transfer-Encoding: chunked
  // A lease not renewed for ttl_seconds expires: the next claimant's
  // NO_HEARTBEAT matches again (spec section 8, lease expiry).
  std::string work_state = "active";   // reported by heartbeats (guarded by mu_)
  std::string session_status = "idle";  // GET /v1/sessions/{id}
  Json poll_queue = Json::array();      // items handed out by poll (guarded by mu_)
  Json session_agent = nullptr;         // "agent" of GET /v1/sessions/{id} (set before use)
  Json skill_versions = Json::array();  // GET /v1/skills/{id}/versions data
  std::string skill_name;               // name of every skill version
  std::string skill_archive;            // bytes of every skill version's content
  void SetWorkState(const std::string& s);
  void QueueWork(const Json& item);

 private:
  void AcceptLoop();
  void Serve(int fd);
  void Handle(int fd, const ReceivedRequest& req);
  void WriteResponse(int fd, int status, const Json& body);
  void WriteRaw(int fd, int status, const std::string& body, const std::string& type);
  void RunStream(int fd);

  bool unix_;
  std::string sock_path_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> conns_;
  std::vector<int> conn_fds_;
  std::vector<Json> history_;
  std::vector<ReceivedRequest> requests_;
  std::vector<Json> posted_;
  int stream_generation_ = 0;
  int next_id_ = 1;
  std::string last_heartbeat_ = "NO_HEARTBEAT";
  std::chrono::steady_clock::time_point last_beat_at_{};
  int beat_ = 0;
};

}  // namespace warren::runner::testing
