// bench/bench_sampled.cpp — what one sampled block costs: its allocation,
// its record and its free, with no profile attached (Google Benchmark,
// memlimits only).
//
//   BM_Hooks/<bytes>        malloc + free through the hooks with every
//                           block sampled (base rate 1): the core's slow
//                           path, the dispatch to the live-heap estimate,
//                           a block of the reserved range with its record;
//   BM_Unsampled/<bytes>    the same calls at a rate that samples nothing
//                           (1e-12): the hooks' fast paths and the system
//                           allocator, for comparison;
//   BM_RangeBlock/<bytes>   the tracking layer's part alone: a block of the
//                           range, a record hung from it, both freed;
//   BM_AlignedTable/<bytes> the same part as the sanitizer builds do it
//                           (and every build did before the range): the
//                           system's memalign(128), the record inserted in
//                           the sharded table and bitmap, removed, freed.
// Each keeps 64 blocks live in a ring, so that the allocator's free lists
// are not a single block deep.
#include <cstddef>
#include <cstdlib>

#include <benchmark/benchmark.h>

#include "core/subscribers.hpp"
#include "platform/system_allocator.hpp"
#include "tracking/block_table.hpp"
#include "tracking/range_heap.hpp"
#include "tracking/record.hpp"

namespace {

namespace tracking = memlimits::tracking;
constexpr int ring = 64;

void run_hooks(benchmark::State& state, double rate) {
  memlimits::core::set_base_rate(rate);
  const auto bytes = static_cast<std::size_t>(state.range(0));
  void* blocks[ring] = {};
  int i = 0;
  for (auto _ : state) {
    std::free(blocks[i]);
    blocks[i] = std::malloc(bytes);
    benchmark::DoNotOptimize(blocks[i]);
    i = (i + 1) % ring;
  }
  for (void* p : blocks) std::free(p);
  memlimits::core::set_base_rate(1e-4);
}

void BM_Hooks(benchmark::State& state) { run_hooks(state, 1.0); }
void BM_Unsampled(benchmark::State& state) { run_hooks(state, 1e-12); }

void BM_RangeBlock(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  void* blocks[ring] = {};
  int i = 0;
  for (auto _ : state) {
    if (blocks[i] != nullptr) {
      tracking::delete_record(tracking::range_heap::take_record(blocks[i]));
      tracking::range_heap::free(blocks[i]);
    }
    void* p = tracking::range_heap::allocate(bytes, 0);
    tracking::record* r = tracking::new_record();
    r->address = p;
    tracking::range_heap::set_record(p, r);
    blocks[i] = p;
    i = (i + 1) % ring;
  }
  for (void* p : blocks) {
    if (p == nullptr) continue;
    tracking::delete_record(tracking::range_heap::take_record(p));
    tracking::range_heap::free(p);
  }
}

void BM_AlignedTable(benchmark::State& state) {
  namespace system = memlimits::platform::system;
  const auto bytes = static_cast<std::size_t>(state.range(0));
  void* blocks[ring] = {};
  int i = 0;
  for (auto _ : state) {
    if (blocks[i] != nullptr) {
      if (!tracking::table::is_marked(blocks[i])) std::abort();
      tracking::delete_record(tracking::table::remove(blocks[i]));
      system::free(blocks[i]);
    }
    void* p = system::memalign(tracking::table::sampled_alignment, bytes);
    tracking::record* r = tracking::new_record();
    r->address = p;
    if (!tracking::table::insert(r)) std::abort();
    blocks[i] = p;
    i = (i + 1) % ring;
  }
  for (void* p : blocks) {
    if (p == nullptr) continue;
    tracking::delete_record(tracking::table::remove(p));
    system::free(p);
  }
}

void sizes(benchmark::internal::Benchmark* b) {
  for (const long bytes : {16L, 256L, 4096L, 65536L, 1L << 20}) b->Arg(bytes);
}

BENCHMARK(BM_Hooks)->Apply(sizes);
BENCHMARK(BM_Unsampled)->Apply(sizes);
BENCHMARK(BM_RangeBlock)->Apply(sizes);
BENCHMARK(BM_AlignedTable)->Apply(sizes);

}  // namespace

BENCHMARK_MAIN();
