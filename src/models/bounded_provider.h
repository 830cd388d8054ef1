// BoundedProvider: a ModelProvider decorator that bounds the calls in flight
// to its inner provider, set by the operator per provider
// (`model.max_concurrent_calls`, WARREN_MODEL_MAX_CONCURRENT; docs/MODELS.md),
// independent of any thread count.
//
// A call over the bound waits in one FIFO queue, holding no thread; calls
// start in the order they were made. The engine asks for a session's next
// call only after recording its previous answer, so a session that just
// finished a call queues behind every session already waiting: one
// session's long chain of calls cannot starve the others (round-robin
// between the sessions that want the model).
//
// A slot is held from the start of the inner call to its completion,
// including the inner provider's retries and their backoff (a 429 backoff
// holds its slot: under a rate limit, handing the slot to another session
// would only send one more request into the same limit). A waiting call
// whose cancel token fires completes with kCancelled at once, from the timer
// thread (never from inside CancelToken::Cancel).
//
// Ownership: owns the inner provider. Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>

#include "models/model_provider.h"

namespace warren::models {

class BoundedProvider final : public ModelProvider {
 public:
  // max_concurrent >= 1.
  BoundedProvider(std::unique_ptr<ModelProvider> inner, int max_concurrent);
  ~BoundedProvider() override = default;
  BoundedProvider(const BoundedProvider&) = delete;
  BoundedProvider& operator=(const BoundedProvider&) = delete;

  std::string_view name() const override { return inner_->name(); }
  std::string default_model() const override { return inner_->default_model(); }
  int64_t context_window(std::string_view model) const override { return inner_->context_window(model); }
  void CallAsync(ModelRequest request, ModelStreamObserver* observer, CallOptions options,
                 ModelCallback done) override;

  int max_concurrent() const { return max_; }
  ModelProvider* inner() const { return inner_.get(); }

  struct Stats {
    int in_flight = 0;      // inner calls running now
    int waiting = 0;        // calls queued for a slot
    int max_in_flight = 0;  // highest in_flight seen
    int64_t started = 0;    // inner calls started in total
  };
  Stats stats() const;

 private:
  struct Waiter {
    ModelRequest request;
    ModelStreamObserver* observer = nullptr;
    CallOptions options;
    ModelCallback done;
    int waker = -1;
  };
  // Starts queued calls while slots are free. Re-entrant calls on the same
  // thread (an inner provider that completes inline) return at once: the
  // outer loop picks the freed slot up, so the stack stays flat.
  void Pump();
  void Launch(std::shared_ptr<Waiter> w);

  const std::unique_ptr<ModelProvider> inner_;
  const int max_;
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<Waiter>> queue_;
  Stats stats_;
};

}  // namespace warren::models
