// tests/unit/backend_minimal_allocator.cpp — libbackend_minimal_allocator.so:
// a backend that defines only malloc, free, realloc, memalign and
// malloc_usable_size (the least memlimits can serve; the other functions of
// the family are emulated with these: platform/system_allocator.hpp), and
// whose blocks are not glibc's: each sits behind a header of its own inside
// a larger glibc block. Mixing is loud both ways: its free aborts on a block
// it did not make, and glibc's free aborts on one of its blocks (the word
// before each block is an impossible chunk size).
// Built a second time with MINIMAL_ALLOCATOR_WITHOUT_USABLE_SIZE: a family
// that memlimits cannot serve (it reports it and aborts at the first call).
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {

constexpr std::uint64_t magic = 0x6d696e696d616cull;  // "minimal"
// Not a multiple of 16: glibc's free takes it for a corrupt chunk size.
constexpr std::uint64_t poison = 0xbadc0ffee0ddf00dull;
constexpr std::size_t header_bytes = 64;

struct header {
  std::uint64_t magic;
  void* base;        // the glibc block
  std::size_t size;  // requested: malloc_usable_size's answer
  std::uint64_t unused[4];
  std::uint64_t poison;  // the word before the block
};
static_assert(sizeof(header) == header_bytes);

std::atomic<long> live{0};
std::atomic<long> made{0};

header* header_of(void* p) { return static_cast<header*>(p) - 1; }

void die(const char* text) {
  (void)!::write(2, text, std::strlen(text));
  std::abort();
}

// A block of `size` bytes aligned to `alignment` (a power of two, at least 16).
void* make(std::size_t alignment, std::size_t size) {
  const std::size_t offset = alignment < header_bytes ? header_bytes : alignment;
  if (size > SIZE_MAX - offset) return errno = ENOMEM, nullptr;
  void* base = alignment <= 16 ? __libc_malloc(offset + size)
                               : __libc_memalign(alignment, offset + size);
  if (base == nullptr) return nullptr;
  void* p = static_cast<char*>(base) + offset;
  *header_of(p) = header{magic, base, size, {}, poison};
  live.fetch_add(1, std::memory_order_relaxed);
  made.fetch_add(1, std::memory_order_relaxed);
  return p;
}

header* checked(void* p) {
  header* h = header_of(p);
  if (h->magic != magic || h->poison != poison) {
    die("minimal allocator: a block that is not mine\n");
  }
  return h;
}

}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT void* malloc(std::size_t size) { return make(16, size); }

EXPORT void free(void* p) {
  if (p == nullptr) return;
  header* h = checked(p);
  h->magic = 0;
  live.fetch_sub(1, std::memory_order_relaxed);
  __libc_free(h->base);
}

EXPORT void* realloc(void* p, std::size_t size) {
  if (p == nullptr) return malloc(size);
  if (size == 0) {
    free(p);
    return nullptr;
  }
  const std::size_t old_size = checked(p)->size;
  void* q = malloc(size);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, old_size < size ? old_size : size);
  free(p);
  return q;
}

// glibc's rules: an alignment that is not a power of two is rounded up.
EXPORT void* memalign(std::size_t alignment, std::size_t size) {
  if (alignment > SIZE_MAX / 2 + 1) return errno = EINVAL, nullptr;
  std::size_t a = 16;
  while (a < alignment) a *= 2;
  return make(a, size);
}

#if !defined(MINIMAL_ALLOCATOR_WITHOUT_USABLE_SIZE)
EXPORT std::size_t malloc_usable_size(void* p) { return p == nullptr ? 0 : checked(p)->size; }
#endif

// For the tests: whether p is one of its live blocks (p must be readable
// 64 bytes back: any heap block is), and how many it made and holds.
EXPORT bool minimal_allocator_owns(const void* p) {
  if (p == nullptr) return false;
  const header* h = static_cast<const header*>(p) - 1;
  return h->magic == magic && h->poison == poison;
}
EXPORT long minimal_allocator_live() { return live.load(std::memory_order_relaxed); }
EXPORT long minimal_allocator_made() { return made.load(std::memory_order_relaxed); }
