// bench/memory_overhead.cpp — the memory that tracking sampled blocks costs,
// on a large live heap.
//
// Built twice (bench/CMakeLists.txt): memory_overhead_plain (glibc directly)
// and memory_overhead_hooks (memlimits::hooks at the default rate 1e-4, no
// profile: the base accounting alone records every sampled block). Both build
// the same heap, deterministically:
//   fill  — blocks until --live-mib MiB are live: by default 99.5% of the
//           blocks are small objects of 16-512 bytes, half through
//           ::operator new and half through malloc; 0.5% are 4-64 KiB buffers
//           from malloc (about 60% of the bytes in small objects, 40% in
//           buffers);
//   churn — as many times as there are blocks (--churn): free a random block and
//           allocate a new one of a fresh random size, so that the heap is
//           fragmented as a long-running program's is, with the same live
//           total on average;
// every byte of every block is written, so that it is resident. Then it
// reports what the operating system and glibc see. The overhead of the hooks
// is (rss_hooks - rss_plain) / live_bytes, computed by run_paired.sh from the
// medians of paired runs; the hooks build also reports its own metadata
// (tracking::stats()) and the blocks it tracks.
//
// Options: --live-mib M (default 1024); --large-permille N (default 5): the
// share of 4-64 KiB buffers among the blocks, per thousand (0: small objects
// only; 1000: buffers only); --churn F (default 1): churn steps per block
// (0: the heap as filled).
// Output (one line, parsed by run_paired.sh):
//   live_bytes=.. blocks=.. rss_delta=.. heap_in_use=.. heap_free=.. mmapped=..
//   [metadata_bytes=.. tracked_blocks=.. live_estimate=..]
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

#include "bench_rng.hpp"

#if defined(MEMLIMITS_BENCH_HOOKS)
#  include "core/subscribers.hpp"
#  include "tracking/tracking.hpp"
#endif

namespace {


// Resident bytes of the process, from /proc/self/statm (no allocation).
std::uint64_t resident_bytes() {
  char text[256] = {};
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  const std::size_t n = std::fread(text, 1, sizeof text - 1, f);
  std::fclose(f);
  text[n] = '\0';
  unsigned long long size = 0, resident = 0;
  if (std::sscanf(text, "%llu %llu", &size, &resident) != 2) return 0;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// A block: its address, size and the entry point that allocated it.
struct block {
  void* address;
  std::uint32_t size;
  bool from_new;
};

// Blocks per thousand that are 4-64 KiB buffers (--large-permille).
std::uint64_t large_permille = 5;
// Churn steps per block (--churn).
double churn = 1.0;

block make_block(rng& r) {
  block b{};
  if (r.below(1000) >= large_permille) {
    b.size = static_cast<std::uint32_t>(16 + 8 * r.below(63));  // 16..512
    b.from_new = r.below(2) == 0;
  } else {
    b.size = static_cast<std::uint32_t>(4096 + 64 * r.below(961));  // 4..64 KiB
    b.from_new = false;
  }
  b.address = b.from_new ? ::operator new(b.size) : std::malloc(b.size);
  if (b.address == nullptr) std::abort();
  std::memset(b.address, static_cast<int>(b.size & 0xFF), b.size);
  return b;
}

void free_block(const block& b) {
  if (b.from_new) {
    ::operator delete(b.address);
  } else {
    std::free(b.address);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t live_mib = 1024;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--live-mib" && i + 1 < argc) {
      live_mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::string_view(argv[i]) == "--large-permille" && i + 1 < argc) {
      large_permille = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::string_view(argv[i]) == "--churn" && i + 1 < argc) {
      churn = std::strtod(argv[++i], nullptr);
    } else {
      std::fprintf(stderr, "usage: %s [--live-mib M] [--large-permille N] [--churn F]\n", argv[0]);
      return 2;
    }
  }
  const std::uint64_t target = live_mib << 20;

  // The index of blocks lives outside malloc, so that only the blocks
  // themselves are on the heap. Sized for the worst case (all 16-byte blocks).
  const std::size_t capacity = target / 16 + 1;
  auto* blocks = static_cast<block*>(::mmap(nullptr, capacity * sizeof(block),
                                            PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (blocks == MAP_FAILED) return 1;

  const std::uint64_t rss_before = resident_bytes();
  rng r{0x6D656D6F7279ull};
  std::size_t count = 0;
  std::uint64_t live = 0;
  while (live < target) {
    blocks[count] = make_block(r);
    live += blocks[count].size;
    ++count;
  }
  const auto steps = static_cast<std::size_t>(churn * static_cast<double>(count));
  for (std::size_t step = 0; step < steps; ++step) {
    block& victim = blocks[r.below(count)];
    live -= victim.size;
    free_block(victim);
    victim = make_block(r);
    live += victim.size;
  }
  // The index's own pages, touched above, are not heap.
  const std::uint64_t index_bytes = (count * sizeof(block) + 4095) & ~std::uint64_t{4095};
  const std::uint64_t rss_delta = resident_bytes() - rss_before - index_bytes;

  const struct mallinfo2 info = ::mallinfo2();
  std::printf("live_bytes=%" PRIu64 " blocks=%zu rss_delta=%" PRIu64
              " heap_in_use=%zu heap_free=%zu mmapped=%zu",
              live, count, rss_delta, info.uordblks, info.fordblks, info.hblkhd);
#if defined(MEMLIMITS_BENCH_HOOKS)
  const auto stats = memlimits::tracking::stats();
  std::printf(" metadata_bytes=%zu tracked_blocks=%zu live_estimate=%" PRId64
              " range_used=%zu range_dirty=%zu untracked=%" PRIu64,
              stats.metadata_bytes, stats.tracked_blocks,
              memlimits::core::live_heap_estimate(), stats.range_used_bytes,
              stats.range_free_dirty_bytes, stats.untracked_blocks);
#endif
  std::printf("\n");

  // Freeing everything is part of the program, not of the measurement.
  for (std::size_t i = 0; i < count; ++i) free_block(blocks[i]);
  ::munmap(blocks, capacity * sizeof(block));
  return 0;
}
