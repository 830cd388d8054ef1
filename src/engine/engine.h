// Engine: the agent loop. Each session is a typed state machine
// (engine_state.h: phase, pending calls, cursor) driven by its durable event
// log (DESIGN decisions 2, 8 and 10):
//
//   client events (user.message, tool results, confirmations, interrupts)
//     -> consumed in order, each re-published with processed_at set
//     -> model turn: session.status_running, span.model_request_start,
//        previews, agent.thinking/agent.message/agent.tool_use...,
//        span.model_request_end, session.usage
//     -> tool calls: built-ins become agent.tool_use with evaluated_permission
//        (the worker answers with user.tool_result), custom tools become
//        agent.custom_tool_use; the session idles with requires_action.
//        MCP tools (offered as mcp__<server>__<tool> through the
//        domain::McpTools port) become agent.mcp_tool_use; allowed or
//        confirmed ones are run by the service (StartMcpCalls, bounded per
//        session, cancelled by an interrupt) and recorded as
//        agent.mcp_tool_result while the session stays running
//     -> end_turn: session.status_idle
//
// The state changes only by named transitions (consume, advance_cursor,
// record_answer, compact, retrying, resume_running, settle_empty,
// budget_after_compaction, fail), each one store transaction (StepSession)
// that writes the events, the engine record (its own table's columns) and
// the transcript rows it appends, together. The transcript is append-only;
// compaction writes a new base (a summary and a later first row). The
// engine keeps each session's conversation in memory and reads only the rows
// appended since its last look, so a step's cost does not grow with the
// session's length. A crash at any point leaves the session resumable: on
// Start() the engine re-schedules sessions that were running or have
// unprocessed client events; a model call cut off by a crash is closed with
// span.model_request_end{is_error} and made again, and its result is
// recorded once.
//
// Failures: nothing thrown while processing a session leaves the worker
// thread. A session whose step fails (an error or an exception) gets a
// terminal session.error and goes idle; its unprocessed client events are
// marked processed, so a poisoned event is handled once, not at every
// restart. Every other session goes on.
//
// Model calls do not hold a worker: ModelTurn starts the call
// (ModelProvider::CallAsync) and the worker moves on to other sessions. The
// session stays "running" (one step of a session at a time: events that
// arrive meanwhile only mark it dirty) until the completion, which arrives
// on the provider's event-loop thread, queues it again; a worker then
// records the whole answer in one StepSession transaction (RecordAnswer).
// How many calls are in flight is the provider's bound (BoundedProvider),
// not the thread count. An interrupt cancels the call's token; Stop()
// cancels every call and waits for their completions (nothing is recorded:
// the call is redone at the next start, as after a crash).
//
// The calls the service makes itself (MCP tools/list before a model call,
// MCP tools/call, web_fetch, web_search) do not hold a worker either: the
// worker starts them as one job on the ToolPool (a bounded pool of their
// own, tool_pool.h) and moves on; the session stays "running" (awaiting)
// until the job's completion queues it again. A job's units (one per call,
// or one per server for a listing) run as pool jobs keyed by their peer
// (the MCP server's URL, the web tool's name), so one hanging server holds
// at most tool_threads_per_key threads. Each call's result is recorded as
// the call ends, on the pool thread, in one transition of its own
// (agent.mcp_tool_result / agent.tool_result; the session is awaiting, so
// no worker steps it meanwhile): a stop or a crash afterwards does not make
// that call again. An interrupt cancels the job's token and drops its
// queued units; Stop() does the same, and the calls without a recorded
// result stay pending and run again at the next start.
// A tool output cut to fit the context (full_text) is written to the
// session's sandbox through the domain::SessionFiles port when there is
// one, and the model gets a preview and the file's path (docs/MCP.md).
//
// Threading: a pool of worker threads; one session is processed by at most
// one worker at a time. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/http_client.h"
#include "domain/event_sink.h"
#include "domain/mcp_tools.h"
#include "domain/server_tools.h"
#include "domain/session_files.h"
#include "domain/session_observer.h"
#include "engine/engine_state.h"
#include "engine/tool_pool.h"
#include "models/model_provider.h"
#include "store/store.h"

namespace warren::engine {

struct EngineOptions {
  int threads = 4;
  int64_t max_tokens = 8192;
  // Compact when the estimated prompt exceeds this fraction of the model's
  // context window; the turns kept verbatim fit in half the window.
  double compaction_threshold = 0.8;
  // Upper bound of model calls in one turn without a client answer (guards
  // against a model looping on tool errors).
  int max_model_calls_per_turn = 100;
  // True when an orchestrator serves `cloud` environments (warren serve's
  // built-in one): their built-in tool calls then wait for a worker like
  // self_hosted ones, instead of being answered with an error at once.
  bool cloud_workers = false;
  // Conversations kept in memory (others are re-read from the transcript
  // table when their session next needs a model call).
  int cached_conversations = 1024;
  // The mode before issue 14, kept as a benchmark peer: a model call holds
  // its engine thread for the whole stream (at most `threads` in flight).
  bool pin_model_calls = false;
  // MCP tool calls of one session run at most this many at a time.
  int mcp_concurrency = 4;
  // Threads of the ToolPool: service-run tool jobs (MCP listings and calls,
  // web_fetch, web_search) in flight at once across sessions; more wait FIFO.
  int tool_threads = 32;
  // Of those, at most this many talk to one peer at once (one MCP server,
  // by URL; or one web tool), so a peer that hangs cannot take the whole
  // pool; the rest of that peer's jobs wait their turn.
  int tool_threads_per_key = 8;
  // With a sandbox to hold the full output (set_session_files), the model
  // gets this many bytes of a cut MCP output's text as its preview.
  size_t output_preview_bytes = 20'000;
};

// Told when a session has built-in tool calls waiting for a worker.
using WorkNeeded = std::function<void(const std::string& session_id)>;

class Engine final : public domain::SessionObserver {
 public:
  Engine(store::Store* store, domain::EventSink* bus, models::ModelProvider* provider, Clock* clock,
         EngineOptions options = {});
  ~Engine() override;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void set_work_needed(WorkNeeded fn) { work_needed_ = std::move(fn); }
  // MCP servers of sessions' agents (docs/MCP.md); without it their tools
  // are not offered. Set before Start(); not owned.
  void set_mcp_tools(domain::McpTools* mcp) { mcp_ = mcp; }
  // The tools this service runs itself (web_fetch, web_search; not owned,
  // must outlive the engine). Set before Start(). Their calls are recorded
  // as agent.tool_use, run as a job on the tool pool (after approval when
  // always_ask) and answered with agent.tool_result, for every environment
  // type; the session stays running meanwhile.
  void set_server_tools(domain::ServerTools* tools) { server_tools_ = tools; }
  // Where outputs too large for the context go (a file in the session's
  // sandbox; not owned, must outlive the engine). Without it they are cut
  // with a note. Set before Start().
  void set_session_files(domain::SessionFiles* files) { session_files_ = files; }

  // Starts the workers and re-schedules sessions left mid-turn.
  Status Start();
  // Cancels model calls in flight and joins the workers.
  void Stop();
  // Blocks until no session is scheduled or being processed (tests).
  void WaitIdle();

  void OnSessionCreated(const Json& session) override;
  void OnClientEvents(const Json& session, const std::vector<store::StoredEvent>& events) override;
  void OnSessionDeleted(const std::string& session_id) override;

 private:
  // The conversation of one session as the model sees it: the summary (if
  // any) and the transcript rows from the base, merged into messages.
  struct Conversation {
    int64_t base = -1;
    int64_t next = 0;  // next row idx to read
    std::string summary;
    std::vector<models::Message> messages;
    std::vector<int64_t> first_idx;  // transcript idx of each message's first row
    int64_t approx_tokens = 0;       // running estimate, an upper bound of the rows' share
    void Reset(const EngineState& st);
    Status Add(const store::TranscriptEntry& row);
  };
  // A named transition: edits the state, the new session object and the
  // step's events and transcript rows, inside one store transaction.
  using TransitionFn = std::function<Status(const Json& session, EngineState* state, Json* next,
                                            store::Store::SessionStep* out)>;

  // A model call started by ModelTurn, until its answer is recorded.
  struct InflightCall;
  enum class Step { kDone, kMore, kAwaiting };

  void Schedule(const std::string& session_id);
  void WorkerLoop();
  // Runs steps for one session until it needs nothing more (false) or waits
  // for a model call in flight (true).
  bool Process(const std::string& session_id);
  // One consume step; returns true if a model call is now due.
  Result<bool> ConsumeClientEvents(const std::string& session_id);
  // Starts one model call (kAwaiting), or settles the turn without one
  // (kDone); in pinned mode also records the answer (kMore: another is due).
  Result<Step> ModelTurn(const std::string& session_id);
  // Starts `call` with CallAsync (kAwaiting): the session awaits its
  // completion (OnModelDone), holding no engine thread.
  Step StartCall(const std::string& session_id, std::shared_ptr<InflightCall> call, models::ModelRequest request,
                 models::ModelStreamObserver* observer, models::CallOptions options);
  // A retry notice from the provider's thread: queued for a worker, which
  // runs it before the answer is recorded (inline in pinned mode).
  void PostNotice(const std::string& session_id, std::function<void()> fn);
  // The provider's completion (any thread): queues the session for recording.
  void OnModelDone(const std::string& session_id, std::shared_ptr<InflightCall> call, models::ModelResult result);
  // Records a call's answer in one step; kMore if another call is due.
  Result<Step> RecordAnswer(const std::string& session_id, InflightCall& call);
  // Service-run tool calls of one session in flight on the ToolPool.
  struct ToolJob;
  // Start the session's due MCP calls (allowed or confirmed), its due
  // server-tool calls (web_fetch, web_search), or the MCP listing of the
  // model call that is due, as one ToolJob; true if a job was started (the
  // session then awaits its completion).
  Result<bool> StartMcpCalls(const std::string& session_id);
  Result<bool> StartServerCalls(const std::string& session_id);
  Result<bool> StartListing(const std::string& session_id);
  // Registers `job` (token, awaiting) and starts its units, at most
  // `concurrency` at a time, each a ToolPool job under its key.
  bool SubmitToolJob(const std::shared_ptr<ToolJob>& job, size_t concurrency);
  // One chain of `job`: submits its next unit (which continues the chain
  // when it ends), or ends the chain when none is left or it is cancelled.
  void ContinueToolJob(const std::shared_ptr<ToolJob>& job);
  // A chain ended; the last one completes the job (OnToolDone).
  void EndToolChain(const std::shared_ptr<ToolJob>& job);
  // Cancels `job` (interrupt, deletion, Stop): its token, and its units
  // still queued on the pool are dropped. Call without mu_ held.
  void CancelToolJob(const std::shared_ptr<ToolJob>& job);
  // Runs unit `i` of `job` on a pool thread; a call's result is recorded
  // at once (RecordToolResult), durable before the job ends.
  void RunToolUnit(ToolJob& job, size_t i);
  // The last chain of a job ended (pool thread): queues the session.
  void OnToolDone(const std::shared_ptr<ToolJob>& job);
  // Records a finished job: the call results its units could not record
  // (a store failure), or keeps the listing for ModelTurn.
  Status RecordToolJob(const std::string& session_id, ToolJob& job);
  // Records call `i`'s result, if it has one, in one transition: the
  // agent.mcp_tool_result / agent.tool_result, and when it was the last
  // call to wait for, the next model span (*model_due) or requires_action.
  Status RecordToolResult(ToolJob& job, size_t i, bool* model_due);
  Status RecordMcpResult(const std::string& session_id, const PendingCall& call, const domain::McpCallOutcome& o,
                         bool* model_due);
  Status RecordServerResult(const std::string& session_id, const PendingCall& call, const domain::ServerToolResult& r,
                            bool* model_due);
  // A cut output (full_text) goes to the session's sandbox; the content
  // becomes a preview naming the file (or keeps the cut, with a note why).
  void PlaceLargeMcpOutput(const std::string& session_id, const std::string& call_id, domain::McpCallOutcome* o);
  void PlaceLargeServerOutput(const std::string& session_id, const std::string& call_id, domain::ServerToolResult* r);
  // Compaction (docs/MODELS.md): when the prompt nears the context window,
  // older turns are summarised by one model call and the transcript's base
  // moves past them.
  struct CompactionPlan;
  // The summary request for `request`, or nothing if no compaction is due.
  std::optional<CompactionPlan> PlanCompaction(const Conversation& conv, const models::ModelRequest& request);
  // Records a finished summary call `r` for `plan` in one transition; false
  // if the session settled meanwhile (nothing recorded). The call's cost
  // counts in the session's usage; *budget_reached says whether the budget is
  // now spent. `r` must be ok.
  Result<bool> ApplyCompaction(const std::string& session_id, const CompactionPlan& plan,
                               const models::ModelResult& r, bool* budget_reached);
  // Pinned mode: plans, calls (on this thread) and applies a compaction, and
  // rewrites request->messages. An interrupt gives Cancelled.
  Status Compact(const std::string& session_id, const Conversation& conv, models::ModelRequest* request,
                 const CancelToken* cancel, bool* budget_reached);
  // Async mode: records the answer of a summary call started by ModelTurn.
  // kMore: the turn's model call is due next (it is made uncompacted if the
  // summary failed); kDone: the turn settled (interrupt, budget).
  Result<Step> RecordCompaction(const std::string& session_id, InflightCall& call);
  // Settles a turn whose compaction spent the budget.
  Status SettleBudgetAfterCompaction(const std::string& session_id);
  std::string Now() const { return FormatRfc3339(clock_->NowMicros()); }
  Status Transition(const std::string& session_id, std::string_view name, const TransitionFn& fn);
  Result<EngineState> LoadState(const std::string& session_id, const Json& session);
  Status LoadConversation(const std::string& session_id, const Json& session, const EngineState& st,
                          std::shared_ptr<Conversation>* out);
  // Records an engine failure of one session: session.error (terminal), its
  // unprocessed client events marked processed, the session idle. Never
  // throws out of a store transaction.
  void FailSession(const std::string& session_id, const std::string& what);

  store::Store* store_;
  domain::EventSink* bus_;
  models::ModelProvider* provider_;
  Clock* clock_;
  EngineOptions options_;
  WorkNeeded work_needed_;
  domain::McpTools* mcp_ = nullptr;
  domain::ServerTools* server_tools_ = nullptr;
  domain::SessionFiles* session_files_ = nullptr;
  ToolPool tool_pool_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::set<std::string> queued_;   // in queue_
  std::set<std::string> running_;  // being processed
  std::set<std::string> dirty_;    // scheduled again while running
  std::map<std::string, std::shared_ptr<CancelToken>> inflight_;  // model calls
  std::set<std::string> started_here_;  // model phases opened by this process
  std::map<std::string, std::shared_ptr<Conversation>> conversations_;
  std::map<std::string, std::shared_ptr<InflightCall>> completed_;  // answers to record
  std::map<std::string, std::shared_ptr<ToolJob>> tool_done_;       // tool jobs to record
  std::map<std::string, std::shared_ptr<ToolJob>> tool_jobs_;       // tool jobs in flight (to cancel)
  // The MCP listing made for a session's due model call, by the call's
  // span id (a listing for another span is stale).
  std::map<std::string, std::pair<std::string, domain::McpListing>> listings_;
  std::map<std::string, std::vector<std::function<void()>>> notices_;  // retry notices to write
  std::set<std::string> awaiting_;  // sessions whose CallAsync or tool job has not completed
  // The next ModelTurn of a session makes its call without compacting when
  // the transcript base is still this one (set after a summary call: a
  // compaction was just applied, or it failed). One-shot.
  std::map<std::string, int64_t> skip_compaction_;
  int calls_outstanding_ = 0;  // CallAsync or tool jobs started, completion not yet seen
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace warren::engine
