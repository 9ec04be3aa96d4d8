// limits/registry.cpp — the registry of tasks that have entered a guard:
// monitoring (memlimits::tasks()), the end of a thread's own task at thread
// exit, and the registry's state in a child after fork(). Layer 5.
#include "limits/registry.hpp"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "core/limits_port.hpp"
#include "core/spinlock.hpp"
#include "limits/global_memory.hpp"
#include "limits/token_state.hpp"
#include "memlimits/limits.hpp"
#include "platform/platform.hpp"

namespace memlimits::detail {
namespace {

constinit core::spinlock registry_lock;
task_state* registry_head = nullptr;  // under registry_lock

void fork_prepare() { registry_lock.lock(); }
void fork_parent() { registry_lock.unlock(); }
void fork_child() {
  registry_lock.reset_after_fork();
  reset_raisers_after_fork();
  fork_generation.fetch_add(1, std::memory_order_relaxed);
  // Only the forking thread exists in the child. The other tasks' memory is
  // still mapped: mark them unregistered, so that a fiber's task destroyed
  // in the child does not unlink itself from a list it is no longer in.
  task_state* self = &own_task();
  for (task_state* t = registry_head; t != nullptr;) {
    task_state* const next = t->next;
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
constinit platform::fork_handlers fork_hooks{&fork_prepare, &fork_parent, &fork_child};

void unlink(task_state& t) noexcept {
  if (t.prev != nullptr) t.prev->next = t.next; else registry_head = t.next;
  if (t.next != nullptr) t.next->prev = t.prev;
  t.prev = t.next = nullptr;
  t.registered = false;
}

// At thread exit: contexts still active (a thread ended by pthread_exit
// from C code, say) are exited, and the task leaves the registry.
void on_thread_exit(void* arg) {
  task_state& t = *static_cast<task_state*>(arg);
  while (t.innermost != nullptr) pop_context(t, t.innermost);
  {
    core::spinlock_guard guard(registry_lock);
    if (t.registered) unlink(t);
  }
  // A token's set(), or another task's trip, may still be writing to this
  // thread's alarm.
  wait_for_raisers();
  core::set_limited_task(nullptr);
}

}  // namespace

void unregister_task(task_state& t) noexcept {
  core::spinlock_guard guard(registry_lock);
  if (t.registered) unlink(t);
}

void register_task(task_state& t) noexcept {
  if (t.registered) return;
  // Ids are never reused: 2^64 registrations do not happen.
  static constinit std::atomic<std::uint64_t> last_id{0};
  if (t.id == 0) t.id = last_id.fetch_add(1, std::memory_order_relaxed) + 1;
  const std::thread::id id = std::this_thread::get_id();
  static_assert(sizeof id <= sizeof t.thread_id);
  std::memcpy(t.thread_id, &id, sizeof id);
  platform::register_fork_handlers(fork_hooks);
  {
    core::spinlock_guard guard(registry_lock);
    t.prev = nullptr;
    t.next = registry_head;
    if (registry_head != nullptr) registry_head->prev = &t;
    registry_head = &t;
    t.registered = true;
  }
  if (&t == &own_task()) platform::on_thread_exit(&on_thread_exit, &t);
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
  for (detail::task_state* t = detail::registry_head; t != nullptr; t = t->next) {
    // A task's thread id changes when it moves: read under its lock.
    core::spinlock_guard guard(t->lock_);
    if (t->depth == 0) continue;
    task_info info{detail::task_thread(*t), t->kind == detail::task_kind::fiber, {}, t->id,
                   t->parent_id};  // under t->lock_
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
