// tests/unit/guard_test.cpp — memlimits::limits, memlimits::limit and the
// scoped memlimits::guard (<memlimits/guard.hpp>): several limits at once
// with one result, a guard without limits that measures, bad arguments, a
// guard in a plain scope (raising until exit, nesting with the lambda
// guards), and guards held across 100 co_awaits of C++20 coroutines that
// two executor threads resume in turn, each coroutine a memlimits::task.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "memlimits/limits.hpp"
#include "memlimits/task.hpp"
#include "../support/limits_support.hpp"
#include "../support/wait.hpp"

namespace {

using namespace std::chrono_literals;
using memlimits::limit_kind;
using memlimits::testing::churn;
using memlimits::testing::eventually;

// ---- memlimits::limit: several limits, one result ----

TEST(Limit, TheAllocationLimitOfSeveralTrips) {
  auto r = memlimits::limit({.allocations = 64 * 100, .memory = 1 << 30, .deadline = 1h},
                            [] { churn(1000, 64); });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::allocations);
  EXPECT_LE(r.usage().allocated_bytes, 64u * 100);
  EXPECT_GE(r.usage().allocated_bytes, 64u * 99);  // exact: only the 101st block failed
}

TEST(Limit, TheDeadlineOfSeveralTripsAsAToken) {
  const auto start = std::chrono::steady_clock::now();
  auto r = memlimits::limit({.allocations = 1ull << 40, .deadline = 20ms}, [] {
    for (;;) churn(100, 64);
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::token);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
}

TEST(Limit, ATokenOfSeveralTrips) {
  memlimits::token t;
  auto r = memlimits::limit({.memory = 1 << 30, .token = t}, [&] {
    churn(10, 64);
    t.set();
    churn(10, 64);
    ADD_FAILURE() << "not stopped after the token was set";
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::token);
}

TEST(Limit, NoLimitsMeasuresOnly) {
  auto r = memlimits::limit({}, [] {
    churn(100, 64);
    return 7;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 7);
  EXPECT_GE(r.usage().allocated_bytes, 6400u);
}

TEST(Limit, ADeadlineAlreadyPastDoesNotRunTheTask) {
  bool ran = false;
  auto r = memlimits::limit({.deadline = 0ms}, [&] { ran = true; });
  EXPECT_FALSE(ran);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::token);
}

TEST(Limit, BadLimitsAreNamedAndNothingIsEntered) {
  const auto expect_invalid = [](const memlimits::limits& l, const char* name) {
    try {
      memlimits::guard g(l);
      ADD_FAILURE() << name << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    EXPECT_FALSE(memlimits::is_interrupted());
    EXPECT_TRUE(memlimits::tasks().empty()) << "a context was left behind by " << name;
  };
  expect_invalid({.allocations = std::uint64_t{1} << 63}, "limits.allocations");
  expect_invalid({.allocations = 100, .memory = ~std::uint64_t{0}}, "limits.memory");
  EXPECT_THROW(memlimits::limit({.memory = ~std::uint64_t{0}}, [] {}), std::invalid_argument);
}

// ---- memlimits::guard in a plain scope ----

TEST(Guard, RaisesUntilExitThenReportsItsLimit) {
  std::optional<memlimits::interruption> error;
  {
    memlimits::guard g({.allocations = 64 * 50});
    try {
      churn(1000, 64);
      ADD_FAILURE() << "the allocation limit did not trip";
    } catch (const memlimits::limit_reached& e) {
      EXPECT_EQ(e.kind(), limit_kind::allocations);
    }
    EXPECT_TRUE(g.tripped());
    EXPECT_TRUE(memlimits::is_interrupted());
    // Still interrupted: the next allocation raises again.
    EXPECT_THROW(churn(1, 64), memlimits::limit_reached);
    EXPECT_LE(g.usage().allocated_bytes, 64u * 50);
    error = g.exit();
    EXPECT_FALSE(memlimits::is_interrupted());
    churn(10, 64);  // after exit, allocations are the thread's again
    EXPECT_TRUE(g.exit().has_value()) << "exit() again: the same answer";
    EXPECT_LE(g.usage().allocated_bytes, 64u * 50);
  }
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind(), limit_kind::allocations);
}

TEST(Guard, ExitsAtDestructionWithoutATrip) {
  {
    memlimits::guard g({.allocations = 1 << 20, .memory = 1 << 30});
    churn(10, 64);
    EXPECT_FALSE(g.tripped());
    EXPECT_FALSE(g.error().has_value());
    EXPECT_EQ(memlimits::tasks().size(), 1u);
    EXPECT_EQ(memlimits::tasks()[0].contexts.size(), 2u);  // memory, then allocations
  }
  EXPECT_TRUE(memlimits::tasks().empty());
}

TEST(Guard, AnOuterLambdaGuardsTripPassesThroughItAndItReportsNothing) {
  std::optional<memlimits::interruption> inner_error{memlimits::interruption(limit_kind::token, nullptr)};
  auto r = memlimits::limit_allocations(64 * 20, [&] {
    memlimits::guard inner({.memory = 1 << 30});
    try {
      churn(1000, 64);
    } catch (const memlimits::limit_reached&) {
      EXPECT_FALSE(inner.tripped());
      inner_error = inner.exit();
      throw;  // the outer guard's
    }
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::allocations);
  EXPECT_FALSE(inner_error.has_value());
}

TEST(Guard, InsideALambdaGuardItsOwnTripIsItsOwn) {
  auto r = memlimits::limit_memory(1 << 30, [] {
    memlimits::guard inner({.allocations = 64 * 20});
    try {
      churn(1000, 64);
    } catch (const memlimits::limit_reached&) {
    }
    const auto error = inner.exit();
    EXPECT_TRUE(error.has_value());
    churn(10, 64);  // the outer guard did not trip
    return 1;
  });
  ASSERT_TRUE(r.has_value());
}

// ---- guards held across co_await, on two executor threads ----

// Two threads resuming coroutines from one queue. post() allocates nothing
// (a ring of fixed capacity), so that a coroutine that suspends itself is
// charged only for what it allocates.
//
// A coroutine that yields is queued again only once its resume() has
// returned and its task_scope has ended: a memlimits::task is current on
// one thread at a time. (Queuing it from await_suspend would let the other
// thread resume it, and make its task current there, while this thread
// still has it current.)
class executor {
 public:
  executor() {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this, i] { work(i); });
  }
  ~executor() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::coroutine_handle<> h, memlimits::task* task) {
    {
      std::lock_guard lock(mutex_);
      if (count_ == capacity) std::abort();  // the tests post at most 8 at once
      ring_[(head_ + count_++) % capacity] = {h, task};
    }
    ready_.notify_one();
  }
  // co_await exec.yield(task): suspends, and is resumed by either thread.
  auto yield(memlimits::task& task) {
    struct awaiter {
      memlimits::task& task;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) noexcept { yielded = {h, &task}; }
      void await_resume() const noexcept {}
    };
    return awaiter{task};
  }
  int resumptions(int thread) const { return resumed_[thread].load(); }

 private:
  struct item {
    std::coroutine_handle<> handle;
    memlimits::task* task;
  };
  void work(int index) {
    for (;;) {
      item next{};
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return stopping_ || count_ > 0; });
        if (count_ == 0) return;
        next = ring_[head_];
        head_ = (head_ + 1) % capacity;
        --count_;
      }
      ++resumed_[index];
      {
        // The coroutine's own task is current while it runs, wherever.
        memlimits::task_scope running(*next.task);
        next.handle.resume();
      }
      if (yielded.handle) {
        post(yielded.handle, yielded.task);
        yielded = {};
      }
    }
  }
  // The coroutine that has just suspended itself on this thread.
  static thread_local inline item yielded{};
  static constexpr std::size_t capacity = 64;
  std::mutex mutex_;
  std::condition_variable ready_;
  item ring_[capacity] = {};
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  bool stopping_ = false;
  std::atomic<int> resumed_[2] = {0, 0};
  std::vector<std::thread> threads_;  // last
};

// A coroutine that starts suspended, is started by start(), and reports
// its end through `done`.
struct job {
  struct promise_type {
    job get_return_object() { return job{std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

struct outcome {
  std::atomic<bool> done{false};
  std::optional<memlimits::interruption> error;
  memlimits::usage used{};
  int steps = 0;
  bool raised = false;
};

// 100 steps, each allocating `per_step` blocks of 64 bytes and suspending;
// before each step, `before_step(step)`; the guard lives across all of
// them.
template <class BeforeStep>
job guarded_steps(executor& exec, memlimits::task& task, memlimits::limits l, int per_step,
                  outcome& out, BeforeStep before_step) {
  {
    memlimits::guard g(l);
    try {
      for (int step = 0; step < 100; ++step) {
        before_step(step);
        churn(per_step, 64);
        ++out.steps;
        co_await exec.yield(task);
      }
    } catch (const memlimits::limit_reached&) {
      out.raised = true;
    }
    out.error = g.exit();
    out.used = g.usage();
  }
  out.done.store(true, std::memory_order_release);
}

TEST(GuardCoroutine, AnExactLimitHoldsAcross100CoAwaitsOnTwoThreads) {
  // The executor is destroyed first: its threads are joined before the
  // task they may still be leaving (task_scope's end) is destroyed.
  memlimits::task task;
  outcome out;
  executor exec;
  // 10 blocks per step: the limit trips during step 60.
  job j = guarded_steps(exec, task, {.allocations = 64 * 10 * 60 + 64 * 5}, 10, out,
                        [](int) {});
  exec.post(j.handle, &task);
  ASSERT_TRUE(eventually([&] { return out.done.load(std::memory_order_acquire); },
                         "the coroutine to end"));
  EXPECT_TRUE(out.raised);
  EXPECT_EQ(out.steps, 60);
  ASSERT_TRUE(out.error.has_value());
  EXPECT_EQ(out.error->kind(), limit_kind::allocations);
  EXPECT_EQ(out.used.allocated_bytes, 64u * 10 * 60 + 64 * 5) << "exact: every block up to the limit";
  EXPECT_TRUE(memlimits::tasks().empty());
}

TEST(GuardCoroutine, AGuardThatNeverTripsSeesAll100Steps) {
  memlimits::task task;
  outcome out;
  executor exec;  // destroyed first: see above
  job j = guarded_steps(exec, task, {.allocations = 1 << 30, .memory = 1 << 30}, 10, out,
                        [](int) {});
  exec.post(j.handle, &task);
  ASSERT_TRUE(eventually([&] { return out.done.load(std::memory_order_acquire); },
                         "the coroutine to end"));
  EXPECT_FALSE(out.raised);
  EXPECT_EQ(out.steps, 100);
  EXPECT_FALSE(out.error.has_value());
  EXPECT_EQ(out.used.allocated_bytes, 64u * 10 * 100);
}

TEST(GuardCoroutine, ATokenSetByAnotherThreadStopsItAtItsNextAllocation) {
  memlimits::task task;
  memlimits::token stop;
  outcome out;
  executor exec;  // destroyed first: see above
  std::atomic<int> reached{-1};
  job j = guarded_steps(exec, task, {.allocations = 1 << 30, .token = stop}, 10, out,
                        [&](int step) {
                          reached.store(step, std::memory_order_release);
                          if (step == 50) {
                            // Set from this test's thread while the
                            // coroutine waits for it.
                            memlimits::testing::await(
                                [&] { return stop.is_set(); }, "the token to be set");
                          }
                        });
  exec.post(j.handle, &task);
  ASSERT_TRUE(eventually([&] { return reached.load(std::memory_order_acquire) == 50; },
                         "the coroutine to reach step 50"));
  stop.set();
  ASSERT_TRUE(eventually([&] { return out.done.load(std::memory_order_acquire); },
                         "the coroutine to end"));
  EXPECT_TRUE(out.raised);
  EXPECT_EQ(out.steps, 50);
  ASSERT_TRUE(out.error.has_value());
  EXPECT_EQ(out.error->kind(), limit_kind::token);
}

TEST(GuardCoroutine, ADeadlineStopsASlowCoroutine) {
  memlimits::task task;
  outcome out;
  executor exec;  // destroyed first: see above
  const auto start = std::chrono::steady_clock::now();
  // 100 steps of at least 2 ms each cannot end before the 30 ms deadline.
  job j = guarded_steps(exec, task, {.allocations = 1 << 30, .deadline = 30ms}, 10, out,
                        [](int) { std::this_thread::sleep_for(2ms); });
  exec.post(j.handle, &task);
  ASSERT_TRUE(eventually([&] { return out.done.load(std::memory_order_acquire); },
                         "the coroutine to end"));
  EXPECT_TRUE(out.raised);
  EXPECT_LT(out.steps, 100);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  ASSERT_TRUE(out.error.has_value());
  EXPECT_EQ(out.error->kind(), limit_kind::token);
}

TEST(GuardCoroutine, ManyCoroutinesEachUnderItsOwnGuard) {
  // 8 coroutines on the two threads, every second one a runaway.
  std::vector<memlimits::task> tasks(8);
  std::vector<outcome> outs(8);
  executor exec;  // destroyed first: see above
  std::vector<job> jobs;
  for (int i = 0; i < 8; ++i) {
    const bool runaway = i % 2 == 1;
    jobs.push_back(guarded_steps(exec, tasks[i], {.allocations = 64 * 10 * 100}, runaway ? 20 : 10,
                                 outs[i], [](int) {}));
  }
  for (int i = 0; i < 8; ++i) exec.post(jobs[i].handle, &tasks[i]);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(eventually([&] { return outs[i].done.load(std::memory_order_acquire); },
                           "every coroutine to end"));
    const bool runaway = i % 2 == 1;
    EXPECT_EQ(outs[i].error.has_value(), runaway) << i;
    EXPECT_EQ(outs[i].steps, runaway ? 50 : 100) << i;
    EXPECT_LE(outs[i].used.allocated_bytes, 64u * 10 * 100) << i;
  }
  EXPECT_GE(exec.resumptions(0) + exec.resumptions(1), 4 * 101 + 4 * 51);
}

}  // namespace
