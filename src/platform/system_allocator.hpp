// platform/system_allocator.hpp — the allocator that memlimits forwards to:
// glibc's malloc, reached through its __libc_* entry points so that the hooks
// can replace malloc without dlsym recursion. Under a sanitizer the
// sanitizer's own allocator is the system allocator (its __interceptor_*
// functions), so that blocks allocated inside the sanitizer runtime (strdup,
// ...) and freed by the program stay consistent and leak checking still sees
// every block.
// Layer 1. No function here allocates on its own behalf.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>

#if !defined(__GLIBC__)
#  error unsupported platform: memlimits forwards to the glibc allocator
#endif

#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
#  define MEMLIMITS_SYS(name) __interceptor_##name
#else
#  define MEMLIMITS_SYS(name) __libc_##name
#endif

extern "C" {
void* MEMLIMITS_SYS(malloc)(std::size_t);
void MEMLIMITS_SYS(free)(void*);
void* MEMLIMITS_SYS(calloc)(std::size_t, std::size_t);
void* MEMLIMITS_SYS(realloc)(void*, std::size_t);
void* MEMLIMITS_SYS(memalign)(std::size_t, std::size_t);
#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
std::size_t __interceptor_malloc_usable_size(void*);
#endif
}

namespace memlimits::platform::system {

inline void* malloc(std::size_t n) noexcept { return MEMLIMITS_SYS(malloc)(n); }
inline void free(void* p) noexcept { MEMLIMITS_SYS(free)(p); }
inline void* calloc(std::size_t n, std::size_t size) noexcept {
  return MEMLIMITS_SYS(calloc)(n, size);
}
inline void* realloc(void* p, std::size_t n) noexcept {
  return MEMLIMITS_SYS(realloc)(p, n);
}
// Like glibc's memalign: `alignment` is rounded up to a power of two.
inline void* memalign(std::size_t alignment, std::size_t n) noexcept {
  return MEMLIMITS_SYS(memalign)(alignment, n);
}
// glibc exports no __libc_ alias of malloc_usable_size; it is looked up once
// with dlsym(RTLD_NEXT), which does not allocate when the symbol exists.
std::size_t usable_size(void* p) noexcept;

}  // namespace memlimits::platform::system
