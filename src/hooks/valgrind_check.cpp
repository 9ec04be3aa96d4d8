// hooks/valgrind_check.cpp — says once, at start-up, that the hooks are not
// called, when valgrind's allocator has taken their place.
//
// Valgrind's tools that track the heap (memcheck, massif, helgrind, drd,
// dhat) redirect operator new and the malloc family to their own allocator:
// the program's calls then never reach hooks/new_delete.cpp or
// hooks/malloc.cpp, so no guard limits anything and no profile sees a block,
// silently. Callgrind and cachegrind keep the program's allocator: the hooks
// work there.
// So, when the environment shows valgrind (platform::running_under_valgrind),
// one allocation through malloc and one through operator new, each freed,
// test whether they reached memlimits: every call of the hooks moves the
// calling thread's allocation stream (core::stream_position) by the block's
// counted bytes; a call that does not reach them leaves it where it was.
// Only then is the message written, with write(2) from a stack buffer.
// Linked with the hooks (memlimits::hooks, the preload library), so only
// programs that replace the allocator check. Compiled out under ASan and
// TSan, whose allocators the hooks forward to until the runtime is ready
// (hooks/entry.hpp) and which do not run under valgrind anyway.
// Layer 4 (uses core/, platform/).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "core/sampler.hpp"
#include "platform/platform.hpp"

#if !defined(MEMLIMITS_SANITIZER_ALLOCATOR)

namespace {

using allocate_fn = void* (*)(std::size_t);
using release_fn = void (*)(void*);

// Through volatile pointers, so that the compiler can neither elide the pair
// nor call anything but the symbols the program's own calls resolve to.
bool reaches_hooks(allocate_fn allocate_arg, release_fn release_arg) noexcept {
  const allocate_fn volatile allocate = allocate_arg;
  const release_fn volatile release = release_arg;
  const std::uint64_t before = memlimits::core::stream_position();
  void* p = allocate(1);
  const std::uint64_t after = memlimits::core::stream_position();
  release(p);
  return p == nullptr || after != before;  // a failed allocation tells nothing
}

void* malloc_one(std::size_t bytes) { return std::malloc(bytes); }
void free_one(void* p) { std::free(p); }
void* new_one(std::size_t bytes) { return ::operator new(bytes, std::nothrow); }
void delete_one(void* p) { ::operator delete(p); }

__attribute__((constructor)) void warn_if_hooks_are_not_called() {
  char tool[32];
  if (!memlimits::platform::running_under_valgrind(tool, sizeof tool)) return;
  // stream_position() means nothing while sampling is off (never so in a
  // constructor); and no task is guarded yet, so no allocation is refused.
  if (memlimits::core::sampling_is_off()) return;
  // The nothrow operator new: nothing to throw from a constructor, and the
  // hooks and valgrind's allocator route every form of operator new alike.
  const bool called = reaches_hooks(&malloc_one, &free_one) &&
                      reaches_hooks(&new_one, &delete_one);
  if (called) return;
  // As core/check.hpp reports: into a stack buffer, never allocating.
  char message[256];
  const int length = std::snprintf(
      message, sizeof message,
      "memlimits: the allocation hooks are not called (the program runs under valgrind%s%s, "
      "whose allocator replaces them): limits are not enforced and profiles see nothing\n",
      tool[0] != '\0' ? "'s " : "", tool);
  if (length <= 0) return;
  memlimits::platform::write_stderr(
      message, static_cast<std::size_t>(length) < sizeof message ? static_cast<std::size_t>(length)
                                                                  : sizeof message - 1);
}

}  // namespace

#endif  // !MEMLIMITS_SANITIZER_ALLOCATOR
