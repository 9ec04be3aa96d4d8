// tests/support/recording_fixture.hpp — the fixture of the tests that check
// what the hooks and adapters report: a recording tracker (reserved before
// any profile starts), an optional profile feeding it, expectations about
// single reports, and, on tear-down, the checks every such test must pass.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <gtest/gtest.h>

#include "memlimits/memprof.hpp"
#include "support/recording_tracker.hpp"
#include "tracking/tracking.hpp"

namespace memlimits::testing {

// A recorder (reserved before any profile starts) and an optional profile
// feeding it; on tear-down, checks that no free was reported twice or with a
// foreign cookie and, unless a test opts out, that every reported block was
// reported freed.
class recording_fixture : public ::testing::Test {
 protected:
  void start(double rate = 1.0) { profile_.emplace(recorder_, rate); }
  void stop() { profile_.reset(); }

  void TearDown() override {
    stop();
    EXPECT_EQ(recorder_.overflow(), 0u) << "recorder too small for this test";
    EXPECT_EQ(recorder_.bad_cookies(), 0u) << "on_free called with a cookie on_alloc never returned";
    for (std::size_t i = 0; i < recorder_.mark(); ++i) {
      const recorded_block& e = recorder_.at(i);
      EXPECT_LE(e.frees.load(), 1) << "block " << e.address << " of " << e.size
                                   << " bytes reported freed more than once";
      // Whatever the rate, a block holds at most one sample per word.
      EXPECT_GE(e.n_samples, 1u) << "block " << e.address << " of " << e.size << " bytes";
      EXPECT_LE(e.n_samples, words(e.size)) << "block " << e.address << " of " << e.size
                                            << " bytes reported with too many samples";
    }
    if (expect_all_freed_) {
      EXPECT_EQ(recorder_.live(), 0) << "reported blocks whose free was not reported:"
                                     << unfreed();
    }
  }

  // The blocks reported and not reported freed, for failure messages.
  std::string unfreed() const {
    std::string text;
    int shown = 0;
    for (std::size_t i = 0; i < recorder_.mark() && shown < 10; ++i) {
      const recorded_block& e = recorder_.at(i);
      if (e.frees.load() != 0) continue;
      ++shown;
      text += "\n  #" + std::to_string(i) + ": " + std::to_string(e.size) + " bytes, origin " +
              std::to_string(static_cast<int>(e.origin)) +
              (e.allocated_by == std::this_thread::get_id() ? ", this thread"
                                                            : ", another thread");
    }
    return text;
  }

  // Exactly one block was reported since `from`: at `p`, of `size` bytes,
  // from `origin`, with ceil(size / 8) samples, a block of the tracking layer,
  // not yet freed.
  // Returns its entry (nullptr after a failure).
  // `what` and `detail` name the case in failure messages; they are views so
  // that passing them allocates nothing between the allocation and the check.
  const recorded_block* expect_one_report(std::size_t from, const void* p, std::size_t size,
                                 memprof::source origin, std::string_view what,
                                 std::string_view detail = {}) {
    const std::size_t reports = recorder_.mark() - from;
    EXPECT_EQ(reports, 1u) << what << detail << ": " << reports << " blocks reported";
    const recorded_block* e = recorder_.find(p, from);
    EXPECT_NE(e, nullptr) << what << detail << ": block " << p << " not reported";
    if (e == nullptr) return nullptr;
    EXPECT_EQ(e->address, p) << what << detail;
    EXPECT_EQ(e->size, size) << what << detail;
    EXPECT_EQ(e->n_samples, words(size)) << what << detail;
    EXPECT_EQ(e->origin, origin) << what << detail;
    EXPECT_EQ(e->frees.load(), 0) << what << detail << ": reported freed before its free";
    EXPECT_TRUE(tracking::owns(p))
        << what << detail << ": sampled block " << p << " is not a block of the tracking layer";
    return e;
  }

  void expect_freed_once(const recorded_block* e, std::string_view what, std::string_view detail = {}) {
    if (e == nullptr) return;
    EXPECT_EQ(e->frees.load(), 1) << what << detail << ": free of " << e->address
                                  << " reported " << e->frees.load() << " times";
  }

  // No block of `size` bytes was reported since `from` (a failed allocation;
  // other blocks, such as a thrown exception's, may have been).
  void expect_not_reported(std::size_t from, std::size_t size, std::string_view what) {
    for (std::size_t i = from; i < recorder_.mark(); ++i) {
      EXPECT_NE(recorder_.at(i).size, size) << what << ": a failed allocation was reported";
      EXPECT_NE(recorder_.at(i).address, nullptr) << what;
    }
  }

  recording_tracker recorder_;
  std::optional<memprof::profile> profile_;
  bool expect_all_freed_ = true;
};

}  // namespace memlimits::testing
