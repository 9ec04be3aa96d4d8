// memlimits/guard.hpp — several limits at once, and a guard that lives in a
// scope rather than around a function: memlimits::limits, memlimits::guard
// and memlimits::limit.
//
//   using namespace memlimits::literals;
//   using namespace std::chrono_literals;
//   // A lambda under three limits at once; one result, whichever trips:
//   auto r = memlimits::limit({.allocations = 64_MiB, .memory = 16_MiB, .deadline = 250ms},
//                             [&] { return handle(request); });
//
//   // A guard held across suspension points, in a coroutine's frame:
//   memlimits::guard g({.allocations = 64_MiB, .deadline = 250ms});
//   try {
//     co_await read_body();
//     co_await query();
//   } catch (const memlimits::limit_reached&) {
//     if (!g.tripped()) throw;  // an outer guard's: not ours
//   }
//   if (auto error = g.exit()) co_return failure(error->kind());
//
// A guard applies to the task that is current where it is entered (the
// thread, or the memlimits::task a task_scope makes current: resume a
// coroutine inside a task_scope of its own task, and its guard follows it
// from thread to thread), and must be exited while that task is current,
// in the reverse order of entry with the task's other guards (its
// destructor does that, as a local of the coroutine). Once one of its limits
// trips, every allocation point of the task where a handler catches raises
// limit_reached, until the guard exits: a handler that goes on allocating
// before exit() raises again.
//
// Depends on guards.hpp (detail::guard_scope, run_in_scope), result.hpp,
// token.hpp and config.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "memlimits/config.hpp"
#include "memlimits/guards.hpp"
#include "memlimits/result.hpp"
#include "memlimits/token.hpp"

namespace memlimits {

// The limits of one guard; each one left empty does not apply. A guard with
// none only measures (its usage()).
struct limits {
  // Every member has an initializer, so that designated initializers that
  // leave some out ({.allocations = 64_MiB}) draw no -Wmissing-field-initializers.
  std::optional<std::uint64_t> allocations = std::nullopt;  // bytes allocated (limit_allocations)
  std::optional<std::uint64_t> memory = std::nullopt;       // live bytes (limit_memory)
  bool global_memory = false;                               // under set_global_memory_limit()
  std::optional<memlimits::token> token = std::nullopt;     // stopped when it is set
  // Stopped at the first allocation after this time from the guard's entry
  // (a token of the guard's own that memlimits' timer thread sets; it
  // interrupts as limit_kind::token). Zero or negative: at once.
  std::optional<std::chrono::steady_clock::duration> deadline = std::nullopt;
};

class MEMLIMITS_API guard {
 public:
  // Enters the guard in the calling task. std::invalid_argument for a limit
  // above INT64_MAX (naming limits.allocations or limits.memory),
  // std::bad_alloc without memory, std::system_error when a deadline's
  // timer thread cannot start.
  explicit guard(const limits& l);
  ~guard();  // exit()
  guard(const guard&) = delete;
  guard& operator=(const guard&) = delete;

  // Whether one of its limits has tripped (until exit: as of now; after:
  // as of the exit).
  bool tripped() const noexcept;
  // Why its task was stopped, if one of its limits tripped: the kind of the
  // innermost of them that tripped (the order: global memory, token,
  // deadline, memory, allocations, outermost first), with no exception.
  std::optional<interruption> error() const noexcept;
  // What the task used under the guard, with its child tasks' totals
  // (<memlimits/task.hpp>) as they last published them (at their slow
  // paths, and when each stops running on a thread or ends): before exit,
  // as of its last allocation (to be read while its task is current);
  // after, at the exit.
  memlimits::usage usage() const noexcept;
  // Leaves the guard (again: does nothing) and returns error(). Must run
  // while the guard's task is current.
  std::optional<interruption> exit() noexcept;

  // For memlimits::limit (detail::run_in_scope): the frame whose stack
  // pointer is `frame` catches for this guard, so an interruption may be
  // raised wherever the search for a handler reaches it. (A guard held in
  // a scope has no such frame: the search goes to the end of the stack.)
  void set_frame_boundary(detail::catching_frame_t, std::uintptr_t frame) noexcept;

 private:
  // Outermost first: global memory, token, deadline, memory, allocations.
  static constexpr int max_scopes = 5;
  std::optional<detail::guard_scope> scopes_[max_scopes];
  std::optional<memlimits::token> deadline_;  // the deadline's own token
  memlimits::usage used_{};
  std::optional<limit_kind> error_kind_;
  bool exited_ = false;
};

// Runs task() under the limits `l`, all at once: one result, whichever
// limit trips (its kind in the error), the usage with either outcome.
template <class F>
auto limit(const limits& l, F&& task) -> result<std::invoke_result_t<F&>> {
  guard g(l);
  return detail::run_in_scope(g, task);
}

}  // namespace memlimits
