// fiber/sanitizer_switch.hpp — telling AddressSanitizer and ThreadSanitizer
// of stack switches (no-ops in other builds). AddressSanitizer: a switch is
// started on the old stack and finished on the new one; ThreadSanitizer: each
// fiber has a context of its own, and the switch to it must be made in the
// same function call as the jump, so that function entries and exits stay
// paired on each context's shadow stack. Layer 7.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#  include <sanitizer/common_interface_defs.h>
#  define MEMLIMITS_FIBER_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#  include <sanitizer/tsan_interface.h>
#  define MEMLIMITS_FIBER_TSAN 1
#endif
#if defined(__has_feature)
#  if __has_feature(address_sanitizer) && !defined(MEMLIMITS_FIBER_ASAN)
#    include <sanitizer/common_interface_defs.h>
#    define MEMLIMITS_FIBER_ASAN 1
#  endif
#  if __has_feature(thread_sanitizer) && !defined(MEMLIMITS_FIBER_TSAN)
#    include <sanitizer/tsan_interface.h>
#    define MEMLIMITS_FIBER_TSAN 1
#  endif
#endif

namespace memlimits::fiber_sanitizer {

// AddressSanitizer. `save` null: the stack being left is left for good.
inline void start_switch([[maybe_unused]] void** save, [[maybe_unused]] const void* bottom,
                         [[maybe_unused]] std::size_t size) noexcept {
#if defined(MEMLIMITS_FIBER_ASAN)
  __sanitizer_start_switch_fiber(save, bottom, size);
#endif
}

// AddressSanitizer: on the new stack; gives the bounds of the old one.
inline void finish_switch([[maybe_unused]] void* saved, [[maybe_unused]] const void** old_bottom,
                          [[maybe_unused]] std::size_t* old_size) noexcept {
#if defined(MEMLIMITS_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(saved, old_bottom, old_size);
#endif
}

// ThreadSanitizer's contexts.
inline void* current_context() noexcept {
#if defined(MEMLIMITS_FIBER_TSAN)
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}

inline void* create_context() noexcept {
#if defined(MEMLIMITS_FIBER_TSAN)
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}

inline void destroy_context([[maybe_unused]] void* context) noexcept {
#if defined(MEMLIMITS_FIBER_TSAN)
  if (context != nullptr) __tsan_destroy_fiber(context);
#endif
}

// Always inlined: it must be in the function that jumps (see above). The
// switch synchronizes: what the old context did happens before the new one.
__attribute__((always_inline)) inline void switch_to([[maybe_unused]] void* context) noexcept {
#if defined(MEMLIMITS_FIBER_TSAN)
  __tsan_switch_to_fiber(context, 0);
#endif
}

}  // namespace memlimits::fiber_sanitizer
