// tracking/range.hpp — the reserved range of address space that holds every
// sampled block, and its runs of units.
//
// The range is reserved once, at the first sampled block, without access and
// without a charge against the overcommit limit (platform::reserve_pages);
// it is committed upwards from its start, 4 MiB at a time, as runs are cut
// from it. Its size is MEMLIMITS_SAMPLED_RANGE_GIB (GiB, a whole number from
// 1 to 8192), else the build's default (CMake's MEMLIMITS_SAMPLED_RANGE_GIB,
// 64), but at most an eighth of the address-space limit (RLIMIT_AS) when
// there is one; when the system refuses it, half the size is tried, down to
// 4 MiB. A sampled block the range cannot hold is allocated untracked
// (hooks/entry.cpp).
//
// contains() is the test that the free of every block pays: one subtract,
// one compare and one branch (GWP-ASan's pointerIsMine). Before the range
// exists its bounds hold no user address: `base` starts 2^47 below 2^64, so
// p - base wraps above any `size` for every p in the 47-bit user space, and
// `size` starts at 0; reserve() writes base before size, so a thread that
// reads one new bound and one old still finds no address inside.
//
// Runs: a run is a whole number of units (512 bytes: the finer the unit, the
// less the last unit of a block wastes; a page map over them costs 1/128 of
// the range in address space, resident where used). A run is used (a slab
// of small blocks or one large block, range_heap.cpp) or free. Free runs
// are kept in bins by length, coalesced with their free neighbours, and
// their whole pages are given back to the system (purge_pages): those free
// for 10 ms once more than 1 MiB plus 1/128 of the units in use are held,
// and any at once above 64 MiB plus 1/8 of them (the check runs when a run
// is freed). A free run keeps a header in its first unit, so that page
// stays resident.
// Thread-safety: every function may be called from any thread (one lock).
// Layer 3 (uses core/ and platform/).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "platform/platform.hpp"

namespace memlimits::tracking::range {

inline constexpr std::size_t page_bytes = 4096;  // the system's, checked
inline constexpr std::size_t unit_bytes = 512;

struct bounds {
  std::atomic<std::uintptr_t> base{~std::uintptr_t{0} - (std::uintptr_t{1} << 47) + 1};
  std::atomic<std::uintptr_t> size{0};
};
inline constinit bounds current;

// Whether p lies in the range. Relaxed loads: a block's address reaches
// another thread only after the range that holds it was published.
MEMLIMITS_ALWAYS_INLINE bool contains(const void* p) noexcept {
  return reinterpret_cast<std::uintptr_t>(p) - current.base.load(std::memory_order_relaxed) <
         current.size.load(std::memory_order_relaxed);
}

// Reserves the range unless done already (once per process); false when no
// range could be reserved, now or before.
bool reserve() noexcept;

// A run of `units` units, aligned to a unit and readable-writable, or
// nullptr when the range cannot hold it (or does not exist). Its contents
// are unspecified, unless *zeroed is set: then it was never used, and reads
// as zeros. The caller keeps its length.
void* allocate_run(std::size_t units, bool* zeroed = nullptr) noexcept;
// Gives back a run that allocate_run() returned, with its length.
void free_run(void* run, std::size_t units) noexcept;

struct statistics {
  std::size_t reserved_bytes;   // the range's size (0 before it exists)
  std::size_t committed_bytes;  // committed from the start of the range
  std::size_t used_bytes;       // in runs in use
  std::size_t free_dirty_bytes; // in free runs, not yet given back
  std::size_t map_bytes;        // the page map's committed part
};
statistics stats() noexcept;

}  // namespace memlimits::tracking::range
