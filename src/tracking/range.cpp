// tracking/range.cpp — the reserved range and its runs of units
// (tracking/range.hpp). Layer 3.
//
// Data, all under `lock`:
//  * the unit map: one 32-bit word per unit of the range, in a reservation
//    of its own committed as the range is; the first and the last unit of
//    every run hold (length << 1 | free), other units hold nothing that is
//    read. A free run's neighbours are found through it.
//  * free runs, each with a header in its first unit: its length, how many
//    of its units may be resident (dirty), and its links in a bin. Bins 0..63
//    hold runs of exactly 1..64 units; bins above, runs of [2^k, 2^(k+1))
//    units for k = 6, 7, ...; within a bin the newest run comes first.
//  * the frontier: units [0, frontier) have been cut into runs; units
//    [0, committed) are readable and writable.
#include "tracking/range.hpp"

#include <bit>

#include "core/check.hpp"
#include "core/spinlock.hpp"
#include "platform/environment.hpp"

#ifndef MEMLIMITS_SAMPLED_RANGE_GIB
#  define MEMLIMITS_SAMPLED_RANGE_GIB 64
#endif

namespace memlimits::tracking::range {
namespace {

static_assert(MEMLIMITS_SAMPLED_RANGE_GIB >= 1 && MEMLIMITS_SAMPLED_RANGE_GIB <= 8192,
              "MEMLIMITS_SAMPLED_RANGE_GIB: from 1 to 8192");

constexpr std::size_t gib = std::size_t{1} << 30;
constexpr std::size_t max_gib = 8192;  // 2^34 units; a run's length fits the map's 31 bits
                                       // (runs are at most 1 TiB: range_heap.cpp)
constexpr std::size_t commit_step_units = (4u << 20) / unit_bytes;
constexpr std::size_t exact_bins = 64;
constexpr std::size_t bin_count = exact_bins + 26;
constexpr std::size_t purge_floor_units = (1u << 20) / unit_bytes;
constexpr std::uint32_t free_bit = 1;

struct free_header {
  std::size_t units;
  std::size_t dirty;  // units that may be resident, the header's included
  std::uint64_t dirty_since_ns;  // when its oldest dirty units were freed
  free_header* prev;
  free_header* next;
};

// Freed units are given back to the system once they have stayed free
// purge_age_ns and more than purge_floor_units + used / 128 are held; at
// once, whatever their age, above hard_floor_units + used / 8. A program
// that frees and allocates sampled buffers of one size over and over reuses
// them long before that, instead of faulting their pages in each time.
constexpr std::uint64_t purge_age_ns = 10'000'000;
constexpr std::uint64_t purge_check_ns = 2'000'000;  // between scans for aged runs
constexpr std::size_t hard_floor_units = (64u << 20) / unit_bytes;

constinit core::spinlock lock;
int state = 0;  // 0: not tried; 1: reserved; 2: refused. Under lock.
char* base = nullptr;
std::size_t total_units = 0;
std::uint32_t* unit_map = nullptr;
std::size_t frontier = 0;
std::size_t committed = 0;
std::size_t used_units = 0;
std::size_t dirty_units = 0;  // sum of the free runs' dirty counts
std::uint64_t next_purge_check_ns = 0;
free_header* bins[bin_count] = {};
std::uint64_t nonempty[2] = {};  // bit b: bins[b] has a run
static_assert(bin_count <= 128);

void fork_prepare() { lock.lock(); }
void fork_parent() { lock.unlock(); }
void fork_child() { lock.reset_after_fork(); }
constinit platform::fork_handlers fork_hooks{&fork_prepare, &fork_parent, &fork_child};

std::size_t bin_of(std::size_t units) noexcept {
  if (units <= exact_bins) return units - 1;
  const std::size_t bin = exact_bins + (std::bit_width(units) - 7);  // 64..127 -> 64
  return bin < bin_count ? bin : bin_count - 1;
}

char* unit_address(std::size_t unit) noexcept { return base + unit * unit_bytes; }
std::size_t unit_index(const void* p) noexcept {
  return static_cast<std::size_t>(static_cast<const char*>(p) - base) / unit_bytes;
}

void mark_run(std::size_t first, std::size_t units, bool free) noexcept {
  const std::uint32_t word = static_cast<std::uint32_t>(units << 1) | (free ? free_bit : 0);
  unit_map[first] = word;
  unit_map[first + units - 1] = word;
}

// The first bin from `bin` on that has a run, or bin_count.
std::size_t next_nonempty(std::size_t bin) noexcept {
  for (std::size_t word = bin / 64; word < 2; ++word) {
    const std::uint64_t bits =
        nonempty[word] & (word == bin / 64 ? ~std::uint64_t{0} << (bin % 64) : ~std::uint64_t{0});
    if (bits != 0) return word * 64 + static_cast<std::size_t>(std::countr_zero(bits));
  }
  return bin_count;
}

void link(free_header* run) noexcept {
  const std::size_t bin = bin_of(run->units);
  nonempty[bin / 64] |= std::uint64_t{1} << (bin % 64);
  free_header*& head = bins[bin];
  run->prev = nullptr;
  run->next = head;
  if (head != nullptr) head->prev = run;
  head = run;
}

void unlink(free_header* run) noexcept {
  if (run->prev != nullptr) {
    run->prev->next = run->next;
  } else {
    const std::size_t bin = bin_of(run->units);
    bins[bin] = run->next;
    if (run->next == nullptr) nonempty[bin / 64] &= ~(std::uint64_t{1} << (bin % 64));
  }
  if (run->next != nullptr) run->next->prev = run->prev;
}

// Units [first, first + units) become one free run with `dirty` units that
// may be resident.
void add_free(std::size_t first, std::size_t units, std::size_t dirty,
              std::uint64_t dirty_since_ns) noexcept {
  auto* run = reinterpret_cast<free_header*>(unit_address(first));
  run->units = units;
  run->dirty = dirty < 1 ? 1 : dirty;  // the header's unit
  run->dirty_since_ns = dirty_since_ns;
  dirty_units += run->dirty;
  mark_run(first, units, true);
  link(run);
}

void remove_free(free_header* run) noexcept {
  unlink(run);
  dirty_units -= run->dirty;
}

// Gives back the pages of free runs, largest bins first: those dirty for
// purge_age_ns until at most half the soft bound is held, and any, above the
// hard bound, until at most half of that is.
void purge(std::uint64_t now) noexcept {
  const std::size_t soft = purge_floor_units + used_units / 128;
  if (dirty_units <= soft) return;
  const std::size_t hard = hard_floor_units + used_units / 8;
  if (dirty_units <= hard && now < next_purge_check_ns) return;
  next_purge_check_ns = now + purge_check_ns;
  for (std::size_t bin = bin_count; bin-- > 0 && dirty_units > soft / 2;) {
    for (free_header* run = bins[bin]; run != nullptr && dirty_units > soft / 2;
         run = run->next) {
      if (run->dirty <= 1) continue;
      if (dirty_units <= hard / 2 && now - run->dirty_since_ns < purge_age_ns) continue;
      // The whole pages past the header's unit; the run's partial pages stay.
      const auto start = reinterpret_cast<std::uintptr_t>(run);
      const std::uintptr_t from = (start + unit_bytes + page_bytes - 1) & ~(page_bytes - 1);
      const std::uintptr_t to = (start + run->units * unit_bytes) & ~(page_bytes - 1);
      if (to > from) platform::purge_pages(reinterpret_cast<void*>(from), to - from);
      dirty_units -= run->dirty - 1;
      run->dirty = 1;
    }
  }
}

// Commits the range and its map up to at least `units` units.
bool commit_to(std::size_t units) noexcept {
  if (units <= committed) return true;
  std::size_t target = (units + commit_step_units - 1) / commit_step_units * commit_step_units;
  if (target > total_units) target = total_units;
  if (!platform::commit_pages(unit_address(committed), (target - committed) * unit_bytes)) {
    return false;
  }
  // The map's pages for the units [committed, target), rounded out.
  const auto map_page = [](std::size_t unit) {
    return unit * sizeof(std::uint32_t) / page_bytes * page_bytes;
  };
  const std::size_t from = map_page(committed);
  const std::size_t to = map_page(target - 1) + page_bytes;
  if (!platform::commit_pages(reinterpret_cast<char*>(unit_map) + from, to - from)) return false;
  committed = target;
  return true;
}

std::size_t configured_gib() noexcept {
  const char* name = "MEMLIMITS_SAMPLED_RANGE_GIB";
  const char* text = platform::get_env(name);
  if (text == nullptr) return MEMLIMITS_SAMPLED_RANGE_GIB;
  std::uint64_t value = 0;
  if (platform::parse_unsigned(text, value) && value >= 1 && value <= max_gib) return value;
  platform::report_ignored_variable(name, text, "a whole number of GiB from 1 to 8192");
  return MEMLIMITS_SAMPLED_RANGE_GIB;
}

// Under lock.
bool reserve_locked() noexcept {
  if (state != 0) return state == 1;
  state = 2;
  if (platform::page_size() != page_bytes) return false;
  // Under a limit on the address space, the range takes at most an eighth.
  constexpr std::size_t step_bytes = commit_step_units * unit_bytes;
  std::size_t size = configured_gib() * gib;
  if (const std::size_t limit = platform::address_space_limit(); size > limit / 8) {
    size = limit / 8 / step_bytes * step_bytes;
  }
  for (; size >= step_bytes; size = size / 2 / step_bytes * step_bytes) {
    const std::size_t units = size / unit_bytes;
    const std::size_t map_bytes =
        (units * sizeof(std::uint32_t) + page_bytes - 1) / page_bytes * page_bytes;
    void* range = platform::reserve_pages(size, step_bytes);
    if (range == nullptr) continue;
    void* map = platform::reserve_pages(map_bytes, page_bytes);
    if (map == nullptr) {
      platform::unmap_pages(range, size);
      continue;
    }
    base = static_cast<char*>(range);
    total_units = units;
    unit_map = static_cast<std::uint32_t*>(map);
    state = 1;
    // Published for contains(): base first (range.hpp says why).
    current.base.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_release);
    current.size.store(size, std::memory_order_release);
    return true;
  }
  return false;
}

}  // namespace

bool reserve() noexcept {
  platform::register_fork_handlers(fork_hooks);
  core::spinlock_guard guard(lock);
  return reserve_locked();
}

void* allocate_run(std::size_t units, bool* zeroed) noexcept {
  MEMLIMITS_ASSERT(units >= 1, "empty run");
  platform::register_fork_handlers(fork_hooks);
  core::spinlock_guard guard(lock);
  // A length must fit the map's 31 bits.
  if (!reserve_locked() || units > total_units || units >= (std::size_t{1} << 31)) return nullptr;
  // The first run that fits, from the smallest bin that may hold one.
  for (std::size_t bin = next_nonempty(bin_of(units)); bin < bin_count;
       bin = next_nonempty(bin + 1)) {
    for (free_header* run = bins[bin]; run != nullptr; run = run->next) {
      if (run->units < units) continue;
      const std::size_t first = unit_index(run);
      const std::size_t length = run->units;
      const std::size_t dirty = run->dirty;
      const std::uint64_t dirty_since = run->dirty_since_ns;
      remove_free(run);
      if (length > units) {
        // The rest stays free; which of its units are resident is not
        // known, so it may hold all the dirty ones.
        const std::size_t rest = length - units;
        add_free(first + units, rest, dirty < rest ? dirty : rest, dirty_since);
      }
      mark_run(first, units, false);
      used_units += units;
      if (zeroed != nullptr) *zeroed = false;
      return unit_address(first);
    }
  }
  if (units > total_units - frontier || !commit_to(frontier + units)) return nullptr;
  const std::size_t first = frontier;
  frontier += units;
  mark_run(first, units, false);
  used_units += units;
  if (zeroed != nullptr) *zeroed = true;  // past the frontier: never touched
  return unit_address(first);
}

void free_run(void* run, std::size_t units) noexcept {
  const std::uint64_t now = platform::monotonic_ns();
  core::spinlock_guard guard(lock);
  std::size_t first = unit_index(run);
  MEMLIMITS_CHECK(unit_map[first] == static_cast<std::uint32_t>(units << 1),
                  "free of a run that is not in use");
  used_units -= units;
  std::size_t length = units;
  std::size_t dirty = units;
  std::uint64_t dirty_since = now;
  // A neighbour's age counts when it holds dirty units beyond its header.
  const auto merge_age = [&](const free_header* neighbour) {
    if (neighbour->dirty > 1 && neighbour->dirty_since_ns < dirty_since) {
      dirty_since = neighbour->dirty_since_ns;
    }
  };
  if (first > 0 && (unit_map[first - 1] & free_bit) != 0) {
    const std::size_t before = unit_map[first - 1] >> 1;
    auto* neighbour = reinterpret_cast<free_header*>(unit_address(first - before));
    dirty += neighbour->dirty;
    merge_age(neighbour);
    remove_free(neighbour);
    first -= before;
    length += before;
  }
  const std::size_t after = first + length;
  if (after < frontier && (unit_map[after] & free_bit) != 0) {
    auto* neighbour = reinterpret_cast<free_header*>(unit_address(after));
    dirty += neighbour->dirty;
    merge_age(neighbour);
    length += neighbour->units;
    remove_free(neighbour);
  }
  add_free(first, length, dirty, dirty_since);
  purge(now);
}

statistics stats() noexcept {
  core::spinlock_guard guard(lock);
  const std::size_t map_bytes =
      committed == 0 ? 0 : (committed * sizeof(std::uint32_t) + page_bytes - 1) / page_bytes * page_bytes;
  return {total_units * unit_bytes, committed * unit_bytes, used_units * unit_bytes,
          dirty_units * unit_bytes, map_bytes};
}

}  // namespace memlimits::tracking::range
