// An unmodified program (it does not link memlimits) for the heap profile
// tests of the preload library:
//   heap_profile_probe BLOCKS SIZE [THREADS]
// keeps BLOCKS blocks of SIZE bytes from hold_until_exit() live at exit,
// allocates as many from allocate_and_free() and frees them, and with
// THREADS > 0 leaves that many threads allocating and freeing while the
// process exits (each has allocated before the main thread goes on; one that
// has not within 60 s makes the probe exit with status 3). Linked with -rdynamic, so that dladdr names its functions.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

// Never freed: what a heap profile at exit must show.
void** held_blocks = nullptr;

extern "C++" __attribute__((noinline)) void hold_until_exit(long blocks, long size) {
  held_blocks = static_cast<void**>(std::malloc(static_cast<std::size_t>(blocks) * sizeof(void*)));
  for (long i = 0; i < blocks; ++i) {
    char* block = new char[static_cast<std::size_t>(size)];
    std::memset(block, 1, static_cast<std::size_t>(size));
    held_blocks[i] = block;
  }
}

__attribute__((noinline)) void allocate_and_free(long blocks, long size) {
  for (long i = 0; i < blocks; ++i) {
    void* block = std::malloc(static_cast<std::size_t>(size));
    std::memset(block, 2, static_cast<std::size_t>(size));
    std::free(block);
  }
}

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: heap_profile_probe BLOCKS SIZE [THREADS]\n");
    return 2;
  }
  const long blocks = std::atol(argv[1]);
  const long size = std::atol(argv[2]);
  const long threads = argc == 4 ? std::atol(argv[3]) : 0;
  std::atomic<long> started{0};
  for (long t = 0; t < threads; ++t) {
    std::thread([&started] {
      for (unsigned i = 0;; ++i) {
        void* block = std::malloc(64 + i % 4096);
        std::memset(block, 3, 64);
        std::free(block);
        if (i == 0) started.fetch_add(1);
      }
    }).detach();
  }
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (started.load() < threads) {
    if (std::chrono::steady_clock::now() >= give_up) {
      std::fprintf(stderr, "heap_profile_probe: %ld of %ld threads allocated in 60 s\n",
                   started.load(), threads);
      return 3;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  hold_until_exit(blocks, size);
  allocate_and_free(blocks, size);
  return 0;
}
