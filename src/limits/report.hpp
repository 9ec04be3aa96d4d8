// limits/report.hpp — what a guard says when it ends interrupted: one line,
// in words and sizes a user reads, to the "memlimits" spdlog logger, which
// is off unless the program asks for it. Never on the allocation path.
// Layer 5.
#pragma once

#include <cstdint>
#include <string>

#include "memlimits/limits.hpp"

namespace memlimits::detail {

// A tripped context, as its guard saw it at exit.
struct trip_report {
  limit_kind kind = limit_kind::token;
  std::int64_t limit = -1;     // bytes; the global limit for global_memory
  std::uint64_t block = 0;     // the allocation that tripped it; 0: none recorded
  std::int64_t used = -1;      // allocated bytes before that allocation (allocations), or
                               // estimated live bytes after it (memory); -1: not recorded
  std::uint64_t allocated = 0; // bytes the task allocated under the guard
  bool deadline = false;       // a token context that is the guard's deadline
};

// "16 MiB", "16.2 MiB", "100 B": binary units, one decimal unless whole.
std::string readable_bytes(double bytes);

// "allocation limit 16 MiB reached: an allocation of 4 MiB would have made
// 14.0 MiB + 4 MiB; the task allocated 14.0 MiB in all".
std::string describe_trip(const trip_report& report);

// Logs "<guard> stopped its task: <describe_trip>" at info level, if the
// program registered a spdlog logger named "memlimits" or set SPDLOG_LEVEL
// (a stderr logger is made then); otherwise nothing, and nothing at all in
// a library built without spdlog (MEMLIMITS_WITH_SPDLOG=OFF). Never
// throws; runs with sampling off.
void log_interrupted(const char* guard, const trip_report& report) noexcept;

}  // namespace memlimits::detail
