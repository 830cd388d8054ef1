// libFuzzer target for the model providers' trust boundaries: the anthropic
// SSE decoder, the openai chunk decoder (both driven through the real
// provider over an in-memory HttpClient) and the scripted provider's script
// parser. Property: never crash, never throw, and a stream that decodes OK
// yields only well-formed blocks (tool inputs are objects).
//
// Input layout: byte 0 = target (mod 3), byte 1 = chunk size for the stream
// (1..256), rest = the stream body or the script.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/testing/fake_http_client.h"
#include "models/anthropic_provider.h"
#include "models/openai_provider.h"
#include "models/scripted_provider.h"

using namespace warren;
using namespace warren::models;

namespace {

void Check(bool cond, const char* what) {
  if (!cond) {
    std::fprintf(stderr, "model_stream_fuzz: property violated: %s\n", what);
    std::abort();
  }
}

void CheckResult(const ModelResult& r) {
  if (!r.ok()) {
    Check(r.error().kind != ModelErrorKind::kCancelled, "no spurious cancellation");
    return;
  }
  for (const auto& b : r.response().content) {
    if (b.type == BlockType::kToolUse) Check(b.input.is_object(), "tool input is an object");
  }
}

struct Env {
  std::shared_ptr<testing::FakeHttpClient> http = std::make_shared<testing::FakeHttpClient>();
  std::unique_ptr<ModelProvider> anthropic;
  std::unique_ptr<ModelProvider> openai;
  ModelRequest request;
  Env() {
    log::SetLevel(log::Level::kError);
    AnthropicOptions a;
    a.api_key = "k";
    a.base_url = "http://fuzz.invalid";
    a.retry.max_attempts = 1;
    anthropic = NewAnthropicProvider(a, http);
    OpenAiOptions o;
    o.base_url = "http://fuzz.invalid/v1";
    o.retry.max_attempts = 1;
    openai = NewOpenAiProvider(o, http);
    request.messages.push_back(Message::User("hi"));
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = new Env();
  if (size < 2) return 0;
  int target = data[0] % 3;
  size_t chunk = 1 + data[1];
  std::string body(reinterpret_cast<const char*>(data + 2), size - 2);
  if (target == 2) {
    ScriptedOptions so;
    so.script_text = body.empty() ? std::string(" ") : body;
    so.retry.max_attempts = 1;
    auto p = NewScriptedProvider(so);
    if (p.ok()) CheckResult((*p)->Call(env->request));
    return 0;
  }
  testing::FakeHttpReply reply;
  reply.headers = {{"content-type", "text/event-stream"}};
  for (size_t i = 0; i < body.size(); i += chunk) reply.chunks.push_back(body.substr(i, chunk));
  env->http->Push(reply);
  CheckResult((target == 0 ? env->anthropic : env->openai)->Call(env->request));
  return 0;
}
