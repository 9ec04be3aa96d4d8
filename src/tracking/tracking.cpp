// tracking/tracking.cpp — the tracking layer's two ways behind
// tracking/tracking.hpp. Layer 3.
#include "tracking/tracking.hpp"

#include <atomic>
#include <cstring>

#include "platform/system_allocator.hpp"
#include "tracking/range_heap.hpp"

namespace memlimits::tracking {
namespace {

std::atomic<std::uint64_t> free_lookups{0};
std::atomic<std::uint64_t> untracked_blocks{0};
std::atomic<std::size_t> tracked_blocks{0};  // with the range

}  // namespace

void* allocate_block(std::size_t bytes, std::size_t alignment, bool zero) noexcept {
  if constexpr (uses_range) {
    return range_heap::allocate(bytes, alignment, zero);
  } else {
    void* p = platform::system::memalign(
        alignment > table::sampled_alignment ? alignment : table::sampled_alignment, bytes);
    if (p != nullptr && zero) std::memset(p, 0, bytes);
    return p;
  }
}

bool attach(record* r) noexcept {
  if constexpr (uses_range) {
    range_heap::set_record(r->address, r);
    tracked_blocks.fetch_add(1, std::memory_order_relaxed);
    return true;
  } else {
    return table::insert(r);
  }
}

record* detach(void* p) noexcept {
  free_lookups.fetch_add(1, std::memory_order_relaxed);
  if constexpr (uses_range) {
    record* r = range_heap::take_record(p);
    if (r != nullptr) tracked_blocks.fetch_sub(1, std::memory_order_relaxed);
    return r;
  } else {
    return table::remove(p);
  }
}

bool owns(const void* p) noexcept {
  if constexpr (uses_range) {
    return range::contains(p);
  } else {
    return table::may_be_sampled(p) && table::contains(p);
  }
}

void release(void* p) noexcept {
  if constexpr (uses_range) {
    range_heap::free(p);
  } else {
    platform::system::free(p);
  }
}

std::size_t usable_size(const void* p) noexcept {
  if constexpr (uses_range) {
    return range_heap::usable_size(p);
  } else {
    return platform::system::usable_size(const_cast<void*>(p));
  }
}

void count_untracked() noexcept { untracked_blocks.fetch_add(1, std::memory_order_relaxed); }

statistics stats() noexcept {
  const table::statistics t = table::stats();
  const range::statistics r = range::stats();
  const std::size_t tracked =
      uses_range ? tracked_blocks.load(std::memory_order_relaxed) : t.tracked_blocks;
  return {tracked,
          t.metadata_bytes + r.map_bytes,
          r.reserved_bytes,
          r.committed_bytes,
          r.used_bytes,
          r.free_dirty_bytes,
          free_lookups.load(std::memory_order_relaxed),
          untracked_blocks.load(std::memory_order_relaxed)};
}

}  // namespace memlimits::tracking
