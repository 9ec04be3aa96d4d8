// tests/unit/noexcept_test.cpp — an interruption never terminates the
// process: where limit_reached would reach a noexcept boundary (every
// destructor, every noexcept function), the allocation succeeds, the task
// stays interrupted, and the interruption is raised at its next allocation
// point where a handler catches it. The guard returns its error by its flag.
// (The search itself, on frames of each compiler: handler_search_test.)
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "limits/raise_point.hpp"
#include "memlimits/memlimits.hpp"
#include "support/limits_support.hpp"

namespace {

using memlimits::limit_kind;
using memlimits::testing::alloc_form;
using memlimits::testing::block_list;
using memlimits::testing::delete_block;
using memlimits::testing::new_block;
using memlimits::testing::opaque;
using memlimits::testing::release_all;

// Whether the exception a guard reports is a limit_reached of `kind`.
bool escaped_limit_reached(const memlimits::interruption& e, limit_kind kind) {
  if (e.exception() == nullptr) return false;
  try {
    std::rethrow_exception(e.exception());
  } catch (const memlimits::limit_reached& reached) {
    return reached.kind() == kind;
  } catch (...) {
  }
  return false;
}

// Fills `blocks` with `form` inside a noexcept function: an interruption
// here would terminate, so none is raised.
[[gnu::noinline]] void fill_noexcept(const alloc_form& form, std::size_t bytes,
                                     block_list& blocks) noexcept {
  auto allocate = opaque(form.allocate);
  while (!blocks.full()) blocks.push(allocate(bytes));
}

struct allocates_when_destroyed {
  std::vector<std::string>* sink;
  ~allocates_when_destroyed() { sink->push_back(std::string(100, 'x')); }
};

TEST(NoexceptBoundary, TokenSetWhileIdleThenAnAllocatingDestructor) {
  std::vector<std::string> sink;
  sink.reserve(4);
  memlimits::token t;
  int stage = 0;
  const memlimits::result<void> r = memlimits::limit_with_token(t, [&] {
    {
      allocates_when_destroyed logger{&sink};
      t.set();  // idle: no allocation until the destructor's
      stage = 1;
    }  // ~allocates_when_destroyed allocates here, in a noexcept destructor
    stage = 2;
    void* p = new_block(64);  // the next allocation point: raised here
    stage = 3;
    delete_block(p, 64);
  });
  EXPECT_EQ(stage, 2);
  ASSERT_EQ(sink.size(), 1u) << "the destructor's allocation succeeded";
  EXPECT_EQ(sink[0].size(), 100u);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::token);
  EXPECT_TRUE(escaped_limit_reached(r.error(), limit_kind::token));
}

TEST(NoexceptBoundary, AnExactAllocationLimitTripsInsideANoexceptFunction) {
  for (const alloc_form& form : memlimits::testing::throwing_forms) {
    SCOPED_TRACE(form.name);
    const std::size_t bytes = 64;
    block_list blocks(32);
    bool raised_after = false;
    const memlimits::result<void> r = memlimits::limit_allocations(16 * bytes, [&] {
      fill_noexcept(form, bytes, blocks);  // the 17th block trips the limit: deferred
      try {
        void* p = opaque(form.allocate)(bytes);
        opaque(form.release)(p, bytes);
      } catch (const memlimits::limit_reached&) {
        raised_after = true;
        throw;
      }
    });
    EXPECT_EQ(blocks.size(), 32u) << "every block in the noexcept function was allocated";
    EXPECT_TRUE(raised_after);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind(), limit_kind::allocations);
    EXPECT_TRUE(escaped_limit_reached(r.error(), limit_kind::allocations));
    // Over the limit by the blocks allocated after the trip: the refused one
    // is not counted.
    EXPECT_EQ(r.usage().allocated_bytes, 32 * bytes);
    release_all(form, bytes, blocks);
  }
}

TEST(NoexceptBoundary, AMemoryLimitTripsInsideANoexceptFunction) {
  memlimits::testing::settings_restorer restore;
  memlimits::configure({.sampling_rate = 1.0});  // every word sampled: the trip is exact
  const std::size_t bytes = 64;
  block_list blocks(128);  // 8 KiB live against a 4 KiB limit
  bool returned = false;
  const memlimits::result<void> r = memlimits::limit_memory(4096, [&] {
    fill_noexcept(memlimits::testing::new_form, bytes, blocks);
    returned = true;
    void* p = new_block(bytes);
    delete_block(p, bytes);
  });
  EXPECT_TRUE(returned);
  EXPECT_EQ(blocks.size(), 128u);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::memory);
  EXPECT_TRUE(escaped_limit_reached(r.error(), limit_kind::memory));
  EXPECT_GE(r.usage().memory_bytes, 128 * 64);
  release_all(memlimits::testing::new_form, bytes, blocks);
}

TEST(NoexceptBoundary, ATaskThatAllocatesOnlyInNoexceptCodeIsStoppedByItsFlag) {
  block_list blocks(64);
  const memlimits::result<int> r = memlimits::limit_allocations(256, [&] {
    fill_noexcept(memlimits::testing::new_form, 16, blocks);
    return 7;  // returns normally: nothing raised
  });
  EXPECT_EQ(blocks.size(), 64u);
  ASSERT_FALSE(r.has_value()) << "the guard decides by its flag";
  EXPECT_EQ(r.error().kind(), limit_kind::allocations);
  EXPECT_EQ(r.error().exception(), nullptr);
  EXPECT_EQ(r.usage().allocated_bytes, 64u * 16);
  release_all(memlimits::testing::new_form, 16, blocks);
}

[[gnu::noinline]] void poll_noexcept(bool& returned) noexcept {
  memlimits::poll();  // would terminate: returns
  returned = true;
}

TEST(NoexceptBoundary, PollDefersInsideNoexceptCode) {
  memlimits::token t;
  bool returned = false;
  bool raised = false;
  const memlimits::result<void> r = memlimits::limit_with_token(t, [&] {
    t.set();
    poll_noexcept(returned);
    EXPECT_TRUE(memlimits::is_interrupted());
    try {
      memlimits::poll();
    } catch (const memlimits::limit_reached&) {
      raised = true;
      throw;
    }
  });
  EXPECT_TRUE(returned);
  EXPECT_TRUE(raised);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::token);
}

// A std::pmr container over memlimits' resource in a noexcept function.
[[gnu::noinline]] std::size_t pmr_noexcept() noexcept {
  std::pmr::vector<std::uint64_t> v(memlimits::resource());
  for (int i = 0; i < 1000; ++i) v.push_back(static_cast<std::uint64_t>(i));
  return v.size();
}

TEST(NoexceptBoundary, TheAdaptersDeferInsideNoexceptCode) {
  memlimits::token t;
  std::size_t pushed = 0;
  const memlimits::result<void> r = memlimits::limit_with_token(t, [&] {
    t.set();
    pushed = pmr_noexcept();
    std::pmr::vector<std::uint64_t> v(memlimits::resource());
    v.push_back(1);  // raised
    ADD_FAILURE() << "not raised outside the noexcept function";
  });
  EXPECT_EQ(pushed, 1000u);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(escaped_limit_reached(r.error(), limit_kind::token));
}

// At exit: a static object's destructor allocates while the guard that
// called exit() is still active and its task interrupted.
struct logs_at_exit {
  std::vector<std::string> lines;
  ~logs_at_exit() {
    for (int i = 0; i < 100; ++i) lines.push_back(std::string(64, 'e'));
  }
};

[[noreturn]] void exit_inside_an_interrupted_guard() {
  memlimits::token t;
  (void)memlimits::limit_with_token(t, [&] {
    static logs_at_exit log;
    log.lines.reserve(1);
    t.set();
    std::exit(0);
  });
  std::abort();
}

TEST(NoexceptBoundaryDeathTest, AStaticDestructorAtExitInsideAGuardDoesNotTerminate) {
  EXPECT_EXIT(exit_inside_an_interrupted_guard(), ::testing::ExitedWithCode(0), "");
}

// ---- the cost of a long noexcept region ----

[[gnu::noinline]] void churn_noexcept(int count) noexcept {
  for (int i = 0; i < count; ++i) delete_block(new_block(48), 48);
}

[[gnu::noinline]] void churn_plain(int count) {
  for (int i = 0; i < count; ++i) delete_block(new_block(48), 48);
}

[[gnu::noinline]] void call_through(void (*f)(int), int count) { f(count); }

TEST(NoexceptBoundary, ALongNoexceptRegionIsNotWalkedAtEveryAllocation) {
  memlimits::token t;
  std::uint64_t walks_inside = 0;
  std::uint64_t walks_to_raise = 0;
  bool raised = false;
  const memlimits::result<void> r = memlimits::limit_with_token(t, [&] {
    t.set();
    const std::uint64_t before = memlimits::detail::handler_searches_on_this_thread();
    call_through(&churn_noexcept, 100000);
    walks_inside = memlimits::detail::handler_searches_on_this_thread() - before;
    // The same call site now calls a function that may raise: the region
    // was left, and the first allocation raises.
    const std::uint64_t after = memlimits::detail::handler_searches_on_this_thread();
    try {
      call_through(&churn_plain, 1000);
    } catch (const memlimits::limit_reached&) {
      raised = true;
      walks_to_raise = memlimits::detail::handler_searches_on_this_thread() - after;
      throw;
    }
  });
  // 1 + 2 + ... + 256 deferrals between walks, then one walk per 257.
  EXPECT_GE(walks_inside, 1u);
  EXPECT_LE(walks_inside, 100000u / 256 + 16) << "the deferral cache is not used";
  EXPECT_TRUE(raised);
  EXPECT_EQ(walks_to_raise, 1u) << "the region was left, its boundary forgotten";
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), limit_kind::token);
}

TEST(NoexceptBoundary, MasksAndExceptionsInFlightStillDeferWithoutAWalk) {
  memlimits::token t;
  const memlimits::result<void> r = memlimits::limit_with_token(t, [&] {
    t.set();
    const std::uint64_t before = memlimits::detail::handler_searches_on_this_thread();
    {
      memlimits::mask masked;
      delete_block(new_block(32), 32);
    }
    EXPECT_EQ(memlimits::detail::handler_searches_on_this_thread(), before);
    delete_block(new_block(32), 32);  // raised
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(escaped_limit_reached(r.error(), limit_kind::token));
}

}  // namespace
