// tests/support/recording_tracker.hpp — a tracker that records every block it
// is told about into storage reserved up front (its callbacks never
// allocate), and counts frees per block, for the tests of the hooks and
// profiles.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "memlimits/memprof.hpp"

namespace memlimits::testing {

class recording_tracker : public memprof::tracker {
 public:
  struct entry {
    void* address = nullptr;
    std::size_t size = 0;
    std::uint64_t n_samples = 0;
    memprof::source origin{};
    std::size_t callstack_size = 0;
    void* innermost_frame = nullptr;
    std::atomic<int> frees{0};
  };

  explicit recording_tracker(std::size_t capacity)
      : entries_(std::make_unique<entry[]>(capacity)), capacity_(capacity) {}

  void* on_alloc(const memprof::allocation& a) override {
    const std::size_t i = count_.fetch_add(1, std::memory_order_relaxed);
    if (i >= capacity_) {
      overflowed_.store(true, std::memory_order_relaxed);
      return nullptr;
    }
    entry& e = entries_[i];
    e.address = a.address;
    e.size = a.size;
    e.n_samples = a.n_samples;
    e.origin = a.origin;
    e.callstack_size = a.callstack.size();
    e.innermost_frame = a.callstack.empty() ? nullptr : a.callstack[0];
    samples_.fetch_add(a.n_samples, std::memory_order_relaxed);
    published_.fetch_add(1, std::memory_order_release);
    return &e;
  }

  void on_free(void* cookie) noexcept override {
    static_cast<entry*>(cookie)->frees.fetch_add(1, std::memory_order_relaxed);
    frees_.fetch_add(1, std::memory_order_relaxed);
  }

  // The most recent entry for `address`, or nullptr. Call when no callback
  // is running concurrently for that address.
  const entry* find(const void* address) const {
    for (std::size_t i = recorded(); i-- > 0;) {
      if (entries_[i].address == address) return &entries_[i];
    }
    return nullptr;
  }

  // The most recent entry for `address` with that size: addresses are
  // reused once blocks are freed.
  const entry* find(const void* address, std::size_t size) const {
    for (std::size_t i = recorded(); i-- > 0;) {
      if (entries_[i].address == address && entries_[i].size == size) return &entries_[i];
    }
    return nullptr;
  }

  std::size_t recorded() const {
    const std::size_t n = count_.load(std::memory_order_acquire);
    return n < capacity_ ? n : capacity_;
  }
  std::size_t allocations() const { return count_.load(std::memory_order_acquire); }
  std::size_t frees() const { return frees_.load(std::memory_order_acquire); }
  std::uint64_t samples() const { return samples_.load(std::memory_order_acquire); }
  bool overflowed() const { return overflowed_.load(std::memory_order_relaxed); }
  const entry& at(std::size_t i) const { return entries_[i]; }

 private:
  std::unique_ptr<entry[]> entries_;
  std::size_t capacity_;
  std::atomic<std::size_t> count_{0};
  std::atomic<std::size_t> published_{0};
  std::atomic<std::size_t> frees_{0};
  std::atomic<std::uint64_t> samples_{0};
  std::atomic<bool> overflowed_{false};
};

// Keeps the compiler from eliding an allocation whose result is unused.
inline void escape(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

}  // namespace memlimits::testing
