// tests/unit/task_switch_test.cpp — memlimits::task and task_scope
// (<memlimits/task.hpp>): limits that follow a unit of work across
// switches and threads, with plain scopes and with boost::context fibers
// resumed by hand (memlimits::fiber will wrap exactly this).
//
// Deterministic: exact allocation limits and usage, rate-1 memory limits.
// Under ThreadSanitizer and AddressSanitizer the boost::context tests are
// skipped: the sanitizers must be told of every stack switch
// (__tsan_switch_to_fiber, __sanitizer_start/finish_switch_fiber), which
// Debian's Boost.Context does not do; unannotated, ASan reports
// stack-use-after-scope on the fiber's stack and TSan loses track of it.
// memlimits::fiber makes them (tests/unit/fiber_test.cpp runs under both);
// the task_scope tests here run under every sanitizer.
#include <gtest/gtest.h>

#include <boost/context/fiber.hpp>

#include <cstdint>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "memlimits/limits.hpp"
#include "memlimits/task.hpp"
#include "support/limits_support.hpp"
#include "support/recording_tracker.hpp"
#include "support/sanitizers.hpp"

namespace {

using memlimits::testing::churn;
using memlimits::testing::delete_block;
using memlimits::testing::new_block;

#define SKIP_UNDER_SANITIZERS()                                                          \
  if (memlimits::testing::sanitized)                                                     \
  GTEST_SKIP() << "boost::context stack switches are not annotated for the sanitizers"

// The memlimits::task these tests run, as tasks() shows it: the one task
// with an active guard (the test thread has none). It is no memlimits::fiber.
std::optional<memlimits::task_info> guarded_task() {
  const std::vector<memlimits::task_info> all = memlimits::tasks();
  if (all.size() != 1) return std::nullopt;
  EXPECT_FALSE(all[0].fiber) << "a memlimits::task is listed as a memlimits::fiber";
  return all[0];
}

TEST(TaskScope, AGuardIsChargedOnlyForItsOwnTasksAllocations) {
  memlimits::task other;
  auto r = memlimits::limit_allocations(1 << 20, [&] {
    churn(10, 64);  // 640 B: this task's
    {
      memlimits::task_scope running(other);
      churn(100, 1024);  // 100 KiB: the other task's
      EXPECT_FALSE(memlimits::is_interrupted());
    }
    churn(5, 32);  // 160 B
    return 0;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.usage().allocated_bytes, 800u);
}

TEST(TaskScope, TheOtherTaskIsNotUnderTheCallersLimits) {
  memlimits::task other;
  auto r = memlimits::limit_allocations(1024, [&] {
    memlimits::task_scope running(other);
    churn(100, 1024);  // far above the caller's limit, and not refused
    return 1;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.usage().allocated_bytes, 0u);
}

TEST(TaskScope, ScopesNest) {
  memlimits::task a;
  memlimits::task b;
  auto r = memlimits::limit_allocations(1 << 20, [&] {
    memlimits::task_scope in_a(a);
    auto inner = memlimits::limit_allocations(1 << 20, [&] {
      churn(2, 64);
      {
        memlimits::task_scope in_b(b);
        churn(50, 64);
      }
      churn(1, 64);
      return 0;
    });
    EXPECT_EQ(inner.usage().allocated_bytes, 192u);
    return 0;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.usage().allocated_bytes, 0u);  // everything ran in a or b
}

// A task is current on one thread at a time; two at once would count its
// bytes wrongly, so it aborts with a message (as a coroutine queued for
// another thread from inside its own resumption would do).
void make_one_task_current_on_two_threads() {
  memlimits::task shared;
  memlimits::task_scope here(shared);
  std::thread([&] { memlimits::task_scope there(shared); }).join();
}

TEST(TaskScopeDeathTest, ATaskCurrentOnTwoThreadsAtOnceAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(make_one_task_current_on_two_threads(), "check failed.*current on a thread while another");
}

TEST(TaskScope, ATaskMayMoveToAnotherThreadOnceItsScopeEnded) {
  memlimits::task moving;
  { memlimits::task_scope here(moving); }
  std::thread([&] { memlimits::task_scope there(moving); }).join();
  { memlimits::task_scope here_again(moving); }
}

TEST(TaskScope, AnExactLimitHoldsAcrossSwitches) {
  // The task's guard is entered once; its allocations are spread over many
  // scopes, between which the thread's own task allocates a lot. Exactly
  // limit / size of them succeed.
  memlimits::task job;
  std::vector<void*> kept;
  kept.reserve(200);  // by the thread's task, before the fiber's guard
  int successes = 0;
  bool interrupted = false;
  // A guard entered inside the task, kept open across scopes: drive it from
  // a boost::context fiber so that the guard's scope can be suspended.
  SKIP_UNDER_SANITIZERS();
  namespace ctx = boost::context;
  ctx::fiber body{[&](ctx::fiber&& caller) {
    auto r = memlimits::limit_allocations(64 * 100, [&] {
      for (;;) {
        kept.push_back(new_block(64));  // kept: no reallocation (reserved)
        ++successes;
        caller = std::move(caller).resume();  // yield after each block
      }
      return 0;
    });
    interrupted = !r.has_value();
    EXPECT_EQ(r.usage().allocated_bytes, 6400u);
    return std::move(caller);
  }};
  for (int i = 0; i < 1000 && body; ++i) {
    {
      memlimits::task_scope running(job);
      body = std::move(body).resume();
    }
    churn(10, 256);  // the thread's own allocations between the resumes
  }
  EXPECT_FALSE(body);
  EXPECT_TRUE(interrupted);
  EXPECT_EQ(successes, 100);
  for (void* p : kept) delete_block(p, 64);
}

// A fiber that runs a guarded loop: it allocates `per_step` blocks of 64 B
// per step, then yields; `before_yield` runs in the fiber before each yield.
struct guarded_fiber {
  boost::context::fiber body;
  memlimits::task task;
  std::optional<memlimits::result<int>> outcome;

  template <class Guard>
  explicit guarded_fiber(Guard guard, int per_step, std::vector<void*>* keep = nullptr) {
    body = boost::context::fiber{[this, guard, per_step, keep](boost::context::fiber&& caller) {
      outcome.emplace(guard([&] {
        for (int step = 0;; ++step) {
          for (int i = 0; i < per_step; ++i) {
            void* p = new_block(64);
            if (keep != nullptr) keep->push_back(p); else delete_block(p, 64);
          }
          caller = std::move(caller).resume();
        }
        return 0;
      }));
      return std::move(caller);
    }};
  }

  // One step, on the calling thread, with the fiber's task current.
  void step() {
    memlimits::task_scope running(task);
    body = std::move(body).resume();
  }
};

TEST(TaskFiber, AFiberResumedOnAnotherThreadKeepsItsLimitsAndCounters) {
  SKIP_UNDER_SANITIZERS();
  guarded_fiber f([](auto&& work) { return memlimits::limit_allocations(64 * 50, work); }, 10);
  f.step();                                  // 10 blocks here
  std::thread([&] { f.step(); }).join();     // 10 there
  f.step();                                  // 10 here
  std::thread::id there;
  std::thread([&] {
    there = std::this_thread::get_id();
    f.step();                                // 10 more: 40 of 50
  }).join();
  // tasks() from here sees the fiber's task where it last ran.
  const std::optional<memlimits::task_info> seen = guarded_task();
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->thread, there);
  ASSERT_EQ(seen->contexts.size(), 1u);
  EXPECT_EQ(seen->contexts[0].kind, memlimits::limit_kind::allocations);
  EXPECT_EQ(seen->contexts[0].limit, 3200);
  EXPECT_EQ(seen->contexts[0].used, 40 * 64);
  f.step();                                  // 50 of 50
  ASSERT_TRUE(f.body);
  std::thread([&] { f.step(); }).join();     // the 51st block is refused
  ASSERT_FALSE(f.body);
  ASSERT_TRUE(f.outcome.has_value());
  ASSERT_FALSE(f.outcome->has_value());
  EXPECT_EQ(f.outcome->error().kind(), memlimits::limit_kind::allocations);
  EXPECT_EQ(f.outcome->usage().allocated_bytes, 3200u);
}

TEST(TaskFiber, ATokenSetWhileSuspendedInterruptsAtTheNextAllocationAfterResuming) {
  SKIP_UNDER_SANITIZERS();
  memlimits::token cancel;
  guarded_fiber f([cancel](auto&& work) { return memlimits::limit_with_token(cancel, work); }, 3);
  f.step();
  f.step();
  std::thread([&] { cancel.set(); }).join();  // while the fiber is suspended
  churn(100, 64);                              // the thread's task is not interrupted
  EXPECT_FALSE(memlimits::is_interrupted());
  f.step();
  ASSERT_FALSE(f.body);
  ASSERT_FALSE(f.outcome->has_value());
  EXPECT_EQ(f.outcome->error().kind(), memlimits::limit_kind::token);
  EXPECT_EQ(f.outcome->usage().allocated_bytes, 6 * 64u);  // nothing after set()
}

TEST(TaskFiber, MemoryFreesAreCreditedToTheFiberThatAllocated) {
  SKIP_UNDER_SANITIZERS();
  memlimits::testing::settings_restorer restore;
  memlimits::configure({.sampling_rate = 1.0});
  std::vector<void*> kept;
  kept.reserve(100);
  guarded_fiber f([](auto&& work) { return memlimits::limit_memory(64 * 40, work); }, 10, &kept);
  f.step();  // 640 B live, charged to the fiber's context
  // Another thread frees them; the fiber can then allocate 40 more blocks.
  std::thread([&] {
    for (void* p : kept) delete_block(p, 64);
  }).join();
  kept.clear();
  f.step();
  f.step();
  f.step();
  f.step();  // 40 live: at the limit, not above
  EXPECT_TRUE(f.body);
  f.step();  // the 41st live block trips
  ASSERT_FALSE(f.body);
  ASSERT_FALSE(f.outcome->has_value());
  EXPECT_EQ(f.outcome->error().kind(), memlimits::limit_kind::memory);
  EXPECT_EQ(f.outcome->usage().allocated_bytes, 64u * 50);  // the refused block is not counted
  for (void* p : kept) delete_block(p, 64);
}

TEST(TaskFiber, NestedGuardsInsideAFiber) {
  SKIP_UNDER_SANITIZERS();
  guarded_fiber f(
      [](auto&& work) {
        return memlimits::limit_allocations(1 << 20, [&] {
          auto inner = memlimits::limit_allocations(64 * 25, work);
          EXPECT_FALSE(inner.has_value());
          EXPECT_EQ(inner.usage().allocated_bytes, 64u * 25);
          return 7;
        });
      },
      10);
  for (int i = 0; i < 3; ++i) f.step();
  ASSERT_FALSE(f.body);
  ASSERT_TRUE(f.outcome->has_value());
  EXPECT_EQ(**f.outcome, 7);
  EXPECT_EQ(f.outcome->usage().allocated_bytes, 64u * 25);
}

TEST(TaskFiber, DestroyingASuspendedFiberInsideAGuardLeavesNoContext) {
  SKIP_UNDER_SANITIZERS();
  auto f = std::make_unique<guarded_fiber>(
      [](auto&& work) { return memlimits::limit_allocations(1 << 20, work); }, 2);
  f->step();
  ASSERT_TRUE(f->body);
  {
    // boost::context unwinds the fiber's stack when it is destroyed: the
    // guard exits then, with the fiber's task current.
    memlimits::task_scope running(f->task);
    f->body = {};
  }
  EXPECT_FALSE(f->outcome.has_value());  // forced unwinding is not an outcome
  EXPECT_FALSE(guarded_task().has_value());
  f.reset();  // ~task: no active guard
  EXPECT_TRUE(memlimits::tasks().empty());
  auto r = memlimits::limit_allocations(128, [] { churn(2, 64); return 0; });
  EXPECT_TRUE(r.has_value());
  EXPECT_EQ(r.usage().allocated_bytes, 128u);
}

}  // namespace
