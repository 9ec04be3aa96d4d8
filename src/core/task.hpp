// core/task.hpp — how the hooks consult the limits of the task that runs on
// the calling thread, without depending on the layer that defines them.
//
// The limits engine (limits/, layer 5) installs one `task_ops` table and
// points `thread_state::task_` at the current task while that task has an
// active guard. The hooks (layer 4) call admit() on the slow path of such a
// thread only, so an unguarded thread pays nothing, and the fast path
// (core::consume) is the same for guarded and unguarded threads: deadlines
// and "interrupt now" requests reach it through the countdown and the alarm.
//
// Protocol of one allocation on the slow path of a guarded thread:
//   1. core::on_event(bytes)             the block is in the stream;
//   2. admit(bytes, kind, false, from)   before the block exists: exact
//                                        allocation limits, tokens, a task
//                                        already interrupted;
//   3. the block is allocated; its samples are dispatched (the engine's
//      subscriber charges them, and may trip a memory or global limit);
//   4. admit(bytes, kind, true, from)    only if it was sampled: refuse it if
//                                        a limit tripped in step 3.
// A refusing admit() has already taken the block out of the stream
// (refund_event) and, for operator new (throwing or not), left `raise_` set:
// the hook frees what it allocated and returns null; operator new then sees
// take_refusal() and raises (or, nothrow, returns null without calling the
// new_handler). `from` is the entry point's return address: where a
// limit_reached raised by operator new would first arrive, so that the engine
// can tell whether a handler would catch it there (a throw that would reach a
// noexcept boundary is deferred instead). Everything here is noexcept but
// raise().
// Layer 2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/sampler.hpp"

namespace memlimits::core {

// How the entry point that is allocating can report an interruption.
enum class call_kind : std::uint8_t {
  throwing,   // operator new, the adapters: raise limit_reached
  nothrow,    // nothrow operator new: return nullptr
  c_library,  // the malloc family: count only, or fail with ENOMEM (policy)
};

struct task_ops {
  // True: the allocation is refused (see above). Sampling is on; must not
  // allocate through the hooks.
  bool (*admit)(void* task, std::size_t bytes, call_kind kind, bool after_dispatch,
                const void* from) noexcept;
  // Throws the calling task's interruption (limit_reached).
  void (*raise)();
};

// Installed once, before any thread_state::task_ is set.
void install_task_ops(const task_ops& ops) noexcept;
extern const task_ops* installed_task_ops;

// Step 2 or 4 above, for the hooks.
MEMLIMITS_ALWAYS_INLINE bool task_refuses(std::size_t bytes, call_kind kind, bool after_dispatch,
                                          const void* from) noexcept {
  thread_state& s = this_thread_state();
  if (s.task_ == nullptr || s.reentry_ > 0) return false;
  return installed_task_ops->admit(s.task_, bytes, kind, after_dispatch, from);
}

// After an entry point got null: whether a limit refused the allocation
// (rather than the system allocator); clears the mark.
inline bool take_refusal() noexcept {
  thread_state& s = this_thread_state();
  if (MEMLIMITS_LIKELY(s.raise_ == 0)) return false;
  s.raise_ = 0;
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
