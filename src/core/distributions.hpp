// core/distributions.hpp — the random laws of the sampler.
//
// Model: the words (8 bytes) allocated by a thread form one stream; each word
// is sampled independently with probability p (a Bernoulli process). Then:
//  * the number of words from one sampled word to the next (or from any
//    point to the next sampled word), counting the sampled one, is
//    Geometric(p) on {1, 2, ...}: P(G = g) = (1-p)^(g-1) p. By inversion, for
//    U uniform in (0, 1], G = 1 + floor(log(U) / log(1-p)), since
//    P(G > g) = (1-p)^g = P(U <= (1-p)^g);
//  * a block of w words holds Binomial(w, p) samples; the process has no
//    memory, so a gap may be redrawn at any point without bias (this is what
//    lets a rate change take effect at once);
//  * thinning: keeping each of n samples drawn at rate r with probability
//    q / r gives Binomial(n, q / r) samples, which are exactly the samples of
//    the same words at rate q (Binomial(w, r) thinned by q/r is
//    Binomial(w, q)). This is how profiles and limits at different rates
//    share one stream.
// Everything here is exact (but a binomial of mean above 1e5, see below) and
// allocation-free.
// Layer 2.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/prng.hpp"

namespace memlimits::core {

// Caps a gap so that its byte count fits in a signed 64-bit countdown.
inline constexpr std::uint64_t max_gap_words = std::uint64_t{1} << 58;

// Geometric(p) on {1, 2, ...}; `log1m_p` is log1p(-p), cached by the caller.
inline std::uint64_t draw_gap_words(xoshiro256& rng, double p, double log1m_p) noexcept {
  if (p >= 1.0) return 1;
  if (p <= 0.0) return max_gap_words;
  const double extra = std::floor(std::log(rng.uniform_open0()) / log1m_p);
  if (!(extra < static_cast<double>(max_gap_words - 1))) return max_gap_words;
  return 1 + static_cast<std::uint64_t>(extra);
}

// Above this mean, draw_binomial uses the normal approximation.
inline constexpr double exact_binomial_mean_limit = 1e5;

// Binomial(n, p) by walking geometric gaps between successes over the n
// trials: exact, at an expected cost of min(p, 1-p) * n + 1 draws (the
// complement is used above 1/2), which is the number of samples in the block:
// small in the sampler's regime. A block so large that the mean exceeds
// exact_binomial_mean_limit (at the default rate, a block of 8 GB; such
// requests usually fail) gets the normal approximation with continuity
// correction instead, whose error is O(1/sqrt(mean)) < 0.3% there, so that no
// request can make the allocation path loop for long.
inline std::uint64_t draw_binomial(xoshiro256& rng, std::uint64_t n, double p) noexcept {
  if (n == 0 || p <= 0.0) return 0;
  if (p >= 1.0) return n;
  const bool complement = p > 0.5;
  const double q = complement ? 1.0 - p : p;
  const double mean = static_cast<double>(n) * q;
  if (mean > exact_binomial_mean_limit) {
    // Box-Muller: a standard normal deviate from two uniforms.
    const double radius = std::sqrt(-2.0 * std::log(rng.uniform_open0()));
    const double z = radius * std::cos(6.283185307179586 * rng.uniform_open0());
    double x = std::floor(mean + z * std::sqrt(mean * (1.0 - q)) + 0.5);
    if (x < 0.0) x = 0.0;
    if (x > static_cast<double>(n)) x = static_cast<double>(n);
    const auto successes = static_cast<std::uint64_t>(x);
    return complement ? n - successes : successes;
  }
  const double log1m_q = std::log1p(-q);
  std::uint64_t successes = 0;
  std::uint64_t position = draw_gap_words(rng, q, log1m_q);
  while (position <= n) {
    ++successes;
    const std::uint64_t gap = draw_gap_words(rng, q, log1m_q);
    if (gap > n - position) break;
    position += gap;
  }
  return complement ? n - successes : successes;
}

// Bytes that `samples` samples at `rate` per word stand for: samples * 8 /
// rate, rounded, and capped at 2^62 so that sums of a few of them cannot
// overflow (a rate below ~1e-18 would otherwise give weights beyond int64).
inline std::int64_t sample_weight_bytes(std::uint64_t samples, double rate) noexcept {
  const double bytes = static_cast<double>(samples) * 8.0 / rate;
  constexpr double cap = 4611686018427387904.0;  // 2^62
  return bytes >= cap ? static_cast<std::int64_t>(cap) : static_cast<std::int64_t>(std::llround(bytes));
}

}  // namespace memlimits::core
