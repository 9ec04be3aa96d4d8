// limits/token.cpp — memlimits::token (its deadlines: limits/timer.cpp) and
// the watches of limits/token_state.hpp.
// Layer 5.
#include <new>

#include "core/limits_port.hpp"
#include "limits/timer.hpp"
#include "limits/token_state.hpp"
#include "memlimits/limits.hpp"
#include "platform/platform.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::detail {
namespace {

// set() calls in progress, process-wide (see token_state.hpp).
constinit std::atomic<std::uint32_t> setters{0};

}  // namespace

token_state* retain_token_state(token_state* s) noexcept {
  s->references.fetch_add(1, std::memory_order_relaxed);
  return s;
}

void release_token_state(token_state* s) noexcept {
  if (s->references.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  for (token_watch* w = s->watches.load(std::memory_order_acquire); w != nullptr;) {
    token_watch* next = w->next;
    w->~token_watch();
    platform::system::free(w);
    w = next;
  }
  s->~token_state();
  platform::system::free(s);
}

token_watch* watch_token(token_state& s) noexcept {
  core::alarm* const alarm = core::this_thread_alarm();
  token_watch* w = s.watches.load(std::memory_order_acquire);
  for (; w != nullptr; w = w->next) {
    bool expected = false;
    if (!w->claimed.load(std::memory_order_relaxed) &&
        w->claimed.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      break;
    }
  }
  if (w == nullptr) {
    void* memory = platform::system::malloc(sizeof(token_watch));
    if (memory == nullptr) return nullptr;
    w = new (memory) token_watch;
    w->claimed.store(true, std::memory_order_relaxed);
    token_watch* head = s.watches.load(std::memory_order_relaxed);
    do {
      w->next = head;
    } while (!s.watches.compare_exchange_weak(head, w, std::memory_order_release,
                                              std::memory_order_relaxed));
  }
  // seq_cst, as set()'s flag store and its reads of the watches: either
  // set() sees this alarm, or the caller's next read of the flag sees it set.
  w->alarm.store(alarm, std::memory_order_seq_cst);
  return w;
}

void unwatch_token(token_watch* w) noexcept {
  w->alarm.store(nullptr, std::memory_order_seq_cst);
  w->claimed.store(false, std::memory_order_release);
}

void wait_for_token_setters() noexcept {
  while (setters.load(std::memory_order_seq_cst) != 0) platform::yield();
}

void reset_token_setters_after_fork() noexcept { setters.store(0, std::memory_order_relaxed); }

namespace {
// Raises the alarm of every thread whose task watches the token.
void raise_alarms(const token_state& s) noexcept {
  for (token_watch* w = s.watches.load(std::memory_order_seq_cst); w != nullptr; w = w->next) {
    if (core::alarm* alarm = w->alarm.load(std::memory_order_seq_cst); alarm != nullptr) {
      core::raise_alarm(alarm);
    }
  }
}
}  // namespace

void set_token_state(token_state& s) noexcept {
  if (s.flag.load(std::memory_order_acquire)) return;  // set once
  setters.fetch_add(1, std::memory_order_seq_cst);
  // Alarms before the flag too: a task that sees is_set() already finds
  // its alarm raised, unless a slow path consumed it in between, which the
  // second round covers (the slow path reads the flag after the alarm).
  raise_alarms(s);
  s.flag.store(true, std::memory_order_seq_cst);
  raise_alarms(s);
  setters.fetch_sub(1, std::memory_order_release);
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
