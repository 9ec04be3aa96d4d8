// memlimits/settings.hpp — process-wide settings of the limits: the sampling
// rate, what "global memory" measures, what malloc does in an interrupted
// task, and exact or sampled allocation limits. Depends on config.hpp.
#pragma once

#include "memlimits/config.hpp"
#include "memlimits/sampling_rate.hpp"

namespace memlimits {

enum class memory_source { heap, rss, cgroup };  // what "global memory" measures
enum class malloc_policy { count, fail };        // malloc in an interrupted task

struct settings {
  double sampling_rate = default_sampling_rate;  // samples per 8-byte word, in (0, 1]
  memory_source global_source = memory_source::heap;
  malloc_policy on_malloc = malloc_policy::count;
  bool sampled_allocation_limits = false;        // true: memprof-limits' statistical limits
};
// std::invalid_argument on bad values (nothing changed); std::runtime_error
// when global_source is cgroup and the process has no cgroup memory file.
// Guards already active keep their allocation-limit mode.
MEMLIMITS_API void configure(const settings& s);
MEMLIMITS_API settings current_settings();

}  // namespace memlimits
