// tracking_design — the measurements behind src/tracking/README.md: what each
// way of recognising sampled blocks at free time costs, on this machine's
// glibc. It does not link memlimits: it measures the building blocks.
//   1. False lookups of the page-alignment design: how often glibc itself
//      returns a page-aligned block (such a free is looked up in the table
//      for nothing), by request size.
//   2. Time of the sampled path's allocation: malloc+free vs
//      memalign(4096)+free (page alignment) vs mmap+munmap of whole pages
//      (a reserved range with a page per sampled block, as GWP-ASan does).
//   3. Memory: a 1 GiB live heap of small blocks where one block per 80 KiB
//      allocated (the default rate, 1e-4 per word) is sampled, with sampled
//      blocks malloc'd (baseline), memalign'd, or given their own pages.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <random>
#include <string>
#include <vector>

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

long rss_kib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

void escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

void false_lookups() {
  std::printf("1. page-aligned blocks returned by glibc malloc (false lookups at free)\n");
  std::printf("%10s %12s %12s\n", "size", "blocks", "aligned");
  std::mt19937_64 rng(1);
  for (std::size_t size : {16, 48, 100, 256, 1000, 4000, 20000, 100000, 300000}) {
    constexpr int n = 200000;
    std::vector<void*> blocks;
    blocks.reserve(n);
    int aligned = 0;
    for (int i = 0; i < n; ++i) {
      // Interleave frees so that the heap is in a realistic, reused state.
      if (!blocks.empty() && rng() % 3 == 0) {
        std::size_t k = rng() % blocks.size();
        std::free(blocks[k]);
        blocks[k] = blocks.back();
        blocks.pop_back();
      }
      void* p = std::malloc(size + rng() % 16);
      if ((reinterpret_cast<std::uintptr_t>(p) & 4095) == 0) ++aligned;
      blocks.push_back(p);
    }
    std::printf("%10zu %12d %11.4f%%\n", size, n, 100.0 * aligned / n);
    for (void* p : blocks) std::free(p);
  }
}

template <class Alloc, class Free>
double ns_per_pair(std::size_t size, Alloc alloc, Free release) {
  constexpr int n = 200000;
  std::vector<void*> held(64, nullptr);
  const double start = now();
  for (int i = 0; i < n; ++i) {
    void*& slot = held[i % held.size()];
    if (slot != nullptr) release(slot, size);
    slot = alloc(size);
    escape(slot);
  }
  const double elapsed = now() - start;
  for (void* p : held) release(p, size);
  return elapsed / n * 1e9;
}

void sampled_path_cost() {
  std::printf("\n2. cost of one allocation+free of a sampled block (ns, 64 live blocks)\n");
  std::printf("%10s %12s %16s %14s\n", "size", "malloc", "memalign(4096)", "mmap pages");
  for (std::size_t size : {16, 256, 4000, 65536}) {
    const double plain = ns_per_pair(size, [](std::size_t s) { return std::malloc(s); },
                                     [](void* p, std::size_t) { std::free(p); });
    const double aligned = ns_per_pair(size, [](std::size_t s) { return memalign(4096, s); },
                                       [](void* p, std::size_t) { std::free(p); });
    const double pages = ns_per_pair(
        size,
        [](std::size_t s) {
          return mmap(nullptr, (s + 4095) & ~std::size_t{4095}, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        },
        [](void* p, std::size_t s) { munmap(p, (s + 4095) & ~std::size_t{4095}); });
    std::printf("%10zu %12.1f %16.1f %14.1f\n", size, plain, aligned, pages);
  }
}

// mode 0: sampled blocks malloc'd (no tracking cost), 1: memalign(4096),
// 2: their own pages.
void memory(int mode, std::size_t live_bytes) {
  std::mt19937_64 rng(7);
  std::vector<std::pair<void*, std::size_t>> blocks;
  blocks.reserve(live_bytes / 40);
  const double rate = 1e-4;  // per 8-byte word
  std::geometric_distribution<std::uint64_t> gap(rate);
  std::int64_t until_sample = static_cast<std::int64_t>(gap(rng));
  std::size_t total = 0, sampled = 0;
  const long before = rss_kib();
  while (total < live_bytes) {
    const std::size_t size = 16 + 8 * (rng() % 60);  // 16..488 bytes
    until_sample -= static_cast<std::int64_t>((size + 7) / 8);
    void* p;
    bool own_pages = false;
    if (until_sample < 0) {
      until_sample = static_cast<std::int64_t>(gap(rng));
      ++sampled;
      if (mode == 1) {
        p = memalign(4096, size);
      } else if (mode == 2) {
        p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        own_pages = true;
      } else {
        p = std::malloc(size);
      }
    } else {
      p = std::malloc(size);
    }
    std::memset(p, 1, size);
    blocks.emplace_back(p, own_pages ? 0 : size);
    total += size;
    // Churn: free a random earlier block now and then, as programs do.
    if (rng() % 4 == 0) {
      std::size_t k = rng() % blocks.size();
      auto [q, s] = blocks[k];
      if (s == 0) munmap(q, 4096); else std::free(q);
      total -= s == 0 ? 0 : s;
      blocks[k] = blocks.back();
      blocks.pop_back();
    }
  }
  const long after = rss_kib();
  static const char* names[] = {"sampled blocks malloc'd (baseline)", "sampled blocks memalign(4096)",
                                "sampled blocks on their own page"};
  std::printf("%-36s live %6.0f MiB, sampled %7zu, RSS %8.1f MiB\n", names[mode],
              static_cast<double>(total) / (1 << 20), sampled,
              static_cast<double>(after - before) / 1024);
  for (auto [q, s] : blocks) {
    if (s == 0) munmap(q, 4096); else std::free(q);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "all";
  if (what == "all" || what == "lookups") false_lookups();
  if (what == "all" || what == "cost") sampled_path_cost();
  if (what.rfind("memory", 0) == 0) {
    // memory0/1/2 in a fresh process each, so RSS is not polluted.
    memory(what[6] - '0', std::size_t{1} << 30);
  }
  return 0;
}
