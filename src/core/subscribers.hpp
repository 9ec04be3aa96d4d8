// core/subscribers.hpp — who receives the samples: the base accounting (an
// unbiased estimate of the process's live heap, at the base rate) and up to
// `max_subscribers` subscribers (profiles, and the limits engine), each at its
// own rate by binomial thinning of the thread's samples (core/sampling.hpp).
//
// Lifetime protocol: a subscriber's callbacks run between an increment and a
// decrement of its slot's in-flight counter, and only while the slot is
// active with the generation the callback was registered under; unsubscribe()
// deactivates the slot, then waits for the counter to drain. Hence once
// unsubscribe() returns no callback of that subscriber runs or will run.
// Layer 2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "memlimits/memprof.hpp"

namespace memlimits::core {

// Eight profiles (memprof::profile::max_profiles) and the limits engine.
inline constexpr int max_subscribers = 9;

struct subscriber_ops {
  void* context;
  // On the allocating thread, sampling off. Non-null: report the free.
  void* (*on_alloc)(void* context, const memprof::allocation& block);
  // On the freeing thread, sampling off.
  void (*on_free)(void* context, void* cookie) noexcept;
};

// Returns the slot, or -1 when all are taken. `rate` in (0, 1].
int subscribe(const subscriber_ops& ops, double rate, std::size_t callstack_depth) noexcept;
// Must not be called from that subscriber's own callbacks.
void unsubscribe(int slot) noexcept;
// Changes an active slot's rate; its blocks keep being reported.
void set_subscriber_rate(int slot, double rate) noexcept;

// What a tracked block carries so that its free can be reported.
struct block_samples {
  std::int64_t weight_bytes;  // bytes it stands for in the live-heap estimate
  std::uint32_t slots;        // bit i: cookie[i] is to be reported to slot i
  std::uint32_t generation[max_subscribers];
  void* cookie[max_subscribers];
};

// Hands a block holding block.n_samples samples, drawn at the calling
// thread's rate, to the base accounting and the subscribers. `caller` is the
// return address of the hook, where callstacks start. Fills `out`; returns
// whether the block's free must be reported (out has something to report).
bool dispatch_alloc(const memprof::allocation& block, void* caller, block_samples& out) noexcept;
// Reports the free of a block that dispatch_alloc() filled `samples` for.
void dispatch_free(const block_samples& samples) noexcept;

// The base rate: the rate of the live-heap estimate (and, later, of limits).
double base_rate() noexcept;
void set_base_rate(double rate) noexcept;

// Unbiased estimate of the bytes live in blocks allocated since the program
// started: sum over live tracked blocks of their weight_bytes.
std::int64_t live_heap_estimate() noexcept;

}  // namespace memlimits::core
