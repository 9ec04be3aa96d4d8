// limits/lineage.hpp — child tasks: the guards a task hands to the tasks it
// creates (task(inherit), bind_limits, fiber(inherit, ...)).
//
// A lineage is captured in the creating task, on its thread: it holds a
// reference to the task's innermost context (and so to its whole chain),
// and counts as a member of each context, so that an exact budget is split
// into slices from then on (limits/budget.hpp). A child joins a lineage,
// on any thread, before it first runs: it takes the chain as its inherited
// contexts, a share of each, and watches on them and on their tokens. It
// leaves when it ends: publishes its bytes, gives its slices back, and
// drops its references. Layer 5.
#pragma once

#include <atomic>
#include <cstdint>

#include "limits/task_state.hpp"

namespace memlimits::detail {

struct lineage {
  std::atomic<std::uint32_t> references{1};
  context* innermost = nullptr;  // a reference
  std::uint32_t depth = 0;       // contexts in the chain
  std::uint64_t parent_id = 0;   // the capturing task's id
};

// The calling task's guards (null if it has none). std::bad_alloc without
// memory. Public as detail::capture_lineage (memlimits/task.hpp).
lineage* capture_lineage_of(task_state& t);

// Makes `child`, a task current nowhere and under no guard, a child under
// the lineage. std::bad_alloc without memory (nothing changed).
void join_lineage(task_state& child, lineage& l);

// The end of a child: it leaves its inherited contexts. Precondition: it is
// current nowhere and has exited its own guards.
void leave_lineage(task_state& child) noexcept;

}  // namespace memlimits::detail
