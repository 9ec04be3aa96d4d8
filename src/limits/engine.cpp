// limits/engine.cpp — the decisions of the limits engine on the allocation
// path (core/limits_port.hpp's protocol) and the charging of samples:
//  * refuses(): exact allocation limits (the countdown's deadline brought us
//    here), tokens, and whether an interrupted task's allocation is raised
//    now (eligible) or deferred; refill(), its cheap case when a slice of a
//    shared budget ran out;
//  * on_alloc(): each sample of a task is charged to every context of the
//    task, all or nothing; memory, sampled-allocation and global limits are
//    checked there;
//  * on_free(): the block's charge is credited back to those contexts, by
//    whichever thread frees it, whenever.
// Nothing here allocates through the hooks, logs, or takes a lock a hook
// could re-enter. Layer 5.
#include "limits/engine.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>

#include "core/distributions.hpp"
#include "core/limits_port.hpp"
#include "core/subscribers.hpp"
#include "limits/budget.hpp"
#include "limits/global_memory.hpp"
#include "limits/raise_point.hpp"
#include "limits/task_state.hpp"
#include "limits/token_state.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::detail {

constinit engine_settings engine;

namespace {

std::atomic<int> engine_slot{-1};

// What a sampled block of a task carries until its free.
struct charge {
  context* innermost;     // holds a reference
  std::int64_t weight;    // bytes credited back to innermost and its ancestors
  std::int64_t samples;   // samples credited back
};

// Whether an interrupted task's allocation is refused now, or succeeds with
// the interruption deferred: operator new raises only where a handler would
// catch limit_reached before a noexcept boundary (limits/raise_point.cpp).
bool eligible(task_state& t, core::call_kind kind, const void* from) noexcept {
  if (t.masks > 0 || std::uncaught_exceptions() > 0) return false;
  switch (kind) {
    case core::call_kind::throwing: return may_raise_here(t, from);
    case core::call_kind::nothrow: return true;
    case core::call_kind::c_library:
      return engine.on_malloc.load(std::memory_order_relaxed) == malloc_policy::fail;
  }
  return false;
}

// Before a block exists: trips the exact allocation limits it would exceed
// (this block is the one that exceeds them) and the contexts whose token is
// set.
// An exact allocation limit shared with other tasks trips when the budget
// they have not yet taken cannot pay for the block (limits/budget.hpp).
void trip_before_allocation(task_state& t, std::size_t bytes) noexcept {
  const std::uint64_t position = task_position(t);  // includes this block
  for_each_share(t, [&](context& c, share& s, bool) {
    if (stopped(c)) return;
    switch (c.kind) {
      case limit_kind::allocations:
        if (!c.sampled && position > s.slice_end && !extend_slice(c, s, position)) {
          const std::uint64_t before = allocated_with(c, s, position) - core::event_bytes(bytes);
          trip(t, c, bytes, static_cast<std::int64_t>(before));
        }
        break;
      case limit_kind::token:
        if (c.token->flag.load(std::memory_order_acquire)) trip(t, c);
        break;
      default:
        break;
    }
  });
}

// Monitoring and usage() see the allocated bytes as of this event (of a
// shared context: within publish_interval per task).
void publish_allocated(task_state& t) noexcept {
  const std::uint64_t position = task_position(t);
  for_each_share(t, [&](context& c, share& s, bool) { publish_on_allocation(c, s, position); });
}

// task_ops::refuses (core/limits_port.hpp): step 2 or 4 of an allocation.
bool refuses(void* opaque, std::size_t bytes, core::call_kind kind, bool after_dispatch,
             const void* from) noexcept {
  task_state& t = *static_cast<task_state*>(opaque);
  // What the context's other tasks tripped or closed meanwhile, also after
  // the dispatch: a trip by another thread between the two steps refuses
  // this block too.
  refresh_trips(t);
  // Step 4 with nothing tripped, by the block's samples or by another task
  // meanwhile: step 2 published this position and set the deadline already.
  if (after_dispatch && t.tripped == 0) return false;
  if (!after_dispatch) trip_before_allocation(t, bytes);
  const bool refuse = t.tripped > 0 && eligible(t, kind, from);
  if (refuse) {
    core::refund_event(bytes);
    if (kind != core::call_kind::c_library) core::mark_refusal();
  }
  publish_allocated(t);
  update_deadline(t);
  return refuse;
}

// task_ops::refill (core/limits_port.hpp): step 2 when only the deadline
// fired, which under a budget shared with other tasks is the end of a
// slice, once per max_slice bytes of each task. One walk over the task's
// contexts does what refuses() would: takes new slices, publishes, and
// sets the next deadline. Anything else (a context stopped by another task
// or closed, a token set, a budget that cannot pay for the block) is left
// to refuses(); the slices taken meanwhile stay taken, and a second
// publication publishes nothing.
bool refill(void* opaque) noexcept {
  task_state& t = *static_cast<task_state*>(opaque);
  if (t.tripped > 0) return false;
  const std::uint64_t position = task_position(t);  // includes this block
  std::uint64_t deadline = core::no_deadline;
  bool paid = true;
  for_each_share(t, [&](context& c, share& s, bool) {
    if (!paid) return;
    if (stopped(c) ||
        (c.kind == limit_kind::token && c.token->flag.load(std::memory_order_acquire))) {
      paid = false;
      return;
    }
    if (has_budget(c)) {
      if (position > s.slice_end && !extend_slice(c, s, position)) {
        paid = false;
        return;
      }
      deadline = std::min(deadline, slice_deadline(t, s));
    }
    publish_on_allocation(c, s, position);
  });
  if (!paid) return false;
  core::set_deadline(deadline);
  return true;
}

void raise() {
  const limit_kind kind = current_task().raise_kind;
  // The exception object is allocated with sampling off, so that building
  // it never re-enters the limit check; `off` ends during the unwinding.
  core::sampling_off off;
  throw limit_reached(kind);
}

void* on_alloc(void*, const core::sampled_block& block) {
  void* opaque = core::limited_task();
  if (opaque == nullptr) return nullptr;  // not a guarded task
  task_state& t = *static_cast<task_state*>(opaque);
  context* innermost = t.innermost;
  if (innermost == nullptr) return nullptr;

  const double rate = engine.rate.load(std::memory_order_relaxed);
  const std::int64_t weight = core::sample_weight_bytes(block.n_samples, rate);
  void* memory = platform::system::malloc(sizeof(charge));
  int global_exceeded = -1;  // read once per sample: -1 not yet, 0 no, 1 yes
  for (context* c = innermost; c != nullptr; c = c->parent) {
    c->samples.fetch_add(block.n_samples, std::memory_order_relaxed);
    const auto n = static_cast<std::int64_t>(block.n_samples);
    std::int64_t live = c->live_samples.load(std::memory_order_relaxed) + n;
    if (memory != nullptr) {
      c->live_bytes.fetch_add(weight, std::memory_order_relaxed);
      live = c->live_samples.fetch_add(n, std::memory_order_relaxed) + n;
    }
    if (stopped(*c)) continue;
    switch (c->kind) {
      case limit_kind::memory:
        // In samples, not bytes: 8 / rate need not be an integer, and the
        // rounded weights would move the trip point.
        if (live >= static_cast<std::int64_t>(c->sample_threshold)) {
          trip(t, *c, block.size, core::sample_weight_bytes(static_cast<std::uint64_t>(live), rate));
        }
        break;
      case limit_kind::allocations:
        if (c->sampled) {
          // The threshold counts samples at the rate in force at entry:
          // thin those drawn at a higher rate since (exact, binomial). At a
          // lower rate there are fewer samples, and the limit trips later.
          std::uint64_t mine = block.n_samples;
          if (rate > c->rate) {
            mine = core::thin(mine, c->rate / rate);
          }
          const std::uint64_t total =
              c->samples_at_entry_rate.fetch_add(mine, std::memory_order_relaxed) + mine;
          if (total >= c->sample_threshold) trip(t, *c, block.size);
        }
        break;
      case limit_kind::global_memory:
        if (global_exceeded < 0) global_exceeded = global_limit_exceeded() ? 1 : 0;
        if (global_exceeded == 1) trip(t, *c, block.size);
        break;
      case limit_kind::token:
        break;
    }
  }
  // Without memory for the charge, the block is counted as a sample but not
  // as live memory (the free could not be credited).
  if (memory == nullptr) return nullptr;
  retain(innermost);
  return new (memory) charge{innermost, weight, static_cast<std::int64_t>(block.n_samples)};
}

void on_free(void*, void* cookie) noexcept {
  auto* c = static_cast<charge*>(cookie);
  for (context* x = c->innermost; x != nullptr; x = x->parent) {
    x->live_bytes.fetch_sub(c->weight, std::memory_order_relaxed);
    x->live_samples.fetch_sub(c->samples, std::memory_order_relaxed);
  }
  release(c->innermost);
  platform::system::free(c);
}

}  // namespace

void start_engine() {
  static std::once_flag once;
  std::call_once(once, [] {
    core::install_task_ops({&refuses, &refill, &raise});
    const double rate = engine.rate.load(std::memory_order_relaxed);
    const int slot = core::subscribe({nullptr, &on_alloc, &on_free}, rate, 0);
    if (slot < 0) {
      throw std::runtime_error("memlimits: no free subscriber slot in the sampling core");
    }
    engine_slot.store(slot, std::memory_order_release);
  });
}

void set_engine_rate(double rate) noexcept {
  engine.rate.store(rate, std::memory_order_relaxed);
  core::set_base_rate(rate);
  const int slot = engine_slot.load(std::memory_order_acquire);
  if (slot >= 0) core::set_subscriber_rate(slot, rate);
}

namespace {

// l p with l = limit / 8 words, and its nearest integer when it is within a
// relative 1e-12 of one (limits given as k / p words then mean k samples
// despite rounding in the division).
long double samples_in(std::uint64_t limit, double rate, bool& integral) noexcept {
  const long double exact = static_cast<long double>(limit) / 8.0L * rate;
  const long double nearest = std::round(exact);
  integral = std::fabs(exact - nearest) <= 1e-12L * (nearest > 1 ? nearest : 1);
  return integral ? nearest : exact;
}

std::uint64_t clamp_samples(long double k) noexcept {
  if (k < 1) return 1;
  if (k > 1e18L) return 1000000000000000000ull;
  return static_cast<std::uint64_t>(k);
}

}  // namespace

std::uint64_t sampled_threshold(std::uint64_t limit, double rate) noexcept {
  // memprof-limits: a limit of l words trips at the k-th sample, k = l p,
  // rounded up to a whole sample (stats/README.md §2).
  bool integral = false;
  const long double k = samples_in(limit, rate, integral);
  return clamp_samples(integral ? k : std::ceil(k));
}

std::uint64_t memory_threshold(std::uint64_t limit, double rate) noexcept {
  // The estimate K / p words exceeds l words first at K = floor(l p) + 1
  // (stats/README.md §4).
  bool integral = false;
  const long double k = samples_in(limit, rate, integral);
  return clamp_samples((integral ? k : std::floor(k)) + 1);
}

}  // namespace memlimits::detail
