// core/limits_port.hpp — the one port between the sampling core and the
// limits engine (limits/, layer 5): everything the engine may do to a
// thread's sampling state, and the questions the hooks (layer 4) ask the
// engine without depending on it. Nothing else of core/thread_state.hpp is
// visible above core.
//
// What the engine does through it, on the thread it runs on unless stated:
//   * says which of its tasks the thread's allocations are charged to while
//     that task has a guard (set_limited_task; null: none), so that an
//     unguarded thread never reaches the engine;
//   * sets the countdown's deadline at the nearest exact allocation limit
//     (set_deadline; stream positions from core::stream_position());
//   * forces the next allocation to the slow path (force_next_event), or
//     hands the thread's alarm to other threads, which raise it from
//     anywhere, a signal handler included (this_thread_alarm, raise_alarm);
//   * thins a block's samples to a lower rate (thin);
//   * marks the allocation in progress as refused (mark_refusal), for an
//     operator new to raise.
// The fast path (core::consume) is the same for guarded and unguarded
// threads: deadlines and "interrupt now" reach it through the countdown and
// the alarm.
//
// Protocol of one allocation on the slow path of a thread with a limited task:
//   1. core::on_event(bytes)                   the block is in the stream;
//   2. task_refuses(bytes, kind, false, from)  before the block exists:
//                                              exact allocation limits,
//                                              tokens, a task already
//                                              interrupted; when nothing
//                                              but the deadline fired (a
//                                              slice of a shared budget ran
//                                              out), task_ops::refill first;
//   3. the block is allocated; its samples are dispatched (the engine's
//      subscriber charges them, and may trip a memory or global limit);
//   4. task_refuses(bytes, kind, true, from)   only if it was sampled:
//                                              refuse it if a limit tripped
//                                              in step 3.
// A refusal has already taken the block out of the stream (refund_event)
// and, for operator new (throwing or not), marked the refusal: the hook frees
// what it allocated and returns null; operator new then sees take_refusal()
// and raises (or, nothrow, returns null without calling the new_handler).
// `from` is the entry point's return address: where a limit_reached raised
// by operator new would first arrive, so that the engine can tell whether a
// handler would catch it there (a throw that would reach a noexcept boundary
// is deferred instead). Everything here is noexcept but raise_interruption().
// Layer 2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/sampler.hpp"

namespace memlimits::core {

// ---- installed by the engine ----

// How the entry point that is allocating can report an interruption.
enum class call_kind : std::uint8_t {
  throwing,   // operator new, the adapters: raise limit_reached
  nothrow,    // nothrow operator new: return nullptr
  c_library,  // the malloc family: count only, or fail with ENOMEM (policy)
};

struct task_ops {
  // Decides an allocation of the limited task `task` at step 2 or 4 of the
  // protocol: trips the limits it exceeds, and returns true to refuse it
  // (after refunding it and, for operator new, marking the refusal). Also
  // keeps the task's monitoring counters and its deadline current. Sampling
  // is on; must not allocate through the hooks.
  bool (*refuses)(void* task, std::size_t bytes, call_kind kind, bool after_dispatch,
                  const void* from) noexcept;
  // Step 2 when the event was the deadline alone (no sample, no alarm, no
  // rate change): the cheap case of refuses(), for a task that is not
  // interrupted and whose budgets pay for the block. Takes the new slices,
  // keeps the counters and the deadline current, and returns true (the
  // block goes ahead); returns false when refuses() must decide. Sampling
  // is on; must not allocate through the hooks.
  bool (*refill)(void* task) noexcept;
  // Throws the calling task's interruption (limit_reached).
  void (*raise)();
};

// Installed once, before any thread has a limited task.
void install_task_ops(const task_ops& ops) noexcept;
extern const task_ops* installed_task_ops;

// ---- what the engine does to the calling thread's sampling state ----

// The task whose limits apply to the calling thread's allocations, or null.
MEMLIMITS_ALWAYS_INLINE void set_limited_task(void* task) noexcept {
  this_thread_state().limited_task_ = task;
}
MEMLIMITS_ALWAYS_INLINE void* limited_task() noexcept {
  return this_thread_state().limited_task_;
}

// The slow path runs at the first allocation that takes stream_position()
// above `position` (no_deadline: none). Sampling on.
inline constexpr std::uint64_t no_deadline = UINT64_MAX;
void set_deadline(std::uint64_t position) noexcept;

// Raising an alarm sends its thread's next allocation to the slow path,
// whatever its size. Any thread; async-signal-safe. A handle stays valid
// while its thread lives: whoever hands it out makes sure no raise_alarm()
// of it is in flight when the thread exits.
MEMLIMITS_ALWAYS_INLINE void raise_alarm(alarm* a) noexcept {
  a->level.store(INT64_MAX, std::memory_order_release);
}
MEMLIMITS_ALWAYS_INLINE alarm* this_thread_alarm() noexcept {
  return &this_thread_state().alarm_;
}
MEMLIMITS_ALWAYS_INLINE void force_next_event() noexcept { raise_alarm(this_thread_alarm()); }

// Binomial(samples, keep): the samples kept when each is kept with
// probability `keep` (core/distributions.hpp, thinning), drawn from the
// calling thread's generator. Sampling off (inside a subscriber callback).
std::uint64_t thin(std::uint64_t samples, double keep) noexcept;

// The allocation in progress is refused; operator new raises (step 2 or 4).
MEMLIMITS_ALWAYS_INLINE void mark_refusal() noexcept { this_thread_state().refusal_ = 1; }

// ---- what the hooks ask ----

// Step 2 or 4 above.
MEMLIMITS_ALWAYS_INLINE bool task_refuses(std::size_t bytes, call_kind kind, bool after_dispatch,
                                          const void* from) noexcept {
  thread_state& s = this_thread_state();
  if (s.limited_task_ == nullptr || s.reentry_ > 0) return false;
  if (!after_dispatch && s.deadline_only_ != 0 && installed_task_ops->refill(s.limited_task_)) {
    return false;
  }
  return installed_task_ops->refuses(s.limited_task_, bytes, kind, after_dispatch, from);
}

// After an entry point got null: whether a limit refused the allocation
// (rather than the system allocator); clears the mark.
MEMLIMITS_ALWAYS_INLINE bool take_refusal() noexcept {
  thread_state& s = this_thread_state();
  if (MEMLIMITS_LIKELY(s.refusal_ == 0)) return false;
  s.refusal_ = 0;
  return true;
}

// Throws the calling task's interruption (limit_reached).
[[noreturn]] inline void raise_interruption() {
  installed_task_ops->raise();
  __builtin_unreachable();
}

// For a throwing entry point that got null.
inline void raise_pending() {
  if (take_refusal()) raise_interruption();
}

}  // namespace memlimits::core
