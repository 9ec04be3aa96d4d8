// heap_profile — the ready heap profiler of memlimits, from code: a
// memlimits::memprof::heap_profile watches a small workload (an image
// buffer, an index of names, a log of lines, and temporary work that is
// freed), then writes the live heap as folded stacks for a flame graph and
// prints the stacks that hold the most. Uses only the public API and the
// hooks (memlimits::hooks replaces operator new and malloc in this program).
//
//   heap_profile_example [FILE]        folded stacks to FILE (default heap.folded)
//   flamegraph.pl --countname bytes FILE > heap.svg    (or open FILE in speedscope)
//
// The same profile of an unmodified program, with the preload library, is
// written when the program exits (folded stacks to FILE, the top table to
// FILE.top):
//   MEMLIMITS_HEAP_PROFILE=heap.folded MEMLIMITS_HEAP_PROFILE_RATE=1e-4 \
//     LD_PRELOAD=path/to/libmemlimits_preload.so ./program
#include <cstddef>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "memlimits/memprof.hpp"

// ---- the workload ----
// External linkage, so that dladdr names them in the profile (the example is
// linked with -rdynamic).

__attribute__((noinline)) std::unique_ptr<char[]> decode_image(std::size_t bytes) {
  std::unique_ptr<char[]> pixels(new char[bytes]);
  for (std::size_t i = 0; i < bytes; i += 4096) pixels[i] = static_cast<char>(i);
  return pixels;
}

__attribute__((noinline)) std::vector<std::string> build_name_index(int names) {
  std::vector<std::string> index;
  index.reserve(static_cast<std::size_t>(names));
  for (int i = 0; i < names; ++i) {
    index.push_back("customer-" + std::to_string(i) + std::string(48, 'x'));
  }
  return index;
}

__attribute__((noinline)) std::deque<std::string> keep_log_lines(int lines) {
  std::deque<std::string> log;
  for (int i = 0; i < lines; ++i) log.push_back("request " + std::to_string(i) + " served");
  return log;
}

// Allocates a lot and frees all of it: nothing of it is live afterwards.
__attribute__((noinline)) std::size_t transient_work(int rounds) {
  std::size_t checksum = 0;
  for (int i = 0; i < rounds; ++i) {
    std::vector<double> scratch(64 * 1024, i);
    checksum += static_cast<std::size_t>(scratch[static_cast<std::size_t>(i) % scratch.size()]);
  }
  return checksum;
}

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "heap.folded";
  // One sample per ~78 KiB allocated.
  memlimits::memprof::heap_profile profile(memlimits::default_sampling_rate, 32);

  auto image = decode_image(32 << 20);
  auto index = build_name_index(100000);
  auto log = keep_log_lines(50000);
  const std::size_t checksum = transient_work(200);  // 100 MiB, all freed

  profile.stop();  // what is live now stays in the profile
  profile.write_folded(path);
  std::printf("memlimits heap_profile example: rate %g, %zu names, %zu log lines, checksum %zu\n",
              memlimits::default_sampling_rate, index.size(), log.size(), checksum);
  std::printf("wrote %zu stacks to %s: flamegraph.pl --countname bytes %s > heap.svg\n\n",
              profile.snapshot().size(), path.c_str(), path.c_str());
  profile.write_top(stdout, 5);
  return 0;
}
