// memlimits/limits.hpp — the limits API: run a task under an allocation,
// memory, global-memory or token limit, and get its result or the reason it
// was stopped.
//
//   using namespace memlimits::literals;
//   memlimits::result<int> r = memlimits::limit_memory(64_MiB, [] { return work(); });
//   if (!r) log(r.error().kind(), r.usage().memory_bytes);
//
// This header includes the headers of each part, which may also be included
// on their own:
//   result.hpp      limit_kind, limit_reached, interruption, usage, result<T>
//   guards.hpp      limit_allocations, limit_memory, limit_global_memory,
//                   limit_with_token; the global memory limit. How a task is
//                   interrupted is documented there.
//   guard.hpp       limits (several at once, a deadline), limit(limits, f),
//                   and guard, which lives in a scope (a coroutine's frame)
//   token.hpp       token, the flag of limit_with_token
//   mask.hpp        is_interrupted, poll, mask, is_masked, with_resource
//   settings.hpp    settings, configure, current_settings
//   monitoring.hpp  tasks(): every task with an active guard
//   literals.hpp    the _KiB, _MiB and _GiB size literals
#pragma once

#include "memlimits/guard.hpp"
#include "memlimits/guards.hpp"
#include "memlimits/literals.hpp"
#include "memlimits/mask.hpp"
#include "memlimits/monitoring.hpp"
#include "memlimits/result.hpp"
#include "memlimits/settings.hpp"
#include "memlimits/token.hpp"
