// memlimits/mask.hpp — masks and resources: whether the current task is
// interrupted (is_interrupted, poll), deferring its interruptions
// (mask, is_masked), and acquiring and releasing a resource without being
// interrupted in either (with_resource). Depends on config.hpp; the
// limit_reached that poll() raises is declared in result.hpp.
#pragma once

#include <functional>
#include <type_traits>

#include "memlimits/config.hpp"

namespace memlimits {

// The current task has a tripped context.
MEMLIMITS_API bool is_interrupted() noexcept;
// Throws limit_reached if the current task is interrupted, not masked, no
// exception is in flight, and a handler would catch it before a noexcept
// boundary; otherwise returns.
MEMLIMITS_API void poll();

// Interruptions of the current task are deferred while one is alive.
class MEMLIMITS_API mask {
 public:
  mask() noexcept;
  ~mask();
  mask(const mask&) = delete;
  mask& operator=(const mask&) = delete;
};
MEMLIMITS_API bool is_masked() noexcept;

namespace detail {

// f(args...) with a mask alive.
template <class F, class... Args>
decltype(auto) invoke_masked(F& f, Args&... args) {
  mask masked;
  return std::invoke(f, args...);
}

// scope(resource...), then release(resource...) masked, once, whether the
// scope returns or throws; returns what the scope returned.
template <class Scope, class Release, class... Resource>
decltype(auto) run_then_release(Scope& scope, Release& release, Resource&... resource) {
  // A handler, not a destructor: an exception from release propagates (in
  // place of the scope's, if the scope threw) instead of terminating.
  auto run = [&]() -> decltype(auto) {
    try {
      return std::invoke(scope, resource...);
    } catch (...) {
      invoke_masked(release, resource...);
      throw;
    }
  };
  using S = std::invoke_result_t<Scope&, Resource&...>;
  if constexpr (std::is_void_v<S>) {
    run();
    invoke_masked(release, resource...);
  } else {
    std::conditional_t<std::is_rvalue_reference_v<S>, std::remove_cvref_t<S>, S> out = run();
    invoke_masked(release, resource...);
    return out;
  }
}

}  // namespace detail

// acquire() and release(resource) run masked; release runs once iff acquire
// returned, whether scope(resource) returns or throws; scope is not masked
// (beyond the caller's own masks). Returns what scope returns (a reference
// as a reference, an rvalue reference as a value). An exception from
// release propagates, in place of the scope's if the scope threw. With a
// void acquire, scope and release take no argument.
template <class Acquire, class Scope, class Release>
decltype(auto) with_resource(Acquire&& acquire, Scope&& scope, Release&& release) {
  if constexpr (std::is_void_v<std::invoke_result_t<Acquire&>>) {
    detail::invoke_masked(acquire);
    return detail::run_then_release(scope, release);
  } else {
    std::invoke_result_t<Acquire&> resource = detail::invoke_masked(acquire);
    return detail::run_then_release(scope, release, resource);
  }
}

}  // namespace memlimits
