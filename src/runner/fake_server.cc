#include "runner/fake_server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstring>

namespace warren::runner::testing {

namespace http = boost::beast::http;

namespace {

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string Decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

FakeApi::FakeApi(bool unix_socket) : unix_(unix_socket) {
  if (unix_) {
    char tmpl[] = "/tmp/warren-fake-XXXXXX";
    sock_path_ = std::string(mkdtemp(tmpl)) + "/api.sock";
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, sock_path_.c_str(), sizeof a.sun_path - 1);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  listen(listen_fd_, 64);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

FakeApi::~FakeApi() {
  stopping_ = true;
  shutdown(listen_fd_, SHUT_RDWR);
  close(listen_fd_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : conn_fds_) shutdown(fd, SHUT_RDWR);
    cv_.notify_all();
  }
  acceptor_.join();
  std::vector<std::thread> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns.swap(conns_);
  }
  for (auto& t : conns) t.join();
  if (unix_) unlink(sock_path_.c_str());
}

std::string FakeApi::base_url() const {
  if (unix_) return "unix:" + sock_path_;
  return "http://127.0.0.1:" + std::to_string(port_);
}

void FakeApi::AcceptLoop() {
  while (!stopping_) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    conn_fds_.push_back(fd);
    conns_.emplace_back([this, fd] { Serve(fd); });
  }
}

void FakeApi::Serve(int fd) {
  std::string buf;
  char chunk[8192];
  // One request per connection (the client sends Connection: close).
  size_t head_end = std::string::npos;
  while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) {
      close(fd);
      return;
    }
    buf.append(chunk, static_cast<size_t>(n));
  }
  http::request_parser<http::string_body> parser;
  parser.eager(true);
  boost::system::error_code ec;
  size_t used = parser.put(boost::asio::buffer(buf), ec);
  while (!ec && !parser.is_done()) {
    buf.erase(0, used);
    if (buf.empty() || used == 0) {
      ssize_t n = recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      buf.append(chunk, static_cast<size_t>(n));
    }
    used = parser.put(boost::asio::buffer(buf), ec);
    if (ec == http::error::need_more) ec = {};
  }
  auto& msg = parser.get();
  ReceivedRequest req;
  req.method = std::string(msg.method_string());
  std::string target(msg.target());
  size_t q = target.find('?');
  req.path = target.substr(0, q);
  if (q != std::string::npos) {
    std::string qs = target.substr(q + 1);
    size_t i = 0;
    while (i <= qs.size()) {
      size_t j = qs.find('&', i);
      if (j == std::string::npos) j = qs.size();
      std::string kv = qs.substr(i, j - i);
      size_t eq = kv.find('=');
      if (eq != std::string::npos) req.query[Decode(kv.substr(0, eq))] = Decode(kv.substr(eq + 1));
      i = j + 1;
    }
  }
  for (const auto& f : msg) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    req.headers[name] = std::string(f.value());
  }
  if (!msg.body().empty()) {
    auto parsed = ParseJson(msg.body());
    if (parsed.ok()) req.body = *parsed;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(req);
    cv_.notify_all();
  }
  Handle(fd, req);
  shutdown(fd, SHUT_RDWR);
  close(fd);
}

void FakeApi::WriteResponse(int fd, int status, const Json& body) {
  std::string b = DumpJson(body);
  std::string head = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n" +
                     "Content-Length: " + std::to_string(b.size()) + "\r\nConnection: close\r\n\r\n";
  WriteAll(fd, head + b);
}

void FakeApi::WriteRaw(int fd, int status, const std::string& b, const std::string& type) {
  std::string head = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: " + type +
                     "\r\nContent-Length: " + std::to_string(b.size()) + "\r\nConnection: close\r\n\r\n";
  WriteAll(fd, head + b);
}

static Json Err(const std::string& type, const std::string& msg) {
  return {{"type", "error"}, {"error", {{"type", type}, {"message", msg}}}};
}

void FakeApi::Handle(int fd, const ReceivedRequest& req) {
  const std::string& p = req.path;
  auto ends = [&](const std::string& s) { return p.size() >= s.size() && p.compare(p.size() - s.size(), s.size(), s) == 0; };
  if (ends("/events/stream")) {
    RunStream(fd);
    return;
  }
  if (p.find("/v1/sessions/") == 0 && ends("/events") && req.method == "GET") {
    if (fail_list > 0) {
      --fail_list;
      WriteResponse(fd, 500, Err("api_error", "list failed"));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    size_t start = req.query.count("page") ? std::stoul(req.query.at("page")) : 0;
    size_t n = static_cast<size_t>(page_size.load());
    Json data = Json::array();
    for (size_t i = start; i < history_.size() && i < start + n; ++i) data.push_back(history_[i]);
    Json next = start + n < history_.size() ? Json(std::to_string(start + n)) : Json();
    WriteResponse(fd, 200, {{"data", data}, {"next_page", next}});
    return;
  }
  if (p.find("/v1/sessions/") == 0 && ends("/events") && req.method == "POST") {
    if (fail_send > 0) {
      --fail_send;
      WriteResponse(fd, 503, Err("overloaded_error", "try later"));
      return;
    }
    Json echoed = Json::array();
    for (const auto& ev : req.body.value("events", Json::array())) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        posted_.push_back(ev);
      }
      Json e = ev;
      Append(e);
      echoed.push_back(e);
    }
    if (drop_send_answer > 0) {
      --drop_send_answer;
      return;  // committed; the connection closes without an answer
    }
    WriteResponse(fd, 200, {{"data", echoed}});
    return;
  }
  if (p.find("/v1/sessions/") == 0 && req.method == "GET") {
    if (fail_session_get > 0) {
      --fail_session_get;
      WriteResponse(fd, 503, Err("overloaded_error", "try later"));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    Json sess = {{"type", "session"}, {"id", p.substr(13)}, {"status", session_status}};
    if (!session_agent.is_null()) sess["agent"] = session_agent;
    WriteResponse(fd, 200, sess);
    return;
  }
  if (p.find("/v1/skills/") == 0) {
    std::lock_guard<std::mutex> lock(mu_);
    if (ends("/content")) {
      WriteRaw(fd, 200, skill_archive, "application/octet-stream");
    } else if (ends("/versions")) {
      WriteResponse(fd, 200, {{"data", skill_versions}, {"next_page", nullptr}});
    } else {
      std::string v = p.substr(p.rfind('/') + 1);
      WriteResponse(fd, 200, {{"type", "skill_version"}, {"id", v}, {"version", v}, {"name", skill_name}});
    }
    return;
  }
  if (ends("/work/poll")) {
    std::lock_guard<std::mutex> lock(mu_);
    if (poll_queue.empty()) {
      WriteResponse(fd, 200, nullptr);
    } else {
      Json item = poll_queue[0];
      poll_queue.erase(0);
      WriteResponse(fd, 200, item);
    }
    return;
  }
  if (ends("/ack")) {
    WriteResponse(fd, 200, {{"type", "work"}, {"state", "starting"}});
    return;
  }
  if (ends("/heartbeat")) {
    std::lock_guard<std::mutex> lock(mu_);
    std::string expected = req.query.count("expected_last_heartbeat") ? req.query.at("expected_last_heartbeat") : "";
    auto now = std::chrono::steady_clock::now();
    if (!never_lapse && last_heartbeat_ != "NO_HEARTBEAT" &&
        now - last_beat_at_ > std::chrono::seconds(ttl_seconds.load())) {
      last_heartbeat_ = "NO_HEARTBEAT";  // the lease expired
    }
    if (heartbeat_401) {
      WriteResponse(fd, 401, Err("authentication_error", "invalid credential"));
      return;
    }
    if (fail_heartbeat > 0) {
      --fail_heartbeat;
      WriteResponse(fd, 503, Err("overloaded_error", "try later"));
      return;
    }
    if (heartbeat_412 || expected != last_heartbeat_) {
      Json body = Err("invalid_request_error", "heartbeat precondition failed");
      body["error"]["details"] = {{"error_code", "heartbeat_precondition_failed"},
                                  {"current_state", {{"state", work_state}, {"ttl_seconds", ttl_seconds.load()},
                                                     {"last_heartbeat", last_heartbeat_}}}};
      WriteResponse(fd, 412, body);
      return;
    }
    last_heartbeat_ = "2026-11-24T06:00:00." + std::to_string(100000 + ++beat_) + "Z";
    last_beat_at_ = now;
    if (drop_heartbeat_answer > 0) {
      --drop_heartbeat_answer;
      return;  // committed; the connection closes without an answer
    }
    WriteResponse(fd, 200, {{"type", "work_heartbeat"}, {"last_heartbeat", last_heartbeat_},
                            {"lease_extended", true}, {"state", work_state}, {"ttl_seconds", ttl_seconds.load()}});
    return;
  }
  if (ends("/stop")) {
    std::lock_guard<std::mutex> lock(mu_);
    bool force = req.body.is_object() && req.body.value("force", false);
    if (work_state == "stopped") {
      WriteResponse(fd, 409, Err("invalid_request_error", "already stopped"));
      return;
    }
    work_state = force ? "stopped" : "stopping";
    WriteResponse(fd, 200, {{"type", "work"}, {"state", work_state}});
    return;
  }
  WriteResponse(fd, 404, Err("not_found_error", "no route " + p));
}

void FakeApi::RunStream(int fd) {
  const bool chunked = chunked_sse.load();
  WriteAll(fd, std::string("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n") +
                   (chunked ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n") + "\r\n");
  std::unique_lock<std::mutex> lock(mu_);
  size_t cursor = history_.size();  // no replay: only events after connect
  int gen = stream_generation_;
  for (;;) {
    cv_.wait_for(lock, std::chrono::milliseconds(500), [&] {
      return stopping_ || gen != stream_generation_ || cursor < history_.size();
    });
    if (stopping_ || gen != stream_generation_) return;
    std::string out;
    while (cursor < history_.size()) {
      const Json& ev = history_[cursor++];
      out += "event: " + ev.value("type", "message") + "\ndata: " + DumpJson(ev) + "\n\n";
    }
    if (out.empty()) out = "event: ping\ndata: {\"type\":\"ping\"}\n\n";
    if (chunked) {
      char len[32];
      snprintf(len, sizeof len, "%zx\r\n", out.size());
      out = len + out + "\r\n";
    }
    lock.unlock();
    bool ok = WriteAll(fd, out);
    lock.lock();
    if (!ok) return;
  }
}

std::string FakeApi::Append(Json ev) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ev.contains("id")) ev["id"] = "sevt_" + std::to_string(next_id_++);
  if (!ev.contains("processed_at")) ev["processed_at"] = "2026-11-24T06:00:00Z";
  history_.push_back(ev);
  cv_.notify_all();
  return ev["id"].get<std::string>();
}

void FakeApi::CloseStreams() {
  std::lock_guard<std::mutex> lock(mu_);
  ++stream_generation_;
  cv_.notify_all();
}

std::vector<ReceivedRequest> FakeApi::Requests(const std::string& sub) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ReceivedRequest> out;
  for (const auto& r : requests_) {
    if (r.path.find(sub) != std::string::npos) out.push_back(r);
  }
  return out;
}

std::vector<Json> FakeApi::PostedEvents() const {
  std::lock_guard<std::mutex> lock(mu_);
  return posted_;
}

bool FakeApi::WaitFor(const std::function<bool()>& pred, int ms) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

void FakeApi::SetWorkState(const std::string& s) {
  std::lock_guard<std::mutex> lock(mu_);
  work_state = s;
}

void FakeApi::QueueWork(const Json& item) {
  std::lock_guard<std::mutex> lock(mu_);
  poll_queue.push_back(item);
}

}  // namespace warren::runner::testing
