// The reserved range of sampled blocks and its allocator
// (tracking/range.hpp, tracking/range_heap.hpp): every size class and
// alignment, contents kept apart, usable sizes, runs coalesced and given
// back, a double free caught, threads, fork, an address-space limit.
// Called directly, so that the sanitizer builds (whose hooks keep sampled
// blocks in the sanitizer's allocator) check this code too.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/sampler.hpp"
#include "support/sanitizers.hpp"
#include "platform/platform.hpp"
#include "tracking/range.hpp"
#include "tracking/range_heap.hpp"
#include "tracking/tracking.hpp"

namespace {

using namespace memlimits::tracking;

bool aligned_to(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}

struct block {
  unsigned char* p;
  std::size_t bytes;
  unsigned char fill;
};

block make_block(std::size_t bytes, std::size_t alignment, unsigned char fill) {
  auto* p = static_cast<unsigned char*>(range_heap::allocate(bytes, alignment));
  EXPECT_NE(p, nullptr) << bytes << " bytes aligned to " << alignment;
  if (p != nullptr) std::memset(p, fill, bytes);
  return {p, bytes, fill};
}

// The first byte of b that lost its fill, or b.bytes.
std::size_t intact(const block& b) {
  for (std::size_t i = 0; i < b.bytes; ++i) {
    if (b.p[i] != b.fill) return i;
  }
  return b.bytes;
}

TEST(RangeBounds, HoldsItsBlocksAndNoOtherAddress) {
  ASSERT_TRUE(range::reserve());
  const range::statistics s = range::stats();
  EXPECT_GE(s.reserved_bytes, std::size_t{4} << 20);
  void* p = range_heap::allocate(100, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(range::contains(p));
  const int on_stack = 0;
  EXPECT_FALSE(range::contains(&on_stack));
  EXPECT_FALSE(range::contains(nullptr));
  static int global = 0;
  EXPECT_FALSE(range::contains(&global));
  const auto base = range::current.base.load();
  EXPECT_TRUE(range::contains(reinterpret_cast<void*>(base)));
  EXPECT_TRUE(range::contains(reinterpret_cast<void*>(base + s.reserved_bytes - 1)));
  EXPECT_FALSE(range::contains(reinterpret_cast<void*>(base - 1)));
  EXPECT_FALSE(range::contains(reinterpret_cast<void*>(base + s.reserved_bytes)));
  range_heap::free(p);
}

TEST(RangeHeap, EverySizeAndAlignmentKeepsItsContents) {
  // The test's own allocations stay out of the range, so that it counts
  // only its blocks.
  const memlimits::core::sampling_off off;
  const std::size_t live_before = range_heap::stats().live_blocks;
  std::vector<std::size_t> sizes;
  for (std::size_t n = 0; n <= 600; ++n) sizes.push_back(n);
  for (std::size_t n = 601; n <= 140000; n += 97) sizes.push_back(n);
  for (std::size_t n : {4096, 8192, 32768, 131056, 131057, 131072, 1 << 20, (1 << 20) + 1}) {
    sizes.push_back(n);
  }
  std::vector<block> blocks;
  unsigned char fill = 1;
  for (std::size_t alignment = 0; alignment <= 65536; alignment = alignment == 0 ? 16 : alignment * 2) {
    for (std::size_t n : sizes) {
      if (alignment > 256 && n % 7 != 0) continue;  // fewer of the rarer shapes
      if (n == 0 && alignment != 0) {
        // The address of an empty block lies inside its slot.
        void* p = range_heap::allocate(0, alignment);
        ASSERT_NE(p, nullptr);
        EXPECT_GE(range_heap::usable_size(p), 1u) << alignment;
        range_heap::free(p);
      }
      block b = make_block(n, alignment, fill);
      fill = static_cast<unsigned char>(fill % 251 + 1);
      ASSERT_NE(b.p, nullptr);
      EXPECT_TRUE(aligned_to(b.p, alignment == 0 ? 16 : alignment)) << n << " " << alignment;
      EXPECT_TRUE(range::contains(b.p));
      EXPECT_TRUE(range::contains(b.p + (n == 0 ? 0 : n - 1)));
      const std::size_t usable = range_heap::usable_size(b.p);
      EXPECT_GE(usable, n);
      // Rounding to a class loses at most an eighth, besides the header and
      // the alignment's padding; a block on a run of its own, less than a unit.
      if (alignment <= 16 && n + 16 <= 4096) {
        EXPECT_LE(usable, std::max<std::size_t>(n + 16, (n + 16) * 9 / 8)) << n;
      } else if (alignment <= 16) {
        EXPECT_LT(usable, n + range::unit_bytes) << n;
      }
      blocks.push_back(b);
    }
  }
  EXPECT_EQ(range_heap::stats().live_blocks, live_before + blocks.size());
  for (const block& b : blocks) ASSERT_EQ(intact(b), b.bytes) << b.bytes << " bytes at " << static_cast<void*>(b.p);
  // Free every other one, allocate again into the holes, check all again.
  for (std::size_t i = 0; i < blocks.size(); i += 2) {
    range_heap::free(blocks[i].p);
    blocks[i] = make_block(blocks[i].bytes, 0, static_cast<unsigned char>(255 - blocks[i].fill));
  }
  for (const block& b : blocks) ASSERT_EQ(intact(b), b.bytes);
  for (const block& b : blocks) range_heap::free(b.p);
  EXPECT_EQ(range_heap::stats().live_blocks, live_before);
}

TEST(RangeHeap, RandomOperationsAgainstAModel) {
  std::mt19937_64 random(20261207);
  std::vector<block> live;
  for (int step = 0; step < 200000; ++step) {
    if (!live.empty() && random() % 100 < 48) {
      const std::size_t i = random() % live.size();
      ASSERT_EQ(intact(live[i]), live[i].bytes) << "step " << step;
      range_heap::free(live[i].p);
      live[i] = live.back();
      live.pop_back();
    } else {
      // Mostly small, sometimes a few pages, rarely large.
      const std::uint64_t kind = random() % 1000;
      const std::size_t n = kind < 900 ? random() % 512 : kind < 995 ? random() % 40000 : random() % 600000;
      const std::size_t alignment = random() % 10 == 0 ? std::size_t{16} << (random() % 9) : 0;
      block b = make_block(n, alignment, static_cast<unsigned char>(random()));
      ASSERT_NE(b.p, nullptr);
      if (alignment != 0) {
        ASSERT_TRUE(aligned_to(b.p, alignment));
      }
      live.push_back(b);
    }
  }
  for (const block& b : live) {
    ASSERT_EQ(intact(b), b.bytes);
    range_heap::free(b.p);
  }
}

TEST(RangeRuns, NeighboursCoalesceAndTheFrontIsReused) {
  ASSERT_TRUE(range::reserve());
  // Runs larger than anything else this process frees.
  const std::size_t pages = range::stats().reserved_bytes / range::unit_bytes / 16;
  auto* a = static_cast<char*>(range::allocate_run(pages));
  auto* b = static_cast<char*>(range::allocate_run(pages));
  auto* c = static_cast<char*>(range::allocate_run(pages));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(b, a + pages * range::unit_bytes);
  ASSERT_EQ(c, b + pages * range::unit_bytes);
  range::free_run(b, pages);  // alone
  range::free_run(a, pages);  // merges forwards with b
  range::free_run(c, pages);  // merges backwards with a+b
  // Only their union (perhaps with a free run before a) holds 3 * pages;
  // without it, the run would come from beyond c.
  auto* all = static_cast<char*>(range::allocate_run(3 * pages));
  ASSERT_NE(all, nullptr);
  EXPECT_LE(all, a) << "the three free neighbours did not coalesce";
  range::free_run(all, 3 * pages);
}

TEST(RangeRuns, FreedPagesAreGivenBackAtOnceAboveTheHardBound) {
  constexpr std::size_t bytes = std::size_t{256} << 20;
  auto* run = static_cast<char*>(range::allocate_run(bytes / range::unit_bytes));
  ASSERT_NE(run, nullptr);
  std::memset(run, 7, bytes);
  const std::int64_t touched = memlimits::platform::resident_bytes();
  range::free_run(run, bytes / range::unit_bytes);
  const std::int64_t freed = memlimits::platform::resident_bytes();
  const range::statistics s = range::stats();
  // Above 64 MiB + 1/8 of the units in use, freed pages go back whatever
  // their age, down to half that.
  EXPECT_LE(s.free_dirty_bytes, ((std::size_t{64} << 20) + s.used_bytes / 8) / 2);
  EXPECT_GT(touched - freed, static_cast<std::int64_t>(bytes - (std::size_t{40} << 20)))
      << "resident before the free " << touched << ", after " << freed;
  // Given-back pages read as zeros and can be used again.
  auto* again = static_cast<char*>(range::allocate_run(bytes / range::unit_bytes));
  ASSERT_NE(again, nullptr);
  again[bytes - 1] = 1;
  range::free_run(again, bytes / range::unit_bytes);
}

TEST(RangeRuns, FreedPagesStayForReuseThenGoBackWhenOld) {
  // 16 MiB: above the soft bound (1 MiB + 1/128 of the units in use), below
  // the hard one. Freed, it stays resident for reuse...
  constexpr std::size_t bytes = std::size_t{16} << 20;
  constexpr std::size_t units = bytes / range::unit_bytes;
  auto* run = static_cast<char*>(range::allocate_run(units));
  ASSERT_NE(run, nullptr);
  std::memset(run, 7, bytes);
  range::free_run(run, units);
  EXPECT_GE(range::stats().free_dirty_bytes, bytes - range::unit_bytes);
  // ... and once it has been free for 10 ms, the next free gives it back.
  const std::uint64_t freed_at = memlimits::platform::monotonic_ns();
  void* small = range::allocate_run(1);
  ASSERT_NE(small, nullptr);
  while (memlimits::platform::monotonic_ns() - freed_at < 150'000'000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  range::free_run(small, 1);
  const range::statistics s = range::stats();
  EXPECT_LE(s.free_dirty_bytes, (std::size_t{1} << 20) + s.used_bytes / 128)
      << "a run free for 150 ms was not given back";
}

TEST(RangeHeap, ZeroedBlocksAreZeroAndFreshRunsStayUntouched) {
  // Reused memory is cleared: blocks of each kind, dirtied and freed, then
  // asked for again zeroed.
  for (const std::size_t n : {std::size_t{24}, std::size_t{3000}, std::size_t{20000},
                              std::size_t{300000}}) {
    std::vector<void*> dirty;
    for (int i = 0; i < 8; ++i) {
      void* p = range_heap::allocate(n, 0);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0xA5, n);
      dirty.push_back(p);
    }
    for (void* p : dirty) range_heap::free(p);
    for (int i = 0; i < 8; ++i) {
      auto* p = static_cast<unsigned char*>(range_heap::allocate(n, 0, true));
      ASSERT_NE(p, nullptr);
      const block b{p, n, 0};
      EXPECT_EQ(intact(b), n) << n << " bytes, round " << i;
      range_heap::free(p);
    }
  }
  // A large zeroed block on a run never used: no page of it is written.
  // (Larger than every run this process has freed, so that it comes from
  // past the frontier.)
  ASSERT_TRUE(range::reserve());
  const std::size_t bytes = range::stats().reserved_bytes / 4;
  const std::int64_t before = memlimits::platform::resident_bytes();
  auto* p = static_cast<unsigned char*>(range_heap::allocate(bytes, 0, true));
  ASSERT_NE(p, nullptr);
  const std::int64_t after = memlimits::platform::resident_bytes();
  EXPECT_LT(after - before, std::int64_t{16} << 20) << "a fresh zeroed run was written";
  EXPECT_EQ(p[bytes / 2], 0);
  EXPECT_EQ(p[bytes - 1], 0);
  range_heap::free(p);
}

TEST(RangeHeap, SlabsEmptiedGoBackToTheRange) {
  const memlimits::core::sampling_off off;
  const std::size_t slabs_before = range_heap::stats().slab_bytes;
  std::vector<void*> blocks;
  for (int i = 0; i < 5000; ++i) blocks.push_back(range_heap::allocate(3000, 0));
  EXPECT_GE(range_heap::stats().slab_bytes, slabs_before + 5000 * 3000);
  for (void* p : blocks) range_heap::free(p);
  // One slab of the class may stay.
  EXPECT_LE(range_heap::stats().slab_bytes, slabs_before + (std::size_t{64} << 10));
}

TEST(RangeHeap, RecordsHangFromTheirBlocks) {
  void* p = range_heap::allocate(40, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(range_heap::peek_record(p), nullptr);
  record* r = new_record();
  ASSERT_NE(r, nullptr);
  range_heap::set_record(p, r);
  std::memset(p, 0xFF, 40);  // the block's bytes are not the header
  EXPECT_EQ(range_heap::peek_record(p), r);
  EXPECT_EQ(range_heap::take_record(p), r);
  EXPECT_EQ(range_heap::take_record(p), nullptr);
  delete_record(r);
  range_heap::free(p);
}

TEST(RangeHeapDeathTest, ADoubleFreeStopsTheProcessWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        void* p = range_heap::allocate(64, 0);
        range_heap::free(p);
        range_heap::free(p);
      },
      "free of a sampled block that is not live");
}

TEST(RangeHeap, ThreadsAllocateAndFreeEachOthersBlocks) {
  constexpr int threads = 4;
  constexpr int rounds = 20000;
  // Each thread frees the blocks its left neighbour made, through a slot
  // array: a block crosses threads before its free.
  std::vector<std::atomic<unsigned char*>> slots(threads * 64);
  for (auto& s : slots) s.store(nullptr);
  std::atomic<int> bad{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 random(static_cast<std::uint64_t>(t) + 1);
      for (int i = 0; i < rounds; ++i) {
        const std::size_t n = 1 + random() % (random() % 8 == 0 ? 50000 : 300);
        auto* p = static_cast<unsigned char*>(range_heap::allocate(n, 0));
        if (p == nullptr) {
          ++bad;
          continue;
        }
        p[0] = static_cast<unsigned char>(n);
        p[n - 1] = static_cast<unsigned char>(n);
        const int slot = ((t + 1) % threads) * 64 + static_cast<int>(random() % 64);
        unsigned char* old = slots[slot].exchange(p);
        if (old != nullptr) range_heap::free(old);
      }
    });
  }
  for (std::thread& w : workers) w.join();
  for (auto& s : slots) {
    if (unsigned char* p = s.load(); p != nullptr) range_heap::free(p);
  }
  EXPECT_EQ(bad.load(), 0);
}

TEST(RangeHeap, AForkedChildAllocatesWhileTheParentsThreadsDid) {
#if defined(MEMLIMITS_TEST_TSAN)
  // In a child forked while another thread ran, ThreadSanitizer's own shadow
  // access for a block of the range faulted (4 runs in 5; the same test
  // passes every time in the normal and ASan builds). The TSan build's hooks
  // never use the range (tracking/tracking.hpp), so only this direct test is
  // concerned; why TSan faults there is not understood yet.
  GTEST_SKIP() << "ThreadSanitizer faults in the forked child (see the comment)";
#endif
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop.load()) {
      void* p = range_heap::allocate(5000, 0);
      void* q = range_heap::allocate(200000, 0);
      range_heap::free(p);
      range_heap::free(q);
    }
  });
  for (int i = 0; i < 20; ++i) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      void* p = range_heap::allocate(5000, 0);
      void* q = range_heap::allocate(200000, 0);
      range_heap::free(p);
      range_heap::free(q);
      ::_exit(p != nullptr && q != nullptr ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << i;
  }
  stop.store(true);
  busy.join();
}

// Under a limit on the address space the range takes at most an eighth of
// it. Checked in a new process started under the limit, since this one may
// have its range already.
TEST(RangeBounds, AnAddressSpaceLimitShrinksTheRange) {
  if (!uses_range) GTEST_SKIP() << "a sanitizer's shadow memory does not fit a 16 GiB RLIMIT_AS";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    struct rlimit limit{};
    ::getrlimit(RLIMIT_AS, &limit);
    limit.rlim_cur = std::size_t{16} << 30;
    if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(126);
    ::setenv("MEMLIMITS_TEST_UNDER_AS_LIMIT", "1", 1);
    ::execl("/proc/self/exe", "/proc/self/exe",
            "--gtest_filter=RangeBounds.ReservedUnderTheLimit", nullptr);
    ::_exit(127);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST(RangeBounds, ReservedUnderTheLimit) {
  if (std::getenv("MEMLIMITS_TEST_UNDER_AS_LIMIT") == nullptr) {
    GTEST_SKIP() << "run by AnAddressSpaceLimitShrinksTheRange, under a limit";
  }
  ASSERT_TRUE(range::reserve());
  EXPECT_EQ(range::stats().reserved_bytes, std::size_t{2} << 30);
}

}  // namespace
