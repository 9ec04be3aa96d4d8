// A shared library that allocates in its constructor and frees in its
// destructor, as libraries with global tables do: the loader runs its
// constructor before a preloaded library's and its destructor after. The
// preload tests check that both are seen. Plain C calls only, so that no C++
// runtime allocates beside it.
#include <cstdlib>
#include <cstring>

enum { startup_blocks = 1000, startup_block_size = 18500 };
static void* startup_table[startup_blocks];

__attribute__((constructor)) static void build_startup_table() {
  for (int i = 0; i < startup_blocks; ++i) {
    startup_table[i] = std::malloc(startup_block_size);
    if (startup_table[i] != nullptr) std::memset(startup_table[i], i & 0xff, startup_block_size);
  }
}

__attribute__((destructor)) static void free_startup_table() {
  for (int i = 0; i < startup_blocks; ++i) std::free(startup_table[i]);
}

// The program calls it, so that the linker keeps the library as needed.
extern "C" int startup_table_checksum() {
  int sum = 0;
  for (int i = 0; i < startup_blocks; ++i) {
    if (startup_table[i] != nullptr) sum += static_cast<unsigned char*>(startup_table[i])[0];
  }
  return sum;
}
