// tests/support/recording_tracker.hpp — what the tests of the hooks,
// adapters and profiles share: a tracker that records every block it is told
// about into storage reserved up front (its callbacks neither allocate nor
// lock), counts frees per block and checks cookies; and small helpers that
// keep the compiler from seeing through allocations.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <thread>

#include "memlimits/memprof.hpp"

namespace memlimits::memprof {
// Readable names of sources in GoogleTest's messages.
inline void PrintTo(source s, std::ostream* os) {
  switch (s) {
    case source::new_delete: *os << "new_delete"; return;
    case source::malloc: *os << "malloc"; return;
    case source::adapter: *os << "adapter"; return;
  }
  *os << "source(" << static_cast<int>(s) << ")";
}
}  // namespace memlimits::memprof

namespace memlimits::testing {

// The value, through a register the compiler knows nothing about.
template <class T>
T opaque(T value) {
  asm volatile("" : "+r"(value));
  return value;
}
// Makes p escape, with every write to memory visible: an allocation whose
// result is only sunk cannot be elided.
inline void sink(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

inline bool aligned_to(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(opaque(p)) % alignment == 0;
}
inline std::uint64_t words(std::size_t bytes) { return (bytes + 7) / 8; }

struct recorded_block {
  void* address = nullptr;
  std::size_t size = 0;
  std::uint64_t n_samples = 0;
  memprof::source origin{};
  std::size_t callstack_size = 0;
  void* innermost_frame = nullptr;
  std::thread::id allocated_by;
  std::atomic<std::thread::id> freed_by{};
  std::atomic<int> frees{0};
};

class recording_tracker final : public memprof::tracker {
 public:
  explicit recording_tracker(std::size_t capacity = std::size_t{1} << 15)
      : entries_(std::make_unique<recorded_block[]>(capacity)), capacity_(capacity) {}

  void* on_alloc(const memprof::allocation& a) override {
    const std::size_t i = next_.fetch_add(1, std::memory_order_acq_rel);
    if (i >= capacity_) {
      overflow_.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    recorded_block& e = entries_[i];
    e.address = a.address;
    e.size = a.size;
    e.n_samples = a.n_samples;
    e.origin = a.origin;
    e.callstack_size = a.callstack.size();
    e.innermost_frame = a.callstack.empty() ? nullptr : a.callstack[0];
    e.allocated_by = std::this_thread::get_id();
    samples_.fetch_add(a.n_samples, std::memory_order_relaxed);
    accepted_.fetch_add(1, std::memory_order_acq_rel);
    return &e;
  }

  void on_free(void* cookie) noexcept override {
    auto* e = static_cast<recorded_block*>(cookie);
    if (e < entries_.get() || e >= entries_.get() + capacity_) {
      bad_cookies_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    e->freed_by.store(std::this_thread::get_id(), std::memory_order_relaxed);
    e->frees.fetch_add(1, std::memory_order_acq_rel);
    frees_.fetch_add(1, std::memory_order_acq_rel);
  }

  // Entries recorded so far; allocations reported later are at indices
  // >= mark().
  std::size_t mark() const {
    const std::size_t n = next_.load(std::memory_order_acquire);
    return n < capacity_ ? n : capacity_;
  }
  const recorded_block& at(std::size_t i) const { return entries_[i]; }
  // The most recent entry of `address` at an index >= from, or nullptr.
  // Addresses are reused once blocks are freed: find_sized tells apart.
  const recorded_block* find(const void* address, std::size_t from = 0) const {
    for (std::size_t i = mark(); i > from; --i) {
      if (entries_[i - 1].address == address) return &entries_[i - 1];
    }
    return nullptr;
  }
  const recorded_block* find_sized(const void* address, std::size_t size) const {
    for (std::size_t i = mark(); i > 0; --i) {
      const recorded_block& e = entries_[i - 1];
      if (e.address == address && e.size == size) return &e;
    }
    return nullptr;
  }
  // The most recent entry since `from` whose block holds [p, p + n).
  const recorded_block* containing(const void* p, std::size_t n, std::size_t from = 0) const {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    for (std::size_t i = mark(); i > from; --i) {
      const recorded_block& e = entries_[i - 1];
      const auto b = reinterpret_cast<std::uintptr_t>(e.address);
      if (b <= a && a + n <= b + e.size) return &e;
    }
    return nullptr;
  }
  std::size_t count(const void* address, std::size_t from = 0) const {
    std::size_t n = 0;
    for (std::size_t i = from; i < mark(); ++i) n += entries_[i].address == address;
    return n;
  }
  // on_alloc calls, including those past the capacity.
  std::size_t allocations() const { return next_.load(std::memory_order_acquire); }
  std::int64_t frees() const { return frees_.load(std::memory_order_acquire); }
  // Blocks reported and not yet reported freed.
  std::int64_t live() const {
    return static_cast<std::int64_t>(accepted_.load(std::memory_order_acquire)) - frees();
  }
  std::uint64_t samples() const { return samples_.load(std::memory_order_acquire); }
  std::size_t overflow() const { return overflow_.load(std::memory_order_relaxed); }
  std::size_t bad_cookies() const { return bad_cookies_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<recorded_block[]> entries_;
  std::size_t capacity_;
  std::atomic<std::size_t> next_{0};
  std::atomic<std::size_t> accepted_{0};
  std::atomic<std::int64_t> frees_{0};
  std::atomic<std::uint64_t> samples_{0};
  std::atomic<std::size_t> overflow_{0};
  std::atomic<std::size_t> bad_cookies_{0};
};

}  // namespace memlimits::testing
