// memlimits/token.hpp — memlimits::token, the cancellation flag that
// limit_with_token (guards.hpp) runs a task under: setting it interrupts the
// task, now or at a deadline. Depends on config.hpp.
#pragma once

#include <chrono>
#include <stdexcept>

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

  // Deadlines: the token is set at `when`, by memlimits' timer thread (one
  // for the process, started at the first deadline, joined at exit), so
  // that limit_with_token(t, f) stops f at its first allocation after that
  // time. A time already past sets it at once, as set() does;
  // time_point::max() (or a delay beyond the clock's range) never. Several deadlines on one token: the earliest
  // sets it. Copies share the deadlines, as they share the flag. Any thread.
  // Throws std::bad_alloc, or std::system_error when the timer thread
  // cannot be started; std::invalid_argument for a NaN delay.
  void set_at(std::chrono::steady_clock::time_point when) const;
  template <class Rep, class Period>
  void set_after(std::chrono::duration<Rep, Period> delay) const;

 private:
  friend class detail::guard_scope;
  detail::token_state* state_;
};

template <class Rep, class Period>
void token::set_after(std::chrono::duration<Rep, Period> delay) const {
  using clock = std::chrono::steady_clock;
  if (delay != delay) throw std::invalid_argument("memlimits::token::set_after: delay is NaN");
  const clock::time_point now = clock::now();
  // Compared in floating point, so that no duration overflows on the way
  // (the second of margin covers its rounding): a delay beyond the clock's
  // range is "never".
  const std::chrono::duration<double> wanted = delay;
  const std::chrono::duration<double> room = clock::time_point::max() - now;
  if (wanted >= room - std::chrono::seconds(1)) return set_at(clock::time_point::max());
  if (wanted <= std::chrono::duration<double>::zero()) return set_at(now);
  set_at(now + std::chrono::ceil<clock::duration>(delay));
}

}  // namespace memlimits
