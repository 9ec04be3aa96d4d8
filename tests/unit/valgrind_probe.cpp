// A tiny program linked with memlimits::hooks, run by valgrind_warning_test
// under valgrind's tools. Its start-up check (src/hooks/valgrind_check.cpp)
// writes the warning, or not; the program itself only allocates a little, so
// that valgrind has something to see, and, with an argument, says whether
// its own allocations reached memlimits' hooks.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/sampler.hpp"

int main(int argc, char** argv) {
  const std::uint64_t before = memlimits::core::stream_position();
  auto block = std::make_unique<char[]>(64);
  void* volatile p = std::malloc(32);
  std::free(p);
  const std::uint64_t after = memlimits::core::stream_position();
  if (argc > 1 && std::strcmp(argv[1], "--report") == 0) {
    std::printf("hooks %s\n", after != before ? "called" : "not called");
  }
  return block[0];
}
