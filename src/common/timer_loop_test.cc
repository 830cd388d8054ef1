#include "common/timer_loop.h"

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <vector>

namespace warren {
namespace {

TEST(TimerLoop, RunsInDeadlineOrderOnItsThread) {
  TimerLoop loop;
  std::mutex mu;
  std::vector<int> order;
  std::promise<void> all;
  auto add = [&](int v) {
    return [&, v](bool fired) {
      EXPECT_TRUE(fired);
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(v);
      if (order.size() == 3) all.set_value();
    };
  };
  loop.After(30, nullptr, add(3));
  loop.After(0, nullptr, add(1));
  loop.After(10, nullptr, add(2));
  all.get_future().get();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(loop.pending(), 0u);
}

TEST(TimerLoop, CancelRunsTheCallbackAtOnceNotFired) {
  TimerLoop loop;
  CancelToken token;
  std::promise<bool> p;
  loop.After(3'600'000, &token, [&](bool fired) { p.set_value(fired); });
  EXPECT_EQ(loop.pending(), 1u);
  token.Cancel();
  EXPECT_FALSE(p.get_future().get());
  // An already cancelled token: not fired either.
  std::promise<bool> q;
  loop.After(3'600'000, &token, [&](bool fired) { q.set_value(fired); });
  EXPECT_FALSE(q.get_future().get());
}

TEST(TimerLoop, DestructorRunsPendingCallbacksNotFired) {
  std::promise<bool> p;
  {
    TimerLoop loop;
    loop.After(3'600'000, nullptr, [&](bool fired) { p.set_value(fired); });
  }
  EXPECT_FALSE(p.get_future().get());
}

}  // namespace
}  // namespace warren
