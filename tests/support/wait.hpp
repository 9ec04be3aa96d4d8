// tests/support/wait.hpp — waiting for an event with a bounded timeout.
//
// A test waits for the event it needs (another thread started, a flag was
// set, a child process exited); it never assumes that another thread ran
// during a yield, a sleep or a fixed number of loop iterations, since test
// machines are shared and loaded. Every wait here is bounded: a passing
// run never comes near the timeout, a broken one fails with a message
// instead of hanging until the test driver kills it.
//
// Waiting allocates nothing (no clock call, yield or sleep here does), so
// a guarded task that counts its allocations may wait; only the failure
// paths allocate.
#pragma once

#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <gtest/gtest.h>

namespace memlimits::testing {

// How long a test waits for an event before it fails: far longer than any
// event takes on a loaded machine.
inline constexpr std::chrono::seconds event_timeout{60};

// A point in time `timeout` from now, for loops that check it themselves.
inline std::chrono::steady_clock::time_point deadline_in(
    std::chrono::steady_clock::duration timeout = event_timeout) {
  return std::chrono::steady_clock::now() + timeout;
}
inline bool passed(std::chrono::steady_clock::time_point deadline) {
  return std::chrono::steady_clock::now() >= deadline;
}

// Polls `ready` until it returns true (then true) or `timeout` has passed
// (then false). The first polls spin (a few microseconds), so that a
// waiter sees an event within nanoseconds of it; then each poll yields the
// processor, and after a while sleeps a little, so that a long wait leaves
// the processor to the threads it waits for.
template <class Ready>
[[nodiscard]] bool wait_until(Ready&& ready,
                              std::chrono::steady_clock::duration timeout = event_timeout) {
  const auto deadline = deadline_in(timeout);
  for (std::uint64_t polls = 0;; ++polls) {
    if (ready()) return true;
    if (polls < 4096) continue;
    if (passed(deadline)) return ready();
    if (polls < 20000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

// wait_until for GoogleTest's assertions:
//   ASSERT_TRUE(eventually([&] { return started == 3; }, "the 3 workers to start"));
template <class Ready>
::testing::AssertionResult eventually(Ready&& ready, const char* what,
                                      std::chrono::steady_clock::duration timeout = event_timeout) {
  if (wait_until(ready, timeout)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "timed out after "
         << std::chrono::duration_cast<std::chrono::seconds>(timeout).count()
         << " s waiting for " << what;
}

// For a step of a handshake between threads, where going on after a
// timeout would race with the other side (both would touch the same
// data): a timeout ends the test process with a message. Usable on any
// thread, and in a forked child.
template <class Ready>
void await(Ready&& ready, const char* what,
           std::chrono::steady_clock::duration timeout = event_timeout) {
  if (wait_until(ready, timeout)) return;
  std::fprintf(stderr, "test failure: timed out after %lld s waiting for %s\n",
               static_cast<long long>(
                   std::chrono::duration_cast<std::chrono::seconds>(timeout).count()),
               what);
  std::abort();
}

// The status of child process `pid` (as waitpid gives it) once it has
// exited; a child still running after `timeout` is killed (SIGKILL) and
// reaped, and the failure says so. -1 if waitpid fails.
inline int wait_for_child(pid_t pid, std::chrono::steady_clock::duration timeout = event_timeout) {
  int status = 0;
  const auto reaped = [&] {
    pid_t r;
    do {
      r = ::waitpid(pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r < 0) status = -1;
    return r != 0;
  };
  if (wait_until(reaped, timeout)) return status;
  ADD_FAILURE() << "child process " << pid << " still running after "
                << std::chrono::duration_cast<std::chrono::seconds>(timeout).count()
                << " s: killed";
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace memlimits::testing
