// platform/system_allocator.hpp — the allocator that memlimits forwards to:
// the program's own allocator, whichever follows memlimits' definitions of
// malloc in the lookup order (glibc's, or jemalloc, mimalloc, tcmalloc, ...:
// a backend). Under a sanitizer the sanitizer's own allocator is the system
// allocator (its __interceptor_* functions), so that blocks allocated inside
// the sanitizer runtime (strdup, ...) and freed by the program stay
// consistent and leak checking still sees every block: no backend there.
// Every function of the malloc family is here, not only those memlimits
// allocates through: the hooks leave the arguments they do not serve
// themselves to the system's own function of the same name, whose argument
// checks and errno are then those of the allocator the program runs on
// (hooks/malloc.cpp).
// Layer 1. No function here allocates on its own behalf.
//
// Which allocator (normal builds). memlimits defines malloc, so the
// allocator is the definition that follows memlimits' own in the lookup
// order: dlsym(RTLD_NEXT, name), which skips the objects that do not define
// `name` (libstdc++, ...). Hooks linked into the program: the libraries the
// program was linked with, in link order (memlimits::jemalloc, ...: link one
// backend; glibc comes last); preload library: the objects preloaded after
// it (LD_PRELOAD="libmemlimits_preload.so libjemalloc.so.2"), then the
// program's libraries. A backend preloaded before memlimits takes the
// program's calls itself: memlimits then sees none.
// The allocator is the object that defines the malloc found so (its
// "family"); the other functions are looked up the same way, and each is
//  * the definition found, when it is the family's own, or that of an
//    object between memlimits and the family (an object that replaces one
//    function of the family, as the program would call it without
//    memlimits: tests/preload/semantics_strict_libc.cpp);
//  * emulated with the family's own malloc, memalign and realloc when the
//    definition found lies beyond the family: the family lacks the function
//    and the one found belongs to another allocator (glibc's, whose blocks
//    the family's free cannot take). Families never mix. The emulations
//    follow glibc 2.36's rules, whatever errno the family's functions set:
//      calloc(n, s)          overflow of n * s: nullptr, ENOMEM; else
//                            malloc(n * s), zeroed
//      valloc(n)             memalign(page, n)
//      pvalloc(n)            memalign(page, n rounded up to pages; 0: one
//                            page); overflow: nullptr, ENOMEM
//      aligned_alloc(a, n)   memalign(a, n) (glibc 2.36's aligned_alloc is
//                            its memalign); a > SIZE_MAX / 2 + 1: EINVAL
//      posix_memalign(o,a,n) EINVAL unless a is a power of two and a multiple
//                            of sizeof(void*); else memalign(a, n), ENOMEM
//                            if null (*o untouched)
//      reallocarray(p, n, s) overflow of n * s: nullptr, ENOMEM (p kept);
//                            else realloc(p, n * s) (glibc's own definition)
//    and a null result for a size other than 0 sets errno to ENOMEM.
//    What each installed backend lacks (nm -D, Debian 12):
//      glibc 2.36 (libc.so.6)               nothing
//      jemalloc 5.3 (libjemalloc.so.2)      pvalloc, reallocarray
//      mimalloc 2.0 (libmimalloc.so.2)      nothing
//      gperftools 2.10 (libtcmalloc*.so.4)  reallocarray
//    (glibc's libc_malloc_debug.so.0 is never the family: its functions
//    carry a version that is not the default one, malloc@GLIBC_2.2.5, and
//    dlsym without a version does not return them; glibc's own follow.)
//  * a family without free, realloc, memalign or malloc_usable_size of its
//    own cannot be served without mixing: memlimits says so on stderr and
//    aborts at the first allocation.
// One function is wrapped: a memalign other than glibc's is asked for 1
// byte when 0 are requested (jemalloc 5.3's memalign does not align blocks
// of 0 bytes: operator new(0, align_val_t) and memalign(a, 0) reach it).
// Everything else the backend's own functions decide, as they would without
// memlimits: the hooks hand them the arguments they do not serve themselves
// (hooks/malloc.cpp), and their results and errno are the program's. The
// installed backends differ from glibc there (tests/unit/CMakeLists.txt
// lists the hooks' tests that expect glibc's answers): when they fail,
// mimalloc's malloc, calloc, realloc, memalign and pvalloc, jemalloc's
// memalign and valloc, and tcmalloc's calloc leave errno alone; jemalloc's
// and mimalloc's memalign refuse an alignment that is not a power of two
// (glibc rounds it up); mimalloc's realloc(p, 0) returns a block;
// tcmalloc's pvalloc(n) returns a page when rounding n up to pages
// overflows.
// With glibc next, every function is glibc's (malloc is __libc_malloc,
// same address): as fast and the same as calling the __libc_* aliases.
// (glibc's reallocarray calls realloc through the PLT, that is memlimits'
// realloc hook: as before. The emulation calls the family's realloc.)
//
// How. `detail::next` holds one pointer per function; each starts at a stub
// that resolves all of them at once (linux.cpp), stores them, and calls the
// one asked for. Every call after that is one indirect call through the
// table (`call *ptr(%rip)`, no PLT): the pointers are read with plain loads
// and written with relaxed atomic stores, once, with the same value by
// whichever threads resolve at the same time (a reader sees the stub or the
// final pointer; an aligned pointer is never torn); the stubs synchronise
// through an acquire flag. The first call may come from inside the loader
// or libc's start-up (its lock is recursive); dlsym of a defined symbol and
// dl_iterate_phdr do not allocate. Should the resolution ever call a hook on
// its own thread before it has finished, that call fails instead of
// recursing: nullptr with errno ENOMEM, posix_memalign ENOMEM with *out
// untouched, malloc_usable_size 0, free nothing (no block can exist yet).
// The lookups save errno; dlsym clears a pending dlerror() message, once.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>

#if !defined(__GLIBC__)
#  error unsupported platform: memlimits forwards to the glibc allocator
#endif

#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)

extern "C" {
void* __interceptor_malloc(std::size_t);
void __interceptor_free(void*);
void* __interceptor_calloc(std::size_t, std::size_t);
void* __interceptor_realloc(void*, std::size_t);
void* __interceptor_memalign(std::size_t, std::size_t);
void* __interceptor_valloc(std::size_t);
void* __interceptor_pvalloc(std::size_t);
std::size_t __interceptor_malloc_usable_size(void*);
void* __interceptor_aligned_alloc(std::size_t, std::size_t);
int __interceptor_posix_memalign(void**, std::size_t, std::size_t);
void* __interceptor_reallocarray(void*, std::size_t, std::size_t);
}

namespace memlimits::platform::system {

inline void* malloc(std::size_t n) noexcept { return __interceptor_malloc(n); }
inline void free(void* p) noexcept { __interceptor_free(p); }
inline void* calloc(std::size_t n, std::size_t size) noexcept {
  return __interceptor_calloc(n, size);
}
inline void* realloc(void* p, std::size_t n) noexcept { return __interceptor_realloc(p, n); }
inline void* memalign(std::size_t alignment, std::size_t n) noexcept {
  return __interceptor_memalign(alignment, n);
}
inline void* valloc(std::size_t n) noexcept { return __interceptor_valloc(n); }
inline void* pvalloc(std::size_t n) noexcept { return __interceptor_pvalloc(n); }
inline void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept {
  return __interceptor_aligned_alloc(alignment, n);
}
inline int posix_memalign(void** out, std::size_t alignment, std::size_t n) noexcept {
  return __interceptor_posix_memalign(out, alignment, n);
}
inline void* reallocarray(void* p, std::size_t count, std::size_t size) noexcept {
  return __interceptor_reallocarray(p, count, size);
}
inline std::size_t usable_size(void* p) noexcept { return __interceptor_malloc_usable_size(p); }

}  // namespace memlimits::platform::system

#else  // !MEMLIMITS_SANITIZER_ALLOCATOR

namespace memlimits::platform::system {

namespace detail {
// The functions forwarded to (see the top of this file). Hidden: one
// PC-relative load in the library, the preload library and the program
// that links the hooks.
struct next_functions {
  void* (*malloc)(std::size_t) noexcept;
  void (*free)(void*) noexcept;
  void* (*calloc)(std::size_t, std::size_t) noexcept;
  void* (*realloc)(void*, std::size_t) noexcept;
  void* (*memalign)(std::size_t, std::size_t) noexcept;
  void* (*valloc)(std::size_t) noexcept;
  void* (*pvalloc)(std::size_t) noexcept;
  void* (*aligned_alloc)(std::size_t, std::size_t) noexcept;
  int (*posix_memalign)(void**, std::size_t, std::size_t) noexcept;
  void* (*reallocarray)(void*, std::size_t, std::size_t) noexcept;
  std::size_t (*usable_size)(void*) noexcept;
};
extern next_functions next __attribute__((visibility("hidden")));
}  // namespace detail

inline void* malloc(std::size_t n) noexcept { return detail::next.malloc(n); }
inline void free(void* p) noexcept { detail::next.free(p); }
inline void* calloc(std::size_t n, std::size_t size) noexcept {
  return detail::next.calloc(n, size);
}
inline void* realloc(void* p, std::size_t n) noexcept { return detail::next.realloc(p, n); }
// glibc's memalign rounds `alignment` up to a power of two.
inline void* memalign(std::size_t alignment, std::size_t n) noexcept {
  return detail::next.memalign(alignment, n);
}
inline void* valloc(std::size_t n) noexcept { return detail::next.valloc(n); }
inline void* pvalloc(std::size_t n) noexcept { return detail::next.pvalloc(n); }
inline void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept {
  return detail::next.aligned_alloc(alignment, n);
}
inline int posix_memalign(void** out, std::size_t alignment, std::size_t n) noexcept {
  return detail::next.posix_memalign(out, alignment, n);
}
inline void* reallocarray(void* p, std::size_t count, std::size_t size) noexcept {
  return detail::next.reallocarray(p, count, size);
}
// malloc_usable_size; 0 for nullptr without asking the allocator.
inline std::size_t usable_size(void* p) noexcept {
  return p == nullptr ? 0 : detail::next.usable_size(p);
}

}  // namespace memlimits::platform::system

#endif  // MEMLIMITS_SANITIZER_ALLOCATOR

namespace memlimits::platform::system {

// What the resolution chose (resolving first if no allocation has yet),
// for tests and diagnostics. Sanitizer builds: the sanitizer's allocator,
// nothing emulated.
enum class function : unsigned {
  malloc,
  free,
  calloc,
  realloc,
  memalign,
  valloc,
  pvalloc,
  aligned_alloc,
  posix_memalign,
  reallocarray,
  malloc_usable_size,
  count
};
// The path of the object whose malloc is forwarded to, as the loader names
// it ("" for the program itself; "sanitizer" under a sanitizer).
const char* allocator_object() noexcept;
// Whether `f` is emulated with the family's malloc, memalign and realloc
// (the family lacks it).
bool is_emulated(function f) noexcept;

}  // namespace memlimits::platform::system
