// limits/task_state.cpp — tasks, the context chain, deadlines, and
// switching the task that runs on a thread. Layer 5.
#include "limits/task_state.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include "core/check.hpp"
#include "core/limits_port.hpp"
#include "limits/budget.hpp"
#include "limits/registry.hpp"
#include "limits/token_state.hpp"
#include "platform/platform.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::detail {
namespace {

// A thread's own task. constinit: usable from the hooks before main and
// after the thread's C++ thread_local destructors.
constinit thread_local task_state thread_task MEMLIMITS_TLS_MODEL{};
// The task running on this thread: thread_task, or a fiber's.
constinit thread_local task_state* running_task MEMLIMITS_TLS_MODEL = nullptr;

}  // namespace

constinit std::atomic<std::uint64_t> fork_generation{0};

task_state& own_task() noexcept { return platform::tls_object(thread_task); }

task_state& current_task() noexcept {
  task_state* t = running_task;
  return t != nullptr ? *t : own_task();
}

std::uint64_t task_position(const task_state& t) noexcept {
  return core::stream_position() - t.position_base;
}

void retain(context* c) noexcept { c->references.fetch_add(1, std::memory_order_relaxed); }

void release(context* c) noexcept {
  while (c != nullptr && c->references.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    context* parent = c->parent;
    if (c->token != nullptr) release_token_state(c->token);
    free_watches(c->watchers, &c->owner_watch);
    c->~context();
    platform::system::free(c);
    c = parent;
  }
}

context* push_context(task_state& t, context* c) noexcept {
  t.deferrals = {};  // the boundaries a guard's searches found are its own
  c->parent = t.innermost;
  if (c->parent != nullptr) retain(c->parent);
  push_watch(c->watchers, &c->owner_watch, core::this_thread_alarm());
  c->owner.watch = &c->owner_watch;
  {
    core::spinlock_guard guard(t.lock_);
    t.innermost = c;
    ++t.depth;
  }
  refresh_trips(t);
  update_deadline(t);
  return c;
}

void pop_context(task_state& t, context* c) noexcept {
  MEMLIMITS_CHECK(t.innermost == c, "guards of a task exited out of order");
  MEMLIMITS_CHECK(t.depth > t.inherited, "a child task exited a guard of its parent");
  t.deferrals = {};
  publish(*c, c->owner, task_position(t));
  release_watch(c->owner.token_watch);
  release_watch(c->owner.watch);
  c->owner.token_watch = c->owner.watch = nullptr;
  // The guard's work ends with it: its children, wherever they run, are
  // interrupted at their next allocation.
  if (c->members.fetch_sub(1, std::memory_order_acq_rel) > 1) {
    c->closed.store(true, std::memory_order_seq_cst);
    raise_watchers(c->watchers);
  }
  {
    core::spinlock_guard guard(t.lock_);
    t.innermost = c->parent;
    --t.depth;
  }
  refresh_trips(t);
  update_deadline(t);
  release(c);  // the task's reference
}

void refresh_trips(task_state& t) noexcept {
  std::uint32_t count = 0;
  for (const context* c = t.innermost; c != nullptr; c = c->parent) {
    if (!stopped(*c)) continue;
    if (count++ == 0) t.raise_kind = c->kind;  // the innermost's kind is raised
  }
  t.tripped = count;
}

void trip(task_state& t, context& c, std::uint64_t block, std::int64_t used) noexcept {
  if (!c.tripped.exchange(true, std::memory_order_seq_cst)) {
    c.trip_block.store(block, std::memory_order_relaxed);
    c.trip_used.store(used, std::memory_order_relaxed);
    // Every task under the context is interrupted: the others at their
    // next allocation.
    if (c.members.load(std::memory_order_acquire) > 1) raise_watchers(c.watchers);
  }
  refresh_trips(t);
  // Every allocation of an interrupted task takes the slow path, where it
  // is raised as soon as it is eligible.
  core::force_next_event();
}

void sync_trips(task_state& t) noexcept {
  for (context* c = t.innermost; c != nullptr; c = c->parent) {
    if (c->kind == limit_kind::token && !c->tripped.load(std::memory_order_relaxed) &&
        c->token->flag.load(std::memory_order_seq_cst)) {
      trip(t, *c);
    }
  }
  refresh_trips(t);
}

void update_deadline(task_state& t) noexcept {
  if (&t != &current_task()) return;  // a suspended fiber: set when it resumes
  core::set_limited_task(t.depth > 0 ? &t : nullptr);
  if (core::sampling_is_off()) {
    // Inside a callback the countdown is parked: the next event, outside
    // it, recomputes the deadline.
    if (t.depth > 0) core::force_next_event();
    return;
  }
  std::uint64_t deadline = core::no_deadline;
  bool stopped_meanwhile = false;
  for_each_share(t, [&](const context& c, const share& s, bool) {
    if (!has_budget(c)) return;
    if (stopped(c)) {
      // Another task tripped or closed it since this task last counted
      // its trips (refresh_trips): with its deadline gone, the next
      // allocation must still take the slow path to count it. The flags
      // decide; the alarm that the trip raises is not relied on here.
      stopped_meanwhile = true;
      return;
    }
    // The slow path runs at the first allocation taking the task past its
    // slice (limits/budget.hpp).
    deadline = std::min(deadline, slice_deadline(t, s));
  });
  core::set_deadline(deadline);
  if (t.tripped > 0 || stopped_meanwhile) core::force_next_event();
}

task_state* switch_task(task_state* to) noexcept {
  task_state& from = current_task();
  task_state& next = to != nullptr ? *to : own_task();
  if (&from == &next) return running_task;
  task_state* const previous = running_task;
  // One thread at a time: a task made current here while another thread
  // still has it current would count the same bytes twice, or not at all
  // (a coroutine queued for another thread from inside its own resumption
  // is the usual way to get there). The mark of a task current at fork()
  // on a thread that is gone belongs to an older generation.
  const std::uint64_t mark = fork_generation.load(std::memory_order_relaxed) + 1;
  if (&from != &own_task()) from.current_mark.store(0, std::memory_order_release);
  if (&next != &own_task()) {
    const std::uint64_t was = next.current_mark.exchange(mark, std::memory_order_acq_rel);
    MEMLIMITS_CHECK(was != mark,
                    "a memlimits::task made current on a thread while another thread has it "
                    "current (resume a coroutine's task only after its previous task_scope ended)");
  }
  core::alarm* const alarm = core::this_thread_alarm();
  const std::uint64_t now = core::stream_position();
  from.suspended_position = now - from.position_base;
  for_each_share(from, [&](context& c, share& s, bool) {
    // Monitors see a suspended task's allocations as of its suspension,
    // and a budget shared with other tasks gets its slice back.
    publish(c, s, from.suspended_position);
    if (has_budget(c) && c.members.load(std::memory_order_relaxed) > 1) {
      trim_slice(c, s, from.suspended_position);
    }
    set_watch_alarm(s.watch, nullptr);
    set_watch_alarm(s.token_watch, nullptr);
  });

  running_task = &next == &own_task() ? nullptr : &next;
  next.position_base = now - next.suspended_position;
  const std::thread::id id = std::this_thread::get_id();
  if (std::memcmp(next.thread_id, &id, sizeof id) != 0) {  // the owner is the only writer
    core::spinlock_guard guard(next.lock_);
    std::memcpy(next.thread_id, &id, sizeof id);
  }
  // Neither task in a guard: no token listens, and the deadline is none.
  if (from.depth == 0 && next.depth == 0) return previous;
  for_each_share(next, [&](context&, share& s, bool) {
    set_watch_alarm(s.watch, alarm);
    set_watch_alarm(s.token_watch, alarm);
  });
  // A fiber suspended in a guard across fork() left the child's registry;
  // a child task enters it when first made current.
  if (next.depth > 0 && !next.registered) register_task(next);
  // After listening: a set(), trip or exit from now on raises this
  // thread's alarm.
  sync_trips(next);
  update_deadline(next);
  return previous;
}

bool running_stack(task_state& t, std::uintptr_t* low, std::uintptr_t* high) noexcept {
  task_state* owner = &t;
  if (owner->stack_high == 0) {
    if (owner->kind == task_kind::task) owner = &own_task();  // on the thread's stack, if any
    if (owner->stack_high == 0 && owner == &own_task() &&
        !platform::thread_stack(&owner->stack_low, &owner->stack_high)) {
      owner->stack_low = owner->stack_high = 0;
    }
  }
  *low = owner->stack_low;
  *high = owner->stack_high;
  return *high != 0;
}

std::thread::id task_thread(const task_state& t) noexcept {
  std::thread::id id;
  std::memcpy(&id, t.thread_id, sizeof id);
  return id;
}

}  // namespace memlimits::detail
