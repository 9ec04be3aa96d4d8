// limits/token.cpp — memlimits::token and its shared state (its deadlines:
// limits/timer.cpp; its watchers: limits/alarm_watch.cpp).
// Layer 5.
#include <new>

#include "core/limits_port.hpp"
#include "limits/timer.hpp"
#include "limits/token_state.hpp"
#include "memlimits/limits.hpp"
#include "platform/platform.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::detail {

token_state* retain_token_state(token_state* s) noexcept {
  s->references.fetch_add(1, std::memory_order_relaxed);
  return s;
}

void release_token_state(token_state* s) noexcept {
  if (s->references.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  free_watches(s->watchers, nullptr);
  s->~token_state();
  platform::system::free(s);
}

void set_token_state(token_state& s) noexcept {
  if (s.flag.load(std::memory_order_acquire)) return;  // set once
  // Alarms before the flag too: a task that sees is_set() already finds
  // its alarm raised, unless a slow path consumed it in between, which the
  // second round covers (the slow path reads the flag after the alarm).
  raise_watchers(s.watchers);
  s.flag.store(true, std::memory_order_seq_cst);
  raise_watchers(s.watchers);
}

}  // namespace memlimits::detail

namespace memlimits {

token::token() {
  void* memory = platform::system::malloc(sizeof(detail::token_state));
  if (memory == nullptr) throw std::bad_alloc();
  state_ = new (memory) detail::token_state;
}

token::token(const token& other) noexcept : state_(detail::retain_token_state(other.state_)) {}

token& token::operator=(const token& other) noexcept {
  detail::token_state* old = state_;
  state_ = detail::retain_token_state(other.state_);
  detail::release_token_state(old);
  return *this;
}

token::~token() { detail::release_token_state(state_); }

void token::set() const noexcept { detail::set_token_state(*state_); }

void token::set_at(std::chrono::steady_clock::time_point when) const {
  if (when <= std::chrono::steady_clock::now()) return set();
  detail::set_token_at(*state_, when);
}

bool token::is_set() const noexcept { return state_->flag.load(std::memory_order_acquire); }

}  // namespace memlimits
