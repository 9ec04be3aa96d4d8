// tracking/range_heap.cpp — sampled blocks in the reserved range
// (tracking/range_heap.hpp). Layer 3.
//
// A run begins with a 64-byte run header. In a slab, slots follow it back to
// back; a block sits at the first address of its slot, past the 16-byte
// block header, that has the block's alignment. A large block sits in the
// same way past the run header of a run of its own.
#include "tracking/range_heap.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "core/check.hpp"
#include "core/spinlock.hpp"
#include "tracking/range.hpp"

namespace memlimits::tracking::range_heap {
namespace {

using range::unit_bytes;

constexpr std::uint32_t kind_slab = 0x534c4142;   // "SLAB"
constexpr std::uint32_t kind_large = 0x4c415247;  // "LARG"
constexpr std::uint32_t tag_live = 0x4c495645;    // "LIVE"
constexpr std::uint32_t tag_freed = 0x46524545;   // "FREE"

struct block_header {
  record* rec;
  std::uint32_t to_run;  // bytes from the run's start to the block
  std::uint32_t tag;
};
static_assert(sizeof(block_header) == 16);

struct run_header {
  std::uint32_t kind;
  std::uint32_t size_class;  // slabs
  std::size_t units;
  // Slabs only, under their class's lock.
  std::uint32_t live;
  std::uint32_t carved;  // slots handed out at least once: [0, carved)
  std::uint32_t capacity;
  bool listed;       // in its class's list of slabs with room
  void* free_slots;  // freed slots, linked through their first word
  run_header* prev;
  run_header* next;
};
constexpr std::size_t run_header_bytes = 64;
static_assert(sizeof(run_header) <= run_header_bytes);

constexpr std::size_t max_small = 4096;

// Slot sizes: 32..256 in steps of 16, then 8 per doubling up to max_small.
// Larger blocks are on runs of their own, which lose less than a unit.
constexpr std::size_t class_count = 15 + 4 * 8;
constexpr std::array<std::uint32_t, class_count> class_sizes = [] {
  std::array<std::uint32_t, class_count> sizes{};
  std::size_t i = 0;
  for (std::uint32_t s = 32; s <= 256; s += 16) sizes[i++] = s;
  for (std::uint32_t low = 256; low < max_small; low *= 2) {
    for (std::uint32_t step = 1; step <= 8; ++step) sizes[i++] = low + step * (low / 8);
  }
  return sizes;
}();
static_assert(class_sizes.back() == max_small);

// Units per slab: room for at least 8 slots; of that and up to 7 more
// units, the count that wastes the smallest share of the slab.
constexpr std::size_t slab_capacity(std::size_t units, std::size_t slot) {
  return (units * unit_bytes - run_header_bytes) / slot;
}
constexpr std::array<std::uint16_t, class_count> slab_units = [] {
  std::array<std::uint16_t, class_count> result{};
  for (std::size_t c = 0; c < class_count; ++c) {
    const std::size_t slot = class_sizes[c];
    const std::size_t least = (8 * slot + run_header_bytes + unit_bytes - 1) / unit_bytes;
    std::size_t best = least;
    double best_waste = 1;
    for (std::size_t units = least; units <= least + 7; ++units) {
      const double bytes = static_cast<double>(units * unit_bytes);
      const double waste = (bytes - static_cast<double>(slab_capacity(units, slot) * slot)) / bytes;
      if (waste < best_waste) {
        best = units;
        best_waste = waste;
      }
    }
    result[c] = static_cast<std::uint16_t>(best);
  }
  return result;
}();

// An emptied slab stays with its class when it is its class's only one;
// otherwise its units go back to the range.

struct alignas(64) class_state {
  core::spinlock lock;
  run_header* with_room = nullptr;  // slabs with a free or uncarved slot
  std::size_t slabs = 0;
};
constinit class_state classes[class_count];

// Freed runs of large blocks up to 64 units (32 KiB), kept for the next
// block of the same length: a sampled block of a few KiB is common (at the
// default rate, one block in 5 of 16 KiB is sampled), and the range's bins
// and coalescing cost more than the block's other bookkeeping. At most
// cached_runs_per_length of each length, under one lock; their pages stay
// resident: at most 2 * 512 B * (1 + 2 + ... + 64), 2.1 MiB, in the worst
// mix of lengths.
constexpr std::size_t cached_max_units = 64;
constexpr std::size_t cached_runs_per_length = 2;
struct run_cache {
  core::spinlock lock;
  void* runs[cached_max_units + 1][cached_runs_per_length] = {};
  std::uint8_t count[cached_max_units + 1] = {};
};
constinit run_cache cache;

std::atomic<std::size_t> live_blocks{0};
std::atomic<std::size_t> slab_bytes{0};
std::atomic<std::size_t> large_bytes{0};

void fork_prepare() {
  for (class_state& c : classes) c.lock.lock();
  cache.lock.lock();
}
void fork_parent() {
  cache.lock.unlock();
  for (class_state& c : classes) c.lock.unlock();
}
void fork_child() {
  cache.lock.reset_after_fork();
  for (class_state& c : classes) c.lock.reset_after_fork();
}
constinit platform::fork_handlers fork_hooks{&fork_prepare, &fork_parent, &fork_child};

std::uintptr_t align_up(std::uintptr_t x, std::size_t alignment) noexcept {
  return (x + alignment - 1) & ~(std::uintptr_t{alignment} - 1);
}

block_header* header_of(const void* p) noexcept {
  return reinterpret_cast<block_header*>(reinterpret_cast<std::uintptr_t>(p) -
                                         sizeof(block_header));
}

run_header* run_of(const void* p, const block_header* h) noexcept {
  return reinterpret_cast<run_header*>(reinterpret_cast<std::uintptr_t>(p) - h->to_run);
}

char* slots_of(run_header* slab) noexcept {
  return reinterpret_cast<char*>(slab) + run_header_bytes;
}

// The block in `slot` (or run) for this alignment, with its header.
void* place(char* start, run_header* run, std::size_t alignment) noexcept {
  const std::uintptr_t p =
      align_up(reinterpret_cast<std::uintptr_t>(start) + sizeof(block_header), alignment);
  auto* block = reinterpret_cast<void*>(p);
  block_header* h = header_of(block);
  h->rec = nullptr;
  h->to_run = static_cast<std::uint32_t>(p - reinterpret_cast<std::uintptr_t>(run));
  h->tag = tag_live;
  live_blocks.fetch_add(1, std::memory_order_relaxed);
  return block;
}

void push_with_room(class_state& c, run_header* slab) noexcept {
  slab->prev = nullptr;
  slab->next = c.with_room;
  if (c.with_room != nullptr) c.with_room->prev = slab;
  c.with_room = slab;
  slab->listed = true;
}

void unlink_with_room(class_state& c, run_header* slab) noexcept {
  if (slab->prev != nullptr) {
    slab->prev->next = slab->next;
  } else {
    c.with_room = slab->next;
  }
  if (slab->next != nullptr) slab->next->prev = slab->prev;
  slab->listed = false;
}

// Under c.lock: a slot of a slab with room, or nullptr when there is none.
char* take_slot(class_state& c, std::size_t size_class, run_header*& slab) noexcept {
  slab = c.with_room;
  if (slab == nullptr) return nullptr;
  char* slot;
  if (slab->free_slots != nullptr) {
    slot = static_cast<char*>(slab->free_slots);
    slab->free_slots = *reinterpret_cast<void**>(slot);
  } else {
    slot = slots_of(slab) + std::size_t{slab->carved} * class_sizes[size_class];
    ++slab->carved;
  }
  ++slab->live;
  if (slab->free_slots == nullptr && slab->carved == slab->capacity) unlink_with_room(c, slab);
  return slot;
}

void* allocate_small(std::size_t size_class, std::size_t alignment) noexcept {
  class_state& c = classes[size_class];
  run_header* slab;
  {
    core::spinlock_guard guard(c.lock);
    if (char* slot = take_slot(c, size_class, slab); slot != nullptr) {
      return place(slot, slab, alignment);
    }
  }
  const std::size_t units = slab_units[size_class];
  void* run = range::allocate_run(units);
  if (run == nullptr) return nullptr;
  slab_bytes.fetch_add(units * unit_bytes, std::memory_order_relaxed);
  auto* fresh = static_cast<run_header*>(run);
  *fresh = run_header{kind_slab,
                      static_cast<std::uint32_t>(size_class),
                      units,
                      0,
                      0,
                      static_cast<std::uint32_t>(slab_capacity(units, class_sizes[size_class])),
                      false,
                      nullptr,
                      nullptr,
                      nullptr};
  core::spinlock_guard guard(c.lock);
  push_with_room(c, fresh);
  ++c.slabs;
  char* slot = take_slot(c, size_class, slab);  // the newest slab comes first
  return place(slot, slab, alignment);
}

void free_small(run_header* slab, void* p) noexcept {
  const std::size_t size_class = slab->size_class;
  class_state& c = classes[size_class];
  const std::size_t slot_size = class_sizes[size_class];
  char* const slots = slots_of(slab);
  char* slot = slots + static_cast<std::size_t>(static_cast<char*>(p) - slots) / slot_size *
                           slot_size;
  {
    core::spinlock_guard guard(c.lock);
    *reinterpret_cast<void**>(slot) = slab->free_slots;
    slab->free_slots = slot;
    --slab->live;
    if (!slab->listed) push_with_room(c, slab);
    if (slab->live != 0 || c.slabs == 1) return;
    unlink_with_room(c, slab);
    --c.slabs;
  }
  slab_bytes.fetch_sub(slab->units * unit_bytes, std::memory_order_relaxed);
  range::free_run(slab, slab->units);
}

}  // namespace

void* allocate(std::size_t bytes, std::size_t alignment, bool zero) noexcept {
  platform::register_fork_handlers(fork_hooks);
  if (alignment < sizeof(block_header)) alignment = sizeof(block_header);
  if (alignment > max_alignment) return nullptr;
  // A block of 0 bytes still owns a byte: its address must lie inside its
  // slot, or its free would find the next slot.
  if (bytes == 0) bytes = 1;
  // Small: the header, the block, and the padding the alignment may need.
  if (alignment <= unit_bytes && bytes <= max_small) {
    const std::size_t needed = sizeof(block_header) + bytes + (alignment - sizeof(block_header));
    if (needed <= max_small) {
      const auto* it = std::lower_bound(class_sizes.begin(), class_sizes.end(), needed);
      void* p = allocate_small(static_cast<std::size_t>(it - class_sizes.begin()), alignment);
      if (p != nullptr && zero) std::memset(p, 0, bytes);
      return p;
    }
  }
  // Large: the run header, the block header, the padding, the block. A run
  // starts on a unit: within a unit's alignment the block's offset is
  // known; above it, it is at most the alignment past the headers.
  constexpr std::size_t headers = run_header_bytes + sizeof(block_header);
  const std::size_t offset =
      alignment <= unit_bytes ? align_up(headers, alignment) : headers + alignment;
  const std::size_t units = (offset + bytes + unit_bytes - 1) / unit_bytes;
  void* run = nullptr;
  if (units <= cached_max_units) {
    core::spinlock_guard guard(cache.lock);
    if (cache.count[units] != 0) run = cache.runs[units][--cache.count[units]];
  }
  bool zeroed = false;
  if (run == nullptr) run = range::allocate_run(units, &zeroed);
  if (run == nullptr) return nullptr;
  large_bytes.fetch_add(units * unit_bytes, std::memory_order_relaxed);
  auto* header = static_cast<run_header*>(run);
  header->kind = kind_large;
  header->size_class = 0;
  header->units = units;
  void* p = place(static_cast<char*>(run) + run_header_bytes, header, alignment);
  if (zero && !zeroed) std::memset(p, 0, bytes);
  return p;
}

void free(void* p) noexcept {
  block_header* h = header_of(p);
  MEMLIMITS_CHECK(h->tag == tag_live, "free of a sampled block that is not live (double free?)");
  MEMLIMITS_ASSERT(h->rec == nullptr, "free of a sampled block with a record");
  h->tag = tag_freed;
  live_blocks.fetch_sub(1, std::memory_order_relaxed);
  run_header* run = run_of(p, h);
  if (run->kind == kind_slab) return free_small(run, p);
  MEMLIMITS_CHECK(run->kind == kind_large, "free of a sampled block with a broken header");
  const std::size_t units = run->units;
  large_bytes.fetch_sub(units * unit_bytes, std::memory_order_relaxed);
  if (units <= cached_max_units) {
    core::spinlock_guard guard(cache.lock);
    if (cache.count[units] < cached_runs_per_length) {
      cache.runs[units][cache.count[units]++] = run;
      return;
    }
  }
  range::free_run(run, units);
}

std::size_t usable_size(const void* p) noexcept {
  const block_header* h = header_of(p);
  const run_header* run = run_of(p, h);
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  const auto start = reinterpret_cast<std::uintptr_t>(run);
  if (run->kind == kind_large) return start + run->units * unit_bytes - address;
  const std::size_t slot_size = class_sizes[run->size_class];
  const std::uintptr_t slots = start + run_header_bytes;
  const std::uintptr_t slot = slots + (address - slots) / slot_size * slot_size;
  return slot + slot_size - address;
}

void set_record(void* p, record* r) noexcept { header_of(p)->rec = r; }

record* take_record(void* p) noexcept {
  block_header* h = header_of(p);
  record* r = h->rec;
  h->rec = nullptr;
  return r;
}

record* peek_record(const void* p) noexcept { return header_of(p)->rec; }

statistics stats() noexcept {
  return {live_blocks.load(std::memory_order_relaxed), slab_bytes.load(std::memory_order_relaxed),
          large_bytes.load(std::memory_order_relaxed)};
}

}  // namespace memlimits::tracking::range_heap
