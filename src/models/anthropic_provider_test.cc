// The anthropic provider against a fake Messages API (a real HTTP server on
// 127.0.0.1:0 speaking SSE the way api.anthropic.com does): what is sent
// (system, tools, cache_control, tool results, headers), how the stream is
// decoded, and how failures are retried.
#include "models/anthropic_provider.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "common/testing/fake_http_client.h"
#include "common/testing/fake_http_server.h"

namespace warren::models {
namespace {

using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::ResponseWriter;

std::string Sse(const std::string& event, const Json& data) {
  return "event: " + event + "\ndata: " + data.dump() + "\n\n";
}
const std::string kPing = "event: ping\ndata: {\"type\": \"ping\"}\n\n";

// A realistic streamed answer: text, then a bash tool call whose input JSON
// is split across many input_json_delta events, with pings in between.
std::string ToolUseStream(const std::string& text = "Let me check.") {
  std::string s;
  s += Sse("message_start", {{"type", "message_start"},
                             {"message", {{"id", "msg_01"}, {"type", "message"}, {"role", "assistant"},
                                          {"model", "claude-test"}, {"content", Json::array()},
                                          {"stop_reason", nullptr},
                                          {"usage", {{"input_tokens", 100}, {"cache_read_input_tokens", 50},
                                                     {"cache_creation_input_tokens", 10}, {"output_tokens", 1}}}}}});
  s += kPing;
  s += Sse("content_block_start", {{"type", "content_block_start"}, {"index", 0},
                                   {"content_block", {{"type", "text"}, {"text", ""}}}});
  s += Sse("content_block_delta", {{"type", "content_block_delta"}, {"index", 0},
                                   {"delta", {{"type", "text_delta"}, {"text", text.substr(0, 4)}}}});
  s += kPing;
  s += Sse("content_block_delta", {{"type", "content_block_delta"}, {"index", 0},
                                   {"delta", {{"type", "text_delta"}, {"text", text.substr(4)}}}});
  s += Sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}});
  s += Sse("content_block_start", {{"type", "content_block_start"}, {"index", 1},
                                   {"content_block", {{"type", "tool_use"}, {"id", "toolu_01A"}, {"name", "bash"},
                                                      {"input", Json::object()}}}});
  for (const char* piece : {"", "{\"comm", "and\": \"l", "s -la", " /tmp\"", ", \"timeout_ms\"", ": 5000", "}"}) {
    s += Sse("content_block_delta", {{"type", "content_block_delta"}, {"index", 1},
                                     {"delta", {{"type", "input_json_delta"}, {"partial_json", piece}}}});
  }
  s += kPing;
  s += Sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 1}});
  s += Sse("message_delta", {{"type", "message_delta"},
                             {"delta", {{"stop_reason", "tool_use"}, {"stop_sequence", nullptr}}},
                             {"usage", {{"output_tokens", 42}}}});
  s += Sse("message_stop", {{"type", "message_stop"}});
  return s;
}

std::string TextStream(const std::string& text) {
  std::string s;
  s += Sse("message_start", {{"type", "message_start"},
                             {"message", {{"id", "msg_02"}, {"model", "claude-test"},
                                          {"usage", {{"input_tokens", 7}, {"output_tokens", 1}}}}}});
  s += Sse("content_block_start", {{"type", "content_block_start"}, {"index", 0},
                                   {"content_block", {{"type", "text"}, {"text", ""}}}});
  s += Sse("content_block_delta", {{"type", "content_block_delta"}, {"index", 0},
                                   {"delta", {{"type", "text_delta"}, {"text", text}}}});
  s += Sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}});
  s += Sse("message_delta", {{"type", "message_delta"}, {"delta", {{"stop_reason", "end_turn"}}},
                             {"usage", {{"output_tokens", 3}}}});
  s += Sse("message_stop", {{"type", "message_stop"}});
  return s;
}

// Writes `body` as an SSE response in small pieces that cut through events.
void StreamInPieces(ResponseWriter& w, const std::string& body, size_t piece = 7) {
  w.WriteHead(200, {{"Content-Type", "text/event-stream"}, {"request-id", "req_fake"}});
  for (size_t i = 0; i < body.size(); i += piece) w.Write(std::string_view(body).substr(i, piece));
  w.End();
}

void ErrorReply(ResponseWriter& w, int status, const std::string& type,
                std::vector<std::pair<std::string, std::string>> headers = {}) {
  Json body = {{"type", "error"}, {"error", {{"type", type}, {"message", type + " happened"}}}};
  FakeHttpServer::Reply(w, status, body.dump(), std::move(headers));
}

// The fake API: each request takes the next scripted reply.
class FakeMessagesApi {
 public:
  using Reply = std::function<void(const FakeRequest&, ResponseWriter&)>;
  FakeMessagesApi()
      : server_([this](const FakeRequest& r, ResponseWriter& w) {
          Reply reply;
          {
            std::lock_guard<std::mutex> lock(mu_);
            if (!replies_.empty()) {
              reply = std::move(replies_.front());
              replies_.pop_front();
            }
          }
          if (reply) {
            reply(r, w);
          } else {
            ErrorReply(w, 500, "api_error");
          }
        }) {}
  void Then(Reply r) {
    std::lock_guard<std::mutex> lock(mu_);
    replies_.push_back(std::move(r));
  }
  void ThenStream(std::string body) {
    Then([body](const FakeRequest&, ResponseWriter& w) { StreamInPieces(w, body); });
  }
  void ThenError(int status, std::string type, std::vector<std::pair<std::string, std::string>> headers = {}) {
    Then([=](const FakeRequest&, ResponseWriter& w) { ErrorReply(w, status, type, headers); });
  }
  std::vector<FakeRequest> requests() const { return server_.requests(); }
  Json Body(size_t i) const { return Json::parse(requests().at(i).body); }
  std::string url() const { return server_.url(); }

 private:
  std::mutex mu_;
  std::deque<Reply> replies_;
  FakeHttpServer server_;
};

// Records what the provider streamed to the engine.
struct Recorder : ModelStreamObserver {
  std::vector<std::string> log;
  std::string text;
  std::string tool_json;
  std::string thinking;
  std::vector<ModelError> retries;
  void OnAttemptStart(int attempt) override { log.push_back("attempt " + std::to_string(attempt)); }
  void OnMessageStart(std::string_view id, const ModelUsage&) override { log.push_back("start " + std::string(id)); }
  void OnTextStart(int i) override { log.push_back("text_start " + std::to_string(i)); }
  void OnTextDelta(int, std::string_view t) override { text += t; }
  void OnThinkingStart(int i) override { log.push_back("thinking_start " + std::to_string(i)); }
  void OnThinkingDelta(int, std::string_view t) override { thinking += t; }
  void OnToolUseStart(int i, std::string_view id, std::string_view name) override {
    log.push_back("tool_start " + std::to_string(i) + " " + std::string(id) + " " + std::string(name));
  }
  void OnToolInputDelta(int, std::string_view j) override {
    tool_json += j;
    log.push_back("tool_delta");
  }
  void OnBlockStop(int i, const ContentBlock& b) override {
    log.push_back("stop " + std::to_string(i) + " " + std::string(BlockTypeName(b.type)));
  }
  void OnRetry(const ModelError& e, int next, int64_t delay) override {
    retries.push_back(e);
    log.push_back("retry " + std::to_string(next) + " " + std::string(ModelErrorKindName(e.kind)) + " " +
                  std::to_string(delay));
    text.clear();
    tool_json.clear();
  }
  int Count(const std::string& entry) const { return static_cast<int>(std::count(log.begin(), log.end(), entry)); }
};

class AnthropicProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"http_proxy", "all_proxy", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"}) {
      ::unsetenv(v);
    }
  }

  std::unique_ptr<ModelProvider> Provider(int max_attempts = 5) {
    AnthropicOptions o;
    o.api_key = "sk-test-key";
    o.base_url = api_.url() + "/";  // trailing slash is tolerated
    o.default_model = "claude-test";
    o.retry.max_attempts = max_attempts;
    o.retry_deps.sleeper = &sleeper_;
    o.retry_deps.uniform01 = [] { return 0.0; };  // no jitter: exact delays
    o.clock = &clock_;
    return NewAnthropicProvider(o, NewCurlHttpClient());
  }

  // A session mid-way: user asked, model called bash, the tool answered.
  static ModelRequest ConversationRequest() {
    ModelRequest r;
    r.system = {ContentBlock::Text("You are Warren's agent."), ContentBlock::Text("Work in /workspace.")};
    r.tools = {
        {"bash", "Run a shell command", Json::parse(R"({"type":"object","properties":{"command":{"type":"string"},"restart":{"type":"boolean"},"timeout_ms":{"type":"integer"}}})")},
        {"read", "Read a file", Json::parse(R"({"type":"object","properties":{"file_path":{"type":"string"}},"required":["file_path"]})")},
        {"deploy", "Custom tool", Json::parse(R"({"type":"object","properties":{"env":{"type":"string"}}})")},
    };
    r.messages.push_back(Message::User("List /tmp please"));
    r.messages.push_back(Message::Assistant({ContentBlock::Thinking("I should run ls.", "sig=="),
                                             ContentBlock::ToolUse("toolu_00", "bash", {{"command", "ls /tmp"}})}));
    r.messages.push_back(Message::User({ContentBlock::ToolResult("toolu_00", "a.txt\nb.txt"),
                                        ContentBlock::Text("Also tell me the sizes.")}));
    r.max_tokens = 1024;
    return r;
  }

  FakeMessagesApi api_;
  RecordingSleeper sleeper_;
  FakeClock clock_;
};

int CountBreakpoints(const Json& body) {
  int n = 0;
  for (const char* key : {"tools", "system"}) {
    if (body.contains(key)) {
      for (const auto& b : body[key]) n += b.contains("cache_control");
    }
  }
  for (const auto& m : body["messages"]) {
    for (const auto& b : m["content"]) n += b.contains("cache_control");
  }
  return n;
}

TEST_F(AnthropicProviderTest, SendsSystemToolsToolResultsCacheControlAndHeaders) {
  api_.ThenStream(ToolUseStream());
  auto p = Provider();
  ModelResult r = p->Call(ConversationRequest());
  ASSERT_TRUE(r.ok()) << r.error().ToString();

  auto reqs = api_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].target, "/v1/messages");
  EXPECT_EQ(reqs[0].Header("x-api-key"), "sk-test-key");
  EXPECT_EQ(reqs[0].Header("anthropic-version"), "2023-06-01");
  EXPECT_EQ(reqs[0].Header("content-type"), "application/json");
  EXPECT_EQ(reqs[0].Header("accept"), "text/event-stream");
  EXPECT_EQ(reqs[0].Header("authorization"), "");
  EXPECT_EQ(reqs[0].Header("anthropic-beta"), "");

  const Json ephemeral = {{"type", "ephemeral"}};
  Json want = Json::parse(R"({
    "model": "claude-test", "max_tokens": 1024, "stream": true,
    "system": [
      {"type": "text", "text": "You are Warren's agent."},
      {"type": "text", "text": "Work in /workspace.", "cache_control": {"type": "ephemeral"}}],
    "tools": [
      {"name": "bash", "description": "Run a shell command", "input_schema": {"type":"object","properties":{"command":{"type":"string"},"restart":{"type":"boolean"},"timeout_ms":{"type":"integer"}}}},
      {"name": "read", "description": "Read a file", "input_schema": {"type":"object","properties":{"file_path":{"type":"string"}},"required":["file_path"]}},
      {"name": "deploy", "description": "Custom tool", "input_schema": {"type":"object","properties":{"env":{"type":"string"}}},
       "cache_control": {"type": "ephemeral"}}],
    "messages": [
      {"role": "user", "content": [{"type": "text", "text": "List /tmp please", "cache_control": {"type": "ephemeral"}}]},
      {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "I should run ls.", "signature": "sig=="},
        {"type": "tool_use", "id": "toolu_00", "name": "bash", "input": {"command": "ls /tmp"}}]},
      {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_00", "content": [{"type": "text", "text": "a.txt\nb.txt"}]},
        {"type": "text", "text": "Also tell me the sizes.", "cache_control": {"type": "ephemeral"}}]}]
  })");
  EXPECT_EQ(api_.Body(0), want) << api_.Body(0).dump(2);
  EXPECT_EQ(CountBreakpoints(api_.Body(0)), 4);
}

TEST_F(AnthropicProviderTest, DecodesStreamWithToolInputSplitAcrossDeltas) {
  api_.ThenStream(ToolUseStream());
  auto p = Provider();
  Recorder rec;
  ModelResult r = p->Call(ConversationRequest(), &rec);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  const ModelResponse& resp = r.response();
  EXPECT_EQ(resp.id, "msg_01");
  EXPECT_EQ(resp.model, "claude-test");
  EXPECT_EQ(resp.stop_reason, "tool_use");
  EXPECT_EQ(resp.attempts, 1);
  ASSERT_EQ(resp.content.size(), 2u);
  EXPECT_EQ(resp.content[0].type, BlockType::kText);
  EXPECT_EQ(resp.content[0].text, "Let me check.");
  EXPECT_EQ(resp.content[1].type, BlockType::kToolUse);
  EXPECT_EQ(resp.content[1].id, "toolu_01A");
  EXPECT_EQ(resp.content[1].name, "bash");
  EXPECT_EQ(resp.content[1].input, Json::parse(R"({"command":"ls -la /tmp","timeout_ms":5000})"));
  EXPECT_EQ(resp.usage, (ModelUsage{100, 42, 50, 10}));
  ASSERT_EQ(resp.ToolUses().size(), 1u);

  EXPECT_EQ(rec.text, "Let me check.");
  EXPECT_EQ(rec.tool_json, R"({"command": "ls -la /tmp", "timeout_ms": 5000})");
  std::vector<std::string> want = {"attempt 1", "start msg_01", "text_start 0", "stop 0 text",
                                   "tool_start 1 toolu_01A bash"};
  for (int i = 0; i < 8; i++) want.push_back("tool_delta");
  want.push_back("stop 1 tool_use");
  EXPECT_EQ(rec.log, want);
}

TEST_F(AnthropicProviderTest, ThinkingIsSentAndSurfaced) {
  std::string s;
  s += Sse("message_start", {{"type", "message_start"}, {"message", {{"id", "msg_t"}, {"usage", {{"input_tokens", 5}}}}}});
  s += Sse("content_block_start", {{"type", "content_block_start"}, {"index", 0},
                                   {"content_block", {{"type", "thinking"}, {"thinking", ""}}}});
  s += Sse("content_block_delta", {{"type", "content_block_delta"}, {"index", 0},
                                   {"delta", {{"type", "thinking_delta"}, {"thinking", "Hmm, "}}}});
  s += Sse("content_block_delta", {{"type", "content_block_delta"}, {"index", 0},
                                   {"delta", {{"type", "thinking_delta"}, {"thinking", "two plus two."}}}});
  s += Sse("content_block_delta", {{"type", "content_block_delta"}, {"index", 0},
                                   {"delta", {{"type", "signature_delta"}, {"signature", "EqQB"}}}});
  s += Sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}});
  s += Sse("content_block_start", {{"type", "content_block_start"}, {"index", 1},
                                   {"content_block", {{"type", "redacted_thinking"}, {"data", "opaque"}}}});
  s += Sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 1}});
  s += Sse("content_block_start", {{"type", "content_block_start"}, {"index", 2},
                                   {"content_block", {{"type", "text"}, {"text", "4"}}}});
  s += Sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 2}});
  s += Sse("message_delta", {{"type", "message_delta"}, {"delta", {{"stop_reason", "end_turn"}}},
                             {"usage", {{"output_tokens", 20}}}});
  s += Sse("message_stop", {{"type", "message_stop"}});
  api_.ThenStream(s);
  auto p = Provider();
  ModelRequest req;
  req.messages.push_back(Message::User("2+2?"));
  req.thinking = {true, 2048};
  req.max_tokens = 4096;
  Recorder rec;
  ModelResult r = p->Call(req, &rec);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(api_.Body(0)["thinking"], Json::parse(R"({"type":"enabled","budget_tokens":2048})"));
  ASSERT_EQ(r.response().content.size(), 3u);
  EXPECT_EQ(r.response().content[0].type, BlockType::kThinking);
  EXPECT_EQ(r.response().content[0].text, "Hmm, two plus two.");
  EXPECT_EQ(r.response().content[0].signature, "EqQB");
  EXPECT_EQ(r.response().content[1].type, BlockType::kRedactedThinking);
  EXPECT_EQ(r.response().content[1].data, "opaque");
  EXPECT_EQ(r.response().Text(), "4");
  EXPECT_EQ(rec.thinking, "Hmm, two plus two.");
  EXPECT_EQ(rec.Count("thinking_start 0"), 1);
  EXPECT_EQ(rec.Count("thinking_start 1"), 1);
  // The thinking block round-trips into the next request unchanged.
  EXPECT_EQ(BlockToJson(r.response().content[0]),
            Json::parse(R"({"type":"thinking","thinking":"Hmm, two plus two.","signature":"EqQB"})"));
}

TEST_F(AnthropicProviderTest, RetriesRateLimitOverloadedAndServerErrorsWithBackoff) {
  api_.ThenError(429, "rate_limit_error", {{"retry-after", "3"}});
  api_.ThenError(529, "overloaded_error");
  api_.ThenError(500, "api_error");
  api_.ThenError(503, "overloaded_error");
  api_.ThenStream(TextStream("finally"));
  auto p = Provider();
  Recorder rec;
  ModelResult r = p->Call(ConversationRequest(), &rec);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r.response().Text(), "finally");
  EXPECT_EQ(r.attempts(), 5);
  // retry-after honoured exactly; then 500 * 2^(n-1) without jitter.
  EXPECT_EQ(sleeper_.delays(), (std::vector<int64_t>{3000, 1000, 2000, 4000}));
  ASSERT_EQ(rec.retries.size(), 4u);
  EXPECT_EQ(rec.retries[0].kind, ModelErrorKind::kRateLimited);
  EXPECT_EQ(rec.retries[0].retry_after_ms, 3000);
  EXPECT_EQ(rec.retries[0].http_status, 429);
  EXPECT_EQ(rec.retries[1].kind, ModelErrorKind::kOverloaded);
  EXPECT_EQ(rec.retries[1].http_status, 529);
  EXPECT_EQ(rec.retries[2].kind, ModelErrorKind::kRequestFailed);
  EXPECT_EQ(rec.retries[3].kind, ModelErrorKind::kOverloaded);
  // Every attempt sent the identical request.
  auto reqs = api_.requests();
  ASSERT_EQ(reqs.size(), 5u);
  for (const auto& q : reqs) EXPECT_EQ(q.body, reqs[0].body);
}

TEST_F(AnthropicProviderTest, JitterShortensBackoffWithinBounds) {
  api_.ThenError(500, "api_error");
  api_.ThenError(500, "api_error");
  api_.ThenStream(TextStream("ok"));
  AnthropicOptions o;
  o.api_key = "k";
  o.base_url = api_.url();
  o.retry_deps.sleeper = &sleeper_;
  o.retry_deps.uniform01 = [] { return 0.999; };
  auto p = NewAnthropicProvider(o, NewCurlHttpClient());
  ASSERT_TRUE(p->Call(ConversationRequest()).ok());
  auto d = sleeper_.delays();
  ASSERT_EQ(d.size(), 2u);
  EXPECT_GE(d[0], 375);  // 500 * (1 - 0.25)
  EXPECT_LT(d[0], 500);
  EXPECT_GE(d[1], 750);
  EXPECT_LT(d[1], 1000);
}

TEST_F(AnthropicProviderTest, MidStreamOverloadedErrorIsRetried) {
  std::string broken;
  broken += Sse("message_start", {{"type", "message_start"}, {"message", {{"id", "msg_bad"}, {"usage", {{"input_tokens", 9}}}}}});
  broken += Sse("content_block_start", {{"type", "content_block_start"}, {"index", 0},
                                        {"content_block", {{"type", "text"}, {"text", ""}}}});
  broken += Sse("content_block_delta", {{"type", "content_block_delta"}, {"index", 0},
                                        {"delta", {{"type", "text_delta"}, {"text", "partial answ"}}}});
  broken += Sse("error", {{"type", "error"}, {"error", {{"type", "overloaded_error"}, {"message", "Overloaded"}}}});
  api_.ThenStream(broken);
  api_.ThenStream(ToolUseStream());
  auto p = Provider();
  Recorder rec;
  ModelResult r = p->Call(ConversationRequest(), &rec);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r.attempts(), 2);
  ASSERT_EQ(rec.retries.size(), 1u);
  EXPECT_EQ(rec.retries[0].kind, ModelErrorKind::kOverloaded);
  EXPECT_TRUE(rec.retries[0].mid_stream);
  EXPECT_EQ(rec.retries[0].message, "Overloaded");
  EXPECT_EQ(rec.Count("retry 2 overloaded 500"), 1);
  EXPECT_EQ(rec.text, "Let me check.");  // the observer discarded the partial attempt
  EXPECT_EQ(r.response().id, "msg_01");
  EXPECT_EQ(r.response().content.size(), 2u);
}

TEST_F(AnthropicProviderTest, TruncatedStreamIsRetried) {
  api_.Then([](const FakeRequest&, ResponseWriter& w) {
    std::string s = ToolUseStream();
    w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
    w.Write(s.substr(0, s.size() / 2));
    w.Close();  // connection drops mid-stream
  });
  api_.Then([](const FakeRequest&, ResponseWriter& w) {
    // Clean end of body but no message_stop.
    std::string s = TextStream("x");
    StreamInPieces(w, s.substr(0, s.find("event: message_stop")));
  });
  api_.ThenStream(TextStream("complete"));
  auto p = Provider();
  Recorder rec;
  ModelResult r = p->Call(ConversationRequest(), &rec);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r.response().Text(), "complete");
  EXPECT_EQ(r.attempts(), 3);
  ASSERT_EQ(rec.retries.size(), 2u);
  EXPECT_EQ(rec.retries[0].kind, ModelErrorKind::kRequestFailed);
  EXPECT_EQ(rec.retries[1].kind, ModelErrorKind::kRequestFailed);
}

TEST_F(AnthropicProviderTest, ExhaustedRetriesReportAttemptsAndSessionErrorType) {
  for (int i = 0; i < 3; i++) api_.ThenError(529, "overloaded_error");
  auto p = Provider(/*max_attempts=*/3);
  ModelResult r = p->Call(ConversationRequest());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kOverloaded);
  EXPECT_TRUE(r.error().retryable);
  EXPECT_EQ(r.error().attempts, 3);
  EXPECT_EQ(r.error().http_status, 529);
  EXPECT_EQ(r.error().upstream_type, "overloaded_error");
  EXPECT_EQ(r.error().SessionErrorType(), "model_overloaded_error");
  EXPECT_EQ(r.error().message, "overloaded_error happened");
  EXPECT_EQ(sleeper_.delays().size(), 2u);
  EXPECT_EQ(api_.requests().size(), 3u);
}

TEST_F(AnthropicProviderTest, ClientErrorsAreNotRetried) {
  api_.ThenError(400, "invalid_request_error");
  api_.ThenError(401, "authentication_error");
  api_.ThenError(413, "request_too_large");
  auto p = Provider();
  ModelResult r = p->Call(ConversationRequest());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kInvalidRequest);
  EXPECT_FALSE(r.error().retryable);
  EXPECT_EQ(r.error().attempts, 1);
  EXPECT_EQ(r.error().SessionErrorType(), "unknown_error");
  r = p->Call(ConversationRequest());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kAuthentication);
  r = p->Call(ConversationRequest());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kRequestTooLarge);
  EXPECT_TRUE(sleeper_.delays().empty());
  EXPECT_EQ(api_.requests().size(), 3u);
}

TEST_F(AnthropicProviderTest, ShouldRetryHeaderOverrides) {
  api_.ThenError(500, "api_error", {{"x-should-retry", "false"}});
  api_.ThenError(400, "invalid_request_error", {{"x-should-retry", "true"}});
  api_.ThenStream(TextStream("ok"));
  auto p = Provider();
  ModelResult r = p->Call(ConversationRequest());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().attempts, 1);
  r = p->Call(ConversationRequest());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.attempts(), 2);
}

TEST_F(AnthropicProviderTest, CancelStopsTheStreamWithoutRetry) {
  std::atomic<bool> released{false};
  api_.Then([&](const FakeRequest&, ResponseWriter& w) {
    std::string s = TextStream("never finished");
    w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
    w.Write(s.substr(0, s.find("event: content_block_delta")));
    for (int i = 0; i < 2000 && !w.PeerClosed(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    released = true;
  });
  auto p = Provider();
  CancelToken token;
  struct CancelOnStart : Recorder {
    CancelToken* token;
    std::thread t;
    void OnTextStart(int) override { t = std::thread([this] { token->Cancel(); }); }
  } rec;
  rec.token = &token;
  ModelResult r = p->Call(ConversationRequest(), &rec, {.cancel = &token});
  rec.t.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kCancelled);
  EXPECT_EQ(r.error().attempts, 1);
  EXPECT_TRUE(rec.retries.empty());
  EXPECT_EQ(api_.requests().size(), 1u);
}

TEST_F(AnthropicProviderTest, EnvironmentKeyAndBaseUrlAndExplicitOverride) {
  api_.ThenStream(TextStream("env"));
  api_.ThenStream(TextStream("explicit"));
  api_.ThenStream(TextStream("bearer"));
  ::setenv("ANTHROPIC_API_KEY", "sk-from-env", 1);
  ::setenv("ANTHROPIC_BASE_URL", api_.url().c_str(), 1);
  AnthropicOptions o;
  o.retry_deps.sleeper = &sleeper_;
  o.betas = {"beta-a", "beta-b"};
  auto from_env = NewAnthropicProvider(o, nullptr);
  ASSERT_TRUE(from_env->Call(ConversationRequest()).ok());
  o.api_key = "sk-explicit";
  auto explicit_key = NewAnthropicProvider(o, nullptr);
  ASSERT_TRUE(explicit_key->Call(ConversationRequest()).ok());
  ::unsetenv("ANTHROPIC_API_KEY");
  ::setenv("ANTHROPIC_AUTH_TOKEN", "oauth-token", 1);
  o.api_key = "";
  auto bearer = NewAnthropicProvider(o, nullptr);
  ASSERT_TRUE(bearer->Call(ConversationRequest()).ok());
  ::unsetenv("ANTHROPIC_AUTH_TOKEN");
  ::unsetenv("ANTHROPIC_BASE_URL");
  auto reqs = api_.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].Header("x-api-key"), "sk-from-env");
  EXPECT_EQ(reqs[0].Header("anthropic-beta"), "beta-a,beta-b");
  EXPECT_EQ(api_.Body(0)["model"], "claude-sonnet-4-5");
  EXPECT_EQ(reqs[1].Header("x-api-key"), "sk-explicit");
  EXPECT_EQ(reqs[2].Header("x-api-key"), "");
  EXPECT_EQ(reqs[2].Header("authorization"), "Bearer oauth-token");
}

TEST_F(AnthropicProviderTest, MissingKeyFailsWithoutSending) {
  AnthropicOptions o;
  o.base_url = api_.url();
  auto p = NewAnthropicProvider(o, nullptr);
  ModelResult r = p->Call(ConversationRequest());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kAuthentication);
  EXPECT_TRUE(api_.requests().empty());
}

TEST_F(AnthropicProviderTest, NonStreamedJsonAnswerIsAccepted) {
  api_.Then([](const FakeRequest&, ResponseWriter& w) {
    Json m = Json::parse(R"({"id":"msg_j","type":"message","role":"assistant","model":"m",
      "content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"toolu_j","name":"read","input":{"file_path":"/a"}}],
      "stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4}})");
    FakeHttpServer::Reply(w, 200, m.dump(), {{"Content-Type", "application/json"}});
  });
  auto p = Provider();
  ModelResult r = p->Call(ConversationRequest());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r.response().Text(), "hi");
  ASSERT_EQ(r.response().ToolUses().size(), 1u);
  EXPECT_EQ(r.response().ToolUses()[0]->input["file_path"], "/a");
}

TEST_F(AnthropicProviderTest, GarbledStreamIsAProtocolError) {
  api_.ThenStream("event: message_start\ndata: {not json\n\n");
  api_.ThenStream(Sse("content_block_delta", {{"type", "content_block_delta"}, {"index", 3},
                                              {"delta", {{"type", "text_delta"}, {"text", "x"}}}}));
  auto p = Provider(/*max_attempts=*/2);
  ModelResult r = p->Call(ConversationRequest());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kRequestFailed);
  EXPECT_EQ(r.error().attempts, 2);
  EXPECT_NE(r.error().message.find("unknown block"), std::string::npos) << r.error().message;
}

// --- cache breakpoint placement ---------------------------------------------

TEST(CacheBreakpoints, RepeatedTurnsReadThePreviousTurnsCache) {
  // Simulate a session: each turn appends the model's answer and a user
  // message. The block where turn N wrote the cache (its last message) must
  // carry a breakpoint in turn N+1 too, with an identical prefix before it.
  ModelRequest req;
  req.system = {ContentBlock::Text("sys")};
  req.tools = {{"bash", "", Json::object()}};
  req.messages.push_back(Message::User("turn 1"));
  std::vector<Json> bodies;
  for (int turn = 1; turn <= 5; turn++) {
    bodies.push_back(BuildAnthropicBody(req, "m", true));
    EXPECT_LE(CountBreakpoints(bodies.back()), 4);
    req.messages.push_back(Message::Assistant({ContentBlock::ToolUse("toolu_" + std::to_string(turn), "bash", {})}));
    std::vector<ContentBlock> blocks;
    for (int k = 0; k < 30; k++) blocks.push_back(ContentBlock::ToolResult("toolu_" + std::to_string(turn), "out"));
    req.messages.push_back(Message::User(std::move(blocks)));  // > 20 blocks: lookback alone would miss
  }
  for (size_t t = 0; t + 1 < bodies.size(); t++) {
    const Json& prev = bodies[t];
    const Json& next = bodies[t + 1];
    size_t last = prev["messages"].size() - 1;
    ASSERT_TRUE(prev["messages"][last]["content"].back().contains("cache_control")) << "turn " << t;
    EXPECT_TRUE(next["messages"][last]["content"].back().contains("cache_control")) << "turn " << t;
    EXPECT_EQ(prev["tools"], next["tools"]);
    EXPECT_EQ(prev["system"], next["system"]);
    for (size_t i = 0; i < last; i++) {
      // Same content before the shared breakpoint (cache_control markers aside).
      Json a = prev["messages"][i], b = next["messages"][i];
      for (auto& blk : a["content"]) blk.erase("cache_control");
      for (auto& blk : b["content"]) blk.erase("cache_control");
      EXPECT_EQ(a, b);
    }
  }
}

TEST(CacheBreakpoints, NeverMoreThanFourAndExplicitOnesCount) {
  ModelRequest req;
  req.system = {ContentBlock::Text("a"), ContentBlock::Text("b")};
  req.system[0].cache_control = true;
  req.tools = {{"t1", "", Json::object(), true}, {"t2", "", Json::object()}};
  req.messages = {Message::User("u1"), Message::Assistant({ContentBlock::Text("a1")}), Message::User("u2")};
  req.messages[0].content[0].cache_control = true;
  Json body = BuildAnthropicBody(req, "m", false);
  EXPECT_EQ(CountBreakpoints(body), 4);
  EXPECT_FALSE(body.contains("stream"));
  // The explicit three stay; the automatic one goes to the last message.
  EXPECT_TRUE(body["messages"][2]["content"][0].contains("cache_control"));
  EXPECT_FALSE(body["system"][1].contains("cache_control"));
  EXPECT_EQ(PlaceCacheBreakpoints(body, 4), 0);  // idempotent
}

TEST(CacheBreakpoints, SkipsThinkingAndEmptyTextAndHonoursOptOut) {
  Json body = Json::parse(R"({"system":"plain string system","messages":[
    {"role":"user","content":"hi"},
    {"role":"assistant","content":[{"type":"text","text":"x"},{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":""}]}]})");
  // Last message (an assistant prefill) + system; no tools, no earlier turn.
  EXPECT_EQ(PlaceCacheBreakpoints(body, 4), 2);
  EXPECT_TRUE(body["messages"][1]["content"][0].contains("cache_control"));
  EXPECT_FALSE(body["messages"][1]["content"][1].contains("cache_control"));
  EXPECT_FALSE(body["messages"][1]["content"][2].contains("cache_control"));
  EXPECT_EQ(body["system"], Json::parse(R"([{"type":"text","text":"plain string system","cache_control":{"type":"ephemeral"}}])"));
  EXPECT_EQ(body["messages"][0]["content"], "hi");
  // A string-content last message is normalised to a block to carry the marker.
  Json body2 = Json::parse(R"({"messages":[{"role":"user","content":"only"}]})");
  EXPECT_EQ(PlaceCacheBreakpoints(body2, 4), 1);
  EXPECT_EQ(body2["messages"][0]["content"][0]["cache_control"]["type"], "ephemeral");
  EXPECT_EQ(PlaceCacheBreakpoints(body2, 0), 0);

  ModelRequest req;
  req.messages = {Message::User("u")};
  req.auto_cache = false;
  EXPECT_EQ(CountBreakpoints(BuildAnthropicBody(req, "m", true)), 0);
}

}  // namespace
}  // namespace warren::models

// The same provider over the in-memory FakeHttpClient (no sockets): every
// possible cut of a stream into two chunks decodes to the same response.

namespace warren::models {
namespace {

TEST(AnthropicOverFakeClient, EverySplitOfTheStreamDecodesTheSame) {
  auto fake = std::make_shared<testing::FakeHttpClient>();
  AnthropicOptions o;
  o.api_key = "k";
  o.base_url = "http://fake.invalid";
  auto p = NewAnthropicProvider(o, fake);
  ModelRequest req;
  req.messages.push_back(Message::User("hi"));
  const std::string stream = ToolUseStream();
  for (size_t cut = 0; cut <= stream.size(); cut += 13) {
    fake->Push({Status::Ok(), 200, {{"content-type", "text/event-stream"}}, {stream.substr(0, cut), stream.substr(cut)}});
    ModelResult r = p->Call(req);
    ASSERT_TRUE(r.ok()) << "cut " << cut << ": " << r.error().ToString();
    ASSERT_EQ(r.response().content.size(), 2u);
    EXPECT_EQ(r.response().content[1].input["command"], "ls -la /tmp") << cut;
  }
  auto reqs = fake->requests();
  ASSERT_FALSE(reqs.empty());
  EXPECT_EQ(reqs[0].url, "http://fake.invalid/v1/messages");
  // A transport failure after part of the stream is a retryable request_failed.
  RecordingSleeper sleeper;
  o.retry_deps.sleeper = &sleeper;
  o.retry.max_attempts = 2;
  auto q = NewAnthropicProvider(o, fake);
  fake->Push({Status::Unavailable("reset"), 200, {}, {stream.substr(0, 300)}});
  fake->Push({Status::Unavailable("reset"), 200, {}, {}});
  ModelResult r = q->Call(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kRequestFailed);
  EXPECT_EQ(r.error().attempts, 2);
}

}  // namespace
}  // namespace warren::models

namespace warren::models {
namespace {

// Fields of the wrong type in an upstream stream (nlohmann's value() would
// throw through curl) are protocol errors, never crashes.
TEST(AnthropicOverFakeClient, WrongTypedFieldsAreProtocolErrors) {
  auto fake = std::make_shared<testing::FakeHttpClient>();
  AnthropicOptions o;
  o.api_key = "k";
  o.base_url = "http://fake.invalid";
  o.retry.max_attempts = 1;
  auto p = NewAnthropicProvider(o, fake);
  ModelRequest req;
  req.messages.push_back(Message::User("hi"));
  const std::vector<std::string> bad = {
      R"({"type":"message_start","message":{"id":5,"model":[],"usage":{"input_tokens":"x"}}})",
      R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":7}})",
      R"({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":{},"name":1}})",
      R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":null}})",
      R"({"type":"message_delta","delta":"oops","usage":[1]})",
      R"({"type":"error","error":{"type":529,"message":false}})",
      R"({"type":5})",
      R"([1,2,3])",
  };
  for (const auto& data : bad) {
    std::string s = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n"
                    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
                    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
                    "event: x\ndata: " + data + "\n\n";
    fake->Push({Status::Ok(), 200, {{"content-type", "text/event-stream"}}, {s}});
    ModelResult r = p->Call(req);  // must not throw or crash
    if (!r.ok()) {
      EXPECT_NE(r.error().kind, ModelErrorKind::kCancelled) << data;
    }
  }
}


// ---- CallAsync over the shared curl-multi loop

// 8 calls in flight at once from one thread: the fake API answers none until
// all 8 requests have arrived, so they cannot have run one after another.
TEST_F(AnthropicProviderTest, CallAsyncStreamsManyCallsAtOnce) {
  constexpr int kN = 8;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  for (int i = 0; i < kN; i++) {
    api_.Then([&](const FakeRequest& r, ResponseWriter& w) {
      {
        std::unique_lock<std::mutex> lock(mu);
        arrived++;
        cv.notify_all();
        cv.wait_for(lock, std::chrono::seconds(30), [&] { return arrived == kN; });
      }
      std::string text = Json::parse(r.body)["messages"][0]["content"][0]["text"];
      StreamInPieces(w, TextStream("re: " + text));
    });
  }
  auto p = Provider();
  std::vector<std::promise<ModelResult>> results(kN);
  std::vector<Recorder> recorders(kN);
  for (int i = 0; i < kN; i++) {
    ModelRequest req;
    req.messages.push_back(Message::User("q" + std::to_string(i)));
    p->CallAsync(req, &recorders[i], {}, [&results, i](ModelResult r) { results[i].set_value(std::move(r)); });
  }
  for (int i = 0; i < kN; i++) {
    ModelResult r = results[i].get_future().get();
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    EXPECT_EQ(r.response().Text(), "re: q" + std::to_string(i));
    EXPECT_EQ(recorders[i].text, "re: q" + std::to_string(i));  // previews streamed
  }
  EXPECT_EQ(arrived, kN);
}

// Retries of an async call wait on timers (the real sleeper: TimerLoop), and
// a cancel during the backoff ends the call at once without another attempt.
TEST_F(AnthropicProviderTest, CallAsyncRetriesOnTimersAndCancelsDuringBackoff) {
  AnthropicOptions o;
  o.api_key = "sk-test-key";
  o.base_url = api_.url();
  o.retry.max_attempts = 3;
  o.retry_deps.uniform01 = [] { return 0.0; };
  auto p = NewAnthropicProvider(o, NewCurlHttpClient());
  // 1. 529, then success after a 20 ms retry-after: two attempts.
  api_.ThenError(529, "overloaded_error", {{"retry-after-ms", "20"}});
  api_.ThenStream(TextStream("second time"));
  Recorder rec;
  std::promise<ModelResult> first;
  ModelRequest req;
  req.messages.push_back(Message::User("hi"));
  p->CallAsync(req, &rec, {}, [&](ModelResult r) { first.set_value(std::move(r)); });
  ModelResult r = first.get_future().get();
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r.response().attempts, 2);
  EXPECT_EQ(rec.Count("retry 2 overloaded 20"), 1);
  // 2. 429 with a one-hour retry-after: the cancel ends the wait.
  api_.ThenError(429, "rate_limit_error", {{"retry-after", "3600"}});
  CancelToken token;
  Recorder rec2;
  std::promise<void> retrying;
  struct RetrySignal : Recorder {
    std::promise<void>* p = nullptr;
    void OnRetry(const ModelError& e, int n, int64_t d) override {
      Recorder::OnRetry(e, n, d);
      p->set_value();
    }
  } obs;
  obs.p = &retrying;
  std::promise<ModelResult> second;
  p->CallAsync(req, &obs, {.cancel = &token}, [&](ModelResult r2) { second.set_value(std::move(r2)); });
  retrying.get_future().get();
  token.Cancel();
  ModelResult c = second.get_future().get();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ModelErrorKind::kCancelled);
  EXPECT_EQ(api_.requests().size(), 3u);  // no attempt after the cancel
}

// A cancel while the stream is open ends the call promptly with kCancelled.
TEST_F(AnthropicProviderTest, CallAsyncCancelMidStream) {
  std::atomic<bool> closed{false};
  api_.Then([&](const FakeRequest&, ResponseWriter& w) {
    w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
    std::string s = TextStream("never finished");
    w.Write(s.substr(0, s.find("content_block_stop")));
    for (int i = 0; i < 6000 && !closed; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      closed = w.PeerClosed();
    }
  });
  auto p = Provider();
  CancelToken token;
  struct CancelOnText : Recorder {
    CancelToken* token = nullptr;
    void OnTextDelta(int i, std::string_view t) override {
      Recorder::OnTextDelta(i, t);
      token->Cancel();
    }
  } obs;
  obs.token = &token;
  std::promise<ModelResult> done;
  ModelRequest req;
  req.messages.push_back(Message::User("hi"));
  p->CallAsync(req, &obs, {.cancel = &token}, [&](ModelResult r) { done.set_value(std::move(r)); });
  ModelResult r = done.get_future().get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kCancelled);
  for (int i = 0; i < 2000 && !closed; i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(closed);
}

}  // namespace
}  // namespace warren::models
