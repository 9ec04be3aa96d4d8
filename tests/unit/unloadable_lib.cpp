// unloadable_lib.cpp — the library of unloadable_lib.hpp: two allocation
// call sites behind non-inlined, unexported functions. Compiled -O2 -g
// whatever the build type, with MEMLIMITS_UNLOADABLE_VARIANT 1
// (unloadable_lib) or 2 (unloadable_lib_other: other names, code shifted by
// padding). Holds no object that would keep it loaded after dlclose (no
// STB_GNU_UNIQUE symbol: no inline function's static, no thread_local).
// Depends on the C library only.
#include "unit/unloadable_lib.hpp"

#include <cstdlib>

#include "support/call_sites.hpp"

#if MEMLIMITS_UNLOADABLE_VARIANT == 2
#  define MEMLIMITS_UNLOADABLE_NS unloadable_other
#else
#  define MEMLIMITS_UNLOADABLE_NS unloadable_first
#endif

namespace MEMLIMITS_UNLOADABLE_NS {

#if MEMLIMITS_UNLOADABLE_VARIANT == 2
// Before the sites in the file's code: 1 KiB that moves them (the library
// still fits in as many pages as the other variant).
extern "C" __attribute__((visibility("default"), used)) void memlimits_unloadable_padding() {
  asm volatile(".skip 1024, 0x90");
}
#endif

constexpr int malloc_line = __LINE__ + 2;
SITE_NOINLINE void* make_block(std::size_t bytes) {
  void* block = std::malloc(bytes);
  SITE_BARRIER();
  return block;
}

constexpr int first_site_line = __LINE__ + 2;
SITE_NOINLINE void* first_site(std::size_t bytes) {
  void* block = make_block(bytes);
  static_cast<char*>(block)[0] = 1;  // the two sites differ: not folded into one
  SITE_BARRIER();
  return block;
}

constexpr int second_site_line = __LINE__ + 2;
SITE_NOINLINE void* second_site(std::size_t bytes) {
  void* block = make_block(bytes);
  static_cast<char*>(block)[0] = 2;
  SITE_BARRIER();
  return block;
}

}  // namespace MEMLIMITS_UNLOADABLE_NS

namespace {
constexpr int entry_first_line = __LINE__ + 8;
constexpr int entry_second_line = __LINE__ + 10;
}  // namespace

extern "C" __attribute__((visibility("default"))) void memlimits_unloadable_allocate(
    int site, void** blocks, std::size_t count, std::size_t bytes) {
  for (std::size_t i = 0; i < count; ++i) {
    if (site == 1) {
      blocks[i] = MEMLIMITS_UNLOADABLE_NS::first_site(bytes);
      SITE_BARRIER();
    } else {
      blocks[i] = MEMLIMITS_UNLOADABLE_NS::second_site(bytes);
      SITE_BARRIER();
    }
  }
}

extern "C" __attribute__((visibility("default"))) void memlimits_unloadable_lines(
    memlimits_unloadable_lines* out) {
  *out = {MEMLIMITS_UNLOADABLE_NS::malloc_line, MEMLIMITS_UNLOADABLE_NS::first_site_line,
          MEMLIMITS_UNLOADABLE_NS::second_site_line, entry_first_line, entry_second_line};
}
