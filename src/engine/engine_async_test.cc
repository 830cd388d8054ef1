// The engine's model calls hold no engine thread (issue 14, item 5): with one
// engine thread and a slow model, calls for many sessions are in flight at
// once up to the provider's bound; sessions waiting for a slot are served
// in turn; an interrupt cancels a call in flight; a call in flight at Stop
// is made again at the next start. The slow model is HeldProvider: a call is
// "slow" until the test completes it, so nothing here depends on time.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "common/ids.h"
#include "engine/engine.h"
#include "models/bounded_provider.h"
#include "models/scripted_provider.h"
#include "models/testing/held_provider.h"
#include "store/sqlite_store.h"

namespace warren::engine {
namespace {

namespace fs = std::filesystem;
using models::testing::HeldProvider;

class NullSink final : public domain::EventSink {
 public:
  void Publish(const std::string&, const std::vector<store::StoredEvent>&) override {}
  void PublishPreview(const std::string&, const std::string&, const Json&) override {
    std::lock_guard<std::mutex> lock(mu_);
    previews++;
  }
  int count() {
    std::lock_guard<std::mutex> lock(mu_);
    return previews;
  }

 private:
  std::mutex mu_;
  int previews = 0;
};

// Polls `pred` until it holds (a state the engine reaches asynchronously);
// the bound is a guard against a hang, not a timing assertion.
template <typename Pred>
bool Eventually(Pred pred) {
  for (int i = 0; i < 30000; i++) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// A HeldProvider with a small context window, so that a few long turns make
// a compaction due.
class SmallWindowProvider final : public models::ModelProvider {
 public:
  explicit SmallWindowProvider(HeldProvider* inner) : inner_(inner) {}
  std::string_view name() const override { return "held"; }
  std::string default_model() const override { return "held"; }
  int64_t context_window(std::string_view) const override { return 1000; }
  void CallAsync(models::ModelRequest request, models::ModelStreamObserver* observer, models::CallOptions options,
                 models::ModelCallback done) override {
    inner_->CallAsync(std::move(request), observer, options, std::move(done));
  }

 private:
  HeldProvider* inner_;
};

constexpr char kSummaryAsk[] = "Summarise the conversation above";

class EngineAsyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/warren_engine_async_XXXXXX";
    dir_ = mkdtemp(tmpl);
    store_ = std::move(store::SqliteStore::Open({dir_ + "/warren.db", "NORMAL"}, Clock::Real())).value();
    Json env = {{"id", "env_1"}, {"type", "environment"}, {"name", "e"}, {"config", {{"type", "self_hosted"}}},
                {"created_at", "2026-01-01T00:00:00Z"}, {"archived_at", nullptr}};
    ASSERT_TRUE(store_->CreateEnvironment(env).ok());
  }
  void TearDown() override {
    if (engine_) engine_->Stop();
    engine_.reset();
    fs::remove_all(dir_);
  }

  // One engine thread, a held model behind a bound of `bound` calls.
  void StartHeld(int bound) {
    auto held = std::make_unique<HeldProvider>();
    held_ = held.get();
    bounded_ = std::make_unique<models::BoundedProvider>(std::move(held), bound);
    StartWith(bounded_.get());
  }
  void StartWith(models::ModelProvider* provider) {
    if (engine_) engine_->Stop();
    EngineOptions o;
    o.threads = 1;
    engine_ = std::make_unique<Engine>(store_.get(), &bus_, provider, Clock::Real(), o);
    ASSERT_TRUE(engine_->Start().ok());
  }

  std::string NewSession() {
    Json agent = {{"id", "agent_1"}, {"version", 1}, {"type", "agent"}, {"name", "a"},
                  {"model", {{"id", "held"}}}, {"system", nullptr}, {"tools", Json::array()}};
    std::string id = NewId(idprefix::kSession);
    Json s = {{"id", id}, {"type", "session"}, {"status", "idle"}, {"environment_id", "env_1"},
              {"agent", agent}, {"usage", Json::object()}, {"budget", nullptr}, {"archived_at", nullptr},
              {"created_at", "2026-01-01T00:00:00Z"}, {"updated_at", "2026-01-01T00:00:00Z"}, {"metadata", Json::object()}};
    EXPECT_TRUE(store_->CreateSession(s, {}, nullptr).ok());
    return id;
  }
  void Send(const std::string& sid, Json event) {
    event["id"] = NewId(idprefix::kEvent);
    event["processed_at"] = nullptr;
    auto stored = store_->AppendEvents(sid, nullptr, {event}, nullptr);
    ASSERT_TRUE(stored.ok());
    engine_->OnClientEvents(*store_->GetSession(sid), *stored);
  }
  static Json UserText(const std::string& text) {
    return {{"type", "user.message"}, {"content", Json::array({{{"type", "text"}, {"text", text}}})}};
  }
  std::vector<Json> OfType(const std::string& sid, const std::string& type) {
    auto page = store_->ListEvents(sid, {}, store::PageSpec{1000, store::Order::kAsc});
    std::vector<Json> out;
    if (!page.ok()) return out;
    for (const Json& e : page->items)
      if (e["type"] == type) out.push_back(e);
    return out;
  }
  std::string Status(const std::string& sid) { return (*store_->GetSession(sid))["status"].get<std::string>(); }

  std::string dir_;
  std::unique_ptr<store::SqliteStore> store_;
  NullSink bus_;
  HeldProvider* held_ = nullptr;
  // One engine thread, a held model with a 1,000-token window.
  void StartSmallWindow() {
    held_owner_ = std::make_unique<HeldProvider>();
    held_ = held_owner_.get();
    small_ = std::make_unique<SmallWindowProvider>(held_);
    StartWith(small_.get());
  }

  std::unique_ptr<models::BoundedProvider> bounded_;
  std::unique_ptr<HeldProvider> held_owner_;
  std::unique_ptr<SmallWindowProvider> small_;
  std::unique_ptr<Engine> engine_;
};

// One engine thread, a slow model: min(N, bound) calls are in flight.
TEST_F(EngineAsyncTest, OneThreadKeepsMinOfSessionsAndBoundInFlight) {
  StartHeld(/*bound=*/4);
  std::vector<std::string> sids;
  for (int i = 0; i < 3; i++) {
    sids.push_back(NewSession());
    Send(sids.back(), UserText("hello " + std::to_string(i)));
  }
  // N = 3 < bound: all three at once, on one engine thread.
  ASSERT_TRUE(held_->WaitHeld(3));
  for (int i = 3; i < 10; i++) {
    sids.push_back(NewSession());
    Send(sids.back(), UserText("hello " + std::to_string(i)));
  }
  // N = 10 > bound: exactly the bound in flight, the rest waiting for a slot.
  ASSERT_TRUE(Eventually([&] { return bounded_->stats().waiting == 6; }));
  EXPECT_EQ(held_->held(), 4u);
  // Each answer is recorded, and its slot goes to a waiting session.
  for (int done = 0; done < 10; done++) {
    ASSERT_TRUE(Eventually([&] { return held_->held() == static_cast<size_t>(std::min(4, 10 - done)); }));
    ASSERT_TRUE(held_->Complete("", HeldProvider::Text("answer")));
  }
  engine_->WaitIdle();
  EXPECT_EQ(bounded_->stats().max_in_flight, 4);
  for (const auto& sid : sids) {
    EXPECT_EQ(Status(sid), "idle") << sid;
    ASSERT_EQ(OfType(sid, "agent.message").size(), 1u) << sid;
    EXPECT_EQ(OfType(sid, "span.model_request_end").size(), 1u) << sid;
    EXPECT_EQ(OfType(sid, "session.status_idle").back()["stop_reason"]["type"], "end_turn");
  }
  EXPECT_GT(bus_.count(), 0);  // previews still stream
}

// A session whose answers keep asking for another call goes to the back of
// the line each time: the others get their calls first.
TEST_F(EngineAsyncTest, AChattySessionDoesNotStarveOthers) {
  StartHeld(/*bound=*/1);
  std::string chatty = NewSession();
  Send(chatty, UserText("chatty"));
  ASSERT_TRUE(held_->WaitHeld(1));
  std::string b = NewSession(), c = NewSession();
  Send(b, UserText("quiet b"));
  Send(c, UserText("quiet c"));
  ASSERT_TRUE(Eventually([&] { return bounded_->stats().waiting == 2; }));
  // A tool the agent does not have: the engine answers it with an error and
  // calls the model again at once.
  auto more = [] {
    models::ModelResponse r;
    r.content.push_back(models::ContentBlock::ToolUse("toolu_1", "nope", Json::object()));
    r.stop_reason = "tool_use";
    return r;
  };
  ASSERT_TRUE(held_->Complete("chatty", more()));
  for (int i = 0; i < 3; i++) {
    ASSERT_TRUE(Eventually([&] { return held_->held() == 1; }));
    ASSERT_TRUE(held_->Complete("", HeldProvider::Text("done")));
  }
  engine_->WaitIdle();
  EXPECT_EQ(held_->order(), (std::vector<std::string>{"chatty", "quiet b", "quiet c", "chatty"}));
  for (const auto& sid : {chatty, b, c}) EXPECT_EQ(Status(sid), "idle");
  EXPECT_EQ(OfType(chatty, "span.model_request_end").size(), 2u);
}

// An interrupt cancels the call in flight: the provider sees its token, the
// span closes as an error, and the session settles once.
TEST_F(EngineAsyncTest, InterruptCancelsAnInFlightCall) {
  StartHeld(/*bound=*/2);
  std::string sid = NewSession();
  std::string other = NewSession();
  Send(sid, UserText("hello"));
  Send(other, UserText("hello other"));
  ASSERT_TRUE(held_->WaitHeld(2));
  Send(sid, {{"type", "user.interrupt"}});
  ASSERT_TRUE(Eventually([&] { return held_->cancelled() == 1; }));
  ASSERT_TRUE(Eventually([&] { return Status(sid) == "idle"; }));
  auto ends = OfType(sid, "span.model_request_end");
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0]["is_error"], true);
  EXPECT_TRUE(OfType(sid, "session.error").empty());
  EXPECT_EQ(OfType(sid, "session.status_idle").back()["stop_reason"]["type"], "end_turn");
  // The other session's call was not touched.
  EXPECT_EQ(held_->held(), 1u);
  ASSERT_TRUE(held_->Complete("hello other", HeldProvider::Text("fine")));
  engine_->WaitIdle();
  EXPECT_EQ(OfType(other, "agent.message").size(), 1u);
}

// A call in flight when the engine stops is not recorded; the next start
// closes its span and makes it again (as after a crash).
TEST_F(EngineAsyncTest, CallInFlightAtStopIsRedoneAtStart) {
  StartHeld(/*bound=*/2);
  std::string sid = NewSession();
  Send(sid, UserText("hello"));
  ASSERT_TRUE(held_->WaitHeld(1));
  engine_->Stop();
  EXPECT_TRUE(OfType(sid, "span.model_request_end").empty());
  EXPECT_EQ(Status(sid), "running");
  models::ScriptedOptions so;
  so.script_text = R"({"rules": [], "default": "redone"})";
  auto scripted = std::move(models::NewScriptedProvider(so)).value();
  StartWith(scripted.get());
  engine_->WaitIdle();
  auto ends = OfType(sid, "span.model_request_end");
  ASSERT_EQ(ends.size(), 2u);
  EXPECT_EQ(ends[0]["is_error"], true);
  EXPECT_EQ(ends[1]["is_error"], false);
  ASSERT_EQ(OfType(sid, "agent.message").size(), 1u);
  EXPECT_EQ(Status(sid), "idle");
  engine_->Stop();
}

// Drives `sid` through long turns (answering each call) until a held call
// is a compaction's summary call; false if none came in 20 turns.
static bool TurnsUntilSummaryHeld(HeldProvider* held, const std::string& sid,
                                  const std::function<void(const std::string&, Json)>& send) {
  for (int n = 1; n < 20; n++) {
    send(sid, Json{{"type", "user.message"},
                   {"content", Json::array({{{"type", "text"}, {"text", "turn " + std::to_string(n) + " " + std::string(500, 'x')}}})}});
    if (!held->WaitStarted(n)) return false;
    if (!Eventually([&] { return held->held() == 1; })) return false;
    auto order = held->order();
    if (order.back().find(kSummaryAsk) != std::string::npos) return true;
    if (!held->Complete("", HeldProvider::Text("ok " + std::to_string(n)))) return false;
    if (!Eventually([&] { return held->held() == 0; })) return false;
  }
  return false;
}

// A compaction's summary call holds no engine thread either: with one engine
// thread, another session's call starts and is answered while the summary
// is still out; once it is answered, the turn's own call follows, on the
// compacted transcript.
TEST_F(EngineAsyncTest, CompactionSummaryHoldsNoEngineThread) {
  StartSmallWindow();
  std::string a = NewSession();
  auto send = [this](const std::string& sid, Json e) { Send(sid, std::move(e)); };
  ASSERT_TRUE(TurnsUntilSummaryHeld(held_, a, send)) << "no compaction in 20 turns";
  const int before = held_->started();
  // The summary call is held; the one engine thread serves another session.
  std::string b = NewSession();
  Send(b, UserText("hello b"));
  ASSERT_TRUE(held_->WaitStarted(before + 1));
  EXPECT_EQ(held_->order().back(), "hello b");
  ASSERT_TRUE(held_->Complete("hello b", HeldProvider::Text("answer b")));
  ASSERT_TRUE(Eventually([&] { return Status(b) == "idle"; }));
  EXPECT_EQ(Status(a), "running");
  EXPECT_TRUE(OfType(a, "agent.thread_context_compacted").empty());
  // The summary comes back: it is recorded, then the turn's call is made
  // with the summary in front of the kept turns.
  ASSERT_TRUE(held_->Complete(kSummaryAsk, HeldProvider::Text("SUMMARY")));
  ASSERT_TRUE(held_->WaitStarted(before + 2));
  ASSERT_TRUE(Eventually([&] { return held_->held() == 1; }));
  EXPECT_EQ(OfType(a, "agent.thread_context_compacted").size(), 1u);
  ASSERT_TRUE(held_->Complete("", HeldProvider::Text("after compaction")));
  ASSERT_TRUE(Eventually([&] { return Status(a) == "idle"; }));
  engine_->WaitIdle();
  auto st = store_->GetEngineState(a);
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_GT((*st)->transcript_base, 0);
  EXPECT_NE((*st)->summary.find("SUMMARY"), std::string::npos);
  // One turn, one span, one idle: the summary call is not a turn of its own.
  auto msgs = OfType(a, "agent.message");
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back()["content"][0]["text"], "after compaction");
  EXPECT_EQ(OfType(a, "span.model_request_end").size(), OfType(a, "session.status_idle").size());
}

// An interrupt while the summary call is out cancels it: nothing is
// compacted, the span closes as an error, the session settles once, and no
// turn call is made.
TEST_F(EngineAsyncTest, InterruptCancelsAnInFlightCompaction) {
  StartSmallWindow();
  std::string a = NewSession();
  auto send = [this](const std::string& sid, Json e) { Send(sid, std::move(e)); };
  ASSERT_TRUE(TurnsUntilSummaryHeld(held_, a, send)) << "no compaction in 20 turns";
  const size_t idles = OfType(a, "session.status_idle").size();
  const int started = held_->started();
  Send(a, {{"type", "user.interrupt"}});
  ASSERT_TRUE(Eventually([&] { return held_->cancelled() == 1; }));
  ASSERT_TRUE(Eventually([&] { return Status(a) == "idle"; }));
  engine_->WaitIdle();
  EXPECT_TRUE(OfType(a, "agent.thread_context_compacted").empty());
  EXPECT_EQ(OfType(a, "span.model_request_end").back()["is_error"], true);
  EXPECT_EQ(OfType(a, "session.status_idle").size(), idles + 1);
  EXPECT_EQ(held_->started(), started);
}

// A failed summary call does not fail the turn: its call is made
// uncompacted, once.
TEST_F(EngineAsyncTest, FailedCompactionCarriesOnUncompacted) {
  StartSmallWindow();
  std::string a = NewSession();
  auto send = [this](const std::string& sid, Json e) { Send(sid, std::move(e)); };
  ASSERT_TRUE(TurnsUntilSummaryHeld(held_, a, send)) << "no compaction in 20 turns";
  const int started = held_->started();
  ASSERT_TRUE(held_->Fail(kSummaryAsk));
  ASSERT_TRUE(held_->WaitStarted(started + 1));
  ASSERT_TRUE(Eventually([&] { return held_->held() == 1; }));
  EXPECT_EQ(held_->order().back().find(kSummaryAsk), std::string::npos);
  ASSERT_TRUE(held_->Complete("", HeldProvider::Text("uncompacted")));
  ASSERT_TRUE(Eventually([&] { return Status(a) == "idle"; }));
  engine_->WaitIdle();
  EXPECT_TRUE(OfType(a, "agent.thread_context_compacted").empty());
  EXPECT_EQ(OfType(a, "agent.message").back()["content"][0]["text"], "uncompacted");
  EXPECT_TRUE(OfType(a, "session.error").empty());
}

}  // namespace
}  // namespace warren::engine
