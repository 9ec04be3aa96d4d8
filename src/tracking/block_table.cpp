// tracking/block_table.cpp — implementation of tracking/block_table.hpp.
// Layer 3.
#include "tracking/block_table.hpp"

#include <atomic>
#include <new>

#include "core/check.hpp"
#include "core/spinlock.hpp"

namespace memlimits::tracking::table {
namespace {

// ---- the table: shards of open-addressing arrays of record pointers ----

constexpr int shard_bits = 6;
constexpr std::size_t shard_count = std::size_t{1} << shard_bits;
constexpr std::size_t initial_capacity = 512;  // one page of pointers

struct alignas(64) shard {
  core::spinlock lock;
  record** slots = nullptr;
  std::size_t capacity = 0;  // a power of two, or 0
  std::size_t count = 0;
};

constinit shard shards[shard_count];
std::atomic<std::size_t> mapped_bytes{0};  // the shards' arrays

// ---- the bitmap of marked granules ----
// Two levels: the top level has one entry per GiB of the 47-bit user address
// space (1 MiB, zero pages until written); a leaf has one bit per granule of
// its GiB (1 MiB of address space, mapped on first use, resident only
// where touched). Bits are set and cleared atomically, read without a lock.
constexpr int granule_bits = 7;  // log2(sampled_alignment)
static_assert(std::size_t{1} << granule_bits == sampled_alignment);
constexpr int leaf_span_bits = 30;
constexpr int address_bits = 47;
constexpr std::size_t leaf_count = std::size_t{1} << (address_bits - leaf_span_bits);
constexpr std::size_t leaf_bits = std::size_t{1} << (leaf_span_bits - granule_bits);
constexpr std::size_t leaf_bytes = leaf_bits / 8;

constinit std::atomic<std::atomic<std::uint64_t>*> leaves[leaf_count] = {};
std::atomic<std::size_t> leaf_bytes_mapped{0};

// The leaf of `address`, mapped if `create`; nullptr when absent (or the
// address lies above the 47-bit user space, or mapping failed).
std::atomic<std::uint64_t>* leaf_of(std::uintptr_t address, bool create) noexcept {
  const std::uintptr_t index = address >> leaf_span_bits;
  if (index >= leaf_count) return nullptr;
  std::atomic<std::uint64_t>* leaf = leaves[index].load(std::memory_order_acquire);
  if (leaf != nullptr || !create) return leaf;
  auto* fresh = static_cast<std::atomic<std::uint64_t>*>(platform::map_pages(leaf_bytes));
  if (fresh == nullptr) return nullptr;
  if (leaves[index].compare_exchange_strong(leaf, fresh, std::memory_order_acq_rel)) {
    leaf_bytes_mapped.fetch_add(leaf_bytes, std::memory_order_relaxed);
    return fresh;
  }
  platform::unmap_pages(fresh, leaf_bytes);  // another thread mapped it first
  return leaf;
}

std::uint64_t bit_of(std::uintptr_t address) noexcept {
  return std::uint64_t{1} << ((address >> granule_bits) & 63);
}
std::size_t word_of(std::uintptr_t address) noexcept {
  return ((address >> granule_bits) & (leaf_bits - 1)) / 64;
}

bool mark(const void* address) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  std::atomic<std::uint64_t>* leaf = leaf_of(a, true);
  if (leaf == nullptr) return false;
  leaf[word_of(a)].fetch_or(bit_of(a), std::memory_order_release);
  return true;
}

void unmark(const void* address) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  if (std::atomic<std::uint64_t>* leaf = leaf_of(a, false); leaf != nullptr) {
    leaf[word_of(a)].fetch_and(~bit_of(a), std::memory_order_release);
  }
}

// Sampled blocks are aligned to a granule, so their low bits carry nothing.
std::uint64_t hash(const void* address) noexcept {
  std::uint64_t z = reinterpret_cast<std::uintptr_t>(address) >> granule_bits;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

shard& shard_of(std::uint64_t h) noexcept { return shards[h & (shard_count - 1)]; }
std::size_t home(std::uint64_t h, std::size_t capacity) noexcept {
  return (h >> shard_bits) & (capacity - 1);
}

void fork_prepare() {
  for (shard& s : shards) s.lock.lock();
}
void fork_parent() {
  for (shard& s : shards) s.lock.unlock();
}
void fork_child() {
  for (shard& s : shards) s.lock.reset_after_fork();
}

constinit platform::fork_handlers fork_hooks{&fork_prepare, &fork_parent, &fork_child};

// Under s.lock: doubles the capacity. False when pages cannot be mapped.
bool grow(shard& s) noexcept {
  const std::size_t capacity = s.capacity == 0 ? initial_capacity : s.capacity * 2;
  auto** slots = static_cast<record**>(platform::map_pages(capacity * sizeof(record*)));
  if (slots == nullptr) return false;
  mapped_bytes.fetch_add(capacity * sizeof(record*), std::memory_order_relaxed);
  for (std::size_t i = 0; i < s.capacity; ++i) {
    record* r = s.slots[i];
    if (r == nullptr) continue;
    std::size_t j = home(hash(r->address), capacity);
    while (slots[j] != nullptr) j = (j + 1) & (capacity - 1);
    slots[j] = r;
  }
  if (s.slots != nullptr) {
    platform::unmap_pages(s.slots, s.capacity * sizeof(record*));
    mapped_bytes.fetch_sub(s.capacity * sizeof(record*), std::memory_order_relaxed);
  }
  s.slots = slots;
  s.capacity = capacity;
  return true;
}

// Under s.lock: the index of `address`, or capacity when absent.
std::size_t find(const shard& s, const void* address, std::uint64_t h) noexcept {
  if (s.capacity == 0) return 0;
  for (std::size_t i = home(h, s.capacity);; i = (i + 1) & (s.capacity - 1)) {
    const record* r = s.slots[i];
    if (r == nullptr) return s.capacity;
    if (r->address == address) return i;
  }
}

// Under s.lock: empties slot i, shifting back the records of its probe run
// (linear probing needs no tombstones).
void erase_at(shard& s, std::size_t i) noexcept {
  const std::size_t mask = s.capacity - 1;
  for (std::size_t j = (i + 1) & mask; s.slots[j] != nullptr; j = (j + 1) & mask) {
    const std::size_t k = home(hash(s.slots[j]->address), s.capacity);
    // Move slots[j] into the hole at i unless its home lies cyclically in (i, j].
    const bool home_between = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!home_between) {
      s.slots[i] = s.slots[j];
      i = j;
    }
  }
  s.slots[i] = nullptr;
}

}  // namespace

bool is_marked(const void* address) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  if ((a >> leaf_span_bits) >= leaf_count) return true;  // not covered: ask the table
  const std::atomic<std::uint64_t>* leaf = leaf_of(a, false);
  return leaf != nullptr && (leaf[word_of(a)].load(std::memory_order_acquire) & bit_of(a)) != 0;
}

bool insert(record* r) noexcept {
  MEMLIMITS_ASSERT(may_be_sampled(r->address), "tracked block not aligned to a granule");
  platform::register_fork_handlers(fork_hooks);
  const std::uint64_t h = hash(r->address);
  shard& s = shard_of(h);
  core::spinlock_guard guard(s.lock);
  if ((s.count + 1) * 2 > s.capacity && !grow(s)) return false;
  // Marked under the shard lock, so that mark and record agree for a
  // concurrent remove() of the same address (which would be a double free).
  const auto a = reinterpret_cast<std::uintptr_t>(r->address);
  if (!mark(r->address) && (a >> leaf_span_bits) < leaf_count) return false;
  std::size_t i = home(h, s.capacity);
  while (s.slots[i] != nullptr) i = (i + 1) & (s.capacity - 1);
  s.slots[i] = r;
  ++s.count;
  return true;
}

record* remove(const void* address) noexcept {
  if (!is_marked(address)) return nullptr;
  const std::uint64_t h = hash(address);
  shard& s = shard_of(h);
  core::spinlock_guard guard(s.lock);
  const std::size_t i = find(s, address, h);
  if (i == s.capacity) return nullptr;
  record* r = s.slots[i];
  erase_at(s, i);
  --s.count;
  unmark(address);
  return r;
}

bool contains(const void* address) noexcept {
  if (!is_marked(address)) return false;
  const std::uint64_t h = hash(address);
  shard& s = shard_of(h);
  core::spinlock_guard guard(s.lock);
  return find(s, address, h) != s.capacity;
}

statistics stats() noexcept {
  statistics result{0, mapped_bytes.load(std::memory_order_relaxed) + record_bytes(),
                    leaf_bytes_mapped.load(std::memory_order_relaxed)};
  for (shard& s : shards) {
    core::spinlock_guard guard(s.lock);
    result.tracked_blocks += s.count;
  }
  return result;
}

}  // namespace memlimits::tracking::table
