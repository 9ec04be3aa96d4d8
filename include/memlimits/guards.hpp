// memlimits/guards.hpp — limit guards: run a task under an allocation,
// memory, global-memory or token limit, and get its result or the reason it
// was stopped; and the process-wide global memory limit.
//
// A task is the calling thread (or the memlimits::fiber it runs in). When a
// limit trips, the task is interrupted: its next eligible allocation point
// (a throwing operator new, memlimits::allocator, memlimits::memory_resource,
// or poll()) raises limit_reached, and so does every later one until the
// tripped guard exits; the guard then returns its error. Interruptions are
// deferred, never lost, while a memlimits::mask is alive, while an exception
// is in flight, inside memlimits' own callbacks, and wherever the throw
// would reach a noexcept boundary (a destructor, a noexcept function) before
// a handler: the allocation then succeeds. nothrow operator new
// returns nullptr instead; malloc only counts, or returns NULL with ENOMEM
// under malloc_policy::fail. Rules and rationale: README.md, "Exception-safe
// interruption".
//
// Units are bytes. Allocations count the bytes requested, each request
// rounded up to a multiple of 8 (the word the sampling core counts in).
//
// Depends on result.hpp (what a guard returns), token.hpp (the token of
// limit_with_token) and config.hpp. Masks and poll() are in mask.hpp,
// settings in settings.hpp, the size literals in literals.hpp.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#if defined(__GLIBCXX__)
#  include <cxxabi.h>  // abi::__forced_unwind
#endif

#include "memlimits/config.hpp"
#include "memlimits/result.hpp"
#include "memlimits/token.hpp"

namespace memlimits {

namespace detail {

struct context;

// The tag of the guards' set_frame_boundary, for run_in_scope only.
inline constexpr struct catching_frame_t {
  explicit catching_frame_t() = default;
} catching_frame{};

// The stack pointer of the calling frame at this call (the callee's CFA):
// for a frame that makes no dynamic allocation on its stack, the same at
// all its calls.
MEMLIMITS_API std::uintptr_t caller_stack_pointer() noexcept;

// One active context of the calling task, from entry to exit: the guard
// of one limit.
class MEMLIMITS_API guard_scope {
 public:
  // Enters a context of the calling task; std::invalid_argument on a bad
  // limit (naming `parameter`), std::bad_alloc without memory for it. The
  // handler search for its interruption stops at the caller's frame, which
  // catches (run_guarded).
  guard_scope(limit_kind kind, std::uint64_t limit, const token* t, const char* parameter);
  // The same for memlimits::guard (`function`, in messages and the log
  // line), the search stopping at `frame_boundary` (a stack pointer; 0:
  // nowhere, the search runs to the end of the stack).
  guard_scope(limit_kind kind, std::uint64_t limit, const token* t, const char* parameter,
              const char* function, std::uintptr_t frame_boundary);
  ~guard_scope();  // exits the context if finish() was not called
  guard_scope(const guard_scope&) = delete;
  guard_scope& operator=(const guard_scope&) = delete;

  limit_kind kind() const noexcept { return kind_; }
  // The handler search for its interruption stops at `frame` (the stack
  // pointer of the frame that catches for the guard; run_in_scope).
  void set_frame_boundary(catching_frame_t, std::uintptr_t frame) noexcept;
  // Whether this guard's own limit has tripped (as of finish(), after it).
  bool tripped() const noexcept;
  // What the task used under it so far: the calling task must be its own.
  memlimits::usage usage() const noexcept;
  // Exits the context (once only); returns what the task used. Logs a
  // tripped exit.
  memlimits::usage finish() noexcept;
  // finish() (once), for run_in_scope: the interruption if the limit
  // tripped.
  std::optional<interruption> exit() noexcept {
    if (!finished_) finish();
    if (!tripped_at_exit_) return std::nullopt;
    return interruption(kind_, nullptr);
  }

 private:
  void enter(const token* t, std::uint64_t limit, const char* parameter,
             std::uintptr_t frame_boundary);

  context* context_;
  limit_kind kind_;
  const char* function_;  // null: the limit_* function of kind_
  const char* parameter_ = nullptr;  // the limit's parameter, for messages ("limits.deadline")
  bool finished_ = false;
  bool tripped_at_exit_ = false;
  memlimits::usage used_{};
};

// Whether the exception in flight (called inside a handler) unwinds a
// stack that is being destroyed: Boost.Context's forced_unwind (destroying
// a suspended fiber or continuation, also under Boost.Coroutine2) or the
// old Boost.Coroutine's. A guard never swallows one, tripped or not: its
// catcher must see it, or the fiber's stack is never released.
MEMLIMITS_API bool stack_unwind_in_flight() noexcept;

template <class F>
using guarded_result = result<std::invoke_result_t<F&>>;

// Runs task() in a guard entered already (guard_scope, memlimits::guard:
// set_frame_boundary, tripped(), exit() -> std::optional<interruption>,
// usage() after exit) and makes its result. This frame catches what the
// task lets escape: the guard's handler search trusts the handlers of the
// frames at or above its stack pointer (this frame, or the one it is
// inlined into, and its callers), as the guard's own.
//
// no_sanitize("undefined"): GCC 12's UBSan reports the binding of the
// caught abi::__forced_unwind reference as a null reference, and aborts
// ("null" alone is not honoured once inlined at -O2). The task's own code,
// even inlined here, keeps its checks: UBSan instruments each function
// before inlining.
template <class Scope, class F>
#if defined(__GNUC__)
__attribute__((no_sanitize("undefined")))
#endif
guarded_result<F> run_in_scope(Scope& guard, F& task) {
  using R = std::invoke_result_t<F&>;
  static_assert(!std::is_rvalue_reference_v<R>, "a guarded task may not return an rvalue reference");
  guard.set_frame_boundary(catching_frame, caller_stack_pointer());
  if (guard.tripped()) {  // a token set before entry: the task does not run
    std::optional<interruption> error = guard.exit();
    return guarded_result<F>(std::move(*error), guard.usage());
  }
  using stored = std::conditional_t<std::is_void_v<R>, bool,
                                    std::conditional_t<std::is_lvalue_reference_v<R>,
                                                       std::remove_reference_t<R>*, R>>;
  std::optional<stored> value;
  std::exception_ptr escaped;
  try {
    if constexpr (std::is_void_v<R>) {
      std::invoke(task);
      value.emplace(true);
    } else if constexpr (std::is_lvalue_reference_v<R>) {
      value.emplace(&std::invoke(task));
    } else {
      value.emplace(std::invoke(task));
    }
#if defined(__GLIBCXX__)
  } catch (abi::__forced_unwind&) {
    throw;  // thread cancellation: never swallowed
#endif
  } catch (...) {
    // The guard decides by its own flag: another limit's interruption, or
    // any other exception, passes through (`throw;` does not allocate).
    // A tripped guard reports whatever escaped it as its interruption,
    // except a fiber's forced unwinding.
    if (!guard.tripped() || stack_unwind_in_flight()) throw;
    escaped = std::current_exception();
  }
  const std::optional<interruption> error = guard.exit();
  const memlimits::usage used = guard.usage();
  if (error.has_value()) return guarded_result<F>(interruption(error->kind(), std::move(escaped)), used);
  if constexpr (std::is_void_v<R>) {
    return guarded_result<F>(std::in_place, used);
  } else if constexpr (std::is_lvalue_reference_v<R>) {
    return guarded_result<F>(std::in_place, used, *value);
  } else {
    return guarded_result<F>(std::in_place, used, std::move(*value));
  }
}

// Runs task() under one limit.
template <class F>
guarded_result<F> run_guarded(limit_kind kind, std::uint64_t limit, const token* t,
                              const char* parameter, F& task) {
  guard_scope guard(kind, limit, t, parameter);
  return run_in_scope(guard, task);
}

}  // namespace detail

// Runs task() under a limit of `limit` bytes allocated (frees ignored). Exact
// by default: the allocation that would take the total above `limit` is the
// one interrupted. settings::sampled_allocation_limits: memprof-limits'
// statistical limit (stats/README.md).
template <class F>
auto limit_allocations(std::uint64_t limit, F&& task) -> result<std::invoke_result_t<F&>> {
  return detail::run_guarded(limit_kind::allocations, limit, nullptr, "limit", task);
}

// Runs task() under a limit of `limit` live bytes: bytes it allocated and
// nobody freed yet, estimated from samples. Frees by any thread, at any time,
// are credited to the task that allocated.
template <class F>
auto limit_memory(std::uint64_t limit, F&& task) -> result<std::invoke_result_t<F&>> {
  return detail::run_guarded(limit_kind::memory, limit, nullptr, "limit", task);
}

// Runs task() under the process-wide limit of set_global_memory_limit(),
// checked at the task's samples.
template <class F>
auto limit_global_memory(F&& task) -> result<std::invoke_result_t<F&>> {
  return detail::run_guarded(limit_kind::global_memory, 0, nullptr, "limit", task);
}

// Runs task() until t.set() is called: the task is interrupted at its next
// allocation after that, or not run if t is already set.
template <class F>
auto limit_with_token(const token& t, F&& task) -> result<std::invoke_result_t<F&>> {
  return detail::run_guarded(limit_kind::token, 0, &t, "token", task);
}

// Negative: no limit (the default).
MEMLIMITS_API void set_global_memory_limit(std::int64_t limit);
MEMLIMITS_API std::int64_t global_memory_limit() noexcept;
// The value the global limit is compared with, from settings::global_source.
MEMLIMITS_API std::uint64_t global_memory_usage();

}  // namespace memlimits
