// limits/settings.cpp — configure() and current_settings(). Layer 5.
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/limits_port.hpp"
#include "limits/engine.hpp"
#include "limits/global_memory.hpp"
#include "memlimits/limits.hpp"

namespace memlimits {
namespace {

std::mutex settings_mutex;
memory_source chosen_source = memory_source::heap;  // under settings_mutex

}  // namespace

void configure(const settings& s) {
  core::require_sampling_rate("memlimits::configure", s.sampling_rate);
  const auto source = static_cast<int>(s.global_source);
  if (source < 0 || source > static_cast<int>(memory_source::cgroup)) {
    throw std::invalid_argument("memlimits::configure: global_source = " + std::to_string(source) +
                                " is not a memory_source");
  }
  const auto policy = static_cast<int>(s.on_malloc);
  if (policy < 0 || policy > static_cast<int>(malloc_policy::fail)) {
    throw std::invalid_argument("memlimits::configure: on_malloc = " + std::to_string(policy) +
                                " is not a malloc_policy");
  }
  std::lock_guard lock(settings_mutex);
  detail::start_engine();
  detail::select_memory_source(s.global_source);  // may throw: nothing changed yet
  chosen_source = s.global_source;
  detail::set_engine_rate(s.sampling_rate);
  detail::engine.on_malloc.store(s.on_malloc, std::memory_order_relaxed);
  detail::engine.sampled_allocation_limits.store(s.sampled_allocation_limits,
                                                 std::memory_order_relaxed);
}

settings current_settings() {
  std::lock_guard lock(settings_mutex);
  settings s;
  s.sampling_rate = detail::engine.rate.load(std::memory_order_relaxed);
  s.global_source = chosen_source;
  s.on_malloc = detail::engine.on_malloc.load(std::memory_order_relaxed);
  s.sampled_allocation_limits = detail::engine.sampled_allocation_limits.load();
  return s;
}

}  // namespace memlimits
