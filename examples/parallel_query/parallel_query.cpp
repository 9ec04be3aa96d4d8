// parallel_query — a small query engine whose queries run in parallel on a
// shared thread pool, each query under one memlimits guard that covers all
// of its parts, wherever they run. Eight queries start together, each on a
// driver thread of its own: five well-behaved ones, whose answers are
// checked against single-threaded references computed beforehand, and three
// runaway ones (an exploding join, a group-by on a unique key, a nested loop
// past its deadline), each stopped as a whole by its own limit while the
// others finish on the same pool. Prints a row per query and a summary; the
// exit code is 0 exactly when every query ended as expected.
//
// Uses the public API (memlimits::memlimits) and the replaced operator
// new/malloc (memlimits::hooks); spdlog to show the library's log lines with --verbose.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "driver.hpp"
#include "memlimits/memlimits.hpp"
#include "pool.hpp"
#include "queries.hpp"
#include "tables.hpp"

using namespace memlimits::literals;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

using pq::part_state;

// What a query is, the limits it runs under, and how it must end.
struct query_spec {
  std::string name;
  std::string work;  // what it computes, in a few words
  memlimits::limits limits;
  std::function<pq::answer(pq::query_context&)> run;
  // A good query: the single-threaded reference that its answer must equal.
  std::function<pq::answer(const pq::database&)> reference = nullptr;
  // A runaway query: the limit that must stop it, the phase whose parts run
  // away (every one of them must be stopped by that limit; the parts of the
  // phases before it complete), and what its progress counts.
  std::optional<memlimits::limit_kind> stopped_by = std::nullopt;
  const char* runaway_phase = nullptr;
  std::string unit = "";
};

// A query in a run: its spec, its parts, and how it ended.
struct query {
  explicit query(query_spec s) : spec(std::move(s)) {}
  query_spec spec;
  std::optional<pq::answer> expected;  // the reference's answer (good queries)

  std::deque<pq::part_record> parts;  // appended by its driver as it submits them
  std::atomic<std::uint64_t> progress{0};

  std::optional<memlimits::limit_kind> stopped_by;  // its guard returned this interruption
  std::optional<pq::answer> out;                    // or its answer
  std::string failure;                              // or this escaped its guard
  memlimits::usage used{};
  clock_type::duration elapsed{};
  bool parts_ended = false;  // no part queued or running when its guard returned

  // Why it did not end as expected; empty if it did.
  std::string unexpected() const {
    if (!failure.empty()) return "failed: " + failure;
    if (!parts_ended) return "a part was still queued or running when its guard returned";
    if (!spec.stopped_by) {
      if (!out) return "stopped, but it is a good query";
      if (out->values != expected->values) return "wrong answer; expected " + expected->summary;
      for (const pq::part_record& p : parts) {
        if (p.state != part_state::completed) return "a part did not complete";
      }
      // Its limits must leave it 4 times what it used: a limit near what a
      // good query needs could trip by chance.
      if (spec.limits.allocations && used.allocated_bytes * 4 > *spec.limits.allocations)
        return "less than 4x headroom under its allocation limit";
      if (spec.limits.memory && used.allocated_bytes * 4 > *spec.limits.memory)
        return "less than 4x headroom under its memory limit";
      return "";
    }
    if (stopped_by != spec.stopped_by) {
      return std::string("should have been stopped by ") + memlimits::to_string(*spec.stopped_by);
    }
    std::size_t runaway_parts = 0;
    for (const pq::part_record& p : parts) {
      if (std::string_view(p.phase) == spec.runaway_phase) {
        ++runaway_parts;
        if (p.state != part_state::stopped) return "a part of its runaway phase was not stopped";
        if (p.stopped_by != *spec.stopped_by) return "a part was stopped by another limit";
      } else if (runaway_parts > 0) {
        return "a phase after the runaway one was run";
      } else if (p.state != part_state::completed) {
        return "a part before the runaway phase did not complete";
      }
    }
    if (runaway_parts != pq::query_context::parts) return "its runaway phase did not run";
    return "";
  }
};

std::vector<query_spec> all_queries() {
  using memlimits::limit_kind;
  // Well-behaved queries allocate at most a few MiB in all (the report
  // shows it; unexpected() checks that their limits leave them 4 times what
  // they used), and tens of milliseconds of work.
  const memlimits::limits statement{.allocations = 64_MiB, .memory = 32_MiB, .deadline = 30s};
  std::vector<query_spec> q;
  q.push_back({.name = "revenue-by-region",
               .work = "join orders x customers on customer_id; revenue per region",
               .limits = statement,
               .run = pq::revenue_by_region,
               .reference = pq::revenue_by_region_reference});
  q.push_back({.name = "top-customers",
               .work = "revenue per customer; sorted, the first 10",
               .limits = statement,
               .run = pq::top_customers,
               .reference = pq::top_customers_reference});
  q.push_back({.name = "count-filtered",
               .work = "orders of $50-$150 in Jul-Sep: count, total",
               .limits = statement,
               .run = pq::count_filtered,
               .reference = pq::count_filtered_reference});
  q.push_back({.name = "segment-by-month",
               .work = "orders >= $100 join customers; per segment and month",
               .limits = statement,
               .run = pq::segment_by_month,
               .reference = pq::segment_by_month_reference});
  q.push_back({.name = "largest-orders",
               .work = "orders >= $1,000, sorted by amount",
               .limits = statement,
               .run = pq::largest_orders,
               .reference = pq::largest_orders_reference});
  // Runaways. Each could not finish under its limit even with a single part:
  // a part of the join alone produces nearly 1 GiB of rows, a part of the
  // group-by holds 200 MiB of keys, a part of the nested loop compares 10^10
  // pairs.
  // Their other limits are far from what they reach before being stopped.
  const memlimits::limits join_limits{.allocations = 64_MiB, .deadline = 30s};
  const memlimits::limits group_limits{.allocations = 1_GiB, .memory = 64_MiB, .deadline = 30s};
  const memlimits::limits loop_limits{.allocations = 64_MiB, .memory = 32_MiB, .deadline = 200ms};
  q.push_back({.name = "join-on-region",
               .work = "join orders x customers on region (wrong key)",
               .limits = join_limits,
               .run = pq::join_on_region,
               .stopped_by = limit_kind::allocations,
               .runaway_phase = "probe",
               .unit = "joined rows"});
  q.push_back({.name = "group-by-invoice",
               .work = "group orders by their 4 KiB invoice text",
               .limits = group_limits,
               .run = pq::group_by_invoice,
               .stopped_by = limit_kind::memory,
               .runaway_phase = "aggregate",
               .unit = "groups"});
  q.push_back({.name = "near-duplicates",
               .work = "nested-loop self-join: orders within $1",
               .limits = loop_limits,
               .run = pq::near_duplicate_orders,
               .stopped_by = limit_kind::token,
               .runaway_phase = "nested-loop",
               .unit = "outer rows"});
  return q;
}

// The driver of one query, on its own thread: waits for the others, then
// runs the query under one guard. The guard's limits cover the parts the
// driver submits to the pool (bind_limits), and it returns one result.
void drive(query& q, const pq::database& db, pq::thread_pool& pool, std::latch& start) {
  pq::query_context context(db, pool, q.parts, q.progress);
  start.arrive_and_wait();
  const auto begin = clock_type::now();
  try {
    memlimits::result<pq::answer> r =
        memlimits::limit(q.spec.limits, [&] { return q.spec.run(context); });
    q.used = r.usage();
    if (r) {
      q.out = std::move(*r);
    } else {
      q.stopped_by = r.error().kind();
    }
  } catch (const std::exception& e) {  // anything but its own limit passes through a guard
    q.failure = e.what();
  }
  q.elapsed = clock_type::now() - begin;
  q.parts_ended = true;
  for (const pq::part_record& p : q.parts) {
    const part_state s = p.state;
    if (s == part_state::queued || s == part_state::running) q.parts_ended = false;
  }
}

// ---- the report ------------------------------------------------------------

std::string mib(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return text;
}

std::string duration(clock_type::duration d) {
  const double ms = std::chrono::duration<double, std::milli>(d).count();
  char text[32];
  std::snprintf(text, sizeof text, ms < 10'000 ? "%.0f ms" : "%.0f s", ms < 10'000 ? ms : ms / 1000);
  return text;
}

std::string limits_text(const memlimits::limits& l) {
  const auto bytes = [](std::uint64_t n) {
    return n % (1_GiB) == 0 ? std::to_string(n / 1_GiB) + " GiB" : std::to_string(n / 1_MiB) + " MiB";
  };
  std::string text;
  text += l.allocations ? bytes(*l.allocations) : "-";
  text += " / ";
  text += l.memory ? bytes(*l.memory) : "-";
  text += " / ";
  text += l.deadline ? duration(*l.deadline) : "-";
  return text;
}

// "build 4 done, probe 4 stopped"
std::string parts_text(const query& q) {
  std::vector<std::string> phases;
  std::map<std::string, std::map<std::string, int>> counts;
  for (const pq::part_record& p : q.parts) {
    if (!counts.contains(p.phase)) phases.push_back(p.phase);
    const char* state = "?";
    switch (p.state.load()) {
      case part_state::queued: state = "queued"; break;
      case part_state::running: state = "running"; break;
      case part_state::completed: state = "done"; break;
      case part_state::stopped: state = "stopped"; break;
      case part_state::failed: state = "failed"; break;
    }
    ++counts[p.phase][state];
  }
  std::string text;
  for (const std::string& phase : phases) {
    for (const auto& [state, n] : counts[phase]) {
      if (!text.empty()) text += ", ";
      text += phase + " " + std::to_string(n) + " " + state;
    }
  }
  return text;
}

constexpr const char* row_format = "%-17s %-21s %10s %12s %8s  %-31s %s\n";

void print_row(const query& q) {
  const std::string outcome = q.stopped_by ? std::string("stopped: ") + memlimits::to_string(*q.stopped_by)
                              : q.out      ? std::string("ok")
                                           : std::string("failed");
  const std::string why = q.unexpected();
  std::string note;
  if (!q.failure.empty()) {
    note = q.failure;
  } else if (q.out) {
    note = q.out->summary;
  } else {
    note = pq::with_commas(q.progress.load()) + " " + q.spec.unit + " when stopped";
  }
  note += why.empty() ? (q.spec.stopped_by ? " (as expected)" : " (checked)") : " -- UNEXPECTED: " + why;
  std::printf(row_format, q.spec.name.c_str(), outcome.c_str(),
              mib(static_cast<double>(q.used.allocated_bytes)).c_str(),
              mib(static_cast<double>(q.used.memory_bytes)).c_str(), duration(q.elapsed).c_str(),
              parts_text(q).c_str(), note.c_str());
}

// After the queries: each worker of the pool takes a job and all of them
// are running at once, so none was lost or is stuck in an interrupted part.
unsigned roll_call(pq::thread_pool& pool) {
  std::mutex mutex;
  std::condition_variable all_here;
  unsigned here = 0;
  std::vector<std::future<void>> calls;
  for (unsigned i = 0; i < pool.size(); ++i) {
    calls.push_back(pool.submit([&] {
      std::unique_lock lock(mutex);
      ++here;
      all_here.notify_all();
      all_here.wait_for(lock, 5s, [&] { return here == pool.size(); });
    }));
  }
  for (auto& call : calls) {
    if (call.wait_for(10s) != std::future_status::ready) {
      // A worker is missing: its call is still queued, and would use the
      // locals of this frame. Nothing to do but report it and leave.
      std::printf("pool: a worker did not answer; giving up\n");
      std::fflush(stdout);
      std::_Exit(1);
    }
  }
  return here;
}

}  // namespace

// LeakSanitizer recognises the dynamic loader's blocks by their caller, which
// the hooks hide (README.md, "Development"): they are the loader's, not ours.
#if defined(__SANITIZE_ADDRESS__)
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
          "  --verbose   also print memlimits' own log line for each stopped query (stderr)\n",
          argv[0]);
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  // memlimits is quiet unless the program registers a spdlog logger named
  // "memlimits" (or sets SPDLOG_LEVEL): then it logs one line when a guard
  // ends interrupted. The table says the same; --verbose shows those lines.
  if (verbose) spdlog::stderr_color_mt("memlimits")->set_level(spdlog::level::info);

  const auto start = clock_type::now();
  constexpr unsigned workers = 4;

  // The tables, and the reference answers: single-threaded, outside any
  // guard, before any query starts.
  const pq::database db = pq::generate(200'000, 20'000, 2024);
  std::deque<query> queries;  // a deque: queries stay where their drivers use them
  for (query_spec& spec : all_queries()) queries.emplace_back(std::move(spec));
  const auto reference_start = clock_type::now();
  for (query& q : queries) {
    if (q.spec.reference) q.expected = q.spec.reference(db);
  }
  const auto reference_time = clock_type::now() - reference_start;

  std::printf(
      "memlimits parallel_query: %zu queries started together, each on a driver thread of its "
      "own under one guard; their parts share a pool of %u threads\n\n",
      queries.size(), workers);
  std::printf(
      "tables: orders %s rows, customers %s rows; reference answers computed single-threaded "
      "in %s\n\n",
      pq::with_commas(db.orders.size()).c_str(), pq::with_commas(db.customers.size()).c_str(),
      duration(reference_time).c_str());
  std::printf("%-17s %-27s %-21s %s\n", "query", "allocations/memory/deadline", "must end", "work");
  for (const query& q : queries) {
    const std::string must = q.spec.stopped_by
                                 ? std::string("stopped: ") + memlimits::to_string(*q.spec.stopped_by)
                                 : std::string("ok, checked");
    std::printf("%-17s %-27s %-21s %s\n", q.spec.name.c_str(), limits_text(q.spec.limits).c_str(),
                must.c_str(), q.spec.work.c_str());
  }

  pq::thread_pool pool(workers);  // destroyed before the queries and tables it uses
  {
    std::latch go(static_cast<std::ptrdiff_t>(queries.size()));
    std::vector<std::jthread> drivers;
    for (query& q : queries) {
      drivers.emplace_back([&q, &db, &pool, &go] { drive(q, db, pool, go); });
    }
  }  // joins the drivers

  std::printf("\n");
  std::printf(row_format, "query", "outcome", "allocated", "live at exit", "time", "parts",
              "answer");
  std::size_t ok = 0, stopped = 0, unexpected = 0, parts = 0, parts_stopped = 0;
  for (const query& q : queries) {
    print_row(q);
    ok += q.out.has_value();
    stopped += q.stopped_by.has_value();
    unexpected += !q.unexpected().empty();
    for (const pq::part_record& p : q.parts) {
      ++parts;
      parts_stopped += p.state == part_state::stopped;
    }
  }
  const unsigned answered = roll_call(pool);

  std::printf("\n%zu queries: %zu ok, %zu stopped; ", queries.size(), ok, stopped);
  if (unexpected == 0 && answered == pool.size()) {
    std::printf("all as expected\n");
  } else {
    std::printf("%zu NOT as expected\n", unexpected);
  }
  std::printf("pool: %zu parts run, %zu stopped by their query's limit; %u of %u workers serving "
              "after them; total time %s\n",
              parts, parts_stopped, answered, pool.size(), duration(clock_type::now() - start).c_str());
  return unexpected == 0 && answered == pool.size() ? 0 : 1;
}
