// platform/linux.cpp — the Linux implementation of platform/platform.hpp and
// of the parts of platform/system_allocator.hpp that are not inline.
// Layer 1: depends on the C library only.
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>
#include <unwind.h>

#include <atomic>
#include <cstdlib>
#include <ctime>

#include "platform/platform.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::platform {

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

void* map_pages(std::size_t bytes) noexcept {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void unmap_pages(void* p, std::size_t bytes) noexcept { ::munmap(p, bytes); }

namespace {
// pthread keys below PTHREAD_KEY_2NDLEVEL_SIZE live in struct pthread itself,
// so pthread_setspecific does not allocate for the first key(s) of a process.
pthread_key_t exit_key;
std::atomic<int> exit_key_state{0};  // 0 none, 1 creating, 2 ready
void (*exit_fn)(void*) = nullptr;

void run_exit_fn(void* arg) {
  if (exit_fn != nullptr) exit_fn(arg);
}
}  // namespace

void on_thread_exit(void (*fn)(void*), void* arg) noexcept {
  int state = exit_key_state.load(std::memory_order_acquire);
  if (state != 2) {
    int expected = 0;
    if (exit_key_state.compare_exchange_strong(expected, 1)) {
      exit_fn = fn;
      ::pthread_key_create(&exit_key, &run_exit_fn);
      exit_key_state.store(2, std::memory_order_release);
    } else {
      while (exit_key_state.load(std::memory_order_acquire) != 2) yield();
    }
  }
  ::pthread_setspecific(exit_key, arg);
}

namespace {
struct fork_handlers {
  void (*prepare)();
  void (*parent)();
  void (*child)();
};
constexpr int max_fork_handlers = 8;
fork_handlers handlers[max_fork_handlers];
std::atomic<int> handler_count{0};
std::atomic<bool> trampoline_registered{false};
// The thread inside fork(), between our prepare and parent/child handlers.
std::atomic<pthread_t> forking_thread{};
std::atomic<bool> forking{false};

void prepare_all() {
  for (int i = handler_count.load(std::memory_order_acquire); i-- > 0;) {
    if (handlers[i].prepare != nullptr) handlers[i].prepare();
  }
  forking_thread.store(::pthread_self(), std::memory_order_relaxed);
  forking.store(true, std::memory_order_release);
}

template <void (*fork_handlers::*Which)()>
void finish_all() {
  forking.store(false, std::memory_order_release);
  const int count = handler_count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    if (handlers[i].*Which != nullptr) (handlers[i].*Which)();
  }
}
}  // namespace

void register_fork_handlers(void (*prepare)(), void (*parent)(),
                            void (*child)()) noexcept {
  // Layers register once each, possibly at the same time on two threads.
  static std::atomic<bool> appending{false};
  while (appending.exchange(true, std::memory_order_acquire)) yield();
  const int index = handler_count.load(std::memory_order_relaxed);
  if (index >= max_fork_handlers) ::abort();
  handlers[index] = {prepare, parent, child};
  handler_count.store(index + 1, std::memory_order_release);
  appending.store(false, std::memory_order_release);
  if (!trampoline_registered.exchange(true)) {
    ::pthread_atfork(&prepare_all, &finish_all<&fork_handlers::parent>,
                     &finish_all<&fork_handlers::child>);
  }
}

bool fork_in_progress_here() noexcept {
  return forking.load(std::memory_order_acquire) &&
         ::pthread_equal(forking_thread.load(std::memory_order_relaxed), ::pthread_self());
}

std::uint64_t thread_number() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t entropy() noexcept {
  std::uint64_t value = 0;
  if (::getrandom(&value, sizeof value, GRND_NONBLOCK) == sizeof value) return value;
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_nsec) ^
         (static_cast<std::uint64_t>(ts.tv_sec) << 32) ^
         (static_cast<std::uint64_t>(::getpid()) << 16);
}

const char* get_env(const char* name) noexcept { return ::getenv(name); }

namespace {
struct unwind_state {
  void** frames;
  std::size_t max;
  std::size_t count;
  void* after;
  bool skipping;
};

_Unwind_Reason_Code unwind_one(_Unwind_Context* context, void* arg) {
  auto* state = static_cast<unwind_state*>(arg);
  auto* ip = reinterpret_cast<void*>(_Unwind_GetIP(context));
  if (ip == nullptr) return _URC_END_OF_STACK;
  // While skipping, the frames are still recorded, so that a stack in which
  // `after` never appears (a tail call hid it) is returned whole; finding
  // `after` restarts the record at the caller of the hook.
  if (state->skipping && ip == state->after) {
    state->skipping = false;
    state->count = 0;
  }
  if (state->count < state->max) state->frames[state->count++] = ip;
  bool full = state->count == state->max;
  return full && !state->skipping ? _URC_END_OF_STACK : _URC_NO_REASON;
}
}  // namespace

std::size_t capture_callstack(void** frames, std::size_t max, void* after) noexcept {
  if (max == 0) return 0;
  unwind_state state{frames, max, 0, after, after != nullptr};
  _Unwind_Backtrace(&unwind_one, &state);
  return state.count;
}

void prepare_unwinder() noexcept {
  // The first unwind of a process may load and initialise unwinding tables
  // (allocating); do it outside the allocation path.
  void* frames[2];
  capture_callstack(frames, 2, nullptr);
}

void yield() noexcept { ::sched_yield(); }

void write_stderr(const char* text, std::size_t length) noexcept {
  while (length > 0) {
    ssize_t written = ::write(STDERR_FILENO, text, length);
    if (written <= 0) return;
    text += written;
    length -= static_cast<std::size_t>(written);
  }
}

}  // namespace memlimits::platform

namespace memlimits::platform::system {

std::size_t usable_size(void* p) noexcept {
#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
  return __interceptor_malloc_usable_size(p);
#else
  using fn_t = std::size_t (*)(void*);
  static std::atomic<fn_t> fn{nullptr};
  fn_t f = fn.load(std::memory_order_acquire);
  if (f == nullptr) {
    f = reinterpret_cast<fn_t>(::dlsym(RTLD_NEXT, "malloc_usable_size"));
    if (f == nullptr) f = reinterpret_cast<fn_t>(::dlsym(RTLD_DEFAULT, "__malloc_usable_size"));
    if (f == nullptr) ::abort();
    fn.store(f, std::memory_order_release);
  }
  return p == nullptr ? 0 : f(p);
#endif
}

}  // namespace memlimits::platform::system
