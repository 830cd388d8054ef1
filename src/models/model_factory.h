// Builds the configured ModelProvider. The config comes from the service's
// config file ("model": {...}) or the CLI; see docs/MODELS.md.
//
//   {"provider": "anthropic", "model": "claude-sonnet-4-5",
//    "base_url": "", "api_key_env": "ANTHROPIC_API_KEY", "max_attempts": 5}
//   {"provider": "openai", "model": "qwen2.5", "base_url": "http://127.0.0.1:11434/v1"}
//   {"provider": "scripted", "script": "tests/golden/engine/hello.json"}
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/http_client.h"
#include "common/json.h"
#include "models/model_provider.h"
#include "models/retry.h"

namespace warren::models {

struct ModelConfig {
  std::string provider = "scripted";  // "anthropic" | "openai" | "scripted"
  std::string model;                  // the provider's default model; "" = built-in default
  std::string base_url;               // "" = environment, then the provider default
  std::string api_key;                // a literal key (prefer api_key_env)
  std::string api_key_env;            // "" = ANTHROPIC_API_KEY / OPENAI_API_KEY
  std::string script_path;            // scripted: the script file ("" = built-in echo script)
  std::vector<std::string> betas;     // anthropic-beta values
  int max_attempts = 0;               // 0 = provider default (anthropic/openai 5, scripted 3)
  int64_t context_window = 0;         // 0 = provider default
  // Model calls in flight at once to this provider (BoundedProvider); the
  // rest wait FIFO. Set by the operator for the provider's rate limits.
  int max_concurrent_calls = kDefaultMaxConcurrentCalls;
  int64_t latency_ms = 0;             // scripted: simulated latency per attempt (a timer)

  static constexpr int kDefaultMaxConcurrentCalls = 64;
};

// Keys: provider, model, base_url, api_key, api_key_env, script (or
// script_path), betas, max_attempts, context_window, max_concurrent_calls
// (an integer 1..100000, or its decimal string, as the environment gives
// it), latency_ms (scripted). Unknown keys are errors.
Result<ModelConfig> ModelConfigFromJson(const Json& j);

// Test seams; production passes {}.
struct ProviderDeps {
  std::shared_ptr<HttpClient> http;    // null = a new curl client
  Sleeper* sleeper = nullptr;          // null = real sleeping
  Clock* clock = nullptr;
  std::function<double()> uniform01;   // jitter source
};

// The provider comes wrapped in a BoundedProvider of max_concurrent_calls.
// Errors: InvalidArgument for an unknown provider or a bad script; IOError
// for an unreadable script file.
Result<std::unique_ptr<ModelProvider>> NewModelProvider(const ModelConfig& config, const ProviderDeps& deps = {});

}  // namespace warren::models
