// platform/platform.hpp — the contract between memlimits and the operating
// system: address space, thread identity and exit, fork, entropy, unwinding.
// Layer 1: depends on nothing in memlimits. Every function here is safe to
// call from inside an allocation hook: none of them allocates through malloc.
// The implementation for Linux is platform/linux.cpp (with valgrind.cpp); any
// other system stops the build at the end of this file.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

// Thread-local storage for the allocation fast path. initial-exec makes an
// access one %fs-relative load (no __tls_get_addr call, no lazy allocation,
// so it is usable from inside malloc); it requires the library to be loaded
// at program start, which holds for linked and LD_PRELOAD use.
#define MEMLIMITS_TLS_MODEL __attribute__((tls_model("initial-exec")))

#define MEMLIMITS_LIKELY(x) __builtin_expect(!!(x), 1)
#define MEMLIMITS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MEMLIMITS_NOINLINE __attribute__((noinline))
#define MEMLIMITS_ALWAYS_INLINE inline __attribute__((always_inline))

namespace memlimits::platform {

// A reference to a thread_local object of the initial-exec model. Use it
// rather than the variable's name where the object's address matters:
// GCC 12's UBSan folds the null check of such a reference to "null" and
// aborts (its handler is called with a constant 0); in sanitizer builds the
// address goes through a register, which the check then reads for real.
// Normal builds compile it to the plain %fs-relative access.
template <class T>
MEMLIMITS_ALWAYS_INLINE T& tls_object(T& object) noexcept {
#if defined(MEMLIMITS_SANITIZED)
  T* address = &object;
  asm("" : "+r"(address));
  return *address;
#else
  return object;
#endif
}

std::size_t page_size() noexcept;

// Anonymous, zero-filled, read-write memory committed lazily by the kernel.
// Returns nullptr on failure.
void* map_pages(std::size_t bytes) noexcept;
void unmap_pages(void* p, std::size_t bytes) noexcept;

// Address space without access (PROT_NONE, MAP_NORESERVE): it costs no
// memory and is not charged against the overcommit limit until committed.
// Returns nullptr on failure. `alignment` is a power of two, at least a page.
void* reserve_pages(std::size_t bytes, std::size_t alignment) noexcept;
// Makes [p, p + bytes) of a reservation readable and writable; the kernel
// still commits each page at its first touch. False on failure.
bool commit_pages(void* p, std::size_t bytes) noexcept;
// Gives the memory of [p, p + bytes) (committed pages) back to the system;
// the pages stay usable and read as zeros at their next touch.
void purge_pages(void* p, std::size_t bytes) noexcept;
// The process's limit on its address space (RLIMIT_AS), in bytes, or
// SIZE_MAX when there is none.
std::size_t address_space_limit() noexcept;

// Calls fn(arg) once when the calling thread exits (after its C++
// thread_local destructors). Up to 4 distinct functions (one per layer);
// registering the same function again on a thread replaces the argument.
void on_thread_exit(void (*fn)(void*), void* arg) noexcept;

// fork() handlers of memlimits' layers, all run from one pthread_atfork
// registration: prepare handlers in reverse order of registration, parent
// and child handlers in order. They take (prepare) and release or reset
// (parent, child) the layers' locks; they must not allocate.
// Other libraries' fork handlers run between ours and may allocate on the
// forking thread while it holds every memlimits lock: fork_in_progress_here()
// is true for that thread then, and the locks let it through (it has the
// structures to itself).
// A layer's handlers, in a constinit object of its own:
//   constinit platform::fork_handlers fork_hooks{&prepare, &parent, &child};
//   platform::register_fork_handlers(fork_hooks);   // at first use
struct fork_handlers {
  void (*prepare)();
  void (*parent)();
  void (*child)();
  std::atomic<bool> registered{false};
};
// Registers `h` the first time it is called for it, from any thread; later
// calls cost one load. Must not be called from a fork handler.
void register_fork_handlers(fork_handlers& h) noexcept;
namespace detail {
extern constinit std::atomic<bool> forking;  // between prepare and parent/child
bool forking_thread_is_this() noexcept;
}  // namespace detail
// Inline: every spinlock of the allocation path asks, twice.
MEMLIMITS_ALWAYS_INLINE bool fork_in_progress_here() noexcept {
  return detail::forking.load(std::memory_order_acquire) && detail::forking_thread_is_this();
}

// A process-unique thread number (not reused while the process lives).
std::uint64_t thread_number() noexcept;

// 64 bits of entropy for seeding the samplers.
std::uint64_t entropy() noexcept;

// Value of an environment variable, or nullptr; does not allocate.
const char* get_env(const char* name) noexcept;

// Writes the return addresses of the calling thread's stack, innermost
// first, to frames[0..max); returns how many. Skips frames up to and
// including the one whose return address is `after`, when it is found.
// Does not allocate once prepare_unwinder() has run.
std::size_t capture_callstack(void** frames, std::size_t max,
                              void* after) noexcept;
void prepare_unwinder() noexcept;

// The calling thread's own stack (not a fiber's it may be running on):
// [low, high). False if it cannot be told. The main thread's is read from
// /proc/self/maps by glibc, which allocates: call it with sampling off.
bool thread_stack(std::uintptr_t* low, std::uintptr_t* high) noexcept;

void yield() noexcept;

// The calling thread's timed waits wake as close to their time as the
// kernel can (Linux: a timer slack of 1 ns instead of 50 us). For a thread
// that sleeps until deadlines.
void wake_on_time() noexcept;

// A monotonic clock, in nanoseconds; cheap (vDSO, coarse resolution is fine).
std::uint64_t monotonic_ns() noexcept;

// The process's resident set (/proc/self/statm), in bytes; -1 on error.
std::int64_t resident_bytes() noexcept;

// The file that holds the memory charged to the process's own cgroup: v2's
// memory.current, or v1's memory.usage_in_bytes where v2 has no memory
// controller. Writes its path to path[0..capacity) and returns true, or
// returns false when there is none (no cgroup file system, or not readable).
bool cgroup_memory_file(char* path, std::size_t capacity) noexcept;

// The non-negative decimal integer at the start of a file; -1 on error.
std::int64_t read_integer_file(const char* path) noexcept;

// Writes to standard error without allocating.
void write_stderr(const char* text, std::size_t length) noexcept;

// Whether the process runs under valgrind: its preload libraries
// (vgpreload_*) in LD_PRELOAD, or its client request when <valgrind/valgrind.h>
// was found at build time. Writes to tool[0..capacity) the name of the tool
// whose preload library is loaded ("memcheck", "massif", "helgrind", "drd",
// "dhat": the tools that replace the allocator), or "" when there is none
// (callgrind, cachegrind) or it does not fit. Does not allocate
// (platform/valgrind.cpp).
bool running_under_valgrind(char* tool, std::size_t capacity) noexcept;

}  // namespace memlimits::platform

#if !defined(__linux__)
#  error unsupported platform: memlimits runs on Linux (glibc) only
#endif
