// tests/unit/fiber_test.cpp — memlimits::fiber (<memlimits/fiber.hpp>):
// fibers whose bodies are tasks of their own, whichever thread resumes them,
// and the boost::context::fiber interface they keep.
//
// Deterministic: exact allocation limits and usage, rate-1 memory limits.
// Runs under AddressSanitizer and ThreadSanitizer too: memlimits::fiber
// announces its stack switches to both.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/context/protected_fixedsize_stack.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "memlimits/fiber.hpp"
#include "memlimits/limits.hpp"
#include "support/limits_support.hpp"
#include "support/sanitizers.hpp"
#include "support/wait.hpp"

namespace {

using memlimits::fiber;
using memlimits::testing::churn;
using memlimits::testing::delete_block;
using memlimits::testing::new_block;

std::vector<memlimits::task_info> fiber_tasks() {
  std::vector<memlimits::task_info> out;
  for (auto& t : memlimits::tasks()) {
    if (t.fiber) out.push_back(t);
  }
  return out;
}

// A fiber running `guard(work)`, where work allocates `per_step` blocks of
// `size` per step (kept in `keep` if given, freed otherwise) and yields
// after each step, forever: only its guard's interruption ends it.
struct stepper {
  fiber body;
  std::optional<memlimits::result<int>> outcome;
  int steps = 0;

  template <class Guard>
  stepper(Guard guard, int per_step, std::size_t size = 64, std::vector<void*>* keep = nullptr) {
    body = fiber{[this, guard, per_step, size, keep](fiber&& caller) {
      outcome.emplace(guard([&] {
        for (;;) {
          for (int i = 0; i < per_step; ++i) {
            void* p = new_block(size);
            if (keep != nullptr) keep->push_back(p); else delete_block(p, size);
          }
          ++steps;
          caller = std::move(caller).resume();
        }
        return 0;
      }));
      return std::move(caller);
    }};
  }

  void step() { body = std::move(body).resume(); }
  bool ended() const { return !body; }
};

auto allocations(std::uint64_t limit) {
  return [limit](auto&& work) { return memlimits::limit_allocations(limit, work); };
}

TEST(Fiber, TwoFibersAlternatingOnOneThreadEachChargedOnlyItsOwnAllocationsExactly) {
  // a: 64 B blocks, 10 per step, limit 100 blocks; b: 128 B blocks, 5 per
  // step, limit 1 MiB. Between their steps the thread allocates too.
  stepper a(allocations(64 * 100), 10, 64);
  stepper b(allocations(1 << 20), 5, 128);
  for (int round = 0; round < 10; ++round) {
    a.step();
    churn(3, 256);
    b.step();
  }
  EXPECT_FALSE(a.ended());
  EXPECT_FALSE(b.ended());
  const auto listed = fiber_tasks();
  ASSERT_EQ(listed.size(), 2u);
  for (const auto& t : listed) {
    ASSERT_EQ(t.contexts.size(), 1u);
    if (t.contexts[0].limit == 6400) {
      EXPECT_EQ(t.contexts[0].used, 6400);  // a: 100 blocks of 64
    } else {
      EXPECT_EQ(t.contexts[0].used, 10 * 5 * 128);
    }
  }
  a.step();  // the 101st block of a is refused: a ends
  ASSERT_TRUE(a.ended());
  ASSERT_TRUE(a.outcome.has_value());
  ASSERT_FALSE(a.outcome->has_value());
  EXPECT_EQ(a.outcome->error().kind(), memlimits::limit_kind::allocations);
  EXPECT_EQ(a.outcome->usage().allocated_bytes, 6400u);
  EXPECT_EQ(a.steps, 10);
  b.step();
  EXPECT_EQ(b.steps, 11);
  EXPECT_EQ(fiber_tasks().size(), 1u);
}

TEST(Fiber, AGuardAroundCodeThatResumesFibersIsChargedOnlyForItsOwnAllocations) {
  stepper a(allocations(1 << 20), 10, 1024);
  stepper b(allocations(1 << 20), 10, 2048);
  auto r = memlimits::limit_allocations(4096, [&] {
    for (int i = 0; i < 10; ++i) {
      a.step();  // 10 KiB each, not the caller's
      b.step();  // 20 KiB
      churn(1, 256);
    }
    return 0;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.usage().allocated_bytes, 2560u);
  EXPECT_EQ(a.steps, 10);
  EXPECT_EQ(b.steps, 10);
}

TEST(Fiber, AFiberResumedOnOtherThreadsKeepsItsLimitsAndCounters) {
  stepper f(allocations(64 * 50), 10);
  f.step();                                // 10 blocks here
  std::thread([&] { f.step(); }).join();   // 10 there
  f.step();                                // 10 here
  std::thread::id there;
  std::thread([&] {
    there = std::this_thread::get_id();
    f.step();                              // 40 of 50
  }).join();
  const auto listed = fiber_tasks();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].thread, there);
  ASSERT_EQ(listed[0].contexts.size(), 1u);
  EXPECT_EQ(listed[0].contexts[0].used, 40 * 64);
  f.step();                                // 50 of 50
  ASSERT_FALSE(f.ended());
  std::thread([&] { f.step(); }).join();   // the 51st is refused, there
  ASSERT_TRUE(f.ended());
  ASSERT_FALSE(f.outcome->has_value());
  EXPECT_EQ(f.outcome->error().kind(), memlimits::limit_kind::allocations);
  EXPECT_EQ(f.outcome->usage().allocated_bytes, 3200u);
  EXPECT_TRUE(fiber_tasks().empty());
}

TEST(Fiber, NestedGuardsInsideAFiber) {
  stepper f(
      [](auto&& work) {
        return memlimits::limit_allocations(1 << 20, [&] {
          auto inner = memlimits::limit_allocations(64 * 25, work);
          EXPECT_FALSE(inner.has_value());
          EXPECT_EQ(inner.error().kind(), memlimits::limit_kind::allocations);
          EXPECT_EQ(inner.usage().allocated_bytes, 64u * 25);
          churn(4, 16);
          return 7;
        });
      },
      10);
  for (int i = 0; i < 3; ++i) f.step();
  ASSERT_TRUE(f.ended());
  ASSERT_TRUE(f.outcome->has_value());
  EXPECT_EQ(**f.outcome, 7);
  EXPECT_EQ(f.outcome->usage().allocated_bytes, 64u * 25 + 64);
}

TEST(Fiber, ATokenSetFromAnotherThreadInterruptsASuspendedFiberAtItsNextAllocation) {
  memlimits::token cancel;
  stepper f([cancel](auto&& work) { return memlimits::limit_with_token(cancel, work); }, 3);
  f.step();
  f.step();
  std::thread([&] { cancel.set(); }).join();  // while the fiber is suspended
  churn(100, 64);                             // the thread's task is not interrupted
  EXPECT_FALSE(memlimits::is_interrupted());
  std::thread([&] { f.step(); }).join();      // resumed elsewhere
  ASSERT_TRUE(f.ended());
  ASSERT_FALSE(f.outcome->has_value());
  EXPECT_EQ(f.outcome->error().kind(), memlimits::limit_kind::token);
  EXPECT_EQ(f.outcome->usage().allocated_bytes, 6 * 64u);  // nothing after set()
  EXPECT_EQ(f.steps, 2);
}

TEST(Fiber, ATokenSetWhileTheFiberRunsOnAnotherThreadInterruptsIt) {
  memlimits::token cancel;
  std::atomic<bool> running{false};
  fiber f{[&](fiber&& caller) {
    auto r = memlimits::limit_with_token(cancel, [&] {
      running = true;
      // Until set() from the main thread; a broken interruption ends the
      // loop at the timeout instead of hanging the test.
      const auto give_up = memlimits::testing::deadline_in();
      while (!memlimits::testing::passed(give_up)) churn(1, 64);
      return 0;
    });
    EXPECT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind(), memlimits::limit_kind::token);
    return std::move(caller);
  }};
  std::thread runner([&] { f = std::move(f).resume(); });
  EXPECT_TRUE(memlimits::testing::eventually([&] { return running.load(); },
                                             "the fiber to enter its guard"));
  cancel.set();  // interrupts the fiber even if it has not entered its guard yet
  runner.join();
  EXPECT_FALSE(f);
}

TEST(Fiber, MemoryLimitFreesAreCreditedToTheFiberThatAllocated) {
  memlimits::testing::settings_restorer restore;
  memlimits::configure({.sampling_rate = 1.0});
  std::vector<void*> kept;
  kept.reserve(100);
  stepper f([](auto&& work) { return memlimits::limit_memory(64 * 40, work); }, 10, 64, &kept);
  f.step();  // 640 B live, charged to the fiber
  std::thread([&] {
    for (void* p : kept) delete_block(p, 64);  // freed by another thread, unguarded
  }).join();
  kept.clear();
  for (int i = 0; i < 4; ++i) f.step();  // 40 live: at the limit, not above
  EXPECT_FALSE(f.ended());
  // The thread frees nothing of the fiber's: its own churn does not help.
  churn(50, 64);
  f.step();  // the 41st live block trips
  ASSERT_TRUE(f.ended());
  ASSERT_FALSE(f.outcome->has_value());
  EXPECT_EQ(f.outcome->error().kind(), memlimits::limit_kind::memory);
  EXPECT_EQ(f.outcome->usage().allocated_bytes, 64u * 50);
  for (void* p : kept) delete_block(p, 64);
}

// Counts live instances: destructors that unwinding must run.
struct sentinel {
  static inline std::atomic<int> live{0};
  sentinel() { ++live; }
  ~sentinel() { --live; }
  sentinel(const sentinel&) = delete;
  sentinel& operator=(const sentinel&) = delete;
};

TEST(Fiber, AnInterruptionUnwindsTheFibersStackAndTheBodyGoesOn) {
  bool after_guard = false;
  fiber f{[&](fiber&& caller) {
    auto r = memlimits::limit_allocations(4096, [&] {
      sentinel outer;
      std::vector<std::unique_ptr<sentinel>> held;
      for (;;) {
        held.push_back(std::make_unique<sentinel>());
        if (held.size() % 8 == 0) caller = std::move(caller).resume();
      }
      return 0;
    });
    EXPECT_FALSE(r.has_value());
    EXPECT_EQ(sentinel::live, 0);  // every destructor ran
    after_guard = true;
    std::vector<int> fine(1000);   // the fiber allocates freely after the guard
    return std::move(caller);
  }};
  while (f) f = std::move(f).resume();
  EXPECT_TRUE(after_guard);
  EXPECT_EQ(sentinel::live, 0);
}

TEST(Fiber, ASuspendedFiberDestroyedInsideAGuardLeavesNoContext) {
  bool resumed_after_guard = false;
  auto f = std::make_unique<fiber>([&](fiber&& caller) {
    auto r = memlimits::limit_allocations(1 << 20, [&] {
      sentinel held;
      churn(2, 64);
      caller = std::move(caller).resume();  // never returns: destroyed
      return 0;
    });
    resumed_after_guard = true;  // forced unwinding is not an outcome
    return std::move(caller);
  });
  *f = std::move(*f).resume();
  ASSERT_TRUE(*f);
  ASSERT_EQ(fiber_tasks().size(), 1u);
  EXPECT_EQ(sentinel::live, 1);
  f.reset();  // unwinds the fiber's stack
  EXPECT_FALSE(resumed_after_guard);
  EXPECT_EQ(sentinel::live, 0);
  EXPECT_TRUE(fiber_tasks().empty());
  EXPECT_FALSE(memlimits::is_interrupted());
  auto r = memlimits::limit_allocations(128, [] { churn(2, 64); return 0; });
  EXPECT_TRUE(r.has_value());
  EXPECT_EQ(r.usage().allocated_bytes, 128u);
}

TEST(Fiber, AFiberDestroyedInsideItsTrippedGuardIsStillUnwound) {
  // The guard has tripped (the body caught limit_reached and went on): the
  // forced unwinding must pass through it, not be reported as its error.
  bool resumed_after_guard = false;
  fiber f{[&](fiber&& caller) {
    auto r = memlimits::limit_allocations(256, [&] {
      try {
        churn(10, 64);
      } catch (const memlimits::limit_reached&) {
      }
      EXPECT_TRUE(memlimits::is_interrupted());
      caller = std::move(caller).resume();
      return 0;
    });
    resumed_after_guard = true;
    return std::move(caller);
  }};
  f = std::move(f).resume();
  ASSERT_TRUE(f);
  f = fiber{};
  EXPECT_FALSE(resumed_after_guard);
  EXPECT_TRUE(fiber_tasks().empty());
}

TEST(Fiber, AFiberDestroyedAfterItsTokenWasSetIsStillUnwound) {
  // Made current to be unwound, the fiber sees its token set: its guard
  // trips, and the unwinding still passes through.
  memlimits::token cancel;
  bool resumed_after_guard = false;
  fiber f{[&](fiber&& caller) {
    auto r = memlimits::limit_with_token(cancel, [&] {
      caller = std::move(caller).resume();
      return 0;
    });
    resumed_after_guard = true;
    return std::move(caller);
  }};
  f = std::move(f).resume();
  cancel.set();
  f = fiber{};
  EXPECT_FALSE(resumed_after_guard);
  EXPECT_TRUE(fiber_tasks().empty());
}

TEST(Fiber, AFiberDestroyedBeforeItRanReleasesItsBodyWithoutRunningIt) {
  auto captured = std::make_shared<int>(5);
  bool ran = false;
  {
    fiber f{[&ran, captured](fiber&& caller) {
      ran = true;
      return std::move(caller);
    }};
    EXPECT_EQ(captured.use_count(), 2);
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(captured.use_count(), 1);
}

TEST(Fiber, UnwindingMaySwitchToOtherFibers) {
  // A destructor on the unwinding fiber's stack resumes another fiber: the
  // unwinding still ends in the context that destroyed it.
  int helper_steps = 0;
  fiber helper{[&](fiber&& caller) {
    for (;;) {
      ++helper_steps;
      caller = std::move(caller).resume();
    }
    return std::move(caller);
  }};
  struct resumes_on_exit {
    fiber* other;
    ~resumes_on_exit() { *other = std::move(*other).resume(); }
  };
  fiber f{[&](fiber&& caller) {
    resumes_on_exit guard{&helper};
    auto r = memlimits::limit_allocations(1 << 20, [&] {
      caller = std::move(caller).resume();
      return 0;
    });
    return std::move(caller);
  }};
  f = std::move(f).resume();
  f = fiber{};
  EXPECT_EQ(helper_steps, 1);
  EXPECT_TRUE(helper);
  EXPECT_TRUE(fiber_tasks().empty());
}

TEST(Fiber, ResumeWithRunsTheFunctionAsTheFiber) {
  // fn runs on top of the fiber, inside its guard, and what it returns is
  // what the fiber's pending resume() returns.
  std::optional<memlimits::result<int>> outcome;
  int seen = 0;
  fiber f{[&](fiber&& caller) {
    outcome.emplace(memlimits::limit_allocations(64 * 10, [&] {
      churn(2, 64);
      caller = std::move(caller).resume();
      seen = 1;
      caller = std::move(caller).resume();
      return 3;
    }));
    return std::move(caller);
  }};
  f = std::move(f).resume();
  f = std::move(f).resume_with([&](fiber&& from) {
    churn(3, 64);  // the fiber's: its guard is charged
    EXPECT_EQ(seen, 0);
    return std::move(from);
  });
  EXPECT_EQ(seen, 1);
  f = std::move(f).resume();
  ASSERT_FALSE(f);
  ASSERT_TRUE(outcome->has_value());
  EXPECT_EQ(outcome->usage().allocated_bytes, 5 * 64u);
}

TEST(Fiber, ResumeWithOnAFiberThatHasNotStarted) {
  int order = 0;
  int fn_at = -1;
  int body_at = -1;
  fiber f{[&](fiber&& caller) {
    body_at = order++;
    return std::move(caller);
  }};
  f = std::move(f).resume_with([&](fiber&& from) {
    fn_at = order++;
    return std::move(from);
  });
  EXPECT_FALSE(f);
  EXPECT_EQ(fn_at, 0);
  EXPECT_EQ(body_at, 1);
}

TEST(Fiber, ABodyMayEndByResumingAnotherFiber) {
  // a ends by returning a new fiber b, which ends by returning main.
  std::vector<int> order;
  fiber a{[&](fiber&& main) {
    order.push_back(1);
    return fiber{[&, main = std::move(main)](fiber&& ended) mutable {
      EXPECT_FALSE(ended);  // a ended
      order.push_back(2);
      auto r = memlimits::limit_allocations(64, [] { churn(1, 64); return 0; });
      EXPECT_TRUE(r.has_value());
      return std::move(main);
    }};
  }};
  fiber back = std::move(a).resume();
  EXPECT_FALSE(back);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_TRUE(fiber_tasks().empty());
}

TEST(Fiber, StackAllocatorsAndPreallocatedStacks) {
  int ran = 0;
  auto body = [&](fiber&& caller) {
    auto r = memlimits::limit_allocations(64, [] { churn(1, 64); return 0; });
    EXPECT_TRUE(r.has_value());
    ++ran;
    return std::move(caller);
  };
  fiber a{std::allocator_arg, boost::context::protected_fixedsize_stack(256 * 1024), body};
  a = std::move(a).resume();
  boost::context::fixedsize_stack allocator(128 * 1024);
  boost::context::stack_context stack = allocator.allocate();
  fiber b{std::allocator_arg, boost::context::preallocated(stack.sp, stack.size, stack), allocator,
          body};
  b = std::move(b).resume();
  EXPECT_EQ(ran, 2);
}

TEST(Fiber, TheCreatorIsChargedForTheStack) {
  auto r = memlimits::limit_allocations(1 << 20, [] {
    fiber f{std::allocator_arg, boost::context::fixedsize_stack(64 * 1024),
            [](fiber&& caller) { return std::move(caller); }};
    return 0;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_GE(r.usage().allocated_bytes, 64u * 1024);
}

TEST(Fiber, TheInterfaceOfBoostContextFiber) {
  fiber empty;
  EXPECT_FALSE(empty);
  EXPECT_TRUE(!empty);
  std::ostringstream text;
  text << empty;
  EXPECT_EQ(text.str(), "{not-a-context}");
  fiber f{[](fiber&& caller) { return std::move(caller); }};
  EXPECT_TRUE(f);
  EXPECT_NE(f, empty);
  EXPECT_TRUE(empty < f || f < empty);
  swap(f, empty);
  EXPECT_FALSE(f);
  EXPECT_TRUE(empty);
  fiber moved = std::move(empty);
  EXPECT_FALSE(empty);
  moved = std::move(moved).resume();
  EXPECT_FALSE(moved);
}

TEST(Fiber, AFiberSuspendedInsideAGuardGoesOnInAForkedChild) {
  if (memlimits::testing::under_tsan) {
    // ThreadSanitizer keeps each fiber's context in its thread registry,
    // which fork() resets in the child: there, a fiber created before the
    // fork is reported as racing with the thread that switches to it,
    // whatever the switch synchronizes.
    GTEST_SKIP() << "ThreadSanitizer does not carry fiber contexts across fork()";
  }
  stepper f(allocations(64 * 30), 10);
  f.step();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child's registry holds only its own task: the fiber is listed
    // again once it runs there, and its guard counts on.
    int failed = 0;
    if (!fiber_tasks().empty()) failed |= 1;
    f.step();
    f.step();  // 30 of 30
    const auto listed = fiber_tasks();
    if (listed.size() != 1 || listed[0].contexts.size() != 1 || listed[0].contexts[0].used != 1920) {
      failed |= 2;
    }
    f.step();  // the 31st is refused
    if (!f.ended() || f.outcome->has_value() || f.outcome->usage().allocated_bytes != 1920) {
      failed |= 4;
    }
    if (!fiber_tasks().empty()) failed |= 8;
    ::_exit(failed);
  }
  const int status = memlimits::testing::wait_for_child(pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "bits: 1 listed before it ran, 2 not listed or wrong usage, "
                                       "4 wrong outcome, 8 still listed at the end";
  for (int i = 0; i < 3; ++i) f.step();  // the parent's copy goes on too
  EXPECT_TRUE(f.ended());
}

TEST(Fiber, ManyFibersOnTwoThreads) {
  // 2 worker threads resume 200 fibers from a shared queue; each fiber
  // allocates 64 B blocks in steps under an exact limit, and half of them
  // run away. Every fiber ends with exactly its own usage, wherever it ran.
  constexpr int fibers = 200;
  constexpr int per_step = 4;
  struct job {
    fiber body;
    std::optional<memlimits::result<int>> outcome;
    bool runaway = false;
  };
  std::vector<job> jobs(fibers);
  for (int i = 0; i < fibers; ++i) {
    job& j = jobs[static_cast<std::size_t>(i)];
    j.runaway = i % 2 == 1;
    const int steps = 5 + i % 7;
    j.body = fiber{[&j, steps](fiber&& caller) {
      j.outcome.emplace(memlimits::limit_allocations(64 * per_step * 20, [&] {
        for (int s = 0; j.runaway || s < steps; ++s) {
          churn(per_step, 64);
          caller = std::move(caller).resume();
        }
        return steps;
      }));
      return std::move(caller);
    }};
  }
  std::mutex lock;
  std::vector<int> queue;
  for (int i = 0; i < fibers; ++i) queue.push_back(i);
  auto worker = [&] {
    for (;;) {
      int next;
      {
        std::lock_guard<std::mutex> hold(lock);
        if (queue.empty()) return;
        next = queue.front();
        queue.erase(queue.begin());
      }
      job& j = jobs[static_cast<std::size_t>(next)];
      j.body = std::move(j.body).resume();
      std::lock_guard<std::mutex> hold(lock);
      if (j.body) queue.push_back(next);
    }
  };
  std::thread one(worker);
  std::thread two(worker);
  one.join();
  two.join();
  for (int i = 0; i < fibers; ++i) {
    const job& j = jobs[static_cast<std::size_t>(i)];
    ASSERT_TRUE(j.outcome.has_value()) << i;
    if (j.runaway) {
      ASSERT_FALSE(j.outcome->has_value()) << i;
      EXPECT_EQ(j.outcome->usage().allocated_bytes, 64u * per_step * 20) << i;
    } else {
      ASSERT_TRUE(j.outcome->has_value()) << i;
      EXPECT_EQ(**j.outcome, 5 + i % 7);
      EXPECT_EQ(j.outcome->usage().allocated_bytes, 64u * per_step * static_cast<unsigned>(5 + i % 7));
    }
  }
  EXPECT_TRUE(fiber_tasks().empty());
}

}  // namespace

namespace {

// fiber(inherit, ...): the fiber's task is a child of its creator's, so its
// allocations, on whichever thread resumes it, count toward the creator's
// guards; the guard's exit interrupts it at its next allocation; tasks()
// lists it as a fiber with its parent.
TEST(Fiber, AnInheritingFiberIsChargedToItsCreatorsGuardOnAnyThread) {
  std::optional<memlimits::guard> g(std::in_place, memlimits::limits{.allocations = 1ull << 40});
  const std::uint64_t creator_id = memlimits::testing::find_task(std::this_thread::get_id())->id;
  std::optional<memlimits::limit_kind> stopped_by;
  std::vector<memlimits::task_info> listed;
  fiber f(memlimits::inherit, [&](fiber&& caller) {
    churn(10, 1000);
    caller = std::move(caller).resume();
    churn(10, 1000);
    listed = memlimits::tasks();
    caller = std::move(caller).resume();
    try {
      churn(1, 64);
    } catch (const memlimits::limit_reached& e) {
      stopped_by = e.kind();
    }
    return std::move(caller);
  });
  const std::uint64_t before = g->usage().allocated_bytes;
  f = std::move(f).resume();  // 10 here
  EXPECT_EQ(g->usage().allocated_bytes - before, 10u * 1000);
  std::atomic<bool> go{false};
  std::thread there([&] {  // its state is this thread's: started before measuring
    memlimits::testing::await([&] { return go.load(); }, "the go");
    f = std::move(f).resume();  // 10 there
  });
  const std::uint64_t before_there = g->usage().allocated_bytes;
  go = true;
  there.join();
  EXPECT_EQ(g->usage().allocated_bytes - before_there, 10u * 1000);
  bool found = false;
  for (const memlimits::task_info& t : listed) {
    if (!t.fiber) continue;
    found = true;
    EXPECT_EQ(t.parent, creator_id);
    EXPECT_EQ(t.contexts.size(), 1u);
  }
  EXPECT_TRUE(found) << "tasks() lists the fiber with its parent";
  EXPECT_FALSE(g->exit().has_value());
  g.reset();
  f = std::move(f).resume();  // its next allocation raises: the guard exited
  EXPECT_FALSE(f);
  ASSERT_TRUE(stopped_by.has_value());
  EXPECT_EQ(*stopped_by, memlimits::limit_kind::allocations);
}

}  // namespace
