// limits/engine.hpp — the limits engine as the sampling core sees it: the
// task_ops the hooks consult (core/limits_port.hpp) and the subscriber that charges
// a task's samples to its contexts and credits their frees. Layer 5.
#pragma once

#include <atomic>
#include <cstdint>

#include "memlimits/limits.hpp"
#include "memlimits/sampling_rate.hpp"

namespace memlimits::detail {

// Installs the task ops and subscribes the engine (once). Throws
// std::runtime_error if the core has no free subscriber slot.
void start_engine();

// The settings in force (limits/settings.cpp writes them).
struct engine_settings {
  std::atomic<double> rate{default_sampling_rate};
  std::atomic<malloc_policy> on_malloc{malloc_policy::count};
  std::atomic<bool> sampled_allocation_limits{false};
};
extern constinit engine_settings engine;

// Changes the engine's sampling rate (and the core's base rate).
void set_engine_rate(double rate) noexcept;

// Samples at which a sampled allocation limit of `limit` bytes trips, at
// `rate` samples per word: K = ceil(l p), l = limit / 8 words.
std::uint64_t sampled_threshold(std::uint64_t limit, double rate) noexcept;
// Live samples at which a memory limit of `limit` bytes trips: the first
// count whose estimate (each sample stands for 1/p words) exceeds the limit,
// K = floor(l p) + 1.
std::uint64_t memory_threshold(std::uint64_t limit, double rate) noexcept;

}  // namespace memlimits::detail
