// tests/unit/handler_search_test.cpp — the handler search (src/platform/
// handler_search.cpp) on frames compiled by g++ and by clang++, at -O0 and
// -O2 (handler_search_frames.cpp): first the search alone, at a probe called
// from each frame shape, then a real interruption raised (or deferred) there
// under a guard, which must never terminate the process.
#include <cstdint>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include <gtest/gtest.h>

#include "memlimits/memlimits.hpp"
#include "platform/handler_search.hpp"
#include "unit/handler_search_frames.hpp"

namespace {

using handler_frames::expect;
using handler_frames::shape;
namespace platform = memlimits::platform;

struct variant {
  const char* name;
  const shape* shapes;
  std::size_t count;
};

const variant variants[] = {
    {"g++ -O0", handler_frames::gcc_O0::shapes, handler_frames::gcc_O0::shape_count},
    {"g++ -O2", handler_frames::gcc_O2::shapes, handler_frames::gcc_O2::shape_count},
    {"clang++ -O0", handler_frames::clang_O0::shapes, handler_frames::clang_O0::shape_count},
    {"clang++ -O2", handler_frames::clang_O2::shapes, handler_frames::clang_O2::shape_count},
};

// ---- the search alone ----

struct search_counts {
  int caught = 0;
  int terminates = 0;
  int from_missing = 0;
};
thread_local search_counts counts;
thread_local std::uintptr_t stop_above = 0;

platform::handler_answer search_from(const void* from, std::uintptr_t stop) {
  memlimits::limit_reached exception(memlimits::limit_kind::token);
  platform::handler_query query;
  query.from = from;
  query.type = &typeid(memlimits::limit_reached);
  query.object = &exception;
  query.stop_above = stop;
  return platform::search_handler(query);
}

// Called by the shapes: searches from its own call site.
[[gnu::noinline]] void search_probe() {
  const platform::handler_answer answer = search_from(__builtin_return_address(0), stop_above);
  if (!answer.from_found) ++counts.from_missing;
  if (answer.outcome == platform::throw_outcome::caught) {
    ++counts.caught;
  } else {
    ++counts.terminates;
  }
}

// Its own CFA: the stack pointer of its caller at the call.
[[gnu::noinline]] std::uintptr_t caller_stack_pointer() {
  return reinterpret_cast<std::uintptr_t>(__builtin_dwarf_cfa());
}

// Runs a shape as a guard runs its task: with a handler for limit_reached
// in this frame, whose CFA is above the stop.
[[gnu::noinline]] search_counts search_in(const shape& s) {
  counts = {};
  stop_above = caller_stack_pointer();
  try {
    s.run(&search_probe);
  } catch (const memlimits::limit_reached&) {
    ADD_FAILURE() << "nothing was thrown";
  }
  stop_above = 0;
  return counts;
}

TEST(HandlerSearch, EveryShapeOfEachCompiler) {
  for (const variant& v : variants) {
    for (std::size_t i = 0; i < v.count; ++i) {
      const shape& s = v.shapes[i];
      const search_counts found = search_in(s);
      SCOPED_TRACE(std::string(v.name) + ", " + s.name);
      EXPECT_EQ(found.from_missing, 0);
      ASSERT_GT(found.caught + found.terminates, 0) << "the probe was not called";
      if (s.outcome == expect::caught) {
        EXPECT_EQ(found.terminates, 0) << "a handler would catch it";
      } else {
        EXPECT_EQ(found.caught, 0) << "it would terminate";
      }
    }
  }
}

[[gnu::noinline]] search_counts noexcept_caller_of_search(const shape& s) noexcept {
  return search_in(s);
}

TEST(HandlerSearch, NoexceptFramesAboveTheHandlerDoNotMatter) {
  const shape& plain = handler_frames::gcc_O2::shapes[0];
  ASSERT_STREQ(plain.name, "plain");
  const search_counts found = noexcept_caller_of_search(plain);
  EXPECT_EQ(found.from_missing, 0);
  EXPECT_GT(found.caught, 0);
  EXPECT_EQ(found.terminates, 0);
}

TEST(HandlerSearch, AReturnAddressNotOnTheStackIsNotTrusted) {
  const platform::handler_answer answer =
      search_from(reinterpret_cast<const void*>(&search_probe), 0);
  EXPECT_FALSE(answer.from_found);
  EXPECT_EQ(answer.outcome, platform::throw_outcome::terminates);
}

[[gnu::noinline]] void probe_without_stop() {
  const platform::handler_answer answer = search_from(__builtin_return_address(0), 0);
  EXPECT_TRUE(answer.from_found);
  if (answer.outcome == platform::throw_outcome::caught) {
    ++counts.caught;
  } else {
    ++counts.terminates;
  }
}

TEST(HandlerSearch, WithoutAStopTheStackDecides) {
  // Under a handler (the test's, and GoogleTest's own): caught.
  counts = {};
  try {
    handler_frames::gcc_O2::shapes[0].run(&probe_without_stop);
  } catch (...) {
  }
  EXPECT_EQ(counts.caught, 1);
  // A thread's function with no handler anywhere: a real throw terminates.
  search_counts in_thread;
  std::thread([&] {
    handler_frames::gcc_O2::shapes[0].run(&probe_without_stop);
    in_thread = counts;
  }).join();
  EXPECT_EQ(in_thread.caught, 0);
  EXPECT_EQ(in_thread.terminates, 1);
}

TEST(HandlerSearch, TheBoundaryFrameIsReported) {
  // noexcept_direct: the boundary is the shape's own frame, whose return
  // address is in search_in.
  const shape& s = handler_frames::gcc_O2::shapes[1];
  ASSERT_STREQ(s.name, "noexcept_direct");
  static platform::handler_answer seen;
  s.run([] { seen = search_from(__builtin_return_address(0), 0); });
  EXPECT_EQ(seen.outcome, platform::throw_outcome::terminates);
  EXPECT_NE(seen.boundary_sp, 0u);
#if defined(__x86_64__)
  EXPECT_NE(seen.boundary_return, 0u);
#endif
  EXPECT_EQ(seen.frames, 1u);
}

thread_local std::uintptr_t outer_stack_pointer = 0;
thread_local platform::handler_answer nested_answer;

[[gnu::noinline]] void record_nested() {
  nested_answer = search_from(__builtin_return_address(0), stop_above);
}
// Called through pointers the compiler cannot see through: a call it knows
// cannot throw needs no call-site entry (g++ infers that for functions that
// call only non-throwing ones), and real allocation paths may throw.
void (*volatile record_nested_ptr)() = &record_nested;
[[gnu::noinline]] void inner_noexcept() noexcept {
  record_nested_ptr();
  asm volatile("" ::: "memory");  // not a tail call
}
void (*volatile inner_noexcept_ptr)() = &inner_noexcept;
[[gnu::noinline]] void between() {
  inner_noexcept_ptr();
  asm volatile("" ::: "memory");
}
void (*volatile between_ptr)() = &between;
[[gnu::noinline]] void outer_noexcept() noexcept {
  outer_stack_pointer = caller_stack_pointer();
  between_ptr();
  asm volatile("" ::: "memory");
}
void (*volatile outer_noexcept_ptr)() = &outer_noexcept;
[[gnu::noinline]] void guarded_nesting() {
  stop_above = caller_stack_pointer();
  try {
    outer_noexcept_ptr();
  } catch (const memlimits::limit_reached&) {
  }
  stop_above = 0;
}

TEST(HandlerSearch, TheOutermostBoundaryBelowTheStopIsReported) {
  // The deferral cache remembers the boundary that stays on the stack the
  // longest: the outer noexcept frame, not the inner one.
  guarded_nesting();
  EXPECT_EQ(nested_answer.outcome, platform::throw_outcome::terminates);
  EXPECT_EQ(nested_answer.boundary_sp, outer_stack_pointer);
}

// ---- end to end: an interrupted task allocates in each shape ----

thread_local int probe_calls = 0;
thread_local int probe_completed = 0;

[[gnu::noinline]] void allocating_probe() {
  ++probe_calls;
  char* volatile block = new char[24];
  delete[] block;
  ++probe_completed;
}

TEST(HandlerSearchEndToEnd, AnInterruptedTaskAllocatesInEachShape) {
  for (const variant& v : variants) {
    for (std::size_t i = 0; i < v.count; ++i) {
      const shape& s = v.shapes[i];
      SCOPED_TRACE(std::string(v.name) + ", " + s.name);
      probe_calls = probe_completed = 0;
      bool returned = false;
      memlimits::token t;
      const memlimits::result<void> r = memlimits::limit_with_token(t, [&] {
        t.set();
        s.run(&allocating_probe);
        returned = true;
        char* volatile block = new char[24];  // raised here, if not before
        delete[] block;
        ADD_FAILURE() << "the interruption was never raised";
      });
      ASSERT_FALSE(r.has_value());
      EXPECT_EQ(r.error().kind(), memlimits::limit_kind::token);
      EXPECT_NE(r.error().exception(), nullptr);
      if (probe_calls == 0) {
        // The shape's own allocation came first and was raised: only where
        // a handler catches it.
        EXPECT_EQ(s.outcome, expect::caught) << "raised in a shape that would terminate";
        continue;
      }
      if (s.outcome == expect::terminates) {
        // Deferred at every allocation in the shape; raised after it.
        EXPECT_EQ(probe_completed, probe_calls);
        EXPECT_TRUE(returned);
      } else {
        EXPECT_EQ(probe_completed, 0) << "raised at the first allocation";
      }
    }
  }
}

}  // namespace
