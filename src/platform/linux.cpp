// platform/linux.cpp — the Linux implementation of platform/platform.hpp and
// of the parts of platform/system_allocator.hpp that are not inline.
// Layer 1: depends on the C library only.
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
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
constexpr int max_fork_handlers = 16;
const fork_handlers* handlers[max_fork_handlers];
std::atomic<int> handler_count{0};
std::atomic<bool> trampoline_registered{false};
// The thread inside fork(), between our prepare and parent/child handlers.
std::atomic<pthread_t> forking_thread{};

void prepare_all() {
  for (int i = handler_count.load(std::memory_order_acquire); i-- > 0;) {
    if (handlers[i]->prepare != nullptr) handlers[i]->prepare();
  }
  forking_thread.store(::pthread_self(), std::memory_order_relaxed);
  detail::forking.store(true, std::memory_order_release);
}

template <void (*fork_handlers::*Which)()>
void finish_all() {
  detail::forking.store(false, std::memory_order_release);
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

constinit std::atomic<bool> detail::forking{false};

bool detail::forking_thread_is_this() noexcept {
  return ::pthread_equal(forking_thread.load(std::memory_order_relaxed), ::pthread_self());
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
extern "C" void* __libc_memalign(std::size_t, std::size_t);

namespace {

using detail::next;

constexpr unsigned function_count = static_cast<unsigned>(function::count);
constexpr const char* function_names[function_count] = {
    "malloc",       "free",          "calloc",         "realloc",
    "memalign",     "valloc",        "pvalloc",        "aligned_alloc",
    "posix_memalign", "reallocarray", "malloc_usable_size"};
constexpr unsigned index(function f) noexcept { return static_cast<unsigned>(f); }

// Set while this thread resolves (see resolve).
constinit thread_local bool resolving MEMLIMITS_TLS_MODEL = false;
// Set (release) once every pointer of `next` and the two values below hold
// their final values.
constinit std::atomic<bool> resolved{false};
constinit std::atomic<const char*> family_object{nullptr};
constinit std::atomic<unsigned> emulated_functions{0};

bool resolve() noexcept;

// The stubs that `next` starts with: resolve, then call the function
// resolved. A call that re-enters while its own thread resolves fails.
void* malloc_stub(std::size_t n) noexcept {
  if (!resolve()) return errno = ENOMEM, nullptr;
  return next.malloc(n);
}
void free_stub(void* p) noexcept {
  if (resolve()) next.free(p);
}
void* calloc_stub(std::size_t count, std::size_t size) noexcept {
  if (!resolve()) return errno = ENOMEM, nullptr;
  return next.calloc(count, size);
}
void* realloc_stub(void* p, std::size_t n) noexcept {
  if (!resolve()) return errno = ENOMEM, nullptr;
  return next.realloc(p, n);
}
void* memalign_stub(std::size_t alignment, std::size_t n) noexcept {
  if (!resolve()) return errno = ENOMEM, nullptr;
  return next.memalign(alignment, n);
}
void* valloc_stub(std::size_t n) noexcept {
  if (!resolve()) return errno = ENOMEM, nullptr;
  return next.valloc(n);
}
void* pvalloc_stub(std::size_t n) noexcept {
  if (!resolve()) return errno = ENOMEM, nullptr;
  return next.pvalloc(n);
}
void* aligned_alloc_stub(std::size_t alignment, std::size_t n) noexcept {
  if (!resolve()) return errno = ENOMEM, nullptr;
  return next.aligned_alloc(alignment, n);
}
int posix_memalign_stub(void** out, std::size_t alignment, std::size_t n) noexcept {
  if (!resolve()) return ENOMEM;
  return next.posix_memalign(out, alignment, n);
}
void* reallocarray_stub(void* p, std::size_t count, std::size_t size) noexcept {
  if (!resolve()) return errno = ENOMEM, nullptr;
  return next.reallocarray(p, count, size);
}
std::size_t usable_size_stub(void* p) noexcept {
  if (!resolve()) return 0;
  return next.usable_size(p);
}

// The family's own memalign, when it is not glibc's: `next.memalign` is then
// memalign_nonzero, which asks it for 1 byte rather than 0 (glibc's serves 0
// bytes aligned; jemalloc 5.3's memalign and valloc do not align blocks of
// 0 bytes, fixed upstream in 2024: jemalloc pull request 2606).
// A thread that sees memalign_nonzero in `next` before it sees
// family_memalign (another thread resolving) resolves first.
using memalign_fn = void* (*)(std::size_t, std::size_t) noexcept;
constinit memalign_fn family_memalign = nullptr;
void* memalign_nonzero(std::size_t alignment, std::size_t n) noexcept {
  memalign_fn f = __atomic_load_n(&family_memalign, __ATOMIC_ACQUIRE);
  if (MEMLIMITS_UNLIKELY(f == nullptr)) {
    resolve();  // stored family_memalign before `resolved`, or now
    f = __atomic_load_n(&family_memalign, __ATOMIC_ACQUIRE);
    if (f == nullptr) return errno = ENOMEM, nullptr;  // re-entered while resolving
  }
  return f(alignment, n == 0 ? 1 : n);
}

// The emulations of the functions a family lacks (system_allocator.hpp),
// with its own malloc, memalign and realloc, on glibc's rules: a failure
// sets errno (ENOMEM, EINVAL for an impossible alignment), whatever the
// family's functions leave in it.
void* calloc_emulated(std::size_t count, std::size_t size) noexcept {
  std::size_t bytes;
  if (__builtin_mul_overflow(count, size, &bytes)) return errno = ENOMEM, nullptr;
  void* p = next.malloc(bytes);
  if (p == nullptr) return errno = ENOMEM, nullptr;
  std::memset(p, 0, bytes);
  return p;
}
void* valloc_emulated(std::size_t n) noexcept {
  void* p = next.memalign(page_size(), n);
  if (p == nullptr) errno = ENOMEM;
  return p;
}
void* pvalloc_emulated(std::size_t n) noexcept {
  const std::size_t page = page_size();
  std::size_t rounded;
  if (__builtin_add_overflow(n, page - 1, &rounded)) return errno = ENOMEM, nullptr;
  void* p = next.memalign(page, n == 0 ? page : rounded & ~(page - 1));  // 0: one page
  if (p == nullptr) errno = ENOMEM;
  return p;
}
// glibc 2.36's aligned_alloc is its memalign: an alignment that is not a
// power of two is rounded up, EINVAL beyond the largest one.
void* aligned_alloc_emulated(std::size_t alignment, std::size_t n) noexcept {
  if (alignment > SIZE_MAX / 2 + 1) return errno = EINVAL, nullptr;
  void* p = next.memalign(alignment, n);
  if (p == nullptr) errno = ENOMEM;
  return p;
}
int posix_memalign_emulated(void** out, std::size_t alignment, std::size_t n) noexcept {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment % sizeof(void*) != 0) {
    return EINVAL;
  }
  void* p = next.memalign(alignment, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void* reallocarray_emulated(void* p, std::size_t count, std::size_t size) noexcept {
  std::size_t bytes;
  if (__builtin_mul_overflow(count, size, &bytes)) return errno = ENOMEM, nullptr;
  void* q = next.realloc(p, bytes);
  if (q == nullptr && bytes != 0) errno = ENOMEM;
  return q;
}

// Which loaded object holds each address, by dl_iterate_phdr (load order,
// which is the lookup order of the objects loaded at start-up): no symbol
// table is read, nothing allocated.
struct object_search {
  const void* address[function_count];
  int object[function_count];  // -1: none
  const char* name[function_count];
  int count = 0;
};

int find_objects(dl_phdr_info* info, std::size_t, void* data) noexcept {
  auto& search = *static_cast<object_search*>(data);
  for (int k = 0; k < info->dlpi_phnum; ++k) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[k];
    if (segment.p_type != PT_LOAD) continue;
    const std::uintptr_t start = info->dlpi_addr + segment.p_vaddr;
    const std::uintptr_t end = start + segment.p_memsz;
    for (unsigned i = 0; i < function_count; ++i) {
      const auto address = reinterpret_cast<std::uintptr_t>(search.address[i]);
      if (search.object[i] < 0 && address != 0 && start <= address && address < end) {
        search.object[i] = search.count;
        search.name[i] = info->dlpi_name;
      }
    }
  }
  ++search.count;
  return 0;
}

[[noreturn]] void cannot_serve(const char* object, const char* missing) noexcept {
  const auto say = [](const char* text) { write_stderr(text, std::strlen(text)); };
  say("memlimits: the allocator after memlimits (");
  say(object[0] == '\0' ? "the program" : object);
  say(") defines malloc but not ");
  say(missing);
  say(": its blocks cannot be served without another allocator's functions\n");
  ::abort();
}

template <class F>
void publish(F& slot, void* value) noexcept {
  __atomic_store_n(&slot, reinterpret_cast<F>(value), __ATOMIC_RELAXED);
}

// Resolves every function at once (system_allocator.hpp). True when `next`
// holds the resolved functions; false for a call that re-entered on the
// thread that is resolving.
bool resolve() noexcept {
  if (MEMLIMITS_LIKELY(resolved.load(std::memory_order_acquire))) return true;
  if (resolving) return false;
  resolving = true;
  const int saved_errno = errno;

  object_search search;
  for (unsigned i = 0; i < function_count; ++i) {
    search.address[i] = ::dlsym(RTLD_NEXT, function_names[i]);
    search.object[i] = -1;
    search.name[i] = nullptr;
  }
  ::dl_iterate_phdr(&find_objects, &search);

  const int family = search.object[index(function::malloc)];
  const char* const family_name = search.name[index(function::malloc)];
  if (family < 0) {
    constexpr const char message[] = "memlimits: no object after memlimits defines malloc\n";
    write_stderr(message, sizeof message - 1);
    ::abort();
  }
  // The definition found is used when it is the family's own or that of an
  // object before it; beyond it, the family lacks the function.
  void* chosen[function_count];
  unsigned emulated = 0;
  for (unsigned i = 0; i < function_count; ++i) {
    const bool usable = search.object[i] >= 0 && search.object[i] <= family;
    chosen[i] = usable ? const_cast<void*>(search.address[i]) : nullptr;
    if (!usable) emulated |= 1u << i;
  }
  for (function f : {function::free, function::realloc, function::memalign,
                     function::malloc_usable_size}) {
    if (chosen[index(f)] == nullptr) cannot_serve(family_name, function_names[index(f)]);
  }
  const auto use = [&](function f, void* emulation) {
    return chosen[index(f)] != nullptr ? chosen[index(f)] : emulation;
  };
  // The primitives first: an emulation calls them through `next`.
  publish(next.malloc, chosen[index(function::malloc)]);
  publish(next.free, chosen[index(function::free)]);
  publish(next.realloc, chosen[index(function::realloc)]);
  if (chosen[index(function::memalign)] == reinterpret_cast<void*>(&__libc_memalign)) {
    publish(next.memalign, chosen[index(function::memalign)]);
  } else {
    __atomic_store_n(&family_memalign,
                     reinterpret_cast<memalign_fn>(chosen[index(function::memalign)]),
                     __ATOMIC_RELEASE);
    publish(next.memalign, reinterpret_cast<void*>(&memalign_nonzero));
  }
  publish(next.usable_size, chosen[index(function::malloc_usable_size)]);
  publish(next.calloc, use(function::calloc, reinterpret_cast<void*>(&calloc_emulated)));
  publish(next.valloc, use(function::valloc, reinterpret_cast<void*>(&valloc_emulated)));
  publish(next.pvalloc, use(function::pvalloc, reinterpret_cast<void*>(&pvalloc_emulated)));
  publish(next.aligned_alloc,
          use(function::aligned_alloc, reinterpret_cast<void*>(&aligned_alloc_emulated)));
  publish(next.posix_memalign,
          use(function::posix_memalign, reinterpret_cast<void*>(&posix_memalign_emulated)));
  publish(next.reallocarray,
          use(function::reallocarray, reinterpret_cast<void*>(&reallocarray_emulated)));
  family_object.store(family_name, std::memory_order_relaxed);
  emulated_functions.store(emulated, std::memory_order_relaxed);
  resolved.store(true, std::memory_order_release);

  errno = saved_errno;
  resolving = false;
  return true;
}

}  // namespace

// Read on every allocation, written once: the pointers of malloc to
// aligned_alloc fill one cache line of their own.
alignas(64) constinit detail::next_functions detail::next = {
    &malloc_stub,   &free_stub,          &calloc_stub,        &realloc_stub,
    &memalign_stub, &valloc_stub,        &pvalloc_stub,       &aligned_alloc_stub,
    &posix_memalign_stub, &reallocarray_stub, &usable_size_stub};

const char* allocator_object() noexcept {
  resolve();
  const char* name = family_object.load(std::memory_order_relaxed);
  return name == nullptr ? "" : name;
}

bool is_emulated(function f) noexcept {
  resolve();
  return (emulated_functions.load(std::memory_order_relaxed) >> index(f) & 1u) != 0;
}

#else  // MEMLIMITS_SANITIZER_ALLOCATOR

const char* allocator_object() noexcept { return "sanitizer"; }
bool is_emulated(function) noexcept { return false; }

#endif

}  // namespace memlimits::platform::system
