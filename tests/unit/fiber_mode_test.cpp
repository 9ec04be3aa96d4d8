// tests/unit/fiber_mode_test.cpp — destroying suspended memlimits::fibers
// in a program whose NDEBUG mode differs from the fiber library's.
//
// Boost.Context's forced_unwind, which unwinds a destroyed fiber's stack,
// has an extra `caught` flag and a destructor asserting it unless NDEBUG.
// Built twice (tests/unit/CMakeLists.txt), whatever the build type:
//  - MEMLIMITS_FIBER_MODE_PROGRAM_ASSERTS=1: this program without NDEBUG,
//    the fiber library with it (a Debug program, a release library);
//  - MEMLIMITS_FIBER_MODE_PROGRAM_ASSERTS=0: this program with NDEBUG, the
//    library without it (a release program, a Debug library).
// Either way the destroyed fibers' stacks must unwind cleanly: no write
// past the exception (AddressSanitizer), no failed assertion.
#include <gtest/gtest.h>

#include <boost/context/detail/exception.hpp>

#include <cstddef>
#include <utility>

#include "memlimits/fiber.hpp"
#include "memlimits/limits.hpp"

#if !defined(MEMLIMITS_FIBER_MODE_PROGRAM_ASSERTS) || !defined(MEMLIMITS_FIBER_MODE_SUITE)
#  error "built by tests/unit/CMakeLists.txt with the program's mode and a suite name"
#endif
#if MEMLIMITS_FIBER_MODE_PROGRAM_ASSERTS && defined(NDEBUG)
#  error "the Debug program of this test is compiled with NDEBUG"
#endif
#if !MEMLIMITS_FIBER_MODE_PROGRAM_ASSERTS && !defined(NDEBUG)
#  error "the release program of this test is compiled without NDEBUG"
#endif

namespace memlimits::testing {
// In the fiber library's copy (fiber_mode_probe.cpp): its forced_unwind's size.
std::size_t library_forced_unwind_size() noexcept;
}  // namespace memlimits::testing

namespace {

using memlimits::fiber;
namespace fcontext = boost::context::detail;

std::size_t fiber_task_count() {
  std::size_t n = 0;
  for (auto& t : memlimits::tasks()) n += t.fiber ? 1 : 0;
  return n;
}

struct counted {
  static inline int live = 0;
  static inline int destroyed = 0;
  counted() { ++live; }
  ~counted() {
    --live;
    ++destroyed;
  }
  counted(const counted&) = delete;
  counted& operator=(const counted&) = delete;
};

TEST(MEMLIMITS_FIBER_MODE_SUITE, TheProgramAndTheLibraryDisagreeOnForcedUnwind) {
  const std::size_t program = sizeof(fcontext::forced_unwind);
  const std::size_t library = memlimits::testing::library_forced_unwind_size();
  if (MEMLIMITS_FIBER_MODE_PROGRAM_ASSERTS) {
    EXPECT_GT(program, library);
  } else {
    EXPECT_LT(program, library);
  }
}

TEST(MEMLIMITS_FIBER_MODE_SUITE, AFiberSuspendedOnceIsUnwound) {
  bool resumed = false;
  fiber f{[&](fiber&& caller) {
    caller = std::move(caller).resume();  // never returns: destroyed
    resumed = true;
    return std::move(caller);
  }};
  f = std::move(f).resume();
  ASSERT_TRUE(f);
  f = fiber{};
  EXPECT_FALSE(resumed);
}

TEST(MEMLIMITS_FIBER_MODE_SUITE, AFiberSuspendedInsideAGuardIsUnwoundThroughIt) {
  bool resumed_after_guard = false;
  fiber f{[&](fiber&& caller) {
    auto r = memlimits::limit_allocations(1 << 20, [&] {
      caller = std::move(caller).resume();  // never returns: destroyed
      return 0;
    });
    resumed_after_guard = true;  // forced unwinding is not an outcome
    return std::move(caller);
  }};
  f = std::move(f).resume();
  ASSERT_TRUE(f);
  EXPECT_EQ(fiber_task_count(), 1u);  // tasks() lists the tasks with a guard
  f = fiber{};
  EXPECT_FALSE(resumed_after_guard);
  EXPECT_EQ(fiber_task_count(), 0u);
  EXPECT_FALSE(memlimits::is_interrupted());
  auto r = memlimits::limit_allocations(1 << 20, [] { return 1; });
  EXPECT_TRUE(r.has_value());
}

TEST(MEMLIMITS_FIBER_MODE_SUITE, TheDestructorsOnADestroyedFibersStackRun) {
  counted::live = 0;
  counted::destroyed = 0;
  fiber f{[&](fiber&& caller) {
    counted outer;
    {
      counted inner;
      caller = std::move(caller).resume();  // never returns: destroyed
    }
    return std::move(caller);
  }};
  f = std::move(f).resume();
  ASSERT_TRUE(f);
  EXPECT_EQ(counted::live, 2);
  f = fiber{};
  EXPECT_EQ(counted::live, 0);
  EXPECT_EQ(counted::destroyed, 2);
}

TEST(MEMLIMITS_FIBER_MODE_SUITE, FibersStillRunToTheirEndAfterwards) {
  for (int i = 0; i < 3; ++i) {
    fiber doomed{[](fiber&& caller) {
      counted held;
      caller = std::move(caller).resume();
      return std::move(caller);
    }};
    doomed = std::move(doomed).resume();
  }
  int steps = 0;
  fiber f{[&](fiber&& caller) {
    for (int i = 0; i < 3; ++i) {
      ++steps;
      caller = std::move(caller).resume();
    }
    return std::move(caller);
  }};
  while (f) f = std::move(f).resume();
  EXPECT_EQ(steps, 3);
}

}  // namespace
