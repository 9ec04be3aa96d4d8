// The random laws of the sampling core, checked against exact distributions
// (Boost.Math): the gap and binomial draws of core/distributions.hpp on their own,
// then the real engine end to end through the replaced malloc and operator
// new — sample counts, intervals between samples, rate 1, thinning between
// profiles, and the base accounting's live-heap estimate.
//
// False failures. Every test case is seeded and states its false-failure
// probability: the probability, over the choice of seed, that it fails
// although the library is correct. Each is at most 1e-9 (kTestAlpha), split
// evenly over the test's checks by the union bound. The checks are:
//  * exact two-sided bands: for an integer statistic X whose law is known
//    exactly (binomial, negative binomial), [lo, hi] with P(X < lo) <= a/2
//    and P(X > hi) <= a/2, found with Boost.Math's quantile and verified
//    with its cdf (exact_band), so a check at level a fails falsely with
//    probability at most a;
//  * DKW: for n i.i.d. draws of any law (discrete ones included: the
//    statistic is then stochastically smaller than for a continuous law),
//    P(sup_x |F_n(x) - F(x)| > eps) <= 2 exp(-2 n eps^2) (Dvoretzky, Kiefer,
//    Wolfowitz; Massart 1990's constant, valid for any n as long as the
//    bound is <= 1/2), so eps = sqrt(ln(2/a) / (2n)) gives level a;
//  * per-bin counts: the count of n i.i.d. draws falling in a bin of
//    probability P is exactly Binomial(n, P); level a over k bins is a/k each;
//  * Pearson's chi-square over the same bins, against the chi_squared(k-1)
//    quantile at 1 - a. This one alone is asymptotic: its level is nominal
//    (every bin's expected count is at least kMinExpected = 1000, where the
//    approximation is good, but at a = 1e-11 its tail is not exactly a).
//    The comment of each test case says how much of its budget is nominal.
// The "within 6 sigma of w * rate" is printed for every engine count
// ("z=" in the output) but not asserted: a two-sided 6 sigma band alone fails
// falsely with probability ~2e-9 (normal approximation), over the 1e-9
// budget. The exact bands asserted instead are a little wider (levels 1e-9
// to 2.4e-11: ~6.1 to 6.7 sigma). With the fixed seeds every outcome is
// deterministic.
//
// Sample sizes are scaled down under ASan and TSan (kScale); the bounds are
// computed from the sizes actually used, so they stay exact. The checks
// themselves are in tests/support/goodness_of_fit.hpp.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include <boost/math/distributions/binomial.hpp>
#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/negative_binomial.hpp>
#include <gtest/gtest.h>

#include "core/prng.hpp"
#include "core/sampler.hpp"
#include "core/distributions.hpp"
#include "core/subscribers.hpp"
#include "memlimits/memprof.hpp"
#include "support/goodness_of_fit.hpp"

namespace {

using namespace memlimits;
using namespace memlimits::testing;

std::uint64_t words_of(std::size_t bytes) { return (bytes + 7) / 8; }

// ---------------------------------------------------------------------------
// Laws (checks: support/goodness_of_fit.hpp).

discrete_law geometric_law(double p) {
  const double l = std::log1p(-p);
  return {"Geometric(" + std::to_string(p) + ")", 1, UINT64_MAX,
          [l](std::uint64_t k) { return -std::expm1(static_cast<double>(k) * l); },
          [l](std::uint64_t k) { return std::exp(static_cast<double>(k) * l); }};
}

discrete_law binomial_law(std::uint64_t n, double p) {
  const boost::math::binomial_distribution<double> d(static_cast<double>(n), p);
  return {"Binomial(" + std::to_string(n) + ", " + std::to_string(p) + ")", 0, n,
          [d](std::uint64_t k) { return boost::math::cdf(d, static_cast<double>(k)); },
          [d](std::uint64_t k) {
            return boost::math::cdf(boost::math::complement(d, static_cast<double>(k)));
          }};
}


// Sum of k i.i.d. Geometric(p) on {1, 2, ...} is k + NegativeBinomial(k, p)
// (failures before the k-th success), exactly.
band geometric_sum_band(double k, double p, double alpha) {
  const band failures =
      exact_band(boost::math::negative_binomial_distribution<double>(k, p), alpha);
  return {failures.lo + k, failures.hi + k};
}

// ---------------------------------------------------------------------------
// 1. draw_gap_words follows Geometric(p).

// Four rates, four checks each (chi-square, per-bin, DKW, sum): 16 checks at
// kTestAlpha / 16 = 6.25e-11 each; 1e-9 in all, of which 2.5e-10 nominal
// (the four chi-square checks).
TEST(GapLaw, DrawGapWordsIsGeometric) {
  const double rates[] = {1e-4, 0.01, 0.3, 0.9};
  const double alpha = kTestAlpha / 16;
  const std::uint64_t n = scaled(1'000'000);
  std::vector<std::uint64_t> draws(n);
  core::xoshiro256 rng;
  std::uint64_t seed = 0x6a9;
  for (double p : rates) {
    rng.seed(++seed);
    const double l = std::log1p(-p);
    double sum = 0;
    for (auto& g : draws) {
      g = core::draw_gap_words(rng, p, l);
      sum += static_cast<double>(g);
    }
    std::sort(draws.begin(), draws.end());
    expect_fits(geometric_law(p), draws, alpha);
    const band ok = geometric_sum_band(static_cast<double>(n), p, alpha);
    EXPECT_TRUE(ok.contains(sum)) << "p=" << p << ": sum of " << n << " gaps " << sum
                                  << ", exact band [" << ok.lo << ", " << ok.hi << "]";
  }
  // Degenerate rates, deterministic.
  rng.seed(1);
  EXPECT_EQ(core::draw_gap_words(rng, 1.0, std::log1p(-1.0)), 1u);
  EXPECT_EQ(core::draw_gap_words(rng, 0.0, 0.0), core::max_gap_words);
}

// ---------------------------------------------------------------------------
// 2. draw_binomial matches Binomial(n, p).

// Seven (n, p), four checks each (chi-square, per-bin, DKW, sum): 28 checks
// at kTestAlpha / 28 each; 1e-9 in all, of which 2.5e-10 nominal.
TEST(BinomialLaw, DrawBinomialMatchesBinomial) {
  struct param {
    std::uint64_t n;
    double p;
  };
  // (200, 0.7) and (50, 0.9) take the complement branch (p > 1/2).
  const param params[] = {{10, 0.5}, {1000, 0.01}, {100000, 1e-4}, {50, 0.9},
                          {1, 0.3},  {200, 0.7},   {8192, 0.01}};
  const double alpha = kTestAlpha / 28;
  const std::uint64_t draws_per_param = scaled(500'000);
  std::vector<std::uint64_t> draws(draws_per_param);
  core::xoshiro256 rng;
  std::uint64_t seed = 0xb1a;
  for (const param& q : params) {
    rng.seed(++seed);
    double sum = 0;
    for (auto& x : draws) {
      x = core::draw_binomial(rng, q.n, q.p);
      sum += static_cast<double>(x);
    }
    std::sort(draws.begin(), draws.end());
    expect_fits(binomial_law(q.n, q.p), draws, alpha);
    // The sum of the draws is Binomial(draws * n, p).
    const band ok = binomial_band(static_cast<double>(draws_per_param * q.n), q.p, alpha);
    EXPECT_TRUE(ok.contains(sum)) << "Binomial(" << q.n << ", " << q.p << "): sum " << sum
                                  << ", exact band [" << ok.lo << ", " << ok.hi << "]";
  }
  rng.seed(2);
  EXPECT_EQ(core::draw_binomial(rng, 0, 0.5), 0u);
  EXPECT_EQ(core::draw_binomial(rng, 17, 0.0), 0u);
  EXPECT_EQ(core::draw_binomial(rng, 17, 1.0), 17u);
}

// ---------------------------------------------------------------------------
// The engine, through the hooks.

enum class entry { malloc, operator_new };

void* allocate(entry e, std::size_t bytes) {
  void* p = e == entry::malloc ? std::malloc(bytes) : ::operator new(bytes);
  escape(p);
  return p;
}

void release(entry e, void* p) {
  if (e == entry::malloc) {
    std::free(p);
  } else {
    ::operator delete(p);
  }
}

memprof::source source_of(entry e) {
  return e == entry::malloc ? memprof::source::malloc : memprof::source::new_delete;
}

const char* name_of(entry e) { return e == entry::malloc ? "malloc" : "new"; }

// Counts what it is told while `recording`; allocation-free.
class counting_tracker final : public memprof::tracker {
 public:
  void* on_alloc(const memprof::allocation& a) override {
    if (!recording) return nullptr;
    ++blocks;
    samples += a.n_samples;
    if (a.size != expected_size || a.origin != expected_origin) ++unexpected;
    return nullptr;
  }

  void reset(std::size_t size, memprof::source origin) {
    blocks = samples = unexpected = 0;
    expected_size = size;
    expected_origin = origin;
  }

  bool recording = false;
  std::size_t expected_size = 0;
  memprof::source expected_origin = memprof::source::malloc;
  std::uint64_t blocks = 0;      // blocks reported (n_samples >= 1)
  std::uint64_t samples = 0;     // sum of n_samples
  std::uint64_t unexpected = 0;  // wrong size or origin
};

// The criterion, for the log: (x - mean) / sd of Binomial(trials, p).
double z_score(double x, double trials, double p) {
  return (x - trials * p) / std::sqrt(trials * p * (1 - p));
}

// 3. Sample counts: allocate `blocks` blocks of `size` bytes through `e`
// under one profile at `rate` (above the base rate, so the core samples at
// `rate` and the profile sees every core sample). Over W = blocks * w words,
// the samples are Binomial(W, rate), and the blocks reported (n >= 1) are
// Binomial(blocks, 1 - (1 - rate)^w). Two checks at `alpha` each.
void check_sample_count(entry e, std::size_t size, double rate, std::uint64_t blocks,
                        std::uint64_t seed, double alpha) {
  counting_tracker tracker;
  tracker.reset(size, source_of(e));
  {
    memprof::profile profile(tracker, rate);
    core::reseed(seed);
    tracker.recording = true;
    for (std::uint64_t i = 0; i < blocks; ++i) release(e, allocate(e, size));
    tracker.recording = false;
  }
  const std::uint64_t w = words_of(size);
  const double words = static_cast<double>(blocks * w);
  const band samples_ok = binomial_band(words, rate, alpha);
  // Counted as the blocks left unsampled, Binomial(blocks, (1 - rate)^w):
  // (1 - rate)^w is representable where 1 - (1 - rate)^w rounds to 1. When
  // it underflows to 0 (w * -log1p(-rate) > ~745), any miss fails the
  // check, falsely with probability below blocks * 1e-323.
  const double p_miss = std::exp(static_cast<double>(w) * std::log1p(-rate));
  const band misses_ok =
      p_miss > 0 ? binomial_band(static_cast<double>(blocks), p_miss, alpha) : band{0, 0};
  const band blocks_ok = {static_cast<double>(blocks) - misses_ok.hi,
                          static_cast<double>(blocks) - misses_ok.lo};
  const double p_block = 1 - p_miss;
  const double z = z_score(static_cast<double>(tracker.samples), words, rate);
  std::printf(
      "  %-6s size=%-6zu rate=%-6g blocks=%-8llu W=%-10.0f samples=%-8llu "
      "band=[%.0f, %.0f] z=%+.2f reported=%llu band=[%.0f, %.0f]\n",
      name_of(e), size, rate, static_cast<unsigned long long>(blocks), words,
      static_cast<unsigned long long>(tracker.samples), samples_ok.lo, samples_ok.hi, z,
      static_cast<unsigned long long>(tracker.blocks), blocks_ok.lo, blocks_ok.hi);
  EXPECT_TRUE(samples_ok.contains(static_cast<double>(tracker.samples)))
      << name_of(e) << " size " << size << " rate " << rate << ": " << tracker.samples
      << " samples over " << words << " words, expected " << words * rate << ", exact band ["
      << samples_ok.lo << ", " << samples_ok.hi << "], z = " << z;
  EXPECT_TRUE(blocks_ok.contains(static_cast<double>(tracker.blocks)))
      << name_of(e) << " size " << size << " rate " << rate << ": " << tracker.blocks << " of "
      << blocks << " blocks sampled, expected " << blocks * p_block << ", exact band ["
      << blocks_ok.lo << ", " << blocks_ok.hi << "]";
  EXPECT_EQ(tracker.unexpected, 0u) << "blocks reported with a wrong size or origin";
}

// Three rates, seven sizes, two checks each: 42 checks at kTestAlpha / 42
// (~2.4e-11) each; 1e-9 in all, all exact.
void check_sample_counts(entry e, std::uint64_t test) {
  const double rates[] = {1e-3, 0.01, 0.1};
  const std::size_t sizes[] = {1, 8, 9, 24, 100, 4096, 100000};
  const double alpha = kTestAlpha / (2 * std::size(rates) * std::size(sizes));
  // Enough blocks for ~20000 expected samples, within [2000, 4e6] blocks.
  std::uint64_t i = 0;
  for (double rate : rates) {
    for (std::size_t size : sizes) {
      const double wanted = std::ceil(20000.0 / (rate * static_cast<double>(words_of(size))));
      const std::uint64_t blocks = scaled(std::clamp(wanted, 2000.0, 4e6));
      check_sample_count(e, size, rate, blocks, engine_seed(test, i++), alpha);
    }
  }
}

TEST(EngineSampleCount, MallocBlocksHoldBinomialSamples) { check_sample_counts(entry::malloc, 1); }

TEST(EngineSampleCount, OperatorNewBlocksHoldBinomialSamples) {
  check_sample_counts(entry::operator_new, 2);
}

// ---------------------------------------------------------------------------
// 4. Intervals between sampled blocks.

// Records the loop index of each sampled block into preallocated storage.
class index_tracker final : public memprof::tracker {
 public:
  explicit index_tracker(std::size_t capacity) : indices(capacity) {}

  void* on_alloc(const memprof::allocation& a) override {
    if (!recording.load(std::memory_order_relaxed)) return nullptr;
    const std::uint64_t k = recorded.load(std::memory_order_relaxed);
    if (k < indices.size()) indices[k] = current.load(std::memory_order_relaxed);
    recorded.store(k + 1, std::memory_order_relaxed);
    if (a.n_samples != 1 || a.size != 8) ++unexpected;
    return nullptr;
  }

  std::vector<std::uint64_t> indices;
  std::atomic<bool> recording{false};
  std::atomic<std::uint64_t> current{0};   // index of the allocation in flight
  std::atomic<std::uint64_t> recorded{0};  // sampled blocks seen
  std::uint64_t unexpected = 0;
};

// One-word blocks at rate r: each block is sampled independently with
// probability r, so the index differences between consecutive sampled blocks
// (the first counted from the reseed, which draws a fresh gap) are i.i.d.
// Geometric(r). The loop stops at the K-th sample (a stopping time, so the
// K gaps are exactly i.i.d.), or at a cap that only a sum of gaps above the
// sum check's band can reach. Three rates, four checks each (chi-square,
// per-bin, DKW, sum of gaps): 12 checks at kTestAlpha / 12 each; 1e-9 in
// all, of which 2.5e-10 nominal (chi-square).
TEST(EngineSampleIntervals, GapsBetweenSampledBlocksAreGeometric) {
  struct param {
    double rate;
    std::uint64_t gaps;
  };
  const param params[] = {{0.1, scaled(100'000)}, {0.01, scaled(100'000)}, {1e-3, scaled(20'000)}};
  const double alpha = kTestAlpha / 12;
  std::uint64_t i = 0;
  for (const param& q : params) {
    const band sum_ok = geometric_sum_band(static_cast<double>(q.gaps), q.rate, alpha);
    const auto cap = static_cast<std::uint64_t>(sum_ok.hi) + 1;
    index_tracker tracker(q.gaps);  // fixtures before the profile
    std::vector<std::uint64_t> gaps(q.gaps);
    {
      memprof::profile profile(tracker, q.rate);
      core::reseed(engine_seed(3, i++));
      tracker.recording.store(true, std::memory_order_relaxed);
      for (std::uint64_t i = 0;
           i < cap && tracker.recorded.load(std::memory_order_relaxed) < q.gaps; ++i) {
        tracker.current.store(i, std::memory_order_relaxed);
        std::free(allocate(entry::malloc, 8));
      }
      tracker.recording.store(false, std::memory_order_relaxed);
    }
    EXPECT_EQ(tracker.unexpected, 0u) << "an 8-byte block reported with n_samples != 1";
    ASSERT_EQ(tracker.recorded.load(), q.gaps)
        << "rate " << q.rate << ": fewer than " << q.gaps << " samples in " << cap
        << " allocations (the sum of gaps is above its exact band [" << sum_ok.lo << ", "
        << sum_ok.hi << "])";
    double sum = 0;
    std::uint64_t previous = 0;
    for (std::uint64_t k = 0; k < q.gaps; ++k) {
      const std::uint64_t next = tracker.indices[k] + 1;  // 1-based position
      gaps[k] = next - previous;
      previous = next;
      sum += static_cast<double>(gaps[k]);
    }
    std::sort(gaps.begin(), gaps.end());
    expect_fits(geometric_law(q.rate), gaps, alpha);
    EXPECT_TRUE(sum_ok.contains(sum))
        << "rate " << q.rate << ": " << q.gaps << " gaps sum to " << sum << ", exact band ["
        << sum_ok.lo << ", " << sum_ok.hi << "]";
  }
}

// ---------------------------------------------------------------------------
// 5. Rate 1 is exact. Deterministic: no false failures.

struct rate_one_record {
  std::uint32_t calls;
  std::uint64_t n_samples;
  std::size_t size;
  void* address;
  memprof::source origin;
};

class rate_one_tracker final : public memprof::tracker {
 public:
  void* on_alloc(const memprof::allocation& a) override {
    if (current == nullptr) return nullptr;
    ++current->calls;
    current->n_samples = a.n_samples;
    current->size = a.size;
    current->address = a.address;
    current->origin = a.origin;
    return nullptr;
  }
  rate_one_record* current = nullptr;
};

TEST(RateOne, EveryWordIsSampled) {
  std::vector<std::size_t> sizes;
  for (std::size_t b = 0; b <= 200; ++b) sizes.push_back(b);
  for (std::size_t b : {4095, 4096, 4097, 65536, 100000, 1 << 20, (3 << 20) + 5}) {
    sizes.push_back(b);
  }
  sizes.push_back(0);  // again, after a sampled block
  const entry entries[] = {entry::malloc, entry::operator_new};
  std::vector<rate_one_record> records(2 * sizes.size(), rate_one_record{});
  std::vector<void*> addresses(records.size(), nullptr);
  rate_one_tracker tracker;
  {
    memprof::profile profile(tracker, 1.0);
    core::reseed(engine_seed(4, 0));
    std::size_t i = 0;
    for (entry e : entries) {
      for (std::size_t size : sizes) {
        tracker.current = &records[i];
        void* p = allocate(e, size);
        tracker.current = nullptr;
        addresses[i++] = p;
        release(e, p);
      }
    }
  }
  std::size_t i = 0;
  for (entry e : entries) {
    for (std::size_t size : sizes) {
      const rate_one_record& r = records[i];
      const void* p = addresses[i++];
      if (size == 0) {
        EXPECT_EQ(r.calls, 0u) << name_of(e) << ": a block of 0 bytes was reported";
        continue;
      }
      ASSERT_EQ(r.calls, 1u) << name_of(e) << " size " << size;
      EXPECT_EQ(r.n_samples, words_of(size)) << name_of(e) << " size " << size;
      EXPECT_EQ(r.size, size) << name_of(e);
      EXPECT_EQ(r.address, p) << name_of(e) << " size " << size;
      EXPECT_EQ(r.origin, source_of(e)) << name_of(e) << " size " << size;
    }
  }
}

// ---------------------------------------------------------------------------
// 6. Thinning, and the base accounting's live-heap estimate.

// Keeps `rounds` times `blocks` blocks of `size` bytes live, frees them, and
// checks that the estimate comes back exactly each time. Returns the sum of
// the estimate's increases (in samples at the base rate: increase / weight).
struct live_heap_run {
  std::uint64_t base_samples = 0;
  double words = 0;
  bool exact_multiples = true;
};

live_heap_run keep_and_free(std::vector<void*>& blocks, std::size_t size, int rounds,
                            const std::function<void(bool)>& set_recording) {
  live_heap_run run;
  const double weight = 8.0 / core::base_rate();  // bytes per base-rate sample
  const auto per_sample = static_cast<std::int64_t>(std::llround(weight));
  for (int round = 0; round < rounds; ++round) {
    const std::int64_t before = core::live_heap_estimate();
    set_recording(true);
    for (void*& p : blocks) p = allocate(entry::malloc, size);
    set_recording(false);
    const std::int64_t increase = core::live_heap_estimate() - before;
    for (void* p : blocks) std::free(p);
    EXPECT_EQ(core::live_heap_estimate(), before)
        << "round " << round << ": the estimate did not come back";
    // Each block adds llround(n * weight) for its n base samples; with
    // weight an integer (80000 at 1e-4) that is n * weight exactly.
    if (increase % per_sample != 0) run.exact_multiples = false;
    run.base_samples += static_cast<std::uint64_t>(increase / per_sample);
    run.words += static_cast<double>(blocks.size() * words_of(size));
  }
  return run;
}

// Two profiles at 0.1 and 0.01 at once: the core samples at 0.1; the profile
// at 0.01 and the base accounting (1e-4) thin its samples. Over W words,
// each profile's total is Binomial(W, own rate) and the estimate's increase
// is weight * Binomial(W, base rate), weight = 8 / base rate bytes: an
// unbiased estimate of the 8W bytes allocated. Three checks at
// kTestAlpha / 3 each; 1e-9 in all, exact. Plus a deterministic one: the
// estimate comes back to its value after every free.
TEST(Thinning, TwoProfilesEachSeeTheirOwnRate) {
  constexpr std::size_t size = 64 * 1024;
  const std::uint64_t count = scaled(3200);  // 200 MiB live per round
  const int rounds = 4;
  const double alpha = kTestAlpha / 3;
  std::vector<void*> blocks(count, nullptr);
  counting_tracker fine, coarse;
  fine.reset(size, memprof::source::malloc);
  coarse.reset(size, memprof::source::malloc);
  live_heap_run run;
  {
    memprof::profile fine_profile(fine, 0.1);
    memprof::profile coarse_profile(coarse, 0.01);
    ASSERT_EQ(core::sampling_rate(), 0.1);
    core::reseed(engine_seed(5, 0));
    run = keep_and_free(blocks, size, rounds, [&](bool on) {
      fine.recording = on;
      coarse.recording = on;
    });
  }
  const double base = core::base_rate();
  const band fine_ok = binomial_band(run.words, 0.1, alpha);
  const band coarse_ok = binomial_band(run.words, 0.01, alpha);
  const band base_ok = binomial_band(run.words, base, alpha);
  std::printf(
      "  W=%.0f  rate 0.1: %llu band=[%.0f, %.0f] z=%+.2f  rate 0.01: %llu "
      "band=[%.0f, %.0f] z=%+.2f  base %g: %llu band=[%.0f, %.0f] z=%+.2f "
      "(estimate / true bytes = %.4f)\n",
      run.words, static_cast<unsigned long long>(fine.samples), fine_ok.lo, fine_ok.hi,
      z_score(static_cast<double>(fine.samples), run.words, 0.1),
      static_cast<unsigned long long>(coarse.samples), coarse_ok.lo, coarse_ok.hi,
      z_score(static_cast<double>(coarse.samples), run.words, 0.01), base,
      static_cast<unsigned long long>(run.base_samples), base_ok.lo, base_ok.hi,
      z_score(static_cast<double>(run.base_samples), run.words, base),
      static_cast<double>(run.base_samples) / (run.words * base));
  EXPECT_TRUE(fine_ok.contains(static_cast<double>(fine.samples)))
      << "profile at 0.1: " << fine.samples << " samples over " << run.words
      << " words, exact band [" << fine_ok.lo << ", " << fine_ok.hi << "]";
  EXPECT_TRUE(coarse_ok.contains(static_cast<double>(coarse.samples)))
      << "profile at 0.01: " << coarse.samples << " samples over " << run.words
      << " words, exact band [" << coarse_ok.lo << ", " << coarse_ok.hi << "]";
  EXPECT_TRUE(base_ok.contains(static_cast<double>(run.base_samples)))
      << "live-heap estimate: " << run.base_samples << " base samples over " << run.words
      << " words, exact band [" << base_ok.lo << ", " << base_ok.hi << "]; estimate / true bytes = "
      << static_cast<double>(run.base_samples) / (run.words * base);
  EXPECT_TRUE(run.exact_multiples) << "an increase is not a whole number of samples";
  EXPECT_EQ(fine.unexpected + coarse.unexpected, 0u);
}

// No profile: the core samples at the base rate itself. The estimate's
// increase over W words is weight * Binomial(W, base rate). One check at
// kTestAlpha; exact. Plus: the estimate comes back after every free.
TEST(LiveHeapEstimate, IsUnbiasedAtBaseRate) {
  constexpr std::size_t size = 64 * 1024;
  const std::uint64_t count = scaled(3200);  // 200 MiB live per round
  const int rounds = 10;
  std::vector<void*> blocks(count, nullptr);
  ASSERT_EQ(core::sampling_rate(), core::base_rate()) << "a profile is running";
  core::reseed(engine_seed(6, 0));
  const live_heap_run run = keep_and_free(blocks, size, rounds, [](bool) {});
  const double base = core::base_rate();
  const band ok = binomial_band(run.words, base, kTestAlpha);
  // The same band as a ratio of the estimate to the true bytes (8W).
  const double ratio = static_cast<double>(run.base_samples) / (run.words * base);
  std::printf(
      "  W=%.0f base %g: %llu samples band=[%.0f, %.0f] z=%+.2f estimate / true "
      "bytes = %.4f, allowed [%.4f, %.4f]\n",
      run.words, base, static_cast<unsigned long long>(run.base_samples), ok.lo, ok.hi,
      z_score(static_cast<double>(run.base_samples), run.words, base), ratio,
      ok.lo / (run.words * base), ok.hi / (run.words * base));
  EXPECT_TRUE(ok.contains(static_cast<double>(run.base_samples)))
      << run.base_samples << " base samples over " << run.words << " words, exact band [" << ok.lo
      << ", " << ok.hi << "]; estimate / true bytes = " << ratio;
  EXPECT_TRUE(run.exact_multiples) << "an increase is not a whole number of samples";
}

}  // namespace
