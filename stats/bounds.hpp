// The probability bounds of memlimits' sampled limits: the global limit (any
// check made at samples), memprof-limits' statistical allocation limit, the
// minimal sampling rate for a target accuracy, and the bounds of limit_memory
// (false trips below the limit, overshoot above it). The derivations are in
// stats/README.md; the numbering of its sections is referred to below.
//
// Depends on Boost.Math (ibeta, ibetac, their inverses, the exponential
// distribution) and the standard library only. The top-level stats/ folder
// (docs/design.md, "The layers of src/"): never linked into the library.
//
// The sampling law (that of the engine, src/core/sampler.hpp): every 8-byte
// word allocated is sampled independently with probability p, the rate; a
// block of w words carries Binomial(w, p) samples. S = 1/p is the mean number
// of words between two samples. Counts of words are integers up to 2^53
// (max_count), where doubles are exact; every function here throws
// std::invalid_argument, naming the parameter and its value, on arguments
// outside its domain, and never returns an approximation of a count.
#pragma once

#include <cstdint>
#include <vector>

#include "memlimits/sampling_rate.hpp"

namespace memlimits::stats {

inline constexpr double default_rate = memlimits::default_sampling_rate;
inline constexpr std::uint64_t word_bytes = 8;
// Largest count of words (or samples) the functions accept or return: every
// integer up to here is a double, so that stepping by one word is exact.
inline constexpr std::uint64_t max_count = std::uint64_t{1} << 53;

// Argument checks, shared with the CLI so that both say the same thing.
// `name` is the parameter's name as the caller knows it.
double check_rate(double rate, const char* name = "rate");             // 0 < rate <= 1
double check_target(double target, const char* name = "target");       // 0 < target < 1
std::uint64_t check_samples(std::uint64_t k, const char* name = "k");  // 1 <= k <= max_count

// ---------------------------------------------------------------------------
// Global limit (README §1). A check made at every sample (the global memory
// limit, and limit_memory once it is over) is missed after n words only if
// none of them is sampled.

// P(not interrupted after n words) = (1 - p)^n, the engine's exact law,
// computed as exp(n log1p(-p)) so that it does not lose the tail.
double global_not_interrupted(std::uint64_t words, double rate = default_rate);
// memprof-limits' bound e^{-n/S} >= (1 - p)^n (exponential distribution's
// complement), for comparison.
double global_not_interrupted_bound(std::uint64_t words, double rate = default_rate);

struct global_result {
  double rate;
  double target;
  std::uint64_t words;        // smallest n with (1 - p)^n < target
  std::uint64_t bytes;        // 8 * words
  std::uint64_t bound_words;  // smallest n with e^{-n/S} < target (<= words)
};
global_result global_limit(double target, double rate = default_rate);

// ---------------------------------------------------------------------------
// Sampled allocation limit (README §2): the limit l = k S words trips at the
// k-th sample, so P(interrupted after n words) = P(Binomial(n, p) >= k).

// P(n) = I_p(k, n - k + 1) (0 for n < k).
double interrupted(std::uint64_t k, std::uint64_t words, double rate = default_rate);
// 1 - P(n) = P(Binomial(n, p) < k), computed directly (ibetac), not as 1 - P.
double not_interrupted(std::uint64_t k, std::uint64_t words, double rate = default_rate);

// l = k / p, in words (not rounded: S need not be an integer).
double limit_words(std::uint64_t k, double rate = default_rate);

// The largest N with P(N) <= target (N >= k - 1, where P is 0).
std::uint64_t safe_words(std::uint64_t k, double target, double rate = default_rate);
// The smallest n with 1 - P(n) < target: past n words the limit has tripped
// except with probability below target.
std::uint64_t sure_words(std::uint64_t k, double target, double rate = default_rate);

struct accuracy_result {
  std::uint64_t k;
  double rate;
  double target;
  double limit_words;        // l = k / p
  std::uint64_t safe_words;  // N: P(N) <= target < P(N + 1)
  double probability;        // P(N)
  double next_probability;   // P(N + 1)
  double relative_error;     // (l - N) / N; +infinity when N = 0
};
accuracy_result accuracy(std::uint64_t k, double target, double rate = default_rate);

// ---------------------------------------------------------------------------
// Minimal rate (README §3): the smallest rate p = k / l, k = 1, 2, ..., with
// l = ratio * N words, such that P_p(N) <= target. Rates between two such
// values make l a non-integer number of sample spacings; README §3 says why
// the search is over k.
struct min_rate_result {
  std::uint64_t safe_words;  // N
  double target;
  double ratio;
  double limit_words;  // l = ratio * N
  std::uint64_t k;     // samples that trip the limit
  double rate;         // k / l
  double probability;  // P_rate(N) <= target
};
min_rate_result min_rate(std::uint64_t safe_words, double target, double ratio = 10);

// ---------------------------------------------------------------------------
// The curve P(n) of a sampled allocation limit, for plots. `from` and `to`
// are in units of l; points >= 2 evenly spaced words (rounded to integers).
struct curve_point {
  std::uint64_t words;
  double probability;
};
struct curve {
  std::uint64_t k;
  double rate;
  double limit_words;
  std::vector<curve_point> points;
};
curve cumulative(std::uint64_t k, double rate, double from, double to, std::size_t points);
// The range the CLI plots by default: from the 1e-6 to the 1 - 1e-6 quantile
// of the interruption point, widened to multiples of a round step of l.
struct range {
  double from;
  double to;
};
range default_cumulative_range(std::uint64_t k, double rate = default_rate);

// ---------------------------------------------------------------------------
// limit_memory (README §4). The engine charges each sample of a live block
// as S words and credits it back when the block is freed; it trips when the
// estimate S * (samples in live blocks) exceeds the limit of M words, that is
// when the live samples reach K = floor(M p) + 1.

// K for a limit of `limit_bytes` bytes (M = limit_bytes / 8 words). M p is
// taken as the integer it is meant to be when it is one up to rounding
// (relative 1e-9), so that 1 MiB at rate 1e-4 needs floor(13.1072) + 1 = 14
// samples and 80000 bytes at 1e-4 needs 2, not 1 or 3 by a rounding error.
std::uint64_t memory_trip_samples(double limit_bytes, double rate = default_rate);

// Overshoot: live memory grows without frees; the trip is at the first n
// with Binomial(n, p) >= K, the law of a sampled allocation limit with k = K.
struct memory_overshoot_result {
  double rate;
  double limit_bytes;
  double limit_words;  // M = limit_bytes / 8
  std::uint64_t k;     // K = floor(M p) + 1
  double target;
  std::uint64_t early_words;  // largest n with P(tripped by n words) <= target
  std::uint64_t late_words;   // smallest n with P(not tripped by n words) < target
  double mean_words;          // E[trip point] = K / p
  double overshoot_bytes;     // 8 * late_words - limit_bytes
  double relative_overshoot;  // (late_words - M) / M
};
memory_overshoot_result memory_overshoot(double limit_bytes, double target,
                                         double rate = default_rate);

// False trips: live memory stays at most fraction * M words while the task
// allocates allocated_bytes in all.
struct memory_false_trip_result {
  double rate;
  double limit_bytes;
  std::uint64_t k;  // K
  double fraction;
  double allocated_bytes;
  std::uint64_t live_words;  // L = floor(fraction * M)
  double expected_samples;   // A p: the expected number of checks
  double per_check;          // P(Binomial(L, p) >= K): one snapshot over the limit
  double per_sample;         // P(Binomial(L - 1, p) >= K - 1): a check at a sample
  double false_trip_bound;   // min(1, A p * per_sample) >= P(any false trip)
};
memory_false_trip_result memory_false_trip(double limit_bytes, double fraction,
                                           double allocated_bytes, double rate = default_rate);

}  // namespace memlimits::stats
