#include "runner/session_runner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <thread>

#include "common/log.h"
#include "runner/journal_files.h"

namespace warren::runner {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

namespace {

std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : "";
}

// A journal file name for `id`, or "" when the id has characters that do
// not belong in a file name (then the call is not journalled).
std::string JournalName(const std::string& id) {
  if (id.empty() || id.size() > 200) return "";
  for (char c : id)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return "";
  return id;
}

bool EndsTurn(const Json& ev) {
  if (Str(ev, "type") != "session.status_idle") return false;
  const Json sr = ev.contains("stop_reason") ? ev["stop_reason"] : Json();
  return Str(sr, "type") != "requires_action";
}

bool IdleNeutral(const Json& ev) {
  std::string t = Str(ev, "type");
  return t == "user.tool_confirmation" || t == "session.thread_status_terminated";
}

bool IsToolUse(const std::string& t) { return t == "agent.tool_use" || t == "agent.custom_tool_use"; }

// Sleeps up to `ms`, returning early when `stop` becomes true.
void SleepUnless(int64_t ms, const std::function<bool()>& stop) {
  int64_t end = NowMs() + ms;
  while (NowMs() < end) {
    if (stop && stop()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(50, end - NowMs())));
  }
}

}  // namespace

SessionRunner::SessionRunner(const ApiClient* api, Toolset* tools, SessionRunnerOptions options)
    : api_(api), tools_(tools), opts_(std::move(options)), send_window_ms_(opts_.send_retry_window_ms) {}

void SessionRunner::Stop(bool post_cancelled_result) {
  if (!post_cancelled_result) post_on_stop_.store(false);
  stop_.store(true);
  tool_cancel_.store(true);
}

std::vector<DispatchedCall> SessionRunner::calls() const {
  std::lock_guard<std::mutex> lock(calls_mu_);
  return calls_;
}

void SessionRunner::Record(DispatchedCall c) {
  std::lock_guard<std::mutex> lock(calls_mu_);
  calls_.push_back(std::move(c));
}

bool SessionRunner::ShouldStopIo() {
  if (stop_.load()) return true;
  if (idle_deadline_ms_.has_value() && NowMs() >= *idle_deadline_ms_) {
    log::Info("session idle after its turn ended; stopping",
              {{"session_id", opts_.session_id}, {"max_idle_ms", opts_.max_idle_ms}});
    idle_fired_ = true;
    stop_.store(true);
    return true;
  }
  return false;
}

SessionRunner::End SessionRunner::Run() {
  log::Info("session tool runner starting", {{"session_id", opts_.session_id}});
  int64_t backoff = opts_.reconnect_start_ms;
  auto stopfn = [this] { return ShouldStopIo(); };
  while (!ShouldStopIo()) {
    ApiResult r = api_->StreamEvents(
        opts_.session_id,
        [this] {
          log::Info("event stream open", {{"session_id", opts_.session_id}});
          Reconcile();
        },
        [this, &backoff](const SseEvent& frame) {
          backoff = opts_.reconnect_start_ms;
          return HandleFrame(frame);
        },
        std::chrono::milliseconds(opts_.stream_idle_timeout_ms), stopfn);
    if (terminated_ || ShouldStopIo()) break;
    if (r.fatal()) {
      log::Error("permanent stream failure, shutting down", {{"error", r.Describe()}});
      fatal_ = true;
      fatal_status_.store(r.status);
      break;
    }
    log::Warn("stream disconnected, reconnecting", {{"error", r.Describe()}, {"backoff_ms", backoff}});
    SleepUnless(backoff, stopfn);
    backoff = std::min(backoff * 2, opts_.reconnect_cap_ms);
  }
  if (terminated_) return End::kTerminated;
  if (fatal_) return End::kFatal;
  if (idle_fired_) return End::kIdle;
  return End::kStopped;
}

bool SessionRunner::HandleFrame(const SseEvent& frame) {
  if (reconcile_failed_) return false;  // reconnect: the next open reads the history again
  if (frame.event == "ping") return true;
  if (frame.event == "error") {
    log::Warn("stream error frame", {{"data", frame.data.substr(0, 512)}});
    return false;  // reconnect, like the SDK's APIError
  }
  auto parsed = ParseJson(frame.data);
  if (!parsed.ok() || !parsed->is_object()) return true;
  Json ev = std::move(parsed).value();
  if (!ev.contains("type") && frame.event != "message") ev["type"] = frame.event;
  return HandleEvent(ev);
}

bool SessionRunner::HandleEvent(const Json& ev) {
  NoteIdleEvent(ev);
  const std::string type = Str(ev, "type");
  if (IsToolUse(type)) {
    const std::string id = Str(ev, "id");
    if (!id.empty() && seen_.insert(id).second) Route(ev);
  } else if (type == "user.tool_confirmation") {
    NoteConfirmation(Str(ev, "tool_use_id"), Str(ev, "result"));
  } else if (type == "user.tool_result" || type == "agent.tool_result") {
    // agent.tool_result: a call the service ran itself (web_fetch, web_search).
    answered_.insert(Str(ev, "tool_use_id"));
  } else if (type == "user.custom_tool_result") {
    answered_.insert(Str(ev, "custom_tool_use_id"));
  } else if (type == "session.thread_status_terminated") {
    terminated_threads_.insert(Str(ev, "session_thread_id"));
    ReleaseTerminatedHolds();
  } else if (type == "session.status_terminated" || type == "session.deleted") {
    log::Info("session terminated", {{"session_id", opts_.session_id}});
    terminated_ = true;
    return false;
  }
  return !ShouldStopIo();
}

void SessionRunner::Reconcile() {
  std::vector<Json> pending;
  bool last_ended_turn = false;
  std::string page;
  reconcile_failed_ = false;
  for (;;) {
    ApiResult r = ListPage(page);
    if (!r.ok() || !r.body.is_object() || !r.body.contains("data") || !r.body["data"].is_array()) {
      // A partial history must not dispatch anything: a call whose result
      // lies in the unread part would run twice. The stream is reopened and
      // the history read again, so the calls are not forgotten.
      log::Warn("reconcile list failed", {{"error", r.Describe()}});
      for (const auto& ev : pending) seen_.erase(Str(ev, "id"));
      idle_may_be_stale_ = true;
      reconcile_failed_ = !stop_.load();
      ReleaseTerminatedHolds();
      return;
    }
    for (const auto& ev : r.body["data"]) {
      Ingest(ev, &pending);
      if (!IdleNeutral(ev)) last_ended_turn = EndsTurn(ev);
    }
    const Json& next = r.body.contains("next_page") ? r.body["next_page"] : Json();
    if (!next.is_string() || next.get<std::string>().empty() || r.body["data"].empty()) break;
    page = next.get<std::string>();
  }
  idle_may_be_stale_ = false;
  ReleaseTerminatedHolds();
  std::vector<Json> unanswered;
  for (auto& ev : pending) {
    if (!answered_.count(Str(ev, "id"))) unanswered.push_back(ev);
  }
  Disarm();
  for (const auto& ev : unanswered) {
    if (stop_.load()) return;
    Route(ev);
  }
  std::vector<Json> held;
  for (auto& [id, ev] : held_) held.push_back(ev);
  for (const auto& ev : held) {
    auto v = verdicts_.find(Str(ev, "id"));
    if (v != verdicts_.end()) ApplyVerdict(ev, v->second);
  }
  bool outstanding = false;
  for (const auto& ev : unanswered) {
    const std::string id = Str(ev, "id");
    if (!answered_.count(id) && !InTerminatedThread(ev) && !held_.count(id)) outstanding = true;
  }
  if (last_ended_turn && !outstanding) Arm();
  else Disarm();
}

void SessionRunner::Ingest(const Json& ev, std::vector<Json>* pending) {
  const std::string type = Str(ev, "type");
  if (IsToolUse(type)) {
    const std::string id = Str(ev, "id");
    seen_.insert(id);
    if (!answered_.count(id)) pending->push_back(ev);
  } else if (type == "user.tool_result" || type == "agent.tool_result") {
    // agent.tool_result: a call the service ran itself (web_fetch, web_search).
    answered_.insert(Str(ev, "tool_use_id"));
  } else if (type == "user.custom_tool_result") {
    answered_.insert(Str(ev, "custom_tool_use_id"));
  } else if (type == "user.tool_confirmation") {
    const std::string id = Str(ev, "tool_use_id");
    if (!answered_.count(id)) verdicts_[id] = Str(ev, "result");
  } else if (type == "session.thread_status_terminated") {
    terminated_threads_.insert(Str(ev, "session_thread_id"));
  }
}

bool SessionRunner::InTerminatedThread(const Json& ev) const {
  const std::string t = Str(ev, "session_thread_id");
  return !t.empty() && terminated_threads_.count(t);
}

void SessionRunner::ReleaseTerminatedHolds() {
  for (auto it = held_.begin(); it != held_.end();) {
    if (InTerminatedThread(it->second)) {
      std::string id = it->first;
      it = held_.erase(it);
      if (idle_may_be_stale_) Disarm();
      Unblock(id);
    } else {
      ++it;
    }
  }
}

void SessionRunner::Route(const Json& ev) {
  if (InTerminatedThread(ev)) return;
  const std::string id = Str(ev, "id");
  const bool has_perm = ev.contains("evaluated_permission") && !ev["evaluated_permission"].is_null();
  const std::string perm = has_perm ? (ev["evaluated_permission"].is_string()
                                           ? ev["evaluated_permission"].get<std::string>()
                                           : std::string("?"))
                                    : "";
  std::string verdict;
  if (perm == "deny") {
    verdict = "deny";
  } else if (auto v = verdicts_.find(id); v != verdicts_.end()) {
    verdict = v->second.empty() ? "?" : v->second;
  }
  if (verdict.empty()) {
    if (!has_perm || perm == "allow") {
      Execute(ev, "");
    } else if (!held_.count(id)) {
      // "ask", or a value this runner does not know: wait for the user.
      log::Info("tool call awaiting confirmation; holding", {{"tool_use_id", id}});
      held_[id] = ev;
      Block(id);
    }
    return;
  }
  ApplyVerdict(ev, verdict);
}

void SessionRunner::NoteConfirmation(const std::string& id, const std::string& verdict) {
  verdicts_[id] = verdict.empty() ? "?" : verdict;
  auto it = held_.find(id);
  if (it == held_.end()) return;
  Json ev = it->second;
  ApplyVerdict(ev, verdicts_[id]);
}

void SessionRunner::ApplyVerdict(const Json& ev, const std::string& verdict) {
  const std::string id = Str(ev, "id");
  const bool was_held = held_.erase(id) > 0;
  if (verdict == "allow") {
    if (!was_held) Block(id);
    Execute(ev, "allow");
    Unblock(id);
    return;
  }
  // "deny" or anything else: never run; the denial resolves it server-side.
  if (was_held) Unblock(id);
  answered_.insert(id);
  log::Info("tool call denied; not executing", {{"tool_use_id", id}});
  Record({id, Str(ev, "name"), false, false, "deny"});
}

void SessionRunner::Execute(const Json& ev, const std::string& confirmation) {
  const std::string id = Str(ev, "id");
  const std::string name = Str(ev, "name");
  if (answered_.count(id)) return;
  if (Str(ev, "type") != "agent.tool_use" || !Toolset::Has(name)) {
    // Not ours (a custom tool, or a name we do not serve): post nothing and
    // leave the id pending for its owner.
    log::Info("tool not owned by this runner; leaving it pending", {{"tool", name}, {"tool_use_id", id}});
    if (confirmation == "allow") Disarm();
    Record({id, name, false, false, confirmation});
    return;
  }
  if (stop_.load()) return;
  // The call journal: never run a call that an earlier runner of this
  // session started (see SessionRunnerOptions::call_journal_dir).
  std::string journal;
  if (!opts_.call_journal_dir.empty() && !JournalName(id).empty()) {
    ::mkdir(opts_.call_journal_dir.c_str(), 0700);
    journal = opts_.call_journal_dir + "/" + JournalName(id);
    std::string recorded;
    if (ReadSmallFile(journal + ".result", &recorded, 64u << 20)) {
      auto parsed = ParseJson(recorded);
      if (parsed.ok() && parsed->is_object() && Str(*parsed, "tool_use_id") == id) {
        log::Info("tool call finished under an earlier runner; posting its recorded result", {{"tool_use_id", id}});
        bool posted = SendResult(*parsed, id);
        Record({id, name, parsed->value("is_error", false), posted, confirmation});
        return;
      }
    }
    int fd = ::open((journal + ".started").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
      ::close(fd);
    } else if (errno == EEXIST) {
      log::Warn("tool call started under a runner that died; not running it again", {{"tool", name}, {"tool_use_id", id}});
      const std::string text = "The tool runner stopped unexpectedly while this '" + name +
                               "' call ran, so it may have run partly or completely. It was not run again (a call "
                               "never runs twice); check its effects before retrying it.";
      Json block = Json::object();
      block["type"] = "text";
      block["text"] = text;
      Json event = Json::object();
      event["type"] = "user.tool_result";
      event["tool_use_id"] = id;
      event["is_error"] = true;
      event["content"] = Json::array({block});
      bool posted = SendResult(event, id);
      Record({id, name, true, posted, confirmation});
      return;
    } else {
      log::Warn("call journal unavailable; running without it", {{"tool_use_id", id}, {"errno", errno}});
      journal.clear();
    }
  }
  log::Info("executing tool", {{"tool", name}, {"tool_use_id", id}});
  const int64_t exec_start = NowMs();
  const Json input = ev.contains("input") ? ev["input"] : Json::object();
  int64_t limit = opts_.tool_timeout_ms;
  if (name == "bash" && input.is_object() && input.contains("timeout_ms") && input["timeout_ms"].is_number()) {
    limit = std::max<int64_t>(limit, static_cast<int64_t>(input["timeout_ms"].get<double>()) + 30000);
  }
  tool_cancel_.store(stop_.load());
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  ToolResult result;
  std::thread worker([&] {
    ToolResult r = tools_->Run(name, input, &tool_cancel_);
    std::lock_guard<std::mutex> lock(mu);
    result = std::move(r);
    done = true;
    cv.notify_all();
  });
  bool timed_out = false;
  {
    std::unique_lock<std::mutex> lock(mu);
    const int64_t deadline = NowMs() + limit;
    while (!done) {
      cv.wait_for(lock, std::chrono::milliseconds(50));
      if (done) break;
      if (stop_.load()) tool_cancel_.store(true);
      if (NowMs() >= deadline && !timed_out) {
        timed_out = true;
        tool_cancel_.store(true);
      }
    }
  }
  worker.join();
  if (timed_out) {
    result.is_error = true;
    result.content = Json::array({Json{{"type", "text"}, {"text", "tool '" + name + "' timed out"}}});
  }
  Json event = {{"type", "user.tool_result"},
                {"tool_use_id", id},
                {"is_error", result.is_error},
                {"content", result.content}};
  // Recorded first: whoever serves the session next posts it if we cannot.
  if (!journal.empty() && !WriteFileAtomic(journal + ".result", DumpJson(event)))
    log::Warn("could not record the tool result in the call journal", {{"tool_use_id", id}});
  if (stop_.load() && !post_on_stop_.load()) {
    log::Warn("lease lost while a tool ran; not posting its result", {{"tool_use_id", id}});
    Record({id, name, result.is_error, false, confirmation});
    return;
  }
  const int64_t ran = NowMs();
  bool posted = SendResult(event, id);
  log::Info("tool result posted", {{"tool_use_id", id}, {"ok", posted}, {"exec_ms", ran - exec_start},
                                   {"post_ms", NowMs() - ran}});
  Record({id, name, result.is_error, posted, confirmation});
}

ApiResult SessionRunner::ListPage(const std::string& page, bool interruptible) {
  int64_t backoff = opts_.list_retry_start_ms;
  auto stop = [this, interruptible] { return interruptible && stop_.load(); };
  for (int attempt = 1;; ++attempt) {
    ApiResult r = api_->ListEvents(opts_.session_id, page, stop);
    if (r.ok() || !r.transient() || attempt >= 5 || stop()) return r;
    log::Warn("event list failed; retrying", {{"attempt", attempt}, {"backoff_ms", backoff}, {"error", r.Describe()}});
    SleepUnless(backoff, stop);
    backoff = std::min<int64_t>(backoff * 2, 4000);
  }
}

std::optional<bool> SessionRunner::AnsweredInHistory(const std::string& id) {
  std::string page;
  for (;;) {
    // Not cut short by Stop(): a cancelled result is still posted on a clean
    // shutdown, and it must not be posted twice either.
    ApiResult r = ListPage(page, /*interruptible=*/false);
    if (!r.ok() || !r.body.is_object() || !r.body.contains("data") || !r.body["data"].is_array()) return std::nullopt;
    for (const auto& ev : r.body["data"]) {
      if (Str(ev, "type") == "user.tool_result" && Str(ev, "tool_use_id") == id) return true;
    }
    const Json& next = r.body.contains("next_page") ? r.body["next_page"] : Json();
    if (!next.is_string() || next.get<std::string>().empty() || r.body["data"].empty()) return false;
    page = next.get<std::string>();
  }
}

bool SessionRunner::SendResult(const Json& result, const std::string& id) {
  const int64_t start = NowMs();
  int64_t backoff = 1000;
  // Set once a post got no clean answer: it may have been committed, so the
  // history is read before posting again (one result per call, docs/QUEUE.md).
  bool maybe_recorded = false;
  for (int attempt = 1;; ++attempt) {
    ApiResult r;
    std::optional<bool> recorded = maybe_recorded ? AnsweredInHistory(id) : std::optional<bool>(false);
    if (recorded.value_or(false)) {
      log::Info("tool result already recorded; not posting it again", {{"tool_use_id", id}});
      answered_.insert(id);
      return true;
    }
    if (recorded.has_value()) {
      // While shutting down the result is still sent, but briefly.
      r = api_->SendEvents(opts_.session_id, Json::array({result}), std::chrono::seconds(15), nullptr);
      if (r.ok()) {
        answered_.insert(id);
        return true;
      }
      if (r.status == 409) {
        // The service records one result per call: this one has an answer
        // already (or the session ended). Read the history to tell.
        std::optional<bool> a = AnsweredInHistory(id);
        if (a.value_or(false)) {
          log::Info("tool result already recorded (409); not posting it again", {{"tool_use_id", id}});
          answered_.insert(id);
          return true;
        }
        if (a.has_value()) {
          log::Error("failed to send tool result", {{"tool_use_id", id}, {"error", r.Describe()}});
          return false;
        }
      } else if (r.fatal()) {
        log::Error("failed to send tool result", {{"tool_use_id", id}, {"error", r.Describe()}});
        return false;
      }
      maybe_recorded = true;
    } else {
      r.transport = Status::Unavailable("the history could not be read to check for an earlier result");
    }
    const int64_t window = stop_.load() ? 5000 : send_window_ms_.load();
    const int64_t remaining = window - (NowMs() - start);
    if (remaining <= 0) {
      log::Error("failed to send tool result",
                 {{"tool_use_id", id}, {"attempts", attempt}, {"error", r.Describe()}});
      return false;
    }
    const int64_t wait = std::min(backoff * (100 - (NowMs() % 25)) / 100, remaining);
    log::Warn("tool result send failed; retrying",
              {{"tool_use_id", id}, {"attempt", attempt}, {"backoff_ms", wait}, {"error", r.Describe()}});
    std::this_thread::sleep_for(std::chrono::milliseconds(wait));
    backoff = std::min<int64_t>(backoff * 2, 30000);
  }
}

void SessionRunner::NoteIdleEvent(const Json& ev) {
  const std::string type = Str(ev, "type");
  if (idle_may_be_stale_ && type == "session.thread_status_terminated") Disarm();
  if (IdleNeutral(ev)) return;
  idle_may_be_stale_ = false;
  if (EndsTurn(ev)) Arm();
  else Disarm();
}

void SessionRunner::Arm() {
  if (opts_.max_idle_ms <= 0) return;
  if (!blockers_.empty()) {
    arm_pending_ = true;
    return;
  }
  arm_pending_ = false;
  idle_deadline_ms_ = NowMs() + opts_.max_idle_ms;
}

void SessionRunner::Disarm() {
  arm_pending_ = false;
  idle_deadline_ms_.reset();
}

void SessionRunner::Block(const std::string& id) {
  blockers_.insert(id);
  if (idle_deadline_ms_.has_value()) {
    arm_pending_ = true;
    idle_deadline_ms_.reset();
  }
}

void SessionRunner::Unblock(const std::string& id) {
  blockers_.erase(id);
  if (blockers_.empty() && arm_pending_) Arm();
}

}  // namespace warren::runner
