// worker_pool — memlimits' main demo: a server's thread pool runs a mix of
// well-behaved and runaway jobs, each under a limit guard (allocations,
// live memory, the process-wide memory limit, a cancellation token with the
// job's deadline). Runaway jobs are stopped at an
// allocation by memlimits::limit_reached, their guard returns an error,
// their memory is given back, and the pool goes on serving. Prints a row per
// job as it finishes, then a summary; the exit code is 0 exactly when every
// job ended as expected: the good ones with the right answers, the runaway
// ones stopped by the limit meant to stop them.
//
// Uses the public API (memlimits::memlimits) and the replaced operator
// new/malloc (memlimits::hooks); spdlog to show the library's log lines with --verbose.
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "memlimits/memlimits.hpp"
#include "pool.hpp"
#include "workloads.hpp"

using namespace memlimits::literals;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

// ---- jobs ------------------------------------------------------------------

// What a job computed: a checksum of its answer, compared with the one the
// demo worked out from its input, and the answer in words.
struct answer {
  std::uint64_t checksum = 0;
  std::string summary;
};

// What a job is: its work, the guard it runs under, and how it must end.
struct job_spec {
  std::string name;
  std::string work;                      // what it does, in a few words
  memlimits::limit_kind guard{};         // the guard it runs under
  std::uint64_t limit = 0;               // bytes: allocations and memory guards
  std::chrono::milliseconds deadline{};  // token guard: when its token is set
  std::string unit;                      // what its progress counts, e.g. "rows held"
  std::function<answer(demo::progress&)> run;
  // A good job must return an answer with this checksum. A runaway job (no
  // checksum) must be stopped by its own guard; `safety_cap` is the demo's
  // safety net (demo::progress), far beyond where the limit stops it.
  std::optional<std::uint64_t> checksum = std::nullopt;
  std::uint64_t safety_cap = UINT64_MAX;
};

// A job in the pool: its spec, and how far it got.
struct job {
  explicit job(job_spec s) : spec(std::move(s)) { seen.cap = spec.safety_cap; }
  job_spec spec;
  demo::progress seen;
};

// How a job ended.
struct finished {
  const job* which = nullptr;
  std::optional<memlimits::limit_kind> stopped_by;  // its guard returned this interruption
  std::optional<answer> out;                        // or it returned this
  std::string failure;                              // or this escaped the guard
  memlimits::usage used{};
  clock_type::duration elapsed{};

  bool as_expected() const {
    if (!which->spec.checksum) return stopped_by == which->spec.guard;
    return out && out->checksum == *which->spec.checksum;
  }
};

// Runs j's work under j's guard. The guard turns the job's interruption
// into an error value; the usage comes with either outcome.
memlimits::result<answer> run_guarded(job& j) {
  auto task = [&j] { return j.spec.run(j.seen); };
  switch (j.spec.guard) {
    case memlimits::limit_kind::allocations:
      return memlimits::limit_allocations(j.spec.limit, task);
    case memlimits::limit_kind::memory:
      return memlimits::limit_memory(j.spec.limit, task);
    case memlimits::limit_kind::global_memory:
      return memlimits::limit_global_memory(task);
    case memlimits::limit_kind::token: {
      memlimits::token cancel;  // set by memlimits' timer thread at the deadline
      cancel.set_after(j.spec.deadline);
      return memlimits::limit_with_token(cancel, task);
    }
  }
  throw std::logic_error("unknown guard");
}

std::string with_commas(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string money(std::uint64_t cents) {
  return "$" + with_commas(cents / 100) + "." + std::to_string(cents % 100 / 10) +
         std::to_string(cents % 10);
}

using demo::combine;

// Phase 1: each job under a limit of its own. Good jobs and runaway ones in
// pairs: the same kind of work under the same guard.
std::vector<job_spec> per_task_jobs(const demo::fixtures& f) {
  using memlimits::limit_kind;
  std::vector<job_spec> jobs;

  jobs.push_back({.name = "csv-orders",
                  .work = "parse 40,000 CSV orders",
                  .guard = limit_kind::allocations,
                  .limit = 32_MiB,
                  .unit = "rows",
                  .run =
                      [&f](demo::progress& seen) {
                        demo::text_chunks csv(f.orders_csv);
                        const demo::orders_total t = demo::total_orders(csv, seen);
                        return answer{
                            combine(t.rows, t.revenue_cents),
                            with_commas(t.rows) + " rows, revenue " + money(t.revenue_cents)};
                      },
                  .checksum = combine(f.order_count, f.revenue_cents)});
  jobs.push_back({.name = "csv-endless",
                  .work = "parse a CSV upload that never ends",
                  .guard = limit_kind::allocations,
                  .limit = 32_MiB,
                  .unit = "rows held",
                  .run =
                      [&f](demo::progress& seen) {
                        demo::endless_chunks csv = demo::endless_orders_csv(f.customer_count);
                        const demo::orders_total t = demo::total_orders(csv, seen);
                        return answer{t.rows, with_commas(t.rows) + " rows"};
                      },
                  .safety_cap = 1'500'000});

  jobs.push_back({.name = "json-catalog",
                  .work = "parse a 6,000-item JSON catalog",
                  .guard = limit_kind::memory,
                  .limit = 48_MiB,
                  .unit = "nodes",
                  .run =
                      [&f](demo::progress& seen) {
                        demo::text_chunks json(f.catalog_json);
                        const demo::catalog_answer c = demo::summarize_catalog(json, seen);
                        return answer{combine(combine(c.items, c.in_stock), c.in_stock_value_cents),
                                      with_commas(c.items) + " items, " + with_commas(c.in_stock) +
                                          " in stock worth " + money(c.in_stock_value_cents)};
                      },
                  .checksum = combine(combine(f.catalog.items, f.catalog.in_stock),
                                      f.catalog.in_stock_value_cents)});
  jobs.push_back({.name = "json-nested",
                  .work = "parse JSON nested without end",
                  .guard = limit_kind::memory,
                  .limit = 48_MiB,
                  .unit = "nodes held",
                  .run =
                      [](demo::progress& seen) {
                        demo::endless_chunks json = demo::endless_nested_json();
                        const demo::json_document doc = demo::parse_json(json, seen);
                        return answer{doc.nodes.size(), with_commas(doc.nodes.size()) + " nodes"};
                      },
                  .safety_cap = 8'000'000});

  jobs.push_back({.name = "sort-words",
                  .work = "sort and dedupe 100,000 words",
                  .guard = limit_kind::allocations,
                  .limit = 64_MiB,
                  .unit = "words",
                  .run =
                      [&f](demo::progress& seen) {
                        const demo::sorted_words s = demo::sort_words(f.words_to_sort, seen);
                        return answer{combine(s.distinct, s.checksum),
                                      with_commas(s.distinct) + " distinct words, in order"};
                      },
                  .checksum = combine(f.sorted_distinct, f.sorted_checksum)});
  jobs.push_back({.name = "leaderboard",
                  .work = "keep a growing vector sorted",
                  .guard = limit_kind::allocations,
                  .limit = 64_MiB,
                  .unit = "entries held",
                  .run =
                      [](demo::progress& seen) {
                        demo::keep_sorted_leaderboard(seen);
                        return answer{};
                      },
                  .safety_cap = 4'000'000});

  jobs.push_back({.name = "word-index",
                  .work = "count 250,000 words in a map",
                  .guard = limit_kind::memory,
                  .limit = 32_MiB,
                  .unit = "words",
                  .run =
                      [&f](demo::progress& seen) {
                        const demo::words_answer w = demo::index_words(f.text, seen);
                        return answer{combine(combine(w.total, w.distinct), w.most_frequent),
                                      with_commas(w.total) + " words, " + with_commas(w.distinct) +
                                          " distinct, the commonest " +
                                          with_commas(w.most_frequent) + " times"};
                      },
                  .checksum = combine(combine(f.text_words.total, f.text_words.distinct),
                                      f.text_words.most_frequent)});
  jobs.push_back({.name = "session-cache",
                  .work = "cache sessions, never evict",
                  .guard = limit_kind::memory,
                  .limit = 32_MiB,
                  .unit = "sessions held",
                  .run =
                      [](demo::progress& seen) {
                        demo::cache_sessions_forever(seen);
                        return answer{};
                      },
                  .safety_cap = 2'000'000});

  jobs.push_back({.name = "dedupe-urls",
                  .work = "dedupe 50,000 URLs in a hash set",
                  .guard = limit_kind::token,
                  .deadline = 10s,
                  .unit = "URLs",
                  .run =
                      [&f](demo::progress& seen) {
                        const std::uint64_t n = demo::count_distinct_urls(f.urls, seen);
                        return answer{n, with_commas(n) + " distinct URLs"};
                      },
                  .checksum = f.distinct_urls});
  jobs.push_back({.name = "nonce-search",
                  .work = "proof-of-work hash search",
                  .guard = limit_kind::token,
                  .deadline = 300ms,
                  .unit = "candidates tried",
                  .run = [](demo::progress& seen) {
                    // Its safety net is a time limit of its own.
                    const std::uint64_t nonce = demo::search_nonce(seen);
                    return answer{nonce, "nonce " + std::to_string(nonce)};
                  }});
  return jobs;
}

// Phase 2, under the process-wide limit: a runaway join, then a good one.
std::vector<job_spec> global_limit_jobs(const demo::fixtures& f) {
  std::vector<job_spec> jobs;
  jobs.push_back({.name = "join-explode",
                  .work = "join orders x customers on region",
                  .guard = memlimits::limit_kind::global_memory,
                  .unit = "output rows held",
                  .run =
                      [&f](demo::progress& seen) {
                        const std::uint64_t rows = demo::join_on_region(f, seen);
                        return answer{rows, with_commas(rows) + " rows"};
                      },
                  .safety_cap = 8'000'000});
  jobs.push_back({.name = "report-join",
                  .work = "join orders with customers by id",
                  .guard = memlimits::limit_kind::global_memory,
                  .unit = "orders",
                  .run =
                      [&f](demo::progress& seen) {
                        const demo::region_revenue r = demo::revenue_by_region(f, seen);
                        return answer{combine(r.regions, r.revenue_cents),
                                      "revenue " + money(r.revenue_cents) + " over " +
                                          std::to_string(r.regions) + " regions"};
                      },
                  .checksum = combine(f.region_names.size(), f.revenue_cents)});
  return jobs;
}

// ---- where the jobs' outcomes meet the main thread -------------------------

class outcome_board {
 public:
  struct running_job {
    std::thread::id thread;
    const job* which;
    clock_type::time_point since;
  };

  void started(const job& j) {
    std::lock_guard lock(mutex_);
    running_.push_back({std::this_thread::get_id(), &j, clock_type::now()});
  }
  void done(finished f) {
    {
      std::lock_guard lock(mutex_);
      std::erase_if(running_, [&](const running_job& r) { return r.which == f.which; });
      done_.push_back(std::move(f));
    }
    changed_.notify_all();
  }
  // The jobs that finished since the last call; waits up to `timeout` for one.
  std::vector<finished> wait(clock_type::duration timeout) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return !done_.empty(); });
    std::vector<finished> out(std::make_move_iterator(done_.begin()),
                              std::make_move_iterator(done_.end()));
    done_.clear();
    return out;
  }
  std::vector<running_job> running() {
    std::lock_guard lock(mutex_);
    return running_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<finished> done_;
  std::vector<running_job> running_;
};

// What a worker runs for each job.
void serve(job& j, outcome_board& board) {
  board.started(j);
  finished f;
  f.which = &j;
  const auto start = clock_type::now();
  try {
    memlimits::result<answer> r = run_guarded(j);
    f.used = r.usage();
    if (r) {
      f.out = std::move(*r);
    } else {
      f.stopped_by = r.error().kind();
    }
  } catch (const std::exception& e) {  // anything but its own limit passes through a guard
    f.failure = e.what();
  }
  f.elapsed = clock_type::now() - start;
  board.done(std::move(f));
}

// ---- the report ------------------------------------------------------------

struct terminal {
  bool tty = false;
  bool color = false;
  int width = 100;

  const char* paint(const char* code) const { return color ? code : ""; }
  const char* green() const { return paint("\033[32m"); }
  const char* yellow() const { return paint("\033[33m"); }
  const char* red() const { return paint("\033[1;31m"); }
  const char* dim() const { return paint("\033[2m"); }
  const char* bold() const { return paint("\033[1m"); }
  const char* reset() const { return paint("\033[0m"); }
  // Erases the progress line, if there is one.
  void clear_line() const {
    if (tty) std::fputs("\r\033[K", stdout);
  }
};

std::string bytes(double n) {
  char text[32];
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int unit = 0;
  while (std::abs(n) >= 1024 && unit < 3) {
    n /= 1024;
    ++unit;
  }
  const bool whole = n == std::floor(n);  // limits: "32 MiB", not "32.0 MiB"
  std::snprintf(text, sizeof text, unit == 0 || whole ? "%.0f %s" : "%.1f %s", n, units[unit]);
  return text;
}

std::string seconds(clock_type::duration d) {
  const double s = std::chrono::duration<double>(d).count();
  char text[32];
  if (s < 1) {
    std::snprintf(text, sizeof text, "%.0f ms", s * 1000);
  } else {
    std::snprintf(text, sizeof text, s == std::floor(s) ? "%.0f s" : "%.2f s", s);
  }
  return text;
}

std::string guard_text(const job_spec& j) {
  switch (j.guard) {
    case memlimits::limit_kind::allocations:
      return "limit_allocations(" + bytes(static_cast<double>(j.limit)) + ")";
    case memlimits::limit_kind::memory:
      return "limit_memory(" + bytes(static_cast<double>(j.limit)) + ")";
    case memlimits::limit_kind::global_memory:
      return "limit_global_memory()";
    case memlimits::limit_kind::token:
      return "limit_with_token(" + seconds(j.deadline) + ")";
  }
  return "?";
}

constexpr const char* row_format = "%-14s %-26s %-23s %10s %12s %8s\n";

void print_header(const terminal& term) {
  std::printf("%s", term.bold());
  std::printf(row_format, "job", "guard", "outcome", "allocated", "live at exit", "time");
  std::printf("%s", term.reset());
}

void print_row(const terminal& term, const finished& f) {
  const job_spec& j = f.which->spec;
  std::string outcome = f.stopped_by
                            ? std::string("stopped: ") + memlimits::to_string(*f.stopped_by)
                        : f.out ? std::string("ok")
                                : std::string("failed");
  const bool expected = f.as_expected();
  const char* colour = !expected ? term.red() : f.stopped_by ? term.yellow() : term.green();
  term.clear_line();
  std::printf("%-14s %-26s %s%-23s%s %10s %12s %8s\n", j.name.c_str(), guard_text(j).c_str(),
              colour, outcome.c_str(), term.reset(),
              bytes(static_cast<double>(f.used.allocated_bytes)).c_str(),
              bytes(static_cast<double>(f.used.memory_bytes)).c_str(), seconds(f.elapsed).c_str());

  // The detail line: what the job did, and what came of it.
  std::string detail = j.work + ": ";
  if (!f.failure.empty()) {
    detail += f.failure;
  } else if (f.stopped_by) {
    detail += with_commas(f.which->seen.items.load()) + " " + j.unit + " when stopped";
  } else if (f.out) {
    detail += f.out->summary;
  }
  if (expected) {
    detail += j.checksum ? " (checked)" : " (as expected)";
    std::printf("%s%15s%s%s\n", term.dim(), "", detail.c_str(), term.reset());
  } else {
    detail += !j.checksum ? " -- UNEXPECTED: should have been stopped by " +
                                std::string(memlimits::to_string(j.guard))
                          : " -- UNEXPECTED: wrong or missing answer";
    std::printf("%s%15s%s%s\n", term.red(), "", detail.c_str(), term.reset());
  }
  std::fflush(stdout);
}

// One line, redrawn in place on a terminal: the jobs running now and how
// close each is to its limit, from memlimits::tasks() (any thread may ask).
void print_progress(const terminal& term, outcome_board& board, std::size_t done,
                    std::size_t total) {
  if (!term.tty) return;
  const std::vector<outcome_board::running_job> running = board.running();
  const std::vector<memlimits::task_info> tasks = memlimits::tasks();
  std::string line = "  [" + std::to_string(done) + "/" + std::to_string(total) + " done]";
  for (const auto& r : running) {
    line += "  " + r.which->spec.name + " ";
    const auto t = std::find_if(tasks.begin(), tasks.end(), [&](const memlimits::task_info& i) {
      return i.thread == r.thread;
    });
    if (t == tasks.end() || t->contexts.empty()) continue;
    const memlimits::context_info& c = t->contexts.front();
    switch (c.kind) {
      case memlimits::limit_kind::allocations:
      case memlimits::limit_kind::memory:
        line += bytes(static_cast<double>(c.used)) + "/" + bytes(static_cast<double>(c.limit));
        break;
      case memlimits::limit_kind::global_memory:
        line += "heap " + bytes(static_cast<double>(c.used)) + "/" +
                bytes(static_cast<double>(c.limit));
        break;
      case memlimits::limit_kind::token:
        line += seconds(clock_type::now() - r.since) + "/" + seconds(r.which->spec.deadline);
        break;
    }
  }
  if (static_cast<int>(line.size()) >= term.width)
    line.resize(static_cast<std::size_t>(std::max(term.width - 1, 0)));
  term.clear_line();
  std::printf("%s%s%s", term.dim(), line.c_str(), term.reset());
  std::fflush(stdout);
}

// Submits the jobs, prints each as it finishes, and returns how they ended.
std::vector<finished> run_phase(const std::vector<job*>& jobs, demo::thread_pool& pool,
                                outcome_board& board, const terminal& term) {
  for (job* j : jobs) pool.submit([j, &board] { serve(*j, board); });
  std::vector<finished> all;
  while (all.size() < jobs.size()) {
    for (finished& f : board.wait(100ms)) {
      print_row(term, f);
      all.push_back(std::move(f));
    }
    if (all.size() < jobs.size()) print_progress(term, board, all.size(), jobs.size());
  }
  term.clear_line();
  return all;
}

double resident_bytes() {
  unsigned long pages = 0, resident = 0;
  if (std::FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%lu %lu", &pages, &resident) != 2) resident = 0;
    std::fclose(statm);
  }
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

terminal detect_terminal(bool allow_color) {
  terminal term;
  term.tty = isatty(STDOUT_FILENO) != 0;
  const char* term_name = std::getenv("TERM");
  term.color = allow_color && term.tty && std::getenv("NO_COLOR") == nullptr &&
               !(term_name != nullptr && std::strcmp(term_name, "dumb") == 0);
  winsize size{};
  if (term.tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0)
    term.width = size.ws_col;
  return term;
}

}  // namespace

// LeakSanitizer recognises the dynamic loader's blocks by their caller, which
// the hooks hide (README.md, "Development"): they are the loader's, not ours.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __lsan_default_suppressions() { return "leak:ld-linux-x86-64.so\n"; }
#endif

int main(int argc, char** argv) {
  bool verbose = false;
  bool allow_color = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--verbose") {
      verbose = true;
    } else if (arg == "--no-color") {
      allow_color = false;
    } else {
      std::printf(
          "usage: %s [--verbose] [--no-color]\n"
          "  --verbose   also print memlimits' own log line for each stopped job (stderr)\n",
          argv[0]);
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  // memlimits is quiet unless the program registers a spdlog logger named
  // "memlimits" (or sets SPDLOG_LEVEL): then it logs one line when a guard
  // ends interrupted. The table says the same; --verbose shows those lines.
  if (verbose) spdlog::stderr_color_mt("memlimits")->set_level(spdlog::level::info);

  const terminal term = detect_terminal(allow_color);
  const auto start = clock_type::now();
  constexpr unsigned workers = 4;

  // The inputs, built before any guard: the requests the server receives.
  const demo::fixtures inputs = demo::make_fixtures();
  std::deque<job> phase1, phase2;  // a deque: jobs stay where they are
  for (job_spec& spec : per_task_jobs(inputs)) phase1.emplace_back(std::move(spec));
  for (job_spec& spec : global_limit_jobs(inputs)) phase2.emplace_back(std::move(spec));

  std::printf(
      "%smemlimits worker_pool%s: %zu jobs on a pool of %u threads, each job under a limit "
      "guard\n\n",
      term.bold(), term.reset(), phase1.size() + phase2.size(), workers);
  std::vector<finished> outcomes;
  outcome_board board;
  demo::thread_pool pool(workers);  // destroyed first: its jobs use the others

  std::printf(
      "phase 1: %zu jobs, each under a limit of its own; good and runaway ones side by side\n",
      phase1.size());
  print_header(term);
  std::vector<job*> all_at_once;
  for (job& j : phase1) all_at_once.push_back(&j);
  for (finished& f : run_phase(all_at_once, pool, board, term)) {
    outcomes.push_back(std::move(f));
  }

  // The global limit compares the whole process's memory with one number,
  // so phase 2 is sequenced to be deterministic: the limit is set relative
  // to the heap now, the runaway job runs alone under it (nothing else
  // pushes the heap up), then a good job runs under the same limit once the
  // runaway's memory is back. Only tasks under limit_global_memory are
  // checked against it.
  const std::uint64_t heap_now = memlimits::global_memory_usage();
  memlimits::set_global_memory_limit(static_cast<std::int64_t>(heap_now + 64_MiB));
  std::printf("\nphase 2: set_global_memory_limit(heap now %s + 64 MiB = %s); one job at a time\n",
              bytes(static_cast<double>(heap_now)).c_str(),
              bytes(static_cast<double>(heap_now + 64_MiB)).c_str());
  print_header(term);
  for (job& j : phase2) {
    for (finished& f : run_phase({&j}, pool, board, term)) outcomes.push_back(std::move(f));
  }
  memlimits::set_global_memory_limit(-1);

  std::size_t ok = 0, stopped = 0, unexpected = 0;
  for (const finished& f : outcomes) {
    ok += f.out.has_value();
    stopped += f.stopped_by.has_value();
    unexpected += !f.as_expected();
  }
  std::printf("\n%s%zu jobs: %zu ok, %zu stopped", term.bold(), outcomes.size(), ok, stopped);
  if (unexpected == 0) {
    std::printf("; %sall as expected%s\n", term.green(), term.reset());
  } else {
    std::printf("; %s%zu NOT as expected%s\n", term.red(), unexpected, term.reset());
  }
  std::printf("process still serving: %u workers idle, heap %s (estimate), RSS %s; total time %s\n",
              pool.size(), bytes(static_cast<double>(memlimits::global_memory_usage())).c_str(),
              bytes(resident_bytes()).c_str(), seconds(clock_type::now() - start).c_str());
  return unexpected == 0 ? 0 : 1;
}
