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
#include "memlimits/task.hpp"

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

// bind_limits: one call of the bound callable runs the task as a fresh
// child task (a task_state from the system allocator, a share of each
// inherited context, a watch on each, made current and back). Measured
// inside a guard of two contexts (an exact allocation limit and a memory
// limit), beside the same task called directly inside it; "Allocating":
// the task allocates and frees one 64-byte block, which in a child takes a
// first slice of the shared budget (one compare-and-swap on its slow path).
template <bool allocating>
int child_work() {
  if constexpr (allocating) {
    void* p = ::operator new(64);
    benchmark::DoNotOptimize(p);
    ::operator delete(p);
  }
  return task();
}

template <bool allocating>
void DirectInsideGuard(benchmark::State& state) {
  auto r = memlimits::limit({.allocations = 1ull << 50, .memory = 1ull << 50}, [&] {
    for (auto _ : state) benchmark::DoNotOptimize(child_work<allocating>());
  });
  benchmark::DoNotOptimize(r);
}
BENCHMARK(DirectInsideGuard<false>)->Name("BindLimits/Direct");
BENCHMARK(DirectInsideGuard<true>)->Name("BindLimits/DirectAllocating");

template <bool allocating>
void BoundInsideGuard(benchmark::State& state) {
  auto r = memlimits::limit({.allocations = 1ull << 50, .memory = 1ull << 50}, [&] {
    auto bound = memlimits::bind_limits(&child_work<allocating>);
    for (auto _ : state) benchmark::DoNotOptimize(bound());
  });
  benchmark::DoNotOptimize(r);
}
BENCHMARK(BoundInsideGuard<false>)->Name("BindLimits/Invocation");
BENCHMARK(BoundInsideGuard<true>)->Name("BindLimits/InvocationAllocating");

// bind_limits itself: capturing the creator's guards (and trimming its
// slice), then releasing them.
void BindInsideGuard(benchmark::State& state) {
  auto r = memlimits::limit({.allocations = 1ull << 50, .memory = 1ull << 50}, [&] {
    for (auto _ : state) benchmark::DoNotOptimize(memlimits::bind_limits(&task));
  });
  benchmark::DoNotOptimize(r);
}
BENCHMARK(BindInsideGuard)->Name("BindLimits/Capture");

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
