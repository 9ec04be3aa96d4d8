// tests/unit/backend_test.cpp — the allocator backends
// (platform/system_allocator.hpp, cmake/backends.cmake): built once per
// backend (backend_test_<name>, linked with memlimits::<name>) and once on
// glibc (backend_test_glibc), and once on a test backend of its own that
// defines only malloc, free, realloc, memalign and malloc_usable_size
// (backend_test_minimal: backend_minimal_allocator.cpp, whose blocks glibc's
// free rejects and whose free rejects any other block).
//  * The resolution chose the backend's object, and emulates exactly the
//    functions the backend lacks.
//  * Unsampled blocks come from the backend: with sampling off (every
//    request takes the fast path), each function of the family, called
//    through the hooks and on platform::system directly, returns a block the
//    backend's own API recognises (jemalloc: mallctl("arenas.lookup") and
//    sallocx; mimalloc: mi_is_in_heap_region and mi_usable_size; tcmalloc:
//    MallocExtension_GetOwnership and tc_malloc_size; minimal: its header),
//    of the size malloc_usable_size reports; and glibc's heap
//    (mallinfo2) grows by what they hold on glibc only.
//  * The family's semantics hold with sampling on (sampled blocks are
//    memlimits', unsampled ones the backend's; each is freed into its own):
//    realloc growth and shrinking keep the contents, calloc zeroes, the
//    aligned functions align to 16..65536, valloc and pvalloc to pages,
//    malloc_usable_size covers the request, overflows fail with ENOMEM; with
//    every block sampled too (a profile at rate 1), and on 4 threads at once.
// Mixing families would crash (the backend's free on a glibc block or the
// reverse), so every test also checks that.
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/sampler.hpp"
#include "memlimits/memprof.hpp"
#include "platform/system_allocator.hpp"

#if !defined(MEMLIMITS_BACKEND_TEST_NAME)
#  error define MEMLIMITS_BACKEND_TEST_NAME (glibc, jemalloc, mimalloc, tcmalloc, minimal)
#endif

// Each backend's own view of a block. The backends' headers also declare
// malloc and friends; the few functions needed are declared here instead.
extern "C" {
#if defined(MEMLIMITS_BACKEND_TEST_JEMALLOC)
int mallctl(const char* name, void* oldp, std::size_t* oldlenp, void* newp, std::size_t newlen);
std::size_t sallocx(const void* p, int flags);
#elif defined(MEMLIMITS_BACKEND_TEST_MIMALLOC)
bool mi_is_in_heap_region(const void* p);
std::size_t mi_usable_size(const void* p);
#elif defined(MEMLIMITS_BACKEND_TEST_TCMALLOC)
int MallocExtension_GetOwnership(const void* p);  // 1: kOwned
std::size_t tc_malloc_size(void* p);
#elif defined(MEMLIMITS_BACKEND_TEST_MINIMAL)
bool minimal_allocator_owns(const void* p);
long minimal_allocator_made();
#endif
}

namespace {

namespace sys = memlimits::platform::system;
using sys::function;

constexpr std::string_view backend = MEMLIMITS_BACKEND_TEST_NAME;

// Whether the backend recognises p as one of its blocks (glibc: no such
// question; mallinfo2 answers for all of them below).
bool owned(void* p) {
#if defined(MEMLIMITS_BACKEND_TEST_JEMALLOC)
  unsigned arena = 0;
  std::size_t length = sizeof arena;
  return mallctl("arenas.lookup", &arena, &length, &p, sizeof p) == 0;
#elif defined(MEMLIMITS_BACKEND_TEST_MIMALLOC)
  return mi_is_in_heap_region(p);
#elif defined(MEMLIMITS_BACKEND_TEST_TCMALLOC)
  return MallocExtension_GetOwnership(p) == 1;
#elif defined(MEMLIMITS_BACKEND_TEST_MINIMAL)
  return minimal_allocator_owns(p);
#else
  return p != nullptr;
#endif
}

// The size the backend itself gives the block.
std::size_t backend_size(void* p) {
#if defined(MEMLIMITS_BACKEND_TEST_JEMALLOC)
  return sallocx(p, 0);
#elif defined(MEMLIMITS_BACKEND_TEST_MIMALLOC)
  return mi_usable_size(p);
#elif defined(MEMLIMITS_BACKEND_TEST_TCMALLOC)
  return tc_malloc_size(p);
#else
  return sys::usable_size(p);
#endif
}

// Whether the family's `f` fails as glibc's does on an impossible size
// (nullptr, errno ENOMEM): glibc's own functions, memlimits' emulations and
// jemalloc's. mimalloc's and tcmalloc's calloc and pvalloc leave errno as it
// was, and tcmalloc's pvalloc returns a page for a size that overflows when
// rounded up to pages: memlimits hands such requests to the backend, whose
// answer the program gets (as it would without memlimits).
bool fails_as_glibc(function f) {
  return backend == "glibc" || backend == "jemalloc" || backend == "minimal" ||
         sys::is_emulated(f);
}

// glibc's own heap: bytes in use in its arenas and its mmapped chunks.
std::size_t glibc_in_use() {
  const struct mallinfo2 info = ::mallinfo2();
  return info.uordblks + info.hblkhd;
}

// The hooks, through pointers the compiler cannot see through: no call is
// elided or folded from what it knows of the standard functions.
template <class F>
F opaque(F f) {
  asm volatile("" : "+r"(f));
  return f;
}
void* call_malloc(std::size_t n) { return opaque(&::malloc)(n); }
void call_free(void* p) { opaque(&::free)(p); }
void* call_calloc(std::size_t n, std::size_t s) { return opaque(&::calloc)(n, s); }
void* call_realloc(void* p, std::size_t n) { return opaque(&::realloc)(p, n); }
void* call_reallocarray(void* p, std::size_t n, std::size_t s) {
  return opaque(&::reallocarray)(p, n, s);
}
void* call_memalign(std::size_t a, std::size_t n) { return opaque(&::memalign)(a, n); }
void* call_aligned_alloc(std::size_t a, std::size_t n) { return opaque(&::aligned_alloc)(a, n); }
int call_posix_memalign(void** out, std::size_t a, std::size_t n) {
  return opaque(&::posix_memalign)(out, a, n);
}
void* call_valloc(std::size_t n) { return opaque(&::valloc)(n); }
void* call_pvalloc(std::size_t n) { return opaque(&::pvalloc)(n); }
std::size_t call_usable_size(void* p) { return opaque(&::malloc_usable_size)(p); }

std::size_t page() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

bool aligned(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}

// Fills [p, p + n) with a pattern of `seed`; checks it.
void fill(void* p, std::size_t n, unsigned seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<unsigned char>(i * 31 + seed);
}
bool holds(const void* p, std::size_t n, unsigned seed) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes[i] != static_cast<unsigned char>(i * 31 + seed)) return false;
  }
  return true;
}

// A block of n bytes from `what`: writable, malloc_usable_size covers n,
// aligned as asked; with `check_owner`, the backend's own.
void check_block(void* p, std::size_t n, std::size_t alignment, bool check_owner,
                 const char* what) {
  ASSERT_NE(p, nullptr) << what << " " << n;
  EXPECT_TRUE(aligned(p, alignment)) << what << " " << n << " " << p << " " << alignment;
  EXPECT_GE(call_usable_size(p), n) << what << " " << n;
  if (check_owner) {
    EXPECT_TRUE(owned(p)) << what << " " << n << ": not a " << backend << " block";
    EXPECT_EQ(backend_size(p), call_usable_size(p)) << what << " " << n;
  }
  fill(p, n, 7);
  EXPECT_TRUE(holds(p, n, 7)) << what;
}

constexpr std::size_t sizes[] = {1, 8, 24, 100, 1000, 4096, 5000, 70000, 1 << 20};

// Every function of the family, through the hooks; `check_owner` with
// sampling off. Every block is freed through free (or realloc to 0 bytes).
void exercise_family(bool check_owner, unsigned seed) {
  // A heap with recent garbage in it, so that calloc's zeroing is tested.
  {
    std::vector<void*> dirty;
    for (std::size_t n : sizes) {
      void* p = call_malloc(n);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0xab, n);
      dirty.push_back(p);
    }
    for (void* p : dirty) call_free(p);
  }
  for (std::size_t n : sizes) {
    void* p = call_malloc(n);
    check_block(p, n, n >= 16 && n % 16 == 0 ? 16 : 8, check_owner, "malloc");
    call_free(p);

    void* z = call_calloc(n, 1);
    ASSERT_NE(z, nullptr);
    bool zero = true;
    for (std::size_t i = 0; i < n; ++i) zero = zero && static_cast<unsigned char*>(z)[i] == 0;
    EXPECT_TRUE(zero) << "calloc " << n;
    check_block(z, n, 8, check_owner, "calloc");
    call_free(z);

    void* v = call_valloc(n);
    check_block(v, n, page(), check_owner, "valloc");
    call_free(v);

    void* pv = call_pvalloc(n);
    check_block(pv, (n + page() - 1) / page() * page(), page(), check_owner, "pvalloc");
    call_free(pv);

    for (std::size_t alignment = 16; alignment <= 65536; alignment *= 2) {
      void* m = call_memalign(alignment, n);
      check_block(m, n, alignment, check_owner, "memalign");
      call_free(m);
      void* a = call_aligned_alloc(alignment, n);
      check_block(a, n, alignment, check_owner, "aligned_alloc");
      call_free(a);
      void* pm = nullptr;
      ASSERT_EQ(call_posix_memalign(&pm, alignment, n), 0) << n << " " << alignment;
      check_block(pm, n, alignment, check_owner, "posix_memalign");
      call_free(pm);
    }
  }

  // realloc: growth and shrinking keep the contents.
  void* r = call_realloc(nullptr, 16);
  ASSERT_NE(r, nullptr);
  fill(r, 16, seed);
  std::size_t kept = 16;
  for (std::size_t n : {100, 5000, 70000, 1 << 20, 3 << 20, 70000, 1000, 24, 8}) {
    void* q = call_realloc(r, n);
    ASSERT_NE(q, nullptr) << "realloc to " << n;
    r = q;
    const std::size_t common = kept < n ? kept : n;
    EXPECT_TRUE(holds(r, common, seed)) << "realloc to " << n;
    EXPECT_GE(call_usable_size(r), n);
    if (check_owner) {
      EXPECT_TRUE(owned(r)) << "realloc to " << n;
    }
    fill(r, n, seed);
    kept = n;
  }
  // reallocarray: the same, and an overflowing product fails, p untouched.
  void* q = call_reallocarray(r, 1000, 10);
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(holds(q, kept, seed));
  if (check_owner) {
    EXPECT_TRUE(owned(q)) << "reallocarray";
  }
  errno = 0;
  EXPECT_EQ(call_reallocarray(q, SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(holds(q, kept, seed));
  call_free(q);

  errno = 0;
  EXPECT_EQ(call_calloc(SIZE_MAX / 2, 3), nullptr);
  if (fails_as_glibc(function::calloc)) {
    EXPECT_EQ(errno, ENOMEM);
  }
  EXPECT_EQ(call_usable_size(nullptr), 0u);
  call_free(nullptr);

  // operator new and delete, plain and aligned.
  for (std::size_t n : sizes) {
    void* p = ::operator new(n);
    check_block(p, n, 8, check_owner, "operator new");
    ::operator delete(p);
    void* a = ::operator new[](n, std::align_val_t{4096});
    check_block(a, n, 4096, check_owner, "aligned operator new[]");
    ::operator delete[](a, std::align_val_t{4096});
  }
}

// The system allocator's functions themselves, with ordinary arguments
// (the hooks hand valloc, pvalloc, reallocarray and the others to it only
// for arguments they do not serve): an emulated one works as glibc's does.
void exercise_system(bool check_owner) {
  // Size 0 only for pvalloc (jemalloc's memalign and valloc do not align
  // blocks of 0 bytes; memlimits' pvalloc, on jemalloc, asks for a page).
  void* pv0 = sys::pvalloc(0);
  check_block(pv0, 0, page(), check_owner, "system pvalloc");
  sys::free(pv0);
  for (std::size_t n : {std::size_t{1}, std::size_t{100}, page() + 1}) {
    void* v = sys::valloc(n);
    check_block(v, n, page(), check_owner, "system valloc");
    sys::free(v);
    void* pv = sys::pvalloc(n);
    check_block(pv, (n + page() - 1) / page() * page(), page(), check_owner, "system pvalloc");
    sys::free(pv);
    void* a = sys::aligned_alloc(64, n);
    check_block(a, n, 64, check_owner, "system aligned_alloc");
    sys::free(a);
    void* pm = nullptr;
    ASSERT_EQ(sys::posix_memalign(&pm, 256, n), 0);
    check_block(pm, n, 256, check_owner, "system posix_memalign");
    sys::free(pm);
    void* c = sys::calloc(n + 1, 3);
    check_block(c, 3 * (n + 1), 8, check_owner, "system calloc");
    sys::free(c);
  }
  void* out = &out;
  EXPECT_EQ(sys::posix_memalign(&out, 24, 8), EINVAL);  // not a power of two
  EXPECT_EQ(out, &out);
  errno = 0;
  void* huge = sys::pvalloc(SIZE_MAX - 10);
  if (fails_as_glibc(function::pvalloc)) {
    EXPECT_EQ(huge, nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
  sys::free(huge);
  errno = 0;
  EXPECT_EQ(sys::calloc(SIZE_MAX / 2, 3), nullptr);
  if (fails_as_glibc(function::calloc)) {
    EXPECT_EQ(errno, ENOMEM);
  }
  void* r = sys::reallocarray(nullptr, 10, 10);
  check_block(r, 100, 8, check_owner, "system reallocarray");
  fill(r, 100, 3);
  errno = 0;
  EXPECT_EQ(sys::reallocarray(r, SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  void* q = sys::reallocarray(r, 100, 100);
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(holds(q, 100, 3));
  if (check_owner) {
    EXPECT_TRUE(owned(q));
  }
  // Freed through the hook: glibc's own reallocarray calls realloc through
  // the PLT, that is memlimits' realloc hook, whose block may be a sampled
  // one of the reserved range, which glibc's free must never see.
  call_free(q);
}

TEST(Backend, ResolvesTheBackendsObject) {
  const std::string object = sys::allocator_object();
  EXPECT_NE(object.find(MEMLIMITS_BACKEND_TEST_OBJECT), std::string::npos)
      << "forwarding to '" << object << "', not " << backend;
}

TEST(Backend, EmulatesWhatTheBackendLacks) {
  // nm -D of each library (Debian 12): what it does not define.
  std::vector<function> lacking;
  if (backend == "jemalloc") lacking = {function::pvalloc, function::reallocarray};
  if (backend == "tcmalloc") lacking = {function::reallocarray};
  if (backend == "minimal") {
    lacking = {function::calloc,         function::valloc,       function::pvalloc,
               function::aligned_alloc, function::posix_memalign, function::reallocarray};
  }
  for (unsigned i = 0; i < static_cast<unsigned>(function::count); ++i) {
    const auto f = static_cast<function>(i);
    bool expected = false;
    for (function l : lacking) expected = expected || l == f;
    EXPECT_EQ(sys::is_emulated(f), expected) << "function #" << i;
  }
}

TEST(Backend, UnsampledBlocksComeFromTheBackend) {
  memlimits::core::sampling_off off;
  exercise_family(true, 1);
  exercise_system(true);
}

TEST(Backend, GlibcHeapHoldsTheBlocksOnGlibcOnly) {
  memlimits::core::sampling_off off;
  constexpr int count = 200;
  constexpr std::size_t n = 8192;
  std::vector<void*> blocks;
  const std::size_t before = glibc_in_use();
  for (int i = 0; i < count; ++i) {
    blocks.push_back(call_malloc(n));
    blocks.push_back(call_calloc(n, 1));
    blocks.push_back(call_memalign(64, n));
    blocks.push_back(call_aligned_alloc(256, n));
    void* p = nullptr;
    EXPECT_EQ(call_posix_memalign(&p, 128, n), 0);
    blocks.push_back(p);
    blocks.push_back(call_valloc(n));
    blocks.push_back(call_pvalloc(n));
    blocks.push_back(call_realloc(call_malloc(16), n));
    blocks.push_back(call_reallocarray(nullptr, n / 8, 8));
    blocks.push_back(sys::pvalloc(n));
    blocks.push_back(sys::reallocarray(nullptr, n / 8, 8));
  }
  const std::size_t after = glibc_in_use();
  const std::size_t held = blocks.size() * n;
  for (void* p : blocks) {
    EXPECT_NE(p, nullptr);
    EXPECT_TRUE(owned(p));
    call_free(p);
  }
  if (backend == "glibc" || backend == "minimal") {  // minimal's blocks are inside glibc's
    EXPECT_GE(after - before, held);
  } else {
    EXPECT_LT(after > before ? after - before : 0, held / 16)
        << "glibc's heap grew by " << after - before << " bytes for " << held
        << " bytes of " << backend << " blocks";
  }
#if defined(MEMLIMITS_BACKEND_TEST_MINIMAL)
  EXPECT_GE(minimal_allocator_made(), static_cast<long>(blocks.size()));
#endif
}

TEST(Backend, FamilyWithSamplingOn) {
  exercise_family(false, 2);
  exercise_system(false);
}

// Counts the sampled blocks and their frees (callbacks never allocate).
struct counting_tracker : memlimits::memprof::tracker {
  std::atomic<long> allocations{0};
  std::atomic<long> frees{0};
  void* on_alloc(const memlimits::memprof::allocation&) override {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return this;
  }
  void on_free(void*) noexcept override { frees.fetch_add(1, std::memory_order_relaxed); }
};

TEST(Backend, FamilyWithEveryBlockSampled) {
  counting_tracker tracker;
  {
    memlimits::memprof::profile profile(tracker, 1.0);  // every word a sample
    exercise_family(false, 3);
    profile.stop();
  }
  EXPECT_GT(tracker.allocations.load(), 300);
  EXPECT_EQ(tracker.frees.load(), tracker.allocations.load());
}

TEST(Backend, FamilyOnFourThreads) {
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int round = 0; round < 3; ++round) {
        if (round == 1) {
          memlimits::core::sampling_off off;
          exercise_family(true, 10 + t);
        } else {
          exercise_family(false, 20 + t);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
}

}  // namespace
