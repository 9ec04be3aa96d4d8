// limits/budget.cpp — slices of shared exact allocation budgets, and the
// totals a task publishes (limits/budget.hpp). Layer 5.
#include "limits/budget.hpp"

#include <algorithm>

namespace memlimits::detail {
namespace {

// A new slice when `left` bytes remain: all of it for a task alone under
// the context (exact), else a part that shrinks with the remainder.
std::uint64_t slice_for(const context& c, std::uint64_t left) noexcept {
  const std::uint32_t members = c.members.load(std::memory_order_relaxed);
  if (members <= 1) return left;
  return std::min<std::uint64_t>(max_slice, left / (2 * static_cast<std::uint64_t>(members)));
}

}  // namespace

bool extend_slice(context& c, share& s, std::uint64_t position) noexcept {
  const std::uint64_t need = position - s.slice_end;
  std::int64_t left = c.remaining.load(std::memory_order_relaxed);
  for (;;) {
    if (left < 0 || static_cast<std::uint64_t>(left) < need) return false;
    const std::uint64_t grant = need + slice_for(c, static_cast<std::uint64_t>(left) - need);
    if (c.remaining.compare_exchange_weak(left, left - static_cast<std::int64_t>(grant),
                                          std::memory_order_relaxed)) {
      s.slice_end += grant;
      return true;
    }
  }
}

void trim_slice(context& c, share& s, std::uint64_t position, bool keep_a_slice) noexcept {
  if (s.slice_end <= position) return;
  const std::uint64_t unused = s.slice_end - position;
  std::uint64_t keep = 0;
  if (keep_a_slice) {
    const auto left = static_cast<std::uint64_t>(
        std::max<std::int64_t>(c.remaining.load(std::memory_order_relaxed), 0));
    keep = std::min(unused, slice_for(c, left + unused));
  }
  if (unused == keep) return;
  c.remaining.fetch_add(static_cast<std::int64_t>(unused - keep), std::memory_order_relaxed);
  s.slice_end = position + keep;
}

void publish(context& c, share& s, std::uint64_t position) noexcept {
  const std::uint64_t used = position - s.start;
  if (used == s.published) return;
  // Modular: a refused block leaves the position below what step 2 of its
  // allocation published.
  c.allocated.fetch_add(used - s.published, std::memory_order_relaxed);
  s.published = used;
}

std::uint64_t allocated_with(const context& c, const share& s, std::uint64_t position) noexcept {
  return c.allocated.load(std::memory_order_relaxed) + (position - s.start - s.published);
}

}  // namespace memlimits::detail
