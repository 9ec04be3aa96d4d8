// memlimits/memprof.hpp — the profiler interface: trackers that are told about
// sampled allocations and their frees, and profiles that feed them.
//
// Sampling model: every 8-byte word allocated by the program is sampled
// independently with probability `sampling_rate`, so a block of `size` bytes
// (w = ceil(size / 8) words) carries n ~ Binomial(w, rate) samples. A profile
// sees the blocks with n >= 1, with n counted at its own rate whatever other
// profiles and limits ask for (binomial thinning), so that `n / rate` words is
// an unbiased estimate of what was allocated. At rate 1, n == w exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "memlimits/config.hpp"

namespace memlimits::memprof {

// Which entry point the block came through.
enum class source { new_delete, malloc, adapter };

struct allocation {
  void* address;
  std::size_t size;                 // bytes requested
  std::uint64_t n_samples;          // >= 1, at the profile's rate
  source origin;
  std::span<void* const> callstack; // return addresses, innermost frame first
};

class tracker {
 public:
  virtual ~tracker() = default;
  // Called on the allocating thread with sampling off for that thread: it may
  // allocate (those allocations are not sampled). Any allocation of the
  // program may call it: a tracker must not allocate while it holds a lock
  // that on_alloc or on_free takes. Return non-null to be told,
  // through on_free, when the block is freed. An exception thrown from here is
  // swallowed and counts as returning null.
  virtual void* on_alloc(const allocation& a) = 0;
  // Called on the freeing thread, exactly once per block for which on_alloc
  // returned non-null, with that value, as long as the profile is running.
  virtual void on_free(void* cookie) noexcept { (void)cookie; }
};

// RAII: while a profile lives (until stop()), sampled allocations of every
// thread flow to its tracker. At most `max_profiles` run at once.
// stop() waits for callbacks in flight on other threads, so that once it has
// returned the tracker may be destroyed; blocks still live at that point are
// not reported any more. stop() must not be called from the tracker's own
// callbacks.
class MEMLIMITS_API profile {
 public:
  static constexpr std::size_t max_profiles = 8;
  static constexpr std::size_t max_callstack_size = 256;

  // Throws std::invalid_argument when sampling_rate is not in (0, 1] or
  // callstack_size exceeds max_callstack_size, and std::length_error when
  // max_profiles profiles are already running.
  explicit profile(tracker& t, double sampling_rate = 1e-4,
                   std::size_t callstack_size = 0);
  ~profile();
  profile(const profile&) = delete;
  profile& operator=(const profile&) = delete;

  void stop() noexcept;
  bool running() const noexcept { return slot_ >= 0; }
  double sampling_rate() const noexcept { return rate_; }

 private:
  int slot_ = -1;
  double rate_;
};

}  // namespace memlimits::memprof
