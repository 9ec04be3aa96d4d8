// tests/unit/deadline_test.cpp — token deadlines (token::set_at,
// token::set_after) and the timer thread behind them (limits/timer.cpp):
// a guarded task is stopped at its first allocation after the deadline,
// the earliest of several deadlines wins, tokens dropped before their
// deadline are freed, the thread survives fork() in the child and does not
// hold up exit.
//
// Timing: a deadline must not fire early (checked against the clock), and
// must fire eventually (waited for with the bounded timeout of
// support/wait.hpp); how late it fires on a loaded machine is not a test
// failure (bench/ measures it).
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "memlimits/limits.hpp"
#include "../support/limits_support.hpp"
#include "../support/sanitizers.hpp"
#include "../support/wait.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using memlimits::testing::eventually;
using memlimits::testing::wait_for_child;

// Allocates until interrupted (or until `give_up`): the task a deadline
// stops. Returns how many blocks it allocated.
std::size_t allocate_until_stopped(clock_type::time_point give_up) {
  std::size_t blocks = 0;
  while (clock_type::now() < give_up) {
    memlimits::testing::delete_block(memlimits::testing::new_block(64), 64);
    ++blocks;
  }
  return blocks;
}

TEST(TokenDeadline, StopsTheTaskAtItsFirstAllocationAfterTheDeadline) {
  memlimits::token t;
  const auto start = clock_type::now();
  t.set_after(30ms);
  // Not before its time: a token seen set was set after its deadline.
  if (t.is_set()) {
    EXPECT_GE(clock_type::now() - start, 30ms);
  }
  clock_type::time_point stopped_at{};
  auto r = memlimits::limit_with_token(t, [&] {
    try {
      allocate_until_stopped(start + memlimits::testing::event_timeout);
    } catch (const std::bad_alloc&) {
      stopped_at = clock_type::now();
      throw;
    }
  });
  ASSERT_FALSE(r.has_value()) << "the deadline never stopped the task";
  EXPECT_EQ(r.error().kind(), memlimits::limit_kind::token);
  EXPECT_TRUE(t.is_set());
  EXPECT_GE(stopped_at - start, 30ms) << "stopped before the deadline";
}

TEST(TokenDeadline, NeverFiresBeforeItsTime) {
  memlimits::token t;
  const auto when = clock_type::now() + 50ms;
  t.set_at(when);
  ASSERT_TRUE(eventually([&] { return t.is_set(); }, "the deadline to set the token"));
  EXPECT_GE(clock_type::now(), when);
}

TEST(TokenDeadline, ATimeAlreadyPastSetsTheTokenAtOnce) {
  memlimits::token past;
  past.set_at(clock_type::now() - 1s);
  EXPECT_TRUE(past.is_set());
  memlimits::token zero;
  zero.set_after(0ms);
  EXPECT_TRUE(zero.is_set());
  memlimits::token negative;
  negative.set_after(-5s);
  EXPECT_TRUE(negative.is_set());
  // A guard on a token set already does not run its task.
  bool ran = false;
  auto r = memlimits::limit_with_token(past, [&] { ran = true; });
  EXPECT_FALSE(ran);
  EXPECT_FALSE(r.has_value());
}

TEST(TokenDeadline, TheEarliestOfSeveralDeadlinesSetsTheToken) {
  memlimits::token late_first;
  late_first.set_after(1h);
  late_first.set_after(20ms);
  ASSERT_TRUE(eventually([&] { return late_first.is_set(); }, "the earlier deadline"));

  memlimits::token early_first;
  const auto when = clock_type::now() + 20ms;
  early_first.set_at(when);
  early_first.set_after(1h);
  ASSERT_TRUE(eventually([&] { return early_first.is_set(); }, "the earlier deadline"));
  EXPECT_GE(clock_type::now(), when);
}

TEST(TokenDeadline, CopiesShareTheDeadline) {
  memlimits::token original;
  memlimits::token copy = original;
  copy.set_after(10ms);
  ASSERT_TRUE(eventually([&] { return original.is_set(); }, "the copy's deadline"));
}

TEST(TokenDeadline, BeyondTheClocksRangeMeansNever) {
  memlimits::token t;
  t.set_at(clock_type::time_point::max());
  t.set_after(std::chrono::hours::max());
  t.set_after(std::chrono::duration<double>(1e300));
  t.set_after(std::chrono::duration<double>(std::numeric_limits<double>::infinity()));
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(t.is_set());
}

TEST(TokenDeadline, ANaNDelayIsRejectedAndNamed) {
  memlimits::token t;
  try {
    t.set_after(std::chrono::duration<double>(std::nan("")));
    FAIL() << "a NaN delay was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("delay"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(t.is_set());
}

TEST(TokenDeadline, ManyDeadlinesFireInTheirOrderAndDroppedTokensAreFreed) {
  // 300 tokens with deadlines spread over 0..60 ms, in random order; a third
  // are dropped at once (the timer alone holds them: freed when due, which
  // LeakSanitizer checks in the ASan build). The others all get set, and
  // none before its time.
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> spread(0, 60);
  struct entry {
    memlimits::token token;
    clock_type::time_point when;
  };
  std::vector<entry> kept;
  const auto start = clock_type::now();
  for (int i = 0; i < 300; ++i) {
    memlimits::token t;
    const auto when = start + std::chrono::milliseconds(spread(rng)) + 5ms;
    t.set_at(when);
    if (i % 3 != 0) kept.push_back({t, when});
  }
  // Each token is seen set only after its time: the flag is read before the
  // clock, so a token seen set was set before that clock reading.
  std::vector<bool> seen(kept.size(), false);
  std::size_t left = kept.size();
  ASSERT_TRUE(eventually(
      [&] {
        for (std::size_t i = 0; i < kept.size(); ++i) {
          if (seen[i] || !kept[i].token.is_set()) continue;
          const auto now = clock_type::now();
          EXPECT_GE(now, kept[i].when) << "token " << i << " set before its deadline";
          seen[i] = true;
          --left;
        }
        return left == 0;
      },
      "every kept token to be set"));
}

TEST(TokenDeadline, StopsWorkersOnSeveralThreadsAtOnce) {
  // One token with one deadline, four guarded threads on it.
  memlimits::token t;
  std::atomic<int> stopped{0};
  std::vector<std::thread> workers;
  t.set_after(20ms);
  for (int i = 0; i < 4; ++i) {
    workers.emplace_back([&] {
      auto r = memlimits::limit_with_token(
          t, [] { allocate_until_stopped(clock_type::now() + memlimits::testing::event_timeout); });
      if (!r.has_value() && r.error().kind() == memlimits::limit_kind::token) ++stopped;
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(stopped.load(), 4);
}

TEST(TokenDeadline, AForkedChildKeepsItsPendingDeadlines) {
  if (memlimits::testing::under_tsan) {
    // The child starts a timer thread, after a fork of a process with
    // threads (the parent's timer): ThreadSanitizer does not support that.
    GTEST_SKIP() << "ThreadSanitizer does not support threads started after fork()";
  }
  memlimits::token t;
  memlimits::token started;  // makes sure the timer thread runs in the parent
  started.set_after(1ms);
  ASSERT_TRUE(eventually([&] { return started.is_set(); }, "the timer thread to run"));
  t.set_after(40ms);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // No timer thread here: the guard's entry starts one for the deadline.
    auto r = memlimits::limit_with_token(
        t, [] { allocate_until_stopped(clock_type::now() + memlimits::testing::event_timeout); });
    ::_exit(!r.has_value() && r.error().kind() == memlimits::limit_kind::token ? 0 : 1);
  }
  const int status = wait_for_child(child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's task was not stopped by the deadline";
  ASSERT_TRUE(eventually([&] { return t.is_set(); }, "the parent's deadline"));
}

[[noreturn]] void exit_with_a_deadline_pending() {
  memlimits::token t;
  t.set_after(1h);
  std::exit(0);  // runs the atexit handler that joins the timer thread
}

TEST(TokenDeadlineDeathTest, ExitDoesNotWaitForPendingDeadlines) {
  // A hang here is the failure (ctest's timeout ends it).
  EXPECT_EXIT(exit_with_a_deadline_pending(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
