// tracking/record.hpp — what memlimits keeps about one tracked sampled
// block until its free: the samples to report, and the block's address and
// size. Records come from pages mapped by memlimits itself (never malloc), so
// that the allocation path may create them.
// Thread-safety: every function may be called from any thread.
// Layer 3 (uses core/ and platform/).
#pragma once

#include <cstddef>

#include "core/subscribers.hpp"

namespace memlimits::tracking {

struct record {
  void* address;
  std::size_t size;
  core::block_samples samples;
  record* next_free;  // in the pool's free list
};

// nullptr when memory for the record cannot be mapped.
record* new_record() noexcept;
void delete_record(record* r) noexcept;

// Bytes mapped for records so far.
std::size_t record_bytes() noexcept;

}  // namespace memlimits::tracking
