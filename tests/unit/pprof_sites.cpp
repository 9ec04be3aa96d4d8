// tests/unit/pprof_sites.cpp — the allocation sites of pprof_sites.hpp.
// Each site records the line of its allocation with AT_LINE, which evaluates
// __LINE__ where it is written: on the line of the call. No site returns
// the result of its allocation, so that no call to the allocator is a tail
// call (which would take the site's frame off the stack).
#include "pprof_sites.hpp"

#include <cstdlib>
#include <new>

// The line of this macro's use, stored in `line`, then `expression`.
#define AT_LINE(line, expression) ((line) = __LINE__, (expression))

namespace memlimits::pprof_sites {
namespace {

// Keeps the compiler from dropping or merging the blocks' stores.
inline void escape(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

}  // namespace

// noinline: internal linkage would otherwise let it dissolve into its
// caller, and the test wants this function as the site's frame (a static
// function has no dynamic symbol: only debug information names it).
static __attribute__((noinline)) int static_site(void** blocks, std::size_t count,
                                                 std::size_t size) {
  int line = 0;
  for (std::size_t i = 0; i < count; ++i) {
    blocks[i] = AT_LINE(line, std::malloc(size));
    escape(blocks[i]);
  }
  return line;
}

int allocate_in_static_function(void** blocks, std::size_t count, std::size_t size) {
  const int line = static_site(blocks, count, size);
  escape(blocks);
  return line;
}

// The lambda is called from one place: GCC and clang inline it at -O2, so
// that the site's location holds two functions, the lambda then its caller.
__attribute__((noinline)) int allocate_in_lambda(void** blocks, std::size_t count,
                                                 std::size_t size) {
  int line = 0;
  const auto allocate = [&](std::size_t i) { blocks[i] = AT_LINE(line, new char[size]); };
  for (std::size_t i = 0; i < count; ++i) {
    allocate(i);
    escape(blocks[i]);
  }
  return line;
}

__attribute__((noinline)) int allocate_in_function(void** blocks, std::size_t count,
                                                   std::size_t size) {
  int line = 0;
  for (std::size_t i = 0; i < count; ++i) {
    blocks[i] = AT_LINE(line, ::operator new(size));
    escape(blocks[i]);
  }
  return line;
}

void free_static_function_blocks(void** blocks, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) std::free(blocks[i]);
}

void free_lambda_blocks(void** blocks, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) delete[] static_cast<char*>(blocks[i]);
}

void free_function_blocks(void** blocks, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) ::operator delete(blocks[i]);
}

}  // namespace memlimits::pprof_sites
