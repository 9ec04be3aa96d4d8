// limits/task.cpp — tasks, the context chain, deadlines, the registry of
// tasks (tasks(), thread exit, fork). Layer 5.
#include "limits/task.hpp"

#include <cstring>
#include <new>

#include "core/check.hpp"
#include "core/sampler.hpp"
#include "core/subscribers.hpp"
#include "limits/global_memory.hpp"
#include "limits/token_state.hpp"
#include "platform/platform.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::detail {
namespace {

// A thread's own task. constinit: usable from the hooks before main and
// after the thread's C++ thread_local destructors.
constinit thread_local task thread_task MEMLIMITS_TLS_MODEL{};
// The task running on this thread: thread_task, or a fiber's.
constinit thread_local task* running_task MEMLIMITS_TLS_MODEL = nullptr;

// The calling thread's own task. Sanitizer builds route the address through
// a register: GCC 12's UBSan folds the null check of an initial-exec TLS
// reference to "null" (see core::this_thread_state()).
task& own_task() noexcept {
  task* t = &thread_task;
#if defined(MEMLIMITS_SANITIZED)
  asm("" : "+r"(t));
#endif
  return *t;
}

constinit core::spinlock registry_lock;
task* registry_head = nullptr;  // under registry_lock
bool fork_handlers_registered = false;  // under registry_lock

void fork_prepare() { registry_lock.lock(); }
void fork_parent() { registry_lock.unlock(); }
void fork_child() {
  registry_lock.reset_after_fork();
  reset_token_setters_after_fork();
  // Only the forking thread exists in the child. The other tasks' memory is
  // still mapped: mark them unregistered, so that a fiber's task destroyed
  // in the child does not unlink itself from a list it is no longer in.
  task* self = &own_task();
  for (task* t = registry_head; t != nullptr;) {
    task* const next = t->next;
    if (t != self) {
      t->prev = t->next = nullptr;
      t->registered = false;
    }
    t = next;
  }
  registry_head = nullptr;
  if (self->registered) {
    self->prev = self->next = nullptr;
    self->lock_.reset_after_fork();
    registry_head = self;
  }
}

void unlink(task& t) noexcept {
  if (t.prev != nullptr) t.prev->next = t.next; else registry_head = t.next;
  if (t.next != nullptr) t.next->prev = t.prev;
  t.prev = t.next = nullptr;
  t.registered = false;
}

// At thread exit: contexts still active (a thread ended by pthread_exit
// from C code, say) are exited, and the task leaves the registry.
void on_thread_exit(void* arg) {
  task& t = *static_cast<task*>(arg);
  while (t.innermost != nullptr) pop_context(t, t.innermost);
  {
    core::spinlock_guard guard(registry_lock);
    if (t.registered) unlink(t);
  }
  // A token's set() may still be writing to this thread's alarm.
  wait_for_token_setters();
  core::this_thread_state().task_ = nullptr;
}

// The innermost tripped context's kind is the one raised.
void update_raise_kind(task& t) noexcept {
  for (context* c = t.innermost; c != nullptr; c = c->parent) {
    if (c->tripped.load(std::memory_order_relaxed)) {
      t.raise_kind = c->kind;
      return;
    }
  }
}

}  // namespace

task& current_task() noexcept {
  task* t = running_task;
  return t != nullptr ? *t : own_task();
}

std::uint64_t task_position(const task& t) noexcept {
  return core::stream_position() - t.position_base;
}

void retain(context* c) noexcept { c->references.fetch_add(1, std::memory_order_relaxed); }

void release(context* c) noexcept {
  while (c != nullptr && c->references.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    context* parent = c->parent;
    if (c->token != nullptr) release_token_state(c->token);
    c->~context();
    platform::system::free(c);
    c = parent;
  }
}

context* push_context(task& t, context* c) noexcept {
  t.deferrals = {};  // the boundaries a guard's searches found are its own
  c->parent = t.innermost;
  if (c->parent != nullptr) retain(c->parent);
  {
    core::spinlock_guard guard(t.lock_);
    t.innermost = c;
    ++t.depth;
  }
  if (c->tripped.load(std::memory_order_relaxed)) {
    ++t.tripped;
    update_raise_kind(t);
  }
  update_deadline(t);
  return c;
}

void pop_context(task& t, context* c) noexcept {
  MEMLIMITS_CHECK(t.innermost == c, "guards of a task exited out of order");
  t.deferrals = {};
  if (c->watch != nullptr) {
    unwatch_token(c->watch);
    c->watch = nullptr;
  }
  {
    core::spinlock_guard guard(t.lock_);
    t.innermost = c->parent;
    --t.depth;
  }
  if (c->tripped.load(std::memory_order_relaxed)) {
    --t.tripped;
    update_raise_kind(t);
  }
  update_deadline(t);
  release(c);  // the task's reference
}

void trip(task& t, context& c) noexcept {
  if (c.tripped.exchange(true, std::memory_order_relaxed)) return;
  ++t.tripped;
  update_raise_kind(t);
  // Every allocation of an interrupted task takes the slow path, where it
  // is raised as soon as it is eligible.
  core::force_next_event();
}

void trip_set_tokens(task& t) noexcept {
  for (context* c = t.innermost; c != nullptr; c = c->parent) {
    if (c->kind == limit_kind::token && !c->tripped.load(std::memory_order_relaxed) &&
        c->token->flag.load(std::memory_order_seq_cst)) {
      trip(t, *c);
    }
  }
}

void update_deadline(task& t) noexcept {
  core::thread_state& thread = core::this_thread_state();
  if (&t != &current_task()) return;  // a suspended fiber: set when it resumes
  thread.task_ = t.depth > 0 ? &t : nullptr;
  if (thread.reentry_ > 0) {
    // Inside a callback the countdown is parked: the next event, outside
    // it, recomputes the deadline.
    if (t.depth > 0) core::force_next_event();
    return;
  }
  std::uint64_t deadline = core::no_deadline;
  for (const context* c = t.innermost; c != nullptr; c = c->parent) {
    if (c->kind != limit_kind::allocations || c->sampled ||
        c->tripped.load(std::memory_order_relaxed)) {
      continue;
    }
    // Trips at the first allocation taking the task above start + limit.
    const std::uint64_t at = t.position_base + c->start_position + static_cast<std::uint64_t>(c->limit);
    if (at < deadline) deadline = at;
  }
  core::set_deadline(deadline);
  if (t.tripped > 0) core::force_next_event();
}

void unregister_task(task& t) noexcept {
  core::spinlock_guard guard(registry_lock);
  if (t.registered) unlink(t);
}

void register_task(task& t) noexcept {
  if (t.registered) return;
  const std::thread::id id = std::this_thread::get_id();
  static_assert(sizeof id <= sizeof t.thread_id);
  std::memcpy(t.thread_id, &id, sizeof id);
  {
    core::spinlock_guard guard(registry_lock);
    if (!fork_handlers_registered) {
      fork_handlers_registered = true;
      platform::register_fork_handlers(&fork_prepare, &fork_parent, &fork_child);
    }
    t.prev = nullptr;
    t.next = registry_head;
    if (registry_head != nullptr) registry_head->prev = &t;
    registry_head = &t;
    t.registered = true;
  }
  if (&t == &own_task()) platform::on_thread_exit(&on_thread_exit, &t);
}

task* switch_task(task* to) noexcept {
  task& from = current_task();
  task& next = to != nullptr ? *to : own_task();
  if (&from == &next) return running_task;
  task* const previous = running_task;
  std::atomic<std::int64_t>* alarm = &core::this_thread_state().alarm_;
  const std::uint64_t now = core::stream_position();
  from.suspended_position = now - from.position_base;
  for (context* c = from.innermost; c != nullptr; c = c->parent) {
    // Monitors see a suspended task's allocations as of its suspension.
    c->allocated.store(from.suspended_position - c->start_position, std::memory_order_relaxed);
    if (c->watch != nullptr) c->watch->alarm.store(nullptr, std::memory_order_seq_cst);
  }

  running_task = &next == &own_task() ? nullptr : &next;
  next.position_base = now - next.suspended_position;
  const std::thread::id id = std::this_thread::get_id();
  if (std::memcmp(next.thread_id, &id, sizeof id) != 0) {  // the owner is the only writer
    core::spinlock_guard guard(next.lock_);
    std::memcpy(next.thread_id, &id, sizeof id);
  }
  // Neither task in a guard: no token listens, and the deadline is none.
  if (from.depth == 0 && next.depth == 0) return previous;
  for (context* c = next.innermost; c != nullptr; c = c->parent) {
    if (c->watch != nullptr) c->watch->alarm.store(alarm, std::memory_order_seq_cst);
  }
  // A fiber suspended in a guard across fork() left the child's registry.
  if (next.depth > 0 && !next.registered) register_task(next);
  // After listening: a set() from now on raises this thread's alarm.
  trip_set_tokens(next);
  if (next.depth == 0) core::this_thread_state().task_ = nullptr;
  update_deadline(next);
  return previous;
}

bool running_stack(task& t, std::uintptr_t* low, std::uintptr_t* high) noexcept {
  task* owner = &t;
  if (owner->stack_high == 0) {
    if (owner->fiber) owner = &own_task();  // a memlimits::task: on the thread's stack, if any
    if (owner->stack_high == 0 && owner == &own_task() &&
        !platform::thread_stack(&owner->stack_low, &owner->stack_high)) {
      owner->stack_low = owner->stack_high = 0;
    }
  }
  *low = owner->stack_low;
  *high = owner->stack_high;
  return *high != 0;
}

std::thread::id task_thread(const task& t) noexcept {
  std::thread::id id;
  std::memcpy(&id, t.thread_id, sizeof id);
  return id;
}

}  // namespace memlimits::detail

namespace memlimits {

std::vector<task_info> tasks() {
  // Read the global usage before taking any lock: it may read a file.
  const auto global_used = static_cast<std::int64_t>(detail::global_usage_for_monitoring());
  const std::int64_t global_limit = global_memory_limit();
  std::vector<task_info> out;
  // The vector grows under the registry lock; with sampling off, its
  // allocations never reach the limits engine (which takes no lock of ours
  // either, but a guarded caller must not be interrupted while holding it).
  core::sampling_off off;
  core::spinlock_guard registry(detail::registry_lock);
  for (detail::task* t = detail::registry_head; t != nullptr; t = t->next) {
    // A task's thread id changes when it moves: read under its lock.
    core::spinlock_guard guard(t->lock_);
    if (t->depth == 0) continue;
    task_info info{detail::task_thread(*t), t->fiber, {}};  // under t->lock_
    info.contexts.resize(t->depth);
    std::size_t i = t->depth;
    for (const detail::context* c = t->innermost; c != nullptr && i > 0; c = c->parent) {
      context_info& ci = info.contexts[--i];
      ci.kind = c->kind;
      ci.tripped = c->tripped.load(std::memory_order_relaxed);
      switch (c->kind) {
        case limit_kind::allocations:
          ci.limit = c->limit;
          ci.used = static_cast<std::int64_t>(c->allocated.load(std::memory_order_relaxed));
          break;
        case limit_kind::memory:
          ci.limit = c->limit;
          ci.used = c->live_bytes.load(std::memory_order_relaxed);
          break;
        case limit_kind::global_memory:
          ci.limit = global_limit;
          ci.used = global_used;
          break;
        case limit_kind::token:
          ci.limit = -1;
          ci.used = 0;
          break;
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace memlimits
