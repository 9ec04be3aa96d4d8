// limits/lineage.cpp — capturing, joining and leaving a lineage
// (limits/lineage.hpp), and memlimits::detail's lineage handle of
// <memlimits/task.hpp>. Layer 5.
#include "limits/lineage.hpp"

#include <new>

#include "core/check.hpp"
#include "limits/budget.hpp"
#include "limits/registry.hpp"
#include "limits/token_state.hpp"
#include "memlimits/task.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::detail {

lineage* capture_lineage_of(task_state& t) {
  if (t.depth == 0) return nullptr;
  void* memory = platform::system::malloc(sizeof(lineage));
  if (memory == nullptr) throw std::bad_alloc();
  auto* l = new (memory) lineage;
  register_task(t);  // it has an id
  l->innermost = t.innermost;
  retain(l->innermost);
  l->depth = t.depth;
  l->parent_id = t.id;
  const std::uint64_t position = task_position(t);
  for_each_share(t, [&](context& c, share& s, bool) {
    c.members.fetch_add(1, std::memory_order_acq_rel);
    // A task that was alone under an exact budget held all of it.
    if (has_budget(c)) trim_slice(c, s, position);
  });
  update_deadline(t);
  return l;
}

void join_lineage(task_state& child, lineage& l) {
  MEMLIMITS_CHECK(child.depth == 0 && child.innermost == nullptr,
                  "a task joins a lineage only before its first guard");
  void* memory = platform::system::malloc(sizeof(share) * l.depth);
  if (memory == nullptr) throw std::bad_alloc();
  auto* shares = static_cast<share*>(memory);
  const std::uint64_t position = child.suspended_position;
  std::uint32_t i = 0;
  for (context* c = l.innermost; c != nullptr; c = c->parent, ++i) {
    share* s = new (&shares[i]) share;
    s->start = s->published = s->slice_end = position;  // its first allocation takes a slice
    c->members.fetch_add(1, std::memory_order_acq_rel);
    // Alarms set when the child is made current (switch_task).
    s->watch = claim_watch(c->watchers, nullptr);
    if (c->token != nullptr) s->token_watch = claim_watch(c->token->watchers, nullptr);
  }
  retain(l.innermost);
  core::spinlock_guard guard(child.lock_);
  child.innermost = l.innermost;
  child.depth = child.inherited = l.depth;
  child.inherited_shares = shares;
  child.parent_id = l.parent_id;
}

void leave_lineage(task_state& child) noexcept {
  if (child.inherited == 0) return;
  MEMLIMITS_CHECK(child.depth == child.inherited, "a child task ended with an active guard");
  const std::uint64_t position = child.suspended_position;
  for_each_share(child, [&](context& c, share& s, bool) {
    publish(c, s, position);
    if (has_budget(c)) trim_slice(c, s, position);
    release_watch(s.watch);
    release_watch(s.token_watch);
    c.members.fetch_sub(1, std::memory_order_acq_rel);
  });
  context* const head = child.innermost;
  share* const shares = child.inherited_shares;
  {
    core::spinlock_guard guard(child.lock_);
    child.innermost = nullptr;
    child.depth = child.inherited = 0;
    child.inherited_shares = nullptr;
  }
  platform::system::free(shares);  // trivially destructible
  release(head);
}

lineage* capture_lineage() { return capture_lineage_of(current_task()); }

lineage* retain_lineage(lineage* l) noexcept {
  if (l != nullptr) l->references.fetch_add(1, std::memory_order_relaxed);
  return l;
}

void release_lineage(lineage* l) noexcept {
  if (l == nullptr || l->references.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  for (context* c = l->innermost; c != nullptr; c = c->parent) {
    c->members.fetch_sub(1, std::memory_order_acq_rel);
  }
  release(l->innermost);
  l->~lineage();
  platform::system::free(l);
}

}  // namespace memlimits::detail
