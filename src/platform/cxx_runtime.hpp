// platform/cxx_runtime.hpp — the C++ runtime whose state the program
// observes, for what the hooks do on behalf of the program's operator new:
// its new_handler, the std::bad_alloc it throws, the handler's exceptions
// that a nothrow operator new swallows, and its count of uncaught exceptions.
//
// In the library and the hooks linked into a program there is one C++
// runtime, the program's: these are std::get_new_handler(),
// `throw std::bad_alloc()`, a try/catch and std::uncaught_exceptions().
// libmemlimits_preload.so (built with MEMLIMITS_PRELOAD_BUILD) carries
// private, static copies of libstdc++ and of libgcc's unwinder, whose
// new_handler, per-thread exception counters (__cxa_get_globals) and
// unwinder state are not the program's. An exception must then be thrown,
// unwound and caught by one runtime only: the two unwinders do not share
// their state (a personality routine of one copy cannot install a handler
// for the other's unwinder: libgcc aborts), and the counters of
// std::uncaught_exceptions() are per copy. So in that build the functions
// below reach the program's runtime by its dynamic symbols, looked up at
// first need: in the global scope, else in the scope of the object that
// called operator new (`caller`: a C++ library loaded with RTLD_LOCAL, e.g.
// a Python extension, and its own libstdc++). The library's frames on the
// way of the program's exceptions (the hooks' operator new) have no landing
// pads, so that only the program's personality routines run. Only when the
// program has no C++ runtime in reach do they fall back to the library's own
// copy. They run on the failure path of operator new, never on the
// allocation fast path.
// Layer 1: depends on nothing in memlimits (the Itanium C++ ABI's symbol
// names, the dynamic loader's dlsym).
#pragma once

#include <cstddef>
#include <new>

namespace memlimits::platform::cxx_runtime {

// The program's current new_handler (std::get_new_handler), or nullptr.
std::new_handler new_handler(const void* caller) noexcept;

// Throws std::bad_alloc through the program's runtime (std::__throw_bad_alloc),
// so that the program's catch and its std::uncaught_exceptions() see an
// exception of their own.
[[noreturn]] void throw_bad_alloc(const void* caller);

// For a nothrow operator new (`alignment` 0: not an align_val_t form) whose
// allocation failed while a new_handler is installed: the rest of the
// standard's loop, through the program's runtime's own nothrow operator new,
// which calls the (replaced) throwing operator new inside its own try/catch
// (the default behaviour of [new.delete.single]: "calls operator new(size);
// if the call returns normally, returns its result, otherwise nullptr"), so
// that an exception the handler throws is thrown and caught by the program's
// runtime. Sets `result` and returns true; false when there is no such
// function: then the caller runs the loop with call_new_handler_nothrow().
bool nothrow_new_in_program(std::size_t bytes, std::size_t alignment, const void* caller,
                            void*& result) noexcept;

// Calls `handler` for a nothrow operator new in this library's runtime:
// true when it returned, false when it threw std::bad_alloc, caught here.
// Any other exception propagates (into the nothrow operator's noexcept:
// std::terminate). For one runtime only (see nothrow_new_in_program).
bool call_new_handler_nothrow(std::new_handler handler);

// std::uncaught_exceptions() of the program's runtime (of the global scope).
int uncaught_exceptions() noexcept;

}  // namespace memlimits::platform::cxx_runtime
