// The table of sampled blocks: insert/remove/contains against a model,
// growth, the backward-shift deletion of linear probing, concurrency.
// Addresses are fake (page-aligned numbers, never dereferenced).
#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tracking/block_table.hpp"

namespace {

using namespace memlimits;
namespace table = memlimits::tracking::table;

// Granule n of a 32 TiB region of the 47-bit user address space where the
// test has no mapping, so no real sampled block collides (n < 2^37).
void* fake_address(std::uint64_t n) {
  return reinterpret_cast<void*>(std::uint64_t{0x4000'0000'0000} +
                                 ((n << 8) & ((std::uint64_t{1} << 45) - 1)));
}

tracking::record* make(void* address) {
  tracking::record* r = tracking::new_record();
  EXPECT_NE(r, nullptr);
  r->address = address;
  r->size = 1;
  return r;
}

TEST(TrackingAlignment, OnlyGranuleAlignedPointersMayBeSampled) {
  static_assert(table::sampled_alignment == 128);
  EXPECT_TRUE(table::may_be_sampled(reinterpret_cast<void*>(0x10000)));
  EXPECT_TRUE(table::may_be_sampled(reinterpret_cast<void*>(0x10100)));
  EXPECT_TRUE(table::may_be_sampled(nullptr));  // free(nullptr) takes the slow path
  EXPECT_FALSE(table::may_be_sampled(reinterpret_cast<void*>(0x10010)));
  EXPECT_FALSE(table::may_be_sampled(reinterpret_cast<void*>(0x100f0)));
}

TEST(TrackingBitmap, MarksExactlyTheInsertedGranules) {
  // Neighbouring granules of one leaf, and granules of two leaves (1 GiB apart).
  void* a = fake_address(1 << 20);
  void* neighbour = static_cast<char*>(a) + table::sampled_alignment;
  void* far = static_cast<char*>(a) + (std::size_t{1} << 30);
  EXPECT_FALSE(table::is_marked(a));
  tracking::record* r = make(a);
  ASSERT_TRUE(table::insert(r));
  EXPECT_TRUE(table::is_marked(a));
  EXPECT_FALSE(table::is_marked(neighbour));
  EXPECT_FALSE(table::is_marked(far));
  ASSERT_TRUE(table::insert(make(far)));
  EXPECT_TRUE(table::is_marked(far));
  EXPECT_EQ(table::remove(a), r);
  EXPECT_FALSE(table::is_marked(a));
  EXPECT_FALSE(table::contains(a));
  EXPECT_EQ(table::remove(a), nullptr);
  tracking::delete_record(r);
  tracking::delete_record(table::remove(far));
  EXPECT_FALSE(table::is_marked(far));
  // Above the 47-bit user address space nothing is mapped: such an address
  // is always a candidate, and the table answers.
  void* high = reinterpret_cast<void*>(std::uintptr_t{1} << 50);
  EXPECT_TRUE(table::is_marked(high));
  EXPECT_FALSE(table::contains(high));
}

TEST(TrackingTable, MatchesASetModelUnderRandomOperations) {
  std::mt19937_64 rng(12345);
  std::set<std::uint64_t> model;
  for (int op = 0; op < 200000; ++op) {
    // Pages drawn from a small range: many collisions in home slots.
    const std::uint64_t page = rng() % 30000;
    void* address = fake_address(page << 8);
    if (model.count(page) != 0) {
      ASSERT_TRUE(table::contains(address));
      tracking::record* r = table::remove(address);
      ASSERT_NE(r, nullptr);
      ASSERT_EQ(r->address, address);
      tracking::delete_record(r);
      model.erase(page);
      ASSERT_FALSE(table::contains(address));
      ASSERT_EQ(table::remove(address), nullptr);
    } else {
      ASSERT_FALSE(table::contains(address));
      ASSERT_TRUE(table::insert(make(address)));
      model.insert(page);
    }
    if (op % 20000 == 0) {  // every block of the model is still found
      for (std::uint64_t member : model) ASSERT_TRUE(table::contains(fake_address(member << 8)));
    }
  }
  for (std::uint64_t page : model) {
    tracking::record* r = table::remove(fake_address(page << 8));
    ASSERT_NE(r, nullptr);
    tracking::delete_record(r);
  }
}

TEST(TrackingTable, GrowsToManyBlocks) {
  constexpr std::uint64_t n = 300000;
  for (std::uint64_t i = 0; i < n; ++i) ASSERT_TRUE(table::insert(make(fake_address(i << 12))));
  for (std::uint64_t i = 0; i < n; i += 7) ASSERT_TRUE(table::contains(fake_address(i << 12)));
  const auto grown = table::stats();
  EXPECT_GE(grown.metadata_bytes, n * sizeof(tracking::record));
  for (std::uint64_t i = 0; i < n; ++i) {
    tracking::record* r = table::remove(fake_address(i << 12));
    ASSERT_NE(r, nullptr);
    tracking::delete_record(r);
  }
}

TEST(TrackingTable, ConcurrentInsertAndRemove) {
  constexpr int threads = 4;
  constexpr std::uint64_t per_thread = 50000;
  std::vector<std::thread> workers;
  for (int k = 0; k < threads; ++k) {
    workers.emplace_back([k] {
      std::vector<void*> mine;
      for (std::uint64_t i = 0; i < per_thread; ++i) {
        void* address = fake_address((i * threads + k) << 10);
        if (!table::insert(make(address))) std::abort();
        mine.push_back(address);
        if (i % 3 == 2) {  // remove an older one
          void* old = mine[i / 2];
          if (tracking::record* r = table::remove(old); r != nullptr) {
            tracking::delete_record(r);
          }
        }
      }
      for (void* address : mine) {
        if (tracking::record* r = table::remove(address); r != nullptr) {
          tracking::delete_record(r);
        }
      }
    });
  }
  for (auto& th : workers) th.join();
  for (std::uint64_t i = 0; i < per_thread * threads; ++i) {
    ASSERT_FALSE(table::contains(fake_address(i << 10))) << i;
  }
}

}  // namespace
