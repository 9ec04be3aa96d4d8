// tests/support/call_sites.hpp — for test functions whose calls must keep
// their own frames and return addresses (the sites that symbolizer_test and
// heap_profile_test name by file and line).
#pragma once

// noinline, and for GCC noipa: no clone (f.isra.0), no identical-code
// folding of two sites, no call made a jump.
#if defined(__clang__)
#  define SITE_NOINLINE __attribute__((noinline))
#else
#  define SITE_NOINLINE __attribute__((noinline, noipa))
#endif

// After a call, so that it is not a tail call: its return address stays in
// the function that made it.
#define SITE_BARRIER() asm volatile("" ::: "memory")
