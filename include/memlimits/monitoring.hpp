// memlimits/monitoring.hpp — monitoring, from any thread: every task that
// has an active guard, with its guards' limits, usage and state. Depends on
// result.hpp (limit_kind) and config.hpp.
#pragma once

#include <cstdint>
#include <thread>
#include <vector>

#include "memlimits/config.hpp"
#include "memlimits/result.hpp"

namespace memlimits {

struct context_info {
  limit_kind kind;
  std::int64_t limit;  // bytes; -1 for token, the global limit for global_memory
  std::int64_t used;   // allocations: bytes (as of the task's last slow path or
                       // suspension);
                       // memory: live estimate; global_memory: global usage; token: 0
  bool tripped;
};
struct task_info {
  std::thread::id thread;              // where the task runs now
  bool fiber;                          // a memlimits::fiber, rather than a thread or a
                                       // memlimits::task
  std::vector<context_info> contexts;  // outermost first
  std::uint64_t id = 0;                // unique while the task lives (never 0)
  std::uint64_t parent = 0;            // the task it inherited its guards from; 0 if none
};
// Every task that has an active guard.
MEMLIMITS_API std::vector<task_info> tasks();

}  // namespace memlimits
