// heap_profile_sites.cpp — the sites of heap_profile_sites.hpp. Compiled
// -O2 -g (tests/unit/CMakeLists.txt), so that the inlining and the debug
// information do not depend on the build type.
#include "heap_profile_sites.hpp"

#include <cstdlib>

#include "support/call_sites.hpp"

namespace memlimits::testing::heap_profile_sites {

SITE_NOINLINE static allocation static_allocator(std::size_t bytes) {
  allocation a;
  a.line = __LINE__ + 1;
  a.block = std::malloc(bytes);
  SITE_BARRIER();
  return a;
}

allocation from_static_function(std::size_t bytes) {
  allocation a = static_allocator(bytes);
  SITE_BARRIER();
  return a;
}

allocation from_lambda(std::size_t bytes) {
  auto lambda = [](std::size_t n) SITE_NOINLINE {
    allocation a;
    a.line = __LINE__ + 1;
    a.block = std::malloc(n);
    SITE_BARRIER();
    return a;
  };
  allocation a = lambda(bytes);
  SITE_BARRIER();
  return a;
}

__attribute__((always_inline)) inline allocation inlined_allocator(std::size_t bytes,
                                                                   int caller_line) {
  allocation a;
  a.caller_line = caller_line;
  a.line = __LINE__ + 1;
  a.block = std::malloc(bytes);
  SITE_BARRIER();
  return a;
}

SITE_NOINLINE allocation inlining_allocator(std::size_t bytes) {
  allocation a = inlined_allocator(bytes, __LINE__);
  SITE_BARRIER();
  return a;
}

allocation from_inlined_function(std::size_t bytes) {
  allocation a = inlining_allocator(bytes);
  SITE_BARRIER();
  return a;
}

}  // namespace memlimits::testing::heap_profile_sites
