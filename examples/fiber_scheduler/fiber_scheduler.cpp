// fiber_scheduler — limits that follow fibers: a small M:N scheduler runs
// 1000 memlimits::fiber jobs on 2 threads. A job yields now and then (as it
// would on I/O) and is resumed by whichever thread is free, so most jobs run
// on both threads. Each job runs under three nested guards of its own:
//   limit_allocations(16 MiB)  — bytes allocated, exact;
//   limit_memory(4 MiB)        — live bytes, sampled;
//   limit_with_token(deadline) — the scheduler sets the token when the job
//                                has been resumed 300 times.
// Most jobs do real work (parse CSV, sort, index words) and check their
// results; a few run away: "leak" keeps what it allocates (stopped by the
// memory limit), "churn" allocates and frees forever (stopped by the
// allocation limit), "stuck" never finishes and never allocates, but calls
// memlimits::poll() (cancelled by its deadline token). The other jobs, and
// the process, go on. The output lists each stopped job as it stops, then a
// table by kind; the exit status is 0 only if every job ended as expected.
// (The library also logs one line per interrupted guard to standard error;
// SPDLOG_LEVEL=memlimits=warn silences it.)
//
// Why the sampled memory limit cannot misfire here: at the default rate
// (1e-4 per 8-byte word) the 4 MiB limit trips at the 53rd live sample. A
// good job keeps at most about 200 KiB live (2.6 samples expected), so a
// false trip would need 53 or more where 2.6 are expected: below 1e-40 per
// job. "leak" gets 210 samples expected by the time its allocation budget
// runs out, so it is stopped by the memory limit first except with
// probability below 1e-30 (stats/README.md has the laws).
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "memlimits/fiber.hpp"
#include "memlimits/memlimits.hpp"

namespace {

using namespace memlimits::literals;

constexpr int job_count = 1000;
constexpr int worker_count = 2;
constexpr int deadline_resumes = 300;
constexpr std::uint64_t allocation_budget = 16_MiB;
constexpr std::uint64_t memory_budget = 4_MiB;

enum class kind { parse, sort, index, leak, churn, stuck };
constexpr std::array<const char*, 6> kind_names{"parse", "sort", "index", "leak", "churn", "stuck"};

kind kind_of(int id) {
  if (id % 50 == 7) return kind::leak;
  if (id % 50 == 23) return kind::churn;
  if (id % 100 == 42) return kind::stuck;
  return static_cast<kind>(id % 3);
}

struct job {
  int id = 0;
  kind what = kind::parse;
  memlimits::fiber body;
  memlimits::fiber scheduler;  // the worker that runs it now, while it runs
  memlimits::token deadline;
  int resumes = 0;
  unsigned ran_on = 0;  // a bit per worker thread

  // Outcome.
  bool done = false;
  bool stopped = false;
  memlimits::limit_kind stopped_by = memlimits::limit_kind::allocations;
  bool result_ok = false;
  memlimits::usage used;

  // Back to the scheduler; returns when resumed, maybe by another thread.
  void yield() { scheduler = std::move(scheduler).resume(); }
};

// --- the jobs' work ---------------------------------------------------------

// Sums the third column of a generated CSV table, parsed field by field.
bool parse_csv(job& j) {
  std::mt19937 rng(static_cast<unsigned>(j.id));
  std::uniform_int_distribution<int> amount(1, 1000);
  std::string text;
  long long expected = 0;
  for (int row = 0; row < 1500; ++row) {
    const int a = amount(rng);
    expected += a;
    text += "row" + std::to_string(row) + ",item-" + std::to_string(a % 17) + "," +
            std::to_string(a) + "\n";
    if (row % 250 == 0) j.yield();
  }
  long long sum = 0;
  std::istringstream in(text);
  std::string line;
  for (int row = 0; std::getline(in, line); ++row) {
    std::vector<std::string> fields;
    std::size_t start = 0;
    for (std::size_t comma; (comma = line.find(',', start)) != std::string::npos; start = comma + 1) {
      fields.push_back(line.substr(start, comma - start));
    }
    fields.push_back(line.substr(start));
    sum += std::stoll(fields.at(2));
    if (row % 250 == 0) j.yield();
  }
  return sum == expected;
}

// Sorts 20000 numbers in chunks, merges them, and checks the order.
bool sort_numbers(job& j) {
  std::mt19937_64 rng(static_cast<std::uint64_t>(j.id));
  std::vector<std::vector<std::uint64_t>> chunks(8);
  for (auto& chunk : chunks) {
    for (int i = 0; i < 2500; ++i) chunk.push_back(rng());
    std::sort(chunk.begin(), chunk.end());
    j.yield();
  }
  std::vector<std::uint64_t> all;
  for (auto& chunk : chunks) {
    std::vector<std::uint64_t> merged;
    std::merge(all.begin(), all.end(), chunk.begin(), chunk.end(), std::back_inserter(merged));
    all = std::move(merged);
  }
  return all.size() == 20000 && std::is_sorted(all.begin(), all.end());
}

// Counts the words of a generated text; the count of each is known.
bool index_words(job& j) {
  static constexpr std::array<const char*, 8> words{"alpha", "beta",  "gamma", "delta",
                                                    "omega", "sigma", "kappa", "lambda"};
  std::unordered_map<std::string, int> counts;
  std::array<int, words.size()> expected{};
  std::mt19937 rng(static_cast<unsigned>(j.id));
  for (int i = 0; i < 6000; ++i) {
    const std::size_t w = rng() % words.size();
    ++expected[w];
    ++counts[words[w]];
    if (i % 1000 == 0) j.yield();
  }
  for (std::size_t w = 0; w < words.size(); ++w) {
    if (counts[words[w]] != expected[w]) return false;
  }
  return true;
}

// Keeps everything: stopped by the memory limit.
bool leak(job& j) {
  std::map<int, std::string> kept;
  for (int i = 0;; ++i) {
    kept.emplace(i, std::string(100, 'x'));
    if (i % 1000 == 0) j.yield();
  }
}

// Allocates and frees, forever: stopped by the allocation limit.
bool churn(job& j) {
  std::string document;
  for (int i = 0;; ++i) {
    document = "{\"id\":" + std::to_string(i) + ",\"name\":\"item-" + std::to_string(i * 7) + "\"}";
    if (i % 1000 == 0) j.yield();
  }
}

// Waits forever without allocating; poll() lets its token cancel it.
bool stuck(job& j) {
  for (;;) {
    memlimits::poll();
    j.yield();
  }
}

bool work(job& j) {
  switch (j.what) {
    case kind::parse: return parse_csv(j);
    case kind::sort: return sort_numbers(j);
    case kind::index: return index_words(j);
    case kind::leak: return leak(j);
    case kind::churn: return churn(j);
    case kind::stuck: return stuck(j);
  }
  return false;
}

// The body of a job's fiber: its work under its three guards.
void run(job& j) {
  auto r = memlimits::limit_allocations(allocation_budget, [&] {
    return memlimits::limit_memory(memory_budget, [&] {
      return memlimits::limit_with_token(j.deadline, [&] { return work(j); });
    });
  });
  j.used = r.usage();
  if (!r) {
    j.stopped = true;
    j.stopped_by = r.error().kind();
  } else if (!*r) {
    j.stopped = true;
    j.stopped_by = r->error().kind();
  } else if (!**r) {
    j.stopped = true;
    j.stopped_by = (*r)->error().kind();
  } else {
    j.result_ok = ***r;
  }
}

bool as_expected(const job& j) {
  switch (j.what) {
    case kind::leak: return j.stopped && j.stopped_by == memlimits::limit_kind::memory;
    case kind::churn: return j.stopped && j.stopped_by == memlimits::limit_kind::allocations;
    case kind::stuck: return j.stopped && j.stopped_by == memlimits::limit_kind::token;
    default: return !j.stopped && j.result_ok;
  }
}

double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

// --- the scheduler ------------------------------------------------------------

class scheduler {
 public:
  explicit scheduler(std::vector<job>& jobs) {
    for (job& j : jobs) ready_.push_back(&j);
  }

  void run_workers() {
    std::vector<std::thread> workers;
    for (int w = 0; w < worker_count; ++w) workers.emplace_back([this, w] { work(w); });
    for (auto& t : workers) t.join();
  }

 private:
  void work(int worker) {
    for (;;) {
      job* j = nullptr;
      {
        std::lock_guard<std::mutex> hold(lock_);
        if (ready_.empty()) {
          if (running_ == 0) return;  // nothing left anywhere
        } else {
          j = ready_.front();
          ready_.pop_front();
          ++running_;
        }
      }
      if (j == nullptr) {
        std::this_thread::yield();
        continue;
      }
      j->ran_on |= 1u << worker;
      if (++j->resumes > deadline_resumes) j->deadline.set();
      j->body = std::move(j->body).resume();  // runs until it yields or ends
      if (!j->body) report(*j);
      std::lock_guard<std::mutex> hold(lock_);
      --running_;
      if (j->body) ready_.push_back(j);
    }
  }

  void report(job& j) {
    j.done = true;
    if (!j.stopped) return;
    std::lock_guard<std::mutex> hold(print_lock_);
    std::printf("  job %4d  %-5s  stopped by its %-11s limit after %3d resumes on %-9s  "
                "(allocated %5.2f MiB)\n",
                j.id, kind_names[static_cast<int>(j.what)], memlimits::to_string(j.stopped_by),
                j.resumes, j.ran_on == 3 ? "2 threads" : "1 thread",
                mib(static_cast<double>(j.used.allocated_bytes)));
    std::fflush(stdout);
  }

  std::mutex lock_;
  std::deque<job*> ready_;
  int running_ = 0;
  std::mutex print_lock_;
};

}  // namespace

int main() {
  std::vector<job> jobs(job_count);
  for (int i = 0; i < job_count; ++i) {
    job& j = jobs[static_cast<std::size_t>(i)];
    j.id = i;
    j.what = kind_of(i);
    j.body = memlimits::fiber{[&j](memlimits::fiber&& scheduler) {
      j.scheduler = std::move(scheduler);
      run(j);
      return std::move(j.scheduler);
    }};
  }
  std::printf("fiber_scheduler: %d fibers on %d threads, each under limit_allocations(16 MiB),\n"
              "limit_memory(4 MiB) and a token set after %d resumes. Stopped jobs, as they stop:\n",
              job_count, worker_count, deadline_resumes);
  const auto start = std::chrono::steady_clock::now();
  scheduler(jobs).run_workers();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  struct tally {
    int jobs = 0, ok = 0, allocations = 0, memory = 0, token = 0, other = 0, both_threads = 0, unexpected = 0;
  };
  std::array<tally, kind_names.size()> by_kind{};
  for (const job& j : jobs) {
    tally& t = by_kind[static_cast<std::size_t>(j.what)];
    ++t.jobs;
    if (!j.stopped && j.result_ok) ++t.ok;
    if (j.stopped) {
      switch (j.stopped_by) {
        case memlimits::limit_kind::allocations: ++t.allocations; break;
        case memlimits::limit_kind::memory: ++t.memory; break;
        case memlimits::limit_kind::token: ++t.token; break;
        default: ++t.other; break;
      }
    }
    if (j.ran_on == 3) ++t.both_threads;
    if (!as_expected(j)) {
      ++t.unexpected;
      std::printf("  UNEXPECTED: job %d (%s) %s\n", j.id, kind_names[static_cast<int>(j.what)],
                  j.stopped ? memlimits::to_string(j.stopped_by) : "finished with a wrong result");
    }
  }
  std::printf("\n%-6s %5s %5s %12s %7s %6s %13s %10s\n", "kind", "jobs", "ok", "allocations",
              "memory", "token", "ran on both", "unexpected");
  int unexpected = 0;
  for (std::size_t k = 0; k < by_kind.size(); ++k) {
    const tally& t = by_kind[k];
    std::printf("%-6s %5d %5d %12d %7d %6d %13d %10d\n", kind_names[k], t.jobs, t.ok, t.allocations,
                t.memory, t.token, t.both_threads, t.unexpected);
    unexpected += t.unexpected;
  }
  const bool all_done = std::all_of(jobs.begin(), jobs.end(), [](const job& j) { return j.done; });
  const bool ok = unexpected == 0 && all_done;
  if (ok) {
    std::printf("\nOK: %d jobs in %.2f s on %d threads; every runaway job was stopped by the limit "
                "meant for it, and the others finished with checked results\n",
                job_count, seconds, worker_count);
  } else {
    std::printf("\nFAILED: %d jobs ended otherwise than expected\n", unexpected);
  }
  return ok ? 0 : 1;
}
