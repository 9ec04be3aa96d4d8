// bench/bench_guards.cpp — what entering and leaving a guard costs, per kind
// (Google Benchmark), beside the cost of the same empty task called
// directly. Linked with memlimits and its hooks only (there is no "plain"
// counterpart: guards do not exist without memlimits).
//
//   bench/guards            # or --benchmark_repetitions=5 etc.
//
// Each iteration enters a guard whose task returns a value without
// allocating and leaves it; "Nested4" enters the four kinds nested. The
// context of a guard comes from the system allocator (one malloc and one
// free per guard); a token guard also registers with the token.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "memlimits/limits.hpp"

namespace {

int task() {
  int value = 42;
  benchmark::DoNotOptimize(value);
  return value;
}

void Direct(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(task());
}
BENCHMARK(Direct);

void LimitAllocations(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(*memlimits::limit_allocations(1 << 20, task));
}
BENCHMARK(LimitAllocations);

void LimitMemory(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(*memlimits::limit_memory(1 << 20, task));
}
BENCHMARK(LimitMemory);

void LimitGlobalMemory(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(*memlimits::limit_global_memory(task));
}
BENCHMARK(LimitGlobalMemory);

void LimitWithToken(benchmark::State& state) {
  const memlimits::token never_set;
  for (auto _ : state) benchmark::DoNotOptimize(*memlimits::limit_with_token(never_set, task));
}
BENCHMARK(LimitWithToken);

void Nested4(benchmark::State& state) {
  const memlimits::token never_set;
  for (auto _ : state) {
    auto r = memlimits::limit_global_memory([&] {
      return *memlimits::limit_with_token(never_set, [&] {
        return *memlimits::limit_memory(1 << 20, [&] {
          return *memlimits::limit_allocations(1 << 20, task);
        });
      });
    });
    benchmark::DoNotOptimize(*r);
  }
}
BENCHMARK(Nested4);

// A guard around a task that allocates and frees one 64-byte block: the
// allocation takes the fast path inside a guard as outside.
void NewDeleteInsideGuard(benchmark::State& state) {
  for (auto _ : state) {
    auto r = memlimits::limit_allocations(1 << 20, [] {
      void* p = ::operator new(64);
      benchmark::DoNotOptimize(p);
      ::operator delete(p);
      return 0;
    });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(NewDeleteInsideGuard);

void MaskScope(benchmark::State& state) {
  for (auto _ : state) {
    memlimits::mask m;
    benchmark::ClobberMemory();
  }
}
BENCHMARK(MaskScope);

void Poll(benchmark::State& state) {
  for (auto _ : state) memlimits::poll();
}
BENCHMARK(Poll);

}  // namespace

BENCHMARK_MAIN();
