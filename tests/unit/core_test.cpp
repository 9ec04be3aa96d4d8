// The sampling core: word accounting, the fast path's countdown, seeding,
// reentrancy, edge cases of the random laws, and its internal checks.
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "core/sampler.hpp"
#include "core/distributions.hpp"
#include "core/subscribers.hpp"
#include "memlimits/memprof.hpp"
#include "support/recording_tracker.hpp"

namespace {

using namespace memlimits;
using memlimits::testing::sink;

TEST(CoreWords, BlocksCountInWholeWords) {
  EXPECT_EQ(core::counted_bytes(0), 0u);
  EXPECT_EQ(core::counted_bytes(1), 8u);
  EXPECT_EQ(core::counted_bytes(8), 8u);
  EXPECT_EQ(core::counted_bytes(9), 16u);
  EXPECT_EQ(core::counted_bytes(4096), 4096u);
  EXPECT_EQ(core::counted_bytes(4097), 4104u);
}

TEST(CoreFastPath, ConsumeAndRefundAreInverse) {
  void* warm = std::malloc(8);  // the thread's sampler is initialised
  sink(warm);
  std::free(warm);
  core::sampling_off off;  // countdown far from any event
  // The stream position is read off the countdown: it moves with every
  // consume() and refund().
  const std::uint64_t before = core::stream_position();
  for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{100},
                            std::numeric_limits<std::size_t>::max(),
                            std::numeric_limits<std::size_t>::max() / 2 + 9}) {
    (void)core::consume(bytes);
    core::refund(bytes);
    EXPECT_EQ(core::stream_position(), before) << bytes;
  }
}

TEST(CoreFastPath, ImpossibleAllocationsLeaveTheStreamAlone) {
  // Requests glibc refuses must neither hang the slow path (a block of 2^59
  // words at any rate) nor shift the countdown.
  for (std::size_t bytes : {std::numeric_limits<std::size_t>::max(),
                            std::numeric_limits<std::size_t>::max() - 4096,
                            std::size_t{1} << 62, std::size_t{1} << 50}) {
    errno = 0;
    void* p = std::malloc(bytes);
    EXPECT_EQ(p, nullptr) << bytes;
    EXPECT_EQ(errno, ENOMEM) << bytes;
  }
  memlimits::testing::recording_tracker t(16);
  memprof::profile p(t, 0.5);
  errno = 0;
  EXPECT_EQ(std::malloc(std::size_t{1} << 62), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(CoreSlowPath, ReentrantEventsDrawNothing) {
  core::sampling_off off;
  EXPECT_TRUE(core::sampling_is_off());
  EXPECT_EQ(core::on_event(1 << 20), 0u);
}

TEST(CoreSeeding, ReseedMakesTheStreamReproducible) {
  memlimits::testing::recording_tracker t(1 << 16);
  memprof::profile p(t, 0.01);
  std::vector<void*> blocks(20000);
  auto run = [&] {
    std::vector<std::size_t> sampled;
    core::reseed(42);
    const std::size_t first = t.allocations();
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      blocks[i] = std::malloc(64);
      sink(blocks[i]);
    }
    for (std::size_t i = first; i < t.mark(); ++i) sampled.push_back(t.at(i).n_samples);
    for (void* b : blocks) std::free(b);
    return sampled;
  };
  const auto a = run();
  const auto b = run();
  EXPECT_GT(a.size(), 100u);  // about 20000 * 8 * 0.01 / (1 + ...) blocks
  EXPECT_EQ(a, b);
}

TEST(CoreLaws, EdgeRates) {
  core::xoshiro256 rng;
  rng.seed(7);
  EXPECT_EQ(core::draw_gap_words(rng, 1.0, std::log1p(-1.0)), 1u);
  EXPECT_EQ(core::draw_gap_words(rng, 0.0, 0.0), core::max_gap_words);
  const double tiny = 1e-300;
  EXPECT_LE(core::draw_gap_words(rng, tiny, std::log1p(-tiny)), core::max_gap_words);
  EXPECT_EQ(core::draw_binomial(rng, 0, 0.5), 0u);
  EXPECT_EQ(core::draw_binomial(rng, 1000, 0.0), 0u);
  EXPECT_EQ(core::draw_binomial(rng, 1000, 1.0), 1000u);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_LE(core::draw_binomial(rng, 10, 0.97), 10u);  // complement branch
  }
  // Past the exact regime: bounded in time and in [0, n].
  const std::uint64_t huge = std::uint64_t{1} << 59;
  const std::uint64_t drawn = core::draw_binomial(rng, huge, 0.5);
  EXPECT_LE(drawn, huge);
  EXPECT_NEAR(static_cast<double>(drawn) / static_cast<double>(huge), 0.5, 1e-6);
}

TEST(CoreLaws, GeneratorIsTheReferenceXoshiro256StarStar) {
  // xoshiro256** of Blackman & Vigna from the state {1, 2, 3, 4}: the
  // reference implementation (prng.di.unimi.it/xoshiro256starstar.c) gives
  // 11520, 0, 1509978240, 1215971899390074240.
  core::xoshiro256 rng(1, 2, 3, 4);
  EXPECT_EQ(rng(), 11520u);
  EXPECT_EQ(rng(), 0u);
  EXPECT_EQ(rng(), 1509978240u);
  EXPECT_EQ(rng(), 1215971899390074240u);
  // Seeding goes through splitmix64: equal seeds, equal streams.
  core::xoshiro256 a;
  core::xoshiro256 b;
  a.seed(99);
  b.seed(99);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a(), b());
}

TEST(CoreRate, ProfilesRaiseTheRateAndStoppingRestoresIt) {
  const double base = core::base_rate();
  EXPECT_DOUBLE_EQ(core::sampling_rate(), base);
  memlimits::testing::recording_tracker t(16);
  {
    memprof::profile p(t, 0.25);
    EXPECT_DOUBLE_EQ(core::sampling_rate(), 0.25);
    {
      memprof::profile q(t, 0.5);
      EXPECT_DOUBLE_EQ(core::sampling_rate(), 0.5);
    }
    EXPECT_DOUBLE_EQ(core::sampling_rate(), 0.25);
  }
  EXPECT_DOUBLE_EQ(core::sampling_rate(), base);
}

TEST(CoreDeathTest, InvalidInternalRateIsACheckFailure) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(core::set_sampling_rate(0.0), "check failed.*sampling rate outside");
  EXPECT_DEATH(core::set_base_rate(2.0), "check failed.*base rate outside");
}

}  // namespace
