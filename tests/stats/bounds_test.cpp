// Unit tests of stats/ (bounds.hpp, svg.hpp) and of the memlimits-stats CLI.
// No randomness: every check is deterministic.
//
// Where the expected values come from, so that the tests do not check Boost
// against itself:
//  * binomial tails summed term by term in long double from lgammal
//    (reference_tail below), for small n and in the 1e-50 tails;
//  * exact small cases in closed form ((1 - p)^n, p^k, ...);
//  * values computed once with mpmath at 40 digits (quoted with 17 digits;
//    the rate is the double nearest 1e-4, as in the library), checked to
//    1e-12 relative;
//  * an exact dynamic program over a small workload for the limit_memory
//    false-trip bound;
//  * memprof-limits' published figures (stats/README.md cites them).
// Depends on GoogleTest, Boost.Math (one cross-check) and memlimits::stats;
// the CLI's path comes from the build (MEMLIMITS_STATS_CLI).
#include "stats/bounds.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/math/distributions/binomial.hpp>
#include <gtest/gtest.h>

#include "stats/svg.hpp"

namespace {

namespace ms = memlimits::stats;

constexpr double kib = 1024, mib = 1024 * kib, gib = 1024 * mib, tib = 1024 * gib;

// P(Binomial(n, p) >= k) (upper = true) or P(Binomial(n, p) < k), by direct
// summation of the pmf in long double, each term from lgammal.
long double reference_tail(std::uint64_t n, std::uint64_t k, long double p, bool upper) {
  long double sum = 0;
  const long double log_p = std::log(p), log_q = std::log1p(-p);
  const std::uint64_t first = upper ? k : 0, last = upper ? n : std::min(n, k - 1);
  if (upper && k > n) return 0;
  for (std::uint64_t j = first; j <= last; ++j) {
    const auto nl = static_cast<long double>(n), jl = static_cast<long double>(j);
    long double log_term = std::lgamma(nl + 1) - std::lgamma(jl + 1) - std::lgamma(nl - jl + 1);
    if (j > 0) log_term += jl * log_p;
    if (n > j) log_term += (nl - jl) * log_q;
    sum += std::exp(log_term);
  }
  return sum;
}

void expect_relative(double actual, long double expected, double tolerance) {
  if (expected == 0) {
    EXPECT_EQ(actual, 0);
    return;
  }
  // Below the range of doubles (e.g. 0.7^5000): only ask for a tiny result.
  if (expected < 1e-290L) {
    EXPECT_LT(actual, 1e-290);
    return;
  }
  EXPECT_LE(std::fabs((actual - expected) / expected), tolerance)
      << "actual " << actual << ", expected " << static_cast<double>(expected);
}

// Expects std::invalid_argument whose message contains every fragment (the
// parameter's name and its value).
void expect_invalid(const std::function<void()>& call,
                    std::initializer_list<const char*> fragments) {
  try {
    call();
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& error) {
    const std::string message = error.what();
    for (const char* fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "message '" << message << "' lacks '" << fragment << "'";
    }
  }
}

const std::vector<std::uint64_t> table_k = {1,     2,      5,      10,     20,     50,    100,
                                            200,   500,    1000,   2000,   5000,   10000, 20000,
                                            50000, 100000, 200000, 500000, 1000000};
const std::vector<double> table_t = {1e-9, 4e-15, 1e-50};

// ---------------------------------------------------------------------------
// The sampled allocation limit's law.

TEST(bounds_law, InterruptedMatchesDirectSummation) {
  for (double p : {1e-4, 0.01, 0.3, 0.9}) {
    for (std::uint64_t n : {1, 7, 50, 500, 5000}) {
      for (std::uint64_t k : {1, 2, 5, 20}) {
        SCOPED_TRACE("p=" + std::to_string(p) + " n=" + std::to_string(n) +
                     " k=" + std::to_string(k));
        expect_relative(ms::interrupted(k, n, p), reference_tail(n, k, p, true), 1e-11);
        expect_relative(ms::not_interrupted(k, n, p), reference_tail(n, k, p, false), 1e-11);
      }
    }
  }
}

TEST(bounds_law, InterruptedMatchesBoostBinomial) {
  for (double p : {1e-4, 0.05}) {
    for (std::uint64_t n : {100, 10000, 1000000}) {
      for (std::uint64_t k : {1, 3, 30}) {
        const boost::math::binomial_distribution<double> law(static_cast<double>(n), p);
        const double expected =
            boost::math::cdf(boost::math::complement(law, static_cast<double>(k - 1)));
        expect_relative(ms::interrupted(k, n, p), expected, 1e-12);
      }
    }
  }
}

TEST(bounds_law, ClosedForms) {
  const double p = 1e-4;
  // k = 1: the first sample, the global limit's law.
  for (std::uint64_t n : {1, 10, 10240, 1000000}) {
    expect_relative(ms::not_interrupted(1, n, p), std::pow(1.0L - p, static_cast<long double>(n)),
                    1e-12);
  }
  // n = k: every word sampled.
  expect_relative(ms::interrupted(5, 5, 0.01), std::pow(0.01L, 5), 1e-12);
  EXPECT_EQ(ms::interrupted(5, 4, 0.01), 0);
  EXPECT_EQ(ms::not_interrupted(5, 4, 0.01), 1);
  // Rate 1: the limit is exact.
  EXPECT_EQ(ms::interrupted(7, 6, 1), 0);
  EXPECT_EQ(ms::interrupted(7, 7, 1), 1);
}

TEST(bounds_law, KnownValuesFromMpmath) {
  const double p = 1e-4;
  expect_relative(ms::interrupted(5, 417, p), 9.9115720883441983e-10L, 1e-12);
  expect_relative(ms::interrupted(20, 17182, p), 3.9998931456786119e-15L, 1e-12);
  expect_relative(ms::interrupted(20, 272, p), 9.6369966164419434e-51L, 1e-12);
  expect_relative(ms::interrupted(1000, 5987629, p), 9.999348012078196e-51L, 1e-12);
  expect_relative(ms::interrupted(14, 131072, p), 0.43873984668326947L, 1e-12);
  expect_relative(ms::interrupted(2, 20000, p), 0.59400768449520714L, 1e-12);
}

TEST(bounds_law, DeepTailsDoNotUnderflow) {
  // 1e-50 and far below, in both directions, against direct summation.
  expect_relative(ms::interrupted(60, 2000, 1e-3), reference_tail(2000, 60, 1e-3L, true), 1e-10);
  expect_relative(ms::not_interrupted(25, 200000, 1e-3), reference_tail(200000, 25, 1e-3L, false),
                  1e-10);
  for (double value : {ms::interrupted(60, 2000, 1e-3), ms::not_interrupted(25, 200000, 1e-3)}) {
    EXPECT_GT(value, 1e-80);
    EXPECT_LT(value, 1e-50);
  }
}

TEST(bounds_law, MonotoneInWordsAndSamples) {
  const double p = 1e-3;
  double previous = 0;
  for (std::uint64_t n = 0; n <= 40000; n += 100) {
    const double value = ms::interrupted(10, n, p);
    EXPECT_GE(value, previous) << "n=" << n;
    previous = value;
  }
  for (std::uint64_t k = 1; k < 60; ++k) {
    EXPECT_GT(ms::interrupted(k, 20000, p), ms::interrupted(k + 1, 20000, p)) << "k=" << k;
  }
}

// ---------------------------------------------------------------------------
// Global limit.

TEST(bounds_global, ExactLawAndBound) {
  for (double p : {1e-4, 0.01, 0.5}) {
    for (std::uint64_t n : {0, 1, 100, 10240, 1000000}) {
      const long double exact = std::pow(1.0L - p, static_cast<long double>(n));
      expect_relative(ms::global_not_interrupted(n, p), exact, 1e-12);
      expect_relative(ms::global_not_interrupted_bound(n, p),
                      std::exp(-static_cast<long double>(n) * p), 1e-12);
      // 1 - p <= e^{-p}: memprof-limits' figure is an upper bound.
      EXPECT_LE(ms::global_not_interrupted(n, p), ms::global_not_interrupted_bound(n, p));
    }
  }
  EXPECT_EQ(ms::global_not_interrupted(3, 1), 0);
}

TEST(bounds_global, WordsAreTheSmallest) {
  // Values from mpmath: floor(log T / log1p(-p)) + 1 and floor(-log T / p) + 1.
  const struct {
    double target;
    std::uint64_t words, bound_words;
  } cases[] = {{1e-9, 207223, 207233}, {1e-14, 322346, 322362}, {1e-50, 1151235, 1151293}};
  for (const auto& c : cases) {
    const auto r = ms::global_limit(c.target, 1e-4);
    EXPECT_EQ(r.words, c.words);
    EXPECT_EQ(r.bytes, 8 * c.words);
    EXPECT_EQ(r.bound_words, c.bound_words);
    EXPECT_LT(ms::global_not_interrupted(r.words, 1e-4), c.target);
    EXPECT_GE(ms::global_not_interrupted(r.words - 1, 1e-4), c.target);
  }
  for (double p : {0.3, 1e-2, 1e-6}) {
    for (double t : {0.5, 1e-3, 1e-20, 1e-300}) {
      const auto r = ms::global_limit(t, p);
      const long double log_q = std::log1p(-static_cast<long double>(p));
      EXPECT_LT(static_cast<long double>(r.words) * log_q, std::log(static_cast<long double>(t)));
      EXPECT_GE(static_cast<long double>(r.words - 1) * log_q,
                std::log(static_cast<long double>(t)));
      EXPECT_LE(r.words, r.bound_words);
    }
  }
  EXPECT_EQ(ms::global_limit(1e-9, 1).words, 1);
}

// ---------------------------------------------------------------------------
// memprof-limits' published analysis at p = 1e-4 per word, 64-bit.

TEST(bounds_published, GlobalLimitClaims) {
  const double p = 1e-4;
  // "more than 64% probability that the function has been interrupted after
  // 80 kiB": 10240 words, 1 - (1 - p)^n = 0.640863 (bound 1 - e^{-1.024}).
  const double interrupted = 1 - ms::global_not_interrupted(10240, p);
  EXPECT_GT(interrupted, 0.64);
  EXPECT_NEAR(interrupted, 0.6408629481843937, 1e-12);
  EXPECT_GT(1 - ms::global_not_interrupted_bound(10240, p), 0.64);
  // "less than 1e-9 ... after 1.62 MiB", "1e-14 after 2.5 MiB", "1e-50 after
  // 8.8 MiB": the probability at those sizes (mpmath), and the smallest sizes
  // are below them.
  const struct {
    double bytes, target;
    long double probability;
  } claims[] = {{1.62 * mib, 1e-9, 5.995979577153892e-10L},
                {2.5 * mib, 1e-14, 5.8657941957075652e-15L},
                {8.8 * mib, 1e-50, 8.0258869653790257e-51L}};
  for (const auto& claim : claims) {
    const auto words = static_cast<std::uint64_t>(std::ceil(claim.bytes / 8));
    const double probability = ms::global_not_interrupted(words, p);
    EXPECT_LT(probability, claim.target);
    expect_relative(probability, claim.probability, 1e-12);
    EXPECT_LT(ms::global_not_interrupted_bound(words, p), claim.target);
    EXPECT_LE(static_cast<double>(ms::global_limit(claim.target, p).bytes), claim.bytes);
  }
}

TEST(bounds_published, AccuracyTableIsExact) {
  for (double t : table_t) {
    double previous_error = std::numeric_limits<double>::infinity();
    std::uint64_t previous_n = 0;
    for (std::uint64_t k : table_k) {
      SCOPED_TRACE("k=" + std::to_string(k) + " t=" + std::to_string(t));
      const auto r = ms::accuracy(k, t, 1e-4);
      EXPECT_EQ(r.limit_words, 10000.0 * static_cast<double>(k));
      EXPECT_GE(r.safe_words, k - 1);
      // N maximal: P(N) <= t < P(N + 1).
      EXPECT_LE(r.probability, t);
      EXPECT_GT(r.next_probability, t);
      EXPECT_EQ(r.probability, ms::interrupted(k, r.safe_words, 1e-4));
      // The step from P(N) to P(N + 1) is far above ibeta's rounding, so
      // that N is exact and not an artefact of the last digits.
      if (r.probability > 0) {
        EXPECT_GT(r.next_probability / r.probability - 1, 1e-9);
      }
      // More samples: a larger safe allocation, a smaller relative error.
      EXPECT_GE(r.safe_words, previous_n);
      if (k > 1) {
        EXPECT_LT(r.relative_error, previous_error);
      }
      previous_error = r.relative_error;
      previous_n = r.safe_words;
    }
  }
  // Rows checked against mpmath (P(N) <= t < P(N + 1) at 40 digits).
  EXPECT_EQ(ms::accuracy(5, 1e-9).safe_words, 417);
  EXPECT_EQ(ms::accuracy(20, 4e-15).safe_words, 17182);
  EXPECT_EQ(ms::accuracy(20, 1e-50).safe_words, 272);
  EXPECT_EQ(ms::accuracy(1000, 1e-50).safe_words, 5987629);
  // memprof-limits: "reasonably accurate (l less than an order of magnitude
  // greater than N) starting at around N = 20 kw, for 4e-15, around l = 200 kw".
  const auto r20 = ms::accuracy(20, 4e-15);
  EXPECT_NEAR(static_cast<double>(r20.safe_words), 20000, 3000);
  EXPECT_NEAR(r20.limit_words / static_cast<double>(r20.safe_words), 10, 2);
}

TEST(bounds_accuracy, SmallCasesInClosedForm) {
  // k = 1: N = floor(log1p(-t) / log1p(-p)).
  EXPECT_EQ(ms::safe_words(1, 0.5, 1e-4),
            static_cast<std::uint64_t>(std::floor(std::log1p(-0.5L) / std::log1p(-1e-4L))));
  // N = 0 gives an infinite relative error.
  const auto r = ms::accuracy(1, 1e-9, 1e-4);
  EXPECT_EQ(r.safe_words, 0);
  EXPECT_TRUE(std::isinf(r.relative_error));
  // Rate 1: every word sampled, N = k - 1.
  EXPECT_EQ(ms::safe_words(3, 0.5, 1), 2);
  // Monotone in the target.
  EXPECT_LT(ms::safe_words(50, 1e-50), ms::safe_words(50, 1e-9));
}

TEST(bounds_accuracy, SureWordsAreTheSmallest) {
  for (std::uint64_t k : {1, 14, 1000}) {
    for (double t : table_t) {
      const std::uint64_t n = ms::sure_words(k, t, 1e-4);
      EXPECT_LT(ms::not_interrupted(k, n, 1e-4), t);
      EXPECT_GE(ms::not_interrupted(k, n - 1, 1e-4), t);
    }
  }
  EXPECT_EQ(ms::sure_words(1, 1e-9, 1e-4), ms::global_limit(1e-9, 1e-4).words);
}

// ---------------------------------------------------------------------------
// Minimal rate.

TEST(bounds_min_rate, SmallestSafeK) {
  for (double t : {1e-9, 1e-14, 1e-50}) {
    for (double bytes : {1 * kib, 10 * kib, 1 * mib, 1 * gib, 1 * tib}) {
      const auto n = static_cast<std::uint64_t>(bytes / 8);
      const auto r = ms::min_rate(n, t, 10);
      SCOPED_TRACE("N=" + std::to_string(n) + " t=" + std::to_string(t));
      EXPECT_DOUBLE_EQ(r.limit_words, 10.0 * static_cast<double>(n));
      EXPECT_DOUBLE_EQ(r.rate, static_cast<double>(r.k) / r.limit_words);
      EXPECT_LE(r.probability, t);
      EXPECT_EQ(r.probability, ms::interrupted(r.k, n, r.rate));
      if (r.k > 1) {
        EXPECT_GT(ms::interrupted(r.k - 1, n, static_cast<double>(r.k - 1) / r.limit_words), t);
      }
    }
  }
  // Rows of the README's table (1 KiB and 1 TiB).
  EXPECT_EQ(ms::min_rate(128, 1e-9).k, 13);
  EXPECT_EQ(ms::min_rate(std::uint64_t{1} << 37, 1e-9).k, 14);
  EXPECT_EQ(ms::min_rate(std::uint64_t{1} << 37, 1e-14).k, 22);
  EXPECT_EQ(ms::min_rate(std::uint64_t{1} << 37, 1e-50).k, 80);
}

TEST(bounds_min_rate, ProbabilityDecreasesInK) {
  // The search doubles then bisects over k: it relies on P_{k/l}(N)
  // decreasing in k. Checked over the range the tables use and beyond.
  for (std::uint64_t n : {128, 12800, 1310720}) {
    for (double ratio : {10.0, 2.0}) {
      const double limit = ratio * static_cast<double>(n);
      const std::uint64_t last =
          std::min<std::uint64_t>(ratio == 10 ? 400 : 1000, static_cast<std::uint64_t>(limit));
      double previous = 2;
      for (std::uint64_t k = 1; k <= last; ++k) {
        const double value = ms::interrupted(k, n, static_cast<double>(k) / limit);
        if (value == 0) break;  // beyond the double range: nothing left to order
        EXPECT_LT(value, previous) << "N=" << n << " ratio=" << ratio << " k=" << k;
        previous = value;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Curves.

TEST(bounds_cumulative, CurveIsMonotoneAndSpansTheLaw) {
  const auto range = ms::default_cumulative_range(20, 1e-4);
  EXPECT_DOUBLE_EQ(range.from, 0);
  EXPECT_DOUBLE_EQ(range.to, 2.5);
  const auto range1000 = ms::default_cumulative_range(1000, 1e-4);
  EXPECT_DOUBLE_EQ(range1000.from, 0.85);
  EXPECT_DOUBLE_EQ(range1000.to, 1.2);
  const auto c = ms::cumulative(20, 1e-4, range.from, range.to, 401);
  ASSERT_EQ(c.points.size(), 401u);
  EXPECT_EQ(c.points.front().words, 0);
  EXPECT_EQ(c.points.back().words, 500000);
  EXPECT_LT(c.points.front().probability, 1e-6);
  EXPECT_GT(c.points.back().probability, 1 - 1e-6);
  for (std::size_t i = 1; i < c.points.size(); ++i) {
    EXPECT_GT(c.points[i].words, c.points[i - 1].words);
    EXPECT_GE(c.points[i].probability, c.points[i - 1].probability);
  }
  // Small limits: points that round to the same word count appear once.
  EXPECT_LE(ms::cumulative(2, 0.5, 0, 3, 100).points.size(), 13u);
}

// ---------------------------------------------------------------------------
// limit_memory.

TEST(bounds_memory, TripSamples) {
  EXPECT_EQ(ms::memory_trip_samples(1 * mib, 1e-4), 14);    // M p = 13.1072
  EXPECT_EQ(ms::memory_trip_samples(64 * mib, 1e-4), 839);  // M p = 838.8608
  // M p = 1 and 3 up to rounding: the estimate must exceed the limit, so one
  // more sample than M p.
  EXPECT_EQ(ms::memory_trip_samples(80000, 1e-4), 2);
  EXPECT_EQ(ms::memory_trip_samples(240000, 1e-4), 4);
  EXPECT_EQ(ms::memory_trip_samples(8, 1e-4), 1);  // below one sample spacing
}

TEST(bounds_memory, OvershootIsTheAllocationLimitLawWithK) {
  const auto r = ms::memory_overshoot(64 * mib, 1e-9, 1e-4);
  EXPECT_EQ(r.k, 839);
  EXPECT_DOUBLE_EQ(r.limit_words, 8388608);
  EXPECT_EQ(r.early_words, ms::safe_words(839, 1e-9, 1e-4));
  EXPECT_EQ(r.late_words, ms::sure_words(839, 1e-9, 1e-4));
  EXPECT_LE(ms::interrupted(839, r.early_words, 1e-4), 1e-9);
  EXPECT_GT(ms::interrupted(839, r.early_words + 1, 1e-4), 1e-9);
  EXPECT_LT(ms::not_interrupted(839, r.late_words, 1e-4), 1e-9);
  EXPECT_DOUBLE_EQ(r.mean_words, 8390000);
  EXPECT_LT(static_cast<double>(r.early_words), r.limit_words);
  EXPECT_GT(static_cast<double>(r.late_words), r.limit_words);
  EXPECT_DOUBLE_EQ(r.overshoot_bytes, 8.0 * static_cast<double>(r.late_words) - 64 * mib);
  EXPECT_DOUBLE_EQ(r.relative_overshoot,
                   (static_cast<double>(r.late_words) - r.limit_words) / r.limit_words);
}

TEST(bounds_memory, FalseTripBoundFormula) {
  const auto r = ms::memory_false_trip(64 * mib, 0.5, 1 * tib, 1e-4);
  EXPECT_EQ(r.k, 839);
  EXPECT_EQ(r.live_words, 4194304);
  EXPECT_DOUBLE_EQ(r.expected_samples, tib / 8 * 1e-4);
  expect_relative(r.per_check, ms::interrupted(839, 4194304, 1e-4), 0);
  expect_relative(r.per_sample, ms::interrupted(838, 4194303, 1e-4), 0);
  EXPECT_DOUBLE_EQ(r.false_trip_bound, r.expected_samples * r.per_sample);
  EXPECT_LT(r.false_trip_bound, 1e-60);
  // Monotone in the fraction and in the allocation; capped at 1.
  double previous = 0;
  for (double f : {0.1, 0.3, 0.5, 0.7, 0.9, 1.0}) {
    const double bound = ms::memory_false_trip(1 * mib, f, 1 * gib, 1e-4).false_trip_bound;
    EXPECT_GE(bound, previous) << "f=" << f;
    EXPECT_LE(bound, 1);
    previous = bound;
  }
  EXPECT_LE(ms::memory_false_trip(16 * mib, 0.5, 1 * gib, 1e-4).false_trip_bound,
            ms::memory_false_trip(16 * mib, 0.5, 1 * tib, 1e-4).false_trip_bound);
  EXPECT_EQ(ms::memory_false_trip(16 * mib, 0.5, 0, 1e-4).false_trip_bound, 0);
  // K = 1: any sample trips.
  EXPECT_EQ(ms::memory_false_trip(8, 1, 800, 1e-4).per_sample, 1);
}

TEST(bounds_memory, FalseTripBoundHoldsOnAnExactWorkload) {
  // A workload of one-word blocks, each freed when L newer ones are live
  // (live memory exactly L words after each allocation, the worst case for
  // that bound). The probability of a trip is computed exactly by dynamic
  // programming over the sampled bits of the L - 1 other live words; it must
  // not exceed the bound of stats/README.md §4.
  const double p = 0.05;
  const double limit_bytes = 8 * 60;  // M = 60 words, M p = 3: K = 4
  const int live = 12;                // L = floor(0.2 * 60)
  const int allocations = 300;
  const auto bound = ms::memory_false_trip(limit_bytes, 0.2, 8.0 * allocations, p);
  ASSERT_EQ(bound.k, 4);
  ASSERT_EQ(bound.live_words, static_cast<std::uint64_t>(live));
  const unsigned states = 1u << (live - 1);
  std::vector<long double> probability(states, 0), next(states);
  probability[0] = 1;  // nothing sampled yet, not tripped
  for (int i = 0; i < allocations; ++i) {
    std::fill(next.begin(), next.end(), 0.0L);
    for (unsigned state = 0; state < states; ++state) {
      if (probability[state] == 0) continue;
      // The new word not sampled: no check.
      next[(state << 1) & (states - 1)] += probability[state] * (1 - p);
      // Sampled: the check sees the other live words' samples plus this one.
      if (__builtin_popcount(state) + 1 < static_cast<int>(bound.k)) {
        next[((state << 1) | 1) & (states - 1)] += probability[state] * p;
      }  // else tripped: that mass leaves
    }
    probability.swap(next);
  }
  long double survive = 0;
  for (long double value : probability) survive += value;
  const double trip = static_cast<double>(1 - survive);
  EXPECT_GT(trip, 0);
  EXPECT_LE(trip, bound.false_trip_bound);
  // And the bound is not vacuous here: within a small factor of the truth.
  EXPECT_LT(bound.false_trip_bound, 1);
  EXPECT_LT(bound.false_trip_bound, 10 * trip);
  std::printf("exact workload: P(false trip) = %.6g, bound %.6g\n", trip, bound.false_trip_bound);
}

// ---------------------------------------------------------------------------
// Argument checking.

TEST(bounds_arguments, TargetsOutsideTheOpenUnitInterval) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect_invalid([] { (void)ms::global_limit(0); }, {"target", "got 0"});
  expect_invalid([] { (void)ms::global_limit(1); }, {"target", "got 1"});
  expect_invalid([] { (void)ms::accuracy(10, 1.5); }, {"target", "1.5"});
  expect_invalid([] { (void)ms::accuracy(10, -1e-9); }, {"target", "-1e-09"});
  expect_invalid([&] { (void)ms::safe_words(10, nan); }, {"target", "nan"});
  expect_invalid([] { (void)ms::min_rate(100, 2); }, {"target", "2"});
  expect_invalid([] { (void)ms::memory_overshoot(1e6, 0); }, {"target", "0"});
}

TEST(bounds_arguments, RatesOutsideZeroOne) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect_invalid([] { (void)ms::global_limit(1e-9, 0); }, {"rate", "got 0"});
  expect_invalid([] { (void)ms::global_limit(1e-9, 1.5); }, {"rate", "1.5"});
  expect_invalid([] { (void)ms::global_limit(1e-9, -0.1); }, {"rate", "-0.1"});
  expect_invalid([&] { (void)ms::interrupted(3, 10, nan); }, {"rate", "nan"});
  expect_invalid([] { (void)ms::accuracy(3, 1e-9, 2); }, {"rate", "2"});
  expect_invalid([] { (void)ms::memory_trip_samples(1e6, 0); }, {"rate", "0"});
  expect_invalid(
      [&] { (void)ms::global_not_interrupted(10, std::numeric_limits<double>::infinity()); },
      {"rate", "inf"});
}

TEST(bounds_arguments, SamplesBelowOne) {
  expect_invalid([] { (void)ms::interrupted(0, 10, 0.1); }, {"k", "got 0"});
  expect_invalid([] { (void)ms::accuracy(0, 1e-9); }, {"k", "got 0"});
  expect_invalid([] { (void)ms::cumulative(0, 1e-4, 0, 2, 10); }, {"k", "got 0"});
  expect_invalid([] { (void)ms::sure_words(0, 1e-9); }, {"k", "got 0"});
}

TEST(bounds_arguments, OtherParameters) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect_invalid([] { (void)ms::min_rate(100, 1e-9, 1); }, {"ratio", "got 1"});
  expect_invalid([&] { (void)ms::min_rate(100, 1e-9, nan); }, {"ratio", "nan"});
  expect_invalid([] { (void)ms::min_rate(0, 1e-9); }, {"safe_words", "got 0"});
  expect_invalid([] { (void)ms::memory_trip_samples(0); }, {"limit_bytes", "got 0"});
  expect_invalid([&] { (void)ms::memory_overshoot(nan, 1e-9); }, {"limit_bytes", "nan"});
  expect_invalid([] { (void)ms::memory_false_trip(1e6, 0, 1e9); }, {"fraction", "got 0"});
  expect_invalid([] { (void)ms::memory_false_trip(1e6, 1.5, 1e9); }, {"fraction", "1.5"});
  expect_invalid([] { (void)ms::memory_false_trip(1e6, 0.5, -1); }, {"allocated_bytes", "-1"});
  expect_invalid([] { (void)ms::cumulative(10, 1e-4, 2, 1, 10); }, {"to", "1"});
  expect_invalid([] { (void)ms::cumulative(10, 1e-4, 0, 1, 1); }, {"points", "1"});
  // Answers beyond 2^53 words are refused, not approximated.
  expect_invalid([] { (void)ms::global_limit(1e-9, 1e-300); }, {"2^53"});
}

// ---------------------------------------------------------------------------
// SVG.

TEST(bounds_svg, EscapesAndTicks) {
  EXPECT_EQ(ms::xml_escape(R"(a<b & "c" > 'd')"), "a&lt;b &amp; &quot;c&quot; &gt; &apos;d&apos;");
  const auto ticks = ms::nice_ticks(0.85, 1.2, 8);
  ASSERT_FALSE(ticks.empty());
  EXPECT_NEAR(ticks.front(), 0.85, 1e-12);
  EXPECT_NEAR(ticks.back(), 1.2, 1e-12);
  EXPECT_EQ(ms::nice_ticks(0, 1, 5).size(), 6u);  // 0, 0.2, ..., 1
}

TEST(bounds_svg, CumulativePlotIsAStandaloneSvgDocument) {
  const auto c = ms::cumulative(20, 1e-4, 0, 2.5, 101);
  std::ostringstream out;
  ms::write_svg(out, ms::cumulative_plot(c, 0, 2.5));
  const std::string svg = out.str();
  EXPECT_EQ(svg.rfind(R"(<?xml version="1.0" encoding="UTF-8"?>)", 0), 0u);
  EXPECT_NE(svg.find(R"(<svg xmlns="http://www.w3.org/2000/svg")"), std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (auto at = svg.find(needle); at != std::string::npos; at = svg.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<text"), count("</text>"));
  EXPECT_EQ(count("<g"), count("</g>"));
  EXPECT_EQ(count("<polyline"), 1u);
  EXPECT_NE(svg.find("P(interrupted after n words)"), std::string::npos);
  EXPECT_NE(svg.find(">2.5</text>"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

// ---------------------------------------------------------------------------
// The CLI, run as a process.

struct run_result {
  int exit_code;
  std::string output;  // stdout and stderr
};

run_result run_cli(const std::string& arguments) {
  const std::string command = std::string("'") + MEMLIMITS_STATS_CLI + "' " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char buffer[4096];
  for (std::size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

void expect_json_keys(const std::string& arguments, std::initializer_list<const char*> keys) {
  SCOPED_TRACE(arguments);
  const auto r = run_cli(arguments + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ASSERT_FALSE(r.output.empty());
  const std::string line = r.output.substr(0, r.output.find('\n'));
  EXPECT_EQ(line.front(), '{');
  EXPECT_EQ(line.back(), '}');
  for (const char* key : keys) {
    EXPECT_NE(line.find(std::string("\"") + key + "\":"), std::string::npos)
        << "no key " << key << " in " << line;
  }
}

TEST(bounds_cli, JsonKeysOfEverySubcommand) {
  expect_json_keys("global --target 1e-9", {"rate", "target", "words", "bytes"});
  expect_json_keys("global --bytes 80KiB", {"rate", "words", "bytes", "probability", "bound"});
  expect_json_keys("accuracy --samples 20 --target 4e-15",
                   {"k", "limit_words", "safe_words", "probability", "relative_error"});
  expect_json_keys("min-rate --safe-words 128 --target 1e-9 --ratio 10",
                   {"safe_words", "target", "ratio", "limit_words", "k", "rate", "probability"});
  expect_json_keys("cumulative --samples 20 --points 5",
                   {"k", "rate", "words", "relative", "probability"});
  expect_json_keys(
      "memory --limit 64MiB --fraction 0.5 --allocated 1TiB",
      {"rate", "limit_bytes", "limit_words", "k", "target", "early_words", "late_words",
       "mean_words", "overshoot_bytes", "relative_overshoot", "fraction", "allocated_bytes",
       "live_words", "expected_samples", "per_check", "per_sample", "false_trip_bound"});
}

TEST(bounds_cli, ValuesAndFormats) {
  auto r = run_cli("global --target 1e-9 --json");
  EXPECT_EQ(r.output, "{\"rate\":1e-04,\"target\":1e-09,\"words\":207223,\"bytes\":1657784}\n");
  r = run_cli("accuracy --samples 1 --target 1e-9 --json");  // N = 0: infinite error
  EXPECT_NE(r.output.find("\"relative_error\":null"), std::string::npos) << r.output;
  r = run_cli("cumulative --samples 20 --points 3");
  EXPECT_EQ(r.output.rfind("words,relative,probability\n", 0), 0u) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 4);
  r = run_cli("cumulative --samples 20 --points 3 --json");
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 3);
  r = run_cli("accuracy --samples 20 --target 4e-15");  // the readable table
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("safe_words"), std::string::npos);
  EXPECT_NE(r.output.find("17182"), std::string::npos);
  r = run_cli("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("min-rate"), std::string::npos);
  r = run_cli("memory --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--fraction"), std::string::npos);
}

TEST(bounds_cli, SvgOutput) {
  const std::string path = ::testing::TempDir() + "bounds_test_cumulative.svg";
  const auto r = run_cli("cumulative --samples 1000 --svg '" + path + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  FILE* file = std::fopen(path.c_str(), "r");
  ASSERT_NE(file, nullptr);
  std::string svg;
  char buffer[4096];
  for (std::size_t n; (n = fread(buffer, 1, sizeof buffer, file)) > 0;) svg.append(buffer, n);
  std::fclose(file);
  std::remove(path.c_str());
  EXPECT_NE(svg.find("<svg xmlns="), std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
}

TEST(bounds_cli, BadArgumentsExitWithTwoAndNameTheParameter) {
  const struct {
    const char* arguments;
    const char* message;
  } cases[] = {
      {"global --target 0", "--target must be in (0, 1), got 0"},
      {"global --target 1", "--target must be in (0, 1), got 1"},
      {"global --target nan", "--target must be in (0, 1), got nan"},
      {"global --target garbage", "--target must be a number, got 'garbage'"},
      {"global --target 1e-9 --rate 0", "--rate must be in (0, 1], got 0"},
      {"global --target 1e-9 --rate 1.5", "--rate must be in (0, 1], got 1.5"},
      {"global --target 1e-9 --rate nan", "--rate must be in (0, 1], got nan"},
      {"accuracy --samples 0 --target 1e-9", "--samples must be an integer in [1, 2^53], got 0"},
      {"accuracy --samples 2.5 --target 1e-9",
       "--samples must be an integer in [1, 2^53], got 2.5"},
      {"accuracy --samples 20", "accuracy needs --target"},
      {"min-rate --safe-words 128 --target 1e-9 --ratio 0.5", "--ratio must be finite and > 1"},
      {"cumulative --samples -1", "--samples must be an integer in [1, 2^53], got -1"},
      {"memory --limit 0", "--limit must be a size > 0 in bytes, got 0"},
      {"memory --limit 1MiB --fraction 0.5", "--fraction and --allocated together"},
      {"global --target", "--target needs a value"},
      {"global --frobnicate 3", "unknown option --frobnicate"},
      {"frobnicate", "unknown command 'frobnicate'"},
      {"", "usage: memlimits-stats"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.arguments);
    const auto r = run_cli(c.arguments);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
  }
}

}  // namespace
