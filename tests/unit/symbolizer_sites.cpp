// symbolizer_sites.cpp — the sites of symbolizer_sites.hpp: calls whose
// return addresses symbolizer_test names, with the line of each call taken
// from __LINE__ where it is made. Compiled -O2 -g (tests/unit/CMakeLists.txt)
// so that the inlining and the debug info do not depend on the build type.
#include "symbolizer_sites.hpp"

#include "support/call_sites.hpp"

namespace memlimits::testing::symbolizer_sites {
inline namespace MEMLIMITS_SYMBOLIZER_SITES_NS {
namespace {

SITE_NOINLINE void record(call& out, int line) {
  out.return_address = __builtin_return_address(0);
  out.line = line;
  SITE_BARRIER();
}

}  // namespace

SITE_NOINLINE static void static_function(call& out) {
  record(out, __LINE__);
  SITE_BARRIER();
}

void call_static_function(call& out) {
  static_function(out);
  SITE_BARRIER();
}

void call_lambda(call& out) {
  auto lambda = [](call& c) SITE_NOINLINE {
    record(c, __LINE__);
    SITE_BARRIER();
  };
  lambda(out);
  SITE_BARRIER();
}

// `caller_line`: the __LINE__ of the call to this function, in its caller.
__attribute__((always_inline)) inline void inlined_function(inlined_call& out, int caller_line) {
  out.caller_line = caller_line;
  record(out.inner, __LINE__);
  SITE_BARRIER();
}

SITE_NOINLINE void inlining_function(inlined_call& out) {
  inlined_function(out, __LINE__);
  SITE_BARRIER();
}

void call_inlined(inlined_call& out) {
  inlining_function(out);
  SITE_BARRIER();
}

}  // namespace MEMLIMITS_SYMBOLIZER_SITES_NS
}  // namespace memlimits::testing::symbolizer_sites

#ifdef MEMLIMITS_SYMBOLIZER_SITES_LIBRARY
extern "C" __attribute__((visibility("default"))) void memlimits_symbolizer_library_sites(
    memlimits::testing::symbolizer_sites::call* static_call,
    memlimits::testing::symbolizer_sites::inlined_call* inlined) {
  memlimits::testing::symbolizer_sites::call_static_function(*static_call);
  memlimits::testing::symbolizer_sites::call_inlined(*inlined);
}
#endif
