// tracking/block_table.hpp — recognising sampled blocks at free time.
//
// Design (the measurements behind it are in tracking/README.md): a sampled
// block is allocated page-aligned (sampled_alignment), so that the free of an
// unsampled block pays one test of the low address bits and one branch
// (may_be_sampled). Only page-aligned pointers — sampled blocks, the rare
// unsampled block that glibc happens to place on a page boundary, and the
// program's own page-aligned allocations — are looked up in a table keyed by
// address. The table is sharded (one spinlock per shard), uses open
// addressing with linear probing over records allocated from pages mapped by
// memlimits itself: nothing here allocates through malloc, so it is safe
// inside the hooks, and the blocks themselves stay ordinary glibc blocks
// (realloc, malloc_usable_size, ... work on them unchanged).
// Thread-safety: every function may be called from any thread.
// Layer 3 (uses core/ and platform/).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/subscribers.hpp"
#include "platform/platform.hpp"

namespace memlimits::tracking {

// If you change it, sampled blocks of an alignment above it must still be
// allocated at their own alignment (hooks/entry.cpp takes the larger).
inline constexpr std::size_t sampled_alignment = 4096;

MEMLIMITS_ALWAYS_INLINE bool may_be_sampled(const void* p) noexcept {
  return (reinterpret_cast<std::uintptr_t>(p) & (sampled_alignment - 1)) == 0;
}

struct record {
  void* address;
  std::size_t size;
  core::block_samples samples;
  record* next_free;  // in the pool's free list
};

// nullptr when memory for the record cannot be mapped.
record* new_record() noexcept;
void delete_record(record* r) noexcept;

// Publishes r (r->address set). False when the table cannot grow; then r is
// not in the table.
bool insert(record* r) noexcept;
// Takes the record of `address` out of the table, or returns nullptr.
record* remove(const void* address) noexcept;
bool contains(const void* address) noexcept;

struct statistics {
  std::size_t tracked_blocks;  // records in the table
  std::size_t metadata_bytes;  // bytes mapped for records and tables
};
statistics stats() noexcept;

}  // namespace memlimits::tracking
