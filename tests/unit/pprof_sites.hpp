// tests/unit/pprof_sites.hpp — allocation sites of known source lines for the
// end-to-end test of heap_profile::write_pprof (pprof_test.cpp): one in a
// `static` function, one in a lambda, one in an ordinary function. Compiled
// with -O2 -g whatever the build type (tests/unit/CMakeLists.txt), so that
// their code and debug information are those of an optimised program.
#pragma once

#include <cstddef>

namespace memlimits::pprof_sites {

// Each allocates blocks[0..count) of `size` bytes each and returns the source
// line of its allocation (in pprof_sites.cpp). The caller frees them with
// the matching function below.
int allocate_in_static_function(void** blocks, std::size_t count, std::size_t size);
int allocate_in_lambda(void** blocks, std::size_t count, std::size_t size);
int allocate_in_function(void** blocks, std::size_t count, std::size_t size);

void free_static_function_blocks(void** blocks, std::size_t count);  // std::free
void free_lambda_blocks(void** blocks, std::size_t count);           // delete[]
void free_function_blocks(void** blocks, std::size_t count);         // operator delete

// The file name of the sites' source, to find them in pprof's output.
inline constexpr const char* source_file_name = "pprof_sites.cpp";

}  // namespace memlimits::pprof_sites
