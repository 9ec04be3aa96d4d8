// memlimits/memlimits.hpp — the umbrella header of the public API.
#pragma once

#include "memlimits/allocator.hpp"
#include "memlimits/config.hpp"
#include "memlimits/limits.hpp"
#include "memlimits/memprof.hpp"
#include "memlimits/task.hpp"
