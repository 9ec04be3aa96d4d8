// bench/bench_alloc.cpp — the cost of one allocation and its free, through
// the global operator new/delete and through malloc/free, single- and
// multi-threaded. Built twice (bench/CMakeLists.txt): bench_alloc_plain calls
// glibc directly, bench_alloc_hooks goes through memlimits' hooks at the
// default sampling rate (1e-4 per word: about one sampled block per 80 KiB
// allocated), with no profile running. run_paired.sh runs both and prints
// the ratios.
//
// Two shapes per entry point:
//   *_pair   — allocate one block and free it at once: the hooks' fast paths
//              against glibc's fastest path (tcache), the worst case for the
//              relative overhead;
//   *_batch  — allocate 64 blocks, then free them in allocation order: the
//              same number of calls, with glibc doing a little more work.
// Elision is prevented by calling ::operator new / malloc explicitly and
// escaping every pointer with benchmark::DoNotOptimize.
//
// glibc's heap trimming is switched off (M_TRIM_THRESHOLD, in both builds)
// unless BENCH_ALLOC_GLIBC_DEFAULTS=1: with the defaults, freeing a batch of
// 4 KiB or 64 KiB blocks at the top of the heap returns the memory to the
// kernel (brk) at every iteration, and the next iteration faults it back in,
// so the batch figures measure page faults, and how the hooks' page-aligned
// sampled blocks happen to change glibc's heap layout (measured: 13,556 brk
// calls in 0.2 s of new_delete_batch/65536 plain, 5,042 with the hooks).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace {

// run_paired.sh divides the batch figures by this (its awk variable `batch`).
constexpr int batch_size = 64;

void new_delete_pair(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = ::operator new(bytes);
    benchmark::DoNotOptimize(p);
    ::operator delete(p);
  }
  state.SetItemsProcessed(state.iterations());
}

void malloc_free_pair(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::malloc(bytes);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}

void new_delete_batch(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  void* blocks[batch_size];
  for (auto _ : state) {
    for (void*& p : blocks) {
      p = ::operator new(bytes);
      benchmark::DoNotOptimize(p);
    }
    for (void* p : blocks) ::operator delete(p);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
}

void malloc_free_batch(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  void* blocks[batch_size];
  for (auto _ : state) {
    for (void*& p : blocks) {
      p = std::malloc(bytes);
      benchmark::DoNotOptimize(p);
    }
    for (void* p : blocks) std::free(p);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
}

void sizes_and_threads(benchmark::internal::Benchmark* b) {
  for (long bytes : {16L, 64L, 256L, 4096L, 65536L}) b->Arg(bytes);
  b->Threads(1)->Threads(2)->UseRealTime();
}

}  // namespace

BENCHMARK(new_delete_pair)->Apply(sizes_and_threads);
BENCHMARK(malloc_free_pair)->Apply(sizes_and_threads);
BENCHMARK(new_delete_batch)->Apply(sizes_and_threads);
BENCHMARK(malloc_free_batch)->Apply(sizes_and_threads);

int main(int argc, char** argv) {
  const char* defaults = std::getenv("BENCH_ALLOC_GLIBC_DEFAULTS");
  if (defaults == nullptr || std::strcmp(defaults, "1") != 0) {
    ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
