// The `anthropic` provider: the Messages API (POST {base}/v1/messages,
// "stream": true) over HttpClient.
//
// Configuration precedence, as the official clients do it: explicit options,
// then the environment (ANTHROPIC_API_KEY or the variable named by
// api_key_env; ANTHROPIC_AUTH_TOKEN for a Bearer token; ANTHROPIC_BASE_URL),
// then defaults (https://api.anthropic.com). Headers: x-api-key (or
// Authorization: Bearer), anthropic-version: 2023-06-01, anthropic-beta when
// betas are configured, content-type, accept: text/event-stream.
//
// Prompt caching: with ModelRequest::auto_cache, ephemeral cache_control
// breakpoints go on the last message's last cacheable block, the last system
// block, the last tool and the previous user turn's last block, in that
// priority, never exceeding 4 including explicit ones (see docs/MODELS.md).
//
// Thread-safe: Call() may run concurrently; the object is immutable after
// construction.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/http_client.h"
#include "models/model_provider.h"
#include "models/retry.h"

namespace warren::models {

struct AnthropicOptions {
  std::string api_key;                         // "" = $api_key_env
  std::string api_key_env = "ANTHROPIC_API_KEY";
  std::string auth_token;                      // "" = $ANTHROPIC_AUTH_TOKEN (Bearer; used when no api key)
  std::string base_url;                        // "" = $ANTHROPIC_BASE_URL, else https://api.anthropic.com
  std::string default_model = "claude-sonnet-4-5";
  std::string version = "2023-06-01";
  std::vector<std::string> betas;              // anthropic-beta, comma-joined
  HttpHeaders extra_headers;
  int64_t connect_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 120'000;           // no byte (not even a ping) for this long = failed attempt
  int64_t total_timeout_ms = 3'600'000;         // a hard cap per attempt; idle_timeout_ms is the real guard
  int max_cache_breakpoints = 4;
  size_t max_event_bytes = 16u << 20;          // SSE event size bound
  RetryPolicy retry;
  RetryDeps retry_deps;                        // sleeper / jitter (tests)
  Clock* clock = nullptr;                      // for HTTP-date retry-after; null = real
};

std::unique_ptr<ModelProvider> NewAnthropicProvider(AnthropicOptions options, std::shared_ptr<HttpClient> http);

// The request body the provider sends (exposed for tests and debugging):
// RequestToJson + "stream" + automatic cache breakpoints.
Json BuildAnthropicBody(const ModelRequest& request, std::string_view default_model, bool stream,
                        int max_cache_breakpoints = 4);

// Places ephemeral cache_control breakpoints into a Messages API body in
// place; returns how many it added. Exposed for tests.
int PlaceCacheBreakpoints(Json& body, int max_breakpoints);

}  // namespace warren::models
