// limits/raise_point.hpp — whether an interrupted task may raise its
// interruption at a given call site: only where a handler would catch it
// before a noexcept boundary (platform/handler_search.hpp), so that an
// interruption never terminates the process. Layer 5.
#pragma once

#include <cstdint>

#include "limits/task_state.hpp"
#include "memlimits/config.hpp"

namespace memlimits::detail {

// True if limit_reached thrown from the function whose return address is
// `from` would be caught: by the innermost tripped guard, or by a handler
// of the task's own code, before any frame that would call std::terminate.
// The calling task is interrupted; owner thread. Does not allocate through
// the hooks (sampling is off while it works).
bool may_raise_here(task_state& t, const void* from) noexcept;

// Stack walks made by may_raise_here on the calling thread (the deferral
// cache spares the others): for tests and benchmarks.
MEMLIMITS_API std::uint64_t handler_searches_on_this_thread() noexcept;

}  // namespace memlimits::detail
