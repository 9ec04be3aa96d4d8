// limits/interrupt.cpp — what a task can ask about its own interruption:
// is_interrupted, poll, mask, and the names of the limits. Layer 5.
#include <exception>

#include "core/limits_port.hpp"
#include "limits/raise_point.hpp"
#include "limits/task_state.hpp"
#include "memlimits/limits.hpp"

namespace memlimits {

const char* to_string(limit_kind kind) noexcept {
  switch (kind) {
    case limit_kind::global_memory: return "global_memory";
    case limit_kind::allocations: return "allocations";
    case limit_kind::memory: return "memory";
    case limit_kind::token: return "token";
  }
  return "unknown";
}

const char* limit_reached::what() const noexcept {
  switch (kind_) {
    case limit_kind::global_memory: return "memlimits: global memory limit reached";
    case limit_kind::allocations: return "memlimits: allocation limit reached";
    case limit_kind::memory: return "memlimits: memory limit reached";
    case limit_kind::token: return "memlimits: token set";
  }
  return "memlimits: limit reached";
}

const char* bad_result_access::what() const noexcept {
  return "memlimits: bad result access (the task was interrupted)";
}

namespace {
// A token set, or a trip or exit in another task of its guards, while the
// task does not allocate is seen here too, so that a task that only polls
// can be cancelled.
detail::task_state& checked_task() noexcept {
  detail::task_state& t = detail::current_task();
  detail::sync_trips(t);
  return t;
}
}  // namespace

bool is_interrupted() noexcept { return checked_task().tripped > 0; }

void poll() {
  const void* const from = __builtin_return_address(0);
  detail::task_state& t = checked_task();
  if (t.tripped > 0 && t.masks == 0 && std::uncaught_exceptions() == 0 &&
      detail::may_raise_here(t, from)) {
    // As at an allocation point: building the exception is not the task's.
    core::sampling_off off;
    throw limit_reached(t.raise_kind);
  }
}

mask::mask() noexcept { ++detail::current_task().masks; }

mask::~mask() {
  detail::task_state& t = detail::current_task();
  --t.masks;
  // A deferred interruption is raised at the next allocation point: the
  // task's allocations already take the slow path while it is interrupted.
}

bool is_masked() noexcept { return detail::current_task().masks > 0; }

}  // namespace memlimits
