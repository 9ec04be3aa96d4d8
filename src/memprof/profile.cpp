// memprof/profile.cpp — memprof::profile: a tracker plugged into a subscriber
// slot of the sampling core, at its own rate and callstack depth.
// Layer 6 (uses core/ and platform/).
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/sampler.hpp"
#include "core/subscribers.hpp"
#include "memlimits/memprof.hpp"
#include "platform/platform.hpp"

namespace memlimits::memprof {
namespace {

static_assert(static_cast<int>(source::new_delete) == static_cast<int>(core::block_origin::new_delete) &&
              static_cast<int>(source::malloc) == static_cast<int>(core::block_origin::malloc) &&
              static_cast<int>(source::adapter) == static_cast<int>(core::block_origin::adapter));
static_assert(profile::max_callstack_size <= core::max_callstack_depth);

void* forward_alloc(void* context, const core::sampled_block& block) {
  const allocation a{block.address, block.size, block.n_samples,
                     static_cast<source>(block.origin), block.callstack};
  return static_cast<tracker*>(context)->on_alloc(a);
}

void forward_free(void* context, void* cookie) noexcept {
  static_cast<tracker*>(context)->on_free(cookie);
}

static_assert(profile::max_profiles + 1 <= static_cast<std::size_t>(core::max_subscribers),
              "every profile, and the limits engine, needs a subscriber slot of the core");

// Profiles running now: at most max_profiles, whatever else subscribes.
std::atomic<std::size_t> running_profiles{0};

}  // namespace

profile::profile(tracker& t, double sampling_rate, std::size_t callstack_size)
    : rate_(sampling_rate) {
  core::require_sampling_rate("memlimits::memprof::profile", sampling_rate);
  if (callstack_size > max_callstack_size) {
    throw std::invalid_argument("memlimits::memprof::profile: callstack_size must be at most " +
                                std::to_string(max_callstack_size) + ", got " +
                                std::to_string(callstack_size));
  }
  if (callstack_size > 0) platform::prepare_unwinder();
  std::size_t now = running_profiles.load(std::memory_order_relaxed);
  do {
    if (now >= max_profiles) {
      throw std::length_error("memlimits::memprof::profile: " + std::to_string(max_profiles) +
                              " profiles are already running");
    }
  } while (!running_profiles.compare_exchange_weak(now, now + 1, std::memory_order_relaxed));
  slot_ = core::subscribe({&t, &forward_alloc, &forward_free}, sampling_rate, callstack_size);
  if (slot_ < 0) {
    running_profiles.fetch_sub(1, std::memory_order_relaxed);
    throw std::length_error("memlimits::memprof::profile: " + std::to_string(max_profiles) +
                            " profiles are already running");
  }
}

profile::~profile() { stop(); }

void profile::stop() noexcept {
  if (slot_ < 0) return;
  core::unsubscribe(slot_);
  slot_ = -1;
  running_profiles.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace memlimits::memprof
