// tests/unit/adapter_test.cpp — the explicit adapters of
// <memlimits/allocator.hpp> (memlimits::allocator<T>, memlimits::resource()),
// in a program that does NOT link memlimits::hooks: its malloc and operator
// new are glibc's and libstdc++'s, and only the adapters go through the
// sampling core and tracking. Under a profile at rate 1 every adapter block
// of size >= 1 is reported with origin adapter, its size and
// ceil(size / 8) samples, and its free once; plain malloc and new are not
// reported at all, which shows that the adapters work without replacing the
// global allocation functions.
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <memory_resource>
#include <new>
#include <optional>
#include <ostream>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "memlimits/allocator.hpp"
#include "memlimits/memprof.hpp"
#include "support/recording_fixture.hpp"
#include "support/recording_tracker.hpp"
#include "tracking/tracking.hpp"

// (allocator_may_return_null=1 under sanitizers: tests/support/sanitizer_options.cpp)


namespace {

using memlimits::memprof::source;
namespace memprof = memlimits::memprof;


using memlimits::testing::aligned_to;
using memlimits::testing::opaque;
using memlimits::testing::sink;
using memlimits::testing::words;
using entry = memlimits::testing::recorded_block;
using recorder = memlimits::testing::recording_tracker;

// The shared fixture, with the adapters' own expectation: every block
// reported comes through an adapter (the globals are not replaced here).
class Adapter : public memlimits::testing::recording_fixture {
 protected:
  void TearDown() override {
    stop();
    for (std::size_t i = 0; i < recorder_.mark(); ++i) {
      const entry& e = recorder_.at(i);
      EXPECT_EQ(e.origin, source::adapter)
          << "block " << e.address << " of " << e.size << " bytes reported from outside the adapters";
    }
    recording_fixture::TearDown();
  }

  const entry* expect_one_report(std::size_t from, const void* p, std::size_t size,
                                 std::string_view what) {
    return recording_fixture::expect_one_report(from, p, size, source::adapter, what);
  }
};

struct alignas(64) cache_line {
  unsigned char bytes[64];
};
struct alignas(8192) big_page {
  unsigned char bytes[100];
};
static_assert(sizeof(big_page) == 8192);

// ---- memlimits::allocator<T> ----

TEST(AdapterAllocator, TraitsAndEquality) {
  using alloc = memlimits::allocator<int>;
  static_assert(std::is_same_v<alloc::value_type, int>);
  static_assert(std::allocator_traits<alloc>::is_always_equal::value);
  static_assert(std::allocator_traits<alloc>::propagate_on_container_move_assignment::value);
  static_assert(std::is_same_v<std::allocator_traits<alloc>::rebind_alloc<double>,
                               memlimits::allocator<double>>);
  static_assert(std::is_nothrow_default_constructible_v<alloc>);
  constexpr alloc a;
  constexpr memlimits::allocator<double> b(a);
  static_assert(a == b);
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a != b);
  EXPECT_TRUE(memlimits::allocator<cache_line>() == memlimits::allocator<char>());
}

TEST(AdapterAllocator, AbsurdCountsThrow) {
  memlimits::allocator<int> ints;
  EXPECT_THROW(sink(ints.allocate(std::numeric_limits<std::size_t>::max() / 2)),
               std::bad_array_new_length);
  EXPECT_THROW(sink(ints.allocate(std::numeric_limits<std::size_t>::max())),
               std::bad_array_new_length);
  memlimits::allocator<big_page> pages;
  EXPECT_THROW(sink(pages.allocate(std::numeric_limits<std::size_t>::max() / 8192 + 1)),
               std::bad_array_new_length);
  // No overflow, but more than can be had: std::bad_alloc.
  memlimits::allocator<char> chars;
  EXPECT_THROW(sink(chars.allocate(std::numeric_limits<std::size_t>::max() / 2)), std::bad_alloc);
  EXPECT_THROW(sink(chars.allocate(std::numeric_limits<std::size_t>::max())), std::bad_alloc);
  EXPECT_THROW(sink(pages.allocate(std::numeric_limits<std::size_t>::max() / 8192 - 1)),
               std::bad_alloc);
}

TEST_F(Adapter, AbsurdCountsThrowUnderAProfileAndAreNotReported) {
  start();
  memlimits::allocator<int> ints;
  EXPECT_THROW(sink(ints.allocate(std::numeric_limits<std::size_t>::max() / 2)),
               std::bad_array_new_length);
  memlimits::allocator<char> chars;
  EXPECT_THROW(sink(chars.allocate(std::numeric_limits<std::size_t>::max() / 2)), std::bad_alloc);
  EXPECT_THROW(sink(memlimits::resource()->allocate(std::numeric_limits<std::size_t>::max() / 2,
                                                    64)),
               std::bad_alloc);
  EXPECT_EQ(recorder_.mark(), 0u);
}

// A failed allocation of an impossible size must leave the thread's
// sampling stream intact: at rate 1 the next adapter block is still sampled
// with exactly its words.
TEST_F(Adapter, SamplingContinuesAfterAFailedAllocation) {
  memlimits::allocator<char> chars;
  memlimits::allocator<long> longs;
  for (const std::size_t n : {std::size_t{1} << 62, std::numeric_limits<std::size_t>::max() / 2,
                              std::size_t{1} << 63, std::numeric_limits<std::size_t>::max()}) {
    start();  // a fresh profile (a rate change) for each case: they do not leak
    EXPECT_THROW(sink(chars.allocate(n)), std::bad_alloc) << n;
    for (int i = 0; i < 3; ++i) {
      const std::size_t from = recorder_.mark();
      long* p = longs.allocate(5);
      const entry* e = expect_one_report(from, p, 40, "allocator<long>::allocate(5)");
      longs.deallocate(p, 5);
      expect_freed_once(e, "allocator<long>::deallocate");
    }
    stop();
  }
}

TEST_F(Adapter, AllocatorBlocksAreReportedWithTheirSizes) {
  memlimits::allocator<int> ints;
  start();
  for (const std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{1000},
                              std::size_t{1025}, std::size_t{300000}}) {
    const std::size_t from = recorder_.mark();
    int* p = opaque(ints.allocate(n));
    ASSERT_NE(p, nullptr);
    const entry* e = expect_one_report(from, p, n * sizeof(int), "allocator<int>::allocate");
    std::memset(p, 0x11, n * sizeof(int));
    sink(p);
    ints.deallocate(p, n);
    expect_freed_once(e, "allocator<int>::deallocate");
  }
  // Zero elements: a zero-byte block, never sampled.
  int* z = ints.allocate(0);
  EXPECT_EQ(recorder_.mark(), 6u);
  ints.deallocate(z, 0);
}

TEST_F(Adapter, VectorWithTheAllocator) {
  start();
  std::size_t from = recorder_.mark();
  std::vector<int, memlimits::allocator<int>> v;
  v.reserve(1000);
  const entry* first = expect_one_report(from, v.data(), 4000, "vector::reserve(1000)");
  for (int i = 0; i < 1000; ++i) v.push_back(i);
  EXPECT_EQ(recorder_.mark(), from + 1);
  from = recorder_.mark();
  v.push_back(1000);  // grows: a new block, the old one freed
  EXPECT_EQ(recorder_.mark(), from + 1);
  const entry* second = recorder_.find(v.data(), from);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->size, v.capacity() * sizeof(int));
  EXPECT_EQ(second->origin, source::adapter);
  expect_freed_once(first, "vector growth");
  for (int i = 0; i <= 1000; ++i) ASSERT_EQ(v[i], i);
  decltype(v)().swap(v);
  expect_freed_once(second, "vector destruction");
}

TEST_F(Adapter, MapWithTheAllocator) {
  using value = std::pair<const int, long>;
  using map = std::map<int, long, std::less<>, memlimits::allocator<value>>;
  constexpr int count = 200;
  std::optional<map> m;
  start();
  const std::size_t from = recorder_.mark();
  m.emplace();
  for (int i = 0; i < count; ++i) m->emplace(i, 10L * i);
  EXPECT_EQ(recorder_.mark() - from, static_cast<std::size_t>(count)) << "one block per node";
  std::size_t node_size = 0;
  for (const auto& kv : *m) {
    // Each element lies in one reported node, all nodes of one size.
    const entry* e = recorder_.containing(&kv, sizeof kv, from);
    ASSERT_NE(e, nullptr) << kv.first;
    EXPECT_EQ(e->origin, source::adapter);
    EXPECT_GE(e->size, sizeof(value));
    EXPECT_EQ(e->n_samples, words(e->size));
    if (node_size == 0) node_size = e->size;
    EXPECT_EQ(e->size, node_size);
  }
  EXPECT_EQ(m->at(77), 770);
  m->erase(77);
  EXPECT_EQ(recorder_.frees(), 1);
  m.reset();
  EXPECT_EQ(recorder_.frees(), count);
  for (std::size_t i = from; i < recorder_.mark(); ++i) EXPECT_EQ(recorder_.at(i).frees.load(), 1);
}

TEST_F(Adapter, OverAlignedTypes) {
  for (int profiled = 0; profiled < 2; ++profiled) {
    if (profiled) start();
    memlimits::allocator<cache_line> lines;
    memlimits::allocator<big_page> pages;
    for (const std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{100}}) {
      std::size_t from = recorder_.mark();
      cache_line* c = lines.allocate(n);
      EXPECT_TRUE(aligned_to(c, 64)) << c;
      if (profiled) expect_one_report(from, c, n * 64, "allocator<alignas(64)>");
      std::memset(c, 1, n * sizeof *c);
      sink(c);
      lines.deallocate(c, n);

      from = recorder_.mark();
      big_page* b = pages.allocate(n);
      EXPECT_TRUE(aligned_to(b, 8192)) << b;
      if (profiled) expect_one_report(from, b, n * 8192, "allocator<alignas(8192)>");
      std::memset(b, 2, n * sizeof *b);
      sink(b);
      pages.deallocate(b, n);
    }
    // And in containers.
    std::vector<big_page, memlimits::allocator<big_page>> v;
    for (int i = 0; i < 20; ++i) {
      v.emplace_back();
      EXPECT_TRUE(aligned_to(v.data(), 8192));
    }
    std::vector<cache_line, memlimits::allocator<cache_line>> w(33);
    EXPECT_TRUE(aligned_to(w.data(), 64));
  }
}

TEST_F(Adapter, FreesFromAnotherThread) {
  constexpr int blocks = 200;
  std::vector<long*> pointers(blocks);
  std::thread::id freer;
  start();
  const std::size_t from = recorder_.mark();
  std::thread allocating([&] {
    memlimits::allocator<long> a;
    for (int i = 0; i < blocks; ++i) pointers[i] = a.allocate(1 + i);
  });
  allocating.join();
  std::thread freeing([&] {
    memlimits::allocator<long> a;
    for (int i = 0; i < blocks; ++i) a.deallocate(pointers[i], 1 + i);
  });
  freer = freeing.get_id();
  freeing.join();
  EXPECT_EQ(recorder_.mark() - from, static_cast<std::size_t>(blocks));
  for (int i = 0; i < blocks; ++i) {
    const entry* e = recorder_.find(pointers[i], from);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->size, (1 + i) * sizeof(long));
    EXPECT_EQ(e->frees.load(), 1);
    EXPECT_EQ(e->freed_by.load(), freer);
  }
}

// ---- memlimits::resource() ----

TEST(AdapterResource, IsOneEqualInstance) {
  memlimits::memory_resource* r = memlimits::resource();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(memlimits::resource(), r);
  EXPECT_TRUE(r->is_equal(*r));
  memlimits::memory_resource other;
  EXPECT_TRUE(r->is_equal(other));
  EXPECT_TRUE(other.is_equal(*r));
  EXPECT_TRUE(*r == other);
  EXPECT_FALSE(r->is_equal(*std::pmr::new_delete_resource()));
  EXPECT_FALSE(std::pmr::new_delete_resource()->is_equal(*r));
  std::pmr::monotonic_buffer_resource wrapping(r);
  EXPECT_FALSE(r->is_equal(wrapping));
  // Blocks from one instance may be returned to another.
  void* p = r->allocate(100, 16);
  other.deallocate(p, 100, 16);
}

TEST_F(Adapter, ResourceBlocksAreReportedAndAligned) {
  std::pmr::memory_resource* r = memlimits::resource();
  for (int profiled = 0; profiled < 2; ++profiled) {
    if (profiled) start();
    for (const std::size_t a : {std::size_t{1}, std::size_t{8}, std::size_t{16}, std::size_t{64},
                                std::size_t{4096}, std::size_t{8192}, std::size_t{65536}}) {
      for (const std::size_t n : {std::size_t{1}, std::size_t{100}, std::size_t{5000}}) {
        const std::size_t from = recorder_.mark();
        void* p = r->allocate(n, a);
        ASSERT_NE(p, nullptr);
        EXPECT_TRUE(aligned_to(p, a)) << "n=" << n << " align=" << a << ": " << p;
        const entry* e = profiled ? expect_one_report(from, p, n, "resource()->allocate") : nullptr;
        std::memset(p, 3, n);
        sink(p);
        r->deallocate(p, n, a);
        if (profiled) expect_freed_once(e, "resource()->deallocate");
      }
    }
  }
}

TEST_F(Adapter, PmrVector) {
  start();
  const std::size_t from = recorder_.mark();
  std::optional<std::pmr::vector<double>> v(std::in_place, memlimits::resource());
  v->reserve(1000);
  const entry* e = expect_one_report(from, v->data(), 8000, "pmr::vector::reserve(1000)");
  v->assign(1000, 1.5);
  EXPECT_EQ(recorder_.mark(), from + 1);
  v.reset();
  expect_freed_once(e, "pmr::vector destruction");
}

TEST_F(Adapter, PmrMap) {
  start();
  const std::size_t from = recorder_.mark();
  {
    std::pmr::map<int, int> m(memlimits::resource());
    for (int i = 0; i < 100; ++i) m[i] = i;
    EXPECT_EQ(recorder_.mark() - from, 100u);
  }
  EXPECT_EQ(recorder_.frees(), 100);
}

TEST_F(Adapter, MonotonicBufferWithTheResourceUpstream) {
  start();
  const std::size_t from = recorder_.mark();
  std::pmr::monotonic_buffer_resource arena(memlimits::resource());
  std::vector<std::pair<void*, std::size_t>> pieces;
  pieces.reserve(2000);  // from glibc: not reported
  EXPECT_EQ(recorder_.mark(), from);
  for (int i = 0; i < 2000; ++i) {
    const std::size_t n = 1 + static_cast<std::size_t>(i) % 300;
    void* p = arena.allocate(n, 8);
    std::memset(p, 4, n);
    pieces.emplace_back(p, n);
  }
  void* aligned = arena.allocate(64, 8192);
  EXPECT_TRUE(aligned_to(aligned, 8192));
  pieces.emplace_back(aligned, 64);
  const std::size_t upstream_blocks = recorder_.mark() - from;
  EXPECT_GE(upstream_blocks, 2u);
  // Every piece lies in a reported upstream block.
  for (const auto& [p, n] : pieces) {
    const entry* e = recorder_.containing(p, n, from);
    ASSERT_NE(e, nullptr) << p;
    EXPECT_EQ(e->origin, source::adapter);
    EXPECT_EQ(e->n_samples, words(e->size));
  }
  EXPECT_EQ(recorder_.frees(), 0) << "a monotonic buffer frees nothing before release()";
  arena.release();
  EXPECT_EQ(recorder_.frees(), static_cast<std::int64_t>(upstream_blocks));
  for (std::size_t i = from; i < recorder_.mark(); ++i) EXPECT_EQ(recorder_.at(i).frees.load(), 1);
}

TEST_F(Adapter, ResourceAndAllocatorShareOneEntryPoint) {
  start();
  memlimits::allocator<int> ints;
  int* p = ints.allocate(10);
  memlimits::resource()->deallocate(p, 10 * sizeof(int), alignof(int));
  void* q = memlimits::resource()->allocate(40, alignof(int));
  ints.deallocate(static_cast<int*>(q), 10);
  EXPECT_EQ(recorder_.frees(), 2);
}

// ---- the global functions are not replaced in this program ----

TEST_F(Adapter, PlainMallocAndNewAreNotReported) {
  start();
  const std::size_t from = recorder_.mark();
  for (const std::size_t n : {std::size_t{1}, std::size_t{100}, std::size_t{5000},
                              std::size_t{1} << 20}) {
    void* p = opaque(&std::malloc)(n);
    void* q = opaque(&std::calloc)(1, n);
    void* r = opaque(static_cast<void* (*)(std::size_t)>(&::operator new))(n);
    void* s = opaque(static_cast<void* (*)(std::size_t, std::align_val_t)>(&::operator new[]))(
        n, std::align_val_t{8192});
    sink(p);
    sink(q);
    sink(r);
    sink(s);
    p = opaque(&std::realloc)(p, 2 * n);
    std::free(p);
    std::free(q);
    ::operator delete(r);
    ::operator delete[](s, std::align_val_t{8192});
  }
  std::vector<int> plain(100000);
  auto owned = std::make_unique<std::map<int, int>>();
  (*owned)[1] = 2;
  sink(plain.data());
  EXPECT_EQ(recorder_.mark(), from) << "an allocation outside the adapters was reported";
  // Meanwhile the adapters are still sampled.
  std::vector<int, memlimits::allocator<int>> adapted(10);
  EXPECT_EQ(recorder_.mark(), from + 1);
}

}  // namespace
