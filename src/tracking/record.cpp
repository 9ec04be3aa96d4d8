// tracking/record.cpp — the pool of records: carved from 64 KiB chunks of
// mapped pages one at a time (a process that samples a few blocks touches
// one page of a chunk, not all 16), recycled through a free list. Layer 3.
#include "tracking/record.hpp"

#include <atomic>
#include <new>

#include "core/spinlock.hpp"
#include "platform/platform.hpp"

namespace memlimits::tracking {
namespace {

constexpr std::size_t chunk_bytes = 64 * 1024;

constinit core::spinlock pool_lock;
record* free_records = nullptr;  // under pool_lock
// The part of the newest chunk not yet handed out, [carve_next, carve_end).
record* carve_next = nullptr;  // under pool_lock
record* carve_end = nullptr;   // under pool_lock
std::atomic<std::size_t> mapped_bytes{0};

void fork_prepare() { pool_lock.lock(); }
void fork_parent() { pool_lock.unlock(); }
void fork_child() { pool_lock.reset_after_fork(); }

constinit platform::fork_handlers fork_hooks{&fork_prepare, &fork_parent, &fork_child};

}  // namespace

record* new_record() noexcept {
  platform::register_fork_handlers(fork_hooks);
  core::spinlock_guard guard(pool_lock);
  if (free_records != nullptr) {
    record* r = free_records;
    free_records = r->next_free;
    return r;
  }
  if (carve_next == carve_end) {
    auto* chunk = static_cast<record*>(platform::map_pages(chunk_bytes));
    if (chunk == nullptr) return nullptr;
    mapped_bytes.fetch_add(chunk_bytes, std::memory_order_relaxed);
    carve_next = chunk;
    carve_end = chunk + chunk_bytes / sizeof(record);
  }
  return new (carve_next++) record{};
}

void delete_record(record* r) noexcept {
  core::spinlock_guard guard(pool_lock);
  r->next_free = free_records;
  free_records = r;
}

std::size_t record_bytes() noexcept { return mapped_bytes.load(std::memory_order_relaxed); }

}  // namespace memlimits::tracking
