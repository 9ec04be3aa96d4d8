// limits/registry.hpp — the registry of tasks: every task that has entered a
// guard, for monitoring (memlimits::tasks()) and for the end of a thread's
// own task at thread exit. Layer 5.
#pragma once

#include "limits/task_state.hpp"

namespace memlimits::detail {

// Registers a task with the registry (once; again after fork() for a task
// that left the child's registry). A thread's own task is also ended at
// thread exit: its contexts still active are exited, and it leaves the
// registry.
void register_task(task_state& t) noexcept;
void unregister_task(task_state& t) noexcept;

}  // namespace memlimits::detail
