// tests/preload/semantics_probe.cpp — a battery of calls to the malloc
// family with edge arguments, one line per call on standard output: the
// arguments, whether the result is NULL, errno (0 before each call),
// posix_memalign's result and whether *out was left untouched, whether a
// block is aligned as asked (to the requested alignment when it is a power
// of two, to the next power of two otherwise, to alignof(max_align_t) for 0
// and for malloc, calloc and realloc, to the page for valloc and pvalloc),
// whether malloc_usable_size covers the request, whether calloc's block is
// zero and whether realloc kept the contents. Every block is freed.
//
// Knows nothing of memlimits: run as it is, its lines are the system C
// library's own behaviour; run under the preload library or built with the
// linked-in hooks, they must be the same (semantics_compare.sh). No pointer
// value is printed, so the output is deterministic. C in all but name: it
// is compiled as C++ only because the project builds no C.
//
// Every function is called through a volatile pointer, so that the compiler
// neither folds a call whose arguments it judges impossible nor elides an
// allocation that is freed at once.
#include <errno.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void* (*volatile malloc_fn)(size_t) = malloc;
static void* (*volatile calloc_fn)(size_t, size_t) = calloc;
static void* (*volatile realloc_fn)(void*, size_t) = realloc;
static void* (*volatile reallocarray_fn)(void*, size_t, size_t) = reallocarray;
static void (*volatile free_fn)(void*) = free;
static void* (*volatile aligned_alloc_fn)(size_t, size_t) = aligned_alloc;
static void* (*volatile memalign_fn)(size_t, size_t) = memalign;
static int (*volatile posix_memalign_fn)(void**, size_t, size_t) = posix_memalign;
static void* (*volatile valloc_fn)(size_t) = valloc;
static void* (*volatile pvalloc_fn)(size_t) = pvalloc;
static size_t (*volatile usable_size_fn)(void*) = malloc_usable_size;

static const size_t alignments[] = {
    0,     1,     2,     3,       4,          6,          8,          12,
    16,    24,    32,    48,      64,         96,         100,        128,
    256,   4096,  4097,  65536,   (size_t)1 << 20,        (size_t)1 << 21,
    SIZE_MAX / 2, SIZE_MAX / 2 + 1, SIZE_MAX};

static const size_t sizes[] = {
    0,    1,    7,     8,     24,    96,        100, 4095, 4096,
    65537, (size_t)1 << 20, PTRDIFF_MAX, SIZE_MAX - 4096, SIZE_MAX};

// calloc and reallocarray: (count, size) pairs whose products stay small
// enough to be checked byte by byte, then ones that overflow or that no
// allocator can satisfy.
static const size_t small_counts[] = {0, 1, 2, 3, 7, 8, 4096};
static const size_t small_sizes[] = {0, 1, 7, 8, 24, 100, 1000};
static const size_t huge_pairs[][2] = {
    {SIZE_MAX, 1},
    {1, SIZE_MAX},
    {SIZE_MAX, 2},
    {2, SIZE_MAX},
    {SIZE_MAX / 2 + 1, 2},
    {2, SIZE_MAX / 2 + 1},
    {PTRDIFF_MAX, 1},
    {1, PTRDIFF_MAX},
    {(size_t)1 << 32, (size_t)1 << 32},
    {(size_t)1 << 31, (size_t)1 << 31},
    {(size_t)1 << 62, 2},
    {SIZE_MAX - 4096, 1},
    {SIZE_MAX, 0},
    {0, SIZE_MAX},
};

static const char* errno_name(int e) {
  static char other[32];
  switch (e) {
    case 0: return "0";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    default: snprintf(other, sizeof other, "%d", e); return other;
  }
}

// The alignment a block must have: `alignment` itself when it is a power of
// two, the next power of two otherwise, alignof(max_align_t) for 0; 0 when
// the next power of two is not representable.
static size_t expected_alignment(size_t alignment) {
  if (alignment == 0) return alignof(max_align_t);
  size_t a = 1;
  while (a < alignment) {
    if (a > SIZE_MAX / 2) return 0;
    a <<= 1;
  }
  return a;
}

static const char* aligned_word(const void* p, size_t alignment) {
  const size_t a = expected_alignment(alignment);
  if (a == 0) return "unrepresentable";
  return ((uintptr_t)p & (a - 1)) == 0 ? "yes" : "NO";
}

// Writes the first and the last byte of the request, then frees.
static void touch_and_free(void* p, size_t bytes) {
  if (bytes != 0) {
    ((volatile unsigned char*)p)[0] = 0x5a;
    ((volatile unsigned char*)p)[bytes - 1] = 0xa5;
  }
  free_fn(p);
}

// "<call>: NULL errno=E" or "<call>: block errno=E aligned=... usable=...".
static void report(const char* call, const void* p, int e, size_t alignment, size_t bytes) {
  if (p == NULL) {
    printf("%s: NULL errno=%s\n", call, errno_name(e));
  } else {
    printf("%s: block errno=%s aligned=%s usable=%s", call, errno_name(e),
           aligned_word(p, alignment), usable_size_fn((void*)p) >= bytes ? "yes" : "NO");
  }
}

// report(), ended with its newline, then touch_and_free() of a block.
static void report_and_free(const char* call, void* p, int e, size_t alignment, size_t bytes) {
  report(call, p, e, alignment, bytes);
  if (p != NULL) {
    printf("\n");
    touch_and_free(p, bytes);
  }
}

static void probe_aligned(void) {
  char call[128];
  for (size_t i = 0; i < sizeof alignments / sizeof alignments[0]; ++i) {
    for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; ++j) {
      const size_t a = alignments[i];
      const size_t n = sizes[j];
      void* p;
      int e;

      snprintf(call, sizeof call, "aligned_alloc(%zu, %zu)", a, n);
      errno = 0;
      p = aligned_alloc_fn(a, n);
      e = errno;
      report_and_free(call, p, e, a, n);

      snprintf(call, sizeof call, "memalign(%zu, %zu)", a, n);
      errno = 0;
      p = memalign_fn(a, n);
      e = errno;
      report_and_free(call, p, e, a, n);

      void* const untouched = (void*)(uintptr_t)0x5eed;
      void* out = untouched;
      errno = 0;
      const int r = posix_memalign_fn(&out, a, n);
      e = errno;
      const int kept = out == untouched;
      snprintf(call, sizeof call, "posix_memalign(%zu, %zu) = %s out=%s", a, n, errno_name(r),
               kept ? "untouched" : out == NULL ? "NULL" : "set");
      if (r == 0 && !kept && out != NULL) {
        report_and_free(call, out, e, a, n);
      } else {
        printf("%s: errno=%s\n", call, errno_name(e));
      }
    }
  }
}

static void probe_page_aligned(void) {
  char call[128];
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; ++j) {
    const size_t n = sizes[j];
    void* p;
    int e;

    snprintf(call, sizeof call, "valloc(%zu)", n);
    errno = 0;
    p = valloc_fn(n);
    e = errno;
    report_and_free(call, p, e, page, n);

    snprintf(call, sizeof call, "pvalloc(%zu)", n);
    errno = 0;
    p = pvalloc_fn(n);
    e = errno;
    report(call, p, e, page, n);
    if (p != NULL) {
      // pvalloc rounds the size up to whole pages.
      const size_t pages = n > SIZE_MAX - (page - 1) ? 0 : (n + page - 1) / page * page;
      printf(" usable_pages=%s\n", usable_size_fn(p) >= pages ? "yes" : "NO");
      touch_and_free(p, n);
    }
  }
}

static int all_zero(const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return 0;
  }
  return 1;
}

static void probe_calloc(size_t count, size_t size) {
  char call[128];
  snprintf(call, sizeof call, "calloc(%zu, %zu)", count, size);
  errno = 0;
  unsigned char* p = static_cast<unsigned char*>(calloc_fn(count, size));
  const int e = errno;
  report(call, p, e, 0, count * size);
  if (p != NULL) {
    printf(" zero=%s\n", all_zero(p, count * size) ? "yes" : "NO");
    touch_and_free(p, count * size);
  }
}

static void fill(unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = (unsigned char)(i * 7 + 1);
}
static int filled(const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != (unsigned char)(i * 7 + 1)) return 0;
  }
  return 1;
}

// realloc (array: reallocarray) of NULL, of a 100-byte block from malloc and
// of one from aligned_alloc(4096, 100). A NULL result for a non-zero size
// leaves the block untouched (C); for size 0 the block counts as freed
// (glibc; the C standard leaves it to the implementation).
static void probe_realloc(int array, size_t count, size_t size) {
  static const char* const origins[] = {"NULL", "malloc(100)", "aligned_alloc(4096, 100)"};
  char call[160];
  const size_t old_size = 100;
  const size_t bytes = array ? count * size : count;
  int overflows = 0;
  if (array) {
    size_t product;
    overflows = __builtin_mul_overflow(count, size, &product);
  }
  for (int origin = 0; origin < 3; ++origin) {
    unsigned char* old = static_cast<unsigned char*>(origin == 0   ? NULL
                                                     : origin == 1 ? malloc_fn(old_size)
                                                                   : aligned_alloc_fn(4096, old_size));
    if (origin != 0 && old == NULL) {
      printf("probe: allocation of the block to reallocate failed\n");
      exit(2);
    }
    if (old != NULL) fill(old, old_size);
    if (array) {
      snprintf(call, sizeof call, "reallocarray(%s, %zu, %zu)", origins[origin], count, size);
    } else {
      snprintf(call, sizeof call, "realloc(%s, %zu)", origins[origin], count);
    }
    errno = 0;
    unsigned char* p = static_cast<unsigned char*>(array ? reallocarray_fn(old, count, size)
                                                   : realloc_fn(old, count));
    const int e = errno;
    report(call, p, e, 0, overflows ? SIZE_MAX : bytes);
    if (p != NULL) {
      const size_t kept = old == NULL ? 0 : bytes < old_size ? bytes : old_size;
      printf(" kept=%s\n", filled(p, kept) ? "yes" : "NO");
      touch_and_free(p, bytes);
    } else if (old != NULL && (overflows || bytes != 0)) {
      printf("probe: %s left the block %s\n", call, filled(old, old_size) ? "intact" : "CHANGED");
      free_fn(old);
    }
  }
}

int main(void) {
  printf("probe of the malloc family, C library: glibc %s\n", gnu_get_libc_version());

  for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; ++j) {
    char call[64];
    const size_t n = sizes[j];
    snprintf(call, sizeof call, "malloc(%zu)", n);
    errno = 0;
    void* p = malloc_fn(n);
    const int e = errno;
    report_and_free(call, p, e, 0, n);
  }

  for (size_t i = 0; i < sizeof small_counts / sizeof small_counts[0]; ++i) {
    for (size_t j = 0; j < sizeof small_sizes / sizeof small_sizes[0]; ++j) {
      probe_calloc(small_counts[i], small_sizes[j]);
    }
  }
  for (size_t i = 0; i < sizeof huge_pairs / sizeof huge_pairs[0]; ++i) {
    probe_calloc(huge_pairs[i][0], huge_pairs[i][1]);
  }

  for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; ++j) probe_realloc(0, sizes[j], 0);
  for (size_t i = 0; i < sizeof small_counts / sizeof small_counts[0]; ++i) {
    for (size_t j = 0; j < sizeof small_sizes / sizeof small_sizes[0]; ++j) {
      probe_realloc(1, small_counts[i], small_sizes[j]);
    }
  }
  for (size_t i = 0; i < sizeof huge_pairs / sizeof huge_pairs[0]; ++i) {
    probe_realloc(1, huge_pairs[i][0], huge_pairs[i][1]);
  }

  probe_aligned();
  probe_page_aligned();

  // free(NULL) and errno: glibc's free keeps errno.
  errno = 0;
  free_fn(NULL);
  printf("free(NULL): errno=%s\n", errno_name(errno));
  void* p = malloc_fn(24);
  errno = ENOENT;
  free_fn(p);
  printf("free(malloc(24)) with errno ENOENT: errno=%s\n", errno == ENOENT ? "ENOENT" : errno_name(errno));
  return fflush(stdout) == 0 ? 0 : 1;
}
