// tracking/tracking.hpp — the tracking layer as the hooks see it: where a
// sampled block is allocated, how its free is recognised, and where its
// record is kept until then.
//
// Two ways, chosen by the build (why: tracking/README.md):
//  * normally, sampled blocks live in a reserved range of address space
//    with an allocator of their own (tracking/range.hpp, range_heap.hpp),
//    and a block's record hangs from its header: the free of every other
//    block pays one subtract, compare and branch, and never calls in here;
//  * under AddressSanitizer or ThreadSanitizer (MEMLIMITS_SANITIZER_ALLOCATOR),
//    whose allocators must see every block the program uses, sampled blocks
//    are the sanitizer allocator's own, aligned to 128 bytes and recorded in
//    the table (tracking/block_table.hpp): a free pays a test of the low
//    address bits, and 1 block in 8 a lock-free bitmap read.
// Thread-safety: every function may be called from any thread.
// Layer 3 (uses core/ and platform/).
#pragma once

#include <cstddef>
#include <cstdint>

#include "platform/platform.hpp"
#include "tracking/block_table.hpp"
#include "tracking/range.hpp"
#include "tracking/record.hpp"

namespace memlimits::tracking {

#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
inline constexpr bool uses_range = false;
#else
inline constexpr bool uses_range = true;
#endif

// False when p is certainly not a block of allocate_block(): the test that
// the free of every block pays.
MEMLIMITS_ALWAYS_INLINE bool may_be_sampled(const void* p) noexcept {
  if constexpr (uses_range) {
    return range::contains(p);
  } else {
    return table::may_be_sampled(p);
  }
}

// A block that can carry a record, of at least `bytes` bytes aligned to
// `alignment` (0: the system allocator's default), its first `bytes` bytes
// zero when `zero` is set. nullptr when
// there is none: with the range, when the range cannot hold it (the caller
// then allocates an untracked block, and says so with count_untracked());
// without, when the system allocator is out of memory.
void* allocate_block(std::size_t bytes, std::size_t alignment, bool zero) noexcept;
// Publishes r (r->address is the block) for the block's free. False when it
// cannot be recorded (no memory for the table); then the block has no record.
bool attach(record* r) noexcept;
// Takes the record of a block (may_be_sampled(p)) out, or returns nullptr.
record* detach(void* p) noexcept;
// Whether p is a block of allocate_block() not yet released: one that
// only release() and usable_size() may handle, never the system allocator.
bool owns(const void* p) noexcept;
// Frees a block that owns() (its record detached first).
void release(void* p) noexcept;
std::size_t usable_size(const void* p) noexcept;
// A sampled block the range could not hold was allocated untracked.
void count_untracked() noexcept;

struct statistics {
  std::size_t tracked_blocks;   // blocks with a record
  std::size_t metadata_bytes;   // records, tables, the range's page map
  std::size_t range_reserved_bytes;
  std::size_t range_committed_bytes;
  std::size_t range_used_bytes;        // runs in use: slabs and large blocks
  std::size_t range_free_dirty_bytes;  // freed runs not yet given back
  std::uint64_t free_lookups;     // frees that called into this layer
  std::uint64_t untracked_blocks; // sampled blocks the range could not hold
};
statistics stats() noexcept;

}  // namespace memlimits::tracking
