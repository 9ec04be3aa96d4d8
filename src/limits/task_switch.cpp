// limits/task_switch.cpp — memlimits::task and memlimits::task_scope
// (<memlimits/task.hpp>): tasks of their own, for schedulers, and child
// tasks (limits/lineage.cpp). Layer 5.
#include <new>

#include "core/check.hpp"
#include "limits/lineage.hpp"
#include "limits/registry.hpp"
#include "limits/task_state.hpp"
#include "memlimits/task.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits {

task::task() {
  void* memory = platform::system::malloc(sizeof(detail::task_state));
  if (memory == nullptr) throw std::bad_alloc();
  task_ = new (memory) detail::task_state;
  task_->kind = detail::task_kind::task;
}

// The lineage captured here lives until the delegated constructor returns.
task::task(inherit_t) : task(detail::from_lineage, detail::lineage_ref::capture().get()) {}

task::task(detail::from_lineage_t, detail::lineage* l) : task() {
  if (l != nullptr) detail::join_lineage(*task_, *l);  // if it throws, ~task() runs
}

task::~task() {
  MEMLIMITS_CHECK(&detail::current_task() != task_, "memlimits::task destroyed while current");
  MEMLIMITS_CHECK(task_->depth == task_->inherited,
                  "memlimits::task destroyed with an active guard");
  detail::leave_lineage(*task_);
  detail::unregister_task(*task_);
  task_->~task_state();
  platform::system::free(task_);
}

task_scope::task_scope(task& t) noexcept : previous_(detail::switch_task(t.task_)) {}

task_scope::~task_scope() { detail::switch_task(previous_); }

}  // namespace memlimits
