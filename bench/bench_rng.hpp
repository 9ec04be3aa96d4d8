// bench/bench_rng.hpp — the deterministic generator of the benchmarks:
// splitmix64 from core/prng.hpp (header-only and dependency-free, so the
// plain builds, which do not link memlimits, use it too).
#pragma once

#include <cstdint>

#include "core/prng.hpp"

struct rng {
  std::uint64_t state;
  std::uint64_t next() noexcept { return memlimits::core::splitmix64(state); }
  std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
};
