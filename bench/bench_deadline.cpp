// bench/bench_deadline.cpp — how late a token deadline (token::set_after)
// stops a task: the time from the deadline to the limit_reached that stops
// the task, and the allocations the task made after the deadline had
// passed. The task allocates 64-byte blocks in a loop (one allocation every
// few tens of nanoseconds) and reads the clock at every allocation, so that
// both counts are exact for this task; a task that allocates less often is
// stopped later by the time between its allocations.
//
// What the figures are made of: the timer thread's wake-up (a condition
// variable's timed wait: the kernel's timer slack and scheduling), then the
// token's set() raising the task's alarm, then the task's next allocation.
//
// usage: bench_deadline [--trials N] [--delay-us D]   (defaults 200, 2000)
// Prints one line per statistic: median, 90th percentile and maximum.
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "memlimits/limits.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct trial {
  double late_us;                // from the deadline to the catch
  std::uint64_t blocks_after;    // allocations begun at or after the deadline
};

// Through a pointer the optimiser cannot see through, so that new and
// delete are not elided.
void* (*volatile allocate)(std::size_t) = &::operator new;
void (*volatile release)(void*) = &::operator delete;

trial run_one(std::chrono::microseconds delay) {
  memlimits::token t;
  const clock_type::time_point deadline = clock_type::now() + delay;
  t.set_at(deadline);
  std::uint64_t after = 0;
  clock_type::time_point caught{};
  auto r = memlimits::limit_with_token(t, [&] {
    try {
      for (;;) {
        if (clock_type::now() >= deadline) ++after;
        release(allocate(64));
      }
    } catch (const std::bad_alloc&) {
      caught = clock_type::now();
      throw;
    }
  });
  if (r.has_value()) std::abort();  // the loop ends only by its interruption
  return {std::chrono::duration<double, std::micro>(caught - deadline).count(), after};
}

template <class T>
void report(const char* what, std::vector<T> values, const char* unit) {
  std::sort(values.begin(), values.end());
  const auto at = [&](double q) { return values[static_cast<std::size_t>(q * (values.size() - 1))]; };
  std::printf("%-32s median %10.1f  p90 %10.1f  max %10.1f %s\n", what,
              static_cast<double>(at(0.5)), static_cast<double>(at(0.9)),
              static_cast<double>(values.back()), unit);
}

}  // namespace

int main(int argc, char** argv) {
  int trials = 200;
  long delay_us = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--trials") == 0) trials = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--delay-us") == 0) delay_us = std::atol(argv[i + 1]);
  }
  if (trials < 1 || delay_us < 1) {
    std::fprintf(stderr, "usage: %s [--trials N >= 1] [--delay-us D >= 1]\n", argv[0]);
    return 2;
  }
  // No log line per interrupted guard.
  auto quiet = std::make_shared<spdlog::logger>("memlimits",
                                                std::make_shared<spdlog::sinks::null_sink_mt>());
  quiet->set_level(spdlog::level::off);
  spdlog::register_logger(quiet);

  std::vector<double> late;
  std::vector<std::uint64_t> blocks;
  for (int i = 0; i < trials; ++i) {
    const trial t = run_one(std::chrono::microseconds(delay_us));
    late.push_back(t.late_us);
    blocks.push_back(t.blocks_after);
  }
  std::printf("token deadline %ld us, %d trials, 64-byte blocks in a loop\n", delay_us, trials);
  report("stopped after the deadline", late, "us");
  report("allocations after the deadline", blocks, "blocks");
  return 0;
}
