// tests/preload/semantics_strict_libc.cpp — libsemantics_strict_libc.so, a
// stand-in for a C library whose aligned_alloc differs from the one on this
// system: it follows C17 as glibc does from 2.38 on (an alignment that is 0
// or not a power of two fails with EINVAL, where glibc 2.36 rounds it up);
// every other request is glibc's memalign. Preloaded after memlimits (or
// under a program linked with the hooks), it is the definition that follows
// the hooks', the system they hand such arguments to: the probe's lines must
// then be this library's, not glibc 2.36's, which shows that the hooks
// follow the C library they run on rather than copying one version's rules.
#include <cerrno>
#include <cstddef>

extern "C" {

void* __libc_memalign(std::size_t alignment, std::size_t n);

__attribute__((visibility("default"))) void* aligned_alloc(std::size_t alignment,
                                                           std::size_t n) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  return __libc_memalign(alignment, n);
}

}  // extern "C"
