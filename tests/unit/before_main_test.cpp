// Allocation before main: a profile started by a static constructor sees the
// allocations of static initialisation, and their frees in main. Its own
// binary, so that the rate-1 profile it leaves running affects no other test.
#include <cstdlib>

#include <gtest/gtest.h>

#include "memlimits/memprof.hpp"
#include "support/recording_tracker.hpp"

namespace {

using memlimits::testing::recording_tracker;

recording_tracker* early_tracker = nullptr;
memlimits::memprof::profile* early_profile = nullptr;
void* early_block = nullptr;

// Runs during static initialisation, before main and before GoogleTest.
const bool started_early = [] {
  early_tracker = new recording_tracker(1 << 20);
  early_profile = new memlimits::memprof::profile(*early_tracker, 1.0);
  early_block = std::malloc(777);
  memlimits::testing::sink(early_block);
  return true;
}();

TEST(BeforeMain, StaticInitialisationIsSampled) {
  ASSERT_TRUE(started_early);
  const auto* e = early_tracker->find(early_block);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->size, 777u);
  EXPECT_EQ(e->n_samples, 98u);  // ceil(777 / 8)
  EXPECT_EQ(e->origin, memlimits::memprof::source::malloc);
  EXPECT_EQ(e->frees.load(), 0);
  std::free(early_block);
  EXPECT_EQ(e->frees.load(), 1);
  // GoogleTest's own start-up allocated between then and now: all seen.
  EXPECT_GT(early_tracker->allocations(), 10u);
  early_profile->stop();
}

}  // namespace
