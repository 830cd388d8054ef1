#include "engine/engine.h"

#include <algorithm>
#include <optional>
#include <atomic>
#include <variant>

#include "common/ids.h"
#include "common/log.h"
#include "domain/pricing.h"
#include "domain/tool_policy.h"
#include "engine/json_read.h"
#include "engine/tool_schemas.h"
#include "events/client_events.h"
#include "events/fields.h"

namespace warren::engine {
namespace {

using models::ContentBlock;
using models::Message;

bool IsClientEvent(const std::string& type) { return type.rfind("user.", 0) == 0 || type == "system.message"; }

// Client content blocks -> model content blocks.
Json ToModelContent(const Json& content) {
  Json out = Json::array();
  if (!content.is_array()) return out;
  for (const Json& b : content) {
    std::string t = jr::Str(b, "type");
    if (t == "text") {
      if (jr::Get(b, "text").is_string()) out.push_back({{"type", "text"}, {"text", jr::Str(b, "text")}});
    } else if (t == "image" || t == "document" || t == "search_result") {
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

// The first bytes of `s`, at most `max`, cut at a UTF-8 character boundary.
std::string Utf8Head(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) n--;
  return s.substr(0, n);
}

// The tool_result block of an answered pending call.
Json ResultBlockOf(const PendingCall& p) {
  return p.result ? ToolResultBlock(p.toolu_id, p.result->content, p.result->is_error)
                  : ToolResultBlock(p.toolu_id, Json::array(), true);
}

Json Event(const std::string& type, const std::string& now) {
  return {{"id", NewId(idprefix::kEvent)}, {"type", type}, {"processed_at", now}};
}

Json McpErrorEvent(const std::string& now, const domain::McpServerFailure& f) {
  Json e = Event("session.error", now);
  e["error"] = {{"type", f.error_type},
                {"message", f.message},
                {"mcp_server_name", f.server},
                {"retry_status", {{"type", "terminal"}}}};
  return e;
}

Json IdleEvent(const std::string& now, const Json& stop_reason) {
  Json e = Event("session.status_idle", now);
  e["stop_reason"] = stop_reason;
  return e;
}

Json SpanEnd(const std::string& now, const EngineState& st, bool is_error, const models::ModelUsage& usage) {
  Json end = Event("span.model_request_end", now);
  end["model_request_start_id"] = st.model_request_start_id.empty() ? Json() : Json(st.model_request_start_id);
  end["is_error"] = is_error;
  end["model_usage"] = usage.ToJson();
  return end;
}

// True if the session has a budget and its list cost has reached it.
bool BudgetReached(const Json& session, const EngineState& st) {
  const Json& budget = jr::Get(session, "budget");
  if (!budget.is_object()) return false;
  int64_t max = 0;
  if (!domain::ParseMonetaryAmount(jr::Get(budget, "max_list_cost"), &max)) return false;
  return st.cost_micros >= max;
}

// Adds `u` (Anthropic usage) into the session's usage object.
void AddUsage(Json* usage, const models::ModelUsage& u) {
  if (!usage->is_object()) *usage = Json::object();
  (*usage)["input_tokens"] = jr::Int(*usage, "input_tokens", 0) + u.input_tokens;
  (*usage)["output_tokens"] = jr::Int(*usage, "output_tokens", 0) + u.output_tokens;
  (*usage)["cache_read_input_tokens"] = jr::Int(*usage, "cache_read_input_tokens", 0) + u.cache_read_input_tokens;
  Json& cc = (*usage)["cache_creation"];
  if (!cc.is_object()) cc = {{"ephemeral_5m_input_tokens", 0}, {"ephemeral_1h_input_tokens", 0}};
  cc["ephemeral_5m_input_tokens"] = jr::Int(cc, "ephemeral_5m_input_tokens", 0) + u.cache_creation_input_tokens;
}

// Prices `u` for the session's model into st->cost_micros and the session's
// usage.list_cost (models without a list price cost nothing).
void AddCost(const Json& session, const models::ModelUsage& u, EngineState* st, Json* next) {
  auto price = domain::PriceFor(jr::Str(jr::Get(jr::Get(session, "agent"), "model"), "id"));
  if (!price) return;
  st->cost_micros += domain::CostMicros(*price, u.input_tokens, u.output_tokens, u.cache_read_input_tokens,
                                        u.cache_creation_input_tokens);
  (*next)["usage"]["list_cost"] = domain::MonetaryAmount(st->cost_micros);
}

// Appends one transcript row (a message of `role`) in the step.
void AppendRow(EngineState* st, store::Store::SessionStep* out, const char* role, Json content) {
  if (!content.is_array() || content.empty()) return;
  out->transcript.push_back({st->transcript_next++, role, std::move(content)});
}

// Opens the span of the next model call in the step.
void OpenModelSpan(EngineState* st, store::Store::SessionStep* out, const std::string& now) {
  Json start = Event("span.model_request_start", now);
  st->model_request_start_id = start["id"].get<std::string>();
  out->append.push_back(std::move(start));
}

// Every pending call has its result (built-in, MCP or server-run): the
// results go back to the model as the next user row. The turn ends instead
// (idle, with the reason) when the budget is spent, or when the model has
// made `max_calls` calls in this turn (a model looping on tool calls).
// Returns true if a model call is due; the caller opens its span.
bool ReturnResultsToModel(const Json& session, EngineState* st, Json* next, store::Store::SessionStep* out,
                          const std::string& now, int max_calls) {
  Json results = Json::array();
  for (const PendingCall& p : st->pending) results.push_back(ResultBlockOf(p));
  AppendRow(st, out, "user", std::move(results));
  st->pending.clear();
  if (BudgetReached(session, *st)) {
    st->phase = Phase::kIdle;
    (*next)["status"] = "idle";
    out->append.push_back(IdleEvent(now, {{"type", "budget_reached"}}));
    return false;
  }
  if (st->calls_this_turn >= max_calls) {
    st->phase = Phase::kIdle;
    (*next)["status"] = "idle";
    Json e = Event("session.error", now);
    e["error"] = {{"type", "unknown_error"},
                  {"message", "the model made " + std::to_string(max_calls) + " calls in one turn without a client answer"},
                  {"retry_status", {{"type", "terminal"}}}};
    out->append.push_back(e);
    out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
    return false;
  }
  return true;
}

// The engine state kept in session["_engine"] by binaries before store migration 5
// of the store, read with checked accessors.
struct LegacyState {
  EngineState state;
  std::vector<store::TranscriptEntry> rows;
};
std::optional<LegacyState> ReadLegacyState(const Json& session) {
  const Json& raw = jr::Get(session, "_engine");
  if (!raw.is_object()) return std::nullopt;
  LegacyState l;
  l.state.phase = ParsePhase(jr::Str(raw, "phase", "idle"));
  l.state.consumed_seq = jr::Int(raw, "consumed_seq", 0);
  l.state.model_request_start_id = jr::Str(raw, "model_request_start_id");
  l.state.calls_this_turn = jr::Int(raw, "calls_this_turn", 0);
  l.state.cost_micros = jr::Int(raw, "cost_micros", 0);
  for (const Json& p : jr::Arr(raw, "pending"))
    if (p.is_object()) l.state.pending.push_back(PendingCall::FromJson(p));
  for (const Json& m : jr::Arr(raw, "messages")) {
    std::string role = jr::Str(m, "role");
    if (role != "user" && role != "assistant") continue;
    const Json& content = jr::Get(m, "content");
    Json blocks = content.is_string() ? TextContent(content.get<std::string>()) : jr::AsArr(content);
    if (blocks.empty()) continue;
    l.rows.push_back({l.state.transcript_next++, role, blocks});
  }
  return l;
}

// Streams previews (event_start / event_delta) of agent.message and
// agent.thinking to subscribers that asked for them. Block ids chosen here
// are reused for the persisted events.
class PreviewObserver final : public models::ModelStreamObserver {
 public:
  PreviewObserver(domain::EventSink* bus, std::string session_id) : bus_(bus), sid_(std::move(session_id)) {}

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
  domain::EventSink* bus_;
  std::string sid_;
  std::map<int, std::string> ids_;
  int last_text_index_ = -2;
};

}  // namespace

struct Engine::InflightCall {
  std::shared_ptr<CancelToken> token;
  std::string environment_id;
  // Called on the provider's thread while the call streams; read by the
  // worker that records the answer (after the completion, under mu_).
  std::unique_ptr<PreviewObserver> observer;
  std::optional<models::ModelResult> result;
  // The MCP tools offered to this call, by their exposed name: its
  // tool_use blocks are matched against them when the answer is recorded.
  std::map<std::string, domain::McpToolDef> mcp_defs;
  // Set when this is a compaction's summary call (RecordCompaction records
  // it); the turn's own call follows once it is applied.
  std::shared_ptr<const CompactionPlan> compaction;
};

struct Engine::CompactionPlan {
  models::ModelRequest request;  // the summary call
  int64_t tokens = 0;            // the prompt's estimate before compaction
  int64_t old_base = 0;          // transcript base the plan was made at
  int64_t new_base = 0;          // first transcript row kept verbatim
  size_t split = 0;              // index in the request's messages of that row
};

struct Engine::ToolJob {
  enum class Kind { kListing, kServer, kMcp };
  Kind kind = Kind::kMcp;
  std::string session_id;
  Json session;  // as read when the job started (agent, vault_ids)
  std::shared_ptr<CancelToken> token;
  // The job's units: one per call (kServer, kMcp) or per MCP server
  // (kListing), each run as a ToolPool job under its key (the MCP server's
  // URL, or the web tool's name), so a peer that hangs holds only its
  // share of the pool. Each unit writes only its own slots below; the
  // worker that records the job reads them after its completion.
  std::vector<std::string> keys;
  // kServer, kMcp: the calls and their inputs.
  std::vector<PendingCall> calls;
  std::vector<Json> inputs;
  // kServer / kMcp: each call's result, when it ended before any interrupt.
  std::vector<std::optional<domain::ServerToolResult>> server_results;
  std::vector<std::optional<domain::McpCallOutcome>> mcp_outcomes;
  // kServer, kMcp: the unit recorded its result itself as it ended (one
  // store transaction, durable at once: a stop or a crash later does not
  // make the call again). RecordToolJob records the rest.
  std::vector<char> recorded;
  // kListing: the session as seen with each server alone (the units'
  // argument to McpTools::ListTools), and each server's listing.
  std::vector<Json> views;
  std::vector<domain::McpListing> listings;
  // kListing: the span of the model call it is for.
  std::string span_id;
  // The units run in `chains` chains (the job's bound on calls at once): a
  // chain takes the next unit, submits it, and takes another when it ends;
  // the last chain to end completes the job (OnToolDone). `swept`: the job
  // was cancelled and its queued units dropped (CancelToolJob): no chain
  // submits another.
  std::mutex mu;
  size_t next = 0;
  bool swept = false;
  std::vector<ToolPool::JobId> tickets;
  std::atomic<size_t> chains{0};
};

// ---- the in-memory transcript of one session

void Engine::Conversation::Reset(const EngineState& st) {
  base = st.transcript_base;
  next = st.transcript_base;
  summary = st.summary;
  messages.clear();
  first_idx.clear();
  approx_tokens = 0;
  if (!summary.empty()) {
    messages.push_back(Message::User(summary));
    first_idx.push_back(base);
    approx_tokens += models::EstimateTokens(summary);
  }
}

Status Engine::Conversation::Add(const store::TranscriptEntry& row) {
  Message m;
  m.role = row.role == "assistant" ? models::Role::kAssistant : models::Role::kUser;
  for (const Json& b : jr::AsArr(row.content)) {
    auto block = models::BlockFromJson(b);
    if (!block.ok()) return block.status().WithContext("transcript row " + std::to_string(row.idx));
    m.content.push_back(std::move(block).value());
  }
  next = row.idx + 1;
  if (m.content.empty()) return Status::Ok();
  // Each row counted as a message of its own: at least its share of the
  // prompt's estimate (merged rows share one wrapper).
  approx_tokens += models::EstimateTokens(DumpJson(row.content)) + 8;
  if (!messages.empty() && messages.back().role == m.role) {
    // Consecutive rows of one role form one message; in a user message the
    // tool results lead (they must follow the tool_use turn at once).
    auto& blocks = messages.back().content;
    for (auto& b : m.content) blocks.push_back(std::move(b));
    if (m.role == models::Role::kUser)
      std::stable_partition(blocks.begin(), blocks.end(),
                            [](const ContentBlock& b) { return b.type == models::BlockType::kToolResult; });
    return Status::Ok();
  }
  messages.push_back(std::move(m));
  first_idx.push_back(row.idx);
  return Status::Ok();
}

Engine::Engine(store::Store* store, domain::EventSink* bus, models::ModelProvider* provider, Clock* clock,
               EngineOptions options)
    : store_(store), bus_(bus), provider_(provider), clock_(clock), options_(options),
      tool_pool_(options.tool_threads, options.tool_threads_per_key) {}

Engine::~Engine() { Stop(); }

Status Engine::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
    tool_pool_.Start();
    for (int i = 0; i < std::max(1, options_.threads); i++) threads_.emplace_back([this] { WorkerLoop(); });
  }
  WARREN_ASSIGN_OR_RETURN(auto ids, store_->SessionsNeedingEngine());
  for (const auto& id : ids) Schedule(id);
  if (!ids.empty()) log::Info("engine.recovered", {{"sessions", ids.size()}});
  return Status::Ok();
}

void Engine::Stop() {
  std::vector<std::thread> threads;
  auto cancel_all = [this] {
    std::vector<std::shared_ptr<CancelToken>> tokens;
    std::vector<std::shared_ptr<ToolJob>> jobs;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [sid, token] : inflight_) tokens.push_back(token);
      for (auto& [sid, job] : tool_jobs_) jobs.push_back(job);
    }
    for (auto& t : tokens) t->Cancel();  // outside mu_ (see OnClientEvents)
    for (auto& j : jobs) CancelToolJob(j);  // drops queued units: may complete the job
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    threads.swap(threads_);
  }
  cancel_all();
  cv_.notify_all();
  for (auto& t : threads) t.join();
  // Calls started by a worker after the first pass are cancelled now; their
  // completions must not outlive the engine.
  cancel_all();
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return calls_outstanding_ == 0; });
  }
  tool_pool_.Stop();  // every job has completed: only idle threads to join
  std::lock_guard<std::mutex> lock(mu_);
  completed_.clear();
  tool_done_.clear();
  tool_jobs_.clear();
  listings_.clear();
  notices_.clear();
  skip_compaction_.clear();
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
  const std::string id = jr::Str(session, "id");
  if (id.empty()) return;
  for (const auto& e : events) {
    if (jr::Str(e.body, "type") == "user.interrupt") {
      // Cancelled outside mu_: a provider may complete from the token's
      // waker, and a tool job whose queued units are dropped completes here.
      std::shared_ptr<CancelToken> token;
      std::shared_ptr<ToolJob> job;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (auto it = inflight_.find(id); it != inflight_.end()) token = it->second;
        if (auto it = tool_jobs_.find(id); it != tool_jobs_.end()) job = it->second;
      }
      if (token) token->Cancel();
      if (job) CancelToolJob(job);
    }
  }
  Schedule(id);
}

void Engine::OnSessionDeleted(const std::string& session_id) {
  std::shared_ptr<CancelToken> token;
  std::shared_ptr<ToolJob> job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = inflight_.find(session_id); it != inflight_.end()) token = it->second;
    if (auto it = tool_jobs_.find(session_id); it != tool_jobs_.end()) job = it->second;
    conversations_.erase(session_id);
    listings_.erase(session_id);
  }
  if (token) token->Cancel();
  if (job) CancelToolJob(job);
  if (mcp_ != nullptr) mcp_->ForgetSession(session_id);
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
      // Nothing thrown while processing one session reaches the thread's
      // top: the session is marked failed and every other one goes on.
      std::string failure;
      bool awaiting = false;
      try {
        awaiting = Process(id);
      } catch (const std::exception& e) {
        failure = std::string("exception: ") + e.what();
      } catch (...) {
        failure = "non-standard exception";
      }
      if (!failure.empty()) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          inflight_.erase(id);
          started_here_.erase(id);
          conversations_.erase(id);
        }
        try {
          FailSession(id, failure);
        } catch (...) {
          log::Error("engine.session_fail_unrecorded", {{"session", id}, {"error", failure}});
        }
      }
      std::lock_guard<std::mutex> lock(mu_);
      // A model call in flight: the session stays in running_ (events that
      // arrive mark it dirty) and its completion queues it again.
      if (awaiting && failure.empty()) break;
      if (dirty_.erase(id) && !stopping_) continue;
      running_.erase(id);
      break;
    }
    cv_.notify_all();
  }
}

Status Engine::Transition(const std::string& id, std::string_view name, const TransitionFn& fn) {
  // No exception crosses into the store: a transition that throws aborts
  // its transaction with an Internal error instead.
  auto mutate = [&](const Json& cur, store::Store::SessionStep* out) -> Result<Json> {
    try {
      EngineState st;
      Json next = cur;
      if (out->engine_in) {
        st = EngineState::FromRecord(*out->engine_in);
      } else if (auto legacy = ReadLegacyState(cur)) {
        // A session last stepped by a binary that kept the conversation in
        // the session body: its state and messages move to their tables in
        // this same transaction.
        st = legacy->state;
        for (auto& row : legacy->rows) out->transcript.push_back(std::move(row));
      }
      next.erase("_engine");
      WARREN_RETURN_IF_ERROR(fn(cur, &st, &next, out));
      out->engine = st.ToRecord();
      return next;
    } catch (const std::exception& e) {
      return Status::Internal(std::string("engine step threw: ") + e.what());
    } catch (...) {
      return Status::Internal("engine step threw a non-standard exception");
    }
  };
  auto r = store_->StepSession(id, mutate, [this, &id](const std::vector<store::StoredEvent>& evs) {
    try {
      bus_->Publish(id, evs);
    } catch (const std::exception& e) {
      log::Error("engine.publish_failed", {{"session", id}, {"error", e.what()}});
    }
  });
  if (!r.ok() && r.status().code() != Code::kNotFound) return r.status().WithContext(std::string(name));
  return r.status();
}

Result<EngineState> Engine::LoadState(const std::string& id, const Json& session) {
  WARREN_ASSIGN_OR_RETURN(auto rec, store_->GetEngineState(id));
  if (rec) return EngineState::FromRecord(*rec);
  if (auto legacy = ReadLegacyState(session)) return legacy->state;
  return EngineState();
}

Status Engine::LoadConversation(const std::string& id, const Json& session, const EngineState& st,
                                std::shared_ptr<Conversation>* out) {
  std::shared_ptr<Conversation> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = conversations_.find(id);
    if (it != conversations_.end()) c = it->second;
  }
  if (!c || c->base != st.transcript_base || c->summary != st.summary || c->next > st.transcript_next) {
    c = std::make_shared<Conversation>();
    c->Reset(st);
    auto rec = store_->GetEngineState(id);
    if (rec.ok() && !*rec) {
      // Not migrated yet: the rows are still in the session body.
      if (auto legacy = ReadLegacyState(session))
        for (const auto& row : legacy->rows) WARREN_RETURN_IF_ERROR(c->Add(row));
    }
  }
  // Only the rows appended since the last look are read: the cost of a step
  // does not grow with the transcript.
  while (c->next < st.transcript_next) {
    WARREN_ASSIGN_OR_RETURN(auto rows, store_->ReadTranscript(id, c->next, 1000));
    if (rows.empty()) break;
    for (const auto& row : rows) {
      if (row.idx >= st.transcript_next) break;
      WARREN_RETURN_IF_ERROR(c->Add(row));
    }
    if (rows.size() < 1000) break;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (conversations_.size() >= static_cast<size_t>(std::max(1, options_.cached_conversations)) &&
        !conversations_.count(id)) {
      // Forget a session that is not being processed (reloaded on demand).
      for (auto it = conversations_.begin(); it != conversations_.end(); ++it)
        if (!running_.count(it->first)) {
          conversations_.erase(it);
          break;
        }
    }
    conversations_[id] = c;
  }
  *out = std::move(c);
  return Status::Ok();
}

void Engine::FailSession(const std::string& id, const std::string& what) {
  log::Error("engine.session_failed", {{"session", id}, {"error", what}});
  {
    std::lock_guard<std::mutex> lock(mu_);
    conversations_.erase(id);
  }
  // The client events not yet processed are the ones that may have caused
  // the failure: they are marked processed so that no restart meets them
  // again, and named in the error.
  std::vector<Json> unprocessed;
  auto session = store_->GetSession(id);
  if (!session.ok()) return;
  auto loaded = LoadState(id, *session);
  int64_t after = loaded.ok() ? loaded->consumed_seq : 0;
  for (int pages = 0; pages < 100; pages++) {
    auto events = store_->EventsAfter(id, after, 1000);
    if (!events.ok()) break;
    for (const auto& e : *events) {
      after = e.seq;
      if (IsClientEvent(jr::Str(e.body, "type")) && jr::Get(e.body, "processed_at").is_null())
        unprocessed.push_back(e.body);
    }
    if (events->size() < 1000) break;
  }
  const int64_t consumed = after;
  std::string now = Now();
  Status st = Transition(id, "fail", [&](const Json& cur, EngineState* s, Json* next, store::Store::SessionStep* out) {
    std::string dropped;
    for (const Json& body : unprocessed) {
      Json done = body;
      done["processed_at"] = now;
      out->replace.push_back(done);
      dropped += (dropped.empty() ? "" : ", ") + jr::Str(body, "id");
    }
    if (s->phase == Phase::kModel) out->append.push_back(SpanEnd(now, *s, true, {}));
    Json e = Event("session.error", now);
    std::string message = "the engine could not process this session: " + what;
    if (!dropped.empty()) message += " (events not used: " + dropped + ")";
    e["error"] = {{"type", "unknown_error"}, {"message", message}, {"retry_status", {{"type", "terminal"}}}};
    out->append.push_back(e);
    // Calls still waiting for an answer keep waiting: a later valid answer
    // resumes the turn.
    Json unresolved = s->Unresolved();
    s->phase = unresolved.empty() ? Phase::kIdle : Phase::kTools;
    if (unresolved.empty()) s->pending.clear();
    s->consumed_seq = std::max(s->consumed_seq, consumed);
    (*next)["status"] = "idle";
    (*next)["updated_at"] = now;
    out->append.push_back(unresolved.empty()
                              ? IdleEvent(now, {{"type", "retries_exhausted"}})
                              : IdleEvent(now, {{"type", "requires_action"}, {"event_ids", unresolved}}));
    return Status::Ok();
  });
  if (!st.ok() && st.code() != Code::kNotFound)
    log::Error("engine.session_fail_unrecorded", {{"session", id}, {"error", st.ToString()}});
}

bool Engine::Process(const std::string& id) {
  // Retry notices of this session's call, then its answer if it has arrived
  // (notices are posted before the completion, so one snapshot sees all of
  // them); while the call is still in flight nothing else may run.
  std::shared_ptr<InflightCall> answered;
  std::shared_ptr<ToolJob> tools_done;
  std::vector<std::function<void()>> notices;
  bool in_flight = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = notices_.find(id); it != notices_.end()) {
      notices = std::move(it->second);
      notices_.erase(it);
    }
    if (auto it = completed_.find(id); it != completed_.end()) {
      answered = std::move(it->second);
      completed_.erase(it);
    }
    if (auto it = tool_done_.find(id); it != tool_done_.end()) {
      tools_done = std::move(it->second);
      tool_done_.erase(it);
    }
    in_flight = awaiting_.count(id) > 0;
  }
  for (auto& notice : notices) notice();
  if (in_flight) return true;
  if (answered) {
    auto recorded = answered->compaction ? RecordCompaction(id, *answered) : RecordAnswer(id, *answered);
    if (!recorded.ok()) {
      if (recorded.status().code() != Code::kNotFound) FailSession(id, recorded.status().ToString());
      return false;
    }
  }
  if (tools_done) {
    Status recorded = RecordToolJob(id, *tools_done);
    if (!recorded.ok()) {
      if (recorded.code() != Code::kNotFound) FailSession(id, recorded.ToString());
      return false;
    }
  }
  for (int guard = 0; guard < 10000; guard++) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return false;
    }
    auto due = ConsumeClientEvents(id);
    if (!due.ok()) {
      if (due.status().code() != Code::kNotFound) FailSession(id, due.status().ToString());
      return false;
    }
    const bool model_due = *due;
    // Calls the service makes itself run as a job on the tool pool: the
    // session awaits its completion (this worker moves on), which brings
    // it back here to record the results. Server-run calls (web_fetch,
    // web_search) first, then MCP calls, then the MCP listing of a due
    // model call.
    auto started = [&](Result<bool> r) {
      if (!r.ok()) {
        if (r.status().code() != Code::kNotFound) FailSession(id, r.status().ToString());
        return std::optional<bool>(false);
      }
      return *r ? std::optional<bool>(true) : std::nullopt;
    };
    if (!model_due && server_tools_ != nullptr)
      if (auto r = started(StartServerCalls(id))) return *r;
    if (!model_due && mcp_ != nullptr)
      if (auto r = started(StartMcpCalls(id))) return *r;
    if (!model_due) return false;
    if (mcp_ != nullptr)
      if (auto r = started(StartListing(id))) return *r;
    auto step = ModelTurn(id);
    if (!step.ok()) {
      if (step.status().code() != Code::kNotFound) FailSession(id, step.status().ToString());
      return false;
    }
    if (*step == Step::kAwaiting) return true;
    // Events may have arrived during the call; loop to consume them.
  }
  return false;
}

Result<bool> Engine::ConsumeClientEvents(const std::string& id) {
  WARREN_ASSIGN_OR_RETURN(Json session, store_->GetSession(id));
  WARREN_ASSIGN_OR_RETURN(EngineState loaded, LoadState(id, session));
  // Unprocessed client events after the cursor, paging past any number of
  // the engine's own events.
  std::vector<store::StoredEvent> client;
  const int64_t consumed = loaded.consumed_seq;
  int64_t last_seq = consumed;
  for (;;) {
    constexpr int kPage = 1000;
    WARREN_ASSIGN_OR_RETURN(auto events, store_->EventsAfter(id, last_seq, kPage));
    for (auto& e : events) {
      last_seq = e.seq;
      if (IsClientEvent(jr::Str(e.body, "type")) && jr::Get(e.body, "processed_at").is_null())
        client.push_back(e);
    }
    if (events.size() < static_cast<size_t>(kPage) || client.size() >= static_cast<size_t>(kPage)) break;
  }
  bool orphan_model = loaded.phase == Phase::kModel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_here_.count(id)) orphan_model = false;
  }
  if (client.empty() && !orphan_model) {
    if (last_seq - consumed > 1000) {
      // Only our own events since: move the cursor so the next look is short.
      WARREN_RETURN_IF_ERROR(Transition(id, "advance_cursor", [&](const Json&, EngineState* s, Json*, store::Store::SessionStep*) {
        s->consumed_seq = std::max(s->consumed_seq, last_seq);
        return Status::Ok();
      }));
    }
    return loaded.phase == Phase::kModel;
  }

  bool due = false;
  bool need_worker = false;
  std::string now = Now();
  Status step = Transition(id, "consume", [&](const Json& cur, EngineState* s, Json* next, store::Store::SessionStep* out) {
    // A mutator may run more than once (store retries): outputs start afresh.
    due = false;
    need_worker = false;
    bool need_model = s->phase == Phase::kModel;
    bool interrupted = false;
    // A model call cut off by a crash: close its span; it is made again.
    if (orphan_model && s->phase == Phase::kModel) out->append.push_back(SpanEnd(now, *s, true, {}));
    // A span this process opened for a call not yet started (e.g. by the
    // transition that recorded the last tool result): an interrupt closes it.
    const bool span_open = !orphan_model && s->phase == Phase::kModel;
    Json unresolved_before = s->Unresolved();
    for (const auto& e : client) {
      Json done = e.body;
      done["processed_at"] = now;
      out->replace.push_back(done);
      // The same schema as the API's validation (src/events): a stored
      // event that does not parse (written before a fix, or by hand) is
      // marked processed and skipped, never read with throwing accessors.
      auto find_pending = [&](const std::string& event_id) -> PendingCall* {
        for (PendingCall& p : s->pending)
          if (p.event_id == event_id) return &p;
        return nullptr;
      };
      auto parsed = events::ParseClientEvent(e.body, "event", events::Origin::kStored);
      if (!parsed.ok()) {
        log::Error("engine.bad_client_event", {{"session", id}, {"seq", e.seq}, {"error", parsed.status().ToString()}});
        // An unreadable answer to a waiting call still answers it (the store
        // takes one answer per call): as an error the model sees, so the
        // turn goes on instead of waiting forever.
        const std::string raw_type = jr::Str(e.body, "type");
        const std::string ref = raw_type == "user.tool_result"          ? jr::Str(e.body, "tool_use_id")
                                : raw_type == "user.custom_tool_result" ? jr::Str(e.body, "custom_tool_use_id")
                                                                        : "";
        PendingCall* p = ref.empty() ? nullptr : find_pending(ref);
        if (p && !p->result && !(p->permission == "ask" && p->confirmed != "allow" && raw_type == "user.tool_result"))
          p->result = ToolOutcome{TextContent("The tool result could not be read: " + parsed.status().message()), true};
        continue;
      }
      const std::string type(events::TypeName(*parsed));
      if (type == "user.message") {
        AppendRow(s, out, "user", ToModelContent(std::get<events::UserMessage>(*parsed).content));
        need_model = true;
        interrupted = false;
      } else if (type == "system.message") {
        Json blocks = Json::array();
        for (const Json& b : std::get<events::SystemMessage>(*parsed).content)
          blocks.push_back({{"type", "text"}, {"text", "[system message] " + jr::Str(b, "text")}});
        AppendRow(s, out, "user", std::move(blocks));
        need_model = true;
      } else if (type == "user.interrupt") {
        for (PendingCall& p : s->pending)
          if (!p.result) p.result = ToolOutcome{TextContent("Interrupted by the user."), true};
        need_model = false;
        interrupted = true;
      } else if (type == "user.tool_confirmation") {
        const auto& c = std::get<events::ToolConfirmation>(*parsed);
        PendingCall* p = find_pending(c.tool_use_id);
        if (!p || p->result) continue;
        p->confirmed = c.allow ? "allow" : "deny";
        if (!c.allow) {
          p->result = ToolOutcome{TextContent(c.deny_message.value_or("The user denied permission to use this tool.")), true};
        } else if (p->kind == "builtin") {
          need_worker = true;
        }  // an allowed "server" call is run by StartServerCalls after this step
      } else if (type == "user.tool_result" || type == "user.custom_tool_result") {
        const auto* tr = std::get_if<events::ToolResult>(&*parsed);
        const auto* cr = std::get_if<events::CustomToolResult>(&*parsed);
        std::string ref = tr ? tr->tool_use_id : cr->custom_tool_use_id;
        PendingCall* p = find_pending(ref);
        if (!p || p->result) continue;  // late or duplicate answer: recorded, ignored
        // The service answers the calls it runs (web_fetch, web_search): a
        // client's result for one is recorded and ignored, so a worker cannot
        // put forged web content in front of the model.
        if (p->kind == "server") continue;
        if (p->permission == "ask" && p->confirmed != "allow" && type == "user.tool_result") {
          // Fail closed: a result for an unconfirmed gated call is not used.
          continue;
        }
        // A null or absent is_error is false (the schema's reading).
        p->result = ToolOutcome{tr ? tr->content : cr->content, tr ? tr->is_error : cr->is_error};
      }
    }
    Json unresolved = s->Unresolved();
    std::string status = jr::Str(cur, "status");
    const bool server_due = s->ServerCallsDue();
    if (server_due && unresolved.empty() && !interrupted && status != "running") {
      // An approved server-run call: the session works again.
      (*next)["status"] = "running";
      out->append.push_back(Event("session.status_running", now));
    }
    if (!s->pending.empty() && unresolved.empty() && !server_due) {
      // Every call answered: the tool results go back to the model (they
      // lead the user turn when the conversation is read).
      Json results = Json::array();
      for (const PendingCall& p : s->pending) results.push_back(ResultBlockOf(p));
      AppendRow(s, out, "user", std::move(results));
      s->pending.clear();
      need_model = !interrupted;
    } else if (!unresolved.empty()) {
      need_model = false;
      Json waiting = s->AwaitingClient();
      if (unresolved != unresolved_before && !waiting.empty()) {
        out->append.push_back(IdleEvent(now, {{"type", "requires_action"}, {"event_ids", waiting}}));
      }
    }
    if (interrupted && !need_model) {
      if (span_open) out->append.push_back(SpanEnd(now, *s, true, {}));
      s->phase = Phase::kIdle;
      if (status != "idle" || orphan_model) {
        (*next)["status"] = "idle";
        out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
      } else if (unresolved.empty()) {
        out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
      }
    }
    if (need_model && BudgetReached(cur, *s)) {
      need_model = false;
      s->phase = Phase::kIdle;
      (*next)["status"] = "idle";
      out->append.push_back(IdleEvent(now, {{"type", "budget_reached"}}));
    }
    if (need_model) {
      if (status != "running") {
        (*next)["status"] = "running";
        out->append.push_back(Event("session.status_running", now));
      }
      OpenModelSpan(s, out, now);
      s->phase = Phase::kModel;
      s->calls_this_turn = 0;
    } else if (s->phase == Phase::kModel) {
      s->phase = Phase::kIdle;
    } else if (!unresolved.empty()) {
      s->phase = Phase::kTools;
    }
    s->consumed_seq = std::max(s->consumed_seq, last_seq);
    (*next)["updated_at"] = now;
    due = need_model;
    return Status::Ok();
  });
  WARREN_RETURN_IF_ERROR(step);
  if (due) {
    std::lock_guard<std::mutex> lock(mu_);
    started_here_.insert(id);
  }
  if (need_worker && work_needed_) work_needed_(id);
  return due;
}

Result<Engine::Step> Engine::ModelTurn(const std::string& id) {
  WARREN_ASSIGN_OR_RETURN(Json session, store_->GetSession(id));
  WARREN_ASSIGN_OR_RETURN(EngineState st, LoadState(id, session));
  if (st.phase != Phase::kModel) return Step::kDone;
  const Json& agent = jr::Obj(session, "agent");
  const Json& model = jr::Get(agent, "model");
  models::ModelRequest req;
  req.model = jr::Str(model, "id");
  if (jr::Get(agent, "system").is_string()) req.system.push_back(ContentBlock::Text(jr::Str(agent, "system")));
  req.tools = ToolsForAgent(jr::Get(agent, "tools"), server_tools_);
  std::map<std::string, domain::McpToolDef> mcp_defs;  // filled below, once the call is cancellable
  req.max_tokens = options_.max_tokens;
  // Extended thinking follows the agent's `effort` (spec 1.1: model config);
  // thinking blocks come back as agent.thinking.
  if (const Json& e = jr::Get(model, "effort"); !e.is_null()) {
    std::string effort = e.is_string() ? e.get<std::string>() : jr::Str(e, "type");
    static const std::map<std::string, int64_t> kBudget = {{"medium", 4096}, {"high", 8192}, {"xhigh", 16384}, {"max", 32000}};
    if (auto it = kBudget.find(effort); it != kBudget.end()) {
      req.thinking.enabled = true;
      req.thinking.budget_tokens = it->second;
      req.max_tokens = std::max<int64_t>(req.max_tokens, it->second + 4096);
    }
  }
  std::shared_ptr<Conversation> conv;
  WARREN_RETURN_IF_ERROR(LoadConversation(id, session, st, &conv).WithContext("transcript of " + id));
  req.messages = conv->messages;
  if (req.messages.empty()) {
    // Nothing to send (e.g. only redacted content): settle idle.
    std::string now = Now();
    WARREN_RETURN_IF_ERROR(Transition(id, "settle_empty", [&](const Json&, EngineState* s, Json* next, store::Store::SessionStep* out) {
      if (s->phase != Phase::kModel) return Status::Ok();
      s->phase = Phase::kIdle;
      (*next)["status"] = "idle";
      out->append.push_back(SpanEnd(now, *s, false, {}));
      out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
      return Status::Ok();
    }));
    return Step::kDone;
  }
  // The token covers compaction and the call: an interrupt cancels either.
  auto token = std::make_shared<CancelToken>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Step::kDone;
    inflight_[id] = token;
  }
  auto forget_call = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    inflight_.erase(id);
    started_here_.erase(id);
  };
  // MCP tools (docs/MCP.md): listed for this call by a tool job before it
  // (StartListing; cached by the gateway, an interrupt cancels it); a
  // server that fails is reported once and its tools are left out.
  if (mcp_ != nullptr && !jr::Arr(agent, "mcp_servers").empty()) {
    std::optional<domain::McpListing> stashed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = listings_.find(id); it != listings_.end()) {
        if (it->second.first == st.model_request_start_id) stashed = std::move(it->second.second);
        listings_.erase(it);
      }
    }
    // Without a listing for this span (not expected: Process lists first),
    // the gateway is asked here.
    domain::McpListing listing = stashed ? std::move(*stashed) : mcp_->ListTools(session, token.get());
    for (auto& t : listing.tools) {
      models::ToolDefinition d;
      d.name = t.exposed_name;
      d.description = t.description;
      if (t.input_schema.is_object()) d.input_schema = t.input_schema;
      req.tools.push_back(std::move(d));
      mcp_defs[t.exposed_name] = std::move(t);
    }
    if (!listing.failures.empty()) {
      std::string now = Now();
      Status st = Transition(id, "mcp_failed", [&](const Json&, EngineState*, Json*, store::Store::SessionStep* out) {
        for (const auto& f : listing.failures) out->append.push_back(McpErrorEvent(now, f));
        return Status::Ok();
      });
      if (!st.ok()) {
        forget_call();
        return st;
      }
    }
  }
  // Compaction. Pinned: on this thread, before the call. Async: the summary
  // call is made like a turn's call (no engine thread held) and recorded by
  // RecordCompaction; the turn's call follows in the next ModelTurn, which
  // does not compact again at the base it left.
  Status compacted = Status::Ok();
  bool skip_compaction = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = skip_compaction_.find(id); it != skip_compaction_.end()) {
      skip_compaction = it->second == conv->base;
      skip_compaction_.erase(it);
    }
  }
  if (options_.pin_model_calls) {
    bool compaction_spent_budget = false;
    compacted = Compact(id, *conv, &req, token.get(), &compaction_spent_budget);
    if (!compacted.ok() && compacted.code() != Code::kCancelled) {
      forget_call();
      return compacted;
    }
    if (compacted.ok() && compaction_spent_budget) {
      forget_call();
      WARREN_RETURN_IF_ERROR(SettleBudgetAfterCompaction(id));
      return Step::kDone;
    }
  } else if (!skip_compaction) {
    if (std::optional<CompactionPlan> plan = PlanCompaction(*conv, req)) {
      auto call = std::make_shared<InflightCall>();
      call->token = token;
      call->environment_id = jr::Str(session, "environment_id");
      call->observer = std::make_unique<PreviewObserver>(bus_, id);
      call->compaction = std::make_shared<const CompactionPlan>(std::move(*plan));
      if (!mcp_defs.empty()) {
        // The turn's call comes back here after the summary: it takes this
        // listing again (its failures, if any, are already recorded).
        domain::McpListing again;
        for (const auto& [name, def] : mcp_defs) again.tools.push_back(def);
        std::lock_guard<std::mutex> lock(mu_);
        listings_[id] = {st.model_request_start_id, std::move(again)};
      }
      models::CallOptions opts;
      opts.cancel = token.get();
      return StartCall(id, call, call->compaction->request, nullptr, opts);
    }
  }
  auto call = std::make_shared<InflightCall>();
  call->token = token;
  call->environment_id = jr::Str(session, "environment_id");
  call->mcp_defs = std::move(mcp_defs);
  call->observer = std::make_unique<PreviewObserver>(bus_, id);
  PreviewObserver& observer = *call->observer;
  // The provider tells of retries on its event-loop (or timer) thread,
  // between attempts. Each notice is one transaction of its own, run by an
  // engine worker before the answer is recorded (Process), so no store write
  // ever stalls the loop that carries every other session's stream. In
  // pinned mode the waiting worker owns the session: the notice runs inline.
  observer.on_retry = [this, id](const models::ModelError& err, int next_attempt, int64_t delay_ms) {
    std::string type(err.SessionErrorType());
    std::string message = err.message;
    PostNotice(id, [this, id, type, message] {
      std::string now = Now();
      (void)Transition(id, "retrying", [&](const Json&, EngineState* s, Json* next, store::Store::SessionStep* out) {
        if (s->phase != Phase::kModel) return Status::Ok();
        Json e = Event("session.error", now);
        e["error"] = {{"type", type}, {"message", message}, {"retry_status", {{"type", "retrying"}}}};
        out->append.push_back(e);
        out->append.push_back(Event("session.status_rescheduled", now));
        (*next)["status"] = "rescheduling";
        return Status::Ok();
      });
    });
  };
  observer.on_attempt = [this, id](int attempt) {
    if (attempt <= 1) return;
    PostNotice(id, [this, id] {
      std::string now = Now();
      (void)Transition(id, "resume_running", [&](const Json& cur, EngineState* s, Json* next, store::Store::SessionStep* out) {
        if (s->phase != Phase::kModel) return Status::Ok();
        if (jr::Str(cur, "status") != "running") {
          (*next)["status"] = "running";
          out->append.push_back(Event("session.status_running", now));
        }
        return Status::Ok();
      });
    });
  };
  if (compacted.code() == Code::kCancelled) {
    // Interrupted during compaction: recorded as a cancelled call.
    models::ModelError e;
    e.kind = models::ModelErrorKind::kCancelled;
    e.message = "compaction cancelled";
    call->result = models::ModelResult(std::move(e));
    return RecordAnswer(id, *call);
  }
  models::CallOptions call_opts;
  call_opts.cancel = token.get();
  if (options_.pin_model_calls) {
    // The pre-async mode (a benchmark peer): this thread waits for the answer.
    call->result = provider_->Call(req, &observer, call_opts);
    return RecordAnswer(id, *call);
  }
  return StartCall(id, call, std::move(req), &observer, call_opts);
}

Engine::Step Engine::StartCall(const std::string& id, std::shared_ptr<InflightCall> call, models::ModelRequest req,
                               models::ModelStreamObserver* observer, models::CallOptions opts) {
  // The call holds no engine thread: its completion queues the session
  // again, and a worker records the answer (RecordAnswer, or
  // RecordCompaction for a summary) in one step.
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls_outstanding_++;
    awaiting_.insert(id);
  }
  try {
    provider_->CallAsync(std::move(req), observer, opts,
                         [this, id, call](models::ModelResult r) { OnModelDone(id, call, std::move(r)); });
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls_outstanding_--;
      awaiting_.erase(id);
    }
    cv_.notify_all();
    throw;
  }
  return Step::kAwaiting;
}

void Engine::PostNotice(const std::string& id, std::function<void()> fn) {
  if (options_.pin_model_calls) {
    fn();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    notices_[id].push_back(std::move(fn));
    if (queued_.insert(id).second) queue_.push_back(id);
  }
  cv_.notify_all();
}

void Engine::OnModelDone(const std::string& id, std::shared_ptr<InflightCall> call, models::ModelResult result) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    call->result = std::move(result);
    calls_outstanding_--;
    awaiting_.erase(id);
    if (stopping_) {
      // Shutdown: nothing is recorded. The phase stays kModel, so the next
      // start closes the span and makes the call again.
      inflight_.erase(id);
      started_here_.erase(id);
      running_.erase(id);
    } else {
      completed_[id] = std::move(call);
      if (queued_.insert(id).second) queue_.push_back(id);
    }
  }
  cv_.notify_all();
}

Result<Engine::Step> Engine::RecordAnswer(const std::string& id, InflightCall& call) {
  const models::ModelResult& result = *call.result;
  PreviewObserver& observer = *call.observer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    inflight_.erase(id);
    started_here_.erase(id);
    // Cancelled by shutdown: record nothing. The phase stays kModel, so the
    // next start closes the span and makes the call again.
    if (stopping_ && !result.ok() && result.error().kind == models::ModelErrorKind::kCancelled) return Step::kDone;
  }

  std::string now = Now();
  const std::string& env_id = call.environment_id;
  auto env = store_->GetEnvironment(env_id);
  const std::string env_type = env.ok() ? jr::Str(jr::Get(*env, "config"), "type") : std::string();
  const bool self_hosted = env.ok() && (env_type == "self_hosted" || (options_.cloud_workers && env_type == "cloud"));
  bool again = false;
  bool need_worker = false;
  Status step = Transition(id, "record_answer", [&](const Json& cur, EngineState* s, Json* next, store::Store::SessionStep* out) {
    again = false;
    need_worker = false;
    if (s->phase != Phase::kModel) return Status::Ok();  // settled meanwhile (interrupt)
    (*next)["updated_at"] = now;
    if (!result.ok()) {
      const models::ModelError& err = result.error();
      out->append.push_back(SpanEnd(now, *s, true, {}));
      s->phase = Phase::kIdle;
      (*next)["status"] = "idle";
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
      return Status::Ok();
    }
    const models::ModelResponse& resp = result.response();
    const Json& tools = jr::AsArr(jr::Get(jr::Get(cur, "agent"), "tools"));
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
    std::vector<PendingCall> pending;
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
        bool builtin = domain::IsBuiltinTool(b.name);
        bool custom = false;
        for (const Json& t : tools)
          if (jr::Str(t, "type") == "custom" && jr::Str(t, "name") == b.name) custom = true;
        if (builtin) {
          auto policy = domain::BuiltinToolPolicy(tools, b.name);
          Json e = Event("agent.tool_use", now);
          e["name"] = b.name;
          e["input"] = b.input;
          // web_fetch / web_search run here, whatever the environment.
          const bool server = server_tools_ != nullptr && server_tools_->Handles(b.name);
          PendingCall p{e["id"].get<std::string>(), b.id, server ? "server" : "builtin", b.name, "", std::nullopt, std::nullopt};
          if (!policy) {
            e["evaluated_permission"] = "deny";
            p.permission = "deny";
            p.result = ToolOutcome{TextContent("Tool '" + b.name + "' is not enabled for this agent."), true};
          } else {
            std::string perm = *policy == "always_ask" ? "ask" : "allow";
            e["evaluated_permission"] = perm;
            p.permission = perm;
          }
          out->append.push_back(e);
          if (!p.result && !self_hosted && !server) {
            // No orchestrator serves cloud environments (--no-orchestrator,
            // no sandbox runtime): answer now.
            Json r = Event("agent.tool_result", now);
            r["tool_use_id"] = e["id"];
            r["is_error"] = true;
            r["content"] = TextContent("No sandbox is attached to environment " + env_id +
                                       ": Warren executes built-in tools only through self_hosted workers.");
            out->append.push_back(r);
            p.result = ToolOutcome{r["content"], true};
          }
          if (!p.result && !server) need_worker = true;
          pending.push_back(std::move(p));
        } else if (auto mt = call.mcp_defs.find(b.name); mt != call.mcp_defs.end()) {
          const domain::McpToolDef& def = mt->second;
          auto policy = domain::McpToolPolicy(tools, def.server, def.tool);
          Json e = Event("agent.mcp_tool_use", now);
          e["name"] = def.tool;
          e["mcp_server_name"] = def.server;
          e["input"] = b.input;
          PendingCall p{e["id"].get<std::string>(), b.id, "mcp", def.tool, "", std::nullopt, std::nullopt};
          p.mcp_server = def.server;
          if (!policy) {
            p.permission = "deny";
            p.result = ToolOutcome{TextContent("Tool '" + b.name + "' is not enabled for this agent."), true};
          } else {
            p.permission = *policy == "always_ask" ? "ask" : "allow";
          }
          e["evaluated_permission"] = p.permission;
          out->append.push_back(e);
          pending.push_back(std::move(p));
        } else if (custom) {
          Json e = Event("agent.custom_tool_use", now);
          e["name"] = b.name;
          e["input"] = b.input;
          out->append.push_back(e);
          pending.push_back(PendingCall{e["id"].get<std::string>(), b.id, "custom", b.name, "allow", std::nullopt, std::nullopt});
        } else {
          // A tool the agent does not have: tell the model.
          pending.push_back(PendingCall{"", b.id, "unknown", b.name, "deny", std::nullopt,
                                        ToolOutcome{TextContent("Unknown tool '" + b.name + "'."), true}});
        }
      }
    }
    flush_text();
    out->append.push_back(SpanEnd(now, *s, false, resp.usage));
    AddUsage(&(*next)["usage"], resp.usage);
    AddCost(cur, resp.usage, s, next);
    Json usage_ev = Event("session.usage", now);
    usage_ev["usage"] = (*next)["usage"];
    if (!jr::Get(cur, "budget").is_null()) usage_ev["budget"] = jr::Get(cur, "budget");
    out->append.push_back(usage_ev);
    AppendRow(s, out, "assistant", std::move(assistant));
    s->calls_this_turn++;
    s->pending = std::move(pending);
    Json unresolved = s->Unresolved();
    const bool server_due = s->ServerCallsDue();
    if (s->pending.empty()) {
      s->phase = Phase::kIdle;
      (*next)["status"] = "idle";
      out->append.push_back(IdleEvent(now, {{"type", "end_turn"}}));
    } else if (unresolved.empty() && server_due) {
      // Only server-run calls wait: the session stays running while
      // a tool job (StartServerCalls) answers them.
      s->phase = Phase::kTools;
    } else if (unresolved.empty()) {
      if (ReturnResultsToModel(cur, s, next, out, now, options_.max_model_calls_per_turn)) {
        OpenModelSpan(s, out, now);
        again = true;
      }
    } else {
      s->phase = Phase::kTools;
      // MCP calls the service runs keep the session running; the calls
      // that wait for the client are listed.
      Json waiting = s->AwaitingClient();
      if (!waiting.empty()) {
        (*next)["status"] = "idle";
        out->append.push_back(IdleEvent(now, {{"type", "requires_action"}, {"event_ids", waiting}}));
      }
    }
    return Status::Ok();
  });
  WARREN_RETURN_IF_ERROR(step);
  if (again) {
    std::lock_guard<std::mutex> lock(mu_);
    started_here_.insert(id);
  }
  if (need_worker && work_needed_) work_needed_(id);
  return again ? Step::kMore : Step::kDone;
}

// ---- service-run tool calls: jobs on the tool pool

namespace {

// The pool key of MCP server `name` of the session's agent: its URL (the
// peer a hang comes from; two agents naming one server share its bound).
std::string McpKey(const Json& session, const std::string& name) {
  for (const Json& srv : jr::Arr(jr::Obj(session, "agent"), "mcp_servers"))
    if (jr::Str(srv, "name") == name) {
      const std::string url = jr::Str(srv, "url");
      if (!url.empty()) return "mcp " + url;
    }
  return "mcp-server " + name;
}

}  // namespace

Result<bool> Engine::StartMcpCalls(const std::string& id) {
  WARREN_ASSIGN_OR_RETURN(Json session, store_->GetSession(id));
  WARREN_ASSIGN_OR_RETURN(EngineState st, LoadState(id, session));
  if (st.phase != Phase::kTools || !st.McpCallsDue()) return false;
  auto job = std::make_shared<ToolJob>();
  job->kind = ToolJob::Kind::kMcp;
  job->session_id = id;
  // Only the calls without a result: a call whose result was recorded
  // before a stop or a crash is not made again.
  for (const PendingCall& p : st.pending)
    if (p.McpRunnable()) job->calls.push_back(p);
  // Requested input of each call: from its agent.mcp_tool_use event.
  for (const PendingCall& p : job->calls) {
    auto ev = store_->GetEvent(id, p.event_id);
    job->inputs.push_back(ev.ok() && *ev ? jr::Get((*ev)->body, "input") : Json::object());
    job->keys.push_back(McpKey(session, p.mcp_server));
  }
  if (jr::Str(session, "status") != "running") {
    // A confirmed call: the session runs again while the service calls it.
    std::string now = Now();
    WARREN_RETURN_IF_ERROR(Transition(id, "mcp_running", [&](const Json& cur, EngineState*, Json* next, store::Store::SessionStep* out) {
      if (jr::Str(cur, "status") == "running") return Status::Ok();
      (*next)["status"] = "running";
      (*next)["updated_at"] = now;
      out->append.push_back(Event("session.status_running", now));
      return Status::Ok();
    }));
  }
  job->session = std::move(session);
  job->mcp_outcomes.resize(job->calls.size());
  job->recorded.assign(job->calls.size(), 0);
  // Bounded concurrency per session: at most mcp_concurrency calls of the
  // answer at once.
  return SubmitToolJob(job, static_cast<size_t>(std::max(1, options_.mcp_concurrency)));
}

Result<bool> Engine::StartServerCalls(const std::string& id) {
  WARREN_ASSIGN_OR_RETURN(Json session, store_->GetSession(id));
  WARREN_ASSIGN_OR_RETURN(EngineState st, LoadState(id, session));
  auto job = std::make_shared<ToolJob>();
  job->kind = ToolJob::Kind::kServer;
  job->session_id = id;
  for (const PendingCall& p : st.pending)
    if (p.RunsInService()) job->calls.push_back(p);
  if (job->calls.empty()) return false;
  for (const PendingCall& p : job->calls) {
    Json input = Json::object();
    auto ev = store_->GetEvent(id, p.event_id);
    if (ev.ok() && ev->has_value()) input = jr::Get((*ev)->body, "input");
    job->inputs.push_back(std::move(input));
    job->keys.push_back(p.name);  // web_fetch | web_search
  }
  job->session = std::move(session);
  job->server_results.resize(job->calls.size());
  job->recorded.assign(job->calls.size(), 0);
  return SubmitToolJob(job, 1);  // one after the other, as a worker would
}

Result<bool> Engine::StartListing(const std::string& id) {
  WARREN_ASSIGN_OR_RETURN(Json session, store_->GetSession(id));
  const Json& servers = jr::Arr(jr::Obj(session, "agent"), "mcp_servers");
  if (servers.empty()) return false;
  WARREN_ASSIGN_OR_RETURN(EngineState st, LoadState(id, session));
  if (st.phase != Phase::kModel) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = listings_.find(id);
    if (it != listings_.end() && it->second.first == st.model_request_start_id) return false;  // listed already
  }
  auto job = std::make_shared<ToolJob>();
  job->kind = ToolJob::Kind::kListing;
  job->session_id = id;
  job->span_id = st.model_request_start_id;
  // One unit per server, all at once (a dead server costs only its own
  // timeout), each under its server's key: the session as seen with that
  // server alone is what McpTools::ListTools lists.
  for (const Json& srv : servers) {
    if (!srv.is_object() || jr::Str(srv, "name").empty()) continue;
    Json view = session;
    view["agent"]["mcp_servers"] = Json::array({srv});
    job->keys.push_back(McpKey(session, jr::Str(srv, "name")));
    job->views.push_back(std::move(view));
  }
  if (job->keys.empty()) return false;
  job->listings.resize(job->keys.size());
  job->session = std::move(session);
  return SubmitToolJob(job, job->keys.size());
}

bool Engine::SubmitToolJob(const std::shared_ptr<ToolJob>& job, size_t concurrency) {
  job->token = std::make_shared<CancelToken>();
  const size_t chains = std::max<size_t>(1, std::min(job->keys.size(), concurrency));
  job->chains = chains;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    // An interrupt (or the session's deletion, or Stop) cancels the job.
    inflight_[job->session_id] = job->token;
    tool_jobs_[job->session_id] = job;
    calls_outstanding_++;
    awaiting_.insert(job->session_id);
  }
  for (size_t c = 0; c < chains; c++) ContinueToolJob(job);
  return true;
}

void Engine::ContinueToolJob(const std::shared_ptr<ToolJob>& job) {
  {
    std::lock_guard<std::mutex> lock(job->mu);
    if (!job->swept && !job->token->cancelled() && job->next < job->keys.size()) {
      const size_t i = job->next++;
      // Submit never runs either callback itself, so job->mu may be held.
      ToolPool::JobId ticket = tool_pool_.Submit(
          job->keys[i],
          [this, job, i] {
            RunToolUnit(*job, i);
            ContinueToolJob(job);
          },
          [this, job] { EndToolChain(job); });
      if (ticket != 0) {
        job->tickets.push_back(ticket);
        return;
      }
      // The pool stops only after every job has completed (Stop), so this
      // is not expected; the unit counts as cancelled: nothing is recorded.
      job->token->Cancel();
    }
  }
  EndToolChain(job);
}

void Engine::EndToolChain(const std::shared_ptr<ToolJob>& job) {
  if (job->chains.fetch_sub(1) == 1) OnToolDone(job);
}

void Engine::CancelToolJob(const std::shared_ptr<ToolJob>& job) {
  job->token->Cancel();  // units running see it; no chain takes another unit
  std::vector<ToolPool::JobId> tickets;
  {
    std::lock_guard<std::mutex> lock(job->mu);
    job->swept = true;
    tickets = job->tickets;
  }
  // Units still queued (behind a busy server) are dropped now, so the job
  // completes without waiting for their keys; Cancel is false for the rest.
  for (ToolPool::JobId t : tickets) tool_pool_.Cancel(t);
}

void Engine::RunToolUnit(ToolJob& job, size_t i) {
  const CancelToken* cancel = job.token.get();
  switch (job.kind) {
    case ToolJob::Kind::kListing:
      try {
        job.listings[i] = mcp_->ListTools(job.views[i], cancel);
      } catch (const std::exception& e) {
        log::Error("engine.mcp_listing_threw", {{"session", job.session_id}, {"error", e.what()}});
      } catch (...) {
        log::Error("engine.mcp_listing_threw", {{"session", job.session_id}});
      }
      return;
    case ToolJob::Kind::kServer: {
      if (cancel->cancelled()) return;  // interrupted: start no more calls
      domain::ServerToolResult r;
      try {
        r = server_tools_->Run(job.calls[i].name, job.inputs[i], cancel);
      } catch (const std::exception& e) {
        r = {TextContent(job.calls[i].name + " failed: " + e.what()), true};
      } catch (...) {
        r = {TextContent(job.calls[i].name + " failed"), true};
      }
      // A call that ends with the interrupt is not recorded: consuming the
      // interrupt answers it "Interrupted by the user.".
      if (cancel->cancelled()) return;
      if (r.content.empty()) r.content = TextContent(r.is_error ? "(error)" : "(no output)");
      PlaceLargeServerOutput(job.session_id, job.calls[i].event_id, &r);
      job.server_results[i] = std::move(r);
      break;
    }
    case ToolJob::Kind::kMcp: {
      if (cancel->cancelled()) return;  // interrupted: start no more calls
      const PendingCall& call = job.calls[i];
      domain::McpCallOutcome o;
      try {
        o = mcp_->CallTool(job.session, call.mcp_server, call.name, job.inputs[i], cancel);
      } catch (const std::exception& e) {
        o = domain::McpCallOutcome();
        o.is_error = true;
        o.content = TextContent(std::string("MCP call failed: ") + e.what());
      }
      if (cancel->cancelled()) return;  // as above
      PlaceLargeMcpOutput(job.session_id, call.event_id, &o);
      job.mcp_outcomes[i] = std::move(o);
      break;
    }
  }
  // The result is recorded now, in its own transition, so that it is
  // durable before any other call of the job ends (docs/MCP.md, "Stops and
  // crashes"). The session awaits this job: no worker steps it meanwhile.
  // If the store fails here, RecordToolJob tries again (and fails the
  // session if it must).
  bool model_due = false;
  Status st = RecordToolResult(job, i, &model_due);
  if (st.ok() || st.code() == Code::kNotFound) {
    job.recorded[i] = 1;
  } else {
    log::Warn("engine.tool_result_deferred",
              {{"session", job.session_id}, {"call", job.calls[i].event_id}, {"error", st.ToString()}});
  }
  if (st.ok() && model_due) {
    std::lock_guard<std::mutex> lock(mu_);
    started_here_.insert(job.session_id);
  }
}

void Engine::OnToolDone(const std::shared_ptr<ToolJob>& job) {
  const std::string& id = job->session_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls_outstanding_--;
    awaiting_.erase(id);
    if (auto it = inflight_.find(id); it != inflight_.end() && it->second == job->token) inflight_.erase(it);
    if (auto it = tool_jobs_.find(id); it != tool_jobs_.end() && it->second == job) tool_jobs_.erase(it);
    if (stopping_) {
      // Shutdown: nothing more is recorded. The calls without a recorded
      // result stay pending (or the model phase open) and run again at the
      // next start, as after a crash.
      started_here_.erase(id);
      running_.erase(id);
    } else {
      tool_done_[id] = job;
      if (queued_.insert(id).second) queue_.push_back(id);
    }
  }
  cv_.notify_all();
}

Status Engine::RecordToolJob(const std::string& id, ToolJob& job) {
  switch (job.kind) {
    case ToolJob::Kind::kListing: {
      if (job.token->cancelled()) {
        // Interrupted while listing: the due model call ends as an
        // interrupted call does (its span closed, the session idle);
        // consuming the interrupt then settles the turn.
        InflightCall call;
        call.token = job.token;
        call.environment_id = jr::Str(job.session, "environment_id");
        call.observer = std::make_unique<PreviewObserver>(bus_, id);
        models::ModelError e;
        e.kind = models::ModelErrorKind::kCancelled;
        e.message = "interrupted while listing MCP tools";
        call.result = models::ModelResult(std::move(e));
        return RecordAnswer(id, call).status();
      }
      // The servers' listings in the agent's order: a failure each, and
      // of two tools mapped to one name the first wins.
      domain::McpListing merged;
      std::set<std::string> names;
      for (domain::McpListing& l : job.listings) {
        for (auto& f : l.failures) merged.failures.push_back(std::move(f));
        for (auto& t : l.tools)
          if (names.insert(t.exposed_name).second) merged.tools.push_back(std::move(t));
      }
      std::lock_guard<std::mutex> lock(mu_);
      listings_[id] = {job.span_id, std::move(merged)};
      return Status::Ok();
    }
    case ToolJob::Kind::kServer:
    case ToolJob::Kind::kMcp:
      // Results the units could not record themselves (a store failure).
      for (size_t i = 0; i < job.calls.size(); i++) {
        if (job.recorded[i]) continue;
        bool model_due = false;
        WARREN_RETURN_IF_ERROR(RecordToolResult(job, i, &model_due));
        job.recorded[i] = 1;
        if (model_due) {
          std::lock_guard<std::mutex> lock(mu_);
          started_here_.insert(id);
        }
      }
      return Status::Ok();
  }
  return Status::Ok();
}

Status Engine::RecordToolResult(ToolJob& job, size_t i, bool* model_due) {
  *model_due = false;
  if (job.kind == ToolJob::Kind::kMcp && job.mcp_outcomes[i])
    return RecordMcpResult(job.session_id, job.calls[i], *job.mcp_outcomes[i], model_due);
  if (job.kind == ToolJob::Kind::kServer && job.server_results[i])
    return RecordServerResult(job.session_id, job.calls[i], *job.server_results[i], model_due);
  return Status::Ok();  // no result: interrupted, stopped, or never started
}

Status Engine::RecordMcpResult(const std::string& id, const PendingCall& call, const domain::McpCallOutcome& o,
                               bool* model_due) {
  std::string now = Now();
  return Transition(id, "mcp_result", [&](const Json& cur, EngineState* s, Json* next, store::Store::SessionStep* out) {
    *model_due = false;
    if (s->phase != Phase::kTools) return Status::Ok();  // settled meanwhile
    PendingCall* p = nullptr;
    for (PendingCall& q : s->pending)
      if (q.event_id == call.event_id) p = &q;
    if (p == nullptr || p->result) return Status::Ok();  // answered meanwhile
    if (o.failure) out->append.push_back(McpErrorEvent(now, *o.failure));
    Json r = Event("agent.mcp_tool_result", now);
    r["mcp_tool_use_id"] = p->event_id;
    r["content"] = o.content;
    r["is_error"] = o.is_error;
    out->append.push_back(r);
    p->result = ToolOutcome{o.content, o.is_error};
    (*next)["updated_at"] = now;
    if (!s->Unresolved().empty()) {
      // The last of the answer's MCP calls to end says which calls wait
      // for the client, if any.
      Json waiting = s->AwaitingClient();
      if (!waiting.empty() && !s->McpCallsDue()) {
        (*next)["status"] = "idle";
        out->append.push_back(IdleEvent(now, {{"type", "requires_action"}, {"event_ids", waiting}}));
      }
      return Status::Ok();
    }
    // The same guards as for built-in results: a model looping on MCP calls ends.
    if (!ReturnResultsToModel(cur, s, next, out, now, options_.max_model_calls_per_turn)) return Status::Ok();
    OpenModelSpan(s, out, now);
    s->phase = Phase::kModel;
    *model_due = true;
    return Status::Ok();
  });
}

Status Engine::RecordServerResult(const std::string& id, const PendingCall& call, const domain::ServerToolResult& r,
                                  bool* model_due) {
  std::string now = Now();
  return Transition(id, "server_tool_result", [&](const Json& cur, EngineState* s, Json* next,
                                                  store::Store::SessionStep* out) {
    *model_due = false;
    PendingCall* p = nullptr;
    for (PendingCall& q : s->pending)
      if (q.event_id == call.event_id) p = &q;
    if (p == nullptr || p->result) return Status::Ok();  // interrupted or answered meanwhile
    p->result = ToolOutcome{r.content, r.is_error};
    Json e = Event("agent.tool_result", now);
    e["tool_use_id"] = call.event_id;
    e["content"] = r.content;
    e["is_error"] = r.is_error;
    out->append.push_back(e);
    // usage.server_tool_use counts the requests (spec 1.3).
    Json& usage = (*next)["usage"];
    if (!usage.is_object()) usage = Json::object();
    Json& stu = usage["server_tool_use"];
    if (!stu.is_object()) stu = Json::object();
    const char* key = call.name == "web_search" ? "web_search_requests" : "web_fetch_requests";
    stu[key] = (stu.contains(key) && stu[key].is_number_integer() ? stu[key].get<int64_t>() : 0) + 1;
    (*next)["updated_at"] = now;
    if (!s->Unresolved().empty() || s->ServerCallsDue()) return Status::Ok();
    // Every call answered: the results go back to the model.
    if (!ReturnResultsToModel(cur, s, next, out, now, options_.max_model_calls_per_turn)) return Status::Ok();
    if (jr::Str(cur, "status") != "running") {
      (*next)["status"] = "running";
      out->append.push_back(Event("session.status_running", now));
    }
    OpenModelSpan(s, out, now);
    s->phase = Phase::kModel;
    *model_due = true;
    return Status::Ok();
  });
}

// ---- outputs too large for the context (docs/MCP.md "Large outputs")

void Engine::PlaceLargeMcpOutput(const std::string& id, const std::string& call_id, domain::McpCallOutcome* o) {
  if (!o->full_text) return;
  const std::string full = std::move(*o->full_text);
  o->full_text.reset();
  Result<std::string> path = session_files_ == nullptr
                                 ? Result<std::string>(Status::NotFound("no sandbox"))
                                 : session_files_->WriteToolOutput(id, "mcp", call_id, full);
  if (!path.ok()) {
    // The cut stays (the gateway's note gives the sizes); say why the rest
    // is not at hand.
    if (path.status().code() != Code::kNotFound)
      log::Warn("engine.output_file_failed", {{"session", id}, {"call", call_id}, {"error", path.status().ToString()}});
    o->content.push_back({{"type", "text"},
                          {"text", path.status().code() == Code::kNotFound
                                       ? "[the full output was not kept: this session has no sandbox to hold it]"
                                       : "[the full output was not kept: writing it to this session's sandbox failed]"}});
    return;
  }
  const std::string head = Utf8Head(full, options_.output_preview_bytes);
  Json content = Json::array();
  content.push_back({{"type", "text"}, {"text", head}});
  for (const Json& b : o->content)
    if (jr::Str(b, "type") == "image") content.push_back(b);
  content.push_back({{"type", "text"},
                     {"text", "[output too large for the context: the tool returned " + std::to_string(full.size()) +
                                  " bytes of text; above are the first " + std::to_string(head.size()) +
                                  " bytes. The full output is in the file " + *path +
                                  " in this session's sandbox: read it with your tools]"}});
  o->content = std::move(content);
}

void Engine::PlaceLargeServerOutput(const std::string& id, const std::string& call_id, domain::ServerToolResult* r) {
  if (!r->full_text) return;
  const std::string full = std::move(*r->full_text);
  r->full_text.reset();
  if (session_files_ == nullptr) return;  // the document's context says the text was truncated
  auto path = session_files_->WriteToolOutput(id, "web_fetch", call_id, full);
  if (!path.ok()) {
    if (path.status().code() != Code::kNotFound)
      log::Warn("engine.output_file_failed", {{"session", id}, {"call", call_id}, {"error", path.status().ToString()}});
    return;
  }
  r->content.push_back({{"type", "text"},
                        {"text", "[the page's full text (" + std::to_string(full.size()) + " bytes) is in the file " +
                                     *path + " in this session's sandbox: read it with your tools]"}});
}

std::optional<Engine::CompactionPlan> Engine::PlanCompaction(const Conversation& conv,
                                                             const models::ModelRequest& request) {
  const models::ModelRequest* req = &request;
  const int64_t window = provider_->context_window(req->model);
  const int64_t threshold = static_cast<int64_t>(options_.compaction_threshold * static_cast<double>(window));
  // The running estimate of the rows (kept as they are appended; an upper
  // bound of their share of the prompt) decides whether the full estimate,
  // whose cost grows with the prompt, is worth computing at all.
  int64_t fixed = 64;  // the request's own fields
  for (const auto& t : req->tools) fixed += models::EstimateTokens(DumpJson(models::ToolToJson(t)));
  for (const auto& b : req->system) fixed += models::EstimateTokens(b.text) + 8;
  if (conv.approx_tokens + fixed < threshold) return std::nullopt;
  int64_t tokens = models::EstimateTokens(*req);
  if (tokens <= threshold) return std::nullopt;
  // Split at a user message that is not a tool result: the earliest such
  // boundary whose verbatim tail fits in half the window (so the next turns
  // do not compact again at once), else the last one.
  const auto& msgs = req->messages;
  if (msgs.size() < 3 || conv.first_idx.size() != msgs.size()) return std::nullopt;
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
  if (split == 0) return std::nullopt;
  CompactionPlan plan;
  plan.tokens = tokens;
  plan.old_base = conv.base;
  plan.new_base = conv.first_idx[split];
  plan.split = split;
  models::ModelRequest& sum = plan.request;
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
  return plan;
}

static std::string SummaryText(const models::ModelResult& r) {
  return "Summary of the earlier conversation (older turns were compacted):\n" + r.response().Text();
}

Result<bool> Engine::ApplyCompaction(const std::string& id, const CompactionPlan& plan, const models::ModelResult& r,
                                     bool* budget_reached) {
  // The new base: the summary, then the rows from the split on, which stay
  // where they are in the append-only transcript.
  const std::string summary = SummaryText(r);
  std::string now = Now();
  bool applied = false;
  WARREN_RETURN_IF_ERROR(Transition(id, "compact", [&](const Json& cur, EngineState* s, Json* next, store::Store::SessionStep* out) {
    applied = false;
    *budget_reached = false;
    if (s->phase != Phase::kModel || s->transcript_base != plan.old_base) return Status::Ok();  // settled meanwhile
    s->transcript_base = plan.new_base;
    s->summary = summary;
    Json e = Event("agent.thread_context_compacted", now);
    e["pre_compaction_tokens"] = plan.tokens;
    out->append.push_back(e);
    // The summary is a model call like any other: its tokens and list cost
    // count in the session's usage and against its budget.
    const models::ModelUsage& u = r.response().usage;
    AddUsage(&(*next)["usage"], u);
    AddCost(cur, u, s, next);
    *budget_reached = BudgetReached(cur, *s);
    applied = true;
    return Status::Ok();
  }));
  return applied;
}

Status Engine::Compact(const std::string& id, const Conversation& conv, models::ModelRequest* req,
                       const CancelToken* cancel, bool* budget_reached) {
  *budget_reached = false;
  std::optional<CompactionPlan> plan = PlanCompaction(conv, *req);
  if (!plan) return Status::Ok();
  models::CallOptions opts;
  opts.cancel = cancel;
  models::ModelResult r = provider_->Call(plan->request, nullptr, opts);
  if (!r.ok() && (r.error().kind == models::ModelErrorKind::kCancelled || (cancel && cancel->cancelled())))
    return Status::Cancelled("compaction cancelled");
  if (!r.ok()) {
    log::Warn("engine.compaction_failed", {{"session", id}, {"error", r.error().ToString()}});
    return Status::Ok();  // carry on uncompacted; the model call may still fit
  }
  WARREN_ASSIGN_OR_RETURN(bool applied, ApplyCompaction(id, *plan, r, budget_reached));
  if (!applied) return Status::Ok();
  const auto& msgs = req->messages;
  std::vector<Message> compacted;
  compacted.push_back(Message::User(SummaryText(r)));
  for (size_t i = plan->split; i < msgs.size(); i++) {
    if (i == plan->split && msgs[i].role == models::Role::kUser) {
      for (const auto& b : msgs[i].content) compacted.front().content.push_back(b);
      continue;
    }
    compacted.push_back(msgs[i]);
  }
  req->messages = std::move(compacted);
  return Status::Ok();
}

Status Engine::SettleBudgetAfterCompaction(const std::string& id) {
  std::string now = Now();
  return Transition(id, "budget_after_compaction", [&](const Json&, EngineState* s, Json* next, store::Store::SessionStep* out) {
    if (s->phase != Phase::kModel) return Status::Ok();
    s->phase = Phase::kIdle;
    (*next)["status"] = "idle";
    (*next)["updated_at"] = now;
    out->append.push_back(SpanEnd(now, *s, false, {}));
    out->append.push_back(IdleEvent(now, {{"type", "budget_reached"}}));
    return Status::Ok();
  });
}

Result<Engine::Step> Engine::RecordCompaction(const std::string& id, InflightCall& call) {
  const models::ModelResult& r = *call.result;
  const CompactionPlan& plan = *call.compaction;
  if (!r.ok() && (r.error().kind == models::ModelErrorKind::kCancelled || call.token->cancelled())) {
    // Interrupted during compaction: recorded as a cancelled call.
    models::ModelError e;
    e.kind = models::ModelErrorKind::kCancelled;
    e.message = "compaction cancelled";
    call.result = models::ModelResult(std::move(e));
    call.compaction.reset();
    return RecordAnswer(id, call);
  }
  auto forget = [&](bool keep_turn) {
    std::lock_guard<std::mutex> lock(mu_);
    inflight_.erase(id);
    if (!keep_turn) started_here_.erase(id);
  };
  if (!r.ok()) {
    log::Warn("engine.compaction_failed", {{"session", id}, {"error", r.error().ToString()}});
    // Carry on uncompacted: the model call may still fit.
    forget(true);
    std::lock_guard<std::mutex> lock(mu_);
    skip_compaction_[id] = plan.old_base;
    return Step::kMore;
  }
  bool budget_reached = false;
  auto applied = ApplyCompaction(id, plan, r, &budget_reached);
  if (!applied.ok()) {
    forget(false);
    return applied.status();
  }
  if (!*applied) {
    forget(false);  // settled meanwhile
    return Step::kDone;
  }
  if (budget_reached) {
    // Compaction's own model cost reached the budget: no further call.
    forget(false);
    WARREN_RETURN_IF_ERROR(SettleBudgetAfterCompaction(id));
    return Step::kDone;
  }
  forget(true);
  std::lock_guard<std::mutex> lock(mu_);
  skip_compaction_[id] = plan.new_base;
  return Step::kMore;
}

}  // namespace warren::engine
