// preload/preload.cpp — what the LD_PRELOAD library adds to the hooks:
// profiles driven by environment variables, for unmodified programs.
//
// A summary of the allocations:
//   MEMLIMITS_PROFILE_RATE    sampling rate in (0, 1]; no summary when unset
//   MEMLIMITS_PROFILE_OUTPUT  file the summary is appended to at exit
//                             (default: standard error)
// The summary is one JSON object per process on one line: pid, rate,
// samples, sampled_blocks, estimated_bytes (samples * 8 / rate: an unbiased
// estimate of the bytes allocated), live_samples (not yet freed at exit).
// Written with write(2) from a stack buffer: nothing allocates at exit.
//
// A heap profile (memprof::heap_profile) of what is live at exit, that is
// after the program's static destructors have run:
//   MEMLIMITS_HEAP_PROFILE        file of the profile: pprof's format
//                                 (gzip-compressed profile.proto: go tool
//                                 pprof) when the name ends in ".pb.gz" or
//                                 ".pb", else folded stacks (flamegraph.pl,
//                                 speedscope; counts are estimated live bytes);
//                                 "%p" in it stands for the process id. A
//                                 relative path is taken from the directory
//                                 the program started in. No profile when unset.
//   MEMLIMITS_HEAP_PROFILE_TOP    rows of the top table written to
//                                 "<file>.top" (default 20; 0: no table)
//   MEMLIMITS_HEAP_PROFILE_RATE   sampling rate in (0, 1] (default:
//                                 MEMLIMITS_PROFILE_RATE if set, else
//                                 memlimits::default_sampling_rate)
//   MEMLIMITS_HEAP_PROFILE_DEPTH  frames per callstack, in [1, 256] (default 64)
// The files are written at exit by the library's destructor with sampling
// off on the writing thread (the writer allocates: its blocks stay out of
// the profiles); other threads may go on allocating meanwhile, the table is
// lock-free. A process that ends by _exit() or a signal writes nothing.
// Layer 8, the last: the preload library's glue over the layers below (the
// heap profiler of memprof/ through its API, and core::sampling_off).
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <string_view>

#include "core/sampler.hpp"
#include "memlimits/memprof.hpp"
#include "memlimits/sampling_rate.hpp"
#include "platform/platform.hpp"

namespace {

class summary_tracker final : public memlimits::memprof::tracker {
 public:
  void* on_alloc(const memlimits::memprof::allocation& a) override {
    samples_.fetch_add(a.n_samples, std::memory_order_relaxed);
    blocks_.fetch_add(1, std::memory_order_relaxed);
    live_.fetch_add(a.n_samples, std::memory_order_relaxed);
    return reinterpret_cast<void*>(static_cast<std::uintptr_t>(a.n_samples));
  }
  void on_free(void* cookie) noexcept override {
    live_.fetch_sub(reinterpret_cast<std::uintptr_t>(cookie), std::memory_order_relaxed);
  }

  void write(const char* path, double rate, int error_fd) const noexcept {
    char line[512];
    const auto samples = samples_.load();
    const int length = std::snprintf(
        line, sizeof line,
        "{\"pid\":%d,\"rate\":%.17g,\"samples\":%llu,\"sampled_blocks\":%llu,"
        "\"estimated_bytes\":%.0f,\"live_samples\":%lld}\n",
        static_cast<int>(::getpid()), rate, static_cast<unsigned long long>(samples),
        static_cast<unsigned long long>(blocks_.load()), static_cast<double>(samples) * 8.0 / rate,
        static_cast<long long>(live_.load()));
    if (length <= 0) return;
    const auto size = static_cast<std::size_t>(length) < sizeof line
                          ? static_cast<std::size_t>(length) : sizeof line - 1;
    int fd = error_fd;
    if (path != nullptr && *path != '\0') {
      fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) return;
    }
    // O_APPEND and one write: lines of concurrent processes do not mix.
    [[maybe_unused]] ssize_t written = ::write(fd, line, size);
    if (fd != error_fd) ::close(fd);
  }

 private:
  std::atomic<std::uint64_t> samples_{0};
  std::atomic<std::uint64_t> blocks_{0};
  std::atomic<std::int64_t> live_{0};
};

// Constructed in place and never destroyed, so that it outlives every other
// destructor of the process that may still free memory.
alignas(summary_tracker) unsigned char tracker_storage[sizeof(summary_tracker)];
alignas(memlimits::memprof::profile) unsigned char profile_storage[sizeof(memlimits::memprof::profile)];
summary_tracker* summary = nullptr;
memlimits::memprof::profile* running = nullptr;
double profile_rate = 0.0;
// Programs such as coreutils close standard error before the library's
// destructors run: keep a descriptor of our own.
int error_fd = STDERR_FILENO;

// The heap profile, also never destroyed, and what its writer needs: the
// environment may change while the program runs, so it is read at start.
alignas(memlimits::memprof::heap_profile) unsigned char
    heap_storage[sizeof(memlimits::memprof::heap_profile)];
memlimits::memprof::heap_profile* heap = nullptr;
char heap_path[PATH_MAX];
std::size_t heap_top = memlimits::memprof::heap_profile::default_top;

void report(const char* text) noexcept {
  [[maybe_unused]] ssize_t written = ::write(error_fd, text, std::strlen(text));
}

// A rate in (0, 1] from `name`; `fallback` when unset, -1 when malformed.
double rate_from(const char* name, double fallback) noexcept {
  const char* text = memlimits::platform::get_env(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const double rate = std::strtod(text, &end);
  return end != text && *end == '\0' && memlimits::is_valid_sampling_rate(rate) ? rate : -1.0;
}

// A decimal count in [low, high] from `name`; `fallback` when unset, -1 when
// malformed.
long long count_from(const char* name, long long fallback, long long low, long long high) noexcept {
  const char* text = memlimits::platform::get_env(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  return end != text && *end == '\0' && value >= low && value <= high ? value : -1;
}

void start_heap_profile() noexcept {
  const char* path = memlimits::platform::get_env("MEMLIMITS_HEAP_PROFILE");
  if (path == nullptr || *path == '\0') return;
  using memlimits::memprof::heap_profile;
  using memlimits::memprof::profile;
  // A malformed MEMLIMITS_PROFILE_RATE is reported by the summary.
  constexpr double default_rate = memlimits::default_sampling_rate;
  const double shared_rate = rate_from("MEMLIMITS_PROFILE_RATE", default_rate);
  const double rate =
      rate_from("MEMLIMITS_HEAP_PROFILE_RATE", shared_rate > 0 ? shared_rate : default_rate);
  const long long depth = count_from("MEMLIMITS_HEAP_PROFILE_DEPTH",
                                     static_cast<long long>(heap_profile::default_callstack_size),
                                     1, static_cast<long long>(profile::max_callstack_size));
  const long long top = count_from("MEMLIMITS_HEAP_PROFILE_TOP",
                                   static_cast<long long>(heap_profile::default_top), 0, 1LL << 40);
  if (rate < 0) {
    report("memlimits: MEMLIMITS_HEAP_PROFILE_RATE must be a number in (0, 1]; no heap profile\n");
    return;
  }
  if (depth < 0) {
    report("memlimits: MEMLIMITS_HEAP_PROFILE_DEPTH must be an integer in [1, 256]; "
           "no heap profile\n");
    return;
  }
  if (top < 0) {
    report("memlimits: MEMLIMITS_HEAP_PROFILE_TOP must be a non-negative integer; "
           "no heap profile\n");
    return;
  }
  // An absolute path, so that a chdir() of the program does not move the file.
  std::size_t length = 0;
  if (path[0] != '/') {
    if (::getcwd(heap_path, sizeof heap_path) == nullptr) {
      report("memlimits: MEMLIMITS_HEAP_PROFILE: cannot read the current directory; "
             "no heap profile\n");
      return;
    }
    length = std::strlen(heap_path);
    if (length + 1 < sizeof heap_path && heap_path[length - 1] != '/') heap_path[length++] = '/';
  }
  if (length + std::strlen(path) + 1 > sizeof heap_path) {
    report("memlimits: MEMLIMITS_HEAP_PROFILE: path too long; no heap profile\n");
    return;
  }
  std::strcpy(heap_path + length, path);
  heap_top = static_cast<std::size_t>(top);
  try {
    heap = new (heap_storage) heap_profile(rate, static_cast<std::size_t>(depth));
  } catch (const std::exception& e) {
    report("memlimits: no heap profile: ");
    report(e.what());
    report("\n");
  }
}

// heap_path with each "%p" replaced by the process id.
std::string expand_heap_path() {
  std::string path;
  for (const char* c = heap_path; *c != '\0'; ++c) {
    if (c[0] == '%' && c[1] == 'p') {
      path += std::to_string(::getpid());
      ++c;
    } else {
      path += *c;
    }
  }
  return path;
}

// pprof's format for a name ending in ".pb.gz" or ".pb" (the names Go's and
// tcmalloc's tools give such profiles), folded stacks otherwise.
bool is_pprof_path(std::string_view path) noexcept {
  return path.ends_with(".pb.gz") || path.ends_with(".pb");
}

void write_heap_profile() noexcept {
  // The writer allocates (names, lines, the FILE): keep those blocks out of
  // every profile and out of this thread's stream, and keep the table still
  // for this thread.
  memlimits::core::sampling_off off;
  try {
    const std::string path = expand_heap_path();
    if (is_pprof_path(path)) {
      heap->write_pprof(path);
    } else {
      heap->write_folded(path);
    }
    if (heap_top > 0) heap->write_top(path + ".top", heap_top);
  } catch (const std::exception& e) {
    report("memlimits: heap profile not written: ");
    report(e.what());
    report("\n");
  }
}

__attribute__((constructor)) void start_environment_profile() {
  start_heap_profile();
  if (heap != nullptr) {
    if (const int fd = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3); fd >= 0) error_fd = fd;
  }
  const char* text = memlimits::platform::get_env("MEMLIMITS_PROFILE_RATE");
  if (text == nullptr || *text == '\0') return;
  char* end = nullptr;
  const double rate = std::strtod(text, &end);
  if (end == text || !memlimits::is_valid_sampling_rate(rate)) {
    static constexpr char message[] =
        "memlimits: MEMLIMITS_PROFILE_RATE must be a number in (0, 1]; no profile\n";
    memlimits::platform::write_stderr(message, sizeof message - 1);
    return;
  }
  summary = new (tracker_storage) summary_tracker;
  running = new (profile_storage) memlimits::memprof::profile(*summary, rate);
  profile_rate = rate;
  if (error_fd == STDERR_FILENO) {
    if (const int fd = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3); fd >= 0) error_fd = fd;
  }
}

__attribute__((destructor)) void write_environment_profile() {
  if (heap != nullptr) write_heap_profile();
  if (summary == nullptr) return;
  summary->write(memlimits::platform::get_env("MEMLIMITS_PROFILE_OUTPUT"), profile_rate,
                 error_fd);
}

}  // namespace
