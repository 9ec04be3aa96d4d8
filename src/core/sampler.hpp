// core/sampler.hpp — the sampling core as the hooks use it: the allocation
// fast path, the slow path that draws samples, the thread's exact stream
// position, and sampling off for callbacks. The state behind it is
// core/thread_state.hpp's, private to core.
//
// Fast path contract (consume): one subtraction and its borrow, one compare
// with a word of the same cache line; no lock, no shared write, no call.
// Allocation sizes count in whole words: a block of b bytes is
// w = ceil(b / 8) words (8w bytes), so that it holds Binomial(w, p) samples.
// Layer 2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/thread_state.hpp"

namespace memlimits::core {

// Bytes an allocation of `bytes` counts for: 8 * ceil(bytes / 8). Sizes near
// SIZE_MAX wrap around; such allocations fail, and refund() undoes them.
MEMLIMITS_ALWAYS_INLINE std::uint64_t counted_bytes(std::size_t bytes) noexcept {
  return (static_cast<std::uint64_t>(bytes) + 7) & ~std::uint64_t{7};
}

// The largest block the slow path counts (see on_event); larger requests
// cannot succeed.
inline constexpr std::uint64_t max_block_bytes = std::uint64_t{1} << 61;

// The fast path. Returns true when nothing else is to be done for this
// allocation; false when on_event() must be called (the countdown already
// includes this allocation).
// A request larger than the countdown borrows, and takes the slow path:
// without that test, one of 2^63 bytes or more would wrap the countdown
// around to a larger value and pass (the C API's hooks do not refund a
// failed request: hooks/entry.hpp). Any other borrow leaves the countdown
// negative, below every alarm, so the test changes nothing else.
MEMLIMITS_ALWAYS_INLINE bool consume(std::size_t bytes) noexcept {
  thread_state& s = this_thread_state();
  std::uint64_t left;
  const bool borrow =
      __builtin_sub_overflow(static_cast<std::uint64_t>(s.countdown_), counted_bytes(bytes), &left);
  s.countdown_ = static_cast<std::int64_t>(left);
  return !borrow && static_cast<std::int64_t>(left) >= s.alarm_.level.load(std::memory_order_relaxed);
}

// An allocation that consume() accepted failed: take it out of the stream.
MEMLIMITS_ALWAYS_INLINE void refund(std::size_t bytes) noexcept {
  thread_state& s = this_thread_state();
  s.countdown_ = static_cast<std::int64_t>(static_cast<std::uint64_t>(s.countdown_) +
                                           counted_bytes(bytes));
}

// Bytes the slow path counts a block of `bytes` for: counted_bytes(bytes),
// capped at max_block_bytes.
MEMLIMITS_ALWAYS_INLINE std::uint64_t event_bytes(std::size_t bytes) noexcept {
  return bytes > max_block_bytes ? max_block_bytes : counted_bytes(bytes);
}

// An allocation that went through on_event() failed or was refused: take it
// out of the stream, as if it had never been made. The pending gap to the
// next sample then counts from where the block started (the gap is
// memoryless, so its law is unchanged), and a deadline keeps its stream
// position. Owner thread, sampling on.
void refund_event(std::size_t bytes) noexcept;

// The calling thread's allocation stream: the bytes it has allocated so far
// (each request counted 8 * ceil(bytes / 8); refunded ones not counted;
// nothing counted while sampling is off). Exact. Not to be called while
// sampling is off (the countdown is parked then).
MEMLIMITS_ALWAYS_INLINE std::uint64_t stream_position() noexcept {
  const thread_state& s = this_thread_state();
  return s.position_at_arm_ + static_cast<std::uint64_t>(s.armed_ - s.countdown_);
}

// The slow path, after consume() returned false for a block of `bytes`.
// Returns the number of samples in the block at the thread's current rate
// (thread_rate()), 0 when the event was not a sample. Never allocates through
// the hooks in a way that recurses (it runs with sampling off).
std::uint64_t on_event(std::size_t bytes) noexcept;

// The process's start routine, for the layer that builds profiles from the
// environment (the preload library): when a definition is linked in, the
// first event of the process calls it once, on the allocating thread, with
// sampling off for that thread and before the thread's first samples are
// drawn, so that a rate it sets covers the process's first allocation (even
// one made in another shared library's constructor). It may allocate; other
// threads that allocate meanwhile do not wait for it. Unlinked (the weak
// reference is null) nothing is called.
[[gnu::weak]] void on_process_start() noexcept;

// The rate at which the calling thread's samples are drawn now.
inline double thread_rate() noexcept { return this_thread_state().rate_; }

// Sampling off for the calling thread while alive: allocations made inside
// are not part of its stream (callbacks of subscribers run under one).
class sampling_off {
 public:
  sampling_off() noexcept : state_(this_thread_state()), saved_(state_.countdown_) {
    ++state_.reentry_;
    state_.countdown_ = INT64_MAX;
  }
  ~sampling_off() {
    state_.countdown_ = saved_;
    --state_.reentry_;
  }
  sampling_off(const sampling_off&) = delete;
  sampling_off& operator=(const sampling_off&) = delete;

 private:
  thread_state& state_;
  std::int64_t saved_;
};

inline bool sampling_is_off() noexcept { return this_thread_state().reentry_ > 0; }

// The rate every thread samples at: the largest rate any subscriber (and the
// base accounting) asks for. Changing it reaches every thread at its next
// allocation.
double sampling_rate() noexcept;
void set_sampling_rate(double rate) noexcept;

// For a rate a user passed to `function` (memlimits::configure, a profile):
// throws std::invalid_argument naming the function, sampling_rate and the
// value unless memlimits::is_valid_sampling_rate(rate).
void require_sampling_rate(const char* function, double rate);

// Seeds the generators: the calling thread's at once (and its pending gap is
// redrawn), threads initialised later from seed and their creation order.
// For reproducible tests; the default seed comes from MEMLIMITS_SEED or, when
// unset, from the system's entropy.
void reseed(std::uint64_t seed) noexcept;

// Forces every live thread (but the caller) to its slow path at its next
// allocation.
void alarm_all_threads() noexcept;

}  // namespace memlimits::core
