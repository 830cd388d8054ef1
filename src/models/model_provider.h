// ModelProvider: the one interface the agent engine calls models through.
//
//   ModelResult r = provider->Call(request, &observer, {.cancel = &token});
//   if (!r.ok()) { r.error().kind, r.error().retryable, r.error().attempts ... }
//   else         { r.response().content, stop_reason, usage, attempts }
//
//   provider->CallAsync(request, &observer, {.cancel = &token},
//                       [](ModelResult r) { ... });   // returns at once
//
// CallAsync() starts the call and returns at once; `done` runs exactly once
// when the answer is complete (or failed, or cancelled), including the
// provider's own retries (exponential backoff with jitter, honouring
// retry-after; see retry.h), whose waits are timers, not sleeping threads.
// The HTTP providers stream on the shared curl-multi event loop
// (HttpClient::StreamAsync), so in-flight calls hold no thread; the observer
// and `done` run on that loop's thread (or the timer thread, or inline
// before CallAsync returns) and must not block. The observer, the cancel
// token and whatever `done` refers to must outlive `done`.
//
// Call() is the blocking form (the calling thread waits for the same
// CallAsync), kept for tools and tests; the observer then runs on another
// thread while the caller waits. The observer receives deltas as they arrive
// and OnRetry() before each new attempt: whatever it received since the last
// OnAttemptStart belongs to a failed attempt and must be discarded.
//
// Implementations (anthropic, openai, scripted) are thread-safe: one provider
// object may serve many sessions concurrently. An implementation overrides
// CallAsync (the providers here) or Call (simple fakes: CallAsync then runs
// Call on a thread of its own); overriding neither recurses.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "common/http_client.h"
#include "common/status.h"
#include "models/model_types.h"

namespace warren::models {

enum class ModelErrorKind {
  kOverloaded,       // 529 / overloaded_error (also mid-stream)        retryable
  kRateLimited,      // 429 / rate_limit_error (+ retry_after_ms)       retryable
  kRequestFailed,    // 5xx, network, timeout, truncated/garbled stream retryable
  kAuthentication,   // 401 / missing key                               terminal
  kPermission,       // 403                                             terminal
  kInvalidRequest,   // 400/404/409/422 / invalid_request_error         terminal
  kRequestTooLarge,  // 413 / prompt too long                           terminal
  kBilling,          // 402 / billing_error                             terminal
  kCancelled,        // the caller's CancelToken                        terminal
};

std::string_view ModelErrorKindName(ModelErrorKind kind);

struct ModelError {
  ModelErrorKind kind = ModelErrorKind::kRequestFailed;
  bool retryable = false;
  std::string message;
  int http_status = 0;                   // 0: transport or mid-stream error
  std::optional<int64_t> retry_after_ms;  // from retry-after(-ms) or the script
  std::string upstream_type;             // e.g. "overloaded_error" as the server said it
  std::string request_id;                // upstream "request-id" header when known
  bool mid_stream = false;               // failed after the stream had started
  int attempts = 1;                      // attempts made in total (set on the final error)

  // The spec's session.error type: "model_overloaded_error",
  // "model_rate_limited_error", "model_request_failed_error",
  // "billing_error" or "unknown_error" (authentication/permission/invalid).
  std::string_view SessionErrorType() const;
  Status ToStatus() const;
  std::string ToString() const;
};

// Either a ModelResponse or a ModelError.
class ModelResult final {
 public:
  ModelResult(ModelResponse response) : v_(std::move(response)) {}  // NOLINT: implicit
  ModelResult(ModelError error) : v_(std::move(error)) {}           // NOLINT: implicit

  bool ok() const { return std::holds_alternative<ModelResponse>(v_); }
  const ModelResponse& response() const& { return std::get<ModelResponse>(v_); }
  ModelResponse&& response() && { return std::get<ModelResponse>(std::move(v_)); }
  const ModelError& error() const { return std::get<ModelError>(v_); }
  ModelError& mutable_error() { return std::get<ModelError>(v_); }
  ModelResponse& mutable_response() { return std::get<ModelResponse>(v_); }
  // Attempts made, success or not.
  int attempts() const { return ok() ? response().attempts : error().attempts; }

 private:
  std::variant<ModelResponse, ModelError> v_;
};

// Streaming callbacks. Every method has an empty default. `index` is the
// content block's position in the final ModelResponse::content.
class ModelStreamObserver {
 public:
  virtual ~ModelStreamObserver() = default;
  // A new attempt starts (1-based). Called before any delta of that attempt.
  virtual void OnAttemptStart(int attempt) {}
  // message_start: upstream id and the input-side usage known so far.
  virtual void OnMessageStart(std::string_view message_id, const ModelUsage& usage) {}
  virtual void OnTextStart(int index) {}
  virtual void OnTextDelta(int index, std::string_view text) {}
  virtual void OnThinkingStart(int index) {}
  virtual void OnThinkingDelta(int index, std::string_view thinking) {}
  virtual void OnToolUseStart(int index, std::string_view id, std::string_view name) {}
  virtual void OnToolInputDelta(int index, std::string_view partial_json) {}
  // The block is complete (tool_use input parsed).
  virtual void OnBlockStop(int index, const ContentBlock& block) {}
  // The attempt failed with a retryable error; the next attempt starts after
  // `delay_ms`. Partial output of the failed attempt must be discarded.
  virtual void OnRetry(const ModelError& error, int next_attempt, int64_t delay_ms) {}
};

struct CallOptions {
  const CancelToken* cancel = nullptr;  // Cancel() aborts the stream and any backoff sleep
};

// Completion of ModelProvider::CallAsync.
using ModelCallback = std::function<void(ModelResult)>;

class ModelProvider {
 public:
  virtual ~ModelProvider() = default;

  // "anthropic", "openai" or "scripted".
  virtual std::string_view name() const = 0;
  // The model used when ModelRequest::model is empty.
  virtual std::string default_model() const = 0;
  // Context window of `model` in tokens (for compaction thresholds).
  virtual int64_t context_window(std::string_view model) const { return 200'000; }

  // Asynchronous, thread-safe; see the file comment. `observer` may be null.
  virtual void CallAsync(ModelRequest request, ModelStreamObserver* observer, CallOptions options,
                         ModelCallback done);

  // Blocking, thread-safe; see the file comment. `observer` may be null.
  virtual ModelResult Call(const ModelRequest& request, ModelStreamObserver* observer = nullptr,
                           const CallOptions& options = {});
};

}  // namespace warren::models
