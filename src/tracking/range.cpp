// tracking/range.cpp — the reserved range and its runs of pages
// (tracking/range.hpp). Layer 3.
//
// Data, all under `lock`:
//  * the page map: one 32-bit word per page of the range, in a reservation
//    of its own committed as the range is; the first and the last page of
//    every run hold (length << 1 | free), other pages hold nothing that is
//    read. A free run's neighbours are found through it.
//  * free runs, each with a header in its first page: its length, how many
//    of its pages may be resident (dirty), and its links in a bin. Bins 0..63
//    hold runs of exactly 1..64 pages; bins above, runs of [2^k, 2^(k+1))
//    pages for k = 6, 7, ...; within a bin the newest run comes first.
//  * the frontier: pages [0, frontier) have been cut into runs; pages
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
constexpr std::size_t max_gib = 8192;  // 2^31 pages: a length fits the map's 31 bits
constexpr std::size_t commit_step_pages = (4u << 20) / page_bytes;
constexpr std::size_t exact_bins = 64;
constexpr std::size_t bin_count = exact_bins + 26;
constexpr std::size_t purge_floor_pages = (4u << 20) / page_bytes;
constexpr std::uint32_t free_bit = 1;

struct free_header {
  std::size_t pages;
  std::size_t dirty;  // pages that may be resident, header page included
  free_header* prev;
  free_header* next;
};

constinit core::spinlock lock;
int state = 0;  // 0: not tried; 1: reserved; 2: refused. Under lock.
char* base = nullptr;
std::size_t total_pages = 0;
std::uint32_t* page_map = nullptr;
std::size_t frontier = 0;
std::size_t committed = 0;
std::size_t used_pages = 0;
std::size_t dirty_pages = 0;  // sum of the free runs' dirty counts
free_header* bins[bin_count] = {};

void fork_prepare() { lock.lock(); }
void fork_parent() { lock.unlock(); }
void fork_child() { lock.reset_after_fork(); }
constinit platform::fork_handlers fork_hooks{&fork_prepare, &fork_parent, &fork_child};

std::size_t bin_of(std::size_t pages) noexcept {
  if (pages <= exact_bins) return pages - 1;
  const std::size_t bin = exact_bins + (std::bit_width(pages) - 7);  // 64..127 -> 64
  return bin < bin_count ? bin : bin_count - 1;
}

char* page_address(std::size_t page) noexcept { return base + page * page_bytes; }
std::size_t page_index(const void* p) noexcept {
  return static_cast<std::size_t>(static_cast<const char*>(p) - base) / page_bytes;
}

void mark_run(std::size_t first, std::size_t pages, bool free) noexcept {
  const std::uint32_t word = static_cast<std::uint32_t>(pages << 1) | (free ? free_bit : 0);
  page_map[first] = word;
  page_map[first + pages - 1] = word;
}

void link(free_header* run) noexcept {
  free_header*& head = bins[bin_of(run->pages)];
  run->prev = nullptr;
  run->next = head;
  if (head != nullptr) head->prev = run;
  head = run;
}

void unlink(free_header* run) noexcept {
  if (run->prev != nullptr) {
    run->prev->next = run->next;
  } else {
    bins[bin_of(run->pages)] = run->next;
  }
  if (run->next != nullptr) run->next->prev = run->prev;
}

// Pages [first, first + pages) become one free run with `dirty` pages that
// may be resident.
void add_free(std::size_t first, std::size_t pages, std::size_t dirty) noexcept {
  auto* run = reinterpret_cast<free_header*>(page_address(first));
  run->pages = pages;
  run->dirty = dirty < 1 ? 1 : dirty;  // the header's page
  dirty_pages += run->dirty;
  mark_run(first, pages, true);
  link(run);
}

void remove_free(free_header* run) noexcept {
  unlink(run);
  dirty_pages -= run->dirty;
}

// Gives back the pages of free runs, largest bins first, until at most half
// the bound is held.
void purge() noexcept {
  const std::size_t bound = purge_floor_pages + used_pages / 64;
  if (dirty_pages <= bound) return;
  for (std::size_t bin = bin_count; bin-- > 0 && dirty_pages > bound / 2;) {
    for (free_header* run = bins[bin]; run != nullptr && dirty_pages > bound / 2;
         run = run->next) {
      if (run->dirty <= 1) continue;
      platform::purge_pages(reinterpret_cast<char*>(run) + page_bytes,
                            (run->pages - 1) * page_bytes);
      dirty_pages -= run->dirty - 1;
      run->dirty = 1;
    }
  }
}

// Commits the range and its map up to at least `pages` pages.
bool commit_to(std::size_t pages) noexcept {
  if (pages <= committed) return true;
  std::size_t target = (pages + commit_step_pages - 1) / commit_step_pages * commit_step_pages;
  if (target > total_pages) target = total_pages;
  if (!platform::commit_pages(page_address(committed), (target - committed) * page_bytes)) {
    return false;
  }
  // The map's pages for [committed, target), rounded out to whole pages.
  const auto map_page = [](std::size_t page) {
    return page * sizeof(std::uint32_t) / page_bytes * page_bytes;
  };
  const std::size_t from = map_page(committed);
  const std::size_t to = map_page(target - 1) + page_bytes;
  if (!platform::commit_pages(reinterpret_cast<char*>(page_map) + from, to - from)) return false;
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
  constexpr std::size_t step_bytes = commit_step_pages * page_bytes;
  std::size_t size = configured_gib() * gib;
  if (const std::size_t limit = platform::address_space_limit(); size > limit / 8) {
    size = limit / 8 / step_bytes * step_bytes;
  }
  for (; size >= step_bytes; size = size / 2 / step_bytes * step_bytes) {
    const std::size_t pages = size / page_bytes;
    const std::size_t map_bytes =
        (pages * sizeof(std::uint32_t) + page_bytes - 1) / page_bytes * page_bytes;
    void* range = platform::reserve_pages(size, step_bytes);
    if (range == nullptr) continue;
    void* map = platform::reserve_pages(map_bytes, page_bytes);
    if (map == nullptr) {
      platform::unmap_pages(range, size);
      continue;
    }
    base = static_cast<char*>(range);
    total_pages = pages;
    page_map = static_cast<std::uint32_t*>(map);
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

void* allocate_run(std::size_t pages) noexcept {
  MEMLIMITS_ASSERT(pages >= 1, "empty run");
  platform::register_fork_handlers(fork_hooks);
  core::spinlock_guard guard(lock);
  if (!reserve_locked() || pages > total_pages) return nullptr;
  // The first run that fits, from the smallest bin that may hold one.
  for (std::size_t bin = bin_of(pages); bin < bin_count; ++bin) {
    for (free_header* run = bins[bin]; run != nullptr; run = run->next) {
      if (run->pages < pages) continue;
      const std::size_t first = page_index(run);
      const std::size_t length = run->pages;
      const std::size_t dirty = run->dirty;
      remove_free(run);
      if (length > pages) {
        // The rest stays free; which of its pages are resident is not
        // known, so it may hold all the dirty ones.
        const std::size_t rest = length - pages;
        add_free(first + pages, rest, dirty < rest ? dirty : rest);
      }
      mark_run(first, pages, false);
      used_pages += pages;
      return page_address(first);
    }
  }
  if (pages > total_pages - frontier || !commit_to(frontier + pages)) return nullptr;
  const std::size_t first = frontier;
  frontier += pages;
  mark_run(first, pages, false);
  used_pages += pages;
  return page_address(first);
}

void free_run(void* run, std::size_t pages) noexcept {
  core::spinlock_guard guard(lock);
  std::size_t first = page_index(run);
  MEMLIMITS_CHECK(page_map[first] == static_cast<std::uint32_t>(pages << 1),
                  "free of a run that is not in use");
  used_pages -= pages;
  std::size_t length = pages;
  std::size_t dirty = pages;
  if (first > 0 && (page_map[first - 1] & free_bit) != 0) {
    const std::size_t before = page_map[first - 1] >> 1;
    auto* neighbour = reinterpret_cast<free_header*>(page_address(first - before));
    dirty += neighbour->dirty;
    remove_free(neighbour);
    first -= before;
    length += before;
  }
  const std::size_t after = first + length;
  if (after < frontier && (page_map[after] & free_bit) != 0) {
    auto* neighbour = reinterpret_cast<free_header*>(page_address(after));
    dirty += neighbour->dirty;
    length += neighbour->pages;
    remove_free(neighbour);
  }
  add_free(first, length, dirty);
  purge();
}

statistics stats() noexcept {
  core::spinlock_guard guard(lock);
  const std::size_t map_bytes =
      committed == 0 ? 0 : (committed * sizeof(std::uint32_t) + page_bytes - 1) / page_bytes * page_bytes;
  return {total_pages * page_bytes, committed * page_bytes, used_pages * page_bytes,
          dirty_pages * page_bytes, map_bytes};
}

}  // namespace memlimits::tracking::range
