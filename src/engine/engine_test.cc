// Engine unit tests against a real SqliteStore in a temp dir and the
// scripted model: inputs of the wrong type, poisoned events already in the
// log, and a failure inside one session that must not stop the others.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <thread>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>

#include "common/ids.h"
#include "domain/pricing.h"
#include "models/scripted_provider.h"
#include "store/sqlite_store.h"

namespace warren::engine {
namespace {

namespace fs = std::filesystem;

constexpr const char* kScript = R"({"rules": [
  {"when": {"user": "Summarise the conversation above"}, "reply": "SUMMARY"},
  {"when": {"user": "turn"}, "reply": "ok yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"},
  {"when": {"user": "list"}, "reply": {"text": "Listing.", "tool_calls": [{"name": "bash", "input": {"command": "ls"}}]}},
  {"when": {"tool_name": "bash"}, "reply": "Files: {{tool_result}}"},
  {"when": {"user": "search docs"}, "reply": {"text": "Searching.", "tool_calls": [{"name": "mcp__docs__search", "input": {"q": "x"}}]}},
  {"when": {"user": "six searches"}, "reply": {"tool_calls": [
    {"name": "mcp__docs__search", "input": {"q": "1"}}, {"name": "mcp__docs__search", "input": {"q": "2"}},
    {"name": "mcp__docs__search", "input": {"q": "3"}}, {"name": "mcp__docs__search", "input": {"q": "4"}},
    {"name": "mcp__docs__search", "input": {"q": "5"}}, {"name": "mcp__docs__search", "input": {"q": "6"}}]}},
  {"when": {"user": "two searches"}, "reply": {"tool_calls": [
    {"name": "mcp__docs__search", "input": {"q": "1"}}, {"name": "mcp__docs__search", "input": {"q": "2"}}]}},
  {"when": {"user": "loop forever"}, "reply": {"tool_calls": [{"name": "mcp__docs__search", "input": {"q": "l"}}]}},
  {"when": {"last_user": "loop forever", "tool_name": "mcp__docs__search"}, "reply": {"tool_calls": [{"name": "mcp__docs__search", "input": {"q": "l"}}]}},
  {"when": {"tool_name": "mcp__docs__search"}, "reply": "Found: {{tool_result}}"},
  {"when": {"user": "fetch two"}, "reply": {"tool_calls": [{"name": "web_fetch", "input": {"url": "https://example.com/a"}},
    {"name": "web_fetch", "input": {"url": "https://example.com/b"}}]}},
  {"when": {"user": "fetch it"}, "reply": {"tool_calls": [{"name": "web_fetch", "input": {"url": "https://example.com/"}}]}},
  {"when": {"user": "grab the long page"}, "reply": {"tool_calls": [{"name": "web_fetch", "input": {"url": "https://example.com/long"}}]}},
  {"when": {"user": "huge lookup"}, "reply": {"tool_calls": [{"name": "mcp__docs__search", "input": {"q": "big"}}]}},
  {"when": {"tool_name": "web_fetch"}, "reply": "Fetched: {{tool_result}}"}
]})";

// The McpTools port's fake: server "docs" has one tool; server "dead" fails.
class FakeMcp final : public domain::McpTools {
 public:
  domain::McpListing ListTools(const Json&, const CancelToken*) override {
    domain::McpListing l;
    l.tools.push_back({"mcp__docs__search", "docs", "search", "Searches the docs", {{"type", "object"}}});
    if (!dead_reported_.exchange(true))
      l.failures.push_back({"dead", "mcp_connection_failed_error", "MCP server 'dead': connection refused"});
    return l;
  }
  domain::McpCallOutcome CallTool(const Json&, const std::string& server, const std::string& tool, const Json& input,
                                  const CancelToken*) override {
    calls++;
    domain::McpCallOutcome o;
    if (input.value("q", "") == "big") {
      // As the gateway answers an output over its cut: a preview, a note,
      // and the whole text beside them.
      o.content = Json::array({{{"type", "text"}, {"text", "AAAAAAAAAA"}},
                               {{"type", "text"}, {"text", "[output truncated: the tool returned 30 bytes]"}}});
      o.full_text = "AAAAAAAAAABBBBBBBBBBCCCCCCCCCC";
      return o;
    }
    o.content = Json::array({{{"type", "text"}, {"text", server + "/" + tool + " result for " + input.value("q", "")}}});
    return o;
  }
  void ForgetSession(const std::string&) override {}
  std::atomic<int> calls{0};

 private:
  std::atomic<bool> dead_reported_{false};
};

// Holds every call until released (or cancelled), counting how many run at once.
class GatedMcp final : public domain::McpTools {
 public:
  domain::McpListing ListTools(const Json& session, const CancelToken* cancel) override {
    {
      // A server slow to list: held until released (or cancelled).
      std::unique_lock<std::mutex> lock(mu);
      for (const Json& srv : session["agent"]["mcp_servers"]) listed[srv.value("name", "")]++;
      listing++;
      cv.notify_all();
      while (block_list && !(cancel && cancel->cancelled())) cv.wait_for(lock, std::chrono::milliseconds(5));
      listing--;
    }
    domain::McpListing l;
    l.tools.push_back({"mcp__docs__search", "docs", "search", "Searches", {{"type", "object"}}});
    return l;
  }
  domain::McpCallOutcome CallTool(const Json&, const std::string&, const std::string&, const Json& input,
                                  const CancelToken* cancel) override {
    std::unique_lock<std::mutex> lock(mu);
    inflight++;
    max_inflight = std::max(max_inflight, inflight);
    cv.notify_all();
    while (!released && !(cancel && cancel->cancelled())) cv.wait_for(lock, std::chrono::milliseconds(5));
    inflight--;
    domain::McpCallOutcome o;
    o.content = Json::array({{{"type", "text"}, {"text", "r" + input.value("q", "")}}});
    return o;
  }
  void ForgetSession(const std::string&) override {}
  std::mutex mu;
  std::condition_variable cv;
  int inflight = 0, max_inflight = 0;
  bool released = false;
  bool block_list = false;
  int listing = 0;
  std::map<std::string, int> listed;  // ListTools asked for each server
};

// Counts the side effects of calls that finish (by their input "q"); calls
// whose q is in `hold` wait until released or cancelled, and a cancelled
// call has no side effect.
class CountingMcp final : public domain::McpTools {
 public:
  domain::McpListing ListTools(const Json&, const CancelToken*) override {
    domain::McpListing l;
    l.tools.push_back({"mcp__docs__search", "docs", "search", "Searches", {{"type", "object"}}});
    return l;
  }
  domain::McpCallOutcome CallTool(const Json&, const std::string&, const std::string&, const Json& input,
                                  const CancelToken* cancel) override {
    const std::string q = input.value("q", "");
    std::unique_lock<std::mutex> lock(mu);
    entered[q]++;
    cv.notify_all();
    while (hold.count(q) && !released && !(cancel && cancel->cancelled())) cv.wait_for(lock, std::chrono::milliseconds(5));
    domain::McpCallOutcome o;
    if (cancel && cancel->cancelled()) {
      o.is_error = true;
      o.content = Json::array({{{"type", "text"}, {"text", "The call was cancelled."}}});
      return o;
    }
    done[q]++;  // the side effect
    o.content = Json::array({{{"type", "text"}, {"text", "r" + q}}});
    return o;
  }
  void ForgetSession(const std::string&) override {}
  int Entered(const std::string& q) {
    std::lock_guard<std::mutex> lock(mu);
    return entered[q];
  }
  int Done(const std::string& q) {
    std::lock_guard<std::mutex> lock(mu);
    return done[q];
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu);
    released = true;
    cv.notify_all();
  }
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::string> hold;
  bool released = false;
  std::map<std::string, int> entered, done;
};

// The ServerTools port's fake: web_fetch answers with the URL it got.
class FakeServerTools final : public domain::ServerTools {
 public:
  bool Handles(std::string_view name) const override { return name == "web_fetch" || name == "web_search"; }
  std::optional<Json> Definition(std::string_view name) const override {
    if (name != "web_fetch") return std::nullopt;
    return Json{{"name", "web_fetch"}, {"description", "fetch"}, {"input_schema", {{"type", "object"}}}};
  }
  domain::ServerToolResult Run(std::string_view name, const Json& input, const CancelToken* cancel) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      calls.push_back(std::string(name) + " " + input.dump());
    }
    const bool held = block || (!block_url.empty() && input.value("url", std::string()) == block_url);
    if (held) {
      // A slow fetch: held until the engine cancels it.
      entered = true;
      while ((cancel == nullptr || !cancel->cancelled()) && !release)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (!release) return {Json::array({{{"type", "text"}, {"text", "cancelled"}}}), true};
    }
    domain::ServerToolResult r{Json::array({{{"type", "text"}, {"text", "page of " + input.value("url", std::string())}}}), false};
    if (input.value("url", std::string()).find("/long") != std::string::npos) r.full_text = "the whole long page";
    return r;
  }
  std::mutex mu;
  std::vector<std::string> calls;
  std::atomic<bool> block{false};
  std::atomic<bool> entered{false};
  std::atomic<bool> release{false};
  std::string block_url;  // set before the engine starts: only this URL is held
};

// The SessionFiles port's fake: a session "has a sandbox" when listed in
// `sandboxes`; writes are kept by path.
class FakeSessionFiles final : public domain::SessionFiles {
 public:
  Result<std::string> WriteToolOutput(const std::string& session_id, const std::string& kind, const std::string& name,
                                      std::string_view data) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!sandboxes.count(session_id)) return Status::NotFound("no sandbox");
    std::string path = "/tmp/warren/" + kind + "/" + name + ".txt";
    written[session_id + ":" + path] = std::string(data);
    return path;
  }
  std::mutex mu;
  std::set<std::string> sandboxes;
  std::map<std::string, std::string> written;
};

// Records what the engine publishes (the EventSink port's fake).
class RecordingSink final : public domain::EventSink {
 public:
  void Publish(const std::string&, const std::vector<store::StoredEvent>& events) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : events) published.push_back(e.body);
  }
  void PublishPreview(const std::string&, const std::string&, const Json&) override {}
  std::vector<Json> published;

 private:
  std::mutex mu_;
};

// Delegates to the scripted model, but throws when the last user text says
// "boom" (an engine-side bug stand-in: anything may throw on a thread).
class ThrowingProvider final : public models::ModelProvider {
 public:
  explicit ThrowingProvider(models::ModelProvider* inner) : inner_(inner) {}
  std::string_view name() const override { return "throwing"; }
  std::string default_model() const override { return inner_->default_model(); }
  int64_t context_window(std::string_view model) const override { return inner_->context_window(model); }
  // Runs on the engine thread that starts the call, so a throw here is an
  // engine-side failure; the summary call (the blocking Call) holds there.
  void CallAsync(models::ModelRequest request, models::ModelStreamObserver* observer, models::CallOptions options,
                 models::ModelCallback done) override {
    bool summary = !request.system.empty() && request.system[0].text.find("You compress") != std::string::npos;
    if (summary) {
      compactions++;
      if (block_compaction) {
        // Held until the caller cancels: an interrupt must reach it.
        {
          std::lock_guard<std::mutex> lock(mu_);
          entered_ = true;
        }
        cv_.notify_all();
        while (options.cancel == nullptr || !options.cancel->cancelled())
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        models::ModelError e;
        e.kind = models::ModelErrorKind::kCancelled;
        e.message = "cancelled";
        done(std::move(e));
        return;
      }
    }
    if (!summary) last_messages = request.messages.size();
    if (!request.messages.empty())
      for (const auto& b : request.messages.back().content)
        if (b.type == models::BlockType::kText && b.text.find("boom") != std::string::npos) {
          throws++;
          throw std::runtime_error("provider exploded");
        }
    inner_->CallAsync(std::move(request), observer, options, std::move(done));
  }
  bool entered() {
    std::lock_guard<std::mutex> lock(mu_);
    return entered_;
  }
  std::atomic<int> throws{0};
  std::atomic<int> compactions{0};
  std::atomic<size_t> last_messages{0};
  std::atomic<bool> block_compaction{false};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  models::ModelProvider* inner_;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/warren_engine_XXXXXX";
    dir_ = mkdtemp(tmpl);
    store_ = std::move(store::SqliteStore::Open({dir_ + "/warren.db", "NORMAL"}, Clock::Real())).value();
    models::ScriptedOptions so;
    so.script_text = kScript;
    so.context_window = 1000;  // compaction after a few "turn" messages
    scripted_ = std::move(models::NewScriptedProvider(so)).value();
    provider_ = std::make_unique<ThrowingProvider>(scripted_.get());
    Json env = {{"id", "env_1"}, {"type", "environment"}, {"name", "e"}, {"config", {{"type", "self_hosted"}}},
                {"created_at", "2026-01-01T00:00:00Z"}, {"archived_at", nullptr}};
    ASSERT_TRUE(store_->CreateEnvironment(env).ok());
  }
  void TearDown() override {
    if (engine_) engine_->Stop();
    engine_.reset();
    fs::remove_all(dir_);
  }

  void StartEngine(domain::McpTools* mcp = nullptr, EngineOptions options = {},
                   domain::SessionFiles* files = nullptr) {
    if (engine_) engine_->Stop();
    engine_ = std::make_unique<Engine>(store_.get(), &bus_, provider_.get(), Clock::Real(), options);
    if (mcp != nullptr) engine_->set_mcp_tools(mcp);
    if (files != nullptr) engine_->set_session_files(files);
    engine_->set_server_tools(&server_tools_);
    ASSERT_TRUE(engine_->Start().ok());
  }

  std::string NewSession(const std::string& model = "scripted", const std::string& mcp_policy = "",
                         const std::string& web_fetch_policy = "always_allow") {
    Json tools = Json::array({{{"type", "agent_toolset_20260401"},
                               {"configs", Json::array({{{"name", "bash"},
                                                         {"enabled", true},
                                                         {"permission_policy", {{"type", "always_allow"}}}},
                                                        {{"name", "web_fetch"},
                                                         {"enabled", true},
                                                         {"permission_policy", {{"type", web_fetch_policy}}}}})}}});
    Json agent = {{"id", "agent_1"}, {"version", 1}, {"type", "agent"}, {"name", "a"},
                  {"model", {{"id", model}}}, {"system", nullptr}, {"tools", tools}};
    if (!mcp_policy.empty()) {
      agent["mcp_servers"] = {{{"type", "url"}, {"name", "docs"}, {"url", "http://docs"}},
                              {{"type", "url"}, {"name", "dead"}, {"url", "http://dead"}}};
      for (const char* name : {"docs", "dead"})
        agent["tools"].push_back({{"type", "mcp_toolset"},
                                  {"mcp_server_name", name},
                                  {"default_config", {{"enabled", true}, {"permission_policy", {{"type", mcp_policy}}}}},
                                  {"configs", Json::array()}});
    }
    std::string id = NewId(idprefix::kSession);
    Json s = {{"id", id}, {"type", "session"}, {"status", "idle"}, {"environment_id", "env_1"},
              {"agent", agent}, {"usage", Json::object()}, {"budget", nullptr}, {"archived_at", nullptr},
              {"created_at", "2026-01-01T00:00:00Z"}, {"updated_at", "2026-01-01T00:00:00Z"}, {"metadata", Json::object()}};
    auto r = store_->CreateSession(s, {}, nullptr);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return id;
  }

  // Appends client events as the API would (processed_at null) and tells
  // the engine if it runs.
  void Send(const std::string& sid, std::vector<Json> events, bool wait = true) {
    for (Json& e : events) {
      if (!e.contains("id")) e["id"] = NewId(idprefix::kEvent);
      e["processed_at"] = nullptr;
    }
    auto stored = store_->AppendEvents(sid, nullptr, events, nullptr);
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    if (engine_) {
      engine_->OnClientEvents(*store_->GetSession(sid), *stored);
      if (wait) engine_->WaitIdle();
    }
  }

  static Json UserText(const std::string& text) {
    return {{"type", "user.message"}, {"content", Json::array({{{"type", "text"}, {"text", text}}})}};
  }

  std::vector<Json> Events(const std::string& sid) {
    auto page = store_->ListEvents(sid, {}, store::PageSpec{1000, store::Order::kAsc});
    EXPECT_TRUE(page.ok());
    return page.ok() ? page->items : std::vector<Json>{};
  }
  std::vector<Json> OfType(const std::string& sid, const std::string& type) {
    std::vector<Json> out;
    for (const Json& e : Events(sid))
      if (e["type"] == type) out.push_back(e);
    return out;
  }
  std::string Status(const std::string& sid) { return (*store_->GetSession(sid))["status"].get<std::string>(); }
  // Every client event carries processed_at.
  bool AllProcessed(const std::string& sid) {
    for (const Json& e : Events(sid)) {
      std::string t = e["type"];
      if ((t.rfind("user.", 0) == 0 || t == "system.message") && e["processed_at"].is_null()) return false;
    }
    return true;
  }

  std::string dir_;
  std::unique_ptr<store::SqliteStore> store_;
  RecordingSink bus_;
  std::unique_ptr<models::ModelProvider> scripted_;
  std::unique_ptr<ThrowingProvider> provider_;
  std::unique_ptr<Engine> engine_;
  FakeServerTools server_tools_;
};

// web_fetch runs in the service on a self_hosted environment: no worker, no
// requires_action; the result is an agent.tool_result and goes to the model.
TEST_F(EngineTest, ServerToolsRunInTheServiceAndFeedTheModel) {
  StartEngine();
  std::string sid = NewSession();
  Send(sid, {UserText("fetch it")});
  auto uses = OfType(sid, "agent.tool_use");
  ASSERT_EQ(uses.size(), 1u);
  EXPECT_EQ(uses[0]["name"], "web_fetch");
  auto results = OfType(sid, "agent.tool_result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["tool_use_id"], uses[0]["id"]);
  EXPECT_EQ(results[0]["is_error"], false);
  EXPECT_EQ(results[0]["content"][0]["text"], "page of https://example.com/");
  auto msgs = OfType(sid, "agent.message");
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back()["content"][0]["text"], "Fetched: page of https://example.com/");
  for (const Json& idle : OfType(sid, "session.status_idle")) EXPECT_EQ(idle["stop_reason"]["type"], "end_turn");
  EXPECT_EQ(Status(sid), "idle");
  EXPECT_EQ((*store_->GetSession(sid))["usage"]["server_tool_use"]["web_fetch_requests"], 1);
  std::lock_guard<std::mutex> lock(server_tools_.mu);
  EXPECT_EQ(server_tools_.calls, std::vector<std::string>{R"(web_fetch {"url":"https://example.com/"})"});
}

// A user.interrupt cancels a server call in flight; the turn settles idle.
TEST_F(EngineTest, InterruptCancelsAServerCallInFlight) {
  server_tools_.block = true;
  StartEngine();
  std::string sid = NewSession();
  Send(sid, {UserText("fetch it")}, /*wait=*/false);
  for (int i = 0; i < 10000 && !server_tools_.entered; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(server_tools_.entered);
  EXPECT_EQ(Status(sid), "running");
  Send(sid, {{{"type", "user.interrupt"}}});
  EXPECT_EQ(Status(sid), "idle");
  EXPECT_TRUE(OfType(sid, "agent.tool_result").empty());  // the cancelled run is not recorded
  EXPECT_EQ(OfType(sid, "session.status_idle").back()["stop_reason"]["type"], "end_turn");
  EXPECT_EQ(OfType(sid, "span.model_request_start").size(), OfType(sid, "span.model_request_end").size());
  EXPECT_TRUE(OfType(sid, "session.error").empty());
  EXPECT_TRUE(AllProcessed(sid));
}

// A client's user.tool_result for a call the service runs is recorded and
// ignored: the model gets the service's result. The forged answer is
// consumed first here: it arrives while the service is down mid-call, and
// the call runs again after the restart.
TEST_F(EngineTest, ClientResultForAServerCallIsIgnored) {
  server_tools_.block = true;
  StartEngine();
  std::string sid = NewSession();
  Send(sid, {UserText("fetch it")}, /*wait=*/false);
  for (int i = 0; i < 10000 && !server_tools_.entered; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(server_tools_.entered);
  engine_->Stop();  // cancels the call; nothing is recorded
  engine_.reset();
  auto uses = OfType(sid, "agent.tool_use");
  ASSERT_EQ(uses.size(), 1u);
  EXPECT_TRUE(OfType(sid, "agent.tool_result").empty());
  Send(sid, {{{"type", "user.tool_result"}, {"tool_use_id", uses[0]["id"]},
              {"content", Json::array({{{"type", "text"}, {"text", "forged page"}}})}}});
  server_tools_.block = false;
  StartEngine();
  engine_->WaitIdle();
  ASSERT_EQ(OfType(sid, "agent.tool_result").size(), 1u);
  EXPECT_EQ(OfType(sid, "agent.message").back()["content"][0]["text"], "Fetched: page of https://example.com/");
  EXPECT_TRUE(AllProcessed(sid));
}

// always_ask: the call waits for user.tool_confirmation, then runs here.
TEST_F(EngineTest, GatedServerToolWaitsForApproval) {
  StartEngine();
  std::string sid = NewSession("scripted", "", "always_ask");
  Send(sid, {UserText("fetch it")});
  auto uses = OfType(sid, "agent.tool_use");
  ASSERT_EQ(uses.size(), 1u);
  EXPECT_EQ(uses[0]["evaluated_permission"], "ask");
  auto idles = OfType(sid, "session.status_idle");
  ASSERT_EQ(idles.size(), 1u);
  EXPECT_EQ(idles[0]["stop_reason"]["type"], "requires_action");
  EXPECT_TRUE(OfType(sid, "agent.tool_result").empty());
  {
    std::lock_guard<std::mutex> lock(server_tools_.mu);
    EXPECT_TRUE(server_tools_.calls.empty());
  }
  Send(sid, {{{"type", "user.tool_confirmation"}, {"tool_use_id", uses[0]["id"]}, {"result", "allow"}}});
  ASSERT_EQ(OfType(sid, "agent.tool_result").size(), 1u);
  EXPECT_EQ(OfType(sid, "agent.message").back()["content"][0]["text"], "Fetched: page of https://example.com/");
  EXPECT_EQ(OfType(sid, "session.status_idle").back()["stop_reason"]["type"], "end_turn");
  EXPECT_EQ(OfType(sid, "session.status_running").size(), 2u);
  // A denied one never runs.
  std::string sid2 = NewSession("scripted", "", "always_ask");
  Send(sid2, {UserText("fetch it")});
  auto use2 = OfType(sid2, "agent.tool_use");
  ASSERT_EQ(use2.size(), 1u);
  Send(sid2, {{{"type", "user.tool_confirmation"}, {"tool_use_id", use2[0]["id"]}, {"result", "deny"}}});
  std::lock_guard<std::mutex> lock(server_tools_.mu);
  EXPECT_EQ(server_tools_.calls.size(), 1u);
}

// The crash reproducer of issue 14: a tool result with "is_error": null used
// to throw inside the store mutator (std::terminate, and again on restart).
TEST_F(EngineTest, NullIsErrorToolResultSettlesTheTurn) {
  StartEngine();
  std::string sid = NewSession();
  Send(sid, {UserText("list files")});
  auto uses = OfType(sid, "agent.tool_use");
  ASSERT_EQ(uses.size(), 1u);
  Send(sid, {{{"type", "user.tool_result"}, {"tool_use_id", uses[0]["id"]}, {"is_error", nullptr},
              {"content", Json::array({{{"type", "text"}, {"text", "a.txt"}}})}}});
  EXPECT_EQ(Status(sid), "idle");
  EXPECT_TRUE(AllProcessed(sid));
  auto msgs = OfType(sid, "agent.message");
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[1]["content"][0]["text"], "Files: a.txt");  // null is_error reads as false
  EXPECT_TRUE(OfType(sid, "session.error").empty());
}

// Events of the right names with wrong types at every field, already in the
// log when the service starts (the restart half of the crash loop).
TEST_F(EngineTest, PoisonedEventsInTheLogAreProcessedOnceAtStart) {
  std::string sid = NewSession();
  Send(sid, {UserText("list files")});  // engine not running yet: stays unprocessed
  StartEngine();
  engine_->WaitIdle();
  auto uses = OfType(sid, "agent.tool_use");
  ASSERT_EQ(uses.size(), 1u);
  engine_->Stop();
  engine_.reset();
  const std::string use_id = uses[0]["id"];
  Send(sid, {
                {{"type", "user.tool_result"}, {"tool_use_id", Json::object()}, {"is_error", "yes"}, {"content", 7}},
                {{"type", "user.tool_result"}, {"tool_use_id", use_id}, {"is_error", 3}, {"content", "text"}},
                {{"type", "user.tool_confirmation"}, {"tool_use_id", use_id}, {"result", 5}, {"deny_message", Json::array()}},
                {{"type", "user.custom_tool_result"}, {"custom_tool_use_id", nullptr}, {"content", {{"a", 1}}}},
                {{"type", "user.message"}, {"content", "not an array"}},
                {{"type", "user.message"}, {"content", Json::array({1, nullptr, {{"type", 5}}, {{"type", "text"}, {"text", 9}}})}},
                {{"type", "system.message"}, {"content", nullptr}},
                {{"type", "user.interrupt"}, {"session_thread_id", 12}},
            });
  StartEngine();
  engine_->WaitIdle();
  EXPECT_TRUE(AllProcessed(sid));
  EXPECT_EQ(Status(sid), "idle");
  const size_t settled = Events(sid).size();
  // A second start finds nothing left to do.
  StartEngine();
  engine_->WaitIdle();
  EXPECT_EQ(Events(sid).size(), settled);
  // Events that do not parse under the client-event schema are skipped, but
  // the unreadable answer to the waiting call answers it as an error (the
  // store keeps one answer per call), so the turn went on.
  auto rows = store_->ReadTranscript(sid, 0, 100);
  ASSERT_TRUE(rows.ok());
  EXPECT_NE(DumpJson(Json::array({(*rows)[2].content})).find("could not be read"), std::string::npos);
  EXPECT_EQ(OfType(sid, "agent.message").size(), 2u);
  // And the session still works.
  Send(sid, {UserText("hello again")});
  EXPECT_EQ(Status(sid), "idle");
  EXPECT_EQ(OfType(sid, "session.status_idle").back()["stop_reason"]["type"], "end_turn");
}

// An exception on an engine thread marks that session failed; the others go
// on.
TEST_F(EngineTest, AThrowFailsOneSessionOnly) {
  StartEngine();
  std::string bad = NewSession();
  std::string good = NewSession();
  Send(bad, {UserText("boom")});
  Send(good, {UserText("hello")});
  EXPECT_EQ(provider_->throws.load(), 1);
  auto errors = OfType(bad, "session.error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["error"]["type"], "unknown_error");
  EXPECT_EQ(errors[0]["error"]["retry_status"]["type"], "terminal");
  EXPECT_EQ(Status(bad), "idle");
  auto ends = OfType(bad, "span.model_request_end");
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0]["is_error"], true);
  EXPECT_EQ(OfType(bad, "session.status_idle").back()["stop_reason"]["type"], "retries_exhausted");

  EXPECT_TRUE(OfType(good, "session.error").empty());
  EXPECT_EQ(OfType(good, "agent.message").size(), 1u);
  EXPECT_EQ(Status(good), "idle");

  // The failure is recorded once, not replayed at the next start.
  StartEngine();
  engine_->WaitIdle();
  EXPECT_EQ(OfType(bad, "session.error").size(), 1u);
  EXPECT_EQ(provider_->throws.load(), 1);
}

// A damaged engine state left in the session body by an older binary
// (wrong types everywhere) reads as defaults instead of throwing.
TEST_F(EngineTest, DamagedEngineStateDoesNotThrow) {
  StartEngine();
  std::string sid = NewSession();
  auto r = store_->UpdateSession(
      sid,
      [](const Json& cur, std::vector<Json>*) -> Result<Json> {
        Json next = cur;
        next["_engine"] = {{"messages", "x"}, {"consumed_seq", "y"}, {"phase", 3}, {"pending", {{"a", 1}}},
                           {"calls_this_turn", nullptr}, {"cost_micros", Json::array()}};
        next["usage"] = "none";
        return next;
      },
      nullptr);
  ASSERT_TRUE(r.ok());
  Send(sid, {UserText("hello")});
  EXPECT_EQ(Status(sid), "idle");
  EXPECT_EQ(OfType(sid, "agent.message").size(), 1u);
  EXPECT_TRUE(AllProcessed(sid));
}

std::string Turn(int n) { return "turn " + std::to_string(n) + " " + std::string(500, 'x'); }

// An interrupt during compaction cancels the summary call: nothing is
// compacted, the span closes as an error, and the session settles once.
TEST_F(EngineTest, InterruptCancelsCompaction) {
  StartEngine();
  std::string sid = NewSession();
  provider_->block_compaction = true;
  bool entered = false;
  size_t idles = 0;
  for (int n = 1; n < 20 && !entered; n++) {
    idles = OfType(sid, "session.status_idle").size();
    Send(sid, {UserText(Turn(n))}, /*wait=*/false);
    auto idle = std::async(std::launch::async, [this] { engine_->WaitIdle(); });
    while (idle.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) {
      if (provider_->entered()) {
        entered = true;
        Send(sid, {{{"type", "user.interrupt"}}});  // cancels the held summary call
        break;
      }
    }
    idle.wait();
  }
  ASSERT_TRUE(entered) << "no compaction in 20 turns";
  EXPECT_TRUE(OfType(sid, "agent.thread_context_compacted").empty());
  auto ends = OfType(sid, "span.model_request_end");
  ASSERT_FALSE(ends.empty());
  EXPECT_EQ(ends.back()["is_error"], true);
  EXPECT_EQ(Status(sid), "idle");
  EXPECT_TRUE(AllProcessed(sid));
  auto idle = OfType(sid, "session.status_idle");
  ASSERT_EQ(idle.size(), idles + 1);
  EXPECT_EQ(idle.back()["stop_reason"]["type"], "end_turn");
}

// The summary call's tokens are priced into the session's list cost (and so
// count against its budget) like any other model call.
TEST_F(EngineTest, CompactionCostCountsInListCost) {
  StartEngine();
  std::string sid = NewSession("claude-haiku-4-5");
  for (int n = 1; n < 20 && provider_->compactions.load() == 0; n++) Send(sid, {UserText(Turn(n))});
  ASSERT_GT(provider_->compactions.load(), 0);
  Json s = *store_->GetSession(sid);
  const Json& u = s["usage"];
  auto price = domain::PriceFor("claude-haiku-4-5");
  ASSERT_TRUE(price.has_value());
  // Haiku 4.5 prices are whole micro-dollars per token: no rounding.
  int64_t expected = domain::CostMicros(*price, u["input_tokens"].get<int64_t>(), u["output_tokens"].get<int64_t>(),
                                        u["cache_read_input_tokens"].get<int64_t>(),
                                        u["cache_creation"]["ephemeral_5m_input_tokens"].get<int64_t>());
  auto st = store_->GetEngineState(sid);
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_EQ((*st)->cost_micros, expected);
  EXPECT_EQ(s["usage"]["list_cost"], domain::MonetaryAmount(expected));
}

// The conversation goes into the transcript table row by row; rows are never
// rewritten, and the session body carries no engine state.
TEST_F(EngineTest, TranscriptIsAppendOnly) {
  StartEngine();
  std::string sid = NewSession();
  for (int i = 0; i < 3; i++) Send(sid, {UserText("hello " + std::to_string(i))});
  auto first = store_->ReadTranscript(sid, 0, 100);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 6u);
  for (size_t i = 0; i < first->size(); i++) {
    EXPECT_EQ((*first)[i].idx, static_cast<int64_t>(i));
    EXPECT_EQ((*first)[i].role, i % 2 == 0 ? "user" : "assistant");
  }
  for (int i = 3; i < 5; i++) Send(sid, {UserText("hello " + std::to_string(i))});
  auto later = store_->ReadTranscript(sid, 0, 100);
  ASSERT_TRUE(later.ok());
  ASSERT_EQ(later->size(), 10u);
  for (size_t i = 0; i < first->size(); i++) EXPECT_EQ((*later)[i].content, (*first)[i].content);
  auto st = store_->GetEngineState(sid);
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_EQ((*st)->phase, "idle");
  EXPECT_EQ((*st)->transcript_next, 10);
  EXPECT_EQ((*st)->transcript_base, 0);
  EXPECT_GT((*st)->consumed_seq, 0);
  EXPECT_FALSE(store_->GetSession(sid)->contains("_engine"));
  // The model saw the whole conversation: 9 messages before its 5th answer.
  EXPECT_EQ(provider_->last_messages.load(), 9u);
}

// Compaction writes a new base (a summary and a later first row) and leaves
// the rows below it as they were.
TEST_F(EngineTest, CompactionWritesANewBase) {
  StartEngine();
  std::string sid = NewSession();
  for (int n = 1; n < 20 && provider_->compactions.load() == 0; n++) Send(sid, {UserText(Turn(n))});
  ASSERT_GT(provider_->compactions.load(), 0);
  auto st = store_->GetEngineState(sid);
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_GT((*st)->transcript_base, 0);
  EXPECT_NE((*st)->summary.find("SUMMARY"), std::string::npos);
  auto rows = store_->ReadTranscript(sid, 0, 1000);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(static_cast<int64_t>(rows->size()), (*st)->transcript_next);
  EXPECT_NE((*rows)[0].content.dump().find("turn 1 "), std::string::npos);
  // The next turn sends the summary, then the rows from the base.
  Send(sid, {UserText("hello after compaction")});
  EXPECT_LT(provider_->last_messages.load(), static_cast<size_t>((*st)->transcript_next));
}

// A session stepped by an older binary keeps its conversation in the session
// body ("_engine"); its next step moves it to the engine's tables.
TEST_F(EngineTest, LegacyStateIsMigrated) {
  StartEngine();
  std::string sid = NewSession();
  auto r = store_->UpdateSession(
      sid,
      [](const Json& cur, std::vector<Json>*) -> Result<Json> {
        Json next = cur;
        next["_engine"] = {{"messages", Json::array({{{"role", "user"}, {"content", "hello old"}},
                                                     {{"role", "assistant"},
                                                      {"content", Json::array({{{"type", "text"}, {"text", "old answer"}}})}}})},
                           {"consumed_seq", 0}, {"phase", "idle"}, {"pending", Json::array()},
                           {"model_request_start_id", nullptr}, {"calls_this_turn", 0}, {"cost_micros", 7}};
        return next;
      },
      nullptr);
  ASSERT_TRUE(r.ok());
  Send(sid, {UserText("hello again")});
  EXPECT_EQ(provider_->last_messages.load(), 3u);  // the old turn, then the new message
  auto st = store_->GetEngineState(sid);
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_EQ((*st)->cost_micros, 7);
  EXPECT_EQ((*st)->transcript_next, 4);
  auto rows = store_->ReadTranscript(sid, 0, 100);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ((*rows)[0].content[0]["text"], "hello old");
  EXPECT_FALSE(store_->GetSession(sid)->contains("_engine"));
}

}  // namespace
}  // namespace warren::engine

namespace warren::engine {
namespace {

TEST_F(EngineTest, McpToolIsCalledByTheServiceAndRecorded) {
  FakeMcp mcp;
  StartEngine(&mcp);
  std::string sid = NewSession("scripted", "always_allow");
  Send(sid, {UserText("search docs")});
  auto uses = OfType(sid, "agent.mcp_tool_use");
  ASSERT_EQ(uses.size(), 1u);
  EXPECT_EQ(uses[0]["name"], "search");
  EXPECT_EQ(uses[0]["mcp_server_name"], "docs");
  EXPECT_EQ(uses[0]["evaluated_permission"], "allow");
  EXPECT_EQ(uses[0]["input"]["q"], "x");
  auto results = OfType(sid, "agent.mcp_tool_result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["mcp_tool_use_id"], uses[0]["id"]);
  EXPECT_EQ(results[0]["content"][0]["text"], "docs/search result for x");
  EXPECT_EQ(results[0]["is_error"], false);
  // The dead server is reported once, naming it, and the turn went on.
  auto errors = OfType(sid, "session.error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["error"]["type"], "mcp_connection_failed_error");
  EXPECT_EQ(errors[0]["error"]["mcp_server_name"], "dead");
  auto msgs = OfType(sid, "agent.message");
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back()["content"][0]["text"], "Found: docs/search result for x");
  EXPECT_TRUE(OfType(sid, "agent.tool_use").empty());
  // The session never idled for the client while the service ran the call.
  for (const Json& idle : OfType(sid, "session.status_idle")) EXPECT_EQ(idle["stop_reason"]["type"], "end_turn");
  EXPECT_EQ(Status(sid), "idle");
}

TEST_F(EngineTest, McpAlwaysAskWaitsForConfirmation) {
  FakeMcp mcp;
  StartEngine(&mcp);
  std::string sid = NewSession("scripted", "always_ask");
  Send(sid, {UserText("search docs")});
  auto uses = OfType(sid, "agent.mcp_tool_use");
  ASSERT_EQ(uses.size(), 1u);
  EXPECT_EQ(uses[0]["evaluated_permission"], "ask");
  EXPECT_EQ(mcp.calls.load(), 0);
  auto idles = OfType(sid, "session.status_idle");
  ASSERT_FALSE(idles.empty());
  EXPECT_EQ(idles.back()["stop_reason"]["type"], "requires_action");
  EXPECT_EQ(idles.back()["stop_reason"]["event_ids"][0], uses[0]["id"]);
  Send(sid, {{{"type", "user.tool_confirmation"}, {"tool_use_id", uses[0]["id"]}, {"result", "allow"}}});
  EXPECT_EQ(mcp.calls.load(), 1);
  ASSERT_EQ(OfType(sid, "agent.mcp_tool_result").size(), 1u);
  EXPECT_EQ(OfType(sid, "agent.message").back()["content"][0]["text"], "Found: docs/search result for x");
  EXPECT_EQ(Status(sid), "idle");
}

TEST_F(EngineTest, McpDenyNeverCallsTheServer) {
  FakeMcp mcp;
  StartEngine(&mcp);
  std::string sid = NewSession("scripted", "always_ask");
  Send(sid, {UserText("search docs")});
  auto uses = OfType(sid, "agent.mcp_tool_use");
  ASSERT_EQ(uses.size(), 1u);
  Send(sid, {{{"type", "user.tool_confirmation"}, {"tool_use_id", uses[0]["id"]}, {"result", "deny"}, {"deny_message", "no"}}});
  EXPECT_EQ(mcp.calls.load(), 0);
  EXPECT_EQ(OfType(sid, "agent.message").back()["content"][0]["text"], "Found: no");
}

TEST_F(EngineTest, McpCallsOfOneSessionRunConcurrentlyUpToTheBound) {
  GatedMcp mcp;
  StartEngine(&mcp);  // default mcp_concurrency: 4
  std::string sid = NewSession("scripted", "always_allow");
  Send(sid, {UserText("six searches")}, /*wait=*/false);
  {
    std::unique_lock<std::mutex> lock(mcp.mu);
    ASSERT_TRUE(mcp.cv.wait_for(lock, std::chrono::seconds(20), [&] { return mcp.inflight == 4; }));
  }
  // Give an unbounded engine every chance to start a fifth call.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  {
    std::lock_guard<std::mutex> lock(mcp.mu);
    EXPECT_EQ(mcp.max_inflight, 4);
    mcp.released = true;
  }
  engine_->WaitIdle();
  EXPECT_EQ(OfType(sid, "agent.mcp_tool_result").size(), 6u);
  EXPECT_EQ(OfType(sid, "agent.message").back()["content"][0]["text"], "Found: r1\nr2\nr3\nr4\nr5\nr6");
  EXPECT_EQ(mcp.max_inflight, 4);
}

TEST_F(EngineTest, InterruptCancelsMcpCallsInFlight) {
  GatedMcp mcp;
  StartEngine(&mcp);
  std::string sid = NewSession("scripted", "always_allow");
  Send(sid, {UserText("six searches")}, /*wait=*/false);
  {
    std::unique_lock<std::mutex> lock(mcp.mu);
    ASSERT_TRUE(mcp.cv.wait_for(lock, std::chrono::seconds(20), [&] { return mcp.inflight == 4; }));
  }
  Send(sid, {{{"type", "user.interrupt"}}});  // waits until the engine is idle: the calls were cancelled
  EXPECT_EQ(Status(sid), "idle");
  EXPECT_TRUE(OfType(sid, "agent.mcp_tool_result").empty()) << "interrupted calls record no result";
  auto idles = OfType(sid, "session.status_idle");
  ASSERT_FALSE(idles.empty());
  EXPECT_EQ(idles.back()["stop_reason"]["type"], "end_turn");
  EXPECT_TRUE(AllProcessed(sid));
}

TEST_F(EngineTest, AModelLoopingOnMcpCallsIsStopped) {
  FakeMcp mcp;
  StartEngine(&mcp);
  std::string sid = NewSession("scripted", "always_allow");
  Send(sid, {UserText("loop forever")});
  EXPECT_EQ(mcp.calls.load(), 100);  // EngineOptions::max_model_calls_per_turn
  auto errors = OfType(sid, "session.error");
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors.back()["error"]["message"].get<std::string>().find("100 calls in one turn"), std::string::npos);
  EXPECT_EQ(Status(sid), "idle");
}


// ---- service-run calls hold no engine thread (tool pool)

// Polls `pred` (a state the engine reaches on other threads); the bound
// guards against a hang, it is not a timing assertion.
template <typename Pred>
bool Eventually(Pred pred) {
  for (int i = 0; i < 30000; i++) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

EngineOptions OneThread() {
  EngineOptions o;
  o.threads = 1;
  return o;
}

// With one engine thread, an MCP call that does not answer leaves that
// thread free: another session's whole turn completes while the call is
// still pending, then the call's result is recorded as before.
TEST_F(EngineTest, SlowMcpCallDoesNotStallOtherSessionsWithOneEngineThread) {
  GatedMcp mcp;
  StartEngine(&mcp, OneThread());
  std::string slow = NewSession("scripted", "always_allow");
  Send(slow, {UserText("search docs")}, /*wait=*/false);
  {
    std::unique_lock<std::mutex> lock(mcp.mu);
    ASSERT_TRUE(mcp.cv.wait_for(lock, std::chrono::seconds(30), [&] { return mcp.inflight == 1; }));
  }
  std::string other = NewSession();
  Send(other, {UserText("turn")}, /*wait=*/false);
  ASSERT_TRUE(Eventually([&] { return Status(other) == "idle" && !OfType(other, "agent.message").empty(); }))
      << "the other session's turn did not complete while the MCP call was pending";
  {
    std::lock_guard<std::mutex> lock(mcp.mu);
    EXPECT_EQ(mcp.inflight, 1) << "the slow call is still pending";
    EXPECT_TRUE(OfType(slow, "agent.mcp_tool_result").empty());
    EXPECT_EQ(Status(slow), "running");
    mcp.released = true;
  }
  engine_->WaitIdle();
  ASSERT_EQ(OfType(slow, "agent.mcp_tool_result").size(), 1u);
  EXPECT_EQ(OfType(slow, "agent.message").back()["content"][0]["text"], "Found: rx");
  EXPECT_EQ(OfType(other, "session.status_idle").back()["stop_reason"]["type"], "end_turn");
}

// The same for a slow web_fetch.
TEST_F(EngineTest, SlowFetchDoesNotStallOtherSessionsWithOneEngineThread) {
  server_tools_.block = true;
  StartEngine(nullptr, OneThread());
  std::string slow = NewSession();
  Send(slow, {UserText("fetch it")}, /*wait=*/false);
  ASSERT_TRUE(Eventually([&] { return server_tools_.entered.load(); }));
  std::string other = NewSession();
  Send(other, {UserText("turn")}, /*wait=*/false);
  ASSERT_TRUE(Eventually([&] { return Status(other) == "idle" && !OfType(other, "agent.message").empty(); }))
      << "the other session's turn did not complete while the fetch was pending";
  EXPECT_TRUE(OfType(slow, "agent.tool_result").empty()) << "the fetch is still pending";
  server_tools_.release = true;
  engine_->WaitIdle();
  ASSERT_EQ(OfType(slow, "agent.tool_result").size(), 1u);
  EXPECT_EQ(OfType(slow, "agent.message").back()["content"][0]["text"], "Fetched: page of https://example.com/");
}

// The MCP listing before a model call is a tool job too: a server slow to
// list does not hold the engine thread, and an interrupt during the listing
// settles the turn with the model span closed.
TEST_F(EngineTest, SlowMcpListingDoesNotStallAndAnInterruptSettlesIt) {
  GatedMcp mcp;
  mcp.block_list = true;
  StartEngine(&mcp, OneThread());
  std::string slow = NewSession("scripted", "always_allow");
  Send(slow, {UserText("search docs")}, /*wait=*/false);
  {
    std::unique_lock<std::mutex> lock(mcp.mu);
    ASSERT_TRUE(mcp.cv.wait_for(lock, std::chrono::seconds(30), [&] { return mcp.listing >= 1; }));
  }
  std::string other = NewSession();
  Send(other, {UserText("turn")}, /*wait=*/false);
  ASSERT_TRUE(Eventually([&] { return Status(other) == "idle" && !OfType(other, "agent.message").empty(); }));
  Send(slow, {{{"type", "user.interrupt"}}});
  EXPECT_EQ(Status(slow), "idle");
  EXPECT_EQ(OfType(slow, "span.model_request_start").size(), OfType(slow, "span.model_request_end").size());
  EXPECT_EQ(OfType(slow, "session.status_idle").back()["stop_reason"]["type"], "end_turn");
  EXPECT_TRUE(OfType(slow, "agent.mcp_tool_use").empty());
  EXPECT_TRUE(OfType(slow, "session.error").empty());
  EXPECT_TRUE(AllProcessed(slow));
  // The next turn lists again and works.
  {
    std::lock_guard<std::mutex> lock(mcp.mu);
    mcp.block_list = false;
    mcp.released = true;
  }
  Send(slow, {UserText("search docs")});
  ASSERT_EQ(OfType(slow, "agent.mcp_tool_result").size(), 1u);
  EXPECT_EQ(OfType(slow, "agent.message").back()["content"][0]["text"], "Found: rx");
}

// An MCP output cut to fit the context goes to the session's sandbox: the
// model gets the first output_preview_bytes and the file's path; the file
// holds the whole text. Without a sandbox the cut stays, with a note.
TEST_F(EngineTest, LargeMcpOutputGoesToTheSessionsSandbox) {
  FakeMcp mcp;
  FakeSessionFiles files;
  EngineOptions o;
  o.output_preview_bytes = 12;
  StartEngine(&mcp, o, &files);
  std::string sid = NewSession("scripted", "always_allow");
  files.sandboxes.insert(sid);
  Send(sid, {UserText("huge lookup")});
  auto uses = OfType(sid, "agent.mcp_tool_use");
  ASSERT_EQ(uses.size(), 1u);
  auto results = OfType(sid, "agent.mcp_tool_result");
  ASSERT_EQ(results.size(), 1u);
  const std::string path = "/tmp/warren/mcp/" + uses[0]["id"].get<std::string>() + ".txt";
  const Json& content = results[0]["content"];
  ASSERT_EQ(content.size(), 2u) << content.dump();
  EXPECT_EQ(content[0]["text"], "AAAAAAAAAABB");
  const std::string note = content[1]["text"];
  EXPECT_NE(note.find("returned 30 bytes"), std::string::npos) << note;
  EXPECT_NE(note.find("first 12 bytes"), std::string::npos) << note;
  EXPECT_NE(note.find(path), std::string::npos) << note;
  EXPECT_EQ(files.written.at(sid + ":" + path), "AAAAAAAAAABBBBBBBBBBCCCCCCCCCC");
  // The model saw the preview and the path.
  const std::string said = OfType(sid, "agent.message").back()["content"][0]["text"];
  EXPECT_NE(said.find(path), std::string::npos) << said;

  std::string bare = NewSession("scripted", "always_allow");  // no sandbox
  Send(bare, {UserText("huge lookup")});
  auto cut = OfType(bare, "agent.mcp_tool_result");
  ASSERT_EQ(cut.size(), 1u);
  ASSERT_EQ(cut[0]["content"].size(), 3u) << cut[0]["content"].dump();
  EXPECT_EQ(cut[0]["content"][0]["text"], "AAAAAAAAAA");
  EXPECT_NE(cut[0]["content"][1]["text"].get<std::string>().find("output truncated"), std::string::npos);
  EXPECT_NE(cut[0]["content"][2]["text"].get<std::string>().find("no sandbox"), std::string::npos);
}

// A web_fetch page cut at max_text_chars: the whole text goes to the
// sandbox and the result names the file after the document.
TEST_F(EngineTest, LongFetchedPageGoesToTheSessionsSandbox) {
  FakeSessionFiles files;
  StartEngine(nullptr, {}, &files);
  std::string sid = NewSession();
  files.sandboxes.insert(sid);
  Send(sid, {UserText("grab the long page")});
  auto uses = OfType(sid, "agent.tool_use");
  ASSERT_EQ(uses.size(), 1u);
  auto results = OfType(sid, "agent.tool_result");
  ASSERT_EQ(results.size(), 1u);
  const std::string path = "/tmp/warren/web_fetch/" + uses[0]["id"].get<std::string>() + ".txt";
  ASSERT_EQ(results[0]["content"].size(), 2u) << results[0]["content"].dump();
  EXPECT_EQ(results[0]["content"][0]["text"], "page of https://example.com/long");
  EXPECT_NE(results[0]["content"][1]["text"].get<std::string>().find(path), std::string::npos);
  EXPECT_EQ(files.written.at(sid + ":" + path), "the whole long page");
  // Without a sandbox the result is the page alone (its context says it was cut).
  std::string bare = NewSession();
  Send(bare, {UserText("grab the long page")});
  auto plain = OfType(bare, "agent.tool_result");
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(plain[0]["content"].size(), 1u);
}


// ---- per-server fairness on the tool pool

// With a pool of 3 and a bound of 2 per server, a hanging MCP server called
// by three sessions holds 2 threads: the third session's work for it waits
// its turn, and another session's web_fetch runs and completes meanwhile.
TEST_F(EngineTest, AHangingMcpServerHoldsOnlyItsShareOfTheToolPool) {
  GatedMcp mcp;
  EngineOptions o;
  o.tool_threads = 3;
  o.tool_threads_per_key = 2;
  StartEngine(&mcp, o);
  std::vector<std::string> hung;
  for (int i = 0; i < 3; i++) {
    hung.push_back(NewSession("scripted", "always_allow"));
    Send(hung.back(), {UserText("search docs")}, /*wait=*/false);
  }
  // Two calls to the hanging server are in flight; every session has
  // listed its other server (the third one's listing or call of the
  // hanging server waits for that server's turn).
  {
    std::unique_lock<std::mutex> lock(mcp.mu);
    ASSERT_TRUE(mcp.cv.wait_for(lock, std::chrono::seconds(30), [&] { return mcp.inflight == 2 && mcp.listed["dead"] == 3; }));
  }
  std::string web = NewSession();
  Send(web, {UserText("fetch it")}, /*wait=*/false);
  ASSERT_TRUE(Eventually([&] { return Status(web) == "idle" && !OfType(web, "agent.message").empty(); }))
      << "the web_fetch waited behind the hanging MCP server";
  EXPECT_EQ(OfType(web, "agent.message").back()["content"][0]["text"], "Fetched: page of https://example.com/");
  {
    std::lock_guard<std::mutex> lock(mcp.mu);
    EXPECT_EQ(mcp.max_inflight, 2) << "the hanging server took more than its share";
    EXPECT_EQ(mcp.inflight, 2);
    mcp.released = true;
  }
  engine_->WaitIdle();
  for (const std::string& sid : hung) {
    EXPECT_EQ(OfType(sid, "agent.mcp_tool_result").size(), 1u) << sid;
    EXPECT_EQ(OfType(sid, "agent.message").back()["content"][0]["text"], "Found: rx") << sid;
    EXPECT_EQ(Status(sid), "idle");
  }
  EXPECT_EQ(mcp.max_inflight, 2);
}

// An interrupt drops the session's tool work still queued behind a hanging
// server: the session settles at once, without waiting for that server.
TEST_F(EngineTest, AnInterruptDropsToolWorkQueuedBehindAHangingServer) {
  GatedMcp mcp;
  EngineOptions o;
  o.tool_threads = 4;
  o.tool_threads_per_key = 1;
  StartEngine(&mcp, o);
  std::string holder = NewSession("scripted", "always_allow");
  Send(holder, {UserText("search docs")}, /*wait=*/false);
  {
    std::unique_lock<std::mutex> lock(mcp.mu);
    ASSERT_TRUE(mcp.cv.wait_for(lock, std::chrono::seconds(30), [&] { return mcp.inflight == 1; }));
  }
  std::string waiter = NewSession("scripted", "always_allow");
  Send(waiter, {UserText("search docs")}, /*wait=*/false);
  // Its listing of the other server ran; its listing of "docs" is queued
  // behind the holder's call (bound 1).
  {
    std::unique_lock<std::mutex> lock(mcp.mu);
    ASSERT_TRUE(mcp.cv.wait_for(lock, std::chrono::seconds(30), [&] { return mcp.listed["dead"] == 2; }));
  }
  Send(waiter, {{{"type", "user.interrupt"}}}, /*wait=*/false);
  ASSERT_TRUE(Eventually([&] {
    auto idles = OfType(waiter, "session.status_idle");
    return Status(waiter) == "idle" && !idles.empty() && idles.back()["stop_reason"]["type"] == "end_turn";
  })) << "the interrupted session waited for the hanging server";
  EXPECT_TRUE(AllProcessed(waiter));
  EXPECT_EQ(OfType(waiter, "span.model_request_start").size(), OfType(waiter, "span.model_request_end").size());
  EXPECT_TRUE(OfType(waiter, "agent.mcp_tool_use").empty());
  {
    std::lock_guard<std::mutex> lock(mcp.mu);
    EXPECT_EQ(mcp.listed["docs"], 1) << "the waiter's listing of the hanging server was dropped, not run";
    EXPECT_EQ(mcp.inflight, 1);
    mcp.released = true;
  }
  engine_->WaitIdle();
  EXPECT_EQ(OfType(holder, "agent.mcp_tool_result").size(), 1u);
  EXPECT_EQ(Status(holder), "idle");
}

// ---- a finished call is not made again after a stop or a crash

// Two MCP calls in one answer: the first finishes (its result is recorded
// as it ends), the service stops cleanly while the second is in flight.
// After the restart the first is not made again and the second runs once.
TEST_F(EngineTest, AFinishedMcpCallIsNotMadeAgainAfterACleanStop) {
  CountingMcp mcp;
  mcp.hold = {"2"};
  StartEngine(&mcp);
  std::string sid = NewSession("scripted", "always_allow");
  Send(sid, {UserText("two searches")}, /*wait=*/false);
  ASSERT_TRUE(Eventually([&] { return OfType(sid, "agent.mcp_tool_result").size() == 1 && mcp.Entered("2") == 1; }));
  engine_->Stop();  // cancels the second call; the first's result is already durable
  engine_.reset();
  auto uses = OfType(sid, "agent.mcp_tool_use");
  ASSERT_EQ(uses.size(), 2u);
  auto results = OfType(sid, "agent.mcp_tool_result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["mcp_tool_use_id"], uses[0]["id"]);
  EXPECT_EQ(results[0]["content"][0]["text"], "r1");
  EXPECT_EQ(mcp.Done("1"), 1);
  EXPECT_EQ(mcp.Done("2"), 0);
  EXPECT_EQ(Status(sid), "running");

  mcp.Release();
  StartEngine(&mcp);
  engine_->WaitIdle();
  EXPECT_EQ(mcp.Done("1"), 1) << "the finished call was made again";
  EXPECT_EQ(mcp.Entered("1"), 1);
  EXPECT_EQ(mcp.Done("2"), 1);
  results = OfType(sid, "agent.mcp_tool_result");
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[1]["mcp_tool_use_id"], uses[1]["id"]);
  EXPECT_EQ(results[1]["content"][0]["text"], "r2");
  EXPECT_EQ(OfType(sid, "agent.message").back()["content"][0]["text"], "Found: r1\nr2");
  EXPECT_EQ(Status(sid), "idle");
  EXPECT_EQ(OfType(sid, "session.status_idle").back()["stop_reason"]["type"], "end_turn");
  EXPECT_EQ(OfType(sid, "span.model_request_start").size(), OfType(sid, "span.model_request_end").size());
}

// The same at a crash point: the first call's result is committed and the
// second is in flight when the service "dies". The dying engine is frozen
// there (it never acts again: its call stays held until its teardown, which
// records nothing) and a new engine starts on the same database, as the
// restarted process would, without anything a clean stop does.
TEST_F(EngineTest, AFinishedMcpCallIsNotMadeAgainAfterACrash) {
  CountingMcp dying;
  dying.hold = {"2"};
  StartEngine(&dying);
  std::string sid = NewSession("scripted", "always_allow");
  Send(sid, {UserText("two searches")}, /*wait=*/false);
  ASSERT_TRUE(Eventually([&] { return OfType(sid, "agent.mcp_tool_result").size() == 1 && dying.Entered("2") == 1; }));
  std::unique_ptr<Engine> crashed = std::move(engine_);

  CountingMcp restarted;
  StartEngine(&restarted);
  engine_->WaitIdle();
  EXPECT_EQ(dying.Done("1"), 1);
  EXPECT_EQ(restarted.Entered("1"), 0) << "the finished call was made again";
  EXPECT_EQ(restarted.Done("2"), 1);
  auto uses = OfType(sid, "agent.mcp_tool_use");
  auto results = OfType(sid, "agent.mcp_tool_result");
  ASSERT_EQ(uses.size(), 2u);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0]["mcp_tool_use_id"], uses[0]["id"]);
  EXPECT_EQ(results[1]["mcp_tool_use_id"], uses[1]["id"]);
  EXPECT_EQ(OfType(sid, "agent.message").back()["content"][0]["text"], "Found: r1\nr2");
  EXPECT_EQ(Status(sid), "idle");
  // The frozen engine's call ends cancelled at its teardown: no side
  // effect, nothing recorded.
  const size_t settled = Events(sid).size();
  crashed->Stop();
  crashed.reset();
  EXPECT_EQ(dying.Done("2"), 0);
  EXPECT_EQ(Events(sid).size(), settled);
}

// The same for web tools: of two web_fetch calls (run one after the other),
// the first's result is recorded as it ends; after a stop during the second
// only the second runs again.
TEST_F(EngineTest, AFinishedFetchIsNotMadeAgainAfterAStop) {
  server_tools_.block_url = "https://example.com/b";
  StartEngine();
  std::string sid = NewSession();
  Send(sid, {UserText("fetch two")}, /*wait=*/false);
  ASSERT_TRUE(Eventually([&] { return OfType(sid, "agent.tool_result").size() == 1 && server_tools_.entered.load(); }));
  engine_->Stop();
  engine_.reset();
  auto results = OfType(sid, "agent.tool_result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["content"][0]["text"], "page of https://example.com/a");
  server_tools_.block_url.clear();
  StartEngine();
  engine_->WaitIdle();
  {
    std::lock_guard<std::mutex> lock(server_tools_.mu);
    EXPECT_EQ(server_tools_.calls,
              (std::vector<std::string>{R"(web_fetch {"url":"https://example.com/a"})", R"(web_fetch {"url":"https://example.com/b"})",
                                        R"(web_fetch {"url":"https://example.com/b"})"}))
        << "the first fetch ran once, the second (cut by the stop) twice";
  }
  ASSERT_EQ(OfType(sid, "agent.tool_result").size(), 2u);
  EXPECT_EQ(OfType(sid, "agent.message").back()["content"][0]["text"],
            "Fetched: page of https://example.com/a\npage of https://example.com/b");
  EXPECT_EQ((*store_->GetSession(sid))["usage"]["server_tool_use"]["web_fetch_requests"], 2);
  EXPECT_EQ(Status(sid), "idle");
}

}  // namespace
}  // namespace warren::engine
