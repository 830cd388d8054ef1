#include "models/scripted_provider.h"

#include <gtest/gtest.h>

#include <thread>

namespace warren::models {
namespace {

const std::string kDir = WARREN_MODELS_TESTDATA;

std::unique_ptr<ModelProvider> Load(const std::string& file, RecordingSleeper* sleeper, int max_attempts = 3) {
  ScriptedOptions o;
  o.script_path = kDir + "/" + file;
  o.retry.max_attempts = max_attempts;
  o.retry_deps.sleeper = sleeper;
  auto p = NewScriptedProvider(o);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? std::move(p).value() : nullptr;
}

std::unique_ptr<ModelProvider> Inline(const std::string& text, RecordingSleeper* sleeper = nullptr) {
  ScriptedOptions o;
  o.script_text = text;
  o.retry_deps.sleeper = sleeper;
  auto p = NewScriptedProvider(o);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? std::move(p).value() : nullptr;
}

ModelRequest Ask(const std::string& text) {
  ModelRequest r;
  r.system = {ContentBlock::Text("You are a test agent.")};
  r.messages.push_back(Message::User(text));
  return r;
}

// Appends the model's answer and tool results for each of its tool calls.
void Answer(ModelRequest& r, const ModelResponse& resp, const std::string& output, bool is_error = false) {
  r.messages.push_back(Message::Assistant(resp.content));
  std::vector<ContentBlock> results;
  for (const ContentBlock* t : resp.ToolUses()) results.push_back(ContentBlock::ToolResult(t->id, output, is_error));
  r.messages.push_back(Message::User(std::move(results)));
}

struct Rec : ModelStreamObserver {
  std::vector<std::string> log;
  void OnMessageStart(std::string_view id, const ModelUsage&) override { log.push_back("start " + std::string(id)); }
  void OnThinkingStart(int i) override { log.push_back("thinking_start " + std::to_string(i)); }
  void OnThinkingDelta(int, std::string_view d) override { log.push_back("thinking " + std::string(d)); }
  void OnTextStart(int i) override { log.push_back("text_start " + std::to_string(i)); }
  void OnTextDelta(int, std::string_view d) override { log.push_back("text " + std::string(d)); }
  void OnToolUseStart(int i, std::string_view id, std::string_view n) override {
    log.push_back("tool_start " + std::to_string(i) + " " + std::string(id) + " " + std::string(n));
  }
  void OnToolInputDelta(int, std::string_view d) override { log.push_back("input " + std::string(d)); }
  void OnBlockStop(int i, const ContentBlock&) override { log.push_back("stop " + std::to_string(i)); }
  void OnRetry(const ModelError& e, int next, int64_t delay) override {
    log.push_back("retry " + std::to_string(next) + " " + std::string(ModelErrorKindName(e.kind)) + " " +
                  std::to_string(delay));
  }
};

TEST(ScriptedProvider, ExampleScriptToolLoop) {
  RecordingSleeper sleeper;
  auto p = Load("example.json", &sleeper);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->name(), "scripted");
  ModelRequest req = Ask("Please list the files in /tmp");
  Rec rec;
  ModelResult r = p->Call(req, &rec);
  ASSERT_TRUE(r.ok());
  const ModelResponse& first = r.response();
  ASSERT_EQ(first.content.size(), 3u);
  EXPECT_EQ(first.content[0].type, BlockType::kThinking);
  EXPECT_EQ(first.content[0].text, "The user wants a listing of /tmp; bash can do that.");
  EXPECT_EQ(first.content[1].text, "Let me look.");
  EXPECT_EQ(first.content[2].name, "bash");
  EXPECT_EQ(first.content[2].id, "toolu_s0001_0");
  EXPECT_EQ(first.content[2].input, Json::parse(R"({"command":"ls -la /tmp"})"));
  EXPECT_EQ(first.stop_reason, "tool_use");
  EXPECT_EQ(first.usage, (ModelUsage{120, 30, 1000, 0}));
  EXPECT_EQ(first.id, "msg_scripted_0001");
  EXPECT_EQ(rec.log, (std::vector<std::string>{
                         "start msg_scripted_0001", "thinking_start 0",
                         "thinking The user wants a listing of /tmp; bash can do that.", "stop 0", "text_start 1",
                         "text Let me look.", "stop 1", "tool_start 2 toolu_s0001_0 bash",
                         "input {\"command\":\"ls -la /tmp\"}", "stop 2"}));

  Answer(req, first, "a.txt\nb.txt");
  r = p->Call(req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.response().Text(), "Here is what I found:\na.txt\nb.txt");
  EXPECT_EQ(r.response().stop_reason, "end_turn");
  EXPECT_GT(r.response().usage.input_tokens, 0);
  EXPECT_GT(r.response().usage.output_tokens, 0);

  ModelRequest failing = Ask("list files in /nope");
  ModelResult f = p->Call(failing);
  Answer(failing, f.response(), "ls: cannot access '/nope'", /*is_error=*/true);
  r = p->Call(failing);
  EXPECT_EQ(r.response().Text(), "The command failed: ls: cannot access '/nope'");
}

TEST(ScriptedProvider, SuccessiveRepliesTimesAndDefault) {
  auto p = Load("example.json", nullptr);
  ModelResult r = p->Call(Ask("please read the readme"));
  ASSERT_EQ(r.response().ToolUses().size(), 1u);
  EXPECT_EQ(r.response().ToolUses()[0]->input["file_path"], "/workspace/README.md");
  EXPECT_EQ(p->Call(Ask("read it again")).response().Text(), "I already read it once.");
  EXPECT_EQ(p->Call(Ask("read once more")).response().Text(), "I already read it once.");  // last repeats
  EXPECT_EQ(p->Call(Ask("deploy")).response().ToolUses()[0]->id, "toolu_deploy");
  EXPECT_EQ(p->Call(Ask("deploy now")).response().Text(), "I have no script for: deploy now");  // equals, not contains
  EXPECT_EQ(p->Call(Ask("something else")).response().Text(), "I have no script for: something else");
}

TEST(ScriptedProvider, SimulatedOverloadIsRetriedThenSucceeds) {
  RecordingSleeper sleeper;
  auto p = Load("example.json", &sleeper);
  Rec rec;
  ModelResult r = p->Call(Ask("flaky please"), &rec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.response().Text(), "Recovered after an overload.");
  EXPECT_EQ(r.attempts(), 2);
  EXPECT_EQ(sleeper.delays(), (std::vector<int64_t>{10}));
  EXPECT_NE(std::find(rec.log.begin(), rec.log.end(), "retry 2 overloaded 10"), rec.log.end());
}

TEST(ScriptedProvider, JsonLinesScriptRateLimitAndCaptures) {
  RecordingSleeper sleeper;
  auto p = Load("example.jsonl", &sleeper);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->Call(Ask("hello there")).response().Text(), "Hello! I am scripted.");
  ModelRequest req = Ask("run echo hi");
  ModelResult r = p->Call(req);
  ASSERT_EQ(r.response().ToolUses().size(), 1u);
  EXPECT_EQ(r.response().ToolUses()[0]->input, Json::parse(R"({"command":"echo hi"})"));
  Answer(req, r.response(), "hi");
  EXPECT_EQ(p->Call(req).response().Text(), "Output: hi");
  r = p->Call(Ask("busy?"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.attempts(), 3);
  EXPECT_EQ(sleeper.delays(), (std::vector<int64_t>{1500, 1500}));  // retry_after_ms honoured
  EXPECT_EQ(p->Call(Ask("zzz")).response().Text(), "Unscripted: zzz");
}

TEST(ScriptedProvider, ErrorsExhaustAndTerminalErrors) {
  RecordingSleeper sleeper;
  auto p = Inline(R"({"rules": [
      {"when": {"user": "down"}, "reply": {"error": "overloaded"}},
      {"when": {"user": "auth"}, "reply": {"error": {"type": "authentication", "message": "bad key"}}},
      {"when": {"user": "odd"}, "reply": {"error": {"type": "request_failed", "retryable": false}}},
      {"when": {"user": "partial"}, "times": 1, "reply": {"text": "half", "error": "overloaded"}}]})",
                  &sleeper);
  ModelResult r = p->Call(Ask("down"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kOverloaded);
  EXPECT_TRUE(r.error().retryable);
  EXPECT_EQ(r.error().attempts, 3);
  EXPECT_EQ(r.error().SessionErrorType(), "model_overloaded_error");
  r = p->Call(Ask("auth"));
  EXPECT_EQ(r.error().kind, ModelErrorKind::kAuthentication);
  EXPECT_EQ(r.error().message, "bad key");
  EXPECT_EQ(r.error().attempts, 1);
  r = p->Call(Ask("odd"));
  EXPECT_EQ(r.error().attempts, 1);
  Rec rec;
  r = p->Call(Ask("partial"), &rec);  // text streamed, then a mid-stream error; the retry hits the default
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(rec.log[2], "text half");
  EXPECT_NE(std::find(rec.log.begin(), rec.log.end(), "retry 2 overloaded 10"), rec.log.end());
  EXPECT_EQ(r.response().Text(), "(scripted) no rule matched");
}

TEST(ScriptedProvider, StepSystemAndChunkedDeltas) {
  auto p = Inline(R"({"rules": [
      {"when": {"system": "pirate", "step": 0}, "reply": {"text": "Arr, matey", "chunk": 3, "tool_call": {"name": "t"}}},
      {"when": {"step": 1}, "reply": "second step of {{user}}, call {{call}}"}]})");
  ModelRequest req = Ask("go");
  req.system = {ContentBlock::Text("Talk like a pirate.")};
  Rec rec;
  ModelResult r = p->Call(req, &rec);
  ASSERT_TRUE(r.ok());
  std::vector<std::string> deltas;
  for (const auto& l : rec.log) {
    if (l.rfind("text ", 0) == 0 && l != "text_start 0") deltas.push_back(l);
  }
  EXPECT_EQ(deltas, (std::vector<std::string>{"text Arr", "text , m", "text ate", "text y"}));
  EXPECT_EQ(r.response().ToolUses()[0]->input, Json::object());
  Answer(req, r.response(), "ok");
  EXPECT_EQ(p->Call(req).response().Text(), "second step of go, call 2");
}

TEST(ScriptedProvider, BuiltinScriptEchoes) {
  auto p = NewScriptedProvider({});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->Call(Ask("hi")).response().Text(), "Scripted model (no script configured). You said: hi");
  EXPECT_TRUE(ValidateScript(BuiltinScript()).ok());
}

TEST(ScriptedProvider, BuiltinScriptRunsTheToolDemoWhenToolsAreOffered) {
  auto p = NewScriptedProvider({});
  ASSERT_TRUE(p.ok());
  ModelRequest req = Ask("show me");
  for (const char* n : {"bash", "read", "write"}) req.tools.push_back({n, "", Json::object(), false});
  std::vector<std::string> calls;
  for (const char* out : {"wrote 90 bytes", "exit status 0", "Hello from s1, a Warren sandbox"}) {
    auto r = (*p)->Call(req);
    ASSERT_EQ(r.response().ToolUses().size(), 1u) << r.response().Text();
    calls.push_back(r.response().ToolUses()[0]->name);
    Answer(req, r.response(), out);
  }
  EXPECT_EQ(calls, (std::vector<std::string>{"write", "bash", "read"}));
  auto last = (*p)->Call(req);
  EXPECT_TRUE(last.response().ToolUses().empty());
  EXPECT_NE(last.response().Text().find("I wrote /workspace/hello.sh, ran it"), std::string::npos);
  EXPECT_NE(last.response().Text().find("Hello from s1, a Warren sandbox"), std::string::npos);
  // A failing tool ends the demo.
  ModelRequest bad = Ask("again");
  bad.tools = req.tools;
  auto first = (*p)->Call(bad);
  Answer(bad, first.response(), "permission denied", true);
  EXPECT_NE((*p)->Call(bad).response().Text().find("A tool call failed"), std::string::npos);
}

TEST(ScriptedProvider, DeterministicAcrossInstances) {
  auto run = [] {
    auto p = Load("example.json", nullptr);
    std::vector<Json> out;
    ModelRequest req = Ask("list files in /etc");
    for (int i = 0; i < 2; i++) {
      ModelResult r = p->Call(req);
      out.push_back(ResponseToJson(r.response()));
      Answer(req, r.response(), "passwd");
    }
    return out;
  };
  EXPECT_EQ(run(), run());
}

TEST(ScriptedProvider, ConcurrentCallsShareCounters) {
  auto p = Load("example.json", nullptr);
  std::atomic<int> tool_calls{0}, texts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; i++) {
        ModelResult r = p->Call(Ask("read this"));
        (r.response().ToolUses().empty() ? texts : tool_calls)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(tool_calls.load(), 1);
  EXPECT_EQ(texts.load(), 99);
}

TEST(ScriptedProvider, ValidationNamesTheProblem) {
  struct Case {
    const char* script;
    const char* expect;
  } cases[] = {
      {R"({"rules": [{"whne": "any", "reply": "x"}]})", "unknown key \"whne\""},
      {R"({"rules": [{"reply": "x"}]})", "\"when\" is required"},
      {R"({"rules": [{"when": {}, "reply": "x"}]})", "no condition given"},
      {R"({"rules": [{"when": {"user": {"regex": "("}}, "reply": "x"}]})", "bad regex"},
      {R"({"rules": [{"when": {"user": {"like": "x"}}, "reply": "x"}]})", "unknown matcher"},
      {R"({"rules": [{"when": "any", "reply": "x", "replies": ["y"]}]})", "exactly one of"},
      {R"({"rules": [{"when": "any", "reply": {"error": "meltdown"}}]})", "unknown error type \"meltdown\""},
      {R"({"rules": [{"when": "any", "reply": {"tool_calls": [{"input": {}}]}}]})", "\"name\" (a non-empty string) is required"},
      {R"({"rules": [{"when": "any", "reply": {"tool_calls": [{"name": "x", "input": "ls"}]}}]})", "\"input\" must be an object"},
      {R"({"rules": [{"name": "n1", "when": "any", "times": 0, "reply": "x"}]})", "(\"n1\"): \"times\""},
      {R"({"rules": [{"when": "any", "reply": {"usage": {"input_tokens": -1}}}]})", "non-negative"},
      {R"({"rules": [], "defualt": "x"})", "unknown key \"defualt\""},
      {"{\"when\": \"any\", \"reply\": \"ok\"}\n{broken\n", "line 2"},
      {"", "neither a JSON object"},
  };
  for (const auto& c : cases) {
    Status s = ValidateScript(c.script);
    EXPECT_FALSE(s.ok()) << c.script;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s.message();
  }
  ScriptedOptions missing;
  missing.script_path = "/nonexistent/script.json";
  EXPECT_EQ(NewScriptedProvider(missing).status().code(), Code::kIOError);
}

}  // namespace
}  // namespace warren::models
