// memlimits/token.hpp — memlimits::token, the cancellation flag that
// limit_with_token (guards.hpp) runs a task under: setting it interrupts the
// task. Depends on config.hpp.
#pragma once

#include "memlimits/config.hpp"

namespace memlimits {

namespace detail {
class guard_scope;
struct token_state;
}  // namespace detail

// A cancellation flag. Copies share one flag; set once, never unset.
class MEMLIMITS_API token {
 public:
  token();  // std::bad_alloc without memory
  token(const token& other) noexcept;
  token& operator=(const token& other) noexcept;
  ~token();

  void set() const noexcept;  // any thread; async-signal-safe
  bool is_set() const noexcept;

 private:
  friend class detail::guard_scope;
  detail::token_state* state_;
};

}  // namespace memlimits
