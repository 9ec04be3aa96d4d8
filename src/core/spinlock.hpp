// core/spinlock.hpp — the lock of the allocation slow path. A mutex that a
// hook may take: it never allocates and never calls into the allocator, and
// it is cheap uncontended. Critical sections under it are short and never
// call user code. During fork(), the forking thread holds every spinlock
// and passes through them (platform::fork_in_progress_here()). Layer 2.
#pragma once

#include <atomic>

#include "platform/platform.hpp"

namespace memlimits::core {

class spinlock {
 public:
  constexpr spinlock() noexcept = default;
  void lock() noexcept {
    if (MEMLIMITS_UNLIKELY(platform::fork_in_progress_here())) return;  // see platform.hpp
    for (int spins = 0; locked_.exchange(true, std::memory_order_acquire); ++spins) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins > 64) platform::yield();
      }
    }
  }
  void unlock() noexcept {
    if (MEMLIMITS_UNLIKELY(platform::fork_in_progress_here())) return;
    locked_.store(false, std::memory_order_release);
  }
  // After fork(), in the child: the thread that held the lock does not exist.
  void reset_after_fork() noexcept { locked_.store(false, std::memory_order_relaxed); }

 private:
  std::atomic<bool> locked_{false};
};

class spinlock_guard {
 public:
  explicit spinlock_guard(spinlock& lock) noexcept : lock_(lock) { lock_.lock(); }
  ~spinlock_guard() { lock_.unlock(); }
  spinlock_guard(const spinlock_guard&) = delete;
  spinlock_guard& operator=(const spinlock_guard&) = delete;

 private:
  spinlock& lock_;
};

}  // namespace memlimits::core
