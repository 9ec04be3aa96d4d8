// bench/bench_profile_write.cpp — what writing a heap profile costs: the
// time and the peak memory of heap_profile::write_pprof (symbolized from
// DWARF, protobuf, gzip) beside write_folded (text), to a file;
// and write_pprof's two parts apart: the symbolizer alone on the profile's
// distinct return addresses, and the encoding and gzip alone with the
// symbols already known (in memory). Not part of the library's layers: a
// program of its own, which reaches the internal headers of layer 6.
//
// The profile: exactly 10,000 live samples in 1,024 distinct callstacks of
// 20 frames of this program (plus main and the C library's start-up), at
// rate 1 with 8-byte blocks, where each block is exactly one sample. The
// stacks come from a chain of 20 functions, level<N, B>, where each of the
// first 10 levels calls one of two functions of the next (B: which), so
// that the 2^10 paths give 1,024 stacks that share most of their frames (53
// distinct return addresses), as real programs' stacks do.
//
// Time: the first run of each row, then the median and minimum of --runs
// more. A profile keeps its symbolizer and the names it found across
// writes: only its first write (the first run of write_pprof) reads the
// debug information, and every later write of either format finds the
// names known. The "symbolize" row builds a symbolizer of its own at every
// run: what naming the frames costs a profile's first write (with the page
// cache warm after the first run).
// Peak memory: the growth of the peak resident set (VmHWM) over one run in
// a child forked for it before the parent ran anything, after
// malloc_trim(0) and a reset of VmHWM (writing 5 to /proc/self/clear_refs),
// so that it counts every page the run touched that was not resident
// before: heap, the writer's buffers, and the pages of the object files and
// debug information it mapped and read. Page-granular; the kernel's RSS
// counters may lag by a few pages.
//
// usage: bench_profile_write [--runs N]   (default 9)
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "memlimits/memprof.hpp"
#include "memprof/pprof.hpp"
#include "memprof/symbolizer.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using memlimits::memprof::heap_profile;
namespace detail = memlimits::memprof::detail;

constexpr int chain_depth = 20;
constexpr int branching_levels = 10;  // 2^10 = 1,024 distinct stacks
constexpr std::size_t live_blocks = 10'000;

inline void sink(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

// Written by each level with its own B, so that level<N, 0> and level<N, 1>
// differ in code and identical code folding (-fipa-icf) cannot merge them.
volatile int branch_taken = 0;

// One frame of the chain. Each level is a function of its own, and B makes
// the two callees of a branching level distinct functions, so that the
// compiler cannot merge the two calls into one call site. The sink after
// each call keeps it from being a tail call (which would drop the frame).
template <int N, int B>
__attribute__((noinline)) void level(unsigned path, void** out) {
  branch_taken = B;
  if constexpr (N == chain_depth - 1) {
    *out = ::operator new(8);  // one word: one sample at rate 1
    sink(*out);
  } else if constexpr (N < branching_levels) {
    if ((path >> N) & 1u) {
      level<N + 1, 1>(path, out);
    } else {
      level<N + 1, 0>(path, out);
    }
    sink(out);
  } else {
    level<N + 1, 0>(path, out);
    sink(out);
  }
}

// VmHWM of this process, in KiB; -1 if unknown.
long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

// The growth of VmHWM over write(), in a child of its own (see the file
// comment); -1 if it could not be measured.
long peak_growth_kib(const std::function<void()>& write) {
  int pipe_ends[2];
  if (::pipe(pipe_ends) != 0) return -1;
  const pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    ::close(pipe_ends[0]);
    ::malloc_trim(0);
    long growth = -1;
    if (std::FILE* clear = std::fopen("/proc/self/clear_refs", "w")) {
      const bool reset = std::fputs("5", clear) >= 0;
      if (std::fclose(clear) == 0 && reset) {
        const long before = peak_rss_kib();
        write();
        growth = peak_rss_kib() - before;
      }
    }
    const ssize_t written = ::write(pipe_ends[1], &growth, sizeof growth);
    ::_exit(written == sizeof growth ? 0 : 1);
  }
  ::close(pipe_ends[1]);
  long growth = -1;
  if (::read(pipe_ends[0], &growth, sizeof growth) != sizeof growth) growth = -1;
  ::close(pipe_ends[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  return growth;
}

double milliseconds(const std::function<void()>& write) {
  const auto start = clock_type::now();
  write();
  return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
}

struct row {
  const char* name;
  double first_ms;
  double median_ms;
  double min_ms;
  long peak_kib;
  std::uintmax_t bytes;
};

}  // namespace

int main(int argc, char** argv) {
  int runs = 9;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--runs N]\n", argv[0]);
      return 2;
    }
  }

  std::vector<void*> blocks(live_blocks);  // before the profile: not sampled
  heap_profile profile(1.0, heap_profile::default_callstack_size);
  for (std::size_t i = 0; i < live_blocks; ++i) {
    level<0, 0>(static_cast<unsigned>(i % (1u << branching_levels)), &blocks[i]);
  }
  profile.stop();  // the writes' own allocations stay out of the profile

  const std::vector<memlimits::memprof::heap_stack> stacks = profile.snapshot();
  std::uint64_t samples = 0;
  std::size_t deepest = 0;
  for (const auto& s : stacks) {
    samples += s.samples;
    deepest = std::max(deepest, s.frames.size());
  }
  std::printf(
      "profile: %llu live samples in %zu stacks of up to %zu frames (rate 1, 8-byte "
      "blocks)\n",
      static_cast<unsigned long long>(samples), stacks.size(), deepest);
  if (samples != live_blocks) {
    std::fprintf(stderr, "expected exactly %zu live samples\n", live_blocks);
    return 1;
  }

  const std::string base = (std::filesystem::temp_directory_path() /
                            ("bench_profile_write." + std::to_string(::getpid())))
                               .string();
  const std::string pprof_path = base + ".pb.gz";
  const std::string folded_path = base + ".folded";
  const std::function<void()> write_pprof = [&] { profile.write_pprof(pprof_path); };
  const std::function<void()> write_folded = [&] { profile.write_folded(folded_path); };

  // write_pprof's two parts, apart: the symbolizer on the distinct frames,
  // then the encoding and gzip of the snapshot with the symbols already
  // known (in memory: no file).
  std::vector<std::uintptr_t> pcs;
  for (const auto& s : stacks) {
    for (void* f : s.frames) pcs.push_back(reinterpret_cast<std::uintptr_t>(f) - 1);
  }
  std::sort(pcs.begin(), pcs.end());
  pcs.erase(std::unique(pcs.begin(), pcs.end()), pcs.end());
  const std::function<void()> symbolize = [&] {
    detail::symbolizer names;
    for (std::uintptr_t pc : pcs) sink(&names.symbolize(pc));
  };
  std::unordered_map<std::uintptr_t, detail::pprof_symbols> known;
  {
    detail::symbolizer names;
    for (std::uintptr_t pc : pcs) {
      const detail::symbolized& s = names.symbolize(pc);
      detail::pprof_symbols& k = known[pc];
      k.module = s.module;
      k.module_base = s.module_base;
      for (const auto& f : s.frames)
        k.lines.push_back({f.function, f.linkage_name, f.file, f.line, 0});
    }
  }
  std::size_t encoded_bytes = 0;
  const std::function<void()> encode = [&] {
    const std::vector<detail::pprof_mapping> mappings = detail::read_mappings();
    const std::string encoded = detail::encode_profile(
        profile.snapshot(), 1.0, [&](std::uintptr_t pc) { return known.at(pc); }, mappings, 1);
    encoded_bytes = detail::gzip(encoded).size();
  };

  struct job {
    const char* name;
    const std::function<void()>* write;
    const std::string* path;  // the file written, or nullptr
  };
  const job jobs[] = {{"write_pprof", &write_pprof, &pprof_path},
                      {"write_folded", &write_folded, &folded_path},
                      {"  symbolize", &symbolize, nullptr},
                      {"  encode+gzip", &encode, nullptr}};

  // Memory first, in children forked before any write of the parent.
  std::vector<row> rows;
  for (const job& j : jobs) rows.push_back({j.name, 0, 0, 0, peak_growth_kib(*j.write), 0});
  for (std::size_t k = 0; k < std::size(jobs); ++k) {
    row& r = rows[k];
    r.first_ms = milliseconds(*jobs[k].write);
    std::vector<double> times;
    for (int i = 0; i < runs; ++i) times.push_back(milliseconds(*jobs[k].write));
    std::sort(times.begin(), times.end());
    r.median_ms = times[times.size() / 2];
    r.min_ms = times.front();
    if (jobs[k].path != nullptr) {
      r.bytes = std::filesystem::file_size(*jobs[k].path);
    } else if (jobs[k].write == &encode) {
      r.bytes = encoded_bytes;  // gzip-compressed, as write_pprof's file
    }
  }

  std::printf("%zu distinct return addresses\n", pcs.size());
  std::printf("%-14s %10s %12s %9s %15s %11s\n", "writer", "first ms",
              ("median/" + std::to_string(runs) + " ms").c_str(), "min ms", "peak RSS +KiB",
              "out bytes");
  for (const row& r : rows) {
    const std::string bytes = r.bytes != 0 ? std::to_string(r.bytes) : "-";
    std::printf("%-14s %10.2f %12.2f %9.2f %15ld %11s\n", r.name, r.first_ms, r.median_ms, r.min_ms,
                r.peak_kib, bytes.c_str());
  }

  std::remove(pprof_path.c_str());
  std::remove(folded_path.c_str());
  for (void* b : blocks) ::operator delete(b);
  return 0;
}
