// core/subscribers.hpp — who receives the samples: the base accounting (an
// unbiased estimate of the process's live heap, at the base rate) and up to
// `max_subscribers` subscribers (the limits engine, profiles), each at its
// own rate by binomial thinning of the thread's samples
// (core/distributions.hpp).
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
#include <span>

namespace memlimits::core {

// Slots for the subscribers: the limits engine and the profiles (memprof/
// checks that its maximum number of profiles leaves the engine one).
inline constexpr int max_subscribers = 9;

// The deepest callstack a subscriber may ask for.
inline constexpr std::size_t max_callstack_depth = 256;

// Which entry point allocated a sampled block. If you change it, change
// memprof::source (memprof/profile.cpp checks that they agree).
enum class block_origin : std::uint8_t { new_delete, malloc, adapter };

// A sampled block, as subscribers receive it.
struct sampled_block {
  void* address;
  std::size_t size;                   // bytes requested
  std::uint64_t n_samples;            // >= 1, at the subscriber's rate
  block_origin origin;
  std::span<void* const> callstack;   // innermost frame first; empty unless asked for
};

struct subscriber_ops {
  void* context;
  // On the allocating thread, sampling off. Non-null: report the free.
  void* (*on_alloc)(void* context, const sampled_block& block);
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
bool dispatch_alloc(const sampled_block& block, void* caller, block_samples& out) noexcept;
// Reports the free of a block that dispatch_alloc() filled `samples` for.
void dispatch_free(const block_samples& samples) noexcept;

// The base rate: the rate of the live-heap estimate, which the limits
// engine keeps equal to its own rate (limits/engine.cpp).
double base_rate() noexcept;
void set_base_rate(double rate) noexcept;

// Unbiased estimate of the bytes live in blocks allocated since the program
// started: sum over live tracked blocks of their weight_bytes.
std::int64_t live_heap_estimate() noexcept;

}  // namespace memlimits::core
