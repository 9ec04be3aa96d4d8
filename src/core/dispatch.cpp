// core/dispatch.cpp — the subscriber table, the base accounting and the
// dispatch of samples and frees (protocol in core/subscribers.hpp). Layer 2.
#include <atomic>
#include <cmath>
#include <exception>

#include "core/check.hpp"
#include "core/distributions.hpp"
#include "core/limits_port.hpp"
#include "core/spinlock.hpp"
#include "core/subscribers.hpp"
#include "memlimits/sampling_rate.hpp"

namespace memlimits::core {
namespace {

constexpr int slot_free = 0;
constexpr int slot_active = 1;
constexpr int slot_draining = 2;

struct slot {
  std::atomic<int> state{slot_free};
  std::atomic<std::uint32_t> in_flight{0};
  std::atomic<std::uint32_t> generation{0};
  // Written only while the slot is free, under table_lock; published by the
  // release store of state, read only while in flight.
  subscriber_ops ops{};
  std::atomic<double> rate{0.0};  // may change while active (set_subscriber_rate)
  std::size_t depth = 0;
};

constinit slot slots[max_subscribers];
constinit spinlock table_lock;
std::uint32_t generations = 0;                 // under table_lock
constinit std::atomic<double> base{default_sampling_rate};
std::atomic<std::size_t> capture_depth{0};    // largest depth of an active slot
std::atomic<std::int64_t> live_estimate{0};

void fork_prepare() { table_lock.lock(); }
void fork_parent() { table_lock.unlock(); }
void fork_child() {
  table_lock.reset_after_fork();
  // Callbacks in flight were on threads that do not exist in the child.
  for (slot& s : slots) s.in_flight.store(0, std::memory_order_relaxed);
}
constinit platform::fork_handlers fork_hooks{&fork_prepare, &fork_parent, &fork_child};

// Under table_lock: the sampling rate is the largest rate anyone asks for.
void update_rate() noexcept {
  double rate = base.load(std::memory_order_relaxed);
  std::size_t depth = 0;
  for (const slot& s : slots) {
    if (s.state.load(std::memory_order_relaxed) != slot_active) continue;
    const double wanted = s.rate.load(std::memory_order_relaxed);
    if (wanted > rate) rate = wanted;
    if (s.depth > depth) depth = s.depth;
  }
  capture_depth.store(depth, std::memory_order_relaxed);
  set_sampling_rate(rate);
}

// Samples kept at rate `rate` out of n drawn at `thread_rate`.
std::uint64_t thin_to(std::uint64_t n, double rate, double thread_rate) noexcept {
  return rate >= thread_rate ? n : thin(n, rate / thread_rate);
}

}  // namespace

int subscribe(const subscriber_ops& ops, double rate, std::size_t callstack_depth) noexcept {
  platform::register_fork_handlers(fork_hooks);
  spinlock_guard guard(table_lock);
  for (int i = 0; i < max_subscribers; ++i) {
    slot& s = slots[i];
    if (s.state.load(std::memory_order_relaxed) != slot_free) continue;
    s.ops = ops;
    s.rate.store(rate, std::memory_order_relaxed);
    s.depth = callstack_depth;
    s.generation.store(++generations, std::memory_order_relaxed);
    s.state.store(slot_active, std::memory_order_seq_cst);
    update_rate();
    return i;
  }
  return -1;
}

void unsubscribe(int index) noexcept {
  MEMLIMITS_CHECK(index >= 0 && index < max_subscribers, "bad subscriber slot");
  MEMLIMITS_CHECK(!sampling_is_off(), "unsubscribe from inside a sampling callback");
  slot& s = slots[index];
  {
    spinlock_guard guard(table_lock);
    s.state.store(slot_draining, std::memory_order_seq_cst);
    update_rate();
  }
  while (s.in_flight.load(std::memory_order_seq_cst) != 0) platform::yield();
  spinlock_guard guard(table_lock);
  s.ops = {};
  s.state.store(slot_free, std::memory_order_release);
}

void set_subscriber_rate(int index, double rate) noexcept {
  MEMLIMITS_CHECK(index >= 0 && index < max_subscribers, "bad subscriber slot");
  MEMLIMITS_CHECK(is_valid_sampling_rate(rate), "subscriber rate outside (0, 1]");
  spinlock_guard guard(table_lock);
  slots[index].rate.store(rate, std::memory_order_relaxed);
  update_rate();
}

bool dispatch_alloc(const sampled_block& block, void* caller, block_samples& out) noexcept {
  sampling_off off;
  const double thread_rate = core::thread_rate();
  out.slots = 0;

  const double base_rate = base.load(std::memory_order_relaxed);
  const std::uint64_t base_samples = thin_to(block.n_samples, base_rate, thread_rate);
  // Each sample stands for 1/rate words.
  out.weight_bytes =
      sample_weight_bytes(base_samples, base_rate);
  if (out.weight_bytes != 0) live_estimate.fetch_add(out.weight_bytes, std::memory_order_relaxed);

  void* frames[max_callstack_depth];
  std::size_t frame_count = 0;
  bool captured = false;
  for (int i = 0; i < max_subscribers; ++i) {
    slot& s = slots[i];
    if (s.state.load(std::memory_order_relaxed) != slot_active) continue;
    s.in_flight.fetch_add(1, std::memory_order_seq_cst);
    if (s.state.load(std::memory_order_seq_cst) == slot_active) {
      const std::uint64_t n =
          thin_to(block.n_samples, s.rate.load(std::memory_order_relaxed), thread_rate);
      if (n > 0) {
        if (!captured && s.depth > 0) {
          std::size_t depth = capture_depth.load(std::memory_order_relaxed);
          if (depth < s.depth) depth = s.depth;
          frame_count = platform::capture_callstack(frames, depth, caller);
          captured = true;
        }
        sampled_block mine = block;
        mine.n_samples = n;
        mine.callstack = {frames, frame_count < s.depth ? frame_count : s.depth};
        void* cookie = nullptr;
        try {
          cookie = s.ops.on_alloc(s.ops.context, mine);
        } catch (...) {
          cookie = nullptr;  // documented: a throwing tracker declines the block
        }
        if (cookie != nullptr) {
          out.cookie[i] = cookie;
          out.generation[i] = s.generation.load(std::memory_order_relaxed);
          out.slots |= 1u << i;
        }
      }
    }
    s.in_flight.fetch_sub(1, std::memory_order_release);
  }
  return out.slots != 0 || out.weight_bytes != 0;
}

void dispatch_free(const block_samples& samples) noexcept {
  if (samples.weight_bytes != 0) {
    live_estimate.fetch_sub(samples.weight_bytes, std::memory_order_relaxed);
  }
  if (samples.slots == 0) return;
  sampling_off off;
  for (int i = 0; i < max_subscribers; ++i) {
    if ((samples.slots & (1u << i)) == 0) continue;
    slot& s = slots[i];
    s.in_flight.fetch_add(1, std::memory_order_seq_cst);
    if (s.state.load(std::memory_order_seq_cst) == slot_active &&
        s.generation.load(std::memory_order_relaxed) == samples.generation[i]) {
      s.ops.on_free(s.ops.context, samples.cookie[i]);
    }
    s.in_flight.fetch_sub(1, std::memory_order_release);
  }
}

double base_rate() noexcept { return base.load(std::memory_order_relaxed); }

void set_base_rate(double rate) noexcept {
  MEMLIMITS_CHECK(is_valid_sampling_rate(rate), "base rate outside (0, 1]");
  spinlock_guard guard(table_lock);
  base.store(rate, std::memory_order_relaxed);
  update_rate();
}

std::int64_t live_heap_estimate() noexcept {
  return live_estimate.load(std::memory_order_relaxed);
}

}  // namespace memlimits::core
