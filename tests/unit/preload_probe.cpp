// An unmodified program (it does not link memlimits) for the preload tests:
// it allocates a known amount, through new[] and malloc, and frees it.
//   preload_probe BLOCKS SIZE
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: preload_probe BLOCKS SIZE\n");
    return 2;
  }
  const long blocks = std::atol(argv[1]);
  const long size = std::atol(argv[2]);
  std::vector<void*> held;
  held.reserve(static_cast<std::size_t>(2 * blocks));
  for (long i = 0; i < blocks; ++i) {
    char* a = new char[static_cast<std::size_t>(size)];
    void* b = std::malloc(static_cast<std::size_t>(size));
    std::memset(a, 1, static_cast<std::size_t>(size));
    std::memset(b, 2, static_cast<std::size_t>(size));
    held.push_back(a);
    held.push_back(b);
  }
  for (std::size_t i = 0; i < held.size(); i += 2) {
    delete[] static_cast<char*>(held[i]);
    std::free(held[i + 1]);
  }
  return 0;
}
