// limits/report.cpp — an interrupted guard's log line (limits/report.hpp).
// Layer 5.
#include "limits/report.hpp"

#if MEMLIMITS_WITH_SPDLOG
#  include <spdlog/cfg/env.h>
#  include <spdlog/sinks/stdout_color_sinks.h>
#  include <spdlog/spdlog.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>

#include "core/sampler.hpp"

namespace memlimits::detail {
namespace {

#if MEMLIMITS_WITH_SPDLOG
// The "memlimits" logger of spdlog's registry. A library is quiet unless
// asked: the program's own logger if it registered one under that name;
// else, when SPDLOG_LEVEL is set (e.g. SPDLOG_LEVEL=memlimits=info), a
// colour stderr logger whose level that variable sets; else none.
std::shared_ptr<spdlog::logger> logger() {
  if (auto mine = spdlog::get("memlimits")) return mine;
  const char* levels = std::getenv("SPDLOG_LEVEL");
  if (levels == nullptr || *levels == '\0') return nullptr;
  try {
    auto made = spdlog::stderr_color_mt("memlimits");
    spdlog::cfg::load_env_levels();
    return made;
  } catch (const spdlog::spdlog_ex&) {
    return spdlog::get("memlimits");  // registered meanwhile
  }
}
#endif

}  // namespace

std::string readable_bytes(double bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  std::size_t unit = 0;
  const bool negative = bytes < 0;
  if (negative) bytes = -bytes;
  while (bytes >= 1024 && unit + 1 < std::size(units)) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  // Whole units print without a fraction (16 MiB), others with one (16.2 MiB).
  if (unit == 0 || bytes == static_cast<double>(static_cast<std::uint64_t>(bytes))) {
    std::snprintf(text, sizeof text, "%s%.0f %s", negative ? "-" : "", bytes, units[unit]);
  } else {
    std::snprintf(text, sizeof text, "%s%.1f %s", negative ? "-" : "", bytes, units[unit]);
  }
  return text;
}

std::string describe_trip(const trip_report& r) {
  const auto bytes = [](auto n) { return readable_bytes(static_cast<double>(n)); };
  std::string what;
  switch (r.kind) {
    case limit_kind::allocations:
      what = "allocation limit " + bytes(r.limit) + " reached";
      if (r.block > 0 && r.used >= 0) {
        what += ": an allocation of " + bytes(r.block) + " would have made " + bytes(r.used) +
                " + " + bytes(r.block);
      } else if (r.block > 0) {
        what += " at an allocation of " + bytes(r.block);
      }
      break;
    case limit_kind::memory:
      what = "memory limit " + bytes(r.limit) + " reached";
      if (r.used >= 0) what += ": live memory was estimated at " + bytes(r.used);
      if (r.block > 0) what += (r.used >= 0 ? ", at an allocation of " : " at an allocation of ") + bytes(r.block);
      break;
    case limit_kind::global_memory:
      what = "global memory limit " + bytes(r.limit) + " reached";
      if (r.block > 0) what += " at an allocation of " + bytes(r.block);
      break;
    case limit_kind::token:
      what = r.deadline ? "its deadline passed" : "its token was set";
      break;
  }
  what += "; the task allocated " + bytes(r.allocated) + " in all";
  return what;
}

void log_interrupted(const char* name, const trip_report& report) noexcept {
#if MEMLIMITS_WITH_SPDLOG
  // Outside the task's accounting, and never interrupted.
  core::sampling_off off;
  try {
    auto out = logger();
    if (!out || !out->should_log(spdlog::level::info)) return;
    out->info("{} stopped its task: {}", name, describe_trip(report));
  } catch (...) {
    // Diagnostics never change the outcome.
  }
#else
  // Built without spdlog (MEMLIMITS_WITH_SPDLOG=OFF): nothing to log to.
  (void)name;
  (void)report;
#endif
}

}  // namespace memlimits::detail
