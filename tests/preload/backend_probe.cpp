// tests/preload/backend_probe.cpp — an unmodified program (no memlimits in
// it) that tells which allocator its blocks come from, for the backend
// tests of the preload library (backend_preload.sh): run as
//   LD_PRELOAD="libmemlimits_preload.so libjemalloc.so.2" backend_probe jemalloc
// it allocates 3,000 blocks of 64 bytes through malloc,
// calloc, realloc, the aligned functions and operator new, keeps them, and
// asks the backend named on its command line, through the API it finds in
// the process (dlsym), how many of those bytes it holds:
//   jemalloc  mallctl("thread.allocated"): bytes this thread allocated
//   tcmalloc  MallocExtension_GetNumericProperty("generic.current_allocated_bytes")
//   mimalloc  mi_is_in_heap_region(p) for each block
//   glibc     mallinfo2(): the bytes glibc's heap holds in use
// and how much glibc's heap grew (mallinfo2). Exit 0 when at least 90% of
// the bytes are the named backend's and, for another backend than glibc,
// glibc's heap grew by less than 10% of them. The 10% allow for sampled
// blocks, which memlimits may keep elsewhere: at the rate 0.001 a block of
// 64 bytes (8 words) is sampled with probability 0.8%.
// Then it allocates and frees 64 MiB more, so that the summary has samples.
#include <dlfcn.h>
#include <malloc.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

namespace {

template <class F>
F find(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_DEFAULT, name));
}

std::size_t glibc_in_use() {
  const struct mallinfo2 info = ::mallinfo2();
  return info.uordblks + info.hblkhd;
}

// Bytes the backend holds (or has allocated on this thread): -1 if it
// cannot be asked.
long long backend_counter(std::string_view backend) {
  if (backend == "jemalloc") {
    using fn = int (*)(const char*, void*, std::size_t*, void*, std::size_t);
    auto mallctl = find<fn>("mallctl");
    if (mallctl == nullptr) return -1;
    std::uint64_t epoch = 1;
    std::size_t length = sizeof epoch;
    mallctl("epoch", &epoch, &length, &epoch, sizeof epoch);
    std::uint64_t allocated = 0;
    length = sizeof allocated;
    if (mallctl("thread.allocated", &allocated, &length, nullptr, 0) != 0) return -1;
    return static_cast<long long>(allocated);
  }
  if (backend == "tcmalloc") {
    using fn = int (*)(const char*, std::size_t*);
    auto get = find<fn>("MallocExtension_GetNumericProperty");
    std::size_t value = 0;
    if (get == nullptr || get("generic.current_allocated_bytes", &value) == 0) return -1;
    return static_cast<long long>(value);
  }
  if (backend == "glibc") return static_cast<long long>(glibc_in_use());
  return -1;
}

void* opaque(void* p) {
  asm volatile("" : "+r"(p));
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: backend_probe glibc|jemalloc|mimalloc|tcmalloc\n");
    return 2;
  }
  const std::string_view backend = argv[1];
  using owns_fn = bool (*)(const void*);
  auto mi_owns = find<owns_fn>("mi_is_in_heap_region");
  if (backend == "mimalloc" && mi_owns == nullptr) {
    std::printf("mimalloc is not loaded\n");
    return 1;
  }

  struct block {
    void* p;
    std::size_t size;
    bool is_new;
  };
  std::vector<block> blocks;
  blocks.reserve(3000);  // before the counters are read
  const std::size_t glibc_before = glibc_in_use();
  const long long counter_before = backend_counter(backend);
  std::size_t bytes = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::size_t n = 64;
    void* p = nullptr;
    bool is_new = false;
    switch (i % 8) {
      case 0: p = std::malloc(n); break;
      case 1: p = std::calloc(n / 8, 8); break;
      case 2: p = std::realloc(std::malloc(16), n); break;
      case 3: p = ::memalign(64, n); break;
      case 4: p = std::aligned_alloc(128, n); break;
      case 5:
        if (::posix_memalign(&p, 256, n) != 0) p = nullptr;
        break;
      case 6: p = ::valloc(n); break;
      default: p = ::operator new(n); is_new = true; break;
    }
    if (p == nullptr) {
      std::printf("allocation %d of %zu bytes failed\n", i, n);
      return 1;
    }
    std::memset(opaque(p), 1, n);
    blocks.push_back({p, n, is_new});
    bytes += n;
  }
  const long long counter_after = backend_counter(backend);
  const std::size_t glibc_after = glibc_in_use();

  long long held = -1;
  if (backend == "mimalloc") {
    held = 0;
    for (const block& b : blocks) {
      if (mi_owns(b.p)) held += static_cast<long long>(b.size);
    }
  } else if (counter_before >= 0 && counter_after >= 0) {
    held = counter_after - counter_before;
  }
  const long long glibc_growth =
      static_cast<long long>(glibc_after) - static_cast<long long>(glibc_before);
  std::printf("%s holds %lld of %zu bytes; glibc's heap grew by %lld bytes\n", argv[1], held,
              bytes, glibc_growth);
  for (const block& b : blocks) {
    if (b.is_new) {
      ::operator delete(b.p);
    } else {
      std::free(b.p);
    }
  }
  for (int i = 0; i < 1024; ++i) std::free(opaque(std::malloc(64 * 1024)));

  const bool backend_holds = held >= static_cast<long long>(bytes) * 9 / 10;
  const bool glibc_quiet =
      backend == "glibc" || glibc_growth < static_cast<long long>(bytes) / 10;
  std::printf("%s\n", backend_holds && glibc_quiet ? "ok" : "FAILED");
  return backend_holds && glibc_quiet ? 0 : 1;
}
