// platform/linux.cpp — the Linux implementation of platform/platform.hpp and
// of the parts of platform/system_allocator.hpp that are not inline.
// Layer 1: depends on the C library only.
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>
#include <unwind.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string_view>

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

void* reserve_pages(std::size_t bytes, std::size_t alignment) noexcept {
  // Reserve the slack for the alignment too, then give back both ends.
  const std::size_t padded = bytes + alignment - page_size();
  if (padded < bytes) return nullptr;
  void* p = ::mmap(nullptr, padded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (start + alignment - 1) & ~(alignment - 1);
  if (aligned > start) ::munmap(p, aligned - start);
  const std::uintptr_t end = start + padded;
  if (end > aligned + bytes) ::munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  return reinterpret_cast<void*>(aligned);
}

bool commit_pages(void* p, std::size_t bytes) noexcept {
  return ::mprotect(p, bytes, PROT_READ | PROT_WRITE) == 0;
}

void purge_pages(void* p, std::size_t bytes) noexcept { ::madvise(p, bytes, MADV_DONTNEED); }

std::size_t address_space_limit() noexcept {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
  return static_cast<std::size_t>(limit.rlim_cur);
}

namespace {
// One pthread key per layer's exit function. Keys below
// PTHREAD_KEY_2NDLEVEL_SIZE live in struct pthread itself, so
// pthread_setspecific does not allocate for the first keys of a process.
constexpr int max_exit_functions = 4;
struct exit_slot {
  std::atomic<int> state{0};  // 0 free, 1 creating, 2 ready
  void (*fn)(void*) = nullptr;
  pthread_key_t key{};
};
exit_slot exit_slots[max_exit_functions];

// pthread calls a key's destructor with the value; the slot gives the function.
template <int I>
void run_exit_fn(void* arg) {
  exit_slots[I].fn(arg);
}
constexpr void (*runners[max_exit_functions])(void*) = {&run_exit_fn<0>, &run_exit_fn<1>,
                                                          &run_exit_fn<2>, &run_exit_fn<3>};

exit_slot& slot_for(void (*fn)(void*)) noexcept {
  for (int i = 0; i < max_exit_functions; ++i) {
    exit_slot& s = exit_slots[i];
    int expected = 0;
    if (s.state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      s.fn = fn;
      if (::pthread_key_create(&s.key, runners[i]) != 0) ::abort();
      s.state.store(2, std::memory_order_release);
      return s;
    }
    while (s.state.load(std::memory_order_acquire) == 1) yield();
    if (s.fn == fn) return s;
  }
  ::abort();  // more layers than slots: a build error in disguise
}
}  // namespace

void on_thread_exit(void (*fn)(void*), void* arg) noexcept {
  ::pthread_setspecific(slot_for(fn).key, arg);
}

namespace {
constexpr int max_fork_handlers = 8;
const fork_handlers* handlers[max_fork_handlers];
std::atomic<int> handler_count{0};
std::atomic<bool> trampoline_registered{false};
// The thread inside fork(), between our prepare and parent/child handlers.
std::atomic<pthread_t> forking_thread{};
std::atomic<bool> forking{false};

void prepare_all() {
  for (int i = handler_count.load(std::memory_order_acquire); i-- > 0;) {
    if (handlers[i]->prepare != nullptr) handlers[i]->prepare();
  }
  forking_thread.store(::pthread_self(), std::memory_order_relaxed);
  forking.store(true, std::memory_order_release);
}

template <void (*fork_handlers::*Which)()>
void finish_all() {
  forking.store(false, std::memory_order_release);
  const int count = handler_count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    if (handlers[i]->*Which != nullptr) (handlers[i]->*Which)();
  }
}
}  // namespace

void register_fork_handlers(fork_handlers& h) noexcept {
  if (h.registered.load(std::memory_order_acquire)) return;
  // Layers register at their first use, possibly at the same time on two
  // threads, and possibly twice for one layer: one appends, under the spin.
  static std::atomic<bool> appending{false};
  while (appending.exchange(true, std::memory_order_acquire)) yield();
  if (!h.registered.load(std::memory_order_relaxed)) {
    const int index = handler_count.load(std::memory_order_relaxed);
    if (index >= max_fork_handlers) ::abort();
    handlers[index] = &h;
    handler_count.store(index + 1, std::memory_order_release);
    h.registered.store(true, std::memory_order_release);
  }
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

bool thread_stack(std::uintptr_t* low, std::uintptr_t* high) noexcept {
  pthread_attr_t attributes;
  if (::pthread_getattr_np(::pthread_self(), &attributes) != 0) return false;
  void* address = nullptr;
  std::size_t size = 0;
  const bool ok = ::pthread_attr_getstack(&attributes, &address, &size) == 0 && size != 0;
  ::pthread_attr_destroy(&attributes);
  if (!ok) return false;
  *low = reinterpret_cast<std::uintptr_t>(address);
  *high = *low + size;
  return true;
}

void yield() noexcept { ::sched_yield(); }

void wake_on_time() noexcept { ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); }

std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

namespace {
// Reads a whole small file into buffer (NUL-terminated); -1 on error.
ssize_t read_small_file(const char* path, char* buffer, std::size_t capacity) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t length = 0;
  while (length + 1 < capacity) {
    const ssize_t got = ::read(fd, buffer + length, capacity - 1 - length);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    length += static_cast<std::size_t>(got);
  }
  ::close(fd);
  buffer[length] = '\0';
  return static_cast<ssize_t>(length);
}

// Parses a decimal integer at text; advances it. -1 if there is none.
std::int64_t parse_integer(const char*& text) noexcept {
  while (*text == ' ') ++text;
  if (*text < '0' || *text > '9') return -1;
  std::int64_t value = 0;
  while (*text >= '0' && *text <= '9') {
    if (value > (INT64_MAX - 9) / 10) return -1;
    value = value * 10 + (*text++ - '0');
  }
  return value;
}

bool append(char* out, std::size_t capacity, std::size_t& length, const char* text,
            std::size_t text_length) noexcept {
  if (length + text_length + 1 > capacity) return false;
  std::memcpy(out + length, text, text_length);
  length += text_length;
  out[length] = '\0';
  return true;
}

// out = prefix + cgroup path + suffix, if that file is readable.
bool try_cgroup_file(char* out, std::size_t capacity, const char* prefix, const char* path,
                     std::size_t path_length, const char* suffix) noexcept {
  std::size_t length = 0;
  out[0] = '\0';
  if (!append(out, capacity, length, prefix, std::strlen(prefix)) ||
      !append(out, capacity, length, path, path_length) ||
      !append(out, capacity, length, suffix, std::strlen(suffix))) {
    return false;
  }
  return read_integer_file(out) >= 0;
}
}  // namespace

std::int64_t read_integer_file(const char* path) noexcept {
  char buffer[64];
  if (read_small_file(path, buffer, sizeof buffer) <= 0) return -1;
  const char* text = buffer;
  return parse_integer(text);
}

std::int64_t resident_bytes() noexcept {
  // statm: size resident shared text lib data dt, in pages.
  char buffer[128];
  if (read_small_file("/proc/self/statm", buffer, sizeof buffer) <= 0) return -1;
  const char* text = buffer;
  if (parse_integer(text) < 0) return -1;
  const std::int64_t pages = parse_integer(text);
  return pages < 0 ? -1 : pages * static_cast<std::int64_t>(page_size());
}

bool cgroup_memory_file(char* out, std::size_t capacity) noexcept {
  if (capacity == 0) return false;
  char cgroups[4096];
  if (read_small_file("/proc/self/cgroup", cgroups, sizeof cgroups) <= 0) return false;
  // Lines "id:controllers:path". v2: "0::/path"; v1: "N:...memory...:/path".
  const char* v2_path = nullptr;
  std::size_t v2_length = 0;
  const char* v1_path = nullptr;
  std::size_t v1_length = 0;
  for (const char* line = cgroups; *line != '\0';) {
    const char* end = std::strchr(line, '\n');
    if (end == nullptr) end = line + std::strlen(line);
    const char* first = static_cast<const char*>(std::memchr(line, ':', end - line));
    const char* second =
        first ? static_cast<const char*>(std::memchr(first + 1, ':', end - first - 1)) : nullptr;
    if (second != nullptr) {
      const std::string_view controllers(first + 1, second - first - 1);
      if (controllers.empty() && std::string_view(line, first - line) == "0") {
        v2_path = second + 1;
        v2_length = end - second - 1;
      }
      for (std::size_t at = 0; at <= controllers.size();) {
        std::size_t comma = controllers.find(',', at);
        if (comma == std::string_view::npos) comma = controllers.size();
        if (controllers.substr(at, comma - at) == "memory") {
          v1_path = second + 1;
          v1_length = end - second - 1;
        }
        at = comma + 1;
      }
    }
    line = *end == '\n' ? end + 1 : end;
  }
  // Inside a cgroup namespace the path may be "/" while the files are at the
  // mount's root; try the path, then the root.
  if (v2_path != nullptr) {
    if (try_cgroup_file(out, capacity, "/sys/fs/cgroup", v2_path, v2_length, "/memory.current") ||
        try_cgroup_file(out, capacity, "/sys/fs/cgroup/unified", v2_path, v2_length,
                        "/memory.current")) {
      return true;
    }
  }
  if (v1_path != nullptr) {
    if (try_cgroup_file(out, capacity, "/sys/fs/cgroup/memory", v1_path, v1_length,
                        "/memory.usage_in_bytes") ||
        try_cgroup_file(out, capacity, "/sys/fs/cgroup/memory", "", 0, "/memory.usage_in_bytes")) {
      return true;
    }
  }
  out[0] = '\0';
  return false;
}

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

#if !defined(MEMLIMITS_SANITIZER_ALLOCATOR)
namespace {

// Set while this thread looks a function up (see next_definition).
constinit thread_local bool looking_up MEMLIMITS_TLS_MODEL = false;

// Marks a lookup that found nothing, so that it is not repeated.
constinit char no_definition_mark = 0;
void* const no_definition = &no_definition_mark;

// The definition of `name` that follows ours in the lookup order: the C
// library's, both when the hooks are linked into the program and under the
// preload library. Looked up at the first call, kept in `slot`. nullptr when
// there is none, or when dlsym re-entered a hook that needs a function on
// the thread that is looking one up (dlsym of a defined symbol does not
// allocate; should it ever, that call fails instead of recursing). Threads
// that race on the first call look up the same address.
void* next_definition(std::atomic<void*>& slot, const char* name) noexcept {
  void* f = slot.load(std::memory_order_acquire);
  if (MEMLIMITS_LIKELY(f != nullptr)) return f == no_definition ? nullptr : f;
  if (looking_up) return nullptr;
  looking_up = true;
  const int saved_errno = errno;
  f = ::dlsym(RTLD_NEXT, name);
  errno = saved_errno;
  looking_up = false;
  slot.store(f == nullptr ? no_definition : f, std::memory_order_release);
  return f;
}

constinit std::atomic<void*> next_aligned_alloc{nullptr};
constinit std::atomic<void*> next_posix_memalign{nullptr};
constinit std::atomic<void*> next_reallocarray{nullptr};

}  // namespace
#endif

void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept {
#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
  return __interceptor_aligned_alloc(alignment, n);
#else
  using fn_t = void* (*)(std::size_t, std::size_t);
  if (void* f = next_definition(next_aligned_alloc, "aligned_alloc")) {
    return reinterpret_cast<fn_t>(f)(alignment, n);
  }
  errno = ENOMEM;
  return nullptr;
#endif
}

int posix_memalign(void** out, std::size_t alignment, std::size_t n) noexcept {
#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
  return __interceptor_posix_memalign(out, alignment, n);
#else
  using fn_t = int (*)(void**, std::size_t, std::size_t);
  if (void* f = next_definition(next_posix_memalign, "posix_memalign")) {
    return reinterpret_cast<fn_t>(f)(out, alignment, n);
  }
  return ENOMEM;
#endif
}

void* reallocarray(void* p, std::size_t count, std::size_t size) noexcept {
#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
  return __interceptor_reallocarray(p, count, size);
#else
  using fn_t = void* (*)(void*, std::size_t, std::size_t);
  if (void* f = next_definition(next_reallocarray, "reallocarray")) {
    return reinterpret_cast<fn_t>(f)(p, count, size);
  }
  errno = ENOMEM;
  return nullptr;
#endif
}

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
