// limits/raise_point.cpp — may an interrupted task raise here? The handler
// search of platform/ answers for one call site; this file chooses where the
// search may stop (the innermost tripped guard's frame) and remembers the
// noexcept boundaries it found, so that a task that keeps allocating inside
// one while interrupted does not walk its stack at every allocation.
// Layer 5.
#include "limits/raise_point.hpp"

#include "core/limits_port.hpp"
#include "platform/handler_search.hpp"
#include "platform/platform.hpp"

namespace memlimits::detail {
namespace {

// A boundary found by a search is remembered with its frame's stack pointer
// at the call it was making and that call's return address, as stored on
// the stack, and the same two for its caller: while all still match, the
// frame is still making that call (or is again, at the same depth, called
// from the same place), above the allocation, and the allocation is
// deferred without a search. Two words, because a frame that returned can
// leave its return address in a slot that the next frames do not write; and
// only at allocation sites (the hook's return address) where a search found
// a boundary, because stale words can still match by chance. Matching
// frames are not always the same activation (a loop that makes the same
// call again after the region was left), so a remembered boundary is
// searched again after 1, 2, 4, ... max_skips deferred allocations: a long
// noexcept region costs about one search per max_skips allocations, and a
// false match defers at most max_skips allocations.
constexpr std::uint32_t max_skips = 256;

constinit thread_local std::uint64_t searches MEMLIMITS_TLS_MODEL = 0;

// Where the handler search may stop: at the frame of the innermost stopped
// context's guard. An inherited guard's frame is on another stack, or gone:
// the search then goes to the end of the task's stack.
std::uintptr_t stop_frame(task_state& t) noexcept {
  std::uintptr_t frame = 0;
  bool found = false;
  for_each_share(t, [&](const context& c, const share&, bool own) {
    if (found || !stopped(c)) return;
    found = true;
    frame = own ? c.frame_boundary : 0;
  });
  return frame;
}

// Whether a remembered boundary lets this allocation be deferred at once.
// Entries whose frame has left the stack are dropped. `sp` and the entries
// lie on [low, high), the stack the task runs on: reading a return address
// there is safe.
bool defer_remembered(deferral_cache& cache, std::uintptr_t sp, std::uintptr_t high,
                      std::uintptr_t from) noexcept {
  for (deferral_cache::entry& e : cache.entries) {
    if (e.sp == 0) continue;
    const bool caller_matches =
        e.caller_sp == 0 || (e.caller_sp > e.sp && e.caller_sp <= high &&
                             platform::return_address_at(e.caller_sp) == e.caller_return_to);
    if (e.sp <= sp || e.sp > high || platform::return_address_at(e.sp) != e.return_to ||
        !caller_matches) {
      e = {};  // returned: the region was left
      continue;
    }
    if (e.skips_left > 0 && cache.allocates_from(from)) {
      --e.skips_left;
      return true;
    }
  }
  return false;
}

void remember(deferral_cache& cache, const platform::handler_answer& found,
              std::uintptr_t from) noexcept {
  for (deferral_cache::entry& e : cache.entries) {
    if (e.sp == found.boundary_sp && e.return_to == found.boundary_return &&
        e.caller_sp == found.caller_sp && e.caller_return_to == found.caller_return) {
      e.next_skips = e.next_skips * 2 > max_skips ? max_skips : e.next_skips * 2;
      e.skips_left = e.next_skips;
      cache.add_site(from);
      return;
    }
  }
  deferral_cache::entry* slot = nullptr;
  for (deferral_cache::entry& e : cache.entries) {
    if (e.sp == 0) {
      slot = &e;
      break;
    }
  }
  if (slot == nullptr) slot = &cache.entries[cache.next_victim++ % deferral_cache::size];
  *slot = {};
  slot->sp = found.boundary_sp;
  slot->return_to = found.boundary_return;
  slot->caller_sp = found.caller_sp;
  slot->caller_return_to = found.caller_return;
  slot->skips_left = slot->next_skips = 1;
  cache.add_site(from);
}

}  // namespace

bool may_raise_here(task_state& t, const void* from) noexcept {
  // The search must not re-enter the hooks; the thread's stack bounds are
  // looked up with glibc's allocator on first use.
  core::sampling_off off;
  const auto sp = reinterpret_cast<std::uintptr_t>(__builtin_dwarf_cfa());
  std::uintptr_t low = 0;
  std::uintptr_t high = 0;
  const bool known_stack = running_stack(t, &low, &high) && low <= sp && sp < high;
  const auto from_address = reinterpret_cast<std::uintptr_t>(from);
  if (known_stack && defer_remembered(t.deferrals, sp, high, from_address)) return false;

  ++searches;
  const limit_reached probe(t.raise_kind);
  platform::handler_query query;
  query.from = from;
  query.type = &typeid(limit_reached);
  query.object = const_cast<limit_reached*>(&probe);
  query.stop_above = stop_frame(t);
  const platform::handler_answer answer = platform::search_handler(query);
  if (answer.outcome == platform::throw_outcome::caught) {
    t.deferrals = {};  // the boundaries remembered do not cover this call site
    return true;
  }
  if (known_stack && answer.boundary_sp > sp && answer.boundary_sp <= high &&
      answer.boundary_return != 0) {
    remember(t.deferrals, answer, from_address);
  }
  return false;
}

std::uint64_t handler_searches_on_this_thread() noexcept { return searches; }

}  // namespace memlimits::detail
