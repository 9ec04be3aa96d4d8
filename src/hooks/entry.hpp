// hooks/entry.hpp — the one internal entry point behind every hook: the
// global operator new/delete (hooks/new_delete.cpp), the malloc family
// (hooks/malloc.cpp) and the explicit adapters (hooks/adapter.cpp).
//
// Allocation: the core's fast path (core::consume) decides; almost always
// the block comes straight from the system allocator. Otherwise the slow
// path draws the block's samples; a sampled block comes from the tracking
// layer (tracking/tracking.hpp: normally the reserved range), is handed to
// the subscribers, and carries a record if they want its free. Free: one
// test (tracking::may_be_sampled: is the address in the range?); only the
// blocks of the tracking layer go further.
// Requests the core does not count (sizes above core::max_block_bytes, a
// calloc product that overflows, realloc to size 0) are decided by the
// system allocator alone: its result and errno are returned as they are, and
// the stream never sees them (see hooks/malloc.cpp for the other arguments
// that the system decides).
// Contract: never throws, never logs, never allocates on its own behalf
// outside the subscribers' callbacks (which run with sampling off); preserves
// errno except where the system allocator itself sets it (on failure).
// Layer 4 (uses tracking/, core/, platform/).
#pragma once

#include <cerrno>
#include <cstddef>

#include "core/limits_port.hpp"
#include "core/sampler.hpp"
#include "core/subscribers.hpp"
#include "platform/system_allocator.hpp"
#include "tracking/tracking.hpp"

// The replaced ABI symbols are exported even though the library is built
// with hidden visibility.
#define MEMLIMITS_HOOK __attribute__((visibility("default")))

namespace memlimits::hooks {

using source = core::block_origin;
using core::call_kind;

#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
// Under ASan or TSan, the sanitizer's runtime starts from the executable's
// preinit_array, and, for each new thread, from inside that thread; both
// call malloc (the loader, pthread_getattr_np) before the runtime's state is
// usable, and instrumented code then faults (unmapped shadow, TSan's
// per-thread state not set up). So:
//  * the files that define the global hooks are compiled without
//    instrumentation (src/CMakeLists.txt);
//  * until the first of the executable's constructors has run (`ready`,
//    set by hooks/sanitizer.cpp at priority 101), the hooks only forward;
//  * a thread's calls count from its first call that does not come from the
//    C library, the loader or the sanitizer's runtime: user code runs only
//    once the runtime has set the thread up.
// Normal builds have none of this: glibc's allocator and memlimits' TLS work
// from the first call.
extern bool ready;
extern constinit thread_local bool thread_ready MEMLIMITS_TLS_MODEL;
bool called_from_runtime(const void* caller) noexcept;  // uninstrumented

MEMLIMITS_ALWAYS_INLINE bool sanitizer_ready(const void* caller) noexcept {
  if (MEMLIMITS_LIKELY(thread_ready)) return true;
  if (!ready || called_from_runtime(caller)) return false;
  thread_ready = true;
  return true;
}
#  define MEMLIMITS_FORWARD_UNTIL_READY(call) \
    if (MEMLIMITS_UNLIKELY(!::memlimits::hooks::sanitizer_ready(caller))) return call
#else
#  define MEMLIMITS_FORWARD_UNTIL_READY(call)
#endif

// Slow paths (hooks/entry.cpp). `caller` is the hook's return address;
// `kind` says how the entry point reports an interruption (core/limits_port.hpp):
// a refused allocation returns nullptr with errno ENOMEM.
// alignment 0: the system allocator's default alignment.
// A request above core::max_block_bytes goes to the system allocator
// (malloc, or memalign with `alignment`) and is taken out of the stream.
void* allocate_slow(std::size_t bytes, std::size_t alignment, source origin, bool zero,
                    call_kind kind, void* caller) noexcept;
// calloc's slow path: allocate_slow for count * size (no overflow), or the
// system's calloc(count, size) above core::max_block_bytes.
void* allocate_zeroed_slow(std::size_t count, std::size_t size, source origin,
                           void* caller) noexcept;
void deallocate_slow(void* p) noexcept;
void* reallocate_slow(void* p, std::size_t bytes, bool event_pending, void* caller) noexcept;
// A reallocation that the system allocator decides alone: to size 0, or to
// a size the core does not count (count * size overflowing, or above
// core::max_block_bytes). `array`: the system's reallocarray(p, count, size);
// else its realloc(p, count). Its result and errno are returned as they are.
// A sampled p keeps its record while the call may fail (a null result for a
// size other than 0 leaves p untouched); once the system has freed, moved or
// resized it, its free is dispatched. The block returned is not sampled.
// A null result for size 0 counts as p freed, as glibc's realloc does.
void* reallocate_by_system(void* p, std::size_t count, std::size_t size, bool array) noexcept;

// The fast paths. When the system allocator fails a request that the core
// counted on the fast path:
//  * for operator new and the adapters (any `kind` but c_library), which
//    look at the result anyway, the request is taken out of the stream
//    (refund, out of line), so that a retry after the new_handler counts
//    once;
//  * for the C API (c_library), the system's result is returned by a tail
//    call and the failed request stays counted: returning through the hook
//    to refund it cost every allocation a stack frame (malloc's hook took
//    19 instructions with it, 12 without), for a failure that only an
//    exhausted system causes. Requests that take the slow path (every one above the bytes
//    left to the next event, so every huge one) are refunded exactly.
[[gnu::cold]] MEMLIMITS_NOINLINE void* refund_failed(std::size_t bytes) noexcept;

MEMLIMITS_ALWAYS_INLINE void* checked(void* p, std::size_t bytes, call_kind kind) noexcept {
  if (kind != call_kind::c_library && MEMLIMITS_UNLIKELY(p == nullptr)) return refund_failed(bytes);
  return p;
}

MEMLIMITS_ALWAYS_INLINE void* allocate(std::size_t bytes, source origin, call_kind kind,
                                       void* caller) noexcept {
  MEMLIMITS_FORWARD_UNTIL_READY(platform::system::malloc(bytes));
  if (MEMLIMITS_LIKELY(core::consume(bytes))) {
    return checked(platform::system::malloc(bytes), bytes, kind);
  }
  return allocate_slow(bytes, 0, origin, false, kind, caller);
}

MEMLIMITS_ALWAYS_INLINE void* allocate_zeroed(std::size_t count, std::size_t size,
                                              source origin, void* caller) noexcept {
  std::size_t bytes;
  MEMLIMITS_FORWARD_UNTIL_READY(platform::system::calloc(count, size));
  // An overflowing product is the system's to refuse (or, should it accept
  // it, its block is returned unsampled).
  if (MEMLIMITS_UNLIKELY(__builtin_mul_overflow(count, size, &bytes))) {
    return platform::system::calloc(count, size);
  }
  if (MEMLIMITS_LIKELY(core::consume(bytes))) return platform::system::calloc(count, size);
  return allocate_zeroed_slow(count, size, origin, caller);
}

// `alignment` as the system's memalign takes it: the hooks of the C API pass
// powers of two (hooks/malloc.cpp leaves every other alignment to the system).
MEMLIMITS_ALWAYS_INLINE void* allocate_aligned(std::size_t bytes, std::size_t alignment,
                                               source origin, call_kind kind,
                                               void* caller) noexcept {
  MEMLIMITS_FORWARD_UNTIL_READY(platform::system::memalign(alignment, bytes));
  if (MEMLIMITS_LIKELY(core::consume(bytes))) {
    return checked(platform::system::memalign(alignment, bytes), bytes, kind);
  }
  return allocate_slow(bytes, alignment, origin, false, kind, caller);
}

MEMLIMITS_ALWAYS_INLINE void deallocate(void* p, [[maybe_unused]] void* caller) noexcept {
  MEMLIMITS_FORWARD_UNTIL_READY(platform::system::free(p));
  if (MEMLIMITS_UNLIKELY(tracking::may_be_sampled(p))) return deallocate_slow(p);
  platform::system::free(p);
}

// malloc_usable_size.
MEMLIMITS_ALWAYS_INLINE std::size_t usable_size(void* p) noexcept {
  if (tracking::uses_range && tracking::may_be_sampled(p)) return tracking::usable_size(p);
  return platform::system::usable_size(p);
}

// realloc: realloc(nullptr, n) allocates; on failure p is left untouched;
// realloc(p, 0) is the system's (glibc's frees p and returns nullptr).
MEMLIMITS_ALWAYS_INLINE void* reallocate(void* p, std::size_t bytes, void* caller) noexcept {
  MEMLIMITS_FORWARD_UNTIL_READY(platform::system::realloc(p, bytes));
  if (p == nullptr) return allocate(bytes, source::malloc, call_kind::c_library, caller);
  if (MEMLIMITS_UNLIKELY(bytes == 0)) return reallocate_by_system(p, 0, 0, false);
  if (MEMLIMITS_LIKELY(!tracking::may_be_sampled(p))) {
    if (MEMLIMITS_LIKELY(core::consume(bytes))) return platform::system::realloc(p, bytes);
    return reallocate_slow(p, bytes, true, caller);
  }
  return reallocate_slow(p, bytes, false, caller);
}

}  // namespace memlimits::hooks
