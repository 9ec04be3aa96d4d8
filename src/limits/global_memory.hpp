// limits/global_memory.hpp — the process-wide memory limit and its sources:
// the live-heap estimate of the sampling core (heap), the resident set
// (rss, /proc/self/statm) and the process's cgroup (cgroup). Layer 5.
#pragma once

#include <cstdint>

#include "memlimits/limits.hpp"

namespace memlimits::detail {

// Whether the global limit is set and the current usage exceeds it. Called
// at the samples of tasks under limit_global_memory, from the allocation
// path: never allocates; rss and cgroup readings are cached for at most 1 ms.
bool global_limit_exceeded() noexcept;

// The usage as global_memory_usage() reports it, without throwing (0 when
// the cgroup file cannot be read).
std::uint64_t global_usage_for_monitoring() noexcept;

// Selects the source (settings.cpp). Throws std::runtime_error for cgroup
// when the process has no cgroup memory file; nothing changes then.
void select_memory_source(memory_source source);

}  // namespace memlimits::detail
