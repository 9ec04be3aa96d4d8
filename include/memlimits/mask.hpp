// memlimits/mask.hpp — masks and resources: whether the current task is
// interrupted (is_interrupted, poll), deferring its interruptions
// (mask, is_masked), and acquiring and releasing a resource without being
// interrupted in either (with_resource). Depends on config.hpp.
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

// acquire() and release(resource) run masked; release runs iff acquire
// returned, whether scope(resource) returns or throws; scope is not masked
// (beyond the caller's own masks). With a void acquire, scope and release
// take no argument.
template <class Acquire, class Scope, class Release>
decltype(auto) with_resource(Acquire&& acquire, Scope&& scope, Release&& release) {
  using R = std::invoke_result_t<Acquire&>;
  if constexpr (std::is_void_v<R>) {
    {
      mask masked;
      std::invoke(acquire);
    }
    auto finish = [&] {
      mask masked;
      std::invoke(release);
    };
    using S = std::invoke_result_t<Scope&>;
    try {
      if constexpr (std::is_void_v<S>) {
        std::invoke(scope);
        finish();
      } else {
        std::conditional_t<std::is_rvalue_reference_v<S>, std::remove_cvref_t<S>, S> out =
            std::invoke(scope);
        finish();
        return out;
      }
    } catch (...) {
      finish();
      throw;
    }
  } else {
    auto acquired = [&]() -> R {
      mask masked;
      return std::invoke(acquire);
    };
    R resource = acquired();
    auto finish = [&] {
      mask masked;
      std::invoke(release, resource);
    };
    using S = std::invoke_result_t<Scope&, std::remove_reference_t<R>&>;
    try {
      if constexpr (std::is_void_v<S>) {
        std::invoke(scope, resource);
        finish();
      } else {
        std::conditional_t<std::is_rvalue_reference_v<S>, std::remove_cvref_t<S>, S> out =
            std::invoke(scope, resource);
        finish();
        return out;
      }
    } catch (...) {
      finish();
      throw;
    }
  }
}

}  // namespace memlimits
