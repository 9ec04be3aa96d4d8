// core/sampler.hpp — the sampling core: per-thread state and the allocation
// fast path.
//
// Every thread owns one `thread_state` in initial-exec TLS. Its `countdown_`
// is a timer for several triggers at once: it is armed with the number of
// bytes until the nearest of
//   * the next sampled word of the thread's allocation stream (random), and
//   * deadlines that upper layers set (exact allocation limits);
// and the fast path takes the slow path when it goes below `alarm_`, which is
// 0 normally and which other threads raise to force the slow path at the next
// allocation (a rate change, an "interrupt now"). Only the owning thread
// writes `countdown_`; other threads write only `alarm_`, atomically, so that
// no cross-thread request can be lost to the owner's read-modify-write.
//
// Fast path contract (consume): one subtraction, one compare with a word of
// the same cache line, one branch; no lock, no shared write, no call.
// Allocation sizes count in whole words: a block of b bytes is
// w = ceil(b / 8) words (8w bytes), so that it holds Binomial(w, p) samples.
// Layer 2.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/prng.hpp"
#include "platform/platform.hpp"

namespace memlimits::core {

struct thread_state {
  // Fast path. If you move these, keep them in one cache line.
  std::int64_t countdown_;             // bytes until the next event; owner only
  std::atomic<std::int64_t> alarm_;    // see above; raised by other threads

  // Slow path, owner only unless stated.
  std::int64_t armed_;       // countdown_ when last armed
  std::uint64_t position_at_arm_;  // stream_position() at the arm point
  std::int64_t to_sample_;   // bytes from the arm point to the next sampled word
  std::int64_t to_deadline_; // bytes from the arm point to the nearest deadline
  double rate_;              // rate the pending gap was drawn at
  double log1m_rate_;        // log1p(-rate_)
  std::uint64_t rate_epoch_;
  xoshiro256 rng_;
  std::uint32_t reentry_;    // > 0 inside the slow path or a callback: sampling off
  std::uint8_t status_;      // status_new, status_live, status_exited
  std::uint8_t raise_;       // an interruption the hook must raise (core/task.hpp)
  void* task_;               // the upper layer's current task while it is guarded
  thread_state* prev_;       // thread registry, under the registry lock
  thread_state* next_;
};

inline constexpr std::uint8_t status_new = 0;
inline constexpr std::uint8_t status_live = 1;
inline constexpr std::uint8_t status_exited = 2;

// Constant-initialised (all zero): usable before main, in new threads before
// any initialisation, and after the thread's TLS destructors have run.
extern constinit thread_local thread_state tls_state MEMLIMITS_TLS_MODEL;

// The calling thread's state. Use this, not tls_state: GCC 12's UBSan
// folds the null check of an initial-exec TLS reference to "null" and aborts
// (the handler is called with a constant 0); in sanitizer builds the address
// goes through a register, which the check then reads for real.
MEMLIMITS_ALWAYS_INLINE thread_state& this_thread_state() noexcept {
#if defined(MEMLIMITS_SANITIZED)
  thread_state* state = &tls_state;
  asm("" : "+r"(state));
  return *state;
#else
  return tls_state;
#endif
}

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
MEMLIMITS_ALWAYS_INLINE bool consume(std::size_t bytes) noexcept {
  thread_state& s = this_thread_state();
  const auto left = static_cast<std::int64_t>(static_cast<std::uint64_t>(s.countdown_) -
                                              counted_bytes(bytes));
  s.countdown_ = left;
  return left >= s.alarm_.load(std::memory_order_relaxed);
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

// The deadline of the calling thread's countdown: the slow path runs at the
// first allocation that takes stream_position() above `position`
// (no_deadline: none). Owner thread, sampling on. The fast path is unchanged:
// the countdown is armed at the nearer of the next sample and the deadline.
inline constexpr std::uint64_t no_deadline = UINT64_MAX;
void set_deadline(std::uint64_t position) noexcept;

// The calling thread's next allocation takes the slow path, whatever its size.
inline void force_next_event() noexcept {
  this_thread_state().alarm_.store(INT64_MAX, std::memory_order_release);
}

// The slow path, after consume() returned false for a block of `bytes`.
// Returns the number of samples in the block at the thread's current rate
// (thread_rate()), 0 when the event was not a sample. Never allocates through
// the hooks in a way that recurses (it runs with sampling off).
std::uint64_t on_event(std::size_t bytes) noexcept;

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

// Seeds the generators: the calling thread's at once (and its pending gap is
// redrawn), threads initialised later from seed and their creation order.
// For reproducible tests; the default seed comes from MEMLIMITS_SEED or, when
// unset, from the system's entropy.
void reseed(std::uint64_t seed) noexcept;

// Forces every live thread (but the caller) to its slow path at its next
// allocation.
void alarm_all_threads() noexcept;

}  // namespace memlimits::core
