// The interruption laws of the real limits engine, checked against the
// formulas of stats/ (memlimits::stats, stats/README.md) and exact
// distributions from Boost.Math:
//  1. a sampled allocation limit (settings::sampled_allocation_limits) trips
//     at the K-th sampled word, K = max(1, ceil(l p)) for a limit of l words:
//     P(interrupted by word n) = I_p(K, n - K + 1) (README §2);
//  2. a global limit that is already exceeded trips at the task's first
//     sampled word: P(interrupted by word n) = 1 - (1 - p)^n (README §1);
//  3. limit_memory while live memory stays below the limit (churn): the
//     frequency of false trips lies between the bounds of README §4 (a), and,
//     where it can be computed exactly, equals the exact probability;
//  4. limit_memory while live memory only grows: the trip point is the K-th
//     sampled word, K = floor(M p) + 1 for a limit of M words (README §4 (b));
//  5. the K of 1 and 4 at rates whose sample weight 8 / p bytes is not a
//     whole number (a deterministic invariant: usage().samples == K);
//  6. limit_memory shared by four child tasks on four threads (bind_limits)
//     that take turns: their words, in the order they are allocated, are
//     still i.i.d. Bernoulli(p), so the trip point is the law of 4.
// Every task allocates 8-byte blocks (one word each: 8 * ceil(8 / 8) bytes)
// through the replaced operator new, at a high sampling rate (configure(),
// restored afterwards), with no profile running, so that the thread samples at
// the engine's rate and the engine sees every sample. The trip point n of a
// trial is the index of the interrupted word: the words allocated before it
// (usage().allocated_bytes / 8, and the task's own count) plus one.
//
// Independence. Sampled words are i.i.d. Bernoulli(p) over the thread's whole
// allocation stream (tests/stats/sampling_law_test.cpp checks that), and the
// stream does not restart at a guard: the generator goes on from trial to
// trial. The first sampled word after a guard's entry is still Geometric(p)
// words away, whatever was allocated before (the gap is memoryless and what
// came before depends only on earlier draws), so the trials are i.i.d. draws
// of their law. Each test reseeds the thread (core::reseed) once per
// parameter set, so that every outcome is deterministic.
//
// False failures. As in sampling_law_test.cpp: each test case states its
// false-failure probability, the probability over the seed that it fails
// although the engine is correct, at most 1e-9 (kTestAlpha), split evenly
// over its checks by the union bound:
//  * exact two-sided bands: for an integer statistic whose law is known
//    exactly (binomial, negative binomial), [lo, hi] with P(X < lo) <= a/2
//    and P(X > hi) <= a/2, from Boost.Math's quantile and verified with its
//    cdf (exact_band); one-sided bands put all of `a` on one side;
//  * DKW (Kolmogorov-Smirnov with an exact finite-sample bound): for n i.i.d.
//    draws of any law, P(sup_x |F_n(x) - F(x)| > eps) <= 2 exp(-2 n eps^2)
//    (Dvoretzky, Kiefer, Wolfowitz; Massart 1990's constant, valid for any
//    n while the bound is <= 1/2). For a discrete law the statistic is
//    stochastically smaller than for a continuous one, so the bound stays
//    valid, conservatively; eps = sqrt(ln(2/a) / (2n));
//  * per-bin counts: the count of n i.i.d. draws in a bin of probability P is
//    exactly Binomial(n, P); level a over k bins is a/k each;
//  * Pearson's chi-square over the same bins against the chi_squared(k-1)
//    quantile at 1 - a: the only asymptotic check (every bin expects at
//    least kMinExpected = 1000 draws), its level is nominal;
//  * the cap: a trial that is not interrupted within `cap` words, where cap
//    is the smallest n with P(not interrupted by n) < a / trials, fails the
//    test; by the union bound over the trials, with probability below a.
// z-scores ("z=") of the sums of the trip points, and of the false-trip
// counts, are printed for the log, not asserted.
//
// Sample sizes are scaled down under ASan and TSan (kScale); every bound is
// computed from the sizes actually used, so it stays exact. The checks
// shared with sampling_law_test are in tests/support/goodness_of_fit.hpp.
#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/math/distributions/binomial.hpp>
#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/negative_binomial.hpp>
#include <gtest/gtest.h>

#include "core/sampler.hpp"
#include "memlimits/limits.hpp"
#include "memlimits/task.hpp"
#include "stats/bounds.hpp"
#include "support/goodness_of_fit.hpp"
#include "support/wait.hpp"

namespace {

using namespace memlimits;
using namespace memlimits::testing;

// One word, through the replaced throwing operator new.
inline void* allocate_word() {
  void* p = ::operator new(8);
  escape(p);
  return p;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The engine's settings for one parameter set (high rate; sampled allocation
// limits or not), restored on exit together with the global limit. Also
// silences the "memlimits" logger (one info line per interrupted guard, and
// these tests interrupt ~10^5 guards) unless SPDLOG_LEVEL is set: the logger
// reads it when it is created, at the first interrupted guard.
class engine_scope {
 public:
  explicit engine_scope(double rate, bool sampled_allocation_limits = false)
      : saved_(current_settings()), saved_global_(global_memory_limit()) {
    setenv("SPDLOG_LEVEL", "memlimits=off", 0);
    settings s = saved_;
    s.sampling_rate = rate;
    s.global_source = memory_source::heap;
    s.sampled_allocation_limits = sampled_allocation_limits;
    configure(s);
  }
  ~engine_scope() {
    set_global_memory_limit(saved_global_);
    configure(saved_);
  }
  engine_scope(const engine_scope&) = delete;
  engine_scope& operator=(const engine_scope&) = delete;

 private:
  settings saved_;
  std::int64_t saved_global_;
};

// ---------------------------------------------------------------------------
// One-sided bands and laws (checks: support/goodness_of_fit.hpp).

// The smallest hi with P(Binomial(trials, p) > hi) <= alpha: one-sided.
double binomial_upper(double trials, double p, double alpha) {
  return binomial_band(trials, p, 2 * alpha).hi;
}
// The largest lo with P(Binomial(trials, p) < lo) <= alpha: one-sided.
double binomial_lower(double trials, double p, double alpha) {
  return binomial_band(trials, p, 2 * alpha).lo;
}

// The criterion, for the log: (x - mean) / sd of Binomial(trials, p).
double z_score(double x, double trials, double p) {
  return (x - trials * p) / std::sqrt(trials * p * (1 - p));
}

std::string rate_name(double p) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", p);
  return text;
}

// The word at which the K-th sample falls: P(X <= n) = P(Binomial(n, p) >=
// K) = I_p(K, n - K + 1), from stats (README §2 and §4 (b)).
discrete_law kth_sample_law(std::uint64_t k, double p) {
  return {"K-th sample (K=" + std::to_string(k) + ", p=" + rate_name(p) + ")", k, UINT64_MAX,
          [k, p](std::uint64_t n) { return stats::interrupted(k, n, p); },
          [k, p](std::uint64_t n) { return stats::not_interrupted(k, n, p); }};
}

// The word of the first sample: P(X > n) = (1 - p)^n, from stats (README §1).
discrete_law first_sample_law(double p) {
  return {"first sample (p=" + rate_name(p) + ")", 1, UINT64_MAX,
          [p](std::uint64_t n) { return 1.0 - stats::global_not_interrupted(n, p); },
          [p](std::uint64_t n) { return stats::global_not_interrupted(n, p); }};
}


// ---------------------------------------------------------------------------
// The trip points of `trials` trials of one guard, and their checks.

struct trip_run {
  std::vector<std::uint64_t> points;  // trip points n (words), sorted
  std::uint64_t uninterrupted = 0;    // trials that reached the cap
  std::uint64_t bad_usage = 0;        // trials whose error or usage() is wrong
  std::string first_bad;              // the first of those, described
  double seconds = 0;
};

// Describes a trial whose outcome breaks a deterministic invariant.
void note_bad(trip_run& run, std::uint64_t trial, const char* what, std::uint64_t got,
              std::uint64_t expected) {
  if (run.bad_usage++ == 0) {
    run.first_bad = "trial " + std::to_string(trial) + ": " + what + " = " + std::to_string(got) +
                    ", expected " + std::to_string(expected);
  }
}

// The trip point of one trial is K + NegativeBinomial(K, p) (the words not
// sampled before the K-th sampled one) exactly, so the sum over T trials is
// T K + NegativeBinomial(T K, p).
band trip_sum_band(double trials, double k, double p, double alpha) {
  const band failures =
      exact_band(boost::math::negative_binomial_distribution<double>(trials * k, p), alpha);
  return {failures.lo + trials * k, failures.hi + trials * k};
}

// The five checks of a law of the trip point, `alpha` each: the cap, the
// chi-square, the per-bin counts, DKW, and the exact band of the sum.
// Deterministic invariants (bad_usage) cost nothing.
void expect_trip_law(const discrete_law& law, std::uint64_t k, double p, std::uint64_t trials,
                     std::uint64_t cap, trip_run& run, double alpha) {
  EXPECT_EQ(run.bad_usage, 0u) << law.name << ": " << run.first_bad;
  EXPECT_EQ(run.uninterrupted, 0u) << law.name << ": trials not interrupted within " << cap
                                   << " words (P < " << alpha / trials << " each)";
  ASSERT_FALSE(run.points.empty());
  double sum = 0;
  for (std::uint64_t n : run.points) sum += static_cast<double>(n);
  std::sort(run.points.begin(), run.points.end());
  expect_fits(law, run.points, alpha);
  const double t = static_cast<double>(run.points.size());
  const double kd = static_cast<double>(k);
  const band sum_ok = trip_sum_band(t, kd, p, alpha);
  const double mean = t * kd / p;
  const double sd = std::sqrt(t * kd * (1 - p)) / p;
  std::printf(
      "  %-30s trials=%llu cap=%llu mean trip word=%.2f (law %.2f) sum=%.0f band=[%.0f, %.0f] "
      "z=%+.2f  %.2f s\n",
      "", static_cast<unsigned long long>(trials), static_cast<unsigned long long>(cap), sum / t,
      kd / p, sum, sum_ok.lo, sum_ok.hi, (sum - mean) / sd, run.seconds);
  EXPECT_TRUE(sum_ok.contains(sum))
      << law.name << ": sum of " << t << " trip points " << sum << " (mean " << sum / t << ", law "
      << kd / p << "), exact band [" << sum_ok.lo << ", " << sum_ok.hi
      << "], z = " << (sum - mean) / sd;
}

// ---------------------------------------------------------------------------
// 1. Sampled allocation limits: the K-th sample interrupts.

// The engine's K (src/limits/engine.cpp, sampled_threshold; memprof-limits
// trips at the ceil(l/S)-th sample): max(1, ceil(l p)) for a limit of l words,
// l p rounded to the nearest integer first when within 1e-12 relative of it.
// Computed by hand in the table below. Trials allocate and free one word
// at a time (frees do not count); the interrupted word is refused, so
// usage() reports the n - 1 words before it, K samples (its own included:
// every word carries at most one), and no live memory.
//
// Four parameter sets, five checks each (cap, chi-square, per-bin, DKW,
// sum): 20 checks at kTestAlpha / 20 = 5e-11 each; 1e-9 in all, of which
// 2e-10 nominal (the four chi-square checks).
TEST(SampledAllocationLimitLaw, InterruptedAtTheKthSample) {
  struct param {
    double rate;
    std::uint64_t limit_bytes;
    std::uint64_t k;  // the engine's K, by hand
    std::uint64_t trials;
  };
  const param params[] = {
      {1.0 / 16, 8, 1, scaled(100'000)},      // l p = 1/16: at least one sample
      {0.01, 4000, 5, scaled(100'000)},       // l p = 500 * 0.01 = 5 up to rounding
      {1.0 / 64, 2304, 5, scaled(100'000)},   // l p = 288 / 64 = 4.5: rounded up
      {1.0 / 64, 10240, 20, scaled(50'000)},  // l p = 1280 / 64 = 20
  };
  const double alpha = kTestAlpha / (5 * std::size(params));
  std::uint64_t i = 0;
  for (const param& q : params) {
    SCOPED_TRACE("rate " + rate_name(q.rate) + ", limit " + std::to_string(q.limit_bytes) + " B");
    const std::uint64_t cap = stats::sure_words(q.k, alpha / static_cast<double>(q.trials), q.rate);
    trip_run run;
    run.points.reserve(q.trials);
    {
      engine_scope scope(q.rate, /*sampled_allocation_limits=*/true);
      core::reseed(engine_seed(11, i++));
      const auto start = std::chrono::steady_clock::now();
      for (std::uint64_t trial = 0; trial < q.trials; ++trial) {
        std::uint64_t done = 0;  // words allocated (and freed) before the interruption
        const auto r = limit_allocations(q.limit_bytes, [&] {
          for (; done < cap; ++done) ::operator delete(allocate_word());
        });
        if (r.has_value()) {
          ++run.uninterrupted;
          continue;
        }
        if (r.error().kind() != limit_kind::allocations) {
          note_bad(run, trial, "kind", static_cast<std::uint64_t>(r.error().kind()),
                   static_cast<std::uint64_t>(limit_kind::allocations));
        } else if (r.usage().allocated_bytes != 8 * done) {
          note_bad(run, trial, "usage().allocated_bytes", r.usage().allocated_bytes, 8 * done);
        } else if (r.usage().samples != q.k) {
          note_bad(run, trial, "usage().samples", r.usage().samples, q.k);
        } else if (r.usage().memory_bytes != 0) {
          note_bad(run, trial, "usage().memory_bytes",
                   static_cast<std::uint64_t>(r.usage().memory_bytes), 0);
        }
        run.points.push_back(r.usage().allocated_bytes / 8 + 1);
      }
      run.seconds = seconds_since(start);
    }
    expect_trip_law(kth_sample_law(q.k, q.rate), q.k, q.rate, q.trials, cap, run, alpha);
  }
}

// ---------------------------------------------------------------------------
// 2. The global limit, checked at samples: the first sample interrupts.

// The global limit is set to 0 while the source (heap: the live-heap
// estimate) reads more than 0, held up by a ballast block allocated at the
// high rate (1 MiB = 131072 words: P(unsampled) <= (1 - 0.003)^131072 <
// 1e-170; asserted anyway). Every check then trips, so the trip point is the
// task's first sampled word: Geometric(p), P(X > n) = (1 - p)^n, the law of
// README §1 (stats::global_not_interrupted). Trials allocate and free one
// word at a time; usage() reports the n - 1 words before the interrupted one
// and one sample.
//
// Three rates, five checks each (cap, chi-square, per-bin, DKW, sum): 15
// checks at kTestAlpha / 15 each; 1e-9 in all, of which 2e-10 nominal.
TEST(GlobalLimitLaw, InterruptedAtTheFirstSample) {
  struct param {
    double rate;
    std::uint64_t trials;
  };
  const param params[] = {
      {1.0 / 64, scaled(200'000)}, {1.0 / 8, scaled(200'000)}, {0.003, scaled(100'000)}};
  const double alpha = kTestAlpha / (5 * std::size(params));
  std::uint64_t i = 0;
  for (const param& q : params) {
    SCOPED_TRACE("rate " + rate_name(q.rate));
    const std::uint64_t cap =
        stats::global_limit(alpha / static_cast<double>(q.trials), q.rate).words;
    trip_run run;
    run.points.reserve(q.trials);
    {
      engine_scope scope(q.rate);
      void* ballast = std::malloc(std::size_t{1} << 20);
      escape(ballast);
      ASSERT_GT(global_memory_usage(), 0u) << "the ballast was not sampled";
      set_global_memory_limit(0);
      core::reseed(engine_seed(12, i++));
      const auto start = std::chrono::steady_clock::now();
      for (std::uint64_t trial = 0; trial < q.trials; ++trial) {
        std::uint64_t done = 0;
        const auto r = limit_global_memory([&] {
          for (; done < cap; ++done) ::operator delete(allocate_word());
        });
        if (r.has_value()) {
          ++run.uninterrupted;
          continue;
        }
        if (r.error().kind() != limit_kind::global_memory) {
          note_bad(run, trial, "kind", static_cast<std::uint64_t>(r.error().kind()),
                   static_cast<std::uint64_t>(limit_kind::global_memory));
        } else if (r.usage().allocated_bytes != 8 * done) {
          note_bad(run, trial, "usage().allocated_bytes", r.usage().allocated_bytes, 8 * done);
        } else if (r.usage().samples != 1) {
          note_bad(run, trial, "usage().samples", r.usage().samples, 1);
        }
        run.points.push_back(r.usage().allocated_bytes / 8 + 1);
      }
      run.seconds = seconds_since(start);
      set_global_memory_limit(-1);
      std::free(ballast);
    }
    expect_trip_law(first_sample_law(q.rate), 1, q.rate, q.trials, cap, run, alpha);
  }
}

// ---------------------------------------------------------------------------
// 3. limit_memory: false trips below the limit.

// The exact probability that a window of `window` consecutive words, among
// the first `words` of a stream whose words are sampled independently with
// probability p, holds `k` or more sampled words (windows that start before
// the stream are shorter). A Markov chain on the last window - 1 words (a
// bit mask: 2^(window-1) states): a new word is sampled with probability p,
// and the window it closes trips if it then holds k samples. Requires
// 2 <= window <= 24.
double window_trip_probability(std::uint64_t words, unsigned window, std::uint64_t k, double p) {
  const unsigned bits = window - 1;
  const std::uint32_t mask = (std::uint32_t{1} << bits) - 1;
  std::vector<double> now(std::size_t{1} << bits, 0.0);
  std::vector<double> next(now.size());
  now[0] = 1;
  double tripped = 0;
  for (std::uint64_t t = 0; t < words; ++t) {
    std::fill(next.begin(), next.end(), 0.0);
    for (std::uint32_t s = 0; s <= mask; ++s) {
      const double m = now[s];
      if (m == 0) continue;
      next[(s << 1) & mask] += m * (1 - p);
      if (static_cast<std::uint64_t>(std::popcount(s)) + 1 >= k) {
        tripped += m * p;
      } else {
        next[((s << 1) | 1) & mask] += m * p;
      }
    }
    now.swap(next);
  }
  return tripped;
}

// The task keeps L = f M one-word blocks live in a ring: it fills the ring,
// then frees the oldest block before each new allocation, A allocations in
// all. Live memory is never above L words (README §4 (a)), so the limit
// trips only by the noise of its estimate (S = 1/p words per live sample;
// K = floor(M p) + 1 live samples trip it). Over T trials the false trips
// are Binomial(T, q), and README §4 gives
//    per_check = P(Binomial(L, p) >= K) <= q <= A p P(Binomial(L-1, p) >= K-1)
// (lower bound: the ring holds L words once; upper bound (3)). Checked
// one-sided: above the upper bound, below the lower one. Since the engine
// checks at samples, and the live samples only grow at a sampled word, a trip
// is exactly a window of L consecutive words of the stream (the ring just
// after an allocation) holding K samples: q is computed exactly by
// window_trip_probability where L is small, and the count is checked in the
// exact two-sided band of Binomial(T, q) (q to double precision; its
// rounding, ~1e-13 relative at most, is negligible against the band).
// When a trial trips, the interrupted word is refused and the ring holds
// K - 1 samples until after the guard exits: usage().memory_bytes is
// (K - 1) S words exactly; otherwise at most that.
//
// Two parameter sets: the first with three checks (exact band, upper bound,
// lower bound), the second with two (bounds): 5 checks at kTestAlpha / 5 =
// 2e-10 each; 1e-9 in all, all exact.
TEST(MemoryLimitLaw, FalseTripsBelowTheLimitWithinTheBounds) {
  struct param {
    double rate;
    std::uint64_t limit_bytes;
    double fraction;
    std::uint64_t live_words;   // L, by hand
    std::uint64_t k;            // K, by hand
    std::uint64_t allocations;  // A
    std::uint64_t trials;
    bool exact;
  };
  const param params[] = {
      // M = 64 words, M p = 4: K = 5; L = 16; A p = 20.
      {1.0 / 16, 512, 0.25, 16, 5, 320, scaled(100'000), true},
      // M = 640 words, M p = 10: K = 11; L = 320; A p = 8.
      {1.0 / 64, 5120, 0.5, 320, 11, 512, scaled(50'000), false},
  };
  const double alpha = kTestAlpha / 5;
  std::uint64_t i = 0;
  for (const param& q : params) {
    SCOPED_TRACE("rate " + rate_name(q.rate) + ", limit " + std::to_string(q.limit_bytes) + " B");
    const stats::memory_false_trip_result bound =
        stats::memory_false_trip(static_cast<double>(q.limit_bytes), q.fraction,
                                 static_cast<double>(8 * q.allocations), q.rate);
    ASSERT_EQ(bound.k, q.k);
    ASSERT_EQ(bound.live_words, q.live_words);
    const auto weight = static_cast<std::int64_t>(std::llround(8.0 / q.rate));  // bytes per sample
    std::vector<void*> ring(q.live_words, nullptr);
    std::uint64_t trips = 0;
    trip_run run;  // for the invariants only
    double seconds = 0;
    {
      engine_scope scope(q.rate);
      core::reseed(engine_seed(13, i++));
      const auto start = std::chrono::steady_clock::now();
      for (std::uint64_t trial = 0; trial < q.trials; ++trial) {
        const auto r = limit_memory(q.limit_bytes, [&] {
          for (std::uint64_t t = 0; t < q.allocations; ++t) {
            void*& slot = ring[t % q.live_words];
            if (slot != nullptr) {
              ::operator delete(slot);
              slot = nullptr;
            }
            slot = allocate_word();
          }
        });
        const std::int64_t live = r.usage().memory_bytes;
        if (!r.has_value()) {
          ++trips;
          if (r.error().kind() != limit_kind::memory) {
            note_bad(run, trial, "kind", static_cast<std::uint64_t>(r.error().kind()),
                     static_cast<std::uint64_t>(limit_kind::memory));
          } else if (live != static_cast<std::int64_t>(q.k - 1) * weight) {
            note_bad(run, trial, "usage().memory_bytes after a trip",
                     static_cast<std::uint64_t>(live), (q.k - 1) * weight);
          }
        } else if (live < 0 || live > static_cast<std::int64_t>(q.k - 1) * weight ||
                   live % weight != 0) {
          note_bad(run, trial, "usage().memory_bytes without a trip",
                   static_cast<std::uint64_t>(live), (q.k - 1) * weight);
        }
        for (void*& slot : ring) {
          ::operator delete(slot);
          slot = nullptr;
        }
      }
      seconds = seconds_since(start);
    }
    EXPECT_EQ(run.bad_usage, 0u) << run.first_bad;

    const double t = static_cast<double>(q.trials);
    const double x = static_cast<double>(trips);
    const double upper = binomial_upper(t, bound.false_trip_bound, alpha);
    const double lower = binomial_lower(t, bound.per_check, alpha);
    std::printf(
        "  p=%-9s M=%llu words K=%llu L=%llu A=%llu trials=%llu: false trips %llu (%.4f); "
        "bounds [%.6f, %.6f]: allowed [%.0f, %.0f], z vs upper %+.2f, vs lower %+.2f  %.2f s\n",
        rate_name(q.rate).c_str(), static_cast<unsigned long long>(q.limit_bytes / 8),
        static_cast<unsigned long long>(q.k), static_cast<unsigned long long>(q.live_words),
        static_cast<unsigned long long>(q.allocations), static_cast<unsigned long long>(q.trials),
        static_cast<unsigned long long>(trips), x / t, bound.per_check, bound.false_trip_bound,
        lower, upper, z_score(x, t, bound.false_trip_bound), z_score(x, t, bound.per_check),
        seconds);
    EXPECT_LE(x, upper) << trips << " false trips in " << q.trials
                        << " trials: above the bound of README §4 (a), " << bound.false_trip_bound
                        << " per trial";
    EXPECT_GE(x, lower) << trips << " false trips in " << q.trials
                        << " trials: below P(Binomial(L, p) >= K) = " << bound.per_check
                        << " per trial";
    if (q.exact) {
      const double exact =
          window_trip_probability(q.allocations, static_cast<unsigned>(q.live_words), q.k, q.rate);
      // The chain over one window is P(Binomial(L, p) >= K) itself; and the
      // exact probability lies between the bounds (deterministic checks of
      // the chain and of stats).
      EXPECT_NEAR(
          window_trip_probability(q.live_words, static_cast<unsigned>(q.live_words), q.k, q.rate),
          bound.per_check, 1e-12);
      EXPECT_LE(bound.per_check, exact);
      EXPECT_LE(exact, bound.false_trip_bound);
      const band ok = binomial_band(t, exact, alpha);
      std::printf("  exact P(false trip) = %.6f: expected %.1f, exact band [%.0f, %.0f], z=%+.2f\n",
                  exact, t * exact, ok.lo, ok.hi, z_score(x, t, exact));
      EXPECT_TRUE(ok.contains(x)) << trips << " false trips in " << q.trials
                                  << " trials, exact probability " << exact << ": expected "
                                  << t * exact << ", exact band [" << ok.lo << ", " << ok.hi
                                  << "], z = " << z_score(x, t, exact);
    }
  }
}

// ---------------------------------------------------------------------------
// 4. limit_memory: the overshoot when live memory only grows.

// The task keeps every word it allocates: its live memory after n words is n
// words, holding Binomial(n, p) samples, and the limit of M words trips at
// the K-th sampled word, K = floor(M p) + 1 (stats::memory_trip_samples):
// P(trip point <= n) = I_p(K, n - K + 1), README §4 (b). The interrupted word
// is refused; at the guard's exit the task's n - 1 words are still live
// (freed after it), holding K - 1 samples: usage() reports 8 (n - 1) bytes
// allocated, K samples and a live estimate of (K - 1) S words.
//
// Four parameter sets, five checks each (cap, chi-square, per-bin, DKW,
// sum): 20 checks at kTestAlpha / 20 each; 1e-9 in all, of which 2e-10
// nominal.
TEST(MemoryLimitLaw, OvershootIsTheKthSample) {
  struct param {
    double rate;
    std::uint64_t limit_bytes;
    std::uint64_t k;  // K, by hand
    std::uint64_t trials;
  };
  const param params[] = {
      {1.0 / 8, 8, 1, scaled(100'000)},      // M = 1, M p = 1/8: K = 1
      {1.0 / 16, 800, 7, scaled(100'000)},   // M = 100, M p = 6.25: K = 7
      {1.0 / 64, 5120, 11, scaled(50'000)},  // M = 640, M p = 10: K = 11
      {0.01, 4000, 6, scaled(50'000)},       // M = 500, M p = 5 up to rounding: K = 6
  };
  const double alpha = kTestAlpha / (5 * std::size(params));
  std::uint64_t i = 0;
  for (const param& q : params) {
    SCOPED_TRACE("rate " + rate_name(q.rate) + ", limit " + std::to_string(q.limit_bytes) + " B");
    ASSERT_EQ(stats::memory_trip_samples(static_cast<double>(q.limit_bytes), q.rate), q.k);
    const std::uint64_t cap = stats::sure_words(q.k, alpha / static_cast<double>(q.trials), q.rate);
    const auto weight = static_cast<std::int64_t>(std::llround(8.0 / q.rate));
    std::vector<void*> blocks(cap, nullptr);
    trip_run run;
    run.points.reserve(q.trials);
    {
      engine_scope scope(q.rate);
      core::reseed(engine_seed(14, i++));
      const auto start = std::chrono::steady_clock::now();
      for (std::uint64_t trial = 0; trial < q.trials; ++trial) {
        std::uint64_t done = 0;
        const auto r = limit_memory(q.limit_bytes, [&] {
          for (; done < cap; ++done) blocks[done] = allocate_word();
        });
        for (std::uint64_t b = 0; b < done; ++b) ::operator delete(blocks[b]);
        if (r.has_value()) {
          ++run.uninterrupted;
          continue;
        }
        if (r.error().kind() != limit_kind::memory) {
          note_bad(run, trial, "kind", static_cast<std::uint64_t>(r.error().kind()),
                   static_cast<std::uint64_t>(limit_kind::memory));
        } else if (r.usage().allocated_bytes != 8 * done) {
          note_bad(run, trial, "usage().allocated_bytes", r.usage().allocated_bytes, 8 * done);
        } else if (r.usage().samples != q.k) {
          note_bad(run, trial, "usage().samples", r.usage().samples, q.k);
        } else if (r.usage().memory_bytes != static_cast<std::int64_t>(q.k - 1) * weight) {
          note_bad(run, trial, "usage().memory_bytes",
                   static_cast<std::uint64_t>(r.usage().memory_bytes), (q.k - 1) * weight);
        }
        run.points.push_back(r.usage().allocated_bytes / 8 + 1);
      }
      run.seconds = seconds_since(start);
    }
    expect_trip_law(kth_sample_law(q.k, q.rate), q.k, q.rate, q.trials, cap, run, alpha);
  }
}

// ---------------------------------------------------------------------------
// 5. The number of samples that trips a limit, at every rate.

// With one-word blocks, a sampled allocation limit or a memory limit whose
// task only grows trips at the sampled word that brings the context's samples
// to K: usage().samples is K at every trip, whatever the draws (a
// deterministic invariant). K is the formula of stats/README.md:
//  * limit_memory of M words: K = floor(M p) + 1, M p taken as an integer
//    when it is one up to rounding (stats::memory_trip_samples; README §4:
//    "so that 80000 bytes at p = 1e-4 needs K = 2 samples, not 1 or 3");
//  * sampled allocation limit of l words: K = max(1, ceil(l p)), l p taken
//    as an integer when it is one up to rounding (README §2, the engine's
//    sampled_threshold).
// The limits are those a user derives from "k samples", l = M = k / p words,
// at rates from 0.3 to 1e-4; at 0.3, 0.003 and 3e-4 a sample's weight, 8 / p
// bytes, is not a whole number of bytes. The mean trip word is printed
// against K / p.
//
// The only random part is the cap: a trial not interrupted within `cap`
// words fails the test; cap is the smallest n with P(not interrupted by n) <
// a / trials, a = kTestAlpha / (number of cases), so 1e-9 in all, exact.
enum class trip_guard { sampled_allocations, memory };

std::uint64_t expected_trip_samples(trip_guard g, std::uint64_t limit_bytes, double rate) {
  if (g == trip_guard::memory)
    return stats::memory_trip_samples(static_cast<double>(limit_bytes), rate);
  double samples = static_cast<double>(limit_bytes / 8) * rate;  // l p
  const double nearest = std::nearbyint(samples);
  samples =
      std::fabs(samples - nearest) <= 1e-9 * std::max(1.0, nearest) ? nearest : std::ceil(samples);
  return static_cast<std::uint64_t>(std::max(1.0, samples));
}

void check_trip_samples(trip_guard g, std::uint64_t test) {
  struct param {
    double rate;
    std::uint64_t k;  // l = M = round(k / rate) words (M p = k when k / rate is an integer)
  };
  const param params[] = {{0.3, 3},    {0.3, 10}, {0.01, 3},  {0.01, 10}, {0.003, 3},
                          {0.003, 10}, {3e-4, 3}, {3e-4, 10}, {1e-4, 3},  {1e-4, 10}};
  const std::uint64_t trials = scaled(40);
  const double alpha = kTestAlpha / std::size(params);
  std::uint64_t i = 0;
  int mismatched = 0;
  for (const param& q : params) {
    const auto words = static_cast<std::uint64_t>(std::llround(static_cast<double>(q.k) / q.rate));
    const std::uint64_t limit_bytes = 8 * words;
    const std::uint64_t k = expected_trip_samples(g, limit_bytes, q.rate);
    const std::uint64_t cap = stats::sure_words(k, alpha / static_cast<double>(trials), q.rate);
    std::vector<void*> blocks(g == trip_guard::memory ? cap : 0, nullptr);
    std::uint64_t uninterrupted = 0, wrong_kind = 0, min_samples = UINT64_MAX, max_samples = 0;
    double sum = 0;
    {
      engine_scope scope(q.rate, g == trip_guard::sampled_allocations);
      core::reseed(engine_seed(test, i++));
      for (std::uint64_t trial = 0; trial < trials; ++trial) {
        std::uint64_t done = 0;
        const auto task = [&] {
          if (g == trip_guard::memory) {
            for (; done < cap; ++done) blocks[done] = allocate_word();
          } else {
            for (; done < cap; ++done) ::operator delete(allocate_word());
          }
        };
        const auto r = g == trip_guard::memory ? limit_memory(limit_bytes, task)
                                               : limit_allocations(limit_bytes, task);
        for (std::uint64_t b = 0; b < blocks.size() && b < done; ++b) ::operator delete(blocks[b]);
        if (r.has_value()) {
          ++uninterrupted;
          continue;
        }
        const limit_kind kind =
            g == trip_guard::memory ? limit_kind::memory : limit_kind::allocations;
        if (r.error().kind() != kind) ++wrong_kind;
        min_samples = std::min(min_samples, r.usage().samples);
        max_samples = std::max(max_samples, r.usage().samples);
        sum += static_cast<double>(done + 1);
      }
    }
    const double interrupted = static_cast<double>(trials - uninterrupted);
    std::printf(
        "  %s p=%-6s limit %llu words (%llu B), 8/p = %.4f B per sample: K=%llu, samples at "
        "trip [%llu, %llu], mean trip word %.1f (K/p = %.1f) over %.0f trials\n",
        g == trip_guard::memory ? "limit_memory" : "sampled limit_allocations",
        rate_name(q.rate).c_str(), static_cast<unsigned long long>(words),
        static_cast<unsigned long long>(limit_bytes), 8.0 / q.rate,
        static_cast<unsigned long long>(k), static_cast<unsigned long long>(min_samples),
        static_cast<unsigned long long>(max_samples), sum / interrupted,
        static_cast<double>(k) / q.rate, interrupted);
    EXPECT_EQ(uninterrupted, 0u) << "rate " << q.rate << ", limit " << limit_bytes
                                 << " B: trials not interrupted within " << cap << " words";
    EXPECT_EQ(wrong_kind, 0u) << "rate " << q.rate << ", limit " << limit_bytes
                              << " B: interrupted by another kind of limit";
    if (min_samples != k || max_samples != k) ++mismatched;
    EXPECT_TRUE(min_samples == k && max_samples == k)
        << (g == trip_guard::memory ? "limit_memory(" : "sampled limit_allocations(") << limit_bytes
        << " B) at rate " << q.rate << " (M = " << words
        << " words, M p = " << static_cast<double>(words) * q.rate << "): tripped with "
        << min_samples << " to " << max_samples << " samples, stats says K = " << k
        << " (mean trip word " << sum / interrupted
        << ", K / p = " << static_cast<double>(k) / q.rate << ")";
  }
  std::printf("  %d of %zu cases trip at another K than stats/README.md's\n", mismatched,
              std::size(params));
}

TEST(SampledAllocationLimitLaw, TripsAtCeilLpSamplesAtEveryRate) {
  check_trip_samples(trip_guard::sampled_allocations, 15);
}

TEST(MemoryLimitLaw, TripsAtFloorMpPlusOneSamplesAtEveryRate) {
  check_trip_samples(trip_guard::memory, 16);
}

// ---------------------------------------------------------------------------
// 6. A memory limit shared by four threads.

// Four worker threads run, at each trial, one child task each of the task
// that entered limit_memory (memlimits::bind_limits). They take turns: the
// worker whose turn it is allocates `run` one-word blocks, then passes the
// turn. The words of the four threads, in turn order, form one stream; each
// thread's words are i.i.d. Bernoulli(p) samples from its own generator
// (reseeded once, at a fixed seed), and the turns do not depend on the
// draws, so the merged stream is i.i.d. Bernoulli(p) too: the K-th sampled
// word trips the shared context exactly as a single thread's would (4).
// After the trip, each other worker's next allocation must be refused (it
// is interrupted at once: the trip raised its alarm); the words are freed
// by the main thread, which allocated none of them. Deterministic
// invariants per trial: the guard's usage() is the four threads' total
// (allocated bytes = 8 x the words, samples = K, live bytes = (K - 1)
// sample weights), and every other worker was refused.
//
// One parameter set, five checks (cap, chi-square, per-bin, DKW, sum):
// kTestAlpha / 5 each, 1e-9 in all, of which 2e-10 nominal (chi-square).
struct shared_trial {
  static constexpr int workers = 4;
  static constexpr std::uint64_t run = 16;  // words per turn: the trip comes in the 7th turn on average
  std::vector<void*> words;               // capacity: the cap
  std::atomic<std::uint64_t> count{0};    // words allocated (by whoever has the turn)
  std::atomic<std::uint64_t> turn{0};
  std::atomic<bool> tripped{false};       // a worker's word was refused
  std::atomic<bool> capped{false};        // the cap was reached
  std::atomic<int> not_refused{0};        // post-trip probes that were granted
};

// The workers hand the turn on by bumping `turn` and waking the others;
// a trip or the cap bumps it too, so that every waiter looks again. They
// block (atomic wait: a futex) rather than spin, so that a handoff costs a
// wake-up, not a time slice, on a machine that other processes keep busy.
// The main thread's wait for the four of them is bounded (await).
void pass_turn(shared_trial& t) {
  t.turn.fetch_add(1, std::memory_order_acq_rel);
  t.turn.notify_all();
}

struct turn_worker {
  shared_trial* trial;
  int index;
  void operator()() const {
    shared_trial& t = *trial;
    for (;;) {
      for (;;) {
        const std::uint64_t turn = t.turn.load(std::memory_order_acquire);
        if (turn % shared_trial::workers == static_cast<std::uint64_t>(index) ||
            t.tripped.load(std::memory_order_acquire) || t.capped.load()) {
          break;
        }
        t.turn.wait(turn, std::memory_order_acquire);
      }
      if (t.capped.load()) return;
      if (t.tripped.load(std::memory_order_acquire)) {
        // Another worker's word tripped the shared limit: this one is
        // interrupted at its next allocation.
        try {
          void* p = allocate_word();
          t.not_refused.fetch_add(1);
          ::operator delete(p);
        } catch (const limit_reached&) {
        }
        return;
      }
      try {
        for (std::uint64_t i = 0; i < shared_trial::run; ++i) {
          const std::uint64_t n = t.count.load(std::memory_order_relaxed);
          if (n == t.words.size()) {
            t.capped = true;
            pass_turn(t);
            return;
          }
          t.words[n] = allocate_word();
          t.count.store(n + 1, std::memory_order_relaxed);
        }
      } catch (const limit_reached&) {
        t.tripped.store(true, std::memory_order_release);
        pass_turn(t);
        return;
      }
      pass_turn(t);
    }
  }
};

using turn_job = decltype(memlimits::bind_limits(std::declval<turn_worker>()));

TEST(MemoryLimitLaw, SharedByFourThreadsIsTheKthSample) {
  constexpr double rate = 1.0 / 16;
  constexpr std::uint64_t limit_bytes = 800;  // M = 100 words, M p = 6.25: K = 7
  constexpr std::uint64_t k = 7;
  // Each trial is a dozen hand-offs between threads (the next trial, the
  // turns, the end): 6,000 trials take ~1 s on an idle machine and ~90 s
  // with both cores busy elsewhere. At least 4,000 under the sanitizers'
  // scale, so that the chi-square test has bins enough.
  const std::uint64_t trials = std::max<std::uint64_t>(scaled(6'000), 4'000);
  const double alpha = kTestAlpha / 5;
  ASSERT_EQ(stats::memory_trip_samples(static_cast<double>(limit_bytes), rate), k);
  const std::uint64_t cap = stats::sure_words(k, alpha / static_cast<double>(trials), rate);
  const auto weight = static_cast<std::int64_t>(std::llround(8.0 / rate));

  shared_trial trial;
  trial.words.assign(cap, nullptr);
  std::optional<turn_job> jobs[shared_trial::workers];
  std::atomic<std::uint64_t> generation{0};
  std::atomic<bool> quit{false};
  // The workers that ended the trial; the main thread waits for the four
  // (blocking, bounded: a timeout ends the test with a message).
  std::mutex done_lock;
  std::condition_variable done_changed;
  int done = 0;
  trip_run run;
  run.points.reserve(trials);
  {
    engine_scope scope(rate);
    std::vector<std::thread> threads;
    for (int w = 0; w < shared_trial::workers; ++w) {
      threads.emplace_back([&, w] {
        core::reseed(engine_seed(17, static_cast<std::uint64_t>(w)));
        for (std::uint64_t seen = 0;;) {
          generation.wait(seen, std::memory_order_acquire);  // the next trial, or the end
          if (quit.load()) return;
          ++seen;
          (*jobs[w])();
          std::lock_guard<std::mutex> hold(done_lock);
          if (++done == shared_trial::workers) done_changed.notify_one();
        }
      });
    }
    const auto start = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < trials; ++i) {
      trial.count = 0;
      trial.turn = i % shared_trial::workers;  // the first turn rotates
      trial.tripped = false;
      trial.capped = false;
      trial.not_refused = 0;
      {
        std::lock_guard<std::mutex> hold(done_lock);
        done = 0;
      }
      const auto r = limit_memory(limit_bytes, [&] {
        for (int w = 0; w < shared_trial::workers; ++w) {
          jobs[w].emplace(memlimits::bind_limits(turn_worker{&trial, w}));
        }
        generation.fetch_add(1, std::memory_order_acq_rel);
        generation.notify_all();
        std::unique_lock<std::mutex> hold(done_lock);
        if (!done_changed.wait_for(hold, memlimits::testing::event_timeout,
                                   [&] { return done == shared_trial::workers; })) {
          std::fprintf(stderr, "test failure: timed out waiting for the four workers\n");
          std::abort();
        }
        for (auto& job : jobs) job.reset();
      });
      const std::uint64_t n = trial.count.load();
      for (std::uint64_t b = 0; b < n; ++b) ::operator delete(trial.words[b]);
      if (trial.capped || r.has_value()) {
        ++run.uninterrupted;
        continue;
      }
      if (r.error().kind() != limit_kind::memory) {
        note_bad(run, i, "kind", static_cast<std::uint64_t>(r.error().kind()),
                 static_cast<std::uint64_t>(limit_kind::memory));
      } else if (trial.not_refused.load() != 0) {
        note_bad(run, i, "allocations granted after the trip",
                 static_cast<std::uint64_t>(trial.not_refused.load()), 0);
      } else if (r.usage().allocated_bytes != 8 * n) {
        note_bad(run, i, "usage().allocated_bytes", r.usage().allocated_bytes, 8 * n);
      } else if (r.usage().samples != k) {
        note_bad(run, i, "usage().samples", r.usage().samples, k);
      } else if (r.usage().memory_bytes != static_cast<std::int64_t>(k - 1) * weight) {
        note_bad(run, i, "usage().memory_bytes", static_cast<std::uint64_t>(r.usage().memory_bytes),
                 (k - 1) * weight);
      }
      run.points.push_back(n + 1);
    }
    run.seconds = seconds_since(start);
    quit = true;
    generation.fetch_add(1, std::memory_order_acq_rel);
    generation.notify_all();
    for (std::thread& t : threads) t.join();
  }
  expect_trip_law(kth_sample_law(k, rate), k, rate, trials, cap, run, alpha);
}

}  // namespace
