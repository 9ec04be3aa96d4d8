// unloadable_lib.hpp — the interface of unloadable_lib.cpp, a small shared
// library that the heap profile's tests open with dlopen, allocate through
// and close before they write a profile, so that its frames must be named
// from its file. Two call sites, each through two functions of the library
// that are neither inlined nor exported (only the file's debug information
// and symbol table name them), so that one call site makes one stack.
// Built twice (tests/unit/CMakeLists.txt): unloadable_lib, with functions in
// the namespace unloadable_first, and unloadable_lib_other, the same code in
// the namespace unloadable_other, shifted in its file by some padding code,
// so that its call sites have other return addresses at the same load bias.
#pragma once

#include <cstddef>

// The __LINE__s of the library's calls.
struct memlimits_unloadable_lines {
  int malloc_line;        // make_block's call of malloc
  int first_site_line;    // first_site's call of make_block
  int second_site_line;   // second_site's call of make_block
  int entry_first_line;   // memlimits_unloadable_allocate's call of first_site
  int entry_second_line;  // ... and of second_site
};

// What dlsym finds in the library (extern "C", the only exported names).
// memlimits_unloadable_allocate: `count` blocks of `bytes` bytes from site 1
// (first_site) or 2 (second_site) into blocks[0..count); they belong to the
// caller (std::free), and outlive the library.
using memlimits_unloadable_allocate_fn = void(int site, void** blocks, std::size_t count,
                                              std::size_t bytes);
using memlimits_unloadable_lines_fn = void(memlimits_unloadable_lines* out);
