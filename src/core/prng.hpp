// core/prng.hpp — the per-thread pseudo-random generator of the sampler:
// xoshiro256** (Blackman & Vigna, 2018), seeded through splitmix64 so that any
// 64-bit seed gives a well-mixed state. Small (32 bytes), no allocation, and a
// UniformRandomBitGenerator. Not thread-safe: one per thread.
// Layer 2 (depends on nothing).
#pragma once

#include <cstdint>
#include <limits>

namespace memlimits::core {

constexpr std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class xoshiro256 {
 public:
  using result_type = std::uint64_t;
  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept {
    return std::numeric_limits<result_type>::max();
  }

  constexpr xoshiro256() noexcept = default;
  // A raw state (not all zero), for checking against the reference outputs.
  constexpr xoshiro256(std::uint64_t s0, std::uint64_t s1, std::uint64_t s2,
                       std::uint64_t s3) noexcept
      : state_{s0, s1, s2, s3} {}

  constexpr void seed(std::uint64_t seed) noexcept {
    for (auto& word : state_) word = splitmix64(seed);
  }

  constexpr result_type operator()() noexcept {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in (0, 1]: 53 random bits, never 0, so that log() is finite.
  double uniform_open0() noexcept {
    return static_cast<double>(((*this)() >> 11) + 1) * 0x1.0p-53;
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept {
    return (x << k) | (x >> (64 - k));
  }
  std::uint64_t state_[4] = {};
};

}  // namespace memlimits::core
