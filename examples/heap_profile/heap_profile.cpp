// heap_profile — the ready heap profiler of memlimits, from code: a
// memlimits::memprof::heap_profile watches a small workload (an image
// buffer, an index of names, a log of lines, and temporary work that is
// freed), then writes the live heap as folded stacks for a flame graph and
// prints the stacks that hold the most. Uses only the public API and the
// hooks (memlimits::hooks replaces operator new and malloc in this program).
//
//   heap_profile_example [PREFIX]      folded stacks to PREFIX.folded and pprof's
//                                      format to PREFIX.pb.gz (default PREFIX: heap)
//   flamegraph.pl --countname bytes heap.folded > heap.svg   (or open it in speedscope)
//   go tool pprof -top heap.pb.gz                             (or -http=: for its web UI)
//
// The same profile of an unmodified program, with the preload library, is
// written when the program exits (to FILE: pprof's format if its name ends
// in .pb.gz, else folded stacks; the top table to FILE.top):
//   MEMLIMITS_HEAP_PROFILE=heap.pb.gz MEMLIMITS_HEAP_PROFILE_RATE=1e-4 \
//     LD_PRELOAD=path/to/libmemlimits_preload.so ./program
#include <cstddef>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "memlimits/memprof.hpp"

// ---- the workload ----
// Named in the profile from the program's debug information (built with -g:
// RelWithDebInfo), else from its symbol table.

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
  const std::string prefix = argc > 1 ? argv[1] : "heap";
  const std::string folded = prefix + ".folded";
  const std::string pprof = prefix + ".pb.gz";
  // One sample per ~78 KiB allocated.
  memlimits::memprof::heap_profile profile(memlimits::default_sampling_rate, 32);

  auto image = decode_image(32 << 20);
  auto index = build_name_index(100000);
  auto log = keep_log_lines(50000);
  const std::size_t checksum = transient_work(200);  // 100 MiB, all freed

  profile.stop();  // what is live now stays in the profile
  profile.write_folded(folded);
  profile.write_pprof(pprof);
  std::printf("memlimits heap_profile example: rate %g, %zu names, %zu log lines, checksum %zu\n",
              memlimits::default_sampling_rate, index.size(), log.size(), checksum);
  std::printf("wrote %zu stacks to %s (flamegraph.pl --countname bytes %s > heap.svg, or "
              "speedscope) and to %s (go tool pprof -top %s)\n\n",
              profile.snapshot().size(), folded.c_str(), folded.c_str(), pprof.c_str(),
              pprof.c_str());
  profile.write_top(stdout, 5);
  return 0;
}
