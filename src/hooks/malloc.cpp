// hooks/malloc.cpp — the malloc family, replaced in the program that links
// memlimits::hooks (or that runs with the preload library): malloc calloc
// realloc reallocarray free posix_memalign aligned_alloc memalign valloc
// pvalloc malloc_usable_size. Layer 4.
//
// What an argument means is the C library's to say, not ours: the hooks
// serve themselves only ordinary requests, those that C17 and every version
// of glibc serve alike, and hand every other one to the system's own
// function of the same name (platform/system_allocator.hpp: glibc's, or the sanitizer's),
// whose result, errno, posix_memalign's return value and what it left in
// *out the program gets as they are. No version's argument checks are
// copied here: glibc 2.36's aligned_alloc rounds an alignment that is not a
// power of two up, as memalign does, and 2.38's refuses it with EINVAL; the
// same binary behaves as each.
//
// Ordinary: a size up to core::max_block_bytes (the largest block the core
// counts; calloc and reallocarray: a count * size that does not overflow)
// and, for the aligned functions, a power-of-two alignment up to the same
// bound, for posix_memalign also at least sizeof(void*) (POSIX). Not
// ordinary, so the system's: an alignment that is 0, not a power of two or
// too large, a size too large, an overflowing count * size, realloc and
// reallocarray to size 0 (hooks/entry.hpp). A size that is not a multiple
// of aligned_alloc's alignment is ordinary: C11 required the multiple, C17
// does not, and glibc never did (the sanitizers' allocators still enforce
// it: under them, the hooks accept what the sanitizer alone would refuse).
//
// When the system accepts an aligned request that is not ordinary, its
// block is given back to it and the request served again as an ordinary
// one, at the alignment the success implies (the next power of two;
// malloc's for 0), so that limits and profiles see it like any other. The
// blocks the system returns for a size beyond max_block_bytes (none can
// exist: glibc refuses sizes above PTRDIFF_MAX, and no machine maps 2^61
// bytes) or from a reallocation it decided are the program's as they are,
// unsampled: free, realloc and malloc_usable_size handle them as any block
// that was never sampled, since the tracking layer knows only the blocks it
// recorded.
//
// The system is the allocator that follows memlimits in the lookup order
// (glibc's or a backend's), reached through platform/system_allocator.hpp:
// resolved once, safe from re-entry, so there is no dlsym recursion.
#include <bit>
#include <cerrno>
#include <cstddef>

#include "hooks/entry.hpp"

namespace {

using memlimits::hooks::source;
namespace sys = memlimits::platform::system;
constexpr auto c_library = memlimits::core::call_kind::c_library;

// The largest size and alignment of an ordinary request.
constexpr std::size_t max_ordinary = memlimits::core::max_block_bytes;

constexpr bool is_power_of_two(std::size_t x) noexcept { return x != 0 && (x & (x - 1)) == 0; }

// An aligned request that the hooks serve themselves.
constexpr bool is_ordinary(std::size_t alignment, std::size_t n) noexcept {
  return is_power_of_two(alignment) && alignment <= max_ordinary && n <= max_ordinary;
}

// The system's function accepted an aligned request that is not ordinary
// and returned `p`: the block the program gets. Within max_ordinary, the
// system's block is freed and the request served as an ordinary one at the
// alignment its success implies, with errno as the system left it (if that
// allocation fails, as one the limits refuse: nullptr, ENOMEM). Beyond it,
// `p` itself, unsampled.
void* serve_accepted(void* p, std::size_t alignment, std::size_t n, void* caller) noexcept {
  if (alignment > max_ordinary || n > max_ordinary) return p;
  const int system_errno = errno;
  sys::free(p);
  void* q = alignment == 0
                ? memlimits::hooks::allocate(n, source::malloc, c_library, caller)
                : memlimits::hooks::allocate_aligned(n, std::bit_ceil(alignment), source::malloc,
                                                     c_library, caller);
  if (q != nullptr) errno = system_errno;
  return q;
}

// The requests that are not ordinary, out of the hooks' line.
[[gnu::cold]] MEMLIMITS_NOINLINE void* aligned_alloc_by_system(std::size_t alignment,
                                                               std::size_t n,
                                                               void* caller) noexcept {
  void* p = sys::aligned_alloc(alignment, n);
  return p == nullptr ? nullptr : serve_accepted(p, alignment, n, caller);
}

[[gnu::cold]] MEMLIMITS_NOINLINE void* memalign_by_system(std::size_t alignment, std::size_t n,
                                                          void* caller) noexcept {
  void* p = sys::memalign(alignment, n);
  return p == nullptr ? nullptr : serve_accepted(p, alignment, n, caller);
}

[[gnu::cold]] MEMLIMITS_NOINLINE int posix_memalign_by_system(void** out, std::size_t alignment,
                                                              std::size_t n,
                                                              void* caller) noexcept {
  // The system's call, on a block of our own, so that *out ends as the
  // system leaves it on failure (POSIX allows untouched or null), and
  // untouched if serving an accepted request fails here.
  static constinit char untouched = 0;
  void* block = &untouched;
  const int result = sys::posix_memalign(&block, alignment, n);
  if (result != 0) {
    if (block != &untouched) *out = block;
    return result;
  }
  void* p = serve_accepted(block, alignment, n, caller);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

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
  [[maybe_unused]] void* const caller = MEMLIMITS_CALLER;
  MEMLIMITS_FORWARD_UNTIL_READY(sys::reallocarray(p, count, size));
  std::size_t bytes;
  if (MEMLIMITS_UNLIKELY(__builtin_mul_overflow(count, size, &bytes) || bytes > max_ordinary ||
                         (bytes == 0 && p != nullptr))) {
    return memlimits::hooks::reallocate_by_system(p, count, size, true);
  }
  return memlimits::hooks::reallocate(p, bytes, caller);
}

MEMLIMITS_HOOK int posix_memalign(void** out, std::size_t alignment, std::size_t n) {
  if (MEMLIMITS_UNLIKELY(!is_ordinary(alignment, n) || alignment < sizeof(void*))) {
    return posix_memalign_by_system(out, alignment, n, MEMLIMITS_CALLER);
  }
  void* p = memlimits::hooks::allocate_aligned(n, alignment, source::malloc, c_library,
                                               MEMLIMITS_CALLER);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

MEMLIMITS_HOOK void* aligned_alloc(std::size_t alignment, std::size_t n) {
  if (MEMLIMITS_UNLIKELY(!is_ordinary(alignment, n))) {
    return aligned_alloc_by_system(alignment, n, MEMLIMITS_CALLER);
  }
  return memlimits::hooks::allocate_aligned(n, alignment, source::malloc, c_library,
                                            MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void* memalign(std::size_t alignment, std::size_t n) {
  if (MEMLIMITS_UNLIKELY(!is_ordinary(alignment, n))) {
    return memalign_by_system(alignment, n, MEMLIMITS_CALLER);
  }
  return memlimits::hooks::allocate_aligned(n, alignment, source::malloc, c_library,
                                            MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void* valloc(std::size_t n) {
  // The page is an ordinary alignment: only the size may be the system's.
  if (MEMLIMITS_UNLIKELY(n > max_ordinary)) return sys::valloc(n);
  return memlimits::hooks::allocate_aligned(n, memlimits::platform::page_size(), source::malloc,
                                            c_library, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void* pvalloc(std::size_t n) {
  const std::size_t page = memlimits::platform::page_size();
  // Ordinary: the size rounded up to whole pages stays within max_ordinary.
  if (MEMLIMITS_UNLIKELY(n > max_ordinary - (page - 1))) return sys::pvalloc(n);
  const std::size_t rounded = (n + page - 1) & ~(page - 1);
  return memlimits::hooks::allocate_aligned(rounded, page, source::malloc, c_library,
                                            MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK std::size_t malloc_usable_size(void* p) {
  return memlimits::hooks::usable_size(p);
}

}  // extern "C"
