// core/check.hpp — internal invariants. MEMLIMITS_CHECK is always on,
// MEMLIMITS_ASSERT only in debug builds. A failure formats its message into a
// stack buffer and writes it with write(2), so that it is usable inside the
// allocation path: it never allocates. Layer 2 (uses platform/ only).
#pragma once

#include <cstdio>
#include <cstdlib>

#include "platform/platform.hpp"

namespace memlimits::core {

[[noreturn]] inline void check_failed(const char* file, int line, const char* condition,
                                      const char* message) noexcept {
  char buffer[512];
  int length = std::snprintf(buffer, sizeof buffer, "memlimits: %s:%d: check failed: %s: %s\n",
                             file, line, condition, message);
  if (length > 0) {
    platform::write_stderr(buffer, static_cast<std::size_t>(length) < sizeof buffer
                                       ? static_cast<std::size_t>(length)
                                       : sizeof buffer - 1);
  }
  std::abort();
}

}  // namespace memlimits::core

#define MEMLIMITS_CHECK(condition, message)                                         \
  do {                                                                              \
    if (MEMLIMITS_UNLIKELY(!(condition))) {                                         \
      ::memlimits::core::check_failed(__FILE__, __LINE__, #condition, (message));   \
    }                                                                               \
  } while (false)

#if defined(NDEBUG)
#  define MEMLIMITS_ASSERT(condition, message) \
    do {                                       \
    } while (false && (condition))
#else
#  define MEMLIMITS_ASSERT(condition, message) MEMLIMITS_CHECK(condition, message)
#endif
