#include "cli/client.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <deque>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/http_client.h"
#include "common/sse_parser.h"

namespace warren::cli {
namespace {

constexpr const char* kBeta = "managed-agents-2026-04-01";

struct Conn {
  std::string base_url;
  std::string api_key;
  bool json = false;
};

std::string EnvOr(const char* a, const char* b, const std::string& dflt) {
  if (const char* v = std::getenv(a); v && *v) return v;
  if (b != nullptr)
    if (const char* v = std::getenv(b); v && *v) return v;
  return dflt;
}

HttpClient& Http() {
  static std::shared_ptr<HttpClient> client = NewCurlHttpClient();
  return *client;
}

HttpRequest NewRequest(const Conn& c, const std::string& method, const std::string& path) {
  HttpRequest r;
  r.method = method;
  std::string base = c.base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  r.url = base + path;
  r.headers = {{"x-api-key", c.api_key}, {"anthropic-version", "2023-06-01"}, {"anthropic-beta", kBeta}};
  r.total_timeout_ms = 60'000;
  return r;
}

// A non-2xx answer as a Status carrying the service's error envelope.
Status ApiError(const HttpResponse& resp) {
  std::string msg = "HTTP " + std::to_string(resp.status);
  auto j = ParseJson(resp.body);
  if (j.ok() && j->is_object() && j->contains("error") && (*j)["error"].is_object()) {
    const Json& e = (*j)["error"];
    msg += " " + e.value("type", std::string()) + ": " + e.value("message", std::string());
    if (j->contains("request_id") && (*j)["request_id"].is_string())
      msg += " (request " + (*j)["request_id"].get<std::string>() + ")";
  } else if (!resp.body.empty()) {
    msg += ": " + resp.body.substr(0, 300);
  }
  if (resp.status == 401 || resp.status == 403) return Status::PermissionDenied(msg);
  if (resp.status == 404) return Status::NotFound(msg);
  if (resp.status == 409) return Status::Conflict(msg);
  if (resp.status >= 400 && resp.status < 500) return Status::InvalidArgument(msg);
  return Status::Unavailable(msg);
}

Result<Json> Call(const Conn& c, const std::string& method, const std::string& path, const Json& body = nullptr) {
  HttpRequest req = NewRequest(c, method, path);
  if (!body.is_null()) req.body = DumpJson(body);
  WARREN_ASSIGN_OR_RETURN(HttpResponse resp, Http().Send(req));
  if (resp.status < 200 || resp.status >= 300) return ApiError(resp);
  if (resp.body.empty()) return Json(nullptr);
  return ParseJson(resp.body);
}

// Every item of a paged list (`data` + `next_page`).
Result<std::vector<Json>> ListAll(const Conn& c, const std::string& path, size_t max_items = 10'000) {
  std::vector<Json> out;
  std::string page;
  for (;;) {
    std::string sep = path.find('?') == std::string::npos ? "?" : "&";
    WARREN_ASSIGN_OR_RETURN(Json j, Call(c, "GET", path + sep + "limit=100" + (page.empty() ? "" : "&page=" + page)));
    if (!j.is_object() || !j.contains("data") || !j["data"].is_array())
      return Status::Internal("unexpected list answer from " + path);
    for (Json& item : j["data"]) out.push_back(std::move(item));
    if (!j.contains("next_page") || !j["next_page"].is_string() || out.size() >= max_items) break;
    page = j["next_page"].get<std::string>();
  }
  return out;
}

std::string Truncate(std::string s, size_t n) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r') ch = ' ';
  if (s.size() > n) s = s.substr(0, n) + "…";
  return s;
}

std::string TextOf(const Json& content) {
  std::string out;
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return out;
  for (const Json& b : content) {
    if (!b.is_object()) continue;
    if (b.value("type", std::string()) == "text" && b.contains("text") && b["text"].is_string()) {
      if (!out.empty()) out += "\n";
      out += b["text"].get<std::string>();
    } else if (b.contains("type")) {
      if (!out.empty()) out += "\n";
      out += "[" + b.value("type", std::string()) + "]";
    }
  }
  return out;
}

std::string Str(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

// Prints `j` in the output mode: the id alone, or the whole object.
void PrintObject(const Conn& c, const Json& j) {
  if (c.json) std::cout << DumpJson(j) << "\n";
  else std::cout << Str(j, "id") << "\n";
}

int Report(const Status& s) {
  std::cerr << "warren: " << s.ToString() << "\n";
  return 1;
}

Status SendEvents(const Conn& c, const std::string& sid, const Json& events) {
  return Call(c, "POST", "/v1/sessions/" + sid + "/events", Json{{"events", events}}).status();
}

// What a person reads for a session's state: its status, except for an
// idle session stopped with requires_action, which reads
//   "requires_action" when a pending call waits for a person or a client
//     (an always_ask built-in or MCP call not yet confirmed, a custom tool),
//   "running" when every pending call is an allowed built-in call that a
//     worker runs (the session stays idle meanwhile, spec 3.1).
// One request (the session's newest 100 status and tool events) per idle
// session; on any doubt (an error, a call older than that page) the stop
// reason wins: "requires_action".
std::string DisplayStatus(const Conn& c, const Json& session) {
  const std::string status = Str(session, "status");
  if (status != "idle") return status;
  std::string path = "/v1/sessions/" + Str(session, "id") + "/events?order=desc&limit=100";
  for (const char* t : {"session.status_idle", "agent.tool_use", "agent.mcp_tool_use", "agent.custom_tool_use",
                        "user.tool_confirmation", "user.tool_result", "user.custom_tool_result"})
    path += std::string("&types%5B%5D=") + t;
  auto page = Call(c, "GET", path);
  if (!page.ok() || !page->is_object() || !(*page)["data"].is_array()) return status;
  const Json& evs = (*page)["data"];
  std::vector<std::string> pending;
  bool found_idle = false;
  std::map<std::string, Json> uses;
  std::map<std::string, std::string> verdicts;  // call id -> allow/deny
  std::set<std::string> results;
  for (const Json& e : evs) {
    const std::string type = Str(e, "type");
    if (type == "session.status_idle" && !found_idle) {
      found_idle = true;
      const Json sr = e.contains("stop_reason") ? e["stop_reason"] : Json::object();
      if (Str(sr, "type") != "requires_action") return status;
      if (sr.contains("event_ids") && sr["event_ids"].is_array())
        for (const Json& id : sr["event_ids"])
          if (id.is_string()) pending.push_back(id.get<std::string>());
    } else if (type == "user.tool_confirmation") {
      verdicts.emplace(Str(e, "tool_use_id"), Str(e, "result"));
    } else if (type == "user.tool_result") {
      results.insert(Str(e, "tool_use_id"));
    } else if (type == "user.custom_tool_result") {
      results.insert(Str(e, "custom_tool_use_id"));
    } else if (type.rfind("agent.", 0) == 0) {
      uses.emplace(Str(e, "id"), e);
    }
  }
  if (!found_idle) return status;
  bool working = false;
  for (const std::string& id : pending) {
    if (results.count(id)) continue;
    auto v = verdicts.find(id);
    if (v != verdicts.end() && v->second == "deny") continue;
    auto u = uses.find(id);
    if (u == uses.end()) return "requires_action";
    const std::string type = Str(u->second, "type");
    if (type == "agent.custom_tool_use") return "requires_action";
    const bool allowed = (v != verdicts.end() && v->second == "allow") || Str(u->second, "evaluated_permission") != "ask";
    if (!allowed) return "requires_action";
    working = true;
  }
  return working ? "running" : status;
}

Json UserMessage(const std::string& text) {
  return {{"type", "user.message"}, {"content", Json::array({{{"type", "text"}, {"text", text}}})}};
}


// ------------------------------------------------------------------ live view

// How output looks: on a terminal (stdout isatty) lines are redrawn live and
// coloured unless NO_COLOR is set; otherwise plain lines.
struct Style {
  bool tty = false;
  bool color = false;
  static Style Detect() {
    Style s;
    s.tty = isatty(STDOUT_FILENO) == 1;
    const char* nc = std::getenv("NO_COLOR");
    s.color = s.tty && !(nc && *nc);
    return s;
  }
  std::string Paint(const char* code, const std::string& text) const {
    return color ? std::string("\033[") + code + "m" + text + "\033[0m" : text;
  }
};

// A tool's output folded to its first `keep` lines plus "… N more lines".
std::string Fold(const std::string& text, size_t keep, const std::string& indent) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::string out;
  for (size_t i = 0; i < lines.size() && i < keep; ++i) {
    std::string l = lines[i];
    if (l.size() > 200) l = l.substr(0, 200) + "…";
    out += (i ? "\n" : "") + indent + l;
  }
  if (lines.size() > keep) out += "\n" + indent + "… " + std::to_string(lines.size() - keep) + " more lines";
  return out;
}

// Lines typed on stdin, read by one thread so that approval prompts and
// mid-session messages never race for the terminal. Thread-safe.
class LineReader final {
 public:
  LineReader() {
    if (pipe(stop_) != 0) stop_[0] = stop_[1] = -1;
    thread_ = std::thread([this] { Loop(); });
  }
  ~LineReader() {
    if (stop_[1] >= 0) (void)!write(stop_[1], "x", 1);
    thread_.join();
    for (int fd : stop_)
      if (fd >= 0) close(fd);
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Lines nobody asked for go to `sink` (a mid-session message).
  void SetSink(std::function<void(std::string)> sink) {
    std::lock_guard<std::mutex> l(mu_);
    sink_ = std::move(sink);
  }
  // Blocks until the next line; nullopt at end of input.
  std::optional<std::string> Ask() {
    std::unique_lock<std::mutex> l(mu_);
    ++askers_;
    cv_.wait(l, [&] { return !lines_.empty() || eof_; });
    --askers_;
    if (lines_.empty()) return std::nullopt;
    std::string s = std::move(lines_.front());
    lines_.pop_front();
    return s;
  }

 private:
  void Loop() {
    std::string buf;
    for (;;) {
      pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[1].revents) return;
      char tmp[512];
      ssize_t n = read(STDIN_FILENO, tmp, sizeof tmp);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      buf.append(tmp, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        std::function<void(std::string)> sink;
        {
          std::lock_guard<std::mutex> l(mu_);
          if (askers_ > 0 || !sink_) {
            lines_.push_back(line);
            cv_.notify_all();
            continue;
          }
          sink = sink_;
        }
        if (!line.empty()) sink(line);
      }
    }
    std::lock_guard<std::mutex> l(mu_);
    eof_ = true;
    cv_.notify_all();
  }

  int stop_[2] = {-1, -1};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> lines_;
  int askers_ = 0;
  bool eof_ = false;
  std::function<void(std::string)> sink_;
  std::thread thread_;
};

// Renders a session's events for people: streamed agent text (from the
// stream's previews), a spinner while the model thinks or a tool runs, tool
// calls with their input and folded output, errors in plain words. All
// output goes through one mutex; a spinner thread redraws on a terminal.
// Thread-safe.
class LiveView final {
 public:
  LiveView(Style style, std::string sid) : style_(style), sid_(std::move(sid)) {
    if (style_.tty) spinner_ = std::thread([this] { Spin(); });
  }
  ~LiveView() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
      ClearSpinnerLocked();
    }
    cv_.notify_all();
    if (spinner_.joinable()) spinner_.join();
    std::cout << std::flush;
  }
  LiveView(const LiveView&) = delete;
  LiveView& operator=(const LiveView&) = delete;

  // A line of status from the client itself (interrupting, leaving).
  void Note(const std::string& text) {
    std::lock_guard<std::mutex> l(mu_);
    ClearSpinnerLocked();
    EndLineLocked();
    std::cout << style_.Paint("2", text) << "\n" << std::flush;
  }
  // Prints a prompt without a newline and stops the spinner until the next event.
  void Prompt(const std::string& text) {
    std::lock_guard<std::mutex> l(mu_);
    ClearSpinnerLocked();
    EndLineLocked();
    spin_label_.clear();
    std::cout << text << std::flush;
  }

  void Handle(const Json& ev) {
    std::lock_guard<std::mutex> l(mu_);
    ClearSpinnerLocked();
    const std::string type = Str(ev, "type");
    const std::string id = Str(ev, "id");
    if (type == "event_start") {
      const Json inner = ev.contains("event") ? ev["event"] : Json::object();
      if (Str(inner, "type") == "agent.message") {
        EndLineLocked();
        streaming_ = Str(inner, "id");
        std::cout << style_.Paint("1;36", "agent:") << " " << std::flush;
        mid_line_ = true;
        spin_label_.clear();
      } else if (Str(inner, "type") == "agent.thinking") {
        spin_label_ = "thinking";
      }
      return;
    }
    if (type == "event_delta") {
      if (Str(ev, "event_id") != streaming_ || streaming_.empty()) return;
      const Json d = ev.contains("delta") ? ev["delta"] : Json::object();
      const Json c = d.contains("content") ? d["content"] : Json::object();
      std::cout << Str(c, "text") << std::flush;
      return;
    }
    if (type == "ping" || (!id.empty() && !seen_.insert(id).second)) return;
    if (type == "agent.message" && id == streaming_ && !streaming_.empty()) {
      std::cout << "\n" << std::flush;  // its text arrived as previews
      mid_line_ = false;
      streaming_.clear();
      return;
    }
    EndLineLocked();
    if (type == "session.status_running" || type == "span.model_request_start") spin_label_ = "thinking";
    // requires_action while an allowed call runs on a worker: keep spinning.
    const bool waits_for_tool = type == "session.status_idle" && spin_label_.rfind("running ", 0) == 0 &&
                                Str(ev.contains("stop_reason") ? ev["stop_reason"] : Json::object(), "type") ==
                                    "requires_action";
    if ((type == "session.status_idle" && !waits_for_tool) || type == "session.status_terminated" ||
        type == "session.error")
      spin_label_.clear();
    if (type == "agent.tool_use" || type == "agent.custom_tool_use" || type == "agent.mcp_tool_use") {
      std::cout << "  " << style_.Paint("1;33", "→ " + Str(ev, "name")) << " "
                << Truncate(DumpJson(ev.value("input", Json::object())), 200) << "  " << style_.Paint("2", "[" + id + "]")
                << "\n";
      spin_label_ = Str(ev, "evaluated_permission") == "ask" ? "" : "running " + Str(ev, "name");
      if (Str(ev, "evaluated_permission") == "ask")
        std::cout << "    " << style_.Paint("33", "needs approval: warren approve " + sid_ + " " + id + " [--deny]")
                  << "\n";
    } else if (type == "user.tool_result" || type == "user.custom_tool_result" || type == "agent.tool_result" ||
               type == "agent.mcp_tool_result") {
      bool err = ev.contains("is_error") && ev["is_error"].is_boolean() && ev["is_error"].get<bool>();
      std::string text = TextOf(ev.value("content", Json::array()));
      if (text.empty()) text = "(no output)";
      if (err) std::cout << "  " << style_.Paint("31", "← the tool failed:") << "\n" << style_.Paint("31", Fold(text, 6, "    ")) << "\n";
      else std::cout << "  " << style_.Paint("32", "←") << "\n" << style_.Paint("2", Fold(text, 6, "    ")) << "\n";
      spin_label_ = "thinking";
    } else if (type == "session.error") {
      const Json e = ev.contains("error") ? ev["error"] : Json::object();
      std::string msg = Str(e, "message");
      std::cout << style_.Paint("1;31", "error:") << " " << (msg.empty() ? "the session reported an error" : msg) << "\n";
    } else if (type == "session.status_idle" && waits_for_tool) {
      // Not a stop for people: the spinner says the tool is running.
    } else if (type == "session.status_idle") {
      const Json sr = ev.contains("stop_reason") ? ev["stop_reason"] : Json::object();
      std::string reason = Str(sr, "type");
      std::cout << style_.Paint("2", "[idle: " + reason + "]") << "\n";
    } else if (type == "session.status_running") {
      std::cout << style_.Paint("2", "[running]") << "\n";
    } else if (type == "user.message") {
      std::cout << style_.Paint("1;35", "user:") << " " << TextOf(ev.value("content", Json::array())) << "\n";
    } else {
      std::string line = FormatEventLine(ev, sid_);
      if (!line.empty()) std::cout << (type == "user.interrupt" ? style_.Paint("33", line) : line) << "\n";
    }
    std::cout << std::flush;
  }

 private:
  void EndLineLocked() {
    if (mid_line_) std::cout << "\n";
    mid_line_ = false;
    streaming_.clear();
  }
  void ClearSpinnerLocked() {
    if (drawn_) std::cout << "\r\033[K" << std::flush;
    drawn_ = false;
  }
  void Spin() {
    static const char* frames[] = {"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"};
    size_t i = 0;
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      cv_.wait_for(l, std::chrono::milliseconds(100));
      if (stop_) break;
      if (spin_label_.empty() || mid_line_) continue;
      std::cout << "\r\033[K" << style_.Paint("36", frames[i++ % 10]) << " " << style_.Paint("2", spin_label_ + "…")
                << std::flush;
      drawn_ = true;
    }
  }

  const Style style_;
  const std::string sid_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, drawn_ = false, mid_line_ = false;
  std::string spin_label_, streaming_;
  std::set<std::string> seen_;
  std::thread spinner_;
};

// Ctrl-C: the first sends user.interrupt, the second leaves (exit 130).
// Installed for the duration of an interactive watch.
int g_sigpipe[2] = {-1, -1};
void OnSigint(int) {
  if (g_sigpipe[1] >= 0) (void)!write(g_sigpipe[1], "i", 1);
}

// ------------------------------------------------------------------ watching

struct WatchOptions {
  bool until_idle = false;     // return at the first idle that is not requires_action
  bool interactive = false;    // ask about always_ask calls on the terminal
  std::function<void()> on_open;  // after the stream's headers arrived
  LiveView* view = nullptr;       // render for people on a terminal (else plain lines)
  LineReader* input = nullptr;    // answers to prompts (interactive)
};

// Outcome of a watch: the stop reason of the idle that ended it ("" when the
// stream ended otherwise), and pending calls nobody answered.
struct WatchEnd {
  std::string stop_reason;
  std::vector<std::string> unanswered;
};

// Streams the session's events to stdout until the stream ends, or (with
// until_idle) the session idles for a reason other than requires_action, or
// requires_action leaves calls this terminal cannot answer.
Result<WatchEnd> Watch(const Conn& c, const std::string& sid, const WatchOptions& opts) {
  WatchEnd end;
  std::map<std::string, Json> uses;  // tool-use event id -> event
  std::set<std::string> answered;
  bool done = false;
  Status inner = Status::Ok();
  CancelToken cancel;
  std::set<std::string> printed;  // a queued user event is echoed again once processed
  auto handle = [&](const Json& ev) {
    const std::string type = Str(ev, "type");
    if (type == "ping") return;
    if (c.json) {
      std::cout << DumpJson(ev) << "\n" << std::flush;
    } else if (opts.view != nullptr) {
      opts.view->Handle(ev);
    } else if (printed.insert(Str(ev, "id")).second || Str(ev, "id").empty()) {
      std::string line = FormatEventLine(ev, sid);
      if (!line.empty()) std::cout << line << "\n" << std::flush;
    }
    if (type == "agent.tool_use" || type == "agent.custom_tool_use" || type == "agent.mcp_tool_use")
      uses[Str(ev, "id")] = ev;
    if (type == "user.tool_confirmation") answered.insert(Str(ev, "tool_use_id"));
    if (type == "session.status_terminated" || type == "session.deleted") {
      end.stop_reason = type;
      done = true;
    }
    if (type != "session.status_idle" || !opts.until_idle) return;
    const Json sr = ev.contains("stop_reason") ? ev["stop_reason"] : Json::object();
    const std::string reason = Str(sr, "type");
    if (reason != "requires_action") {
      end.stop_reason = reason;
      done = true;
      return;
    }
    // requires_action: answer the confirmations we can, report the rest.
    std::vector<std::string> ids;
    if (sr.contains("event_ids") && sr["event_ids"].is_array())
      for (const Json& id : sr["event_ids"])
        if (id.is_string()) ids.push_back(id.get<std::string>());
    Json confirmations = Json::array();
    std::vector<std::string> rest;
    for (const std::string& id : ids) {
      auto it = uses.find(id);
      // A built-in call already allowed is a worker's to answer (the
      // orchestrator's sandbox runner on cloud environments): keep watching.
      if (it != uses.end() && Str(it->second, "type") == "agent.tool_use" &&
          (Str(it->second, "evaluated_permission") == "allow" || answered.count(id)))
        continue;
      bool askable = it != uses.end() && Str(it->second, "type") != "agent.custom_tool_use" &&
                     Str(it->second, "evaluated_permission") == "ask" && !answered.count(id);
      if (!askable || !opts.interactive) {
        rest.push_back(id);
        continue;
      }
      const Json& use = it->second;
      const std::string question = "allow " + Str(use, "name") + " " +
                                   Truncate(DumpJson(use.value("input", Json::object())), 300) + "? [y/N] ";
      std::string answer, why;
      if (opts.input != nullptr && opts.view != nullptr) {
        opts.view->Prompt(question);
        std::optional<std::string> line = opts.input->Ask();
        if (!line) {  // stdin closed: nobody to ask, leave it pending (exit 3)
          opts.view->Note("");
          rest.push_back(id);
          continue;
        }
        answer = *line;
      } else {
        std::cerr << question << std::flush;
        if (!std::getline(std::cin, answer)) answer.clear();
      }
      bool yes = !answer.empty() && (answer[0] == 'y' || answer[0] == 'Y');
      if (!yes) {
        const std::string q2 = "why (shown to the agent, Enter for none): ";
        if (opts.input != nullptr && opts.view != nullptr) {
          opts.view->Prompt(q2);
          why = opts.input->Ask().value_or("");
        } else {
          std::cerr << q2 << std::flush;
          if (!std::getline(std::cin, why)) why.clear();
        }
      }
      Json conf = {{"type", "user.tool_confirmation"}, {"tool_use_id", id}, {"result", yes ? "allow" : "deny"}};
      if (!yes) conf["deny_message"] = why.empty() ? "denied at the terminal" : why;
      confirmations.push_back(conf);
      answered.insert(id);
    }
    if (!confirmations.empty()) {
      Status s = SendEvents(c, sid, confirmations);
      if (!s.ok()) {
        inner = s;
        done = true;
        return;
      }
    }
    if (!rest.empty() && confirmations.empty()) {
      end.stop_reason = reason;
      end.unanswered = rest;
      done = true;
    }
  };

  SseParser parser([&](const SseEvent& e) {
    if (done || e.data.empty()) return;
    auto j = ParseJson(e.data);
    if (!j.ok() || !j->is_object()) return;
    if (Str(*j, "type") == "error") {
      inner = Status::Unavailable("stream error: " + e.data.substr(0, 300));
      done = true;
      return;
    }
    handle(*j);
  });
  // A live view asks for previews so agent text appears as it is written.
  HttpRequest req = NewRequest(c, "GET", "/v1/sessions/" + sid + "/events/stream" +
                                             (opts.view != nullptr ? "?event_deltas%5B%5D=agent.message&event_deltas%5B%5D=agent.thinking" : ""));
  req.headers.emplace_back("accept", "text/event-stream");
  req.total_timeout_ms = 0;
  req.idle_timeout_ms = 0;
  HttpResponse head;
  StreamHandlers h;
  h.on_headers = [&](const HttpResponse& r) {
    head = r;
    if (r.status != 200) return true;  // body is the error envelope
    if (opts.on_open) opts.on_open();
    return true;
  };
  std::string error_body;
  h.on_data = [&](std::string_view chunk) {
    if (head.status != 200) {
      error_body.append(chunk);
      return error_body.size() < 65536;
    }
    parser.Feed(chunk);
    return !done;
  };
  auto r = Http().Stream(req, h, &cancel);
  if (head.status != 0 && head.status != 200) {
    head.body = error_body;
    return ApiError(head);
  }
  if (!inner.ok()) return inner;
  if (!r.ok() && !(done && r.status().code() == Code::kCancelled)) return r.status();
  return end;
}

// Exit code of a finished turn: 0 end_turn, 3 waiting for answers this
// terminal could not give, 4 any other stop reason.
int TurnExit(const Conn& c, const std::string& sid, const WatchEnd& end) {
  if (end.stop_reason == "end_turn") return 0;
  if (!end.unanswered.empty()) {
    std::cerr << "warren: the session waits for " << end.unanswered.size() << " answer(s):";
    for (const auto& id : end.unanswered) std::cerr << " " << id;
    std::cerr << "\n  approve with: warren approve " << sid << " <event id> [--deny]\n";
    return 3;
  }
  std::cerr << "warren: the turn ended with " << (end.stop_reason.empty() ? "a closed stream" : end.stop_reason)
            << "\n";
  return 4;
}

// While alive: Ctrl-C sends user.interrupt, a second Ctrl-C leaves (exit
// 130); lines typed on stdin go to the session as user.message.
class InteractiveSession final {
 public:
  InteractiveSession(const Conn& c, std::string sid, LiveView* view) : conn_(c), sid_(std::move(sid)), view_(view) {
    if (pipe(g_sigpipe) != 0 || pipe(stop_) != 0) return;
    struct sigaction sa = {};
    sa.sa_handler = OnSigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_);
    input_.SetSink([this](std::string line) {
      Status s = SendEvents(conn_, sid_, Json::array({UserMessage(line)}));
      if (!s.ok()) view_->Note("could not send the message: " + s.ToString());
    });
    thread_ = std::thread([this] { Loop(); });
  }
  ~InteractiveSession() {
    if (stop_[1] >= 0) (void)!write(stop_[1], "x", 1);
    if (thread_.joinable()) thread_.join();
    input_.SetSink(nullptr);
    sigaction(SIGINT, &old_, nullptr);
    for (int* fds : {g_sigpipe, stop_})
      for (int i = 0; i < 2; ++i)
        if (fds[i] >= 0) close(fds[i]), fds[i] = -1;
  }
  InteractiveSession(const InteractiveSession&) = delete;
  InteractiveSession& operator=(const InteractiveSession&) = delete;
  LineReader* input() { return &input_; }

 private:
  void Loop() {
    int presses = 0;
    for (;;) {
      pollfd fds[2] = {{g_sigpipe[0], POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents) return;
      char ch;
      if (read(g_sigpipe[0], &ch, 1) != 1) continue;
      if (++presses == 1) {
        view_->Note("interrupting… (Ctrl-C again to leave)");
        Status s = SendEvents(conn_, sid_, Json::array({{{"type", "user.interrupt"}}}));
        if (!s.ok()) view_->Note("could not interrupt: " + s.ToString());
      } else {
        view_->Note("left; the session goes on: warren watch " + sid_);
        std::cout << std::flush;
        std::_Exit(130);
      }
    }
  }

  const Conn& conn_;
  const std::string sid_;
  LiveView* view_;
  LineReader input_;
  int stop_[2] = {-1, -1};
  struct sigaction old_ = {};
  std::thread thread_;
};

// Sends `events` once the stream is open, then watches until idle. On a
// terminal the turn is rendered live; `interactive` adds Ctrl-C, typed
// messages and approval prompts (both stdin and stdout are terminals).
int SendAndWatch(const Conn& c, const std::string& sid, const Json& events, bool interactive) {
  Status send_status = Status::Ok();
  WatchOptions wo;
  wo.until_idle = true;
  wo.interactive = interactive;
  const Style style = Style::Detect();
  std::unique_ptr<LiveView> view;
  std::unique_ptr<InteractiveSession> session;
  if (style.tty && !c.json) {
    view = std::make_unique<LiveView>(style, sid);
    wo.view = view.get();
    if (interactive) {
      session = std::make_unique<InteractiveSession>(c, sid, view.get());
      wo.input = session->input();
    }
  }
  // Runs on the stream's thread before any event is read: the message
  // cannot be missed because the stream is already attached.
  wo.on_open = [&] { send_status = SendEvents(c, sid, events); };
  auto end = Watch(c, sid, wo);
  if (!send_status.ok()) return Report(send_status);
  if (!end.ok()) return Report(end.status());
  return TurnExit(c, sid, *end);
}

void AddConnOptions(CLI::App* cmd, Conn* c) {
  cmd->add_option("--base-url", c->base_url, "service URL (WARREN_BASE_URL)");
  cmd->add_option("--api-key", c->api_key, "organization API key (WARREN_API_KEY, ANTHROPIC_API_KEY)");
  cmd->add_flag("--json", c->json, "print JSON objects instead of ids and lines");
}

// Shared state of all client commands (CLI11 binds options to it).
struct ClientArgs {
  Conn conn;
  std::string name, model = "claude-sonnet-4-6", system, agent, env, title, session, tool_use_id, text_opt;
  std::vector<std::string> text;
  bool self_hosted = false, ask = false, no_tools = false, until_idle = false, deny = false, yes = false,
       no_input = false;
  std::string deny_message;
};

// Whether a watched turn talks with the person at the terminal: approvals,
// Ctrl-C, typed messages. Needs stdin and stdout on a terminal (or --yes
// with stdin on one), never with --json or --no-input.
bool Interactive(const Conn& c, const ClientArgs& a) {
  if (c.json || a.no_input) return false;
  return (isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1) || (a.yes && isatty(STDIN_FILENO) == 1);
}

std::string Joined(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
  return s;
}

Json AgentBody(const ClientArgs& a) {
  Json body = {{"name", a.name}, {"model", a.model}};
  if (!a.system.empty()) body["system"] = a.system;
  if (!a.no_tools) {
    Json ts = {{"type", "agent_toolset_20260401"}};
    if (a.ask) ts["default_config"] = {{"permission_policy", {{"type", "always_ask"}}}};
    body["tools"] = Json::array({ts});
  }
  return body;
}

// The environment for `run` without --env: "warren-cli" (cloud), made once.
Result<std::string> DefaultEnvironment(const Conn& c) {
  WARREN_ASSIGN_OR_RETURN(auto envs, ListAll(c, "/v1/environments"));
  for (const Json& e : envs)
    if (Str(e, "name") == "warren-cli") return Str(e, "id");
  WARREN_ASSIGN_OR_RETURN(Json env, Call(c, "POST", "/v1/environments",
                                         Json{{"name", "warren-cli"}, {"config", {{"type", "cloud"}}}}));
  return Str(env, "id");
}

// The agent for `run` without --agent: "warren-cli" with the built-in
// toolset, made once.
Result<std::string> DefaultAgent(const Conn& c) {
  WARREN_ASSIGN_OR_RETURN(auto agents, ListAll(c, "/v1/agents"));
  for (const Json& a : agents)
    if (Str(a, "name") == "warren-cli") return Str(a, "id");
  WARREN_ASSIGN_OR_RETURN(Json agent, Call(c, "POST", "/v1/agents",
                                           Json{{"name", "warren-cli"},
                                                {"model", "claude-sonnet-4-5"},
                                                {"tools", Json::array({{{"type", "agent_toolset_20260401"}}})}}));
  return Str(agent, "id");
}


// Every command path of `app` ("" for the root) with the words that may
// follow it: subcommand names and long options.
void CommandWords(const CLI::App* app, const std::string& path, std::vector<std::pair<std::string, std::string>>* out) {
  std::string words;
  std::vector<std::pair<const CLI::App*, std::string>> subs;
  for (const CLI::App* sub : app->get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_name().empty()) continue;
    words += (words.empty() ? "" : " ") + sub->get_name();
    subs.emplace_back(sub, (path.empty() ? "" : path + " ") + sub->get_name());
  }
  for (const CLI::Option* opt : app->get_options())
    for (const std::string& l : opt->get_lnames()) words += (words.empty() ? "" : " ") + std::string("--") + l;
  out->emplace_back(path, words);
  for (const auto& [sub, p] : subs) CommandWords(sub, p, out);
}

// A bash completion script for `app`; zsh loads it through bashcompinit.
std::string CompletionScript(const CLI::App& app, bool zsh) {
  std::vector<std::pair<std::string, std::string>> paths;
  CommandWords(&app, "", &paths);
  std::string known, cases;
  for (const auto& [path, words] : paths) {
    if (!path.empty()) known += "|\"" + path + "\"";
    cases += "    \"" + path + "\") words=\"" + words + "\" ;;\n";
  }
  std::string s;
  if (zsh) s += "#compdef warren\nautoload -U +X bashcompinit && bashcompinit\n";
  s += "# warren completion (bash" + std::string(zsh ? ", loaded by zsh" : "") + ")\n";
  s += "_warren() {\n"
       "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" path=\"\" next w i words\n"
       "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
       "    w=\"${COMP_WORDS[i]}\"\n"
       "    [[ $w == -* ]] && continue\n"
       "    next=\"${path:+$path }$w\"\n"
       "    case \"$next\" in\n"
       "      " + known.substr(1) + ") path=\"$next\" ;;\n"
       "    esac\n"
       "  done\n"
       "  case \"$path\" in\n" + cases +
       "    *) words=\"\" ;;\n"
       "  esac\n"
       "  COMPREPLY=($(compgen -W \"$words --help\" -- \"$cur\"))\n"
       "}\n"
       "complete -o default -F _warren warren\n";
  return s;
}
}  // namespace

std::string FormatEventLine(const Json& ev, const std::string& session_id) {
  const std::string type = Str(ev, "type");
  const std::string id = Str(ev, "id");
  if (type == "agent.message") return "agent: " + TextOf(ev.value("content", Json::array()));
  if (type == "user.message") return "user: " + TextOf(ev.value("content", Json::array()));
  if (type == "agent.thinking") return "  (thinking)";
  if (type == "agent.tool_use" || type == "agent.custom_tool_use" || type == "agent.mcp_tool_use") {
    std::string line = "  → " + Str(ev, "name") + " " + Truncate(DumpJson(ev.value("input", Json::object())), 200) +
                       "  [" + id + "]";
    if (Str(ev, "evaluated_permission") == "ask")
      line += "\n    needs approval: warren approve " + session_id + " " + id + " [--deny]";
    return line;
  }
  if (type == "user.tool_result" || type == "user.custom_tool_result") {
    bool err = ev.contains("is_error") && ev["is_error"].is_boolean() && ev["is_error"].get<bool>();
    std::string text = TextOf(ev.value("content", Json::array()));
    return std::string("  ← ") + (err ? "error: " : "") + Truncate(text.empty() ? "(no output)" : text, 300);
  }
  if (type == "user.tool_confirmation") return "  ✓ " + Str(ev, "result") + " " + Str(ev, "tool_use_id");
  if (type == "user.interrupt") return "user: (interrupt)";
  if (type == "session.status_idle") {
    const Json sr = ev.contains("stop_reason") ? ev["stop_reason"] : Json::object();
    return "[idle: " + Str(sr, "type") + "]";
  }
  if (type == "session.status_running") return "[running]";
  if (type == "session.status_rescheduled") return "[rescheduled]";
  if (type == "session.status_terminated") return "[terminated]";
  if (type == "session.error") {
    const Json e = ev.contains("error") ? ev["error"] : Json::object();
    return "[error: " + Str(e, "message") + "]";
  }
  if (type == "agent.thread_context_compacted") return "[context compacted]";
  if (type.rfind("span.", 0) == 0 || type == "session.usage" || type.empty()) return "";
  return "[" + type + "]";
}

void RegisterClientCommands(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ClientArgs>();
  auto conn_of = [args]() -> Conn& {
    Conn& c = args->conn;
    if (c.base_url.empty()) c.base_url = EnvOr("WARREN_BASE_URL", nullptr, "http://127.0.0.1:8400");
    if (c.api_key.empty()) c.api_key = EnvOr("WARREN_API_KEY", "ANTHROPIC_API_KEY", "");
    return c;
  };
  auto run = [exit_code](std::function<int()> fn) { return [exit_code, fn] { *exit_code = fn(); }; };
  auto print_result = [conn_of](Result<Json> r) -> int {
    if (!r.ok()) return Report(r.status());
    PrintObject(conn_of(), *r);
    return 0;
  };
  // Events sent: nothing to print, or (--json) the service's answer.
  auto print_sent = [conn_of](Result<Json> r) -> int {
    if (!r.ok()) return Report(r.status());
    if (conn_of().json) std::cout << DumpJson(*r) << "\n";
    return 0;
  };
  auto print_list = [conn_of](const std::string& path, std::function<std::string(const Json&)> line) -> int {
    Conn& c = conn_of();
    auto items = ListAll(c, path);
    if (!items.ok()) return Report(items.status());
    // --json: one document, {"data": [...]} like the API's list pages (and
    // the sandbox commands' lists), so `jq .data[]` and JSON.parse work.
    if (c.json) {
      std::cout << DumpJson(Json{{"data", *items}}) << "\n";
      return 0;
    }
    for (const Json& j : *items) std::cout << line(j) << "\n";
    return 0;
  };

  // agent
  auto* agent = app.add_subcommand("agent", "Agents: create, list");
  agent->require_subcommand(1);
  auto* agent_create = agent->add_subcommand("create", "Create an agent; prints its id");
  agent_create->add_option("--name", args->name, "agent name")->required();
  agent_create->add_option("--model", args->model, "model id")->capture_default_str();
  agent_create->add_option("--system", args->system, "system prompt");
  agent_create->add_flag("--ask", args->ask, "built-in tools need approval (always_ask)");
  agent_create->add_flag("--no-tools", args->no_tools, "no built-in toolset");
  AddConnOptions(agent_create, &args->conn);
  agent_create->callback(run([=] { return print_result(Call(conn_of(), "POST", "/v1/agents", AgentBody(*args))); }));
  auto* agent_list = agent->add_subcommand("list", "List agents");
  AddConnOptions(agent_list, &args->conn);
  agent_list->callback(run([=] {
    return print_list("/v1/agents", [](const Json& j) { return Str(j, "id") + "  " + Str(j, "name") + "  " + Str(j, "model"); });
  }));

  // env
  auto* env = app.add_subcommand("env", "Environments: create, list");
  env->require_subcommand(1);
  auto* env_create = env->add_subcommand("create", "Create an environment; prints its id");
  env_create->add_option("--name", args->name, "environment name")->required();
  env_create->add_flag("--self-hosted", args->self_hosted, "tools run by your own workers (warren-runner)");
  AddConnOptions(env_create, &args->conn);
  env_create->callback(run([=] {
    Json body = {{"name", args->name}, {"config", {{"type", args->self_hosted ? "self_hosted" : "cloud"}}}};
    return print_result(Call(conn_of(), "POST", "/v1/environments", body));
  }));
  auto* env_list = env->add_subcommand("list", "List environments");
  AddConnOptions(env_list, &args->conn);
  env_list->callback(run([=] {
    return print_list("/v1/environments", [](const Json& j) {
      const Json cfg = j.contains("config") ? j["config"] : Json::object();
      return Str(j, "id") + "  " + Str(j, "name") + "  " + Str(cfg, "type");
    });
  }));

  // session
  auto* session = app.add_subcommand("session", "Sessions: create, list, get, archive, rm");
  session->require_subcommand(1);
  auto* s_create = session->add_subcommand("create", "Create a session; prints its id");
  s_create->add_option("--agent", args->agent, "agent id")->required();
  s_create->add_option("--env", args->env, "environment id")->required();
  s_create->add_option("--title", args->title, "title");
  AddConnOptions(s_create, &args->conn);
  s_create->callback(run([=] {
    Json body = {{"agent", args->agent}, {"environment_id", args->env}};
    if (!args->title.empty()) body["title"] = args->title;
    return print_result(Call(conn_of(), "POST", "/v1/sessions", body));
  }));
  auto* s_list = session->add_subcommand("list", "List sessions");
  AddConnOptions(s_list, &args->conn);
  s_list->callback(run([=] {
    return print_list("/v1/sessions", [conn_of](const Json& j) {
      return Str(j, "id") + "  " + DisplayStatus(conn_of(), j) + "  " +
             (j.contains("title") && j["title"].is_string() ? Str(j, "title") : "-");
    });
  }));
  for (const char* verb : {"get", "archive", "rm"}) {
    auto* cmd = session->add_subcommand(verb, std::string(verb) == "get" ? "Print a session as JSON"
                                                : std::string(verb) == "archive" ? "Archive a session"
                                                                                 : "Delete a session");
    cmd->add_option("SESSION", args->session, "session id")->required();
    AddConnOptions(cmd, &args->conn);
    std::string v = verb;
    cmd->callback(run([=] {
      Conn& c = conn_of();
      std::string path = "/v1/sessions/" + args->session;
      Result<Json> r = v == "get" ? Call(c, "GET", path)
                       : v == "archive" ? Call(c, "POST", path + "/archive")
                                        : Call(c, "DELETE", path);
      if (!r.ok()) return Report(r.status());
      std::cout << (v == "get" || c.json ? DumpJson(*r) : args->session) << "\n";
      return 0;
    }));
  }

  // send / interrupt / approve / watch
  auto* send = app.add_subcommand("send", "Send a user message to a session");
  send->add_option("SESSION", args->session, "session id")->required();
  send->add_option("TEXT", args->text, "message text")->required();
  send->add_flag("--wait", args->until_idle, "stream the turn until the session idles");
  send->add_flag("--yes", args->yes, "with --wait: ask about gated tool calls even when stdout is not a terminal");
  send->add_flag("--no-input", args->no_input, "with --wait: never read the terminal (no prompts, typed messages or Ctrl-C interrupt)");
  AddConnOptions(send, &args->conn);
  send->callback(run([=] {
    Conn& c = conn_of();
    Json events = Json::array({UserMessage(Joined(args->text))});
    if (args->until_idle) return SendAndWatch(c, args->session, events, Interactive(c, *args));
    return print_sent(Call(c, "POST", "/v1/sessions/" + args->session + "/events", Json{{"events", events}}));
  }));
  auto* interrupt = app.add_subcommand("interrupt", "Interrupt a session's turn");
  interrupt->add_option("SESSION", args->session, "session id")->required();
  AddConnOptions(interrupt, &args->conn);
  interrupt->callback(run([=] {
    return print_sent(Call(conn_of(), "POST", "/v1/sessions/" + args->session + "/events",
                           Json{{"events", Json::array({{{"type", "user.interrupt"}}})}}));
  }));
  auto* approve = app.add_subcommand("approve", "Allow (or --deny) a gated tool call");
  approve->add_option("SESSION", args->session, "session id")->required();
  approve->add_option("TOOL_USE_ID", args->tool_use_id, "event id of the agent.tool_use")->required();
  approve->add_flag("--deny", args->deny, "deny instead of allow");
  approve->add_option("--message", args->deny_message, "with --deny: why (shown to the model)");
  AddConnOptions(approve, &args->conn);
  approve->callback(run([=] {
    Json conf = {{"type", "user.tool_confirmation"}, {"tool_use_id", args->tool_use_id},
                 {"result", args->deny ? "deny" : "allow"}};
    if (args->deny && !args->deny_message.empty()) conf["deny_message"] = args->deny_message;
    if (!args->deny && !args->deny_message.empty()) {
      std::cerr << "warren: --message goes with --deny\n";
      return 2;
    }
    return print_sent(
        Call(conn_of(), "POST", "/v1/sessions/" + args->session + "/events", Json{{"events", Json::array({conf})}}));
  }));
  auto* watch = app.add_subcommand("watch", "Stream a session's events live");
  watch->add_option("SESSION", args->session, "session id")->required();
  watch->add_flag("--until-idle", args->until_idle, "return when the session idles (exit 0 on end_turn)");
  AddConnOptions(watch, &args->conn);
  watch->callback(run([=] {
    Conn& c = conn_of();
    WatchOptions wo;
    wo.until_idle = args->until_idle;
    wo.on_open = [&] { std::cerr << "watching " << args->session << "\n" << std::flush; };
    // On a terminal the same live view as `run` (without taking input).
    const Style style = Style::Detect();
    std::unique_ptr<LiveView> view;
    if (style.tty && !c.json) {
      view = std::make_unique<LiveView>(style, args->session);
      wo.view = view.get();
    }
    auto end = Watch(c, args->session, wo);
    if (!end.ok()) return Report(end.status());
    return args->until_idle ? TurnExit(c, args->session, *end) : 0;
  }));

  // run: one prompt in a new session, streamed
  auto* runcmd = app.add_subcommand("run", "New session, one message, stream the turn until it ends");
  runcmd->add_option("--agent", args->agent, "agent id (default: an agent named warren-cli with the built-in tools)");
  runcmd->add_option("--env", args->env, "environment id (default: a cloud environment named warren-cli)");
  runcmd->add_option("--title", args->title, "session title");
  runcmd->add_option("TEXT", args->text, "message text")->required();
  runcmd->add_flag("--yes", args->yes, "ask about gated tool calls even when stdout is not a terminal");
  runcmd->add_flag("--no-input", args->no_input, "never read the terminal (no prompts, typed messages or Ctrl-C interrupt)");
  AddConnOptions(runcmd, &args->conn);
  runcmd->callback(run([=] {
    Conn& c = conn_of();
    std::string env_id = args->env;
    std::string agent_id = args->agent;
    if (agent_id.empty()) {
      auto a = DefaultAgent(c);
      if (!a.ok()) return Report(a.status());
      agent_id = *a;
    }
    if (env_id.empty()) {
      auto e = DefaultEnvironment(c);
      if (!e.ok()) return Report(e.status());
      env_id = *e;
    }
    Json body = {{"agent", agent_id}, {"environment_id", env_id}};
    if (!args->title.empty()) body["title"] = args->title;
    auto s = Call(c, "POST", "/v1/sessions", body);
    if (!s.ok()) return Report(s.status());
    std::string sid = Str(*s, "id");
    std::cerr << "session " << sid << "\n";
    return SendAndWatch(c, sid, Json::array({UserMessage(Joined(args->text))}), Interactive(c, *args));
  }));

  // completion
  auto* completion = app.add_subcommand("completion", "Print a shell completion script (bash or zsh)");
  completion->add_option("SHELL", args->name, "bash or zsh")->required()->check(CLI::IsMember({"bash", "zsh"}));
  completion->footer(
      "Examples:\n"
      "  source <(warren completion bash)                       # this bash\n"
      "  warren completion bash > /etc/bash_completion.d/warren  # every bash\n"
      "  warren completion zsh > \"${fpath[1]}/_warren\"           # zsh");
  CLI::App* root = &app;
  completion->callback(run([=] {
    std::cout << CompletionScript(*root, args->name == "zsh");
    return 0;
  }));

  app.footer(
      "Examples:\n"
      "  warren serve --data-dir ./warren-data\n"
      "  export WARREN_API_KEY=$(warren keys create api --data-dir ./warren-data)\n"
      "  warren run \"summarise README.md\"          # new session, streamed live\n"
      "  warren session list --json\n"
      "  warren send SESSION \"and now the tests\" --wait\n"
      "  warren completion bash >> ~/.bashrc\n"
      "Run `warren COMMAND --help` for a command's options; docs/CLI.md has the rest.");
  runcmd->footer(
      "On a terminal the turn is drawn live: agent text as it is written, a spinner while the model\n"
      "thinks, tool calls with their input and folded output. While it runs:\n"
      "  type a line + Enter   send it to the agent as a message\n"
      "  Ctrl-C                interrupt the agent (user.interrupt); Ctrl-C again leaves\n"
      "  gated calls           are asked about: y allows, anything else denies (with a reason)\n"
      "Exit codes: 0 end_turn, 3 waiting for approvals, 4 other stop, 130 left with Ctrl-C.\n"
      "Examples:\n"
      "  warren run \"list the files in /tmp\"\n"
      "  warren run --agent agent_01... --env env_01... --title fix \"fix the failing test\"\n"
      "  warren run --json \"hello\" | jq -r .type      # events as JSON lines");
  send->footer(
      "Examples:\n"
      "  warren send SESSION \"also update the docs\"          # queue a message\n"
      "  warren send SESSION \"go on\" --wait                  # and watch the turn live");
}

}  // namespace warren::cli
