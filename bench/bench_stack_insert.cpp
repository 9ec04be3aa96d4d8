// bench/bench_stack_insert.cpp — what a heap profile pays on the allocation
// path for a callstack it has not seen before, beside one it has: Google
// Benchmark, memlimits only. Not part of the library's layers: a program of
// its own, which reaches layer 6's internal headers for the last row.
//
// Every allocation is sampled (rate 1, 8-byte blocks: one sample each), so
// that each iteration runs the whole sampled path: the hooks, the unwinding
// of the callstack, the profile's table, the tracking of the block. The
// callstacks: a chain of 16 functions, level<N, B>, where each level calls
// one of two functions of the next (B: which), following the bits of the
// iteration's number, so that 2^16 iterations make 65,536 distinct stacks of
// 16 frames of this program (plus the benchmark's frames, main and the C
// library's start-up: frames in 3 or 4 objects), as deep as a real
// program's, sharing most of their frames.
//
//   NewStack    each iteration's stack is new: it is inserted in the table
//               (and its frames' objects looked up: module registry);
//   KnownStack  the same 65,536 stacks again, already in the table (the
//               "stacks" counter: the profile's stacks after the run, the
//               same for both rows);
//   Intern      module_registry::intern alone on one 28-frame stack whose
//               objects are all recorded already (the look-up that a new
//               stack adds, once per stack), when the registry exists.
// NewStack - KnownStack is the cost of inserting a stack. Each repetition
// starts a profile of its own (not timed) and frees its blocks after.
//
// usage: bench_stack_insert [Google Benchmark options]
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include <benchmark/benchmark.h>

#include "memlimits/memprof.hpp"

#if __has_include("memprof/module_registry.hpp")
#  include "memprof/module_registry.hpp"
#  include "platform/platform.hpp"
#  define BENCH_HAS_MODULE_REGISTRY 1
#endif

namespace {

using memlimits::memprof::heap_profile;

constexpr int chain_depth = 16;
constexpr std::size_t stacks = std::size_t{1} << chain_depth;

inline void sink(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

// Written by each level with its own B, so that level<N, 0> and level<N, 1>
// differ in code and identical code folding cannot merge them.
volatile int branch_taken = 0;

template <int N, int B>
__attribute__((noinline)) void level(unsigned path, void** out) {
  branch_taken = B;
  if constexpr (N == chain_depth) {
    *out = ::operator new(8);  // one word: one sample at rate 1
    sink(*out);
  } else {
    if ((path >> N) & 1u) {
      level<N + 1, 1>(path, out);
    } else {
      level<N + 1, 0>(path, out);
    }
    sink(out);  // not a tail call: each level keeps its frame
  }
}

// Allocates out[0], out[1], ... through paths 0, 1, ...: `stacks` of them
// when state is null, else one per iteration of the benchmark. One call of
// the chain for both, so that the warm-up of KnownStack and its timed loop
// make the same stacks (a stack holds the return address of every call).
__attribute__((noinline)) void run_paths(benchmark::State* state, void** out) {
  for (unsigned path = 0; state != nullptr ? state->KeepRunning() : path < stacks; ++path) {
    level<0, 0>(path, &out[path]);
    sink(out);
  }
}

void free_all(std::vector<void*>& blocks) {
  for (void*& b : blocks) {
    ::operator delete(b);
    b = nullptr;
  }
}

void NewStack(benchmark::State& state) {
  std::vector<void*> blocks(stacks);  // before the profile: not sampled
  heap_profile profile(1.0, heap_profile::default_callstack_size, 2 * stacks);
  run_paths(&state, blocks.data());
  profile.stop();
  state.counters["stacks"] = static_cast<double>(profile.snapshot().size());
  free_all(blocks);
}

volatile int passes = 2;

void KnownStack(benchmark::State& state) {
  std::vector<void*> blocks(stacks);
  std::vector<void*> again(stacks);
  heap_profile profile(1.0, heap_profile::default_callstack_size, 2 * stacks);
  // The stacks, then the same again (timed), through one call of
  // run_paths: a bound the compiler cannot see keeps the loop from being
  // unrolled into two calls.
  for (int pass = 0; pass < passes; ++pass) {
    run_paths(pass == 0 ? nullptr : &state, pass == 0 ? blocks.data() : again.data());
  }
  profile.stop();
  // As many as NewStack's: the timed loop made no new stack.
  state.counters["stacks"] = static_cast<double>(profile.snapshot().size());
  free_all(blocks);
  free_all(again);
}

BENCHMARK(NewStack)->Iterations(stacks)->Repetitions(5)->ReportAggregatesOnly(false);
BENCHMARK(KnownStack)->Iterations(stacks)->Repetitions(5)->ReportAggregatesOnly(false);

#if defined(BENCH_HAS_MODULE_REGISTRY)
namespace detail = memlimits::memprof::detail;

template <int N>
__attribute__((noinline)) std::size_t capture(void** frames, std::size_t max) {
  if constexpr (N == 0) {
    return memlimits::platform::capture_callstack(frames, max, nullptr);
  } else {
    const std::size_t n = capture<N - 1>(frames, max);
    sink(frames);
    return n;
  }
}

void Intern(benchmark::State& state) {
  void* frames[64];
  const std::size_t n = capture<chain_depth>(frames, 64);
  detail::module_registry registry;
  detail::module_index modules[64];
  registry.intern(frames, n, modules);  // records the objects
  for (auto _ : state) {
    registry.intern(frames, n, modules);
    benchmark::DoNotOptimize(modules);
  }
  state.counters["frames"] = static_cast<double>(n);
}
BENCHMARK(Intern)->Repetitions(5);
#endif

}  // namespace

BENCHMARK_MAIN();
