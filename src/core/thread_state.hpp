// core/thread_state.hpp — the sampling core's per-thread state. Private to
// core: files outside src/core/ act on it only through the functions of
// core/sampler.hpp (the hooks: fast path, slow path, sampling off) and
// core/limits_port.hpp (the limits engine and the hooks' questions to it).
// The layers test checks that no file outside src/core/ names it.
//
// Every thread owns one `thread_state` in initial-exec TLS. Its `countdown_`
// is a timer for several triggers at once: it is armed with the number of
// bytes until the nearest of
//   * the next sampled word of the thread's allocation stream (random), and
//   * the deadline that the limits engine sets (exact allocation limits);
// and the fast path takes the slow path when it goes below the alarm, which
// is 0 normally and which other threads raise to force the slow path at the
// next allocation (a rate change, an "interrupt now"). Only the owning thread
// writes `countdown_`; other threads write only the alarm, atomically, so
// that no cross-thread request can be lost to the owner's read-modify-write.
// Layer 2.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/prng.hpp"
#include "platform/platform.hpp"

namespace memlimits::core {

// A thread's alarm: the level below which its countdown takes the slow path.
// Other threads hold its address (core/limits_port.hpp: raise_alarm).
struct alarm {
  std::atomic<std::int64_t> level{0};
};

struct thread_state {
  // Fast path. If you move these, keep them in one cache line.
  std::int64_t countdown_;   // bytes until the next event; owner only
  alarm alarm_;              // see above; raised by other threads

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
  std::uint8_t refusal_;     // a limit refused the allocation in progress (limits_port.hpp)
  std::uint8_t deadline_only_;  // the last event: only the deadline fired (limits_port.hpp)
  void* limited_task_;       // the limits engine's task while it has a guard
  thread_state* prev_;       // thread registry, under the registry lock
  thread_state* next_;
};

inline constexpr std::uint8_t status_new = 0;
inline constexpr std::uint8_t status_live = 1;
inline constexpr std::uint8_t status_exited = 2;

// Constant-initialised (all zero): usable before main, in new threads before
// any initialisation, and after the thread's TLS destructors have run.
extern constinit thread_local thread_state tls_state MEMLIMITS_TLS_MODEL;

// The calling thread's state (see platform::tls_object).
MEMLIMITS_ALWAYS_INLINE thread_state& this_thread_state() noexcept {
  return platform::tls_object(tls_state);
}

}  // namespace memlimits::core
