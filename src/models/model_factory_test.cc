#include "models/model_factory.h"

#include <gtest/gtest.h>

namespace warren::models {
namespace {

TEST(ModelFactory, ConfigFromJson) {
  auto c = ModelConfigFromJson(Json::parse(R"({"provider":"openai","model":"qwen","base_url":"http://127.0.0.1:11434/v1",
    "api_key_env":"MY_KEY","betas":["a"],"max_attempts":2,"context_window":8192})"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->provider, "openai");
  EXPECT_EQ(c->model, "qwen");
  EXPECT_EQ(c->api_key_env, "MY_KEY");
  EXPECT_EQ(c->max_attempts, 2);
  EXPECT_EQ(c->context_window, 8192);
  EXPECT_FALSE(ModelConfigFromJson(Json::parse(R"({"provder":"x"})")).ok());
  EXPECT_FALSE(ModelConfigFromJson(Json::parse(R"({"max_attempts":0})")).ok());
  EXPECT_FALSE(ModelConfigFromJson(Json::parse(R"({"model":5})")).ok());
  EXPECT_EQ(ModelConfigFromJson(Json::object())->provider, "scripted");
}

TEST(ModelFactory, BuildsEachProvider) {
  ModelConfig c;
  auto scripted = NewModelProvider(c);
  ASSERT_TRUE(scripted.ok());
  EXPECT_EQ((*scripted)->name(), "scripted");
  c.provider = "anthropic";
  c.model = "claude-x";
  auto anthropic = NewModelProvider(c);
  ASSERT_TRUE(anthropic.ok());
  EXPECT_EQ((*anthropic)->name(), "anthropic");
  EXPECT_EQ((*anthropic)->default_model(), "claude-x");
  c.provider = "openai";
  c.context_window = 4096;
  auto openai = NewModelProvider(c);
  ASSERT_TRUE(openai.ok());
  EXPECT_EQ((*openai)->name(), "openai");
  EXPECT_EQ((*openai)->context_window("x"), 4096);
  c.provider = "gemini";
  EXPECT_EQ(NewModelProvider(c).status().code(), Code::kInvalidArgument);
  c.provider = "scripted";
  c.script_path = std::string(WARREN_MODELS_TESTDATA) + "/example.json";
  auto from_file = NewModelProvider(c);
  ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
  ModelRequest r;
  r.messages.push_back(Message::User("deploy"));
  EXPECT_EQ((*from_file)->Call(r).response().ToolUses()[0]->name, "deploy");
  c.script_path = "/nonexistent.json";
  EXPECT_EQ(NewModelProvider(c).status().code(), Code::kIOError);
}

TEST(ModelFactory, AnthropicWithoutKeyFailsAtCallTime) {
  ::unsetenv("ANTHROPIC_API_KEY");
  ::unsetenv("ANTHROPIC_AUTH_TOKEN");
  ModelConfig c;
  c.provider = "anthropic";
  c.api_key_env = "WARREN_TEST_NO_SUCH_KEY";
  c.base_url = "http://127.0.0.1:1";
  auto p = NewModelProvider(c);
  ASSERT_TRUE(p.ok());
  ModelRequest r;
  r.messages.push_back(Message::User("x"));
  ModelResult res = (*p)->Call(r);
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().kind, ModelErrorKind::kAuthentication);
  EXPECT_NE(res.error().message.find("WARREN_TEST_NO_SUCH_KEY"), std::string::npos);
}

}  // namespace
}  // namespace warren::models
