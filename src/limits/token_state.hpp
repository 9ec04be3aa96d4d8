// limits/token_state.hpp — the shared flag behind memlimits::token, and how
// the tasks under limit_with_token are told at once when it is set.
//
// set() may run on any thread, and in a signal handler: it only stores to
// atomics. It raises the flag, then the alarm of every thread that runs a
// task watching the token (limits/alarm_watch.hpp), so that the task takes
// its slow path at its next allocation and finds the flag there. Each task
// under a token context watches the token: the one that entered the guard
// from its entry, children from their creation; its watch's alarm is set
// while it is current on a thread.
// Layer 5.
#pragma once

#include <atomic>
#include <cstdint>

#include "limits/alarm_watch.hpp"

namespace memlimits::detail {

struct token_state {
  std::atomic<bool> flag{false};
  std::atomic<std::uint32_t> references{1};
  watch_list watchers;
};

token_state* retain_token_state(token_state* s) noexcept;
void release_token_state(token_state* s) noexcept;

// token::set(): raises the flag and the alarms of the tasks watching it.
// Any thread; async-signal-safe.
void set_token_state(token_state& s) noexcept;

}  // namespace memlimits::detail
