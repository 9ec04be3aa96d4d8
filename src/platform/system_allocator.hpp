// platform/system_allocator.hpp — the allocator that memlimits forwards to:
// glibc's malloc, reached through its __libc_* entry points so that the hooks
// can replace malloc without dlsym recursion. Under a sanitizer the
// sanitizer's own allocator is the system allocator (its __interceptor_*
// functions), so that blocks allocated inside the sanitizer runtime (strdup,
// ...) and freed by the program stay consistent and leak checking still sees
// every block.
// Every function of the malloc family is here, not only those memlimits
// allocates through: the hooks leave the arguments they do not serve
// themselves to the system's own function of the same name, whose argument
// checks and errno are then those of the C library the program runs on
// (hooks/malloc.cpp). Each function here is that function itself (an alias
// of it or the definition found after ours), never a reimplementation.
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
void* MEMLIMITS_SYS(valloc)(std::size_t);
void* MEMLIMITS_SYS(pvalloc)(std::size_t);
#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
std::size_t __interceptor_malloc_usable_size(void*);
void* __interceptor_aligned_alloc(std::size_t, std::size_t);
int __interceptor_posix_memalign(void**, std::size_t, std::size_t);
void* __interceptor_reallocarray(void*, std::size_t, std::size_t);
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
// glibc's memalign rounds `alignment` up to a power of two.
inline void* memalign(std::size_t alignment, std::size_t n) noexcept {
  return MEMLIMITS_SYS(memalign)(alignment, n);
}
inline void* valloc(std::size_t n) noexcept { return MEMLIMITS_SYS(valloc)(n); }
inline void* pvalloc(std::size_t n) noexcept { return MEMLIMITS_SYS(pvalloc)(n); }
// glibc exports no public alias of these three: each is the definition that
// follows ours (the C library's), looked up with dlsym(RTLD_NEXT) at its
// first call and kept. The lookup saves errno and is safe from re-entry: a
// call that dlsym itself would make on the same thread while it looks the
// function up fails (as does every call when the C library has no such
// function): nullptr with errno ENOMEM, or ENOMEM from posix_memalign with
// *out untouched. dlsym allocates nothing when the symbol exists, but it
// clears a pending dlerror() message, once per function and process.
void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept;
int posix_memalign(void** out, std::size_t alignment, std::size_t n) noexcept;
void* reallocarray(void* p, std::size_t count, std::size_t size) noexcept;
// glibc exports no __libc_ alias of malloc_usable_size; it is looked up once
// with dlsym(RTLD_NEXT), which does not allocate when the symbol exists.
std::size_t usable_size(void* p) noexcept;

}  // namespace memlimits::platform::system
