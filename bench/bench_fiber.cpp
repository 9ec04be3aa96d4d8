// bench/bench_fiber.cpp — what a fiber switch costs with memlimits::fiber
// beside plain boost::context::fiber, in one binary and one run (Google
// Benchmark; linked with memlimits and its hooks).
//
//   bench_fiber --benchmark_repetitions=5   # or: SECTIONS=fibers bench/run_paired.sh
//
// Each iteration is a round trip: the benchmark resumes a fiber that
// resumes it back at once, so two switches. "Switch" is the bare round trip;
// "SwitchGuarded" has the fiber suspended inside two guards (an allocation
// limit and a token) and the resuming thread inside one, so that each
// switch also moves those guards' deadlines and token watches; "Create"
// makes a fiber, runs it to its end and releases it (128 KiB stacks from
// the default stack allocator, as boost's).
#include <benchmark/benchmark.h>

#include <boost/context/fiber.hpp>

#include <utility>

#include "memlimits/fiber.hpp"
#include "memlimits/limits.hpp"

namespace {

template <class Fiber>
Fiber ping_pong() {
  return Fiber{[](Fiber&& caller) {
    for (;;) caller = std::move(caller).resume();
    return std::move(caller);
  }};
}

template <class Fiber>
void Switch(benchmark::State& state) {
  Fiber f = ping_pong<Fiber>();
  for (auto _ : state) f = std::move(f).resume();
  state.SetItemsProcessed(2 * state.iterations());  // switches
}
BENCHMARK_TEMPLATE(Switch, boost::context::fiber);
BENCHMARK_TEMPLATE(Switch, memlimits::fiber);

void SwitchGuarded(benchmark::State& state) {
  const memlimits::token never_set;
  memlimits::fiber f{[&](memlimits::fiber&& caller) {
    auto r = memlimits::limit_allocations(std::uint64_t{1} << 40, [&] {
      return memlimits::limit_with_token(never_set, [&] {
        for (;;) caller = std::move(caller).resume();
        return 0;
      });
    });
    benchmark::DoNotOptimize(r);
    return std::move(caller);
  }};
  auto outer = memlimits::limit_allocations(std::uint64_t{1} << 40, [&] {
    for (auto _ : state) f = std::move(f).resume();
    return 0;
  });
  benchmark::DoNotOptimize(outer);
  state.SetItemsProcessed(2 * state.iterations());
}
BENCHMARK(SwitchGuarded);

template <class Fiber>
void Create(benchmark::State& state) {
  for (auto _ : state) {
    Fiber f{[](Fiber&& caller) { return std::move(caller); }};
    f = std::move(f).resume();
    benchmark::DoNotOptimize(f);
  }
}
BENCHMARK_TEMPLATE(Create, boost::context::fiber);
BENCHMARK_TEMPLATE(Create, memlimits::fiber);

}  // namespace

BENCHMARK_MAIN();
