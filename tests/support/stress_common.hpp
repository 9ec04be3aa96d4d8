// tests/support/stress_common.hpp — what the stress tests (tests/stress/)
// share: workload sizes scaled down under sanitizers (which ones:
// support/sanitizers.hpp), a std::terminate handler that names itself before
// aborting, and silencing the one log line of each interrupted guard (the
// stress tests interrupt thousands of guards).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <exception>

#include "platform/platform.hpp"
#include "support/sanitizers.hpp"

namespace memlimits::testing {

// `plain` in normal builds, `instrumented` under ASan or TSan (several times
// slower, and the rate-1 profiles of the torture test multiply that).
constexpr std::size_t scaled(std::size_t plain, std::size_t instrumented) {
  return sanitized ? instrumented : plain;
}

// std::terminate ends the test process with a message that says so: an
// interruption must never get there (docs/design.md, "Rules of
// interruption"). Writes without allocating: terminate may be called out of memory.
[[noreturn]] inline void terminate_handler_for_tests() {
  static constexpr char message[] =
      "memlimits stress test: std::terminate called (an exception escaped a noexcept "
      "function or a destructor during unwinding)\n";
  platform::write_stderr(message, sizeof message - 1);
  std::abort();
}

// Call once before the first guard is interrupted: the "memlimits" logger
// reads SPDLOG_LEVEL when it is created. A level the user set wins.
inline void prepare_stress_process() {
  ::setenv("SPDLOG_LEVEL", "memlimits=off", 0);
  std::set_terminate(&terminate_handler_for_tests);
}

}  // namespace memlimits::testing
