// tests/support/sanitizers.hpp — which sanitizer the test binary is built
// with (the library's MEMLIMITS_SANITIZED is private to it), for tests that
// scale their work down or skip what a sanitizer cannot run.
#pragma once

// GCC defines __SANITIZE_ADDRESS__ and __SANITIZE_THREAD__; Clang answers
// __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#  define MEMLIMITS_TEST_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define MEMLIMITS_TEST_ASAN 1
#  endif
#endif
#if defined(__SANITIZE_THREAD__)
#  define MEMLIMITS_TEST_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define MEMLIMITS_TEST_TSAN 1
#  endif
#endif

namespace memlimits::testing {

#if defined(MEMLIMITS_TEST_ASAN)
inline constexpr bool under_asan = true;
#else
inline constexpr bool under_asan = false;
#endif
#if defined(MEMLIMITS_TEST_TSAN)
inline constexpr bool under_tsan = true;
#else
inline constexpr bool under_tsan = false;
#endif
inline constexpr bool sanitized = under_asan || under_tsan;

}  // namespace memlimits::testing
