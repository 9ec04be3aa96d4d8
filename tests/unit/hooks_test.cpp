// tests/unit/hooks_test.cpp — the replaced global ABI (hooks/new_delete.cpp,
// hooks/malloc.cpp), linked with memlimits::hooks: for every replaced
// signature, a sampled allocation is reported to a profile with its size,
// samples, origin and address, its free is reported exactly once, alignment
// and zeroing requests are honoured, and argument errors, errno and failure
// behave as the standard and the system's own C library say (the arguments
// the hooks leave to the system are compared with its own functions, found
// with dlsym(RTLD_NEXT); tests/preload/semantics_* compare whole batteries).
//
// Method: a profile at rate 1 samples every word, so every allocation of
// size >= 1 is sampled (n_samples == ceil(size / 8)) and reported to a
// recording tracker whose storage is reserved before the profile starts
// (its callbacks never allocate). Every hook is called through a function
// pointer the compiler cannot see through (`opaque`), so that it can neither
// elide malloc/free or new/delete pairs nor fold alignment or errno checks
// from what it knows of the standard functions.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#include <fcntl.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/sampler.hpp"
#include "memlimits/memprof.hpp"
#include "support/recording_fixture.hpp"
#include "support/recording_tracker.hpp"
#include "support/wait.hpp"
#include "tracking/tracking.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// The sanitizer's allocator is the system allocator: glibc-only behaviours
// (memalign rounding odd alignments up, RLIMIT_DATA failures) are not tested.
// (allocator_may_return_null=1 comes from tests/support/sanitizer_options.cpp)
#  define MEMLIMITS_TEST_ASAN 1
#endif


namespace {

using memlimits::memprof::source;
namespace memprof = memlimits::memprof;

constexpr std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
constexpr std::size_t page = 4096;
constexpr std::size_t sampled_alignment = memlimits::tracking::table::sampled_alignment;
static_assert(page % sampled_alignment == 0);  // page-aligned blocks are candidates too

using memlimits::testing::aligned_to;
using memlimits::testing::opaque;
using memlimits::testing::sink;
using memlimits::testing::words;
using entry = memlimits::testing::recorded_block;
using recorder = memlimits::testing::recording_tracker;

template <class F>
[[gnu::noinline]] void call_out_of_line(F& f) {
  f();
}
// Runs f with sampling off for the calling thread, so that whatever it
// allocates is certainly unsampled. The sampling_off object lives in a frame
// of its own, around a call: GCC 12 with -fsanitize=undefined miscompiles
// its null check of the thread-local reference when its destructor is
// inlined after a loop (the check branches on the loop's stale flags).
template <class F>
[[gnu::noinline]] void unsampled(F f) {
  memlimits::core::sampling_off off;
  call_out_of_line(f);
}

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

void fill(void* p, std::size_t n, unsigned char seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<unsigned char>(seed + i * 131);
  sink(p);
}
// Index of the first byte that differs from fill(p, n, seed), or n.
std::size_t check_fill(const void* p, std::size_t n, unsigned char seed) {
  sink(p);
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes[i] != static_cast<unsigned char>(seed + i * 131)) return i;
  }
  return n;
}
bool all_zero(const void* p, std::size_t n) {
  sink(p);
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

const std::size_t sizes[] = {1, 7, 8, 9, 24, 100, 4095, 4096, 4097, 70000, std::size_t{1} << 20};
const std::size_t alignments[] = {8, 16, 64, 4096, 8192, 65536};

// ---- operator new / delete ----

struct new_form {
  const char* name;
  bool array;
  bool aligned;
  bool nothrow;
  void* (*allocate)(std::size_t bytes, std::size_t alignment);
};

struct delete_form {
  const char* name;
  bool array;
  bool aligned;
  void (*release)(void* p, std::size_t bytes, std::size_t alignment);
};

std::align_val_t al(std::size_t a) { return static_cast<std::align_val_t>(a); }

// The 8 replaceable allocation functions.
const new_form new_forms[] = {
    {"operator new(n)", false, false, false,
     [](std::size_t n, std::size_t) { return ::operator new(n); }},
    {"operator new[](n)", true, false, false,
     [](std::size_t n, std::size_t) { return ::operator new[](n); }},
    {"operator new(n, nothrow)", false, false, true,
     [](std::size_t n, std::size_t) { return ::operator new(n, std::nothrow); }},
    {"operator new[](n, nothrow)", true, false, true,
     [](std::size_t n, std::size_t) { return ::operator new[](n, std::nothrow); }},
    {"operator new(n, align)", false, true, false,
     [](std::size_t n, std::size_t a) { return ::operator new(n, al(a)); }},
    {"operator new[](n, align)", true, true, false,
     [](std::size_t n, std::size_t a) { return ::operator new[](n, al(a)); }},
    {"operator new(n, align, nothrow)", false, true, true,
     [](std::size_t n, std::size_t a) { return ::operator new(n, al(a), std::nothrow); }},
    {"operator new[](n, align, nothrow)", true, true, true,
     [](std::size_t n, std::size_t a) { return ::operator new[](n, al(a), std::nothrow); }},
};

// The 12 replaceable deallocation functions.
const delete_form delete_forms[] = {
    {"operator delete(p)", false, false,
     [](void* p, std::size_t, std::size_t) { ::operator delete(p); }},
    {"operator delete(p, nothrow)", false, false,
     [](void* p, std::size_t, std::size_t) { ::operator delete(p, std::nothrow); }},
    {"operator delete(p, n)", false, false,
     [](void* p, std::size_t n, std::size_t) { ::operator delete(p, n); }},
    {"operator delete[](p)", true, false,
     [](void* p, std::size_t, std::size_t) { ::operator delete[](p); }},
    {"operator delete[](p, nothrow)", true, false,
     [](void* p, std::size_t, std::size_t) { ::operator delete[](p, std::nothrow); }},
    {"operator delete[](p, n)", true, false,
     [](void* p, std::size_t n, std::size_t) { ::operator delete[](p, n); }},
    {"operator delete(p, align)", false, true,
     [](void* p, std::size_t, std::size_t a) { ::operator delete(p, al(a)); }},
    {"operator delete(p, align, nothrow)", false, true,
     [](void* p, std::size_t, std::size_t a) { ::operator delete(p, al(a), std::nothrow); }},
    {"operator delete(p, n, align)", false, true,
     [](void* p, std::size_t n, std::size_t a) { ::operator delete(p, n, al(a)); }},
    {"operator delete[](p, align)", true, true,
     [](void* p, std::size_t, std::size_t a) { ::operator delete[](p, al(a)); }},
    {"operator delete[](p, align, nothrow)", true, true,
     [](void* p, std::size_t, std::size_t a) { ::operator delete[](p, al(a), std::nothrow); }},
    {"operator delete[](p, n, align)", true, true,
     [](void* p, std::size_t n, std::size_t a) { ::operator delete[](p, n, al(a)); }},
};

class HooksNew : public memlimits::testing::recording_fixture {
 protected:
  void check_huge_new();
};

TEST_F(HooksNew, EveryFormPairIsReportedAndItsFreeOnce) {
  int pairs = 0;
  start();
  for (const new_form& nf : new_forms) {
    for (const delete_form& df : delete_forms) {
      if (nf.array != df.array || nf.aligned != df.aligned) continue;
      ++pairs;
      for (const std::size_t a : nf.aligned ? std::vector<std::size_t>(std::begin(alignments),
                                                                       std::end(alignments))
                                            : std::vector<std::size_t>{0}) {
        for (const std::size_t n : sizes) {
          const std::string what = std::string(nf.name) + " / " + df.name +
                                   ", n=" + std::to_string(n) + ", align=" + std::to_string(a);
          const std::size_t from = recorder_.mark();
          void* p = opaque(nf.allocate)(n, a);
          ASSERT_NE(p, nullptr) << what;
          const entry* e = expect_one_report(from, p, n, source::new_delete, what);
          if (a != 0) {
            EXPECT_TRUE(aligned_to(p, a)) << what << ": " << p;
          }
          std::memset(p, 0x5A, n);
          sink(p);
          const std::int64_t frees = recorder_.frees();
          opaque(df.release)(p, n, a);
          EXPECT_EQ(recorder_.frees(), frees + 1) << what;
          expect_freed_once(e, what);
        }
      }
    }
  }
  EXPECT_EQ(pairs, 24);  // every delete form is exercised, each with 2 new forms
}

TEST_F(HooksNew, AlignmentIsHonouredForUnsampledBlocks) {
  // No profile, and sampling off: the system allocator's aligned path.
  unsampled([&] {
    for (const new_form& nf : new_forms) {
      if (!nf.aligned) continue;
      for (const std::size_t a : alignments) {
        for (const std::size_t n : {std::size_t{1}, std::size_t{100}, std::size_t{5000}}) {
          void* p = opaque(nf.allocate)(n, a);
          ASSERT_NE(p, nullptr);
          EXPECT_TRUE(aligned_to(p, a)) << nf.name << " n=" << n << " align=" << a;
          EXPECT_FALSE(memlimits::tracking::owns(p));
          std::memset(p, 0x5A, n);
          sink(p);
          if (nf.array) {
            ::operator delete[](p, al(a));
          } else {
            ::operator delete(p, al(a));
          }
        }
      }
    }
  });
}

TEST_F(HooksNew, ZeroSizeIsNeverSampled) {
  start();
  for (const new_form& nf : new_forms) {
    const std::size_t a = nf.aligned ? 64 : 0;
    const std::size_t from = recorder_.mark();
    void* p = opaque(nf.allocate)(0, a);
    ASSERT_NE(p, nullptr) << nf.name;
    EXPECT_EQ(recorder_.mark(), from) << nf.name << "(0) was reported";
    if (a != 0) {
      EXPECT_TRUE(aligned_to(p, a));
    }
    const std::int64_t frees = recorder_.frees();
    if (nf.aligned) {
      if (nf.array) ::operator delete[](p, al(a)); else ::operator delete(p, al(a));
    } else {
      if (nf.array) ::operator delete[](p); else ::operator delete(p);
    }
    EXPECT_EQ(recorder_.frees(), frees);
  }
}

TEST_F(HooksNew, DeleteOfNullIsANoOp) {
  start();
  const std::size_t from = recorder_.mark();
  for (const delete_form& df : delete_forms) {
    errno = 12345;
    opaque(df.release)(nullptr, 16, df.aligned ? 64 : 0);
    EXPECT_EQ(errno, 12345) << df.name;
  }
  EXPECT_EQ(recorder_.mark(), from);
  EXPECT_EQ(recorder_.frees(), 0);
}

// Sizes that cannot be allocated: half the address space, and the top of it
// (where the byte count rounded up to whole words wraps around).
const std::size_t impossible_sizes[] = {huge, std::numeric_limits<std::size_t>::max(),
                                        std::numeric_limits<std::size_t>::max() - 4,
                                        std::numeric_limits<std::size_t>::max() - 8};

void HooksNew::check_huge_new() {
  for (const new_form& nf : new_forms) {
    for (const std::size_t n : impossible_sizes) {
      const std::size_t from = recorder_.mark();
      const std::size_t a = nf.aligned ? 64 : 0;
      if (nf.nothrow) {
        EXPECT_EQ(opaque(nf.allocate)(n, a), nullptr) << nf.name << " n=" << n;
      } else {
        EXPECT_THROW(sink(opaque(nf.allocate)(n, a)), std::bad_alloc) << nf.name << " n=" << n;
      }
      expect_not_reported(from, n, nf.name);
    }
  }
}

TEST_F(HooksNew, HugeSizeThrowsOrReturnsNull) {
  ASSERT_EQ(std::get_new_handler(), nullptr);
  check_huge_new();  // at the base rate
  start();
  check_huge_new();  // every allocation sampled
  // The thread's sampling still works after the failures.
  const std::size_t from = recorder_.mark();
  void* p = opaque(new_forms[0].allocate)(64, 0);
  const entry* e = expect_one_report(from, p, 64, source::new_delete, "new after failures");
  ::operator delete(p);
  expect_freed_once(e, "new after failures");
}

int handler_calls = 0;
int handler_gives_up_after = 0;

TEST_F(HooksNew, NewHandlerIsCalledUntilItGivesUp) {
  start();
  for (const new_form& nf : new_forms) {
    handler_calls = 0;
    handler_gives_up_after = 3;
    if (nf.nothrow) {
      // A handler that throws bad_alloc makes the nothrow form return null.
      std::set_new_handler([] {
        if (++handler_calls == handler_gives_up_after) throw std::bad_alloc();
      });
      EXPECT_EQ(opaque(nf.allocate)(huge, nf.aligned ? 64 : 0), nullptr) << nf.name;
    } else {
      // A handler that uninstalls itself makes the next failure throw.
      std::set_new_handler([] {
        if (++handler_calls == handler_gives_up_after) std::set_new_handler(nullptr);
      });
      EXPECT_THROW(sink(opaque(nf.allocate)(huge, nf.aligned ? 64 : 0)), std::bad_alloc)
          << nf.name;
    }
    EXPECT_EQ(handler_calls, 3) << nf.name;
    std::set_new_handler(nullptr);
  }
  // Only the exception objects (allocated by the C++ runtime) were reported.
  expect_not_reported(0, huge, "new_handler loop");
}

#if !defined(MEMLIMITS_TEST_ASAN)
// The classic use of a new_handler: release a reserve so that the retry
// succeeds. The failure is real: RLIMIT_DATA (private writable memory: the
// system allocator's heap and mappings, and the committed part of the range
// of sampled blocks) leaves room for the request only once the reserve is
// unmapped. (RLIMIT_AS would not do: the range is address space reserved
// before the limit is set.)
void* reserve = nullptr;
constexpr std::size_t reserve_bytes = std::size_t{256} << 20;
constexpr std::size_t request_bytes = std::size_t{160} << 20;

std::size_t data_memory_bytes() {
  // /proc/self/statm's sixth field (data and stack), read without stdio
  // (which would allocate).
  const int fd = ::open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return 0;
  char text[128] = {};
  const ssize_t n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (n <= 0) return 0;
  const char* field = text;
  for (int i = 0; i < 5; ++i) {
    field = std::strchr(field, ' ');
    if (field == nullptr) return 0;
    ++field;
  }
  return std::strtoull(field, nullptr, 10) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}
#endif

TEST_F(HooksNew, NewHandlerFreeingAReserveMakesTheRetrySucceed) {
#if defined(MEMLIMITS_TEST_ASAN)
  GTEST_SKIP() << "memory rlimits are incompatible with the sanitizer's shadow memory";
#else
  struct rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_DATA, &saved), 0);
  start();
  for (const new_form& nf : new_forms) {
    reserve = opaque(&std::malloc)(reserve_bytes);
    ASSERT_NE(reserve, nullptr);
    const std::size_t data = data_memory_bytes();
    ASSERT_GT(data, 0u);
    struct rlimit tight = saved;
    tight.rlim_cur = data + (std::size_t{64} << 20);
    ASSERT_EQ(setrlimit(RLIMIT_DATA, &tight), 0);

    handler_calls = 0;
    std::set_new_handler([] {
      ++handler_calls;
      if (reserve == nullptr) throw std::bad_alloc();
      std::free(reserve);
      reserve = nullptr;
    });
    const std::size_t from = recorder_.mark();
    const std::size_t a = nf.aligned ? 8192 : 0;
    void* p = nullptr;
    EXPECT_NO_THROW(p = opaque(nf.allocate)(request_bytes, a)) << nf.name;
    std::set_new_handler(nullptr);
    ASSERT_EQ(setrlimit(RLIMIT_DATA, &saved), 0);

    EXPECT_NE(p, nullptr) << nf.name;
    EXPECT_EQ(handler_calls, 1) << nf.name;
    EXPECT_EQ(reserve, nullptr) << nf.name << ": the first attempt did not fail";
    if (p == nullptr) continue;
    if (a != 0) {
      EXPECT_TRUE(aligned_to(p, a));
    }
    // Only the successful attempt is reported.
    const entry* e = expect_one_report(from, p, request_bytes, source::new_delete, nf.name);
    if (nf.array) ::operator delete[](p); else ::operator delete(p);
    expect_freed_once(e, nf.name);
    if (reserve != nullptr) std::free(reserve);
    reserve = nullptr;
  }
#endif
}

TEST_F(HooksNew, HandlerIsNotCalledWhenAllocationSucceeds) {
  handler_calls = 0;
  std::set_new_handler([] { ++handler_calls; });
  start();
  for (const new_form& nf : new_forms) {
    void* p = opaque(nf.allocate)(100, nf.aligned ? 64 : 0);
    ASSERT_NE(p, nullptr);
    if (nf.array) ::operator delete[](p); else ::operator delete(p);
  }
  std::set_new_handler(nullptr);
  EXPECT_EQ(handler_calls, 0);
}

// ---- the malloc family ----

class HooksMalloc : public memlimits::testing::recording_fixture {};

TEST_F(HooksMalloc, MallocIsReportedAndItsFreeOnce) {
  start();
  for (const std::size_t n : sizes) {
    const std::string what = "malloc(" + std::to_string(n) + ")";
    const std::size_t from = recorder_.mark();
    void* p = opaque(&std::malloc)(n);
    ASSERT_NE(p, nullptr) << what;
    const entry* e = expect_one_report(from, p, n, source::malloc, what);
    EXPECT_GE(opaque(&malloc_usable_size)(p), n) << what;
    EXPECT_TRUE(aligned_to(p, alignof(std::max_align_t)));
    fill(p, n, 1);
    opaque(&std::free)(p);
    expect_freed_once(e, what);
  }
}

TEST_F(HooksMalloc, ZeroSizeIsNeverSampled) {
  start();
  const std::size_t from = recorder_.mark();
  void* p = opaque(&std::malloc)(0);
  void* q = opaque(&std::calloc)(0, 16);
  void* r = opaque(&std::calloc)(16, 0);
  void* s = opaque(&std::realloc)(nullptr, 0);
  EXPECT_NE(p, nullptr);  // glibc returns a unique pointer
  EXPECT_NE(q, nullptr);
  EXPECT_NE(r, nullptr);
  EXPECT_NE(s, nullptr);
  EXPECT_EQ(recorder_.mark(), from);
  opaque(&std::free)(p);
  opaque(&std::free)(q);
  opaque(&std::free)(r);
  opaque(&std::free)(s);
  EXPECT_EQ(recorder_.frees(), 0);
}

TEST_F(HooksMalloc, FreeOfNullIsANoOp) {
  start();
  errno = 12345;
  opaque(&std::free)(nullptr);
  EXPECT_EQ(errno, 12345);
  EXPECT_EQ(recorder_.frees(), 0);
}

TEST_F(HooksMalloc, CallocIsReportedAndZeroed) {
  start();
  const std::pair<std::size_t, std::size_t> requests[] = {
      {1, 1}, {1, 8}, {7, 13}, {1, 100}, {3, 4096}, {1, 4097}, {10, 10000}, {1, 300000}};
  for (const auto& [count, size] : requests) {
    const std::size_t n = count * size;
    const std::string what = "calloc(" + std::to_string(count) + ", " + std::to_string(size) + ")";
    // Garbage first in sampled blocks of the same size, so that a calloc
    // that reuses their memory without zeroing it is caught.
    constexpr int blocks = 4;
    void* garbage[blocks];
    for (void*& g : garbage) {
      g = opaque(&std::malloc)(n);
      ASSERT_NE(g, nullptr);
      std::memset(g, 0xA5, n);
      sink(g);
    }
    for (void* g : garbage) opaque(&std::free)(g);
    void* zeroed[blocks];
    for (void*& z : zeroed) {
      const std::size_t from = recorder_.mark();
      z = opaque(&std::calloc)(count, size);
      ASSERT_NE(z, nullptr) << what;
      expect_one_report(from, z, n, source::malloc, what);
      EXPECT_TRUE(all_zero(z, n)) << what << ": sampled calloc block not zeroed";
      EXPECT_GE(opaque(&malloc_usable_size)(z), n) << what;
    }
    for (void* z : zeroed) {
      const std::int64_t frees = recorder_.frees();
      opaque(&std::free)(z);
      EXPECT_EQ(recorder_.frees(), frees + 1) << what;
    }
  }
}

TEST_F(HooksMalloc, CallocOverflowFailsWithEnomem) {
  for (int profiled = 0; profiled < 2; ++profiled) {
    if (profiled) start();
    const std::size_t from = recorder_.mark();
    errno = 0;
    EXPECT_EQ(opaque(&std::calloc)(huge, 3), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(opaque(&std::calloc)(std::numeric_limits<std::size_t>::max(), 2), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(opaque(&std::calloc)(1, huge), nullptr);  // no overflow, just too big
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(recorder_.mark(), from);
  }
}

TEST_F(HooksMalloc, HugeMallocFailsWithEnomem) {
  for (int profiled = 0; profiled < 2; ++profiled) {
    if (profiled) start();
    for (const std::size_t n : impossible_sizes) {
      const std::size_t from = recorder_.mark();
      errno = 0;
      EXPECT_EQ(opaque(&std::malloc)(n), nullptr) << n;
      EXPECT_EQ(errno, ENOMEM) << n;
      EXPECT_EQ(recorder_.mark(), from) << "a failed malloc was reported";
    }
  }
  // Still sampling correctly afterwards.
  const std::size_t from = recorder_.mark();
  void* p = opaque(&std::malloc)(40);
  const entry* e = expect_one_report(from, p, 40, source::malloc, "malloc after failures");
  opaque(&std::free)(p);
  expect_freed_once(e, "malloc after failures");
}

TEST_F(HooksMalloc, MallocUsableSize) {
  EXPECT_EQ(opaque(&malloc_usable_size)(nullptr), 0u);
  start();
  for (const std::size_t n : sizes) {
    void* p = opaque(&std::malloc)(n);
    EXPECT_GE(opaque(&malloc_usable_size)(p), n);
    // The whole usable size may be written.
    std::memset(p, 1, opaque(&malloc_usable_size)(p));
    sink(p);
    opaque(&std::free)(p);
  }
}

// ---- failed allocations leave the sampling stream intact ----

// Every entry point, failing on an impossible size.
struct failing_call {
  const char* name;
  void (*call)(std::size_t bytes);
};

const failing_call failing_calls[] = {
    {"malloc", [](std::size_t n) { EXPECT_EQ(opaque(&std::malloc)(n), nullptr); }},
    {"calloc", [](std::size_t n) { EXPECT_EQ(opaque(&std::calloc)(1, n), nullptr); }},
    {"realloc(nullptr, n)",
     [](std::size_t n) { EXPECT_EQ(opaque(&std::realloc)(nullptr, n), nullptr); }},
    {"realloc(p, n)",
     [](std::size_t n) {
       void* p = opaque(&std::malloc)(16);
       EXPECT_EQ(opaque(&std::realloc)(p, n), nullptr);
       opaque(&std::free)(p);
     }},
    {"reallocarray(p, n, 1)",
     [](std::size_t n) {
       void* p = opaque(&std::malloc)(16);
       EXPECT_EQ(opaque(&reallocarray)(p, n, 1), nullptr);
       opaque(&std::free)(p);
     }},
    {"posix_memalign",
     [](std::size_t n) {
       void* p = nullptr;
       EXPECT_EQ(opaque(&posix_memalign)(&p, 64, n), ENOMEM);
     }},
    {"aligned_alloc", [](std::size_t n) { EXPECT_EQ(opaque(&aligned_alloc)(64, n), nullptr); }},
    {"memalign", [](std::size_t n) { EXPECT_EQ(opaque(&memalign)(8192, n), nullptr); }},
    {"valloc", [](std::size_t n) { EXPECT_EQ(opaque(&valloc)(n), nullptr); }},
    {"pvalloc", [](std::size_t n) { EXPECT_EQ(opaque(&pvalloc)(n), nullptr); }},
    {"operator new(n, nothrow)",
     [](std::size_t n) { EXPECT_EQ(opaque(new_forms[2].allocate)(n, 0), nullptr); }},
    {"operator new[](n, align, nothrow)",
     [](std::size_t n) { EXPECT_EQ(opaque(new_forms[7].allocate)(n, 4096), nullptr); }},
    {"operator new(n)",
     [](std::size_t n) { EXPECT_THROW(sink(opaque(new_forms[0].allocate)(n, 0)), std::bad_alloc); }},
};

// Sizes that no allocator can satisfy, on both sides of the largest byte
// count a signed 64-bit countdown can hold (2^63 - 1).
const std::size_t failing_sizes[] = {
    std::size_t{1} << 62,
    (std::size_t{1} << 63) - 4096,
    huge,                              // 2^63 - 1: counts as 2^63 bytes
    std::size_t{1} << 63,
    (std::size_t{1} << 63) + 12345,
    std::numeric_limits<std::size_t>::max() - 4096,
    std::numeric_limits<std::size_t>::max() - 8,
    std::numeric_limits<std::size_t>::max(),
};

class HooksFailure : public memlimits::testing::recording_fixture {};

// At rate 1 every allocation after a failed one is still sampled, with
// exactly its words.
// Each case under a fresh profile: starting one changes the rate, which
// redraws the thread's stream, so that cases do not leak into each other.
TEST_F(HooksFailure, SamplingContinuesAfterAFailedAllocation) {
  for (const failing_call& fc : failing_calls) {
    for (const std::size_t n : failing_sizes) {
      const std::string what = std::string("after ") + fc.name + "(" + std::to_string(n) + ")";
      start();
      fc.call(n);
      for (int i = 0; i < 3; ++i) {
        const std::size_t from = recorder_.mark();
        void* p = opaque(&std::malloc)(40);
        const entry* e = expect_one_report(from, p, 40, source::malloc, what);
        opaque(&std::free)(p);
        expect_freed_once(e, what);
      }
      stop();
    }
  }
}

// At a low rate (the base rate, so that the profile changes nothing), a
// failed allocation must not make the next blocks carry more samples than
// they have words (TearDown checks n_samples <= ceil(size / 8)).
TEST_F(HooksFailure, AFailedAllocationDoesNotInflateTheNextSamples) {
  for (const failing_call& fc : failing_calls) {
    for (const std::size_t n : failing_sizes) {
      // A rate change in between redraws the stream (see above).
      start(1.0);
      stop();
      start(1e-4);
      const std::size_t from = recorder_.mark();
      fc.call(n);
      for (int i = 0; i < 100; ++i) opaque(&std::free)(opaque(&std::malloc)(64));
      for (std::size_t i = from; i < recorder_.mark(); ++i) {
        EXPECT_LE(recorder_.at(i).n_samples, words(recorder_.at(i).size))
            << "after " << fc.name << "(" << n << "): a block of " << recorder_.at(i).size
            << " bytes reported with " << recorder_.at(i).n_samples << " samples";
      }
      stop();
    }
  }
}

// ---- realloc and reallocarray ----

class HooksRealloc : public memlimits::testing::recording_fixture {};

TEST_F(HooksRealloc, OfNullAllocates) {
  start();
  for (const std::size_t n : sizes) {
    const std::string what = "realloc(nullptr, " + std::to_string(n) + ")";
    const std::size_t from = recorder_.mark();
    void* p = opaque(&std::realloc)(nullptr, n);
    ASSERT_NE(p, nullptr);
    const entry* e = expect_one_report(from, p, n, source::malloc, what);
    opaque(&std::free)(p);
    expect_freed_once(e, what);
  }
}

TEST_F(HooksRealloc, OfASampledBlockMovesItAndPreservesTheContents) {
  start();
  const std::pair<std::size_t, std::size_t> resizes[] = {
      {1, 2},       {8, 9},      {100, 100},   {100, 50},    {4096, 4097},
      {4097, 4096}, {1000, 70000}, {70000, 1000}, {300000, 1 << 20}, {1 << 20, 24}};
  for (const auto& [old_size, new_size] : resizes) {
    const std::string what =
        "realloc " + std::to_string(old_size) + " -> " + std::to_string(new_size);
    std::size_t from = recorder_.mark();
    void* p = opaque(&std::malloc)(old_size);
    ASSERT_NE(p, nullptr);
    const entry* old_entry = expect_one_report(from, p, old_size, source::malloc, what, " (old)");
    fill(p, old_size, 7);

    from = recorder_.mark();
    void* q = opaque(&std::realloc)(p, new_size);
    ASSERT_NE(q, nullptr) << what;
    EXPECT_NE(q, p) << what << ": a sampled block must move";
    const entry* new_entry = expect_one_report(from, q, new_size, source::malloc, what, " (new)");
    expect_freed_once(old_entry, what, " (old)");
    const std::size_t kept = old_size < new_size ? old_size : new_size;
    EXPECT_EQ(check_fill(q, kept, 7), kept) << what << ": contents not preserved";
    EXPECT_GE(opaque(&malloc_usable_size)(q), new_size);
    std::memset(q, 0x33, new_size);
    sink(q);
    opaque(&std::free)(q);
    expect_freed_once(new_entry, what, " (new)");
  }
}

TEST_F(HooksRealloc, OfAnUnsampledBlockIntoASampledOne) {
  std::vector<void*> blocks;
  blocks.reserve(64);
  unsampled([&] {  // certainly unsampled
    for (int i = 0; i < 32; ++i) {
      void* p = opaque(&std::malloc)(16 + 40 * i);
      fill(p, 16 + 40 * i, static_cast<unsigned char>(i));
      blocks.push_back(p);
    }
  });
  start();
  for (int i = 0; i < 32; ++i) {
    const std::size_t old_size = 16 + 40 * i;
    const std::size_t new_size = i % 2 ? old_size * 3 : old_size / 2 + 1;
    const std::size_t from = recorder_.mark();
    void* q = opaque(&std::realloc)(blocks[i], new_size);
    ASSERT_NE(q, nullptr);
    expect_one_report(from, q, new_size, source::malloc, "unsampled -> sampled");
    EXPECT_EQ(recorder_.frees(), 0) << "the free of an unreported block was reported";
    const std::size_t kept = old_size < new_size ? old_size : new_size;
    EXPECT_EQ(check_fill(q, kept, static_cast<unsigned char>(i)), kept);
    blocks[i] = q;
  }
  for (void* q : blocks) opaque(&std::free)(q);
  EXPECT_EQ(recorder_.frees(), 32);
}

TEST_F(HooksRealloc, OfASampledBlockIntoAnUnsampledOne) {
  // Sampled (and tracked) under the profile; reallocated once it has stopped,
  // when the new block is not sampled: the block still moves out of the
  // page-aligned, tracked memory, and nothing is reported any more.
  std::vector<void*> blocks;
  blocks.reserve(16);
  start();
  for (int i = 0; i < 16; ++i) {
    void* p = opaque(&std::malloc)(100 + 1000 * i);
    fill(p, 100 + 1000 * i, static_cast<unsigned char>(i));
    blocks.push_back(p);
  }
  EXPECT_EQ(recorder_.mark(), 16u);
  stop();
  expect_all_freed_ = false;  // the profile is gone before the frees
  unsampled([&] {
    for (int i = 0; i < 16; ++i) {
      const std::size_t old_size = 100 + 1000 * i;
      const std::size_t new_size = i % 2 ? old_size * 2 : old_size / 2;
      void* q = opaque(&std::realloc)(blocks[i], new_size);
      ASSERT_NE(q, nullptr);
      const std::size_t kept = old_size < new_size ? old_size : new_size;
      EXPECT_EQ(check_fill(q, kept, static_cast<unsigned char>(i)), kept);
      EXPECT_FALSE(memlimits::tracking::owns(q));
      blocks[i] = q;
    }
    for (void* q : blocks) opaque(&std::free)(q);
    EXPECT_EQ(recorder_.frees(), 0);
  });
}

TEST_F(HooksRealloc, ToZeroFreesAndReturnsNull) {
  start();
  for (const std::size_t n : {std::size_t{1}, std::size_t{64}, std::size_t{5000}}) {
    const std::size_t from = recorder_.mark();
    void* p = opaque(&std::malloc)(n);
    const entry* e = expect_one_report(from, p, n, source::malloc, "realloc(p, 0)");
    EXPECT_EQ(opaque(&std::realloc)(p, 0), nullptr);
    expect_freed_once(e, "realloc(p, 0)");
    EXPECT_EQ(recorder_.mark(), from + 1);
  }
  // And of an unsampled block.
  void* p = nullptr;
  unsampled([&] {
    p = opaque(&std::malloc)(64);
  });
  EXPECT_EQ(opaque(&std::realloc)(p, 0), nullptr);
}

TEST_F(HooksRealloc, FailureLeavesTheBlockUntouched) {
  start();
  const std::size_t from = recorder_.mark();
  void* p = opaque(&std::malloc)(1000);
  const entry* e = expect_one_report(from, p, 1000, source::malloc, "realloc failure");
  fill(p, 1000, 9);
  for (const std::size_t n : impossible_sizes) {
    if (n == std::numeric_limits<std::size_t>::max()) continue;
    errno = 0;
    EXPECT_EQ(opaque(&std::realloc)(p, n), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
    errno = 0;
    EXPECT_EQ(opaque(&reallocarray)(p, n, 1), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
  }
  EXPECT_EQ(recorder_.mark(), from + 1) << "a failed realloc was reported";
  EXPECT_EQ(e->frees.load(), 0) << "a failed realloc freed the block";
  EXPECT_EQ(check_fill(p, 1000, 9), 1000u);
  opaque(&std::free)(p);
  expect_freed_once(e, "realloc failure");
}

TEST_F(HooksRealloc, ReallocarrayIsReportedAndChecksOverflow) {
  start();
  std::size_t from = recorder_.mark();
  void* p = opaque(&reallocarray)(nullptr, 10, 12);
  const entry* first = expect_one_report(from, p, 120, source::malloc, "reallocarray(nullptr)");
  fill(p, 120, 3);

  from = recorder_.mark();
  void* q = opaque(&reallocarray)(p, 100, 30);
  ASSERT_NE(q, nullptr);
  const entry* second = expect_one_report(from, q, 3000, source::malloc, "reallocarray grow");
  expect_freed_once(first, "reallocarray grow (old)");
  EXPECT_EQ(check_fill(q, 120, 3), 120u);

  // Overflow: NULL, ENOMEM, and the block untouched.
  for (const auto& [count, size] :
       {std::pair{huge, std::size_t{3}}, std::pair{std::size_t{3}, huge},
        std::pair{std::numeric_limits<std::size_t>::max(), std::size_t{2}}}) {
    from = recorder_.mark();
    errno = 0;
    EXPECT_EQ(opaque(&reallocarray)(q, count, size), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(recorder_.mark(), from);
    EXPECT_EQ(second->frees.load(), 0);
  }
  errno = 0;
  EXPECT_EQ(opaque(&reallocarray)(nullptr, huge, 4), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(check_fill(q, 120, 3), 120u);

  // To zero bytes frees, as realloc does.
  EXPECT_EQ(opaque(&reallocarray)(q, 0, 8), nullptr);
  expect_freed_once(second, "reallocarray(p, 0, 8)");
}

// ---- aligned allocation ----

// The system's own function `name`: the C library's (or the sanitizer's),
// the definition that follows the hooks'.
template <class F>
F* system_function(const char* name) {
  return reinterpret_cast<F*>(dlsym(RTLD_NEXT, name));
}

class HooksAligned : public memlimits::testing::recording_fixture {
 protected:
  using aligned_fn = void*(std::size_t alignment, std::size_t bytes);

  // hook(a, n) answers as the system's own function: the same errno, null
  // when the system refuses, and when it accepts, a block counted like any
  // other, aligned to the next power of two (malloc's alignment for 0).
  void expect_as_system(const char* name, aligned_fn* hook, aligned_fn* system, std::size_t a,
                        std::size_t n) {
    const std::string what =
        std::string(name) + "(" + std::to_string(a) + ", " + std::to_string(n) + ")";
    errno = 0;
    void* expected = system(a, n);  // the C library's own, never sampled
    const int expected_errno = errno;
    opaque(&std::free)(expected);
    const std::size_t from = recorder_.mark();
    errno = 0;
    void* p = opaque(hook)(a, n);
    EXPECT_EQ(errno, expected_errno) << what;
    if (expected == nullptr) {
      EXPECT_EQ(p, nullptr) << what << ": the system refuses it";
      EXPECT_EQ(recorder_.mark(), from) << what;
      return;
    }
    ASSERT_NE(p, nullptr) << what << ": the system accepts it";
    const entry* e = expect_one_report(from, p, n, source::malloc, what);
    EXPECT_TRUE(aligned_to(p, a == 0 ? alignof(std::max_align_t) : std::bit_ceil(a))) << what;
    EXPECT_GE(opaque(&malloc_usable_size)(p), n) << what;
    fill(p, n, 6);
    opaque(&std::free)(p);
    expect_freed_once(e, what);
  }
};

struct aligned_form {
  const char* name;
  void* (*allocate)(std::size_t alignment, std::size_t bytes);
};

const aligned_form aligned_forms[] = {
    {"posix_memalign",
     [](std::size_t a, std::size_t n) -> void* {
       void* p = nullptr;
       return opaque(&posix_memalign)(&p, a, n) == 0 ? p : nullptr;
     }},
    {"aligned_alloc", [](std::size_t a, std::size_t n) { return opaque(&aligned_alloc)(a, n); }},
    {"memalign", [](std::size_t a, std::size_t n) { return opaque(&memalign)(a, n); }},
};

TEST_F(HooksAligned, AlignedFormsAreReportedAndAligned) {
  start();
  for (const aligned_form& af : aligned_forms) {
    for (const std::size_t a : alignments) {
      for (const std::size_t n : sizes) {
        const std::string what =
            std::string(af.name) + "(" + std::to_string(a) + ", " + std::to_string(n) + ")";
        const std::size_t from = recorder_.mark();
        void* p = af.allocate(a, n);
        ASSERT_NE(p, nullptr) << what;
        const entry* e = expect_one_report(from, p, n, source::malloc, what);
        EXPECT_TRUE(aligned_to(p, a)) << what << ": " << p;
        EXPECT_GE(opaque(&malloc_usable_size)(p), n) << what;
        fill(p, n, 5);
        opaque(&std::free)(p);
        expect_freed_once(e, what);
      }
    }
  }
}

TEST_F(HooksAligned, AlignmentIsHonouredForUnsampledBlocks) {
  unsampled([&] {
    for (const aligned_form& af : aligned_forms) {
      for (const std::size_t a : alignments) {
        void* p = af.allocate(a, 100);
        ASSERT_NE(p, nullptr);
        EXPECT_TRUE(aligned_to(p, a)) << af.name << " " << a;
        opaque(&std::free)(p);
      }
    }
  });
}

TEST_F(HooksAligned, ReallocOfAnOverAlignedSampledBlock) {
  start();
  const std::size_t from = recorder_.mark();
  void* p = opaque(&aligned_alloc)(65536, 3000);
  const entry* e = expect_one_report(from, p, 3000, source::malloc, "aligned_alloc(65536)");
  EXPECT_TRUE(aligned_to(p, 65536));
  fill(p, 3000, 11);
  void* q = opaque(&std::realloc)(p, 9000);
  ASSERT_NE(q, nullptr);
  expect_freed_once(e, "realloc of aligned_alloc(65536)");
  EXPECT_EQ(check_fill(q, 3000, 11), 3000u);
  opaque(&std::free)(q);
}

TEST_F(HooksAligned, PosixMemalignRejectsBadAlignments) {
  start();
  for (const std::size_t a : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{4},
                              std::size_t{12}, std::size_t{24}, std::size_t{48},
                              std::size_t{4097}, std::size_t{3} << 12}) {
    void* out = reinterpret_cast<void*>(0x1234);
    errno = 12345;
    EXPECT_EQ(opaque(&posix_memalign)(&out, a, 100), EINVAL) << a;
    EXPECT_EQ(out, reinterpret_cast<void*>(0x1234)) << "*out written for alignment " << a;
    EXPECT_EQ(errno, 12345) << "posix_memalign reports errors by its result, not errno";
  }
  EXPECT_EQ(recorder_.mark(), 0u);
  // sizeof(void*) itself is valid.
  void* out = nullptr;
  EXPECT_EQ(opaque(&posix_memalign)(&out, sizeof(void*), 10), 0);
  ASSERT_NE(out, nullptr);
  const entry* e = expect_one_report(0, out, 10, source::malloc, "posix_memalign(8, 10)");
  opaque(&std::free)(out);
  expect_freed_once(e, "posix_memalign(8, 10)");
  // Too big: ENOMEM, *out untouched, nothing reported.
  const std::size_t from = recorder_.mark();
  out = reinterpret_cast<void*>(0x1234);
  EXPECT_EQ(opaque(&posix_memalign)(&out, 64, std::size_t{1} << 62), ENOMEM);
  EXPECT_EQ(out, reinterpret_cast<void*>(0x1234));
  EXPECT_EQ(recorder_.mark(), from);
}

TEST_F(HooksAligned, AlignedAllocLeavesOtherAlignmentsToTheSystem) {
  // An alignment that is 0 or not a power of two is the C library's to judge
  // (glibc 2.36 rounds it up as memalign does, 2.38 refuses it with EINVAL).
  auto* const system_aligned_alloc = system_function<aligned_fn>("aligned_alloc");
  ASSERT_NE(system_aligned_alloc, nullptr);
  start();
  for (const std::size_t a : {std::size_t{0}, std::size_t{3}, std::size_t{24}, std::size_t{48},
                              std::size_t{100}, std::size_t{4097}, std::size_t{3} << 12}) {
    expect_as_system("aligned_alloc", &aligned_alloc, system_aligned_alloc, a, 100);
  }
  // Every power of two is valid, 1 and 2 included.
  for (const std::size_t a : {std::size_t{1}, std::size_t{2}, std::size_t{4}}) {
    const std::size_t from = recorder_.mark();
    void* p = opaque(&aligned_alloc)(a, 10);
    ASSERT_NE(p, nullptr) << a;
    const entry* e = expect_one_report(from, p, 10, source::malloc, "aligned_alloc small");
    opaque(&std::free)(p);
    expect_freed_once(e, "aligned_alloc small");
  }
  // Too big, in size or alignment: the system refuses it (glibc: ENOMEM),
  // nothing is reported.
  const std::size_t from = recorder_.mark();
  for (const auto& [a, n] : {std::pair{std::size_t{64}, std::size_t{1} << 62},
                             std::pair{std::size_t{1} << 62, std::size_t{64}},
                             std::pair{std::size_t{1} << 63, std::size_t{64}}}) {
    errno = 0;
    EXPECT_EQ(system_aligned_alloc(a, n), nullptr) << a << ", " << n;
    const int expected_errno = errno;
    errno = 0;
    EXPECT_EQ(opaque(&aligned_alloc)(a, n), nullptr) << a << ", " << n;
    EXPECT_EQ(errno, expected_errno) << a << ", " << n;
  }
  EXPECT_EQ(recorder_.mark(), from);
}

TEST_F(HooksAligned, PosixMemalignAnswersAsTheSystemForOtherAlignments) {
  // Alignments POSIX does not allow, and ones too large: the system's
  // posix_memalign decides, result and *out as it leaves them.
  auto* const system_posix_memalign =
      system_function<int(void**, std::size_t, std::size_t)>("posix_memalign");
  ASSERT_NE(system_posix_memalign, nullptr);
  start();
  for (const std::size_t a : {std::size_t{0}, std::size_t{1}, std::size_t{4}, std::size_t{24},
                              std::size_t{4097}, std::size_t{1} << 62,
#if !defined(MEMLIMITS_TEST_ASAN)  // GCC 12's ASan fails an internal CHECK on it
                              std::size_t{1} << 63,
#endif
                              std::numeric_limits<std::size_t>::max()}) {
    void* expected = reinterpret_cast<void*>(0x1234);
    errno = 0;
    const int expected_result = system_posix_memalign(&expected, a, 100);
    const int expected_errno = errno;
    if (expected_result == 0) opaque(&std::free)(expected);
    void* out = reinterpret_cast<void*>(0x1234);
    errno = 0;
    const int result = opaque(&posix_memalign)(&out, a, 100);
    EXPECT_EQ(result, expected_result) << a;
    EXPECT_EQ(errno, expected_errno) << a;
    if (result == 0) {
      EXPECT_TRUE(aligned_to(out, std::bit_ceil(a))) << a;
      opaque(&std::free)(out);
    } else {
      EXPECT_EQ(out, expected) << a << ": *out not left as the system leaves it";
    }
  }
}

TEST_F(HooksAligned, HugeRequestsAreTheSystemsAndLeaveTheStreamAlone) {
  // Sizes beyond the largest block the core counts: the system's answer,
  // and the next allocation is still sampled with exactly its words.
  start();
  for (const std::size_t n : {(std::size_t{1} << 61) + 1, std::size_t{1} << 62, huge}) {
    const std::size_t from = recorder_.mark();
    errno = 0;
    EXPECT_EQ(opaque(&std::malloc)(n), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
    errno = 0;
    EXPECT_EQ(opaque(&std::calloc)(n, 1), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
    errno = 0;
    EXPECT_EQ(opaque(&memalign)(64, n), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
    EXPECT_EQ(recorder_.mark(), from) << n;
    void* p = opaque(&std::malloc)(40);
    const entry* e = expect_one_report(from, p, 40, source::malloc, "after a huge request");
    opaque(&std::free)(p);
    expect_freed_once(e, "after a huge request");
  }
}

TEST_F(HooksAligned, MemalignLeavesOtherAlignmentsToTheSystem) {
  // glibc's memalign rounds an alignment up to a power of two (24 to 32, 5000
  // to 8192, above the sampled alignment); the sanitizers' refuse it.
  auto* const system_memalign = system_function<aligned_fn>("memalign");
  ASSERT_NE(system_memalign, nullptr);
  start();
  for (const std::size_t a : {std::size_t{0}, std::size_t{3}, std::size_t{24}, std::size_t{100},
                              std::size_t{5000}, std::size_t{3} << 12}) {
    expect_as_system("memalign", &memalign, system_memalign, a, 100);
  }
#if !defined(MEMLIMITS_TEST_ASAN)
  // Accepted by glibc: counted at the next power of two.
  const std::size_t from = recorder_.mark();
  void* p = opaque(&memalign)(5000, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned_to(p, 8192)) << p;
  const entry* e = expect_one_report(from, p, 100, source::malloc, "memalign(5000, 100)");
  opaque(&std::free)(p);
  expect_freed_once(e, "memalign(5000, 100)");
#endif
}

TEST_F(HooksAligned, VallocIsReportedAndPageAligned) {
  start();
  for (const std::size_t n : sizes) {
    const std::string what = "valloc(" + std::to_string(n) + ")";
    const std::size_t from = recorder_.mark();
    void* p = opaque(&valloc)(n);
    ASSERT_NE(p, nullptr);
    const entry* e = expect_one_report(from, p, n, source::malloc, what);
    EXPECT_TRUE(aligned_to(p, page));
    EXPECT_GE(opaque(&malloc_usable_size)(p), n);
    fill(p, n, 2);
    opaque(&std::free)(p);
    expect_freed_once(e, what);
  }
}

TEST_F(HooksAligned, PvallocIsReportedWithItsSizeRoundedUpToAPage) {
  ASSERT_EQ(static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), page);
  start();
  for (const std::size_t n : sizes) {
    const std::string what = "pvalloc(" + std::to_string(n) + ")";
    const std::size_t rounded = round_up(n, page);
    const std::size_t from = recorder_.mark();
    void* p = opaque(&pvalloc)(n);
    ASSERT_NE(p, nullptr);
    const entry* e = expect_one_report(from, p, rounded, source::malloc, what);
    EXPECT_TRUE(aligned_to(p, page));
    EXPECT_GE(opaque(&malloc_usable_size)(p), rounded);
    fill(p, rounded, 4);  // the whole rounded size is the caller's
    opaque(&std::free)(p);
    expect_freed_once(e, what);
  }
  // pvalloc(0) is an allocation of zero bytes: never sampled.
  const std::size_t from = recorder_.mark();
  void* p = opaque(&pvalloc)(0);
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(recorder_.mark(), from);
  opaque(&std::free)(p);
  // Overflow when rounding.
  for (const std::size_t n : {std::numeric_limits<std::size_t>::max(),
                              std::numeric_limits<std::size_t>::max() - page + 2, huge}) {
    errno = 0;
    EXPECT_EQ(opaque(&pvalloc)(n), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
    errno = 0;
    EXPECT_EQ(opaque(&valloc)(n), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
  }
  EXPECT_EQ(recorder_.mark(), from);
}

// ---- errno ----

class HooksErrno : public memlimits::testing::recording_fixture {
 protected:
  // Runs each successful allocation and free of the family with errno set to
  // a marker, and checks that it is untouched.
  void check_all() {
    auto expect_kept = [](const char* what) {
      EXPECT_EQ(errno, 12345) << what << " changed errno";
      errno = 12345;
    };
    errno = 12345;
    for (const std::size_t n : {std::size_t{8}, std::size_t{100}, std::size_t{5000}}) {
      void* p = opaque(&std::malloc)(n);
      expect_kept("malloc");
      p = opaque(&std::realloc)(p, n * 3);
      expect_kept("realloc (grow)");
      p = opaque(&std::realloc)(p, n / 2);
      expect_kept("realloc (shrink)");
      p = opaque(&reallocarray)(p, 2, n);
      expect_kept("reallocarray");
      EXPECT_GE(opaque(&malloc_usable_size)(p), 2 * n);
      expect_kept("malloc_usable_size");
      opaque(&std::free)(p);
      expect_kept("free");

      p = opaque(&std::calloc)(3, n);
      expect_kept("calloc");
      EXPECT_EQ(opaque(&std::realloc)(p, 0), nullptr);
      expect_kept("realloc(p, 0)");

      void* q = nullptr;
      EXPECT_EQ(opaque(&posix_memalign)(&q, 64, n), 0);
      expect_kept("posix_memalign");
      opaque(&std::free)(q);
      expect_kept("free (posix_memalign)");
      q = opaque(&aligned_alloc)(8192, n);
      expect_kept("aligned_alloc");
      opaque(&std::free)(q);
      expect_kept("free (aligned_alloc)");
      q = opaque(&memalign)(128, n);
      expect_kept("memalign");
      opaque(&std::free)(q);
      expect_kept("free (memalign)");
      q = opaque(&valloc)(n);
      expect_kept("valloc");
      opaque(&std::free)(q);
      expect_kept("free (valloc)");
      q = opaque(&pvalloc)(n);
      expect_kept("pvalloc");
      opaque(&std::free)(q);
      expect_kept("free (pvalloc)");

      for (const new_form& nf : new_forms) {
        void* r = opaque(nf.allocate)(n, nf.aligned ? 4096 : 0);
        expect_kept(nf.name);
        if (nf.aligned) {
          if (nf.array) ::operator delete[](r, al(4096)); else ::operator delete(r, al(4096));
        } else {
          if (nf.array) ::operator delete[](r); else ::operator delete(r);
        }
        expect_kept("operator delete");
      }
    }
  }
};

TEST_F(HooksErrno, KeptBySampledBlocks) {
  start();
  check_all();
  EXPECT_GT(recorder_.mark(), 0u);
}

TEST_F(HooksErrno, KeptByUnsampledBlocks) {
  unsampled([&] { check_all(); });
}

TEST_F(HooksErrno, KeptAtTheDefaultRate) {
  check_all();
}

// ---- threads ----

class HooksThreads : public memlimits::testing::recording_fixture {};

TEST_F(HooksThreads, FreesFromAnotherThreadAreReportedOnThatThread) {
  constexpr int blocks = 400;
  std::vector<void*> pointers(blocks);
  std::vector<std::size_t> block_sizes(blocks);
  std::thread::id allocator_id, freer_id;
  start();
  const std::size_t from = recorder_.mark();
  std::thread allocating([&] {
    for (int i = 0; i < blocks; ++i) {
      block_sizes[i] = 1 + static_cast<std::size_t>(i) * 97 % 20000;
      switch (i % 4) {
        case 0: pointers[i] = opaque(&std::malloc)(block_sizes[i]); break;
        case 1: pointers[i] = opaque(new_forms[0].allocate)(block_sizes[i], 0); break;
        case 2: pointers[i] = opaque(new_forms[5].allocate)(block_sizes[i], 8192); break;
        default: pointers[i] = opaque(&std::calloc)(1, block_sizes[i]); break;
      }
    }
  });
  allocator_id = allocating.get_id();
  allocating.join();
  const std::int64_t frees_before = recorder_.frees();
  std::thread freeing([&] {
    for (int i = 0; i < blocks; ++i) {
      switch (i % 4) {
        case 1: ::operator delete(pointers[i]); break;
        case 2: ::operator delete[](pointers[i], al(8192)); break;
        default: opaque(&std::free)(pointers[i]); break;
      }
    }
  });
  freer_id = freeing.get_id();
  freeing.join();
  // At least our blocks (the runtime frees some blocks of its own, such as
  // the std::thread state, on the new thread).
  EXPECT_GE(recorder_.frees() - frees_before, blocks);
  for (int i = 0; i < blocks; ++i) {
    const entry* e = recorder_.find(pointers[i], from);
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->size, block_sizes[i]) << i;
    EXPECT_EQ(e->origin, i % 4 == 1 || i % 4 == 2 ? source::new_delete : source::malloc) << i;
    EXPECT_EQ(e->allocated_by, allocator_id) << i;
    EXPECT_EQ(e->frees.load(), 1) << i;
    EXPECT_EQ(e->freed_by.load(), freer_id) << i;
  }
  // Whatever the allocating thread had reported was reported freed.
  for (std::size_t i = from; i < recorder_.mark(); ++i) {
    if (recorder_.at(i).allocated_by == allocator_id) {
      EXPECT_EQ(recorder_.at(i).frees.load(), 1) << i;
    }
  }
  // glibc keeps per-thread memory (the thread's TLS vector, allocated by
  // pthread_create on this thread) in its stack cache: not ours to check.
  expect_all_freed_ = false;
}

TEST_F(HooksThreads, ConcurrentAllocationsAndFreesBalance) {
  constexpr int threads = 4;
  constexpr int rounds = 2000;
  std::vector<std::thread> workers;
  workers.reserve(threads);
  // Blocks handed from each thread to the next.
  std::vector<std::vector<void*>> handoff(threads);
  for (auto& h : handoff) h.reserve(rounds);
  std::atomic<int> ready{0};
  std::vector<std::thread::id> ids;
  ids.reserve(threads);
  start();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::minstd_rand rng(t + 1);
      void* window[16] = {};
      for (int i = 0; i < rounds; ++i) {
        const std::size_t n = 1 + rng() % 5000;
        void*& slot = window[i % 16];
        if (slot != nullptr) opaque(&std::free)(slot);
        slot = (i & 1) ? opaque(&std::malloc)(n) : opaque(&std::realloc)(nullptr, n);
        if (i % 8 == 0) {
          handoff[t].push_back(opaque(new_forms[0].allocate)(n, 0));
        }
      }
      for (void* p : window) opaque(&std::free)(p);
      ready.fetch_add(1);
      // Going on before the others are done would race with their pushes.
      memlimits::testing::await([&] { return ready.load() == threads; },
                                "every worker to hand over its blocks");
      for (void* p : handoff[(t + 1) % threads]) ::operator delete(p);
    });
  }
  for (auto& w : workers) {
    ids.push_back(w.get_id());
    w.join();
  }
  stop();
  EXPECT_GE(recorder_.mark(), static_cast<std::size_t>(threads * rounds));
  // Every block a worker allocated was reported freed once; the rest is the
  // threads' own machinery (see above).
  std::size_t mine = 0;
  for (std::size_t i = 0; i < recorder_.mark(); ++i) {
    const entry& e = recorder_.at(i);
    for (const auto& id : ids) {
      if (e.allocated_by != id) continue;
      ++mine;
      EXPECT_EQ(e.frees.load(), 1) << "block #" << i << " of " << e.size << " bytes";
    }
  }
  EXPECT_GE(mine, static_cast<std::size_t>(threads * rounds));
  expect_all_freed_ = false;
}

// ---- unsampled page-aligned blocks ----

class HooksUnsampled : public memlimits::testing::recording_fixture {};

// Allocated with sampling off: page-aligned but unsampled, so their free and
// realloc take the table lookup and must find nothing.
TEST_F(HooksUnsampled, PageAlignedBlocksAreNotMistakenForSampled) {
  constexpr int count = 64;
  struct block {
    void* p;
    std::size_t n;
    bool is_new;
  };
  std::vector<block> blocks;
  blocks.reserve(count);
  start();
  unsampled([&] {
    for (int i = 0; i < count; ++i) {
      const std::size_t n = 1 + static_cast<std::size_t>(i) * 321;
      void* p = nullptr;
      bool is_new = false;
      switch (i % 5) {
        case 0: p = opaque(&valloc)(n); break;
        case 1: p = opaque(&aligned_alloc)(4096, n); break;
        case 2: EXPECT_EQ(opaque(&posix_memalign)(&p, 8192, n), 0); break;
        case 3: p = opaque(&memalign)(65536, n); break;
        default: p = opaque(new_forms[4].allocate)(n, 4096); is_new = true; break;
      }
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(aligned_to(p, page));
      EXPECT_FALSE(memlimits::tracking::owns(p)) << "unsampled block " << p << " is tracked";
      fill(p, n, static_cast<unsigned char>(i));
      blocks.push_back({p, n, is_new});
    }
  });
  EXPECT_EQ(recorder_.mark(), 0u);
  // Realloc in place (sampling off): nothing reported, contents kept.
  unsampled([&] {
    for (int i = 0; i < count; i += 3) {
      if (blocks[i].is_new) continue;
      const std::size_t n = blocks[i].n + 50;
      void* q = opaque(&std::realloc)(blocks[i].p, n);
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(check_fill(q, blocks[i].n, static_cast<unsigned char>(i)), blocks[i].n);
      fill(q, n, static_cast<unsigned char>(i));
      blocks[i] = {q, n, false};
    }
  });
  EXPECT_EQ(recorder_.mark(), 0u);
  EXPECT_EQ(recorder_.frees(), 0);
  // Realloc under the rate-1 profile: the new block is sampled and
  // reported; the old one's free is not (it was never reported).
  for (int i = 1; i < count; i += 3) {
    if (blocks[i].is_new) continue;
    const std::size_t n = blocks[i].n * 2;
    const std::size_t from = recorder_.mark();
    void* q = opaque(&std::realloc)(blocks[i].p, n);
    ASSERT_NE(q, nullptr);
    expect_one_report(from, q, n, source::malloc, "realloc of unsampled page-aligned block");
    EXPECT_EQ(check_fill(q, blocks[i].n, static_cast<unsigned char>(i)), blocks[i].n);
    EXPECT_EQ(recorder_.frees(), 0);
    blocks[i] = {q, n, false};
  }
  const std::size_t sampled = recorder_.mark();
  // Free everything: only the sampled (reallocated) blocks are reported.
  for (const block& b : blocks) {
    if (b.is_new) {
      ::operator delete(b.p, al(4096));
    } else {
      opaque(&std::free)(b.p);
    }
  }
  EXPECT_EQ(static_cast<std::size_t>(recorder_.frees()), sampled);
}

// A sampled block's address reused by an unsampled one: the table must have
// forgotten it at the first free.
TEST_F(HooksUnsampled, AddressOfAFreedSampledBlockReusedUnsampled) {
  start();
  int reused = 0;
  for (int i = 0; i < 50; ++i) {
    const std::size_t from = recorder_.mark();
    void* p = opaque(&valloc)(200);
    const entry* e = expect_one_report(from, p, 200, source::malloc, "valloc");
    opaque(&std::free)(p);
    expect_freed_once(e, "valloc");
    // In the reserved range, a freed block's address stays the range's.
    if (!memlimits::tracking::uses_range) {
      EXPECT_FALSE(memlimits::tracking::owns(p));
    }
    void* q = nullptr;
    unsampled([&] {
      q = opaque(&valloc)(200);
    });
    reused += q == p;
    EXPECT_FALSE(memlimits::tracking::owns(q));
    opaque(&std::free)(q);
    expect_freed_once(e, "valloc (address reused)");
  }
  stop();
  RecordProperty("reused", reused);
}

// The low-rate case as a program sees it: a profile at 1e-6, page-aligned
// blocks of every kind allocated, reallocated and freed; almost none are
// sampled, each that is is reported freed once (checked on tear-down), and
// the contents survive every realloc.
TEST_F(HooksUnsampled, ManyPageAlignedBlocksAtALowRate) {
  constexpr int count = 1000;
  std::vector<std::pair<void*, std::size_t>> blocks(count);
  std::minstd_rand rng(12345);
  start(1e-6);
  for (int i = 0; i < count; ++i) {
    const std::size_t n = 1 + rng() % 20000;
    void* p = nullptr;
    switch (i % 4) {
      case 0: p = opaque(&valloc)(n); break;
      case 1: p = opaque(&aligned_alloc)(4096, n); break;
      case 2: EXPECT_EQ(opaque(&posix_memalign)(&p, 4096, n), 0); break;
      default: p = opaque(&pvalloc)(n); break;
    }
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(aligned_to(p, page));
    fill(p, n, static_cast<unsigned char>(i));
    blocks[i] = {p, n};
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < count; ++i) {
      auto& [p, n] = blocks[i];
      const std::size_t m = 1 + rng() % 30000;
      void* q = opaque(&std::realloc)(p, m);
      ASSERT_NE(q, nullptr);
      const std::size_t kept = n < m ? n : m;
      ASSERT_EQ(check_fill(q, kept, static_cast<unsigned char>(i)), kept) << i;
      fill(q, m, static_cast<unsigned char>(i));
      blocks[i] = {q, m};
    }
  }
  for (auto& [p, n] : blocks) opaque(&std::free)(p);
  stop();
  RecordProperty("sampled", static_cast<int>(recorder_.mark()));
}

// The frees of a LIFO workload (a bignum-like computation: temporaries of
// 16-512 bytes freed in the reverse order of their allocation, so that
// glibc's tcache hands the same chunks back again and again): exactly the
// frees of sampled blocks call into the tracking layer, no other. The
// profile samples at the thread's rate, so it sees every sampled block.
// (With sampled blocks aligned to 128 bytes, every free of a chunk that
// happens to sit on such a boundary took the slow path: the count of those
// is recorded for comparison.)
TEST_F(HooksUnsampled, OnlyTheFreesOfSampledBlocksReachTracking) {
  if (!memlimits::tracking::uses_range) {
    GTEST_SKIP() << "sanitizer build: sampled blocks are the sanitizer's, aligned to 128 bytes";
  }
  constexpr int depth_max = 64;
  void* stack[depth_max];
  std::size_t sizes[depth_max];
  int depth = 0;
  std::minstd_rand rng(20261207);
  std::uint64_t aligned_frees = 0;
  start(1e-3);
  const std::int64_t frees_before = recorder_.frees();
  const std::size_t reports_before = recorder_.mark();
  const std::uint64_t lookups_before = memlimits::tracking::stats().free_lookups;
  for (int step = 0; step < 400000; ++step) {
    const bool push = depth == 0 || (depth < depth_max && rng() % 2 == 0);
    if (push) {
      const std::size_t n = 16 + (rng() % 8) * 8 * (1 + rng() % 8);
      void* p = step % 3 == 0 ? opaque(&std::realloc)(nullptr, n) : opaque(&std::malloc)(n);
      if (p == nullptr) std::abort();
      static_cast<unsigned char*>(p)[0] = static_cast<unsigned char>(n);
      stack[depth] = p;
      sizes[depth++] = n;
    } else {
      void* p = stack[--depth];
      if (static_cast<unsigned char*>(p)[0] != static_cast<unsigned char>(sizes[depth])) std::abort();
      aligned_frees += (reinterpret_cast<std::uintptr_t>(p) & 127) == 0;
      opaque(&std::free)(p);
    }
  }
  while (depth > 0) opaque(&std::free)(stack[--depth]);
  const std::uint64_t lookups = memlimits::tracking::stats().free_lookups - lookups_before;
  const std::int64_t sampled_frees = recorder_.frees() - frees_before;
  const std::size_t sampled = recorder_.mark() - reports_before;
  stop();
  EXPECT_EQ(static_cast<std::int64_t>(sampled), sampled_frees);
  EXPECT_EQ(lookups, static_cast<std::uint64_t>(sampled_frees))
      << "frees that called into tracking, against frees of sampled blocks";
  // About 200,000 blocks of 16-464 bytes at 1e-3 per word: 3,500 sampled
  // on average, standard deviation 59; fewer than 3,000 is 8.5 deviations
  // below (false failure < 1e-16).
  EXPECT_GT(sampled_frees, 3000);
  RecordProperty("sampled_frees", static_cast<int>(sampled_frees));
  RecordProperty("aligned_frees", static_cast<int>(aligned_frees));
}

}  // namespace
