// memlimits/memlimits.hpp — the umbrella header of the public API: every
// public header but fiber.hpp (which needs Boost.Context; link
// memlimits::fiber to use it). limits.hpp includes the headers of the
// limits API (result, guards, token, mask, settings, monitoring, literals).
#pragma once

#include "memlimits/allocator.hpp"
#include "memlimits/config.hpp"
#include "memlimits/limits.hpp"
#include "memlimits/memprof.hpp"
#include "memlimits/task.hpp"
