// limits/timer.hpp — the one timer thread of the process: it sets tokens at
// their time points (token::set_at, token::set_after), so that deadlines
// need no watchdog written by hand.
//
// The thread starts at the first deadline, sleeps until the earliest one,
// and is joined at exit (a static destructor) without waiting for the
// deadlines still pending. In a child after fork() there is no timer thread:
// pending deadlines are kept, and the thread starts again at the child's
// next deadline or at the entry of a guard on a token
// (resume_timer_after_fork). Layer 5.
#pragma once

#include <chrono>

namespace memlimits::detail {

struct token_state;

// Sets `s` at `when`, from the timer thread (a time point already past: as
// soon as the thread runs); time_point::max(): never. Holds a reference to
// `s` until then. Throws std::bad_alloc, or std::system_error when the
// thread cannot be started (nothing is recorded then).
void set_token_at(token_state& s, std::chrono::steady_clock::time_point when);

// In a child after fork(): starts the timer thread again if deadlines are
// pending. Otherwise (and in every process that has not forked) one load.
void resume_timer_after_fork();

}  // namespace memlimits::detail
