// limits/token_state.hpp — the shared flag behind memlimits::token, and how
// a task under limit_with_token is told at once when it is set.
//
// set() may run on any thread, and in a signal handler: it only stores to
// atomics. It raises the flag, then the alarm of every thread that runs a
// task watching the token (each watch holds a pointer to that thread's
// core alarm), so that the task takes its slow path at its next allocation
// and finds the flag there. Watches are nodes of a push-only list, reused
// once released, freed with the token; a watch is claimed at guard entry
// and released at guard exit. A set() that read a watch's alarm pointer
// just before its release may still store to that alarm: harmless to a live
// thread (one extra slow path), and a thread that exits first waits for
// setters in flight (wait_for_token_setters) so its TLS outlives the store.
// Layer 5.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/limits_port.hpp"

namespace memlimits::detail {

struct token_watch {
  std::atomic<core::alarm*> alarm{nullptr};
  std::atomic<bool> claimed{false};
  token_watch* next = nullptr;  // immutable once published
};

struct token_state {
  std::atomic<bool> flag{false};
  std::atomic<std::uint32_t> references{1};
  std::atomic<token_watch*> watches{nullptr};
};

token_state* retain_token_state(token_state* s) noexcept;
void release_token_state(token_state* s) noexcept;

// token::set(): raises the flag and the alarms of the tasks watching it.
// Any thread; async-signal-safe.
void set_token_state(token_state& s) noexcept;

// Registers the calling thread's alarm with the token; nullptr without
// memory (the task then sees the flag only at its slow paths). After it
// returns, a set() either finds the watch or happened before: the caller
// reads the flag after watching.
token_watch* watch_token(token_state& s) noexcept;
void unwatch_token(token_watch* w) noexcept;

void wait_for_token_setters() noexcept;
// In a child after fork(): set() calls of other threads did not survive.
void reset_token_setters_after_fork() noexcept;

}  // namespace memlimits::detail
