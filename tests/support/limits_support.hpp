// tests/support/limits_support.hpp — what the tests of the limits engine
// share: readable names of limit kinds in GoogleTest's messages, settings
// restored after a test, storage for blocks reserved before a guard is
// entered (so that a task allocates nothing but the blocks it is about),
// the allocation entry points a guard sees, each behind a function pointer
// the compiler cannot see through, and a lookup in memlimits::tasks().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <ostream>
#include <thread>
#include <vector>

#include "memlimits/allocator.hpp"
#include "memlimits/limits.hpp"
#include "support/recording_tracker.hpp"

namespace memlimits {
inline void PrintTo(limit_kind kind, std::ostream* os) { *os << to_string(kind); }
}  // namespace memlimits

namespace memlimits::testing {

// The settings and the global limit in force at construction, put back at
// destruction, so that a failing test leaves none of its configuration to
// the next one when the whole binary runs in one process.
class settings_restorer {
 public:
  settings_restorer()
      : settings_(memlimits::current_settings()), global_limit_(memlimits::global_memory_limit()) {}
  ~settings_restorer() {
    memlimits::configure(settings_);
    memlimits::set_global_memory_limit(global_limit_);
  }
  settings_restorer(const settings_restorer&) = delete;
  settings_restorer& operator=(const settings_restorer&) = delete;

  const memlimits::settings& saved() const { return settings_; }

 private:
  memlimits::settings settings_;
  std::int64_t global_limit_;
};

// Blocks of one size and one entry point, in storage reserved up front:
// push() never allocates, so a task that fills a block_list allocates only
// its blocks.
class block_list {
 public:
  explicit block_list(std::size_t capacity)
      : slots_(std::make_unique<void*[]>(capacity)), capacity_(capacity) {}
  block_list(const block_list&) = delete;
  block_list& operator=(const block_list&) = delete;

  bool full() const noexcept { return size_ == capacity_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  void push(void* p) noexcept { slots_[size_++] = p; }
  void* pop() noexcept { return slots_[--size_]; }
  void* operator[](std::size_t i) const noexcept { return slots_[i]; }
  void*& operator[](std::size_t i) noexcept { return slots_[i]; }
  void clear() noexcept { size_ = 0; }

 private:
  std::unique_ptr<void*[]> slots_;
  std::size_t capacity_;
  std::size_t size_ = 0;
};

// One way to allocate and free a block that a guard sees. Sizes passed to a
// form are multiples of `granularity`.
struct alloc_form {
  const char* name;
  std::size_t granularity;
  void* (*allocate)(std::size_t bytes);
  void (*release)(void* p, std::size_t bytes);
};

struct alignas(64) cache_line {
  unsigned char bytes[64];
};

inline const alloc_form new_form = {
    "operator new", 8, [](std::size_t n) { return ::operator new(n); },
    [](void* p, std::size_t n) { ::operator delete(p, n); }};

// The throwing entry points: each raises limit_reached in an interrupted
// task.
inline const alloc_form throwing_forms[] = {
    new_form,
    {"operator new[]", 8, [](std::size_t n) { return ::operator new[](n); },
     [](void* p, std::size_t n) { ::operator delete[](p, n); }},
    {"operator new(align 64)", 8,
     [](std::size_t n) { return ::operator new(n, std::align_val_t{64}); },
     [](void* p, std::size_t n) { ::operator delete(p, n, std::align_val_t{64}); }},
    {"operator new[](align 4096)", 8,
     [](std::size_t n) { return ::operator new[](n, std::align_val_t{4096}); },
     [](void* p, std::size_t n) { ::operator delete[](p, n, std::align_val_t{4096}); }},
    {"memlimits::allocator<uint64_t>", 8,
     [](std::size_t n) -> void* { return memlimits::allocator<std::uint64_t>{}.allocate(n / 8); },
     [](void* p, std::size_t n) {
       memlimits::allocator<std::uint64_t>{}.deallocate(static_cast<std::uint64_t*>(p), n / 8);
     }},
    {"memlimits::allocator<cache_line>", 64,
     [](std::size_t n) -> void* { return memlimits::allocator<cache_line>{}.allocate(n / 64); },
     [](void* p, std::size_t n) {
       memlimits::allocator<cache_line>{}.deallocate(static_cast<cache_line*>(p), n / 64);
     }},
    {"memlimits::memory_resource", 8,
     [](std::size_t n) { return memlimits::resource()->allocate(n, alignof(std::max_align_t)); },
     [](void* p, std::size_t n) {
       memlimits::resource()->deallocate(p, n, alignof(std::max_align_t));
     }},
    {"memlimits::memory_resource(align 256)", 8,
     [](std::size_t n) { return memlimits::resource()->allocate(n, 256); },
     [](void* p, std::size_t n) { memlimits::resource()->deallocate(p, n, 256); }},
};

// A block of `bytes` from operator new, through a pointer the compiler
// cannot see through (so that it cannot elide the allocation).
inline void* new_block(std::size_t bytes) { return opaque(new_form.allocate)(bytes); }
inline void delete_block(void* p, std::size_t bytes) { opaque(new_form.release)(p, bytes); }

// Allocates and frees `count` blocks of `bytes`: count * bytes counted.
inline void churn(int count, std::size_t bytes) {
  for (int i = 0; i < count; ++i) delete_block(new_block(bytes), bytes);
}

// Allocates blocks of `bytes` with `form` into `blocks` until an allocation
// throws (the exception propagates) or the storage is full (the limit did
// not hold: the caller's count check fails). Allocates nothing else.
inline void fill(const alloc_form& form, std::size_t bytes, block_list& blocks) {
  auto allocate = opaque(form.allocate);
  while (!blocks.full()) blocks.push(allocate(bytes));
}
inline void release_all(const alloc_form& form, std::size_t bytes, block_list& blocks) {
  auto release = opaque(form.release);
  while (blocks.size() > 0) release(blocks.pop(), bytes);
}

// The entry of memlimits::tasks() for `thread`, if it has an active guard.
inline std::optional<task_info> find_task(std::thread::id thread) {
  for (task_info& t : memlimits::tasks()) {
    if (t.thread == thread) return std::move(t);
  }
  return std::nullopt;
}

}  // namespace memlimits::testing
