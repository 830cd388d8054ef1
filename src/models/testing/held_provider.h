// HeldProvider: a slow model for tests. CallAsync records the call and
// returns; the call completes only when the test says so (Complete), or with
// kCancelled when its token fires. No wall clock: a "slow" call is simply one
// the test has not completed yet. Header-only, test code.
//
// Thread-safe. A cancelled call completes from the TimerLoop thread, never
// inside CancelToken::Cancel (the engine's contract with providers).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/timer_loop.h"
#include "models/model_provider.h"

namespace warren::models::testing {

class HeldProvider final : public ModelProvider {
 public:
  struct Held {
    ModelRequest request;
    ModelStreamObserver* observer = nullptr;
    const CancelToken* cancel = nullptr;
    ModelCallback done;
    int seq = 0;
  };

  std::string_view name() const override { return "held"; }
  std::string default_model() const override { return "held"; }

  void CallAsync(ModelRequest request, ModelStreamObserver* observer, CallOptions options,
                 ModelCallback done) override {
    auto h = std::make_shared<Held>();
    h->request = std::move(request);
    h->observer = observer;
    h->cancel = options.cancel;
    h->done = std::move(done);
    {
      std::lock_guard<std::mutex> lock(mu_);
      h->seq = ++started_;
      held_.push_back(h);
      order_.push_back(LastUserText(h->request));
    }
    cv_.notify_all();
    if (options.cancel != nullptr) {
      std::weak_ptr<Held> weak = h;
      const_cast<CancelToken*>(options.cancel)->AddWaker([this, weak] {
        TimerLoop::Shared()->After(0, nullptr, [this, weak](bool) {
          if (auto held = weak.lock()) {
            ModelError e;
            e.kind = ModelErrorKind::kCancelled;
            e.message = "cancelled";
            if (Take(held)) {
              {
                std::lock_guard<std::mutex> lock(mu_);
                cancelled_++;
              }
              held->done(std::move(e));
            }
          }
        });
      });
    }
  }

  // Completes the oldest held call whose last user text contains `marker`
  // ("" = any) with `response`; false if there is none.
  bool Complete(const std::string& marker, ModelResponse response) {
    std::shared_ptr<Held> h = Find(marker);
    if (!h || !Take(h)) return false;
    if (h->observer) {
      h->observer->OnAttemptStart(1);
      for (size_t i = 0; i < response.content.size(); i++) {
        if (response.content[i].type == BlockType::kText) {
          h->observer->OnTextStart(static_cast<int>(i));
          h->observer->OnTextDelta(static_cast<int>(i), response.content[i].text);
        }
        h->observer->OnBlockStop(static_cast<int>(i), response.content[i]);
      }
    }
    response.attempts = 1;
    h->done(std::move(response));
    return true;
  }

  // Fails the oldest held call whose last user text contains `marker` with a
  // non-retryable request error; false if there is none.
  bool Fail(const std::string& marker) {
    std::shared_ptr<Held> h = Find(marker);
    if (!h || !Take(h)) return false;
    ModelError e;
    e.kind = ModelErrorKind::kRequestFailed;
    e.message = "held call failed by the test";
    h->done(std::move(e));
    return true;
  }

  static ModelResponse Text(const std::string& text) {
    ModelResponse r;
    r.content.push_back(ContentBlock::Text(text));
    r.stop_reason = "end_turn";
    r.usage.input_tokens = 10;
    r.usage.output_tokens = 2;
    return r;
  }

  // Waits until exactly `n` calls are held (and none is being added).
  bool WaitHeld(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return held_.size() == n; });
  }
  // Waits until `n` calls have started in total.
  bool WaitStarted(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return started_ >= n; });
  }
  size_t held() const {
    std::lock_guard<std::mutex> lock(mu_);
    return held_.size();
  }
  int started() const {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  int cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }
  // The last user text of every call, in the order the calls started.
  std::vector<std::string> order() const {
    std::lock_guard<std::mutex> lock(mu_);
    return order_;
  }

  static std::string LastUserText(const ModelRequest& r) {
    for (auto m = r.messages.rbegin(); m != r.messages.rend(); ++m) {
      if (m->role != Role::kUser) continue;
      for (auto b = m->content.rbegin(); b != m->content.rend(); ++b)
        if (b->type == BlockType::kText) return b->text;
    }
    return "";
  }

 private:
  // The oldest held call whose last user text contains `marker` ("" = any).
  std::shared_ptr<Held> Find(const std::string& marker) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : held_)
      if (marker.empty() || LastUserText(c->request).find(marker) != std::string::npos) return c;
    return nullptr;
  }
  bool Take(const std::shared_ptr<Held>& h) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = held_.begin(); it != held_.end(); ++it)
      if (*it == h) {
        held_.erase(it);
        cv_.notify_all();
        return true;
      }
    return false;
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Held>> held_;
  std::vector<std::string> order_;
  int started_ = 0;
  int cancelled_ = 0;
};

}  // namespace warren::models::testing
