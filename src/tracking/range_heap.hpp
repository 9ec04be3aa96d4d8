// tracking/range_heap.hpp — the allocator of sampled blocks, inside the
// reserved range (tracking/range.hpp).
//
// Every block has a 16-byte header just below its address: the record of
// its samples (or null), the distance back to the start of its run, and a
// tag that tells a live block from a freed one (a double free or a foreign
// pointer stops the process with a message instead of corrupting the heap).
// Small blocks (header and alignment padding included, up to 4 KiB; an
// alignment up to 512 bytes) come from slabs: runs cut into slots of one
// size class (16-byte steps up to 256 B, then 8 classes per doubling: at
// most 1/8 of a slot is lost to rounding), a slab per class taking the
// class's frees first. A slab whose last block is freed goes back to the
// range, unless it is its class's only slab. Larger blocks get a run of
// their own, with the block past the headers at its start: less than a
// 512-byte unit is lost past its end, and the rest of the last page is
// address space only until something touches it. Segregated classes for
// these sizes were measured to hold more memory under churn (freed slots
// of one class wait for a block of that class); runs coalesce. The last 2
// freed runs of each length up to 32 KiB are kept for the next block of
// that length, past the range's bins. Alignments up to 1 GiB are served.
// Thread-safety: every function may be called from any thread; one lock per
// size class, and the range's lock for runs.
// Layer 3 (uses core/ and platform/).
#pragma once

#include <cstddef>

#include "tracking/record.hpp"

namespace memlimits::tracking::range_heap {

inline constexpr std::size_t max_alignment = std::size_t{1} << 30;

// A block of at least `bytes` bytes aligned to `alignment` (0: 16 bytes),
// with no record; nullptr when the range cannot hold it. Its first `bytes`
// bytes are zero when `zero` is set (a block on a run never used before is
// not written: a large calloc stays untouched until the program uses it).
void* allocate(std::size_t bytes, std::size_t alignment, bool zero = false) noexcept;
// Frees a block of the range (range::contains(p)), which must have no record.
void free(void* p) noexcept;
// The bytes usable from p to the end of its slot or run.
std::size_t usable_size(const void* p) noexcept;

// The record of a block of the range; set_record() publishes it for the
// block's free (the block's address has not been handed out yet).
void set_record(void* p, record* r) noexcept;
// Takes the record out of the block (null afterwards), or returns nullptr.
record* take_record(void* p) noexcept;
record* peek_record(const void* p) noexcept;

struct statistics {
  std::size_t live_blocks;
  std::size_t slab_bytes;   // in slabs, used or not
  std::size_t large_bytes;  // in runs of large blocks
};
statistics stats() noexcept;

}  // namespace memlimits::tracking::range_heap
