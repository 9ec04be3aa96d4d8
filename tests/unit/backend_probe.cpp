// tests/unit/backend_probe.cpp — a program linked with memlimits::hooks for
// the resolution of the system allocator (platform/system_allocator.hpp) at
// the process's first allocation:
//  * BACKEND_PROBE_REENTRY: the program defines dl_iterate_phdr, which the
//    resolution calls (after its dlsym lookups): the first call makes the
//    hooks' calls that a loader or C library would make on the resolving
//    thread, and records what they return; main checks they failed as
//    documented (nullptr and ENOMEM, posix_memalign ENOMEM with *out
//    untouched, malloc_usable_size 0, free nothing) instead of recursing,
//    and that allocation works afterwards. Exit 0 when so.
//  * linked with a backend that memlimits cannot serve (the minimal test
//    allocator without malloc_usable_size), it never reaches main: the first
//    allocation reports the backend on stderr and aborts (the test expects
//    status 134 and the message).
#include <dlfcn.h>
#include <link.h>
#include <malloc.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "platform/system_allocator.hpp"

namespace {

struct reentry_result {
  bool seen = false;
  void* malloc_result = nullptr;
  int malloc_errno = 0;
  void* calloc_result = nullptr;
  int calloc_errno = 0;
  void* realloc_result = nullptr;
  void* aligned_result = nullptr;
  int posix_result = 0;
  bool out_untouched = false;
  std::size_t usable = 1;
};
reentry_result result;
[[maybe_unused]] alignas(64) unsigned char some_block[64];

}  // namespace

#if defined(BACKEND_PROBE_REENTRY)
extern "C" int dl_iterate_phdr(int (*callback)(dl_phdr_info*, std::size_t, void*), void* data) {
  using fn_t = int (*)(int (*)(dl_phdr_info*, std::size_t, void*), void*);
  static fn_t real = nullptr;
  if (real == nullptr) real = reinterpret_cast<fn_t>(::dlsym(RTLD_NEXT, "dl_iterate_phdr"));
  if (!result.seen) {
    result.seen = true;
    errno = 0;
    result.malloc_result = std::malloc(16);
    result.malloc_errno = errno;
    errno = 0;
    result.calloc_result = std::calloc(4, 8);
    result.calloc_errno = errno;
    result.realloc_result = std::realloc(nullptr, 32);
    result.aligned_result = std::aligned_alloc(64, 64);
    void* out = &result;
    result.posix_result = ::posix_memalign(&out, 64, 16);
    result.out_untouched = out == &result;
    result.usable = ::malloc_usable_size(some_block);
    std::free(result.malloc_result);  // nullptr: nothing
  }
  return real(callback, data);
}
#endif

int main() {
  void* p = std::malloc(100);
  std::printf("allocator: %s\n", memlimits::platform::system::allocator_object());
  if (p == nullptr) return 1;
  std::free(p);
#if defined(BACKEND_PROBE_REENTRY)
  std::printf(
      "re-entrant calls: %s; malloc %p errno %d, calloc %p errno %d, realloc %p, aligned_alloc "
      "%p, posix_memalign %d (*out %s), malloc_usable_size %zu\n",
      result.seen ? "made" : "not made", result.malloc_result, result.malloc_errno,
      result.calloc_result, result.calloc_errno, result.realloc_result, result.aligned_result,
      result.posix_result, result.out_untouched ? "untouched" : "written", result.usable);
  const bool ok = result.seen && result.malloc_result == nullptr &&
                  result.malloc_errno == ENOMEM && result.calloc_result == nullptr &&
                  result.calloc_errno == ENOMEM && result.realloc_result == nullptr &&
                  result.aligned_result == nullptr && result.posix_result == ENOMEM &&
                  result.out_untouched && result.usable == 0;
  std::printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
#else
  return 0;
#endif
}
