// bench/bench_shared.cpp — what a guard shared by several threads costs:
// 8 threads allocating under one exact allocation limit and one memory
// limit entered by the main thread (each thread's work a child task,
// memlimits::bind_limits), against the same 8 threads each under private
// guards of the same kinds, and against no guard at all. The limits never
// trip; what differs is where each thread's slow path goes: a shared
// budget's threads take 4-64 KiB slices of it with one compare-and-swap,
// and their samples are charged to contexts that other threads charge too.
//
// usage: bench_shared [--rounds R] [--mode none|private|shared|all]
//                     [--threads T] [--allocations N]
//                     [--limits allocations|memory|both]
// Defaults: both limits (they never trip), 11 rounds of all three modes, in
// turn within each round, the order flipping every round (so that drift in
// the machine's load falls on every mode alike), 8 threads, 1,000,000
// allocations per thread. Prints the median wall time of each mode and the
// medians of its per-round ratios to the modes before it ("none", then
// "private"). Under callgrind (which runs one thread at a time), run one mode
// and one round:
//   valgrind --tool=callgrind bench_shared --mode shared --rounds 1
//
// Each thread allocates blocks of 16 to 1,039 bytes (a fixed sequence) with
// operator new and keeps the last 64 in a ring, freeing the one it replaces:
// a small live heap, frees of the thread's own blocks.
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "memlimits/limits.hpp"
#include "memlimits/task.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

void* (*volatile allocate)(std::size_t) = &::operator new;
void (*volatile release)(void*) = &::operator delete;

std::uint64_t allocations_per_thread = 1'000'000;
int thread_count = 8;
// The guards' limits: an exact allocation limit, a memory limit, or both.
memlimits::limits guard_limits{.allocations = std::uint64_t{1} << 50,
                               .memory = std::uint64_t{1} << 50};

// One thread's work: allocations of varying sizes, the last 64 kept.
void work(std::uint64_t seed) {
  void* ring[64] = {};
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::uint64_t i = 0; i < allocations_per_thread; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const std::size_t bytes = 16 + (x % 1024);
    void*& slot = ring[i % 64];
    if (slot != nullptr) release(slot);
    slot = allocate(bytes);
  }
  for (void* p : ring) release(p);
}

double run_none() {
  const auto start = clock_type::now();
  {
    std::vector<std::jthread> threads;
    threads.reserve(thread_count);
    for (int t = 0; t < thread_count; ++t) threads.emplace_back([t] { work(t); });
  }
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double run_private() {
  const auto start = clock_type::now();
  {
    std::vector<std::jthread> threads;
    threads.reserve(thread_count);
    for (int t = 0; t < thread_count; ++t) {
      threads.emplace_back([t] {
        auto r = memlimits::limit(guard_limits, [t] { work(t); });
        if (!r) std::abort();
      });
    }
  }
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double run_shared() {
  const auto start = clock_type::now();
  auto r = memlimits::limit(guard_limits, [] {
    std::vector<std::jthread> threads;
    threads.reserve(thread_count);
    for (int t = 0; t < thread_count; ++t) {
      threads.emplace_back(memlimits::bind_limits([t] { work(t); }));
    }
  });
  if (!r) std::abort();
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 11;
  std::string mode = "all";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--rounds") == 0) {
      rounds = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--mode") == 0) {
      mode = argv[i + 1];
    } else if (std::strcmp(argv[i], "--threads") == 0) {
      thread_count = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--limits") == 0) {
      if (std::strcmp(argv[i + 1], "allocations") == 0) guard_limits.memory.reset();
      if (std::strcmp(argv[i + 1], "memory") == 0) guard_limits.allocations.reset();
    } else if (std::strcmp(argv[i], "--allocations") == 0) {
      allocations_per_thread = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--rounds R] [--mode none|private|shared|all] "
                   "[--threads T] [--allocations N] [--limits allocations|memory|both]\n", argv[0]);
      return 2;
    }
  }
  spdlog::register_logger(std::make_shared<spdlog::logger>(
      "memlimits", std::make_shared<spdlog::sinks::null_sink_mt>()));
  struct entry {
    const char* name;
    double (*run)();
    std::vector<double> seconds;
  };
  std::vector<entry> modes;
  if (mode == "all" || mode == "none") modes.push_back({"none", &run_none, {}});
  if (mode == "all" || mode == "private") modes.push_back({"private", &run_private, {}});
  if (mode == "all" || mode == "shared") modes.push_back({"shared", &run_shared, {}});
  if (modes.empty()) {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
  for (int round = 0; round < rounds; ++round) {
    // The order flips every round, so that a trend in the machine's load
    // falls on every mode alike.
    for (std::size_t i = 0; i < modes.size(); ++i) {
      entry& e = modes[round % 2 == 0 ? i : modes.size() - 1 - i];
      e.seconds.push_back(e.run());
    }
  }
  std::printf("%d threads x %llu allocations, %d rounds\n", thread_count,
              static_cast<unsigned long long>(allocations_per_thread), rounds);
  const auto ratio = [&](const entry& e, const entry& base) {
    std::vector<double> ratios;
    for (int r = 0; r < rounds; ++r) ratios.push_back(e.seconds[r] / base.seconds[r]);
    return median(ratios);
  };
  for (std::size_t i = 0; i < modes.size(); ++i) {
    const entry& e = modes[i];
    std::printf("  %-8s median %.4f s", e.name, median(e.seconds));
    // Per-round ratios to each mode before it: none, then private.
    for (std::size_t j = 0; j < i; ++j) {
      std::printf("   / %s: %.4f", modes[j].name, ratio(e, modes[j]));
    }
    std::printf("\n");
  }
  return 0;
}
