#include "models/model_types.h"

#include <gtest/gtest.h>

#include "models/model_provider.h"
#include "models/retry.h"

namespace warren::models {
namespace {

TEST(ModelTypes, RequestRoundTripsThroughJson) {
  Json in = Json::parse(R"({
    "model": "m", "max_tokens": 77,
    "system": [{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],
    "messages": [
      {"role":"user","content":[{"type":"text","text":"hi"},
        {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAA="}}]},
      {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"sig"},
        {"type":"redacted_thinking","data":"d"},
        {"type":"tool_use","id":"toolu_1","name":"bash","input":{"command":"ls"}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","is_error":true,
        "content":[{"type":"text","text":"boom"}]}]}],
    "tools": [{"name":"bash","description":"d","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],
    "thinking": {"type":"enabled","budget_tokens":1024},
    "tool_choice": {"type":"auto"},
    "temperature": 0.5,
    "stop_sequences": ["STOP"],
    "metadata": {"user_id":"u"}
  })");
  auto r = RequestFromJson(in);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->messages[0].content[1].type, BlockType::kImage);
  EXPECT_EQ(r->messages[1].content[2].input["command"], "ls");
  EXPECT_TRUE(r->messages[2].content[0].is_error);
  EXPECT_TRUE(r->system[0].cache_control);
  EXPECT_EQ(RequestToJson(*r), in);
}

TEST(ModelTypes, StringContentAndToolResultStrings) {
  auto m = MessageFromJson(Json::parse(R"({"role":"user","content":"plain"})"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->content[0].text, "plain");
  auto b = BlockFromJson(Json::parse(R"({"type":"tool_result","tool_use_id":"x","content":"out"})"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(JoinText({*b}), "out");
}

TEST(ModelTypes, RejectsMalformedInputWithoutThrowing) {
  for (const char* bad : {R"([])", R"({"role":"robot","content":"x"})", R"({"role":"user"})",
                          R"({"role":"user","content":5})", R"({"role":"user","content":[{"type":5}]})",
                          R"({"role":"user","content":[{"type":"text"}]})",
                          R"({"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":[]}]})",
                          R"({"role":"user","content":[{"type":"tool_result"}]})"}) {
    EXPECT_FALSE(MessageFromJson(Json::parse(bad)).ok()) << bad;
  }
  EXPECT_FALSE(RequestFromJson(Json::parse(R"({"max_tokens":"many"})")).ok());
  EXPECT_FALSE(RequestFromJson(Json::parse(R"({"tools":[{"description":"no name"}]})")).ok());
}

TEST(ModelTypes, UsageAndResponse) {
  ModelUsage u = ModelUsage::FromJson(Json::parse(R"({"input_tokens":1,"output_tokens":2,"cache_read_input_tokens":3})"));
  u += ModelUsage{10, 20, 30, 40};
  EXPECT_EQ(u, (ModelUsage{11, 22, 33, 40}));
  EXPECT_EQ(u.ToJson()["cache_creation_input_tokens"], 40);
  ModelResponse r;
  r.content = {ContentBlock::Text("a"), ContentBlock::ToolUse("t", "n", {}), ContentBlock::Text("b")};
  EXPECT_EQ(r.Text(), "ab");
  EXPECT_EQ(r.ToolUses().size(), 1u);
  EXPECT_EQ(ResponseToJson(r)["stop_sequence"], nullptr);
  EXPECT_EQ(EstimateTokens("12345678"), 2);
}

TEST(ModelErrors, SessionErrorTypesAndStatus) {
  ModelError e;
  e.kind = ModelErrorKind::kRateLimited;
  EXPECT_EQ(e.SessionErrorType(), "model_rate_limited_error");
  EXPECT_EQ(e.ToStatus().code(), Code::kResourceExhausted);
  e.kind = ModelErrorKind::kRequestFailed;
  EXPECT_EQ(e.SessionErrorType(), "model_request_failed_error");
  e.kind = ModelErrorKind::kBilling;
  EXPECT_EQ(e.SessionErrorType(), "billing_error");
  e.kind = ModelErrorKind::kAuthentication;
  EXPECT_EQ(e.SessionErrorType(), "unknown_error");
}

TEST(Retry, DelaysAndLimits) {
  RetryPolicy p;
  ModelError e;
  EXPECT_EQ(p.DelayMs(1, e, 0), 500);
  EXPECT_EQ(p.DelayMs(2, e, 0), 1000);
  EXPECT_EQ(p.DelayMs(20, e, 0), 30'000);
  EXPECT_EQ(p.DelayMs(1, e, 1.0), 375);
  e.retry_after_ms = 120'000;
  EXPECT_EQ(p.DelayMs(1, e, 0), 60'000);
  e.retry_after_ms = 0;
  EXPECT_EQ(p.DelayMs(3, e, 0), 0);
}

TEST(Retry, StopsOnNonRetryableAndOnCancel) {
  RecordingSleeper sleeper;
  RetryDeps deps{&sleeper, [] { return 0.0; }};
  int calls = 0;
  auto fail = [&](bool retryable) {
    return [&calls, retryable](int) {
      calls++;
      ModelError e;
      e.retryable = retryable;
      return ModelResult(e);
    };
  };
  ModelResult r = CallWithRetries(RetryPolicy{}, deps, {}, nullptr, fail(false));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r.attempts(), 1);
  calls = 0;
  r = CallWithRetries(RetryPolicy{.max_attempts = 3}, deps, {}, nullptr, fail(true));
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r.attempts(), 3);
  CancelToken token;
  calls = 0;
  r = CallWithRetries(RetryPolicy{}, deps, {.cancel = &token}, nullptr, [&](int) {
    calls++;
    token.Cancel();
    ModelError e;
    e.retryable = true;
    return ModelResult(e);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r.error().kind, ModelErrorKind::kCancelled);
}

TEST(Retry, RealSleeperWakesOnCancel) {
  CancelToken token;
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    token.Cancel();
  });
  // A 10-minute sleep that must end when the token fires.
  EXPECT_FALSE(Sleeper::Real()->SleepFor(600'000, &token));
  t.join();
  EXPECT_TRUE(Sleeper::Real()->SleepFor(0, nullptr));
}

}  // namespace
}  // namespace warren::models
