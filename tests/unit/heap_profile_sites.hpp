// heap_profile_sites.hpp — allocation sites of known shapes for
// heap_profile_test's check of frame names: a static function, a lambda,
// and a function force-inlined into another, each allocating one block with
// malloc and reporting the __LINE__ of that call. heap_profile_sites.cpp is
// compiled -O2 -g whatever the build type (tests/unit/CMakeLists.txt).
#pragma once

#include <cstddef>

namespace memlimits::testing::heap_profile_sites {

struct allocation {
  void* block = nullptr;
  int line = 0;         // the line of the malloc() call
  int caller_line = 0;  // inlined site: the line where its caller calls it
};

allocation from_static_function(std::size_t bytes);
allocation from_lambda(std::size_t bytes);
allocation from_inlined_function(std::size_t bytes);

}  // namespace memlimits::testing::heap_profile_sites
