// The `scripted` provider: deterministic model turns from a script file. It
// is the offline default and the backbone of the engine's golden tests.
//
// A script is a list of rules, tried in order; the first rule whose `when`
// conditions all hold produces the turn (text, thinking, tool calls, usage,
// or a simulated error); if none matches, `default` does. The format
// (JSON with comments, or JSON Lines) is documented in docs/MODELS.md with
// examples; src/models/testdata/*.json are working scripts.
//
// Determinism: same script + same conversation + same call order = same
// output, including tool_use ids ("toolu_s<call>_<n>" unless the script gives
// one). Rule counters (`times`, successive `replies`) live in the provider
// object: they start at zero when the process starts.
//
// Thread-safe: calls may run concurrently (counters under a mutex).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "models/model_provider.h"
#include "models/retry.h"

namespace warren::models {

struct ScriptedOptions {
  std::string script_path;  // a file; or
  std::string script_text;  // the script itself (tests); "" and no path = the built-in echo script
  std::string default_model = "scripted";
  int64_t context_window = 200'000;
  // Simulated latency of every attempt (a timer, no thread held); 0 = instant.
  int64_t latency_ms = 0;
  // Simulated errors go through the same retry loop as real providers.
  // No jitter: delays are deterministic too.
  RetryPolicy retry = {.max_attempts = 3, .initial_backoff_ms = 10, .max_backoff_ms = 100, .jitter = 0};
  RetryDeps retry_deps;
};

// Errors: InvalidArgument naming the rule (or JSONL line) and the problem,
// IOError if the file cannot be read.
Result<std::unique_ptr<ModelProvider>> NewScriptedProvider(ScriptedOptions options);

// Parses and validates a script without building a provider.
Status ValidateScript(std::string_view text);

// The script used when none is configured: echoes the latest user message.
std::string_view BuiltinScript();

}  // namespace warren::models
