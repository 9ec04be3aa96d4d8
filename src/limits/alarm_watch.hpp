// limits/alarm_watch.hpp — lists of thread alarms that another thread
// raises: the threads that run the tasks watching a token, or working under
// a context (a guard's members: the task that entered it and its children).
//
// raise_watchers() may run on any thread, and in a signal handler: it only
// loads and stores atomics. Raising a thread's alarm sends its next
// allocation to the slow path, where its task finds the token set, or the
// context tripped or closed. Watches are nodes of a push-only list, reused
// once released, freed with the list's owner (the token, the context); a
// watch is claimed when a task joins, and its alarm is set while the task
// is current on a thread. A raise that read a watch's alarm just before it
// was cleared may still store to that alarm: harmless to a live thread (one
// extra slow path), and a thread that exits first waits for the raises in
// flight (wait_for_raisers), so that its TLS outlives the store.
// Layer 5.
#pragma once

#include <atomic>

#include "core/limits_port.hpp"

namespace memlimits::detail {

struct alarm_watch {
  std::atomic<core::alarm*> alarm{nullptr};  // null: its task is current nowhere
  std::atomic<bool> claimed{false};
  alarm_watch* next = nullptr;  // immutable once published
};

struct watch_list {
  std::atomic<alarm_watch*> head{nullptr};
};

// A watch on the list, with `alarm` (null: set later by set_watch_alarm):
// a released node if there is one, else a new one; nullptr without memory
// (its task then sees the event only at its slow paths). After it returns,
// a raise either finds the alarm or happened before: the caller reads the
// flag it watches after claiming.
alarm_watch* claim_watch(watch_list& list, core::alarm* alarm) noexcept;
// Publishes a node the caller owns (a context's first, embedded in it),
// already claimed with `alarm`.
void push_watch(watch_list& list, alarm_watch* node, core::alarm* alarm) noexcept;
void release_watch(alarm_watch* w) noexcept;
// seq_cst: either a raise sees the alarm, or the caller's next read of the
// flag sees it set.
inline void set_watch_alarm(alarm_watch* w, core::alarm* alarm) noexcept {
  if (w != nullptr) w->alarm.store(alarm, std::memory_order_seq_cst);
}

// Raises every alarm on the list. Any thread; async-signal-safe.
void raise_watchers(const watch_list& list) noexcept;

// Frees the list's nodes but `embedded` (when its owner is freed).
void free_watches(watch_list& list, const alarm_watch* embedded) noexcept;

// At thread exit: waits until no raise that may hold this thread's alarm is
// in flight. In a child after fork(): raises of other threads did not
// survive.
void wait_for_raisers() noexcept;
void reset_raisers_after_fork() noexcept;

}  // namespace memlimits::detail
