// The `openai` provider: any OpenAI-compatible /v1/chat/completions endpoint
// with streaming and tool calling (vLLM, Ollama, llama.cpp server, OpenAI).
//
// Canonical -> chat completions: system blocks become one "system" message;
// tool_result blocks become "tool" messages (before the user's other
// content); tool_use blocks become assistant "tool_calls" (arguments = JSON
// text); images become image_url data URLs; thinking blocks are dropped.
// Back: "content" deltas -> a text block, "reasoning_content"/"reasoning"
// deltas -> a thinking block, "tool_calls" deltas -> tool_use blocks;
// finish_reason stop/tool_calls/length -> end_turn/tool_use/max_tokens;
// usage prompt_tokens - cached_tokens -> input_tokens, cached_tokens ->
// cache_read_input_tokens, completion_tokens -> output_tokens.
//
// Base URL: options, else $OPENAI_BASE_URL, else http://127.0.0.1:8000/v1.
// The endpoint is base + "/chat/completions" when the base ends in "/v1",
// else base + "/v1/chat/completions". Key: options, else $api_key_env
// (default OPENAI_API_KEY); sent as "Authorization: Bearer" when non-empty.
//
// Thread-safe: Call() may run concurrently.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "common/http_client.h"
#include "models/model_provider.h"
#include "models/retry.h"

namespace warren::models {

struct OpenAiOptions {
  std::string base_url;                 // see the file comment
  std::string api_key;
  std::string api_key_env = "OPENAI_API_KEY";
  std::string default_model = "default";
  HttpHeaders extra_headers;
  bool stream_usage = true;             // "stream_options": {"include_usage": true}
  int64_t context_window = 32'768;
  int64_t connect_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 300'000;    // local models can be slow to the first token
  int64_t total_timeout_ms = 1'800'000;
  size_t max_event_bytes = 16u << 20;
  RetryPolicy retry;
  RetryDeps retry_deps;
  Clock* clock = nullptr;
};

std::unique_ptr<ModelProvider> NewOpenAiProvider(OpenAiOptions options, std::shared_ptr<HttpClient> http);

// The chat-completions body for `request` (exposed for tests).
Json BuildOpenAiBody(const ModelRequest& request, std::string_view default_model, bool stream,
                     bool stream_usage = true);

}  // namespace warren::models
