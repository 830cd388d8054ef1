// KeyedLocks and KeyedExecutor. No test depends on how fast a thread runs:
// each waits (with a generous deadline) for the state it asserts, and a
// blocked task stays blocked until the test opens its gate.
#include "orchestrator/keyed.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace warren::orchestrator {
namespace {

// Waits up to 30 s for `pred`; returns its last value.
template <typename Pred>
bool WaitFor(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Tasks wait on it until the test opens it.
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return open_; });
  }
  void Open() {
    {
      std::lock_guard<std::mutex> l(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

TEST(KeyedLocks, EntriesGoWhenUnused) {
  KeyedLocks locks;
  {
    auto a = locks.Lock("s1");
    auto b = locks.Lock("s2");
    EXPECT_EQ(locks.size(), 2u);
    EXPECT_EQ(locks.users("s1"), 1);
  }
  EXPECT_EQ(locks.size(), 0u);
  // Many sessions from many threads: nothing is left once they finished.
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&locks, t] {
      for (int i = 0; i < 500; ++i) {
        auto g = locks.Lock("s" + std::to_string((t * 500 + i) % 97));
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(locks.size(), 0u);
  // A moved guard unlocks once, from its new owner.
  KeyedLocks::Guard g = locks.Lock("m");
  KeyedLocks::Guard h = std::move(g);
  EXPECT_EQ(locks.users("m"), 1);
  g.Release();  // moved from: nothing
  EXPECT_EQ(locks.size(), 1u);
  h.Release();
  EXPECT_EQ(locks.size(), 0u);
}

TEST(KeyedLocks, TwoUsersOfOneKeyExcludeEachOther) {
  KeyedLocks locks;
  auto held = locks.Lock("s");
  EXPECT_FALSE(static_cast<bool>(locks.TryLock("s")));  // held: a try fails at once
  EXPECT_EQ(locks.users("s"), 1);
  {
    auto t = locks.TryLock("free");  // free: a try holds it
    EXPECT_TRUE(static_cast<bool>(t));
    EXPECT_EQ(locks.users("free"), 1);
  }
  EXPECT_EQ(locks.size(), 1u);
  std::atomic<bool> acquired{false};
  std::thread other([&] {
    auto g = locks.Lock("s");
    acquired = true;
  });
  // The other user is counted (it waits for the lock) but cannot have it.
  ASSERT_TRUE(WaitFor([&] { return locks.users("s") == 2; }));
  EXPECT_FALSE(acquired.load());
  held.Release();
  other.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_EQ(locks.size(), 0u);

  // Mutual exclusion under contention: never two inside at once.
  std::atomic<int> inside{0}, overlaps{0};
  int counter = 0;  // guarded by the key's lock only
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto g = locks.Lock("shared");
        if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
        ++counter;
        inside.fetch_sub(1);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(counter, 6 * 2000);
  EXPECT_EQ(locks.size(), 0u);
}

TEST(KeyedExecutor, RunsAtMostItsBoundAtOnce) {
  KeyedExecutor pool(3);
  Gate gate;
  std::atomic<int> now{0}, max{0}, ran{0};
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(pool.Submit("k" + std::to_string(i), [&] {
      int n = now.fetch_add(1) + 1;
      for (int m = max.load(); n > m && !max.compare_exchange_weak(m, n);) {
      }
      gate.Wait();
      now.fetch_sub(1);
      ran.fetch_add(1);
    }));
  }
  // Three run (blocked on the gate), five wait for a thread.
  ASSERT_TRUE(WaitFor([&] { return pool.running() == 3 && pool.queued() == 5; }));
  EXPECT_EQ(now.load(), 3);
  gate.Open();
  pool.WaitIdle();
  EXPECT_EQ(ran.load(), 8);
  EXPECT_EQ(max.load(), 3);
}

TEST(KeyedExecutor, OneTaskPerKeyAndASlowKeyHoldsBackNoOther) {
  KeyedExecutor pool(2);
  Gate slow;
  std::atomic<int> fast_done{0};
  ASSERT_TRUE(pool.Submit("slow", [&] { slow.Wait(); }));
  ASSERT_TRUE(WaitFor([&] { return pool.running() == 1; }));
  EXPECT_TRUE(pool.Busy("slow"));
  EXPECT_FALSE(pool.Submit("slow", [] { ADD_FAILURE() << "a second task of a busy key ran"; }));
  // The other thread serves every other key while "slow" is stuck.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool.Submit("f" + std::to_string(i), [&] { ++fast_done; }));
  ASSERT_TRUE(WaitFor([&] { return fast_done.load() == 5; }));
  EXPECT_TRUE(pool.Busy("slow"));
  slow.Open();
  pool.WaitIdle();
  EXPECT_FALSE(pool.Busy("slow"));
  EXPECT_TRUE(pool.Submit("slow", [] {}));  // free again
  pool.WaitIdle();
}

TEST(KeyedExecutor, ShutdownDropsQueuedTasksAndWaitsForRunningOnes) {
  auto pool = std::make_unique<KeyedExecutor>(1);
  Gate gate;
  std::atomic<bool> first_done{false}, second_ran{false};
  ASSERT_TRUE(pool->Submit("a", [&] {
    gate.Wait();
    first_done = true;
  }));
  ASSERT_TRUE(pool->Submit("b", [&] { second_ran = true; }));
  ASSERT_TRUE(WaitFor([&] { return pool->running() == 1 && pool->queued() == 1; }));
  std::atomic<bool> returned{false};
  size_t dropped = 0;
  std::thread stopper([&] {
    dropped = pool->Shutdown();
    returned = true;
  });
  ASSERT_TRUE(WaitFor([&] { return pool->queued() == 0; }));  // "b" dropped
  EXPECT_FALSE(returned.load());  // "a" still runs: Shutdown waits for it
  EXPECT_FALSE(pool->Submit("c", [] {}));
  gate.Open();
  stopper.join();
  EXPECT_TRUE(first_done.load());
  EXPECT_FALSE(second_ran.load());
  EXPECT_EQ(dropped, 1u);
  EXPECT_EQ(pool->running(), 0u);
  EXPECT_EQ(pool->Shutdown(), 0u);  // idempotent
  pool.reset();
}

}  // namespace
}  // namespace warren::orchestrator
