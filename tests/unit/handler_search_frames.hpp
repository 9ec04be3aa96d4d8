// The frame shapes of handler_search_frames.cpp, one table per compiler and
// optimisation level (tests/unit/CMakeLists.txt builds the variants).
#pragma once

#include <cstddef>

namespace handler_frames {

using probe_fn = void (*)();

// What a limit_reached thrown from inside `probe` meets, given a handler
// for it in the function that calls the shape.
enum class expect { caught, terminates };

struct shape {
  const char* name;
  void (*run)(probe_fn probe);
  expect outcome;
};

#define MEMLIMITS_FRAMES_VARIANT(variant)   \
  namespace variant {                       \
  extern const shape shapes[];              \
  extern const std::size_t shape_count;     \
  }
MEMLIMITS_FRAMES_VARIANT(gcc_O0)
MEMLIMITS_FRAMES_VARIANT(gcc_O2)
MEMLIMITS_FRAMES_VARIANT(clang_O0)
MEMLIMITS_FRAMES_VARIANT(clang_O2)
#undef MEMLIMITS_FRAMES_VARIANT

}  // namespace handler_frames
