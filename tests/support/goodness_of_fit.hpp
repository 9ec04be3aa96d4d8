// tests/support/goodness_of_fit.hpp — the statistical checks of the tests in
// tests/stats/: exact two-sided bands on integer statistics, and the fit of
// i.i.d. draws to a discrete law by per-bin exact counts, Pearson's
// chi-square and the DKW bound. Each test file states, in its header
// comment, how its false-failure budget (kTestAlpha) is split over these
// checks; the levels here are exact except the chi-square's (nominal).
// Also the scale of sample sizes under the sanitizers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <boost/math/distributions/binomial.hpp>
#include <boost/math/distributions/chi_squared.hpp>
#include <gtest/gtest.h>

#include "support/sanitizers.hpp"

namespace memlimits::testing {

// Sample sizes are scaled down under ASan and TSan; every bound is computed
// from the sizes actually used, so it stays exact.
inline constexpr double kScale = sanitized ? 0.2 : 1.0;

// The false-failure budget of one test case.
inline constexpr double kTestAlpha = 1e-9;
// Least expected count of a chi-square bin.
inline constexpr double kMinExpected = 1000.0;
// Most bins of a chi-square test.
inline constexpr int kMaxBins = 50;

inline std::uint64_t scaled(double n) {
  return static_cast<std::uint64_t>(std::max(1.0, std::round(n * kScale)));
}

// The i-th seed of a test for core::reseed: odd and distinct, since
// reseed(s) and reseed(s | 1) start the same stream. Test numbers: 1 to 6
// sampling_law_test, 11 to 16 limits_law_test.
inline std::uint64_t engine_seed(std::uint64_t test, std::uint64_t i) {
  return (test * 1000 + i) * 2 + 1;
}

// Keeps the compiler from eliding an allocation whose result is unused.
inline void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

struct band {
  double lo, hi;  // integers
  bool contains(double x) const { return lo <= x && x <= hi; }
};

// [lo, hi] with P(X < lo) <= alpha/2 and P(X > hi) <= alpha/2, lo as large
// and hi as small as they can be. Boost's quantile gives a first guess; the
// cdf decides, so whatever Boost's rounding of discrete quantiles, the band
// is exact.
template <class Dist>
band exact_band(const Dist& d, double alpha) {
  using boost::math::cdf;
  using boost::math::complement;
  using boost::math::quantile;
  const auto [smin, smax] = boost::math::support(d);
  const double half = alpha / 2;
  double lo = std::clamp(std::floor(quantile(d, half)), smin, smax);
  while (lo > smin && cdf(d, lo - 1) > half) lo -= 1;
  while (lo < smax && cdf(d, lo) <= half) lo += 1;
  double hi = std::clamp(std::ceil(quantile(complement(d, half))), smin, smax);
  while (hi < smax && cdf(complement(d, hi)) > half) hi += 1;
  while (hi > smin && cdf(complement(d, hi - 1)) <= half) hi -= 1;
  return {lo, hi};
}

inline band binomial_band(double trials, double p, double alpha) {
  return exact_band(boost::math::binomial_distribution<double>(trials, p), alpha);
}

// An integer-valued law on [first, last] (last may be UINT64_MAX: unbounded).
struct discrete_law {
  std::string name;
  std::uint64_t first, last;
  std::function<double(std::uint64_t)> cdf;  // P(X <= k), k >= first
  std::function<double(std::uint64_t)> sf;   // P(X > k),  k >= first
  double below(std::uint64_t k) const { return k <= first ? 0.0 : cdf(k - 1); }    // P(X < k)
  double at_least(std::uint64_t k) const { return k <= first ? 1.0 : sf(k - 1); }  // P(X >= k)
};

struct bin {
  std::uint64_t first, last;  // values [first, last]
  double probability;
};

// Consecutive bins of probability >= max(kMinExpected / n, 1 / kMaxBins)
// each, the last one open-ended. Probabilities come from the cdf or the
// survival function, whichever avoids cancellation.
inline std::vector<bin> make_bins(const discrete_law& law, double n) {
  const double target = std::max(kMinExpected / n, 1.0 / kMaxBins);
  std::vector<bin> bins;
  std::uint64_t a = law.first;
  for (std::uint64_t b = a;; ++b) {
    const double rest = b == law.last ? 0.0 : law.sf(b);
    if (rest < target) {
      bins.push_back({a, law.last, law.at_least(a)});
      return bins;
    }
    const double upto = law.cdf(b);
    const double mass = upto <= 0.5 ? upto - law.below(a) : law.at_least(a) - rest;
    if (mass >= target) {
      bins.push_back({a, b, mass});
      a = b + 1;
    }
  }
}

// Goodness of fit of `draws` (sorted, i.i.d. under the null) to `law`:
// chi-square (nominal level alpha), per-bin exact counts (level alpha, split
// over the bins) and DKW (level alpha). Three checks.
inline void expect_fits(const discrete_law& law, const std::vector<std::uint64_t>& draws, double alpha) {
  const double n = static_cast<double>(draws.size());
  ASSERT_TRUE(std::is_sorted(draws.begin(), draws.end()));
  const std::vector<bin> bins = make_bins(law, n);
  ASSERT_GE(bins.size(), 2u) << law.name;
  double total = 0;
  for (const bin& b : bins) total += b.probability;
  ASSERT_NEAR(total, 1.0, 1e-9) << law.name;

  // Bin counts, by one sweep over the sorted draws.
  std::vector<std::uint64_t> counts(bins.size(), 0);
  std::size_t j = 0;
  for (std::uint64_t x : draws) {
    ASSERT_GE(x, law.first) << law.name << ": a draw below the law's support";
    ASSERT_LE(x, law.last) << law.name;
    while (x > bins[j].last) ++j;
    ++counts[j];
  }

  double chi2 = 0;
  int bins_out = 0;
  for (std::size_t i = 0; i < bins.size(); ++i) {
    const double expected = n * bins[i].probability;
    const double d = static_cast<double>(counts[i]) - expected;
    chi2 += d * d / expected;
    const band ok = binomial_band(n, bins[i].probability, alpha / static_cast<double>(bins.size()));
    if (!ok.contains(static_cast<double>(counts[i]))) {
      ++bins_out;
      ADD_FAILURE() << law.name << ": bin [" << bins[i].first << ", " << bins[i].last << "] holds "
                    << counts[i] << " draws, expected " << expected << ", exact band [" << ok.lo
                    << ", " << ok.hi << "]";
    }
  }
  const int df = static_cast<int>(bins.size()) - 1;
  const double chi2_max = boost::math::quantile(
      boost::math::complement(boost::math::chi_squared_distribution<double>(df), alpha));
  EXPECT_LE(chi2, chi2_max) << law.name << ": Pearson chi-square over " << bins.size() << " bins";

  // DKW: sup |F_n - F| is reached at an observed value v (F_n(v) vs F(v)) or
  // just below one (F_n(v-1) = #{x < v}/n vs F(v-1)): between observed
  // values F_n is constant and F monotone.
  double sup = 0;
  for (std::size_t i = 0; i < draws.size();) {
    const std::uint64_t v = draws[i];
    std::size_t k = i;
    while (k < draws.size() && draws[k] == v) ++k;
    sup = std::max(sup, std::abs(static_cast<double>(i) / n - law.below(v)));
    sup = std::max(sup, std::abs(static_cast<double>(k) / n - law.cdf(v)));
    i = k;
  }
  const double eps = std::sqrt(std::log(2.0 / alpha) / (2.0 * n));
  EXPECT_LE(sup, eps) << law.name << ": Kolmogorov distance (DKW bound)";

  std::printf("  %-30s n=%.0f bins=%zu chi2=%.1f (max %.1f) bins_out=%d D=%.5f (max %.5f)\n",
              law.name.c_str(), n, bins.size(), chi2, chi2_max, bins_out, sup, eps);
}

}  // namespace memlimits::testing
