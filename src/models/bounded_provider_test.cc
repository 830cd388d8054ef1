// BoundedProvider: the bound on calls in flight, FIFO start order, and
// cancellation while waiting for a slot, against a held (slow) fake model.
// No wall clock: a slow call is one the test has not completed yet.
#include "models/bounded_provider.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <future>

#include "models/testing/held_provider.h"

namespace warren::models {
namespace {

using testing::HeldProvider;

ModelRequest Ask(const std::string& text) {
  ModelRequest r;
  r.messages.push_back(Message::User(text));
  return r;
}

struct Results {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> done;  // "<name>:<ok|kind>" in completion order
  ModelCallback For(const std::string& name) {
    return [this, name](ModelResult r) {
      std::lock_guard<std::mutex> lock(mu);
      done.push_back(name + ":" + (r.ok() ? "ok" : std::string(ModelErrorKindName(r.error().kind))));
      cv.notify_all();
    };
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return done.size();
  }
  // Waits until `n` callbacks have returned their results (or 10 s pass:
  // a bound against a hang, not a timing assertion).
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return done.size() >= n; });
  }
};

TEST(BoundedProvider, HoldsTheBoundAndStartsWaitersInOrder) {
  auto held = std::make_unique<HeldProvider>();
  HeldProvider* inner = held.get();
  BoundedProvider p(std::move(held), 3);
  Results res;
  for (int i = 0; i < 7; i++) p.CallAsync(Ask("call " + std::to_string(i)), nullptr, {}, res.For(std::to_string(i)));
  EXPECT_EQ(inner->held(), 3u);
  EXPECT_EQ(p.stats().in_flight, 3);
  EXPECT_EQ(p.stats().waiting, 4);
  // Each completion starts the oldest waiter: never more than 3 at once.
  for (int i = 0; i < 7; i++) {
    ASSERT_TRUE(inner->Complete("call " + std::to_string(i), HeldProvider::Text("ok")));
    EXPECT_LE(inner->held(), 3u);
    EXPECT_EQ(inner->held(), static_cast<size_t>(std::min(3, 7 - i - 1)));
  }
  EXPECT_EQ(p.stats().max_in_flight, 3);
  EXPECT_EQ(p.stats().started, 7);
  std::vector<std::string> want;
  for (int i = 0; i < 7; i++) want.push_back("call " + std::to_string(i));
  EXPECT_EQ(inner->order(), want);  // FIFO
  EXPECT_EQ(res.size(), 7u);
}

// A caller that completes a call and asks again goes behind those already
// waiting: round-robin, not a chatty caller first.
TEST(BoundedProvider, ARepeatCallerQueuesBehindWaiters) {
  auto held = std::make_unique<HeldProvider>();
  HeldProvider* inner = held.get();
  BoundedProvider p(std::move(held), 1);
  Results res;
  std::function<void(int)> chatty = [&](int n) {
    p.CallAsync(Ask("chatty " + std::to_string(n)), nullptr, {}, [&, n](ModelResult) {
      if (n < 3) chatty(n + 1);  // asks again at once, from the completion
    });
  };
  chatty(0);
  p.CallAsync(Ask("quiet a"), nullptr, {}, res.For("a"));
  p.CallAsync(Ask("quiet b"), nullptr, {}, res.For("b"));
  for (int i = 0; i < 6; i++) ASSERT_TRUE(inner->Complete("", HeldProvider::Text("ok"))) << i;
  EXPECT_EQ(inner->order(),
            (std::vector<std::string>{"chatty 0", "quiet a", "quiet b", "chatty 1", "chatty 2", "chatty 3"}));
}

TEST(BoundedProvider, CancelWhileWaitingCompletesAtOnceAndFreesNothing) {
  auto held = std::make_unique<HeldProvider>();
  HeldProvider* inner = held.get();
  BoundedProvider p(std::move(held), 1);
  Results res;
  CancelToken t1, t2;
  p.CallAsync(Ask("first"), nullptr, {.cancel = &t1}, res.For("first"));
  std::promise<ModelResult> second;
  p.CallAsync(Ask("second"), nullptr, {.cancel = &t2}, [&](ModelResult r) { second.set_value(std::move(r)); });
  p.CallAsync(Ask("third"), nullptr, {}, res.For("third"));
  EXPECT_EQ(p.stats().waiting, 2);
  t2.Cancel();
  ModelResult r = second.get_future().get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ModelErrorKind::kCancelled);
  EXPECT_EQ(p.stats().waiting, 1);
  EXPECT_EQ(inner->started(), 1);  // the cancelled call never reached the model
  // Cancelling the running call reaches the inner provider, and the slot
  // goes to the next waiter.
  t1.Cancel();
  ASSERT_TRUE(inner->WaitStarted(2));
  EXPECT_EQ(inner->order(), (std::vector<std::string>{"first", "third"}));
  EXPECT_EQ(inner->cancelled(), 1);
  // "first" completes on the TimerLoop thread, which starts "third" before
  // it hands first's result to `res`: wait for that result before answering
  // "third", or the two callbacks race for the order checked below.
  ASSERT_TRUE(res.WaitFor(1));
  ASSERT_TRUE(inner->Complete("third", HeldProvider::Text("ok")));
  // Wait for both callbacks, so that no completion outlives `res` and `p`
  // (a use after free that once broke the next test with bad_function_call).
  ASSERT_TRUE(res.WaitFor(2));
  {
    std::lock_guard<std::mutex> lock(res.mu);
    EXPECT_EQ(res.done, (std::vector<std::string>{"first:cancelled", "third:ok"}));
  }
  EXPECT_EQ(p.stats().in_flight, 0);
}

// An inner provider that answers inline (the instant scripted model): a long
// queue drains without the stack growing per waiter.
class InlineProvider final : public ModelProvider {
 public:
  std::string_view name() const override { return "inline"; }
  std::string default_model() const override { return "inline"; }
  void CallAsync(ModelRequest, ModelStreamObserver*, CallOptions, ModelCallback done) override {
    calls++;
    done(ModelResponse{});
  }
  std::atomic<int> calls{0};
};

TEST(BoundedProvider, InlineCompletionsDrainAQueue) {
  auto inl = std::make_unique<InlineProvider>();
  InlineProvider* inner = inl.get();
  BoundedProvider p(std::move(inl), 2);
  std::atomic<int> done{0};
  for (int i = 0; i < 20000; i++) p.CallAsync(Ask("x"), nullptr, {}, [&](ModelResult r) { done += r.ok() ? 1 : 0; });
  EXPECT_EQ(done.load(), 20000);
  EXPECT_EQ(inner->calls.load(), 20000);
  EXPECT_EQ(p.stats().in_flight, 0);
}

TEST(BoundedProvider, BlockingCallWaitsForASlot) {
  auto held = std::make_unique<HeldProvider>();
  HeldProvider* inner = held.get();
  BoundedProvider p(std::move(held), 1);
  Results res;
  p.CallAsync(Ask("async"), nullptr, {}, res.For("async"));
  auto sync = std::async(std::launch::async, [&] { return p.Call(Ask("sync")); });
  EXPECT_EQ(inner->started(), 1);
  ASSERT_TRUE(inner->Complete("async", HeldProvider::Text("a")));
  ASSERT_TRUE(inner->WaitHeld(1));
  ASSERT_TRUE(inner->Complete("sync", HeldProvider::Text("b")));
  ModelResult r = sync.get();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.response().Text(), "b");
}

}  // namespace
}  // namespace warren::models
