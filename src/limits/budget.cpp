// limits/budget.cpp — slices of shared exact allocation budgets, and the
// totals a task publishes (limits/budget.hpp). Layer 5.
#include "limits/budget.hpp"

#include <algorithm>

namespace memlimits::detail {
namespace {

// A new slice when `left` bytes remain: all of it for a task alone under
// the context (exact), else a part that shrinks with the remainder. Slices
// start at first_slice and double, up to max_slice, so that a task that
// allocates little (a creator waiting for its children) holds little.
std::uint64_t slice_for(const context& c, share& s, std::uint64_t left) noexcept {
  const std::uint32_t members = c.members.load(std::memory_order_relaxed);
  if (members <= 1) return left;
  const std::uint64_t grown = s.next_slice;
  s.next_slice = std::min(2 * grown, max_slice);
  return std::min({grown, max_slice, left / (2 * static_cast<std::uint64_t>(members))});
}

}  // namespace

bool extend_slice(context& c, share& s, std::uint64_t position) noexcept {
  const std::uint64_t need = position - s.slice_end;
  std::int64_t left = c.remaining.load(std::memory_order_relaxed);
  const std::uint64_t next = s.next_slice;
  for (;;) {
    if (left < 0 || static_cast<std::uint64_t>(left) < need) return false;
    s.next_slice = next;
    const std::uint64_t grant = need + slice_for(c, s, static_cast<std::uint64_t>(left) - need);
    if (c.remaining.compare_exchange_weak(left, left - static_cast<std::int64_t>(grant),
                                          std::memory_order_relaxed)) {
      s.slice_end += grant;
      return true;
    }
  }
}

void trim_slice(context& c, share& s, std::uint64_t position) noexcept {
  s.next_slice = first_slice;
  if (s.slice_end <= position) return;
  c.remaining.fetch_add(static_cast<std::int64_t>(s.slice_end - position),
                        std::memory_order_relaxed);
  s.slice_end = position;
}

void publish(context& c, share& s, std::uint64_t position) noexcept {
  const std::uint64_t used = position - s.start;
  if (used == s.published) return;
  // Modular: a refused block leaves the position below what step 2 of its
  // allocation published.
  c.allocated.fetch_add(used - s.published, std::memory_order_relaxed);
  s.published = used;
}

void publish_on_allocation(context& c, share& s, std::uint64_t position) noexcept {
  if (position - s.start - s.published < publish_interval &&
      c.members.load(std::memory_order_relaxed) > 1) {
    return;
  }
  publish(c, s, position);
}

std::uint64_t allocated_with(const context& c, const share& s, std::uint64_t position) noexcept {
  return c.allocated.load(std::memory_order_relaxed) + (position - s.start - s.published);
}

}  // namespace memlimits::detail
