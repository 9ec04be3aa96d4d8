// tracking/block_table.hpp — recognising sampled blocks at free time when
// they are the system allocator's own blocks: the way of the sanitizer
// builds (tracking/tracking.hpp says when and why).
//
// Design (the measurements behind it are in tracking/README.md): a sampled
// block is allocated aligned to sampled_alignment (128 bytes), so that the
// free of an unsampled block pays one test of the low address bits and one
// branch (may_be_sampled) for 7 blocks in 8. The candidates, aligned
// pointers, are filtered without a lock by a two-level bitmap with one bit
// per 128-byte granule of the address space (is_marked: two dependent
// loads); only marked pointers are looked up in a table keyed by address.
// The table is sharded (one spinlock per shard), uses open addressing with
// linear probing over records allocated from pages mapped by memlimits
// itself: nothing here allocates through malloc, so it is safe inside the
// hooks, and the blocks themselves stay ordinary glibc blocks (realloc,
// malloc_usable_size, ... work on them unchanged).
// Thread-safety: every function may be called from any thread.
// Layer 3 (uses core/ and platform/).
#pragma once

#include <cstddef>
#include <cstdint>

#include "platform/platform.hpp"
#include "tracking/record.hpp"

namespace memlimits::tracking::table {

// If you change it, sampled blocks of an alignment above it must still be
// allocated at their own alignment (tracking/tracking.cpp takes the larger), and
// the bitmap's granule (block_table.cpp) must equal it.
inline constexpr std::size_t sampled_alignment = 128;

MEMLIMITS_ALWAYS_INLINE bool may_be_sampled(const void* p) noexcept {
  return (reinterpret_cast<std::uintptr_t>(p) & (sampled_alignment - 1)) == 0;
}

// Whether a record may exist for `address` (aligned to sampled_alignment):
// false means certainly not. Lock-free; a block's mark is set before its
// address is returned to the program and cleared when it is freed.
bool is_marked(const void* address) noexcept;

// Publishes r (r->address set) and marks its address. False when memory for
// the table or the bitmap cannot be mapped; then r is not in the table.
bool insert(record* r) noexcept;
// Takes the record of `address` out of the table, or returns nullptr.
record* remove(const void* address) noexcept;
bool contains(const void* address) noexcept;

struct statistics {
  std::size_t tracked_blocks;  // records in the table
  std::size_t metadata_bytes;  // bytes mapped for records and tables
  std::size_t bitmap_bytes;    // address space reserved for the bitmap's
                               // leaves; only the pages touched are resident
};
statistics stats() noexcept;

}  // namespace memlimits::tracking::table
