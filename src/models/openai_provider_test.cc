// The openai provider against a fake OpenAI-compatible server (vLLM / Ollama
// / llama.cpp style SSE chunks) on 127.0.0.1:0.
#include "models/openai_provider.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <mutex>

#include "common/testing/fake_http_server.h"

namespace warren::models {
namespace {

using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::ResponseWriter;

std::string Chunk(const Json& j) { return "data: " + j.dump() + "\n\n"; }

Json Delta(const Json& delta, const Json& finish = nullptr) {
  return {{"id", "chatcmpl-1"}, {"object", "chat.completion.chunk"}, {"model", "qwen"},
          {"choices", Json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}};
}

// vLLM-like: reasoning, text, one tool call with arguments in pieces, then a
// usage-only chunk and [DONE].
std::string VllmToolStream() {
  std::string s;
  s += Chunk(Delta({{"role", "assistant"}, {"content", ""}}));
  s += Chunk(Delta({{"reasoning_content", "Need to list "}}));
  s += Chunk(Delta({{"reasoning_content", "files."}}));
  s += Chunk(Delta({{"content", "Listing"}}));
  s += Chunk(Delta({{"content", " now."}}));
  s += Chunk(Delta({{"tool_calls", {{{"index", 0}, {"id", "call_abc"}, {"type", "function"},
                                     {"function", {{"name", "bash"}, {"arguments", ""}}}}}}}));
  for (const char* piece : {"{\"command\"", ": \"ls", " -la\"}"}) {
    s += Chunk(Delta({{"tool_calls", {{{"index", 0}, {"function", {{"arguments", piece}}}}}}}));
  }
  s += Chunk(Delta(Json::object(), "tool_calls"));
  s += Chunk({{"id", "chatcmpl-1"}, {"choices", Json::array()},
              {"usage", {{"prompt_tokens", 120}, {"completion_tokens", 30}, {"total_tokens", 150},
                         {"prompt_tokens_details", {{"cached_tokens", 100}}}}}});
  s += "data: [DONE]\n\n";
  return s;
}

void Stream(ResponseWriter& w, const std::string& body) {
  w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
  for (size_t i = 0; i < body.size(); i += 11) w.Write(std::string_view(body).substr(i, 11));
  w.End();
}

class FakeChatApi {
 public:
  using Reply = std::function<void(const FakeRequest&, ResponseWriter&)>;
  FakeChatApi()
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
            FakeHttpServer::Reply(w, 500, R"({"error":{"message":"no reply scripted"}})");
          }
        }) {}
  void Then(Reply r) {
    std::lock_guard<std::mutex> lock(mu_);
    replies_.push_back(std::move(r));
  }
  void ThenStream(std::string s) {
    Then([s](const FakeRequest&, ResponseWriter& w) { Stream(w, s); });
  }
  std::vector<FakeRequest> requests() const { return server_.requests(); }
  Json Body(size_t i) const { return Json::parse(requests().at(i).body); }
  std::string url() const { return server_.url(); }

 private:
  std::mutex mu_;
  std::deque<Reply> replies_;
  FakeHttpServer server_;
};

class OpenAiProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"http_proxy", "all_proxy", "OPENAI_API_KEY", "OPENAI_BASE_URL"}) ::unsetenv(v);
  }
  std::unique_ptr<ModelProvider> Provider(std::string base_suffix = "/v1", int max_attempts = 4) {
    OpenAiOptions o;
    o.base_url = api_.url() + base_suffix;
    o.api_key = "sk-local";
    o.default_model = "qwen";
    o.retry.max_attempts = max_attempts;
    o.retry_deps.sleeper = &sleeper_;
    o.retry_deps.uniform01 = [] { return 0.0; };
    return NewOpenAiProvider(o, NewCurlHttpClient());
  }
  static ModelRequest Conversation() {
    ModelRequest r;
    r.system = {ContentBlock::Text("You are helpful."), ContentBlock::Text("Be brief.")};
    r.tools = {{"bash", "Run a command", Json::parse(R"({"type":"object","properties":{"command":{"type":"string"}}})")}};
    r.messages.push_back(Message::User("What is in /tmp?"));
    r.messages.push_back(Message::Assistant({ContentBlock::Thinking("hidden", "sig"), ContentBlock::Text("Checking."),
                                             ContentBlock::ToolUse("call_1", "bash", {{"command", "ls /tmp"}})}));
    r.messages.push_back(Message::User({ContentBlock::ToolResult("call_1", "a.txt"),
                                        ContentBlock::ToolResult("call_2", "denied", true),
                                        ContentBlock::Text("And sizes?")}));
    r.max_tokens = 512;
    r.tool_choice = {{"type", "any"}};
    return r;
  }
  FakeChatApi api_;
  RecordingSleeper sleeper_;
};

TEST_F(OpenAiProviderTest, TranslatesTheCanonicalRequest) {
  api_.ThenStream(VllmToolStream());
  auto p = Provider();
  ASSERT_TRUE(p->Call(Conversation()).ok());
  auto reqs = api_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/v1/chat/completions");
  EXPECT_EQ(reqs[0].Header("authorization"), "Bearer sk-local");
  Json want = Json::parse(R"({
    "model": "qwen", "max_tokens": 512, "stream": true, "stream_options": {"include_usage": true},
    "tool_choice": "required",
    "tools": [{"type": "function", "function": {"name": "bash", "description": "Run a command",
               "parameters": {"type":"object","properties":{"command":{"type":"string"}}}}}],
    "messages": [
      {"role": "system", "content": "You are helpful.\n\nBe brief."},
      {"role": "user", "content": "What is in /tmp?"},
      {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\":\"ls /tmp\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
      {"role": "tool", "tool_call_id": "call_2", "content": "Error: denied"},
      {"role": "user", "content": "And sizes?"}]
  })");
  EXPECT_EQ(api_.Body(0), want) << api_.Body(0).dump(2);
}

TEST_F(OpenAiProviderTest, DecodesReasoningTextAndToolCallDeltas) {
  api_.ThenStream(VllmToolStream());
  auto p = Provider();
  struct Rec : ModelStreamObserver {
    std::vector<std::string> log;
    void OnThinkingStart(int i) override { log.push_back("thinking " + std::to_string(i)); }
    void OnTextStart(int i) override { log.push_back("text " + std::to_string(i)); }
    void OnToolUseStart(int i, std::string_view id, std::string_view n) override {
      log.push_back("tool " + std::to_string(i) + " " + std::string(id) + " " + std::string(n));
    }
    void OnToolInputDelta(int, std::string_view j) override { log.push_back("args " + std::string(j)); }
    void OnBlockStop(int i, const ContentBlock&) override { log.push_back("stop " + std::to_string(i)); }
  } rec;
  ModelResult r = p->Call(Conversation(), &rec);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  const auto& resp = r.response();
  ASSERT_EQ(resp.content.size(), 3u);
  EXPECT_EQ(resp.content[0].type, BlockType::kThinking);
  EXPECT_EQ(resp.content[0].text, "Need to list files.");
  EXPECT_EQ(resp.content[1].text, "Listing now.");
  EXPECT_EQ(resp.content[2].id, "call_abc");
  EXPECT_EQ(resp.content[2].name, "bash");
  EXPECT_EQ(resp.content[2].input, Json::parse(R"({"command":"ls -la"})"));
  EXPECT_EQ(resp.stop_reason, "tool_use");
  EXPECT_EQ(resp.usage, (ModelUsage{20, 30, 100, 0}));
  EXPECT_EQ(resp.model, "qwen");
  EXPECT_EQ(rec.log, (std::vector<std::string>{"thinking 0", "text 1", "tool 2 call_abc bash", "args {\"command\"",
                                               "args : \"ls", "args  -la\"}", "stop 0", "stop 1", "stop 2"}));
}

TEST_F(OpenAiProviderTest, OllamaStyleWholeToolCallsAndBaseWithoutV1) {
  std::string s;
  s += Chunk(Delta({{"role", "assistant"}, {"content", ""},
                    {"tool_calls", {{{"id", "call_x"}, {"index", 0}, {"type", "function"},
                                     {"function", {{"name", "read"}, {"arguments", "{\"file_path\":\"/a\"}"}}}},
                                    {{"id", "call_y"}, {"index", 1}, {"type", "function"},
                                     {"function", {{"name", "glob"}, {"arguments", "{\"pattern\":"}}}}}}}));
  s += Chunk(Delta({{"tool_calls", {{{"index", 1}, {"function", {{"arguments", "\"**/*.go\"}"}}}}}}}));
  s += Chunk(Delta(Json::object(), "stop"));  // Ollama says "stop" even with tool calls
  s += "data: [DONE]\n\n";
  api_.ThenStream(s);
  auto p = Provider(/*base_suffix=*/"");
  ModelResult r = p->Call(Conversation());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(api_.requests()[0].target, "/v1/chat/completions");
  ASSERT_EQ(r.response().ToolUses().size(), 2u);
  EXPECT_EQ(r.response().ToolUses()[0]->input["file_path"], "/a");
  EXPECT_EQ(r.response().ToolUses()[1]->input["pattern"], "**/*.go");
  EXPECT_EQ(r.response().stop_reason, "tool_use");
  EXPECT_EQ(r.response().usage, ModelUsage{});
}

TEST_F(OpenAiProviderTest, PlainTextFinishStopAndLength) {
  api_.ThenStream(Chunk(Delta({{"content", "Hello"}})) + Chunk(Delta(Json::object(), "stop")) + "data: [DONE]\n\n");
  api_.ThenStream(Chunk(Delta({{"content", "Trunc"}})) + Chunk(Delta(Json::object(), "length")));  // no [DONE]
  auto p = Provider();
  ModelResult r = p->Call(Conversation());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.response().Text(), "Hello");
  EXPECT_EQ(r.response().stop_reason, "end_turn");
  r = p->Call(Conversation());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r.response().stop_reason, "max_tokens");
}

TEST_F(OpenAiProviderTest, RetriesRateLimitsOverloadAndBrokenStreams) {
  api_.Then([](const FakeRequest&, ResponseWriter& w) {
    FakeHttpServer::Reply(w, 429, R"({"error":{"message":"slow down","type":"rate_limit_exceeded"}})", {{"retry-after", "2"}});
  });
  api_.Then([](const FakeRequest&, ResponseWriter& w) { FakeHttpServer::Reply(w, 503, R"({"error":"model is loading"})"); });
  api_.ThenStream(Chunk(Delta({{"content", "par"}})) + Chunk({{"error", {{"message", "engine died"}, {"type", "server_error"}}}}));
  api_.ThenStream(Chunk(Delta({{"content", "cut"}})));  // ends without finish_reason or [DONE]
  api_.ThenStream(Chunk(Delta({{"content", "done"}})) + Chunk(Delta(Json::object(), "stop")) + "data: [DONE]\n\n");
  auto p = Provider("/v1", 6);
  std::vector<std::string> kinds;
  struct Rec : ModelStreamObserver {
    std::vector<std::string>* kinds;
    void OnRetry(const ModelError& e, int, int64_t) override { kinds->push_back(std::string(ModelErrorKindName(e.kind))); }
  } rec;
  rec.kinds = &kinds;
  ModelResult r = p->Call(Conversation(), &rec);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r.response().Text(), "done");
  EXPECT_EQ(r.attempts(), 5);
  EXPECT_EQ(kinds, (std::vector<std::string>{"rate_limited", "overloaded", "request_failed", "request_failed"}));
  EXPECT_EQ(sleeper_.delays(), (std::vector<int64_t>{2000, 1000, 2000, 4000}));
}

TEST_F(OpenAiProviderTest, ClientErrorIsTerminalWithMessage) {
  api_.Then([](const FakeRequest&, ResponseWriter& w) {
    FakeHttpServer::Reply(w, 400, R"({"error":{"message":"tools not supported by this model","type":"BadRequestError"}})");
  });
  auto p = Provider();
  ModelResult r = p->Call(Conversation());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kInvalidRequest);
  EXPECT_EQ(r.error().message, "tools not supported by this model");
  EXPECT_EQ(r.error().attempts, 1);
}

TEST_F(OpenAiProviderTest, NonStreamedAnswerAndInvalidArguments) {
  api_.Then([](const FakeRequest&, ResponseWriter& w) {
    FakeHttpServer::Reply(w, 200, R"({"id":"x","model":"llama","choices":[{"index":0,"finish_reason":"tool_calls",
      "message":{"role":"assistant","content":"ok","tool_calls":[{"id":"c1","type":"function",
      "function":{"name":"bash","arguments":"{not json"}}]}}],
      "usage":{"prompt_tokens":5,"completion_tokens":6}})", {{"Content-Type", "application/json"}});
  });
  auto p = Provider();
  ModelResult r = p->Call(Conversation());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r.response().Text(), "ok");
  ASSERT_EQ(r.response().ToolUses().size(), 1u);
  EXPECT_EQ(r.response().ToolUses()[0]->input, Json::parse(R"({"_invalid_arguments":"{not json"})"));
  EXPECT_EQ(r.response().usage, (ModelUsage{5, 6, 0, 0}));
}

TEST_F(OpenAiProviderTest, KeyAndBaseUrlFromEnvironment) {
  api_.ThenStream(Chunk(Delta({{"content", "x"}}, "stop")));
  ::setenv("OPENAI_API_KEY", "sk-env", 1);
  ::setenv("OPENAI_BASE_URL", (api_.url() + "/v1/").c_str(), 1);
  auto p = NewOpenAiProvider(OpenAiOptions{}, nullptr);
  ::unsetenv("OPENAI_API_KEY");
  ::unsetenv("OPENAI_BASE_URL");
  ASSERT_TRUE(p->Call(Conversation()).ok());
  EXPECT_EQ(api_.requests()[0].Header("authorization"), "Bearer sk-env");
  EXPECT_EQ(api_.requests()[0].target, "/v1/chat/completions");
}

TEST(OpenAiBody, ImagesBecomeDataUrlsAndNoKeyMeansNoAuthHeader) {
  ModelRequest r;
  ContentBlock img;
  img.type = BlockType::kImage;
  img.raw = Json::parse(R"({"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"QUJD"}})");
  r.messages.push_back(Message::User({ContentBlock::Text("what is this"), img}));
  Json body = BuildOpenAiBody(r, "m", false);
  EXPECT_FALSE(body.contains("stream"));
  EXPECT_EQ(body["messages"][0]["content"], Json::parse(R"([{"type":"text","text":"what is this"},
    {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,QUJD"}}])"));
}

}  // namespace
}  // namespace warren::models
