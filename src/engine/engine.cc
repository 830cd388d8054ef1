#include "engine/engine.h"

#include <variant>

#include "api/agent_config.h"
#include "api/pricing.h"
#include "common/ids.h"
#include "common/log.h"
#include "engine/tool_schemas.h"
#include "events/client_events.h"
#include "events/fields.h"

namespace warren::engine {
namespace {

using models::ContentBlock;
using models::Message;

bool IsClientEvent(const std::string& type) { return type.rfind("user.", 0) == 0 || type == "system.message"; }

// Engine state kept in session["_engine"].
Json DefaultState() {
  return {{"messages", Json::array()},   // canonical Messages (Anthropic shape)
          {"consumed_seq", 0},           // last event seq consumed
          {"phase", "idle"},             // idle | model | tools
          {"pending", Json::array()},    // outstanding tool calls
          {"model_request_start_id", nullptr},
          {"calls_this_turn", 0},
          {"cost_micros", 0}};
}

Json State(const Json& session) {
  Json st = session.contains("_engine") && session["_engine"].is_object() ? session["_engine"] : DefaultState();
  const Json defaults = DefaultState();
  for (auto it = defaults.begin(); it != defaults.end(); ++it)
    if (!st.contains(it.key())) st[it.key()] = it.value();
  return st;
}

// Appends `blocks` as user content, merging into a trailing user message.
void AppendUser(Json* messages, const Json& blocks) {
  if (blocks.empty()) return;
  if (!messages->empty() && messages->back()["role"] == "user") {
    for (const Json& b : blocks) messages->back()["content"].push_back(b);
  } else {
    messages->push_back({{"role", "user"}, {"content", blocks}});
  }
}

// Client content blocks -> model content blocks.
Json ToModelContent(const Json& content) {
  Json out = Json::array();
  if (!content.is_array()) return out;
  for (const Json& b : content) {
    std::string t = b.value("type", "");
    if (t == "text") out.push_back({{"type", "text"}, {"text", b.value("text", "")}});
    else if (t == "image" || t == "document" || t == "search_result") {
      Json c = b;
      c.erase("cache_control");
      out.push_back(c);
    }
    // "redacted" blocks carry nothing for the model.
  }
  return out;
}

Json ToolResultBlock(const std::string& toolu_id, const Json& content, bool is_error) {
  Json c = ToModelContent(content);
  if (c.empty()) c.push_back({{"type", "text"}, {"text", is_error ? "(error)" : "(no output)"}});
  return {{"type", "tool_result"}, {"tool_use_id", toolu_id}, {"content", c}, {"is_error", is_error}};
}

Json TextContent(const std::string& s) { return Json::array({{{"type", "text"}, {"text", s}}}); }

Json Event(const std::string& type, const std::string& now) {
  return {{"id", NewId(idprefix::kEvent)}, {"type", type}, {"processed_at", now}};
}

Json IdleEvent(const std::string& now, const Json& stop_reason) {
  Json e = Event("session.status_idle", now);
  e["stop_reason"] = stop_reason;
  return e;
}

// True if the session has a budget and its list cost has reached it.
bool BudgetReached(const Json& session, const Json& state) {
  if (!session.contains("budget") || session["budget"].is_null()) return false;
  int64_t max = 0;
  if (!api::ParseMonetaryAmount(session["budget"]["max_list_cost"], &max)) return false;
  return state.value("cost_micros", int64_t{0}) >= max;
}

Json Unresolved(const Json& pending) {
  Json ids = Json::array();
  for (const Json& p : pending)
    if (p["result"].is_null()) ids.push_back(p["event_id"]);
  return ids;
}

// Adds `u` (Anthropic usage) into the session's usage object.
void AddUsage(Json* usage, const models::ModelUsage& u) {
  (*usage)["input_tokens"] = usage->value("input_tokens", int64_t{0}) + u.input_tokens;
  (*usage)["output_tokens"] = usage->value("output_tokens", int64_t{0}) + u.output_tokens;
  (*usage)["cache_read_input_tokens"] = usage->value("cache_read_input_tokens", int64_t{0}) + u.cache_read_input_tokens;
  Json& cc = (*usage)["cache_creation"];
  if (!cc.is_object()) cc = {{"ephemeral_5m_input_tokens", 0}, {"ephemeral_1h_input_tokens", 0}};
  cc["ephemeral_5m_input_tokens"] = cc.value("ephemeral_5m_input_tokens", int64_t{0}) + u.cache_creation_input_tokens;
}

// Streams previews (event_start / event_delta) of agent.message and
// agent.thinking to subscribers that asked for them. Block ids chosen here
// are reused for the persisted events.
class PreviewObserver final : public models::ModelStreamObserver {
 public:
  PreviewObserver(api::EventBus* bus, std::string session_id) : bus_(bus), sid_(std::move(session_id)) {}

  void OnAttemptStart(int attempt) override {
    ids_.clear();
    last_text_index_ = -2;
    if (on_attempt) on_attempt(attempt);
  }
  void OnTextStart(int index) override {
    // Consecutive text blocks form one agent.message.
    if (last_text_index_ == index - 1 && ids_.count(index - 1)) {
      ids_[index] = ids_[index - 1];
    } else {
      ids_[index] = NewId(idprefix::kEvent);
      bus_->PublishPreview(sid_, "agent.message",
                           {{"type", "event_start"}, {"event", {{"type", "agent.message"}, {"id", ids_[index]}}}});
    }
    last_text_index_ = index;
  }
  void OnTextDelta(int index, std::string_view text) override {
    auto it = ids_.find(index);
    if (it == ids_.end()) return;
    bus_->PublishPreview(sid_, "agent.message",
                         {{"type", "event_delta"},
                          {"event_id", it->second},
                          {"delta", {{"type", "content_delta"}, {"index", 0}, {"content", {{"type", "text"}, {"text", text}}}}}});
  }
  void OnThinkingStart(int index) override {
    ids_[index] = NewId(idprefix::kEvent);
    bus_->PublishPreview(sid_, "agent.thinking",
                         {{"type", "event_start"}, {"event", {{"type", "agent.thinking"}, {"id", ids_[index]}}}});
  }
  void OnRetry(const models::ModelError& error, int next_attempt, int64_t delay_ms) override {
    if (on_retry) on_retry(error, next_attempt, delay_ms);
  }

  // Id chosen for block `index`, or a fresh one.
  std::string IdFor(int index) {
    auto it = ids_.find(index);
    return it != ids_.end() ? it->second : NewId(idprefix::kEvent);
  }

  std::function<void(int)> on_attempt;
  std::function<void(const models::ModelError&, int, int64_t)> on_retry;

 private:
  api::EventBus* bus_;
  std::string sid_;
  std::map<int, std::string> ids_;
  int last_text_index_ = -2;
};

}  // namespace

Engine::Engine(store::Store* store, api::EventBus* bus, models::ModelProvider* provider, Clock* clock,
               EngineOptions options)
    : store_(store), bus_(bus), provider_(provider), clock_(clock), options_(options) {}

Engine::~Engine() { Stop(); }

Status Engine::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
    for (int i = 0; i < std::max(1, options_.threads); i++) threads_.emplace_back([this] { WorkerLoop(); });
  }
  WARREN_ASSIGN_OR_RETURN(auto ids, store_->SessionsNeedingEngine());
  for (const auto& id : ids) Schedule(id);
  if (!ids.empty()) log::Info("engine.recovered", {{"sessions", ids.size()}});
  return Status::Ok();
}

void Engine::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [sid, token] : inflight_) token->Cancel();
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

void Engine::WaitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return queue_.empty() && running_.empty(); });
}

void Engine::Schedule(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_.count(id)) {
      dirty_.insert(id);
      return;
    }
    if (!queued_.insert(id).second) return;
    queue_.push_back(id);
  }
  cv_.notify_all();
}

void Engine::OnSessionCreated(const Json& session) {}

void Engine::OnClientEvents(const Json& session, const std::vector<store::StoredEvent>& events) {
  const std::string id = session["id"].get<std::string>();
  for (const auto& e : events) {
    if (events::TypeOf(e.body) == "user.interrupt") {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = inflight_.find(id); it != inflight_.end()) it->second->Cancel();
    }
  }
  Schedule(id);
}

void Engine::OnSessionDeleted(const std::string& session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = inflight_.find(session_id); it != inflight_.end()) it->second->Cancel();
}

void Engine::WorkerLoop() {
  for (;;) {
    std::string id;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      id = queue_.front();
      queue_.pop_front();
      queued_.erase(id);
      running_.insert(id);
    }
    for (;;) {
      Process(id);
      std::lock_guard<std::mutex> lock(mu_);
      if (dirty_.erase(id) && !stopping_) continue;
      running_.erase(id);
      break;
    }
    cv_.notify_all();
  }
}

Status Engine::Step(const std::string& id, const store::Store::StepMutator& mutate) {
  auto r = store_->StepSession(id, mutate, [this, &id](const std::vector<store::StoredEvent>& evs) {
    bus_->Publish(id, evs);
  });
  return r.status();
}

void Engine::Process(const std::string& id) {
  for (int guard = 0; guard < 10000; guard++) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    auto due = ConsumeClientEvents(id);
    if (!due.ok()) {
      if (due.status().code() != Code::kNotFound)
        log::Error("engine.consume_failed", {{"session", id}, {"error", due.status().ToString()}});
      return;
    }
    if (!*due) return;
    auto more = ModelTurn(id);
    if (!more.ok()) {
      if (more.status().code() != Code::kNotFound)
        log::Error("engine.model_turn_failed", {{"session", id}, {"error", more.status().ToString()}});
      return;
    }
    if (!*more) {
      // Events may have arrived during the call; loop to consume them.
      continue;
    }
  }
}

Result<bool> Engine::ConsumeClientEvents(const std::string& id) {
  WARREN_ASSIGN_OR_RETURN(Json session, store_->GetSession(id));
  Json st = State(session);
  // Unprocessed client events after the cursor, paging past any number of
  // the engine's own events.
  std::vector<store::StoredEvent> client;
  int64_t last_seq = st["consumed_seq"].get<int64_t>();
  for (;;) {
    constexpr int kPage = 1000;
    WARREN_ASSIGN_OR_RETURN(auto events, store_->EventsAfter(id, last_seq, kPage));
    for (auto& e : events) {
      last_seq = e.seq;
      if (IsClientEvent(events::TypeOf(e.body)) && e.body.value("processed_at", Json()).is_null())
        client.push_back(e);
    }
    if (events.size() < static_cast<size_t>(kPage) || client.size() >= static_cast<size_t>(kPage)) break;
  }
  std::string phase = st["phase"].get<std::string>();
  bool orphan_model = phase == "model";
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_here_.count(id)) orphan_model = false;
  }
  if (client.empty() && !orphan_model) {
    if (last_seq - st["consumed_seq"].get<int64_t>() > 1000) {
      // Only our own events since: move the cursor so the next look is short.
      WARREN_RETURN_IF_ERROR(Step(id, [&](const Json& cur, store::Store::SessionStep*) -> Result<Json> {
        Json next = cur;
        Json s = State(cur);
        s["consumed_seq"] = std::max(s["consumed_seq"].get<int64_t>(), last_seq);
        next["_engine"] = s;
        return next;
      }));
    }
    return phase == "model";
  }

  bool due = false;
  std::vector<std::string> work_sessions;
  std::string now = Now();
  Status step = Step(id, [&](const Json& cur, store::Store::SessionStep* out) -> Result<Json> {
    // The store may run this more than once (store.h contract 4): outputs
    // captured by reference are reset, never accumulated.
    work_sessions.clear();
    due = false;
    Json next = cur;
    Json s = State(cur);
    Json& messages = s["messages"];
    Json& pending = s["pending"];
    bool need_model = s["phase"] == "model";
    bool interrupted = false;
    if (orphan_model) {
      // A model call was cut off (crash): close its span; it is made again.
      Json end = Event("span.model_request_end", now);
      end["model_request_start_id"] = s["model_request_start_id"];
      end["is_error"] = true;
      end["model_usage"] = models::ModelUsage().ToJson();
      out->append.push_back(end);
    }
    Json unresolved_before = Unresolved(pending);
    for (const auto& e : client) {
      Json done = e.body;
      done["processed_at"] = now;
      out->replace.push_back(done);
      // The same schema as the API's validation (src/events): a stored
      // event that does not parse (written before a fix, or by hand) is
      // marked processed and skipped, never read with throwing accessors.
      auto parsed = events::ParseClientEvent(e.body, "event", events::Origin::kStored);
      if (!parsed.ok()) {
        log::Error("engine.bad_client_event", {{"session", id}, {"seq", e.seq}, {"error", parsed.status().ToString()}});
        continue;
      }
      const std::string type(events::TypeName(*parsed));
      auto find_pending = [&](const std::string& event_id) -> Json* {
        for (Json& p : pending)
          if (p["event_id"] == event_id) return &p;
        return nullptr;
      };
      if (type == "user.message") {
        AppendUser(&messages, ToModelContent(std::get<events::UserMessage>(*parsed).content));
        need_model = true;
        interrupted = false;
      } else if (type == "system.message") {
        Json blocks = Json::array();
        for (const Json& b : std::get<events::SystemMessage>(*parsed).content)
          blocks.push_back({{"type", "text"}, {"text", "[system message] " + b.value("text", "")}});
        AppendUser(&messages, blocks);
        need_model = true;
      } else if (type == "user.interrupt") {
        for (Json& p : pending)
          if (p["result"].is_null()) p["result"] = {{"content", TextContent("Interrupted by the user.")}, {"is_error", true}};
        need_model = false;
        interrupted = true;
      } else if (type == "user.tool_confirmation") {
        const auto& c = std::get<events::ToolConfirmation>(*parsed);
        Json* p = find_pending(c.tool_use_id);
        if (!p || !(*p)["result"].is_null()) continue;
        (*p)["confirmed"] = c.allow ? "allow" : "deny";
        if (!c.allow) {
          std::string msg = c.deny_message.value_or("The user denied permission to use this tool.");
          (*p)["result"] = {{"content", TextContent(msg)}, {"is_error", true}};
        } else if ((*p)["kind"] == "builtin") {
          work_sessions.push_back(id);
        }
      } else if (type == "user.tool_result" || type == "user.custom_tool_result") {
        const auto* tr = std::get_if<events::ToolResult>(&*parsed);
        const auto* cr = std::get_if<events::CustomToolResult>(&*parsed);
        std::string ref = tr ? tr->tool_use_id : cr->custom_tool_use_id;
        Json* p = find_pending(ref);
        if (!p || !(*p)["result"].is_null()) continue;  // late or duplicate answer: recorded, ignored
        if ((*p)["permission"] == "ask" && (*p)["confirmed"] != "allow" && type == "user.tool_result") {
          // Fail closed: a result for an unconfirmed gated call is not used.
          continue;
        }
        (*p)["result"] = {{"content", tr ? tr->content : cr->content}, {"is_error", tr ? tr->is_error : cr->is_error}};
      }
    }
    Json unresolved = Unresolved(pending);
    std::string status = cur["status"].get<std::string>();
    if (!pending.empty() && unresolved.empty()) {
      // Every call answered: the tool results go back to the model.
      Json results = Json::array();
      for (const Json& p : pending)
        results.push_back(ToolResultBlock(p["toolu_id"], p["result"]["content"], p["result"]["is_error"].get<bool>()));
      // Tool results must lead the user turn that follows the tool_use turn.
      Json tail = Json::array();
      if (!messages.empty() && messages.back()["role"] == "user") {
        tail = messages.back()["content"];
        messages.erase(messages.end() - 1);
      }
      for (const Json& b : tail) results.push_back(b);
      AppendUser(&messages, results);
      pending = Json::array();
      need_model = !interrupted;
    } else if (!unresolved.empty()) {
      need_model = false;
      if (unresolved != unresolved_before) {
        out->append.push_back(IdleEvent(now, {{"type", "requires_action"}, {"event_ids", unresolved}}));
      }
    }
    if (interrupted && !need_model) {
      s["phase"] = "idle";
      if (status != "idle" || orphan_model) {
        next["status"] = "idle";
        out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
      } else if (unresolved.empty()) {
        out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
      }
    }
    if (need_model && BudgetReached(cur, s)) {
      need_model = false;
      s["phase"] = "idle";
      next["status"] = "idle";
      out->append.push_back(IdleEvent(now, {{"type", "budget_reached"}}));
    }
    if (need_model) {
      if (status != "running") {
        next["status"] = "running";
        out->append.push_back(Event("session.status_running", now));
      }
      Json start = Event("span.model_request_start", now);
      s["model_request_start_id"] = start["id"];
      out->append.push_back(start);
      s["phase"] = "model";
      s["calls_this_turn"] = 0;
    } else if (s["phase"] == "model") {
      s["phase"] = "idle";
    }
    s["consumed_seq"] = std::max(s["consumed_seq"].get<int64_t>(), last_seq);
    next["_engine"] = s;
    next["updated_at"] = now;
    due = need_model;
    return next;
  });
  WARREN_RETURN_IF_ERROR(step);
  if (due) {
    std::lock_guard<std::mutex> lock(mu_);
    started_here_.insert(id);
  }
  if (!work_sessions.empty() && work_needed_) work_needed_(id);
  return due;
}

Result<bool> Engine::ModelTurn(const std::string& id) {
  WARREN_ASSIGN_OR_RETURN(Json session, store_->GetSession(id));
  Json st = State(session);
  if (st["phase"] != "model") return false;
  const Json& agent = session["agent"];
  models::ModelRequest req;
  req.model = agent["model"].value("id", "");
  if (agent["system"].is_string()) req.system.push_back(ContentBlock::Text(agent["system"].get<std::string>()));
  req.tools = ToolsForAgent(agent["tools"]);
  req.max_tokens = options_.max_tokens;
  // Extended thinking follows the agent's `effort` (spec 1.1: model config);
  // thinking blocks come back as agent.thinking.
  if (agent["model"].contains("effort")) {
    const Json& e = agent["model"]["effort"];
    std::string effort = e.is_string() ? e.get<std::string>() : e.value("type", "");
    static const std::map<std::string, int64_t> kBudget = {{"medium", 4096}, {"high", 8192}, {"xhigh", 16384}, {"max", 32000}};
    if (auto it = kBudget.find(effort); it != kBudget.end()) {
      req.thinking.enabled = true;
      req.thinking.budget_tokens = it->second;
      req.max_tokens = std::max<int64_t>(req.max_tokens, it->second + 4096);
    }
  }
  for (const Json& m : st["messages"]) {
    auto msg = models::MessageFromJson(m);
    if (!msg.ok()) return msg.status().WithContext("engine state of " + id);
    req.messages.push_back(std::move(msg).value());
  }
  if (req.messages.empty()) {
    // Nothing to send (e.g. only redacted content): settle idle.
    std::string now = Now();
    WARREN_RETURN_IF_ERROR(Step(id, [&](const Json& cur, store::Store::SessionStep* out) -> Result<Json> {
      Json next = cur;
      Json s = State(cur);
      s["phase"] = "idle";
      next["_engine"] = s;
      next["status"] = "idle";
      Json end = Event("span.model_request_end", now);
      end["model_request_start_id"] = s["model_request_start_id"];
      end["is_error"] = false;
      end["model_usage"] = models::ModelUsage().ToJson();
      out->append.push_back(end);
      out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
      return next;
    }));
    return false;
  }
  WARREN_RETURN_IF_ERROR(Compact(id, session, &req));

  auto token = std::make_shared<CancelToken>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    inflight_[id] = token;
  }
  PreviewObserver observer(bus_, id);
  observer.on_retry = [&](const models::ModelError& err, int next_attempt, int64_t delay_ms) {
    std::string now = Now();
    (void)Step(id, [&](const Json& cur, store::Store::SessionStep* out) -> Result<Json> {
      Json next = cur;
      Json e = Event("session.error", now);
      e["error"] = {{"type", err.SessionErrorType()}, {"message", err.message}, {"retry_status", {{"type", "retrying"}}}};
      out->append.push_back(e);
      out->append.push_back(Event("session.status_rescheduled", now));
      next["status"] = "rescheduling";
      return next;
    });
  };
  observer.on_attempt = [&](int attempt) {
    if (attempt <= 1) return;
    std::string now = Now();
    (void)Step(id, [&](const Json& cur, store::Store::SessionStep* out) -> Result<Json> {
      Json next = cur;
      if (cur["status"] != "running") {
        next["status"] = "running";
        out->append.push_back(Event("session.status_running", now));
      }
      return next;
    });
  };
  models::CallOptions call_opts;
  call_opts.cancel = token.get();
  models::ModelResult result = provider_->Call(req, &observer, call_opts);
  {
    std::lock_guard<std::mutex> lock(mu_);
    inflight_.erase(id);
    started_here_.erase(id);
    // Cancelled by shutdown: record nothing. The phase stays "model", so the
    // next start closes the span and makes the call again.
    if (stopping_ && !result.ok() && result.error().kind == models::ModelErrorKind::kCancelled) return false;
  }

  std::string now = Now();
  const std::string env_id = session["environment_id"].get<std::string>();
  auto env = store_->GetEnvironment(env_id);
  const bool self_hosted = env.ok() && (*env)["config"]["type"] == "self_hosted";
  bool again = false;
  bool need_worker = false;
  Status step = Step(id, [&](const Json& cur, store::Store::SessionStep* out) -> Result<Json> {
    again = false;  // may run more than once (store.h contract 4)
    need_worker = false;
    Json next = cur;
    Json s = State(cur);
    if (s["phase"] != "model") return cur;  // settled meanwhile (interrupt)
    Json end = Event("span.model_request_end", now);
    end["model_request_start_id"] = s["model_request_start_id"];
    if (!result.ok()) {
      const models::ModelError& err = result.error();
      end["is_error"] = true;
      end["model_usage"] = models::ModelUsage().ToJson();
      out->append.push_back(end);
      s["phase"] = "idle";
      next["status"] = "idle";
      if (err.kind == models::ModelErrorKind::kCancelled) {
        // An interrupt: consuming the user.interrupt next settles the
        // session with one status_idle.
      } else {
        Json e = Event("session.error", now);
        e["error"] = {{"type", err.SessionErrorType()},
                      {"message", err.message},
                      {"retry_status", {{"type", err.retryable ? "exhausted" : "terminal"}}}};
        out->append.push_back(e);
        out->append.push_back(IdleEvent(now, {{"type", "retries_exhausted"}}));
      }
      next["_engine"] = s;
      next["updated_at"] = now;
      return next;
    }
    const models::ModelResponse& resp = result.response();
    const Json& tools = cur["agent"]["tools"];
    Json assistant = Json::array();
    Json text_run = Json::array();
    std::string text_id;
    auto flush_text = [&] {
      if (text_run.empty()) return;
      Json m = Event("agent.message", now);
      m["id"] = text_id;
      m["content"] = text_run;
      out->append.push_back(m);
      text_run = Json::array();
    };
    Json pending = Json::array();
    for (size_t i = 0; i < resp.content.size(); i++) {
      const ContentBlock& b = resp.content[i];
      assistant.push_back(models::BlockToJson(b));
      if (b.type == models::BlockType::kText) {
        if (text_run.empty()) text_id = observer.IdFor(static_cast<int>(i));
        text_run.push_back({{"type", "text"}, {"text", b.text}});
        continue;
      }
      flush_text();
      if (b.type == models::BlockType::kThinking || b.type == models::BlockType::kRedactedThinking) {
        Json t = Event("agent.thinking", now);
        t["id"] = observer.IdFor(static_cast<int>(i));
        out->append.push_back(t);
      } else if (b.type == models::BlockType::kToolUse) {
        bool builtin = std::find(std::begin(api::kBuiltinTools), std::end(api::kBuiltinTools), b.name) != std::end(api::kBuiltinTools);
        bool custom = false;
        for (const Json& t : tools)
          if (t.value("type", "") == "custom" && t.value("name", "") == b.name) custom = true;
        if (builtin) {
          auto policy = api::BuiltinToolPolicy(tools, b.name);
          Json e = Event("agent.tool_use", now);
          e["name"] = b.name;
          e["input"] = b.input;
          Json p = {{"event_id", e["id"]}, {"toolu_id", b.id}, {"kind", "builtin"}, {"name", b.name},
                    {"confirmed", nullptr}, {"result", nullptr}};
          if (!policy) {
            e["evaluated_permission"] = "deny";
            p["permission"] = "deny";
            p["result"] = {{"content", TextContent("Tool '" + b.name + "' is not enabled for this agent.")}, {"is_error", true}};
          } else {
            std::string perm = *policy == "always_ask" ? "ask" : "allow";
            e["evaluated_permission"] = perm;
            p["permission"] = perm;
          }
          out->append.push_back(e);
          if (p["result"].is_null() && !self_hosted) {
            // Warren runs no sandbox for cloud environments yet: answer now.
            Json r = Event("agent.tool_result", now);
            r["tool_use_id"] = e["id"];
            r["is_error"] = true;
            r["content"] = TextContent("No sandbox is attached to environment " + env_id +
                                       ": Warren executes built-in tools only through self_hosted workers.");
            out->append.push_back(r);
            p["result"] = {{"content", r["content"]}, {"is_error", true}};
          }
          if (p["result"].is_null()) need_worker = true;
          pending.push_back(p);
        } else if (custom) {
          Json e = Event("agent.custom_tool_use", now);
          e["name"] = b.name;
          e["input"] = b.input;
          out->append.push_back(e);
          pending.push_back({{"event_id", e["id"]}, {"toolu_id", b.id}, {"kind", "custom"}, {"name", b.name},
                             {"permission", "allow"}, {"confirmed", nullptr}, {"result", nullptr}});
        } else {
          // A tool the agent does not have: tell the model.
          pending.push_back({{"event_id", ""}, {"toolu_id", b.id}, {"kind", "unknown"}, {"name", b.name},
                             {"permission", "deny"}, {"confirmed", nullptr},
                             {"result", {{"content", TextContent("Unknown tool '" + b.name + "'.")}, {"is_error", true}}}});
        }
      }
    }
    flush_text();
    end["is_error"] = false;
    end["model_usage"] = resp.usage.ToJson();
    out->append.push_back(end);
    AddUsage(&next["usage"], resp.usage);
    if (auto price = api::PriceFor(cur["agent"]["model"].value("id", ""))) {
      s["cost_micros"] = s.value("cost_micros", int64_t{0}) +
                         api::CostMicros(*price, resp.usage.input_tokens, resp.usage.output_tokens,
                                         resp.usage.cache_read_input_tokens, resp.usage.cache_creation_input_tokens);
      next["usage"]["list_cost"] = api::MonetaryAmount(s["cost_micros"].get<int64_t>());
    }
    Json usage_ev = Event("session.usage", now);
    usage_ev["usage"] = next["usage"];
    if (!cur["budget"].is_null()) usage_ev["budget"] = cur["budget"];
    out->append.push_back(usage_ev);
    s["messages"].push_back({{"role", "assistant"}, {"content", assistant}});
    s["calls_this_turn"] = s["calls_this_turn"].get<int>() + 1;
    Json unresolved = Unresolved(pending);
    if (pending.empty()) {
      s["phase"] = "idle";
      next["status"] = "idle";
      out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
    } else if (unresolved.empty()) {
      Json results = Json::array();
      for (const Json& p : pending)
        results.push_back(ToolResultBlock(p["toolu_id"], p["result"]["content"], p["result"]["is_error"].get<bool>()));
      s["messages"].push_back({{"role", "user"}, {"content", results}});
      if (BudgetReached(cur, s)) {
        s["phase"] = "idle";
        next["status"] = "idle";
        out->append.push_back(IdleEvent(now, {{"type", "budget_reached"}}));
      } else if (s["calls_this_turn"].get<int>() >= options_.max_model_calls_per_turn) {
        s["phase"] = "idle";
        next["status"] = "idle";
        Json e = Event("session.error", now);
        e["error"] = {{"type", "unknown_error"},
                      {"message", "the model made " + std::to_string(options_.max_model_calls_per_turn) +
                                      " calls in one turn without a client answer"},
                      {"retry_status", {{"type", "terminal"}}}};
        out->append.push_back(e);
        out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
      } else {
        Json start = Event("span.model_request_start", now);
        s["model_request_start_id"] = start["id"];
        out->append.push_back(start);
        again = true;
      }
    } else {
      s["phase"] = "tools";
      s["pending"] = pending;
      next["status"] = "idle";
      out->append.push_back(IdleEvent(now, {{"type", "requires_action"}, {"event_ids", unresolved}}));
    }
    next["_engine"] = s;
    next["updated_at"] = now;
    return next;
  });
  WARREN_RETURN_IF_ERROR(step);
  if (again) {
    std::lock_guard<std::mutex> lock(mu_);
    started_here_.insert(id);
  }
  if (need_worker && work_needed_) work_needed_(id);
  return again;
}

Status Engine::Compact(const std::string& id, const Json& session, models::ModelRequest* req) {
  int64_t window = provider_->context_window(req->model);
  int64_t tokens = models::EstimateTokens(*req);
  if (tokens <= static_cast<int64_t>(options_.compaction_threshold * static_cast<double>(window))) return Status::Ok();
  // Split at a user message that is not a tool result: the earliest such
  // boundary whose verbatim tail fits in half the window (so the next turns
  // do not compact again at once), else the last one.
  const auto& msgs = req->messages;
  if (msgs.size() < 3) return Status::Ok();
  std::vector<int64_t> tail_tokens(msgs.size() + 1, 0);
  for (size_t i = msgs.size(); i-- > 0;)
    tail_tokens[i] = tail_tokens[i + 1] + models::EstimateTokens(DumpJson(models::MessageToJson(msgs[i])));
  size_t split = 0, last_boundary = 0;
  for (size_t i = 1; i < msgs.size(); i++) {
    const Message& m = msgs[i];
    bool tool_result = !m.content.empty() && m.content.front().type == models::BlockType::kToolResult;
    if (m.role != models::Role::kUser || tool_result) continue;
    last_boundary = i;
    if (split == 0 && tail_tokens[i] <= window / 2) split = i;
  }
  if (split == 0) split = last_boundary;
  if (split == 0) return Status::Ok();
  models::ModelRequest sum;
  sum.model = req->model;
  sum.max_tokens = 2048;
  sum.system.push_back(ContentBlock::Text(
      "You compress agent transcripts. Summarise the conversation so far so that the agent can continue the task: "
      "the goal, decisions taken, files and commands that matter, results, and open questions. Be factual and concise."));
  sum.messages.assign(msgs.begin(), msgs.begin() + static_cast<long>(split));
  // The summary request must end with a user turn.
  models::Message ask = Message::User("Summarise the conversation above for your own later use.");
  if (sum.messages.back().role == models::Role::kUser) {
    sum.messages.back().content.push_back(ContentBlock::Text("Summarise the conversation above for your own later use."));
  } else {
    sum.messages.push_back(ask);
  }
  models::ModelResult r = provider_->Call(sum, nullptr, {});
  if (!r.ok()) {
    log::Warn("engine.compaction_failed", {{"session", id}, {"error", r.error().ToString()}});
    return Status::Ok();  // carry on uncompacted; the model call may still fit
  }
  std::string summary = r.response().Text();
  std::vector<Message> compacted;
  Message head = Message::User("Summary of the earlier conversation (older turns were compacted):\n" + summary);
  compacted.push_back(head);
  for (size_t i = split; i < msgs.size(); i++) {
    if (i == split && msgs[i].role == models::Role::kUser) {
      for (const auto& b : msgs[i].content) compacted.front().content.push_back(b);
      continue;
    }
    compacted.push_back(msgs[i]);
  }
  std::string now = Now();
  Json stored = Json::array();
  for (const auto& m : compacted) stored.push_back(models::MessageToJson(m));
  WARREN_RETURN_IF_ERROR(Step(id, [&](const Json& cur, store::Store::SessionStep* out) -> Result<Json> {
    Json next = cur;
    Json s = State(cur);
    s["messages"] = stored;
    next["_engine"] = s;
    Json e = Event("agent.thread_context_compacted", now);
    e["pre_compaction_tokens"] = tokens;
    out->append.push_back(e);
    AddUsage(&next["usage"], r.response().usage);
    return next;
  }));
  req->messages = std::move(compacted);
  return Status::Ok();
}

}  // namespace warren::engine
