// An unmodified program (it does not link memlimits) for the preload tests:
// it allocates a known amount, through new[] and malloc, and frees it.
//   preload_probe BLOCKS SIZE [fds]
// With "fds", it then prints the names of its open descriptors, one per
// line, sorted (the directory stream's own descriptor among them).
#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

void print_descriptors() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    std::perror("opendir /proc/self/fd");
    std::exit(3);
  }
  std::vector<int> fds;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') fds.push_back(std::atoi(entry->d_name));
  }
  ::closedir(dir);
  std::sort(fds.begin(), fds.end());
  for (const int fd : fds) std::printf("%d\n", fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && !(argc == 4 && std::strcmp(argv[3], "fds") == 0)) {
    std::fprintf(stderr, "usage: preload_probe BLOCKS SIZE [fds]\n");
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
  if (argc == 4) print_descriptors();
  return 0;
}
