// coroutines — memlimits' limits on C++20 coroutines. An executor of two
// threads (executor.hpp) runs 16 coroutines, each a memlimits::task of its
// own, resumed inside a task_scope of that task by whichever thread is free.
// Each holds a memlimits::guard in its frame across a few hundred co_awaits
// (handlers.cpp): ten good ones (request handlers, and a child of one) end
// with answers checked against ones worked out beforehand; the runaways are
// stopped by the limit meant to stop them (allocations, live memory, a
// deadline, a token that main sets while the coroutine runs); and two
// coroutines start a child coroutine whose task inherits their guard, so
// that the child's allocations count toward the parent's limits. Prints a row per coroutine and a
// summary; the exit code is 0 exactly when every coroutine ended as expected.
//
// Uses the public API (memlimits::memlimits), the replaced operator
// new/malloc (memlimits::hooks), and spdlog to show the library's log lines
// with --verbose.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "executor.hpp"
#include "handlers.hpp"
#include "memlimits/memlimits.hpp"

using namespace memlimits::literals;
using namespace std::chrono_literals;
using demo::clock_type;
using demo::job;
using memlimits::limit_kind;

namespace {

// The live feed is cancelled once it has passed this many co_awaits.
constexpr int cancel_after_awaits = 150;
// A coroutine resumed this many times must have been resumed by both
// threads (one resumed fewer times, such as the slow report on a loaded
// machine, may have been resumed by one only, by chance).
constexpr int both_threads_from = 40;
// The slow report's deadline.
constexpr auto slow_deadline = 250ms;

double mib(double bytes) { return bytes / (1 << 20); }

std::string with_commas(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

long long ms(clock_type::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::string outcome_of(const job& j) {
  if (!j.ended.load(std::memory_order_acquire)) return "failed";
  if (j.stopped_by) return std::string("stopped: ") + memlimits::to_string(*j.stopped_by);
  return j.out ? "ok" : "failed";
}

// The most coroutines in progress (between their first step and their end)
// at one time.
int peak_in_progress(const std::deque<job>& jobs) {
  std::vector<std::pair<clock_type::time_point, int>> events;
  for (const job& j : jobs) {
    events.emplace_back(j.started, +1);
    events.emplace_back(j.ended_at, -1);
  }
  std::sort(events.begin(), events.end());
  int now = 0, peak = 0;
  for (const auto& [when, delta] : events) peak = std::max(peak, now += delta);
  return peak;
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer: the dynamic loader's blocks, which the hooks hide from it
// (README.md, "Development").
extern "C" const char* __lsan_default_suppressions() { return "leak:ld-linux-x86-64.so\n"; }
#endif

int main(int argc, char** argv) {
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--verbose") {
      verbose = true;
    } else {
      std::printf(
          "usage: %s [--verbose]\n"
          "  --verbose   also print memlimits' own log line for each stopped guard (stderr)\n",
          argv[0]);
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  // memlimits is quiet unless the program registers a spdlog logger named
  // "memlimits" (or sets SPDLOG_LEVEL): then it logs one line when a guard
  // ends interrupted. The table says the same; --verbose shows those lines.
  if (verbose) spdlog::stderr_color_mt("memlimits")->set_level(spdlog::level::info);

  const clock_type::time_point start = clock_type::now();
  // The requests, and their answers worked out beforehand, outside any guard.
  const demo::inputs in = demo::make_inputs();

  // Every guard: at most 64 MiB allocated, 16 MiB live, and a deadline (a
  // generous one for the good coroutines: they end in well under a second
  // here, in seconds under ThreadSanitizer on a busy machine) or a token.
  const memlimits::limits normal{.allocations = 64_MiB, .memory = 16_MiB, .deadline = 60s};
  memlimits::limits slow = normal;
  slow.deadline = slow_deadline;
  memlimits::token cancel;  // set by main, below
  const memlimits::limits cancellable{.allocations = 64_MiB, .memory = 16_MiB, .token = cancel};
  const memlimits::limits inherited{};  // a child's: unused, its limits are its parent's guard's

  std::deque<job> jobs;  // a deque: jobs stay where they are
  const auto add = [&](const char* name, const char* work, const char* guard,
                       const memlimits::limits& l, std::optional<limit_kind> must_stop_by,
                       std::string expected = {}) -> job& {
    job& j = jobs.emplace_back(name, work, guard, l, must_stop_by);
    j.expected = std::move(expected);
    return j;
  };
  const std::optional<limit_kind> good = std::nullopt;
  job& orders = add("orders-csv", "parse 20,000 CSV orders, revenue by customer", "deadline 60 s",
                    normal, good, in.orders_answer);
  job& catalog = add("catalog-json", "parse a catalog of 4,000 JSON lines", "deadline 60 s", normal,
                     good, in.catalog_answer);
  job& words = add("word-index", "count 60,000 words in a hash map", "deadline 60 s", normal, good,
                   in.words_answer);
  job& primes = add("prime-sieve", "count the primes below 3,000,000, a segment a step",
                    "deadline 60 s", normal, good, in.primes_answer);
  job& fib = add("fibonacci", "F(10,000) in big integers, 50 additions a step", "deadline 60 s",
                 normal, good, in.fibonacci_answer);
  job& sorting = add("sort-merge", "sort 200 runs of 1,000 numbers, merge them", "deadline 60 s",
                     normal, good, in.sort_answer);
  job& matrix = add("matrix", "multiply 160x160 matrices, a row a step", "deadline 60 s", normal,
                    good, in.matrix_answer);
  job& base64 = add("base64", "base64 240,000 bytes and back", "deadline 60 s", normal, good,
                    in.base64_answer);
  job& log = add("log-stats", "parse 12,000 access-log lines; index the paths in a child",
                 "deadline 60 s", normal, good, in.log_answer);
  job& log_child = add("log-index", "log-stats' child: count the hits of each path",
                       "inherits log-stats", inherited, good, in.log_index_answer);
  job& upload = add("upload-endless", "parse a CSV upload that never ends", "deadline 60 s", normal,
                    limit_kind::allocations);
  job& cache = add("session-cache", "cache sessions, never evict", "deadline 60 s", normal,
                   limit_kind::memory);
  job& report = add("slow-report", "a report that waits 1 ms on its upstream for each row",
                    "deadline 250 ms", slow, limit_kind::token);
  job& feed = add("live-feed", "stream events until the client goes away", "token (main)",
                  cancellable, limit_kind::token);
  job& exporter = add("export", "export rows through a child that never stops", "deadline 60 s",
                      normal, limit_kind::allocations);
  job& export_child = add("export-rows", "export's child: format rows, batch after batch",
                          "inherits export", inherited, limit_kind::allocations);

  std::printf(
      "memlimits coroutines: %zu coroutines on an executor of %d threads, each a memlimits::task "
      "of its "
      "own,\nunder a guard held in its frame: .allocations = 64 MiB, .memory = 16 MiB, and a "
      "deadline or "
      "a token\n\n",
      jobs.size(), demo::executor::thread_count);

  std::vector<std::pair<job*, demo::co<void>>>
      top_level;  // their frames; destroyed after the executor
  bool cancelled = false;
  clock_type::time_point cancelled_at{};
  int awaits_at_cancel = 0;
  {
    demo::executor exec;  // joined at the end of this scope, before the frames and the tasks go
    top_level.emplace_back(&orders, demo::orders_csv(exec, orders, in.orders_csv));
    top_level.emplace_back(&catalog, demo::catalog_json(exec, catalog, in.catalog_ndjson));
    top_level.emplace_back(&words, demo::word_index(exec, words, in.text));
    top_level.emplace_back(&primes, demo::prime_count(exec, primes));
    top_level.emplace_back(&fib, demo::fibonacci(exec, fib));
    top_level.emplace_back(&sorting, demo::sort_merge(exec, sorting, in.numbers));
    top_level.emplace_back(&matrix, demo::matrix_product(exec, matrix));
    top_level.emplace_back(&base64, demo::base64_roundtrip(exec, base64, in.payload));
    top_level.emplace_back(&log, demo::log_stats(exec, log, log_child, in.access_log));
    top_level.emplace_back(&upload, demo::endless_upload(exec, upload));
    top_level.emplace_back(&cache, demo::session_cache(exec, cache));
    top_level.emplace_back(&report, demo::slow_report(exec, report));
    top_level.emplace_back(&feed, demo::live_feed(exec, feed));
    top_level.emplace_back(&exporter, demo::export_report(exec, exporter, export_child));
    // All at once: they run interleaved on the two threads.
    for (auto& [j, c] : top_level) exec.start(c, j->task.emplace(), j->info);

    // A safety net past every deadline: a coroutine that never ends is
    // reported before ctest's timeout.
    const clock_type::time_point give_up = clock_type::now() + 100s;
    while (!exec.wait_finished_for(1ms)) {
      // The client of the live feed goes away: main sets its token while
      // the coroutine runs or waits on a timer, on either thread.
      if (!cancelled && feed.info.awaits.load(std::memory_order_relaxed) >= cancel_after_awaits) {
        awaits_at_cancel = feed.info.awaits.load(std::memory_order_relaxed);
        cancelled_at = clock_type::now();
        cancel.set();
        cancelled = true;
      }
      if (clock_type::now() > give_up) {
        std::printf("still running after 100 s:");
        for (const job& j : jobs) {
          if (!j.ended.load(std::memory_order_acquire)) std::printf(" %s", j.name.c_str());
        }
        std::printf("\n");
        std::fflush(stdout);
        std::_Exit(1);  // the executor's threads are still resuming them
      }
    }
  }
  const clock_type::duration total = clock_type::now() - start;

  // What escaped a coroutine (nothing should), and the checks main makes.
  for (auto& [j, c] : top_level) {
    try {
      c.result();
    } catch (const std::exception& e) {
      j->problem = std::string("escaped its coroutine: ") + e.what();
    }
  }
  if (report.ended && report.ended_at - report.started < slow_deadline) {
    report.problem = "stopped before its deadline";
  }
  if (!cancelled) {
    feed.problem = "ended before main cancelled it";
  } else if (feed.ended_at < cancelled_at) {
    feed.problem = "stopped before main set its token";
  }

  std::printf("%-15s %-20s %-22s %10s %9s %9s %13s %7s\n", "coroutine", "guard", "outcome",
              "allocated", "live", "co_awaits", "resumed 0 / 1", "time");
  int ok = 0, stopped = 0, unexpected = 0, on_both = 0;
  std::uint64_t resumptions[2] = {0, 0}, awaits = 0;
  for (const job& j : jobs) {
    const int r0 = j.info.resumed[0].load(), r1 = j.info.resumed[1].load();
    const bool both = r0 > 0 && r1 > 0;
    const bool shared = both || r0 + r1 < both_threads_from;
    const bool expected = j.as_expected() && shared;
    ok += j.out.has_value() && !j.stopped_by;
    stopped += j.stopped_by.has_value();
    unexpected += !expected;
    on_both += both;
    resumptions[0] += static_cast<std::uint64_t>(r0);
    resumptions[1] += static_cast<std::uint64_t>(r1);
    awaits += static_cast<std::uint64_t>(j.info.awaits.load());
    char resumed[32];
    std::snprintf(resumed, sizeof resumed, "%d / %d", r0, r1);
    std::printf("%-15s %-20s %-22s %6.1f MiB %5.1f MiB %9d %13s %4lld ms\n", j.name.c_str(),
                j.guard_text.c_str(), outcome_of(j).c_str(),
                mib(static_cast<double>(j.used.allocated_bytes)),
                mib(static_cast<double>(j.used.memory_bytes)), j.info.awaits.load(), resumed,
                ms(j.ended_at - j.started));

    // The second line: the answer, or how far a runaway got.
    std::string detail = j.work + ": ";
    if (!j.must_stop_by && j.out) {
      detail += j.out->text +
                (j.out->key == j.expected ? " (checked)" : " (WRONG: expected " + j.expected + ")");
    } else if (&j == &upload) {
      detail += with_commas(j.count) + " rows parsed when stopped";
    } else if (&j == &cache) {
      detail += with_commas(j.count) + " sessions held when stopped";
    } else if (&j == &report) {
      detail += with_commas(j.count) + " rows in " + std::to_string(ms(j.ended_at - j.started)) +
                " ms when its deadline stopped it";
    } else if (&j == &feed) {
      detail += "main set its token after " + std::to_string(awaits_at_cancel) +
                " co_awaits; stopped " + std::to_string(ms(j.ended_at - cancelled_at)) +
                " ms later, after " + with_commas(j.count) + " events";
    } else if (&j == &exporter) {
      char share[96];
      std::snprintf(share, sizeof share, "%.1f MiB",
                    mib(static_cast<double>(export_child.used.allocated_bytes)));
      detail += "its guard stopped its child, whose " + std::string(share) + " counted toward it";
    } else if (&j == &export_child) {
      detail += with_commas(j.count) + " rows when its parent's guard stopped it";
    }
    if (j.must_stop_by) {
      detail += expected ? " (as expected)"
                         : std::string(" (UNEXPECTED: must be stopped by ") +
                               memlimits::to_string(*j.must_stop_by) + ")";
    } else if (!j.out) {
      detail += "no answer";
    }
    if (!shared) detail += " (UNEXPECTED: resumed by one thread only)";
    if (!j.must_stop_by && j.out && j.info.awaits.load() < 100)
      detail += " (UNEXPECTED: fewer than 100 co_awaits)";
    if (!j.problem.empty()) detail += " (" + j.problem + ")";
    std::printf("%-15s %s\n", "", detail.c_str());
  }

  std::printf("\n%zu coroutines: %d ok, %d stopped; %s\n", jobs.size(), ok, stopped,
              unexpected == 0 ? "all as expected"
                              : (std::to_string(unexpected) + " NOT as expected").c_str());
  std::printf(
      "%d of %zu resumed by both threads (%s resumptions on thread 0, %s on thread 1), up to %d in "
      "progress "
      "at once, %s co_awaits in all; total time %lld ms\n",
      on_both, jobs.size(), with_commas(resumptions[0]).c_str(),
      with_commas(resumptions[1]).c_str(), peak_in_progress(jobs), with_commas(awaits).c_str(),
      ms(total));
  return unexpected == 0 ? 0 : 1;
}
