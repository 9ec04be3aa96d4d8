// bench/workload.cpp — a whole program that allocates the way ordinary C++
// does, to measure the wall-time overhead of memlimits' hooks on it.
//
// Built twice (bench/CMakeLists.txt): workload_plain (glibc directly) and
// workload_hooks (memlimits::hooks linked in, default rate 1e-4). Both print
// the same checksum, which depends on every result of the work (so that
// nothing can be optimised away) and on nothing else (no addresses, no
// scheduling): the work of thread i depends only on i.
//
// The work: --threads threads (8 by default: more threads than the 2 cores
// of the reference machine, as in a server) each run --rounds rounds of
//   text   — generate "key=value;" records into a std::string, parse them back
//            into std::map<std::string, long> and std::unordered_map;
//   sort   — vectors of strings and of integers: sort, unique, std::merge;
//   graph  — a random graph in std::unordered_map<key, std::vector<key>>,
//            breadth-first search with a std::deque;
//   tree   — a tree of std::shared_ptr nodes with std::vector children,
//            built, summed, shared, released;
//   queue  — a std::deque<std::string> work queue and a std::list that is
//            sorted, spliced and merged.
//
// Every round runs under 12 frames of a recursive "framework", so that
// callstacks are as deep as a real program's (with 16-frame callstacks, the
// profile's unwinder walks 16 frames per sample, not 5).
//
// Options:
//   --threads N        threads (default 8)
//   --rounds N         rounds per thread (default 30)
//   --profile-depth D  (workload_hooks only) run a memlimits::memprof::profile
//                      at the default rate taking D-frame callstacks, with a
//                      tracker that counts samples per callstack hash into a
//                      fixed array and never allocates;
//   --rate R           the profile's sampling rate (default 1e-4);
//   --guard KIND       (workload_hooks only) run every round inside a limit
//                      guard that never trips, as a server runs each request:
//                      allocations (a 2^62-byte exact limit), memory (1 TiB),
//                      global (limit_global_memory under a 1 TiB global
//                      limit: the heap estimate is read at every sample),
//                      token (a token never set), all (the four, nested);
//   --base-rate R      (workload_hooks only; a diagnostic) sets the base
//                      accounting's rate (internal core::set_base_rate), which
//                      with no profile is the rate of every thread: with 1e-12
//                      nothing is ever sampled, so that the run measures the
//                      fast paths alone.
// Output (one line, parsed by run_paired.sh):
//   wall_ms=<ms> cpu_ms=<ms> checksum=<hex> [samples=<n> stacks=<n> depth=<mean frames>]
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench_rng.hpp"

#if defined(MEMLIMITS_BENCH_HOOKS)
#  include "core/subscribers.hpp"
#  include "memlimits/limits.hpp"
#  include "memlimits/memprof.hpp"
#endif

namespace {

// ---- determinism helpers ----


struct checksum {
  std::uint64_t value = 0xCBF29CE484222325ull;
  void add(std::uint64_t x) noexcept {
    for (int i = 0; i < 8; ++i) {
      value ^= (x >> (8 * i)) & 0xFF;
      value *= 0x100000001B3ull;
    }
  }
  void add(std::string_view s) noexcept {
    for (unsigned char c : s) {
      value ^= c;
      value *= 0x100000001B3ull;
    }
    add(s.size());
  }
};

// Words of 3 to 40 letters: below and above the 15-character SSO limit.
std::string random_word(rng& r) {
  const std::size_t length = 3 + r.below(r.below(4) == 0 ? 38 : 12);
  std::string word;
  for (std::size_t i = 0; i < length; ++i) word += static_cast<char>('a' + r.below(26));
  return word;
}

// ---- the phases; each folds its results into `sum` ----

void text_phase(rng& r, checksum& sum) {
  std::vector<std::string> vocabulary;
  for (int i = 0; i < 400; ++i) vocabulary.push_back(random_word(r));

  std::string document;
  for (int i = 0; i < 6000; ++i) {
    document += vocabulary[r.below(vocabulary.size())];
    document += '=';
    document += std::to_string(r.below(100000));
    document += ';';
  }

  std::map<std::string, long> totals;
  std::unordered_map<std::string, int> counts;
  std::string_view rest = document;
  while (!rest.empty()) {
    const std::size_t end = rest.find(';');
    const std::string_view record = rest.substr(0, end);
    rest.remove_prefix(end + 1);
    const std::size_t eq = record.find('=');
    std::string key(record.substr(0, eq));
    const long value = std::strtol(std::string(record.substr(eq + 1)).c_str(), nullptr, 10);
    totals[key] += value;
    ++counts[std::move(key)];
  }
  for (const auto& [key, total] : totals) {
    sum.add(key);
    sum.add(static_cast<std::uint64_t>(total));
    sum.add(static_cast<std::uint64_t>(counts.at(key)));
  }
}

void sort_phase(rng& r, checksum& sum) {
  std::vector<std::string> words;
  for (int i = 0; i < 5000; ++i) words.push_back(random_word(r));
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  sum.add(words.size());
  sum.add(words.front());
  sum.add(words.back());

  std::vector<std::vector<std::uint64_t>> runs;
  for (int i = 0; i < 8; ++i) {
    std::vector<std::uint64_t> run;
    const std::size_t n = 2000 + r.below(4000);
    for (std::size_t j = 0; j < n; ++j) run.push_back(r.below(1000000));
    std::sort(run.begin(), run.end());
    runs.push_back(std::move(run));
  }
  while (runs.size() > 1) {  // pairwise merging, as a merge sort's passes
    std::vector<std::vector<std::uint64_t>> merged;
    for (std::size_t i = 0; i + 1 < runs.size(); i += 2) {
      std::vector<std::uint64_t> out;
      std::merge(runs[i].begin(), runs[i].end(), runs[i + 1].begin(), runs[i + 1].end(),
                 std::back_inserter(out));
      merged.push_back(std::move(out));
    }
    if (runs.size() % 2 == 1) merged.push_back(std::move(runs.back()));
    runs = std::move(merged);
  }
  std::uint64_t folded = 0;
  for (std::size_t i = 0; i < runs[0].size(); i += 97) folded = folded * 31 + runs[0][i];
  sum.add(folded);
}

void graph_phase(rng& r, checksum& sum) {
  constexpr std::uint64_t nodes = 3000;
  std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> edges;
  for (std::uint64_t i = 0; i < nodes * 3; ++i) {
    const std::uint64_t a = r.below(nodes) * 7919, b = r.below(nodes) * 7919;
    edges[a].push_back(b);
    edges[b].push_back(a);
  }
  std::unordered_map<std::uint64_t, std::uint32_t> distance;
  std::deque<std::uint64_t> frontier{0};
  distance[0] = 0;
  while (!frontier.empty()) {
    const std::uint64_t at = frontier.front();
    frontier.pop_front();
    const auto it = edges.find(at);
    if (it == edges.end()) continue;
    for (std::uint64_t next : it->second) {
      if (distance.emplace(next, distance[at] + 1).second) frontier.push_back(next);
    }
  }
  std::uint64_t total = 0;
  for (const auto& [node, d] : distance) total += node * d;
  sum.add(distance.size());
  sum.add(total);
}

struct tree_node {
  std::uint64_t value;
  std::string label;
  std::vector<std::shared_ptr<tree_node>> children;
};

std::shared_ptr<tree_node> build_tree(rng& r, int depth) {
  auto node = std::make_shared<tree_node>();
  node->value = r.below(1000);
  node->label = random_word(r);
  if (depth > 0) {
    const std::uint64_t n = 1 + r.below(4);
    for (std::uint64_t i = 0; i < n; ++i) node->children.push_back(build_tree(r, depth - 1));
  }
  return node;
}

std::uint64_t tree_sum(const tree_node& node) {
  std::uint64_t total = node.value + node.label.size();
  for (const auto& child : node.children) total += tree_sum(*child);
  return total;
}

void tree_phase(rng& r, checksum& sum) {
  std::vector<std::shared_ptr<tree_node>> forest;
  for (int i = 0; i < 6; ++i) forest.push_back(build_tree(r, 6));
  // Share subtrees across the forest, then drop the roots: the shared
  // subtrees outlive them.
  std::vector<std::shared_ptr<tree_node>> kept;
  for (const auto& root : forest) {
    for (const auto& child : root->children) {
      if (r.below(2) == 0) kept.push_back(child);
    }
    sum.add(tree_sum(*root));
  }
  forest.clear();
  std::uint64_t total = 0;
  for (const auto& node : kept) total += tree_sum(*node) * static_cast<std::uint64_t>(node.use_count());
  sum.add(total);
}

void queue_phase(rng& r, checksum& sum) {
  std::deque<std::string> work;
  for (int i = 0; i < 200; ++i) work.push_back(random_word(r));
  std::uint64_t processed = 0;
  std::list<std::uint64_t> done;
  while (!work.empty() && processed < 20000) {
    std::string item = std::move(work.front());
    work.pop_front();
    ++processed;
    done.push_back(item.size() * 1000 + static_cast<unsigned char>(item[0]));
    const std::uint64_t children = r.below(3);
    for (std::uint64_t c = 0; c < children && work.size() < 5000; ++c) {
      std::string next = item.substr(0, item.size() / 2 + 1);
      next += random_word(r);
      work.push_back(std::move(next));
    }
  }
  std::list<std::uint64_t> other;
  for (int i = 0; i < 2000; ++i) other.push_back(r.below(100000));
  done.sort();
  other.sort();
  done.merge(other);
  auto middle = done.begin();
  std::advance(middle, static_cast<long>(done.size() / 2));
  std::list<std::uint64_t> tail;
  tail.splice(tail.begin(), done, middle, done.end());
  std::uint64_t folded = 0;
  for (std::uint64_t x : done) folded = folded * 131 + x;
  for (std::uint64_t x : tail) folded = folded * 137 + x;
  sum.add(processed);
  sum.add(folded);
}

void run_round(rng& r, checksum& sum) {
  text_phase(r, sum);
  sort_phase(r, sum);
  graph_phase(r, sum);
  tree_phase(r, sum);
  queue_phase(r, sum);
}

// The work runs under `depth` frames of its own, as a request handler in a
// server runs under the frames of its framework, so that callstacks are as
// deep as a real program's (profiles cut them at their callstack size).
// noinline and the use of the result after the call keep the frames.
__attribute__((noinline)) std::uint64_t framework_frame(int depth, rng& r, checksum& sum) {
  if (depth == 0) {
    run_round(r, sum);
    return sum.value;
  }
  const std::uint64_t result = framework_frame(depth - 1, r, sum);
  __asm__ volatile("" : : "r"(result) : "memory");
  return result ^ static_cast<std::uint64_t>(depth);
}

constexpr int framework_depth = 12;

enum class guard_kind { none, allocations, memory, global, token, all };

#if defined(MEMLIMITS_BENCH_HOOKS)
// Runs one round under the guard(s) of `kind`; the limits never trip, so the
// result is the round's.
template <class F>
std::uint64_t guarded(guard_kind kind, const memlimits::token& never_set, F&& round) {
  constexpr std::uint64_t huge = std::uint64_t{1} << 62;
  constexpr std::uint64_t tebibyte = std::uint64_t{1} << 40;
  switch (kind) {
    case guard_kind::none: return round();
    case guard_kind::allocations: return *memlimits::limit_allocations(huge, round);
    case guard_kind::memory: return *memlimits::limit_memory(tebibyte, round);
    case guard_kind::global: return *memlimits::limit_global_memory(round);
    case guard_kind::token: return *memlimits::limit_with_token(never_set, round);
    case guard_kind::all:
      return *memlimits::limit_global_memory([&] {
        return *memlimits::limit_with_token(never_set, [&] {
          return *memlimits::limit_memory(tebibyte, [&] {
            return *memlimits::limit_allocations(huge, round);
          });
        });
      });
  }
  return 0;
}
#endif

std::uint64_t run_thread(int index, int rounds, [[maybe_unused]] guard_kind kind) {
  rng r{0x5EED0000ull + static_cast<std::uint64_t>(index)};
  checksum sum;
  std::uint64_t folded = 0;
#if defined(MEMLIMITS_BENCH_HOOKS)
  const memlimits::token never_set;
#endif
  for (int round = 0; round < rounds; ++round) {
#if defined(MEMLIMITS_BENCH_HOOKS)
    folded += guarded(kind, never_set, [&] { return framework_frame(framework_depth, r, sum); });
#else
    folded += framework_frame(framework_depth, r, sum);
#endif
  }
  sum.add(folded);
  return sum.value;
}

#if defined(MEMLIMITS_BENCH_HOOKS)
// What a cheap real profiler does: samples per callstack, and how many of
// them are still live, in fixed arrays. Never allocates.
class callstack_counter final : public memlimits::memprof::tracker {
 public:
  static constexpr std::size_t buckets = 4096;

  void* on_alloc(const memlimits::memprof::allocation& a) override {
    std::uint64_t h = 0xCBF29CE484222325ull;
    for (void* frame : a.callstack) {
      h ^= reinterpret_cast<std::uintptr_t>(frame);
      h *= 0x100000001B3ull;
    }
    const std::size_t bucket = (h ^ (h >> 29)) & (buckets - 1);
    samples_[bucket].fetch_add(a.n_samples, std::memory_order_relaxed);
    frames_.fetch_add(a.callstack.size(), std::memory_order_relaxed);
    calls_.fetch_add(1, std::memory_order_relaxed);
    live_[bucket].fetch_add(static_cast<std::int64_t>(a.n_samples), std::memory_order_relaxed);
    // The cookie carries the bucket and the sample count (n_samples >= 1,
    // so it is never null).
    return reinterpret_cast<void*>((a.n_samples << 12) | bucket);
  }

  void on_free(void* cookie) noexcept override {
    const auto bits = reinterpret_cast<std::uintptr_t>(cookie);
    live_[bits & (buckets - 1)].fetch_sub(static_cast<std::int64_t>(bits >> 12),
                                          std::memory_order_relaxed);
  }

  std::uint64_t total_samples() const noexcept {
    std::uint64_t total = 0;
    for (const auto& s : samples_) total += s.load(std::memory_order_relaxed);
    return total;
  }
  // Mean frames per callstack.
  double mean_depth() const noexcept {
    const auto calls = calls_.load(std::memory_order_relaxed);
    return calls == 0 ? 0.0 : static_cast<double>(frames_.load(std::memory_order_relaxed)) /
                                  static_cast<double>(calls);
  }
  std::size_t used_buckets() const noexcept {
    std::size_t used = 0;
    for (const auto& s : samples_) used += s.load(std::memory_order_relaxed) != 0;
    return used;
  }

 private:
  std::atomic<std::uint64_t> samples_[buckets]{};
  std::atomic<std::int64_t> live_[buckets]{};
  std::atomic<std::uint64_t> frames_{0};
  std::atomic<std::uint64_t> calls_{0};
};
#endif

[[noreturn]] void usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s [--threads N] [--rounds N] [--profile-depth D] [--rate R] "
               "[--guard allocations|memory|global|token|all] [--base-rate R]\n",
               program);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 8;
  int rounds = 30;
  long profile_depth = -1;  // -1: no profile
  double rate = 1e-4;
  double base_rate = 0.0;  // 0: the library's default
  guard_kind guard = guard_kind::none;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    const char* value = argv[++i];
    if (arg == "--threads") {
      threads = std::atoi(value);
    } else if (arg == "--rounds") {
      rounds = std::atoi(value);
    } else if (arg == "--profile-depth") {
      profile_depth = std::atol(value);
    } else if (arg == "--rate") {
      rate = std::atof(value);
    } else if (arg == "--guard") {
      const std::string_view kind = value;
      if (kind == "allocations") guard = guard_kind::allocations;
      else if (kind == "memory") guard = guard_kind::memory;
      else if (kind == "global") guard = guard_kind::global;
      else if (kind == "token") guard = guard_kind::token;
      else if (kind == "all") guard = guard_kind::all;
      else usage(argv[0]);
    } else if (arg == "--base-rate") {
      base_rate = std::atof(value);
    } else {
      usage(argv[0]);
    }
  }
  if (threads < 1 || rounds < 1) usage(argv[0]);
#if !defined(MEMLIMITS_BENCH_HOOKS)
  if (profile_depth >= 0 || base_rate != 0.0 || guard != guard_kind::none) {
    std::fprintf(stderr, "%s: --profile-depth, --guard and --base-rate need the hooks build\n",
                 argv[0]);
    return 2;
  }
  (void)rate;
#else
  if (base_rate != 0.0) memlimits::core::set_base_rate(base_rate);
  if (guard == guard_kind::global || guard == guard_kind::all) {
    memlimits::set_global_memory_limit(std::int64_t{1} << 40);
  }
#endif

  const auto start = std::chrono::steady_clock::now();
#if defined(MEMLIMITS_BENCH_HOOKS)
  auto counter = std::make_unique<callstack_counter>();
  std::unique_ptr<memlimits::memprof::profile> profile;
  if (profile_depth >= 0) {
    profile = std::make_unique<memlimits::memprof::profile>(
        *counter, rate, static_cast<std::size_t>(profile_depth));
  }
#endif

  std::vector<std::uint64_t> results(static_cast<std::size_t>(threads));
  {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([t, rounds, guard, &results] { results[t] = run_thread(t, rounds, guard); });
    }
    for (auto& thread : pool) thread.join();
  }

#if defined(MEMLIMITS_BENCH_HOOKS)
  if (profile) profile->stop();
#endif
  const auto stop = std::chrono::steady_clock::now();

  checksum total;
  for (std::uint64_t r : results) total.add(r);
  const double wall_ms = std::chrono::duration<double, std::milli>(stop - start).count();
  // CPU time of the whole process (all threads, user + system): less
  // sensitive than wall time to other programs' load on the machine.
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  const double cpu_ms =
      (static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 +
       static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-3);
  std::printf("wall_ms=%.1f cpu_ms=%.1f checksum=%016" PRIx64, wall_ms, cpu_ms, total.value);
#if defined(MEMLIMITS_BENCH_HOOKS)
  if (profile) {
    std::printf(" samples=%" PRIu64 " stacks=%zu depth=%.1f", counter->total_samples(),
                counter->used_buckets(), counter->mean_depth());
  }
#endif
  std::printf("\n");
  return 0;
}
