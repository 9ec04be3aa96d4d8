// hooks/malloc.cpp — the malloc family, replaced in the program that links
// memlimits::hooks (or that runs with the preload library): malloc calloc
// realloc reallocarray free posix_memalign aligned_alloc memalign valloc
// pvalloc malloc_usable_size, with glibc 2.36's argument checks and errno.
// They forward to glibc through __libc_* (platform/system_allocator.hpp), so
// there is no dlsym recursion. Layer 4.
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "hooks/entry.hpp"

namespace {

using memlimits::hooks::source;
constexpr auto c_library = memlimits::core::call_kind::c_library;

constexpr bool is_power_of_two(std::size_t x) noexcept { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

#define MEMLIMITS_CALLER __builtin_return_address(0)

extern "C" {

MEMLIMITS_HOOK void* malloc(std::size_t n) {
  return memlimits::hooks::allocate(n, source::malloc, c_library, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void free(void* p) { memlimits::hooks::deallocate(p, MEMLIMITS_CALLER); }

MEMLIMITS_HOOK void* calloc(std::size_t count, std::size_t size) {
  return memlimits::hooks::allocate_zeroed(count, size, source::malloc, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void* realloc(void* p, std::size_t n) {
  return memlimits::hooks::reallocate(p, n, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void* reallocarray(void* p, std::size_t count, std::size_t size) {
  std::size_t bytes;
  if (__builtin_mul_overflow(count, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  return memlimits::hooks::reallocate(p, bytes, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK int posix_memalign(void** out, std::size_t alignment, std::size_t n) {
  // POSIX: a power of two multiple of sizeof(void*); else EINVAL, *out untouched.
  if (alignment % sizeof(void*) != 0 || !is_power_of_two(alignment / sizeof(void*))) {
    return EINVAL;
  }
  void* p = memlimits::hooks::allocate_aligned(n, alignment, source::malloc, c_library, MEMLIMITS_CALLER);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

MEMLIMITS_HOOK void* aligned_alloc(std::size_t alignment, std::size_t n) {
  // C17 and glibc from 2.38 on: an alignment that is not a power of two is
  // an error (glibc 2.36 itself passes it to memalign, which rounds it up).
  if (!is_power_of_two(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return memlimits::hooks::allocate_aligned(n, alignment, source::malloc, c_library, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void* memalign(std::size_t alignment, std::size_t n) {
  return memlimits::hooks::allocate_aligned(n, alignment, source::malloc, c_library, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void* valloc(std::size_t n) {
  return memlimits::hooks::allocate_aligned(n, memlimits::platform::page_size(), source::malloc,
                                            c_library, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void* pvalloc(std::size_t n) {
  const std::size_t page = memlimits::platform::page_size();
  std::size_t rounded;
  if (__builtin_add_overflow(n, page - 1, &rounded)) {
    errno = ENOMEM;
    return nullptr;
  }
  rounded &= ~(page - 1);
  return memlimits::hooks::allocate_aligned(rounded, page, source::malloc, c_library, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK std::size_t malloc_usable_size(void* p) {
  return memlimits::platform::system::usable_size(p);
}

}  // extern "C"
