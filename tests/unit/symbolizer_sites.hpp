// symbolizer_sites.hpp — functions of known shapes for symbolizer_test: a
// static function, a lambda, and a function force-inlined into another, each
// recording the return address of a call it makes with the line of that
// call. symbolizer_sites.cpp is compiled -O2 -g whatever the build type,
// into the test program and, again, into a small shared library
// (MEMLIMITS_SYMBOLIZER_SITES_LIBRARY) that the test loads with dlopen.
#pragma once

// The program's sites and the library's have distinct names.
#ifdef MEMLIMITS_SYMBOLIZER_SITES_LIBRARY
#  define MEMLIMITS_SYMBOLIZER_SITES_NS in_library
#else
#  define MEMLIMITS_SYMBOLIZER_SITES_NS in_program
#endif

namespace memlimits::testing::symbolizer_sites {

// A call made by a site: its return address, and the __LINE__ of the call.
struct call {
  void* return_address = nullptr;
  int line = 0;
};

// A call made by a function inlined into another: `inner` is the call made in
// the inlined function; `caller_line` the line where the caller calls it.
struct inlined_call {
  call inner;
  int caller_line = 0;
};

inline namespace MEMLIMITS_SYMBOLIZER_SITES_NS {

// Through a static function, static_function().
void call_static_function(call& out);
// Through a lambda of call_lambda().
void call_lambda(call& out);
// Through inlined_function(), force-inlined into inlining_function().
void call_inlined(inlined_call& out);

}  // namespace MEMLIMITS_SYMBOLIZER_SITES_NS
}  // namespace memlimits::testing::symbolizer_sites

// The library's entry point, for dlsym: runs its static-function and inlined
// sites.
using memlimits_symbolizer_library_sites_fn =
    void(memlimits::testing::symbolizer_sites::call*,
         memlimits::testing::symbolizer_sites::inlined_call*);
