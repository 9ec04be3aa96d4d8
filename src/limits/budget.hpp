// limits/budget.hpp — a task's share of a context: the slice of an exact
// allocation budget that several tasks share, and the totals each task
// publishes to the context.
//
// An exact allocation limit shared by several tasks never lets their total
// exceed it. Each task allocates against a slice of the budget: the
// countdown's deadline is the end of its slice, so the fast path is
// unchanged. When an allocation takes it past the end, its slow path takes
// what the allocation needs plus a new slice from the context's remainder
// with one compare-and-swap (limits/engine.cpp: refill, when nothing else
// sent the allocation there); when the remainder cannot pay for the
// allocation, the context trips. While the task that entered the guard is
// alone, its slice is the whole budget and the limit is as exact as a
// task's own. Once it has children, a slice is at most
//   min(max_slice, remainder / (2 * members)),
// starting at 4 KiB and doubling at each slice a task takes; a task gives
// its unused slice back when it stops running on a thread (a switch, the
// end of a child) and when it creates a child (so the first child's
// creator no longer holds the whole budget), and starts small again. The
// slices that the other tasks hold unused make a trip come early: by at
// most max_slice bytes for each other task that has allocated since it was
// last made current or created a child (the running ones, and a creator
// waiting for its children after allocating), and never late. A block that
// another task had in flight at the trip, paid for from its slice but not
// yet granted, is refused too (limits/engine.cpp re-reads the trips after
// the samples' dispatch): add at most one block per other task. Owner
// thread only, but the remainder and the totals.
// Layer 5.
#pragma once

#include <cstdint>

#include "limits/task_state.hpp"

namespace memlimits::detail {

inline constexpr std::uint64_t max_slice = 64 * 1024;

// Whether the context has an exact allocation budget (shares hold slices).
inline bool has_budget(const context& c) noexcept {
  return c.kind == limit_kind::allocations && !c.sampled;
}

// The stream position of the end of the task's slice: its countdown's
// deadline for the context.
inline std::uint64_t slice_deadline(const task_state& t, const share& s) noexcept {
  return t.position_base + s.slice_end;
}

// The task's allocations reached `position`, past its slice: takes the
// missing bytes and a new slice from the remainder. False (nothing taken)
// if the remainder cannot pay for them.
bool extend_slice(context& c, share& s, std::uint64_t position) noexcept;

// Gives the part of the task's slice beyond `position` back to the
// remainder; its next slices start small again.
void trim_slice(context& c, share& s, std::uint64_t position) noexcept;

// Adds the task's bytes since its last publication (at `position`) to the
// context's total.
void publish(context& c, share& s, std::uint64_t position) noexcept;

// On the allocation path: publishes at every slow path while the task is
// alone under the context, and once per publish_interval bytes of the task
// while the context is shared (each publication is a write to a cache line
// that all its tasks share). Switches, exits and the ends of children
// publish at once.
inline constexpr std::uint64_t publish_interval = 256 * 1024;
void publish_on_allocation(context& c, share& s, std::uint64_t position) noexcept;

// The bytes allocated under the context, with the calling owner's share
// counted up to `position`.
std::uint64_t allocated_with(const context& c, const share& s, std::uint64_t position) noexcept;

}  // namespace memlimits::detail
