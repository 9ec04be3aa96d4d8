// preload/preload.cpp — what the LD_PRELOAD library adds to the hooks:
// profiles driven by environment variables, for unmodified programs, and
// nothing else that a program could notice.
//
// A summary of the allocations:
//   MEMLIMITS_PROFILE_RATE    sampling rate in (0, 1]; no summary when unset
//   MEMLIMITS_PROFILE_OUTPUT  file the summary is appended to; "%p" in it
//                             stands for the process id; "-" is standard
//                             error (default: memlimits.%p.json in the
//                             directory the program started in)
// The summary is one JSON object per process on one line: pid, rate,
// samples, sampled_blocks, estimated_bytes (samples * 8 / rate: an unbiased
// estimate of the bytes allocated), live_samples (not yet freed at exit).
// Written with write(2) from a stack buffer: nothing allocates.
//
// A heap profile (memprof::heap_profile) of what is live at exit:
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
//
// Every variable is parsed whole (platform/environment.hpp). A malformed
// value gets one line on standard error naming the variable and the value,
// and is ignored as if it were unset. An empty value is unset.
//
// When. The library has no constructor: the core calls on_process_start at
// the process's first allocation (core/sampler.hpp), wherever it is made,
// so the profiles also cover allocations in the constructors of shared
// libraries that the loader initialises before this one. The files are
// written by an exit handler that the library's destructor registers while
// the loader runs the destructors of every object (_dl_fini, itself an exit
// handler): glibc's exit() runs handlers registered meanwhile once _dl_fini
// has returned, that is after the program's static destructors, its atexit
// handlers and every shared library's destructors. Not covered: allocations
// and frees of other threads after the write, and anything after exit's
// handlers (stdio's final flush frees nothing). A process that ends by
// _exit(), quick_exit(), exec or a signal writes nothing.
//
// No descriptor is held: the files are opened at write time with O_CLOEXEC
// and closed. Writers run with sampling off on the writing thread (the heap
// profile's writer allocates: its blocks stay out of the profiles); other
// threads may go on allocating meanwhile, the tables are lock-free.
//
// Layer 8, the last: the preload library's glue over the layers below (the
// heap profiler of memprof/ through its API, core's start routine and
// sampling_off, platform's environment parsers).
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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
#include "platform/environment.hpp"
#include "platform/platform.hpp"

extern "C" int __cxa_atexit(void (*function)(void*), void* argument, void* dso_handle);

namespace {

void report(const char* text) noexcept {
  memlimits::platform::write_stderr(text, std::strlen(text));
}

// A path of the user's: absolute (a relative one is taken from the working
// directory at start, so that a chdir() of the program does not move the
// file), with "%p" expanded at write time.
class output_path {
 public:
  // False (and reported, naming `variable`) when it cannot be resolved.
  bool assign(const char* variable, const char* path) noexcept {
    std::size_t length = 0;
    if (path[0] != '/') {
      if (::getcwd(text_, sizeof text_) == nullptr) {
        memlimits::platform::report_ignored_variable(
            variable, path, "a path (the working directory cannot be read)");
        return false;
      }
      length = std::strlen(text_);
      if (length + 1 < sizeof text_ && text_[length - 1] != '/') text_[length++] = '/';
    }
    if (length + std::strlen(path) + 1 > sizeof text_) {
      memlimits::platform::report_ignored_variable(variable, path,
                                                   "a path shorter than PATH_MAX");
      text_[0] = '\0';
      return false;
    }
    std::strcpy(text_ + length, path);
    return true;
  }

  // The path with each "%p" replaced by the process id, in `out`; false if
  // it does not fit.
  bool expand(char* out, std::size_t size) const noexcept {
    char pid[24];
    const int pid_length = std::snprintf(pid, sizeof pid, "%d", static_cast<int>(::getpid()));
    std::size_t n = 0;
    for (const char* c = text_; *c != '\0'; ++c) {
      const bool is_pid = c[0] == '%' && c[1] == 'p';
      const std::size_t piece = is_pid ? static_cast<std::size_t>(pid_length) : 1;
      if (n + piece + 1 > size) return false;
      if (is_pid) {
        std::memcpy(out + n, pid, piece);
        ++c;
      } else {
        out[n] = *c;
      }
      n += piece;
    }
    out[n] = '\0';
    return true;
  }

  bool empty() const noexcept { return text_[0] == '\0'; }

 private:
  char text_[PATH_MAX] = {};
};

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

  // Appends the summary line to `path` (nullptr: standard error).
  void write(const output_path* path, double rate) const noexcept {
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
    if (path == nullptr) {
      [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, line, size);
      return;
    }
    char file[PATH_MAX + 32];
    if (!path->expand(file, sizeof file)) {
      report("memlimits: summary not written: its path is too long with the process id\n");
      return;
    }
    const int fd = ::open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    // O_APPEND and one write: lines of concurrent processes do not mix.
    const bool written = fd >= 0 && ::write(fd, line, size) == static_cast<ssize_t>(size);
    const int error = errno;
    if (fd >= 0) ::close(fd);
    if (!written) {
      char message[PATH_MAX + 128];
      std::snprintf(message, sizeof message, "memlimits: summary not written to \"%s\": %s\n",
                    file, std::strerror(error));
      report(message);
    }
  }

 private:
  std::atomic<std::uint64_t> samples_{0};
  std::atomic<std::uint64_t> blocks_{0};
  std::atomic<std::int64_t> live_{0};
};

// Constructed in place and never destroyed, so that they outlive every
// destructor of the process that may still free memory.
alignas(summary_tracker) unsigned char tracker_storage[sizeof(summary_tracker)];
alignas(memlimits::memprof::profile) unsigned char profile_storage[sizeof(memlimits::memprof::profile)];
alignas(memlimits::memprof::heap_profile) unsigned char
    heap_storage[sizeof(memlimits::memprof::heap_profile)];

// What the start routine read from the environment (which the program may
// change later) and built. Plain data, constant-initialised: the start
// routine may run before this library's constructors would.
struct preload_state {
  summary_tracker* summary = nullptr;
  double summary_rate = 0.0;
  bool summary_to_stderr = false;
  output_path summary_path;
  memlimits::memprof::heap_profile* heap = nullptr;
  output_path heap_path;
  std::size_t heap_top = memlimits::memprof::heap_profile::default_top;
};
constinit preload_state state;
constinit std::atomic<bool> started{false};

// The value of `name`, or nullptr when unset or empty.
const char* setting(const char* name) noexcept {
  const char* text = memlimits::platform::get_env(name);
  return text != nullptr && *text != '\0' ? text : nullptr;
}

constexpr const char* rate_expected = "a sampling rate in (0, 1]";

// A rate in (0, 1] from `name`; `fallback` when unset or malformed.
double rate_setting(const char* name, double fallback) noexcept {
  const char* text = setting(name);
  if (text == nullptr) return fallback;
  double rate = 0;
  if (memlimits::platform::parse_number(text, rate) && memlimits::is_valid_sampling_rate(rate)) {
    return rate;
  }
  memlimits::platform::report_ignored_variable(name, text, rate_expected);
  return fallback;
}

// A decimal count in [low, high] from `name`; `fallback` when unset or
// malformed.
std::uint64_t count_setting(const char* name, std::uint64_t fallback, std::uint64_t low,
                            std::uint64_t high, const char* expected) noexcept {
  const char* text = setting(name);
  if (text == nullptr) return fallback;
  std::uint64_t value = 0;
  if (memlimits::platform::parse_unsigned(text, value) && value >= low && value <= high) {
    return value;
  }
  memlimits::platform::report_ignored_variable(name, text, expected);
  return fallback;
}

void start_summary(double rate) noexcept {
  if (rate <= 0) return;
  // A path that cannot be resolved is reported, and the default file is
  // used instead.
  if (const char* output = setting("MEMLIMITS_PROFILE_OUTPUT"); output != nullptr) {
    if (std::strcmp(output, "-") == 0) {
      state.summary_to_stderr = true;
    } else {
      state.summary_path.assign("MEMLIMITS_PROFILE_OUTPUT", output);
    }
  }
  if (!state.summary_to_stderr && state.summary_path.empty() &&
      !state.summary_path.assign("MEMLIMITS_PROFILE_OUTPUT", "memlimits.%p.json")) {
    return;
  }
  try {
    state.summary = new (tracker_storage) summary_tracker;
    new (profile_storage) memlimits::memprof::profile(*state.summary, rate);
    state.summary_rate = rate;
  } catch (const std::exception& e) {
    state.summary = nullptr;
    report("memlimits: no summary: ");
    report(e.what());
    report("\n");
  }
}

void start_heap_profile(double profile_rate) noexcept {
  using memlimits::memprof::heap_profile;
  using memlimits::memprof::profile;
  const double rate = rate_setting(
      "MEMLIMITS_HEAP_PROFILE_RATE",
      profile_rate > 0 ? profile_rate : memlimits::default_sampling_rate);
  const std::uint64_t depth =
      count_setting("MEMLIMITS_HEAP_PROFILE_DEPTH", heap_profile::default_callstack_size, 1,
                    profile::max_callstack_size, "an integer in [1, 256]");
  state.heap_top = count_setting("MEMLIMITS_HEAP_PROFILE_TOP", heap_profile::default_top, 0,
                                 std::uint64_t{1} << 40, "a non-negative integer");
  const char* path = setting("MEMLIMITS_HEAP_PROFILE");
  if (path == nullptr || !state.heap_path.assign("MEMLIMITS_HEAP_PROFILE", path)) return;
  try {
    state.heap = new (heap_storage) heap_profile(rate, static_cast<std::size_t>(depth));
  } catch (const std::exception& e) {
    report("memlimits: no heap profile: ");
    report(e.what());
    report("\n");
  }
}

// Reads every setting (so that each malformed one is reported once) and
// starts what they ask for.
void start_environment_profile() noexcept {
  if (started.exchange(true, std::memory_order_acq_rel)) return;
  const double rate = rate_setting("MEMLIMITS_PROFILE_RATE", 0.0);
  start_heap_profile(rate);
  start_summary(rate);
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
    char expanded[PATH_MAX + 32];
    if (!state.heap_path.expand(expanded, sizeof expanded)) {
      report("memlimits: heap profile not written: its path is too long with the process id\n");
      return;
    }
    const std::string path = expanded;
    if (is_pprof_path(path)) {
      state.heap->write_pprof(path);
    } else {
      state.heap->write_folded(path);
    }
    if (state.heap_top > 0) state.heap->write_top(path + ".top", state.heap_top);
  } catch (const std::exception& e) {
    report("memlimits: heap profile not written: ");
    report(e.what());
    report("\n");
  }
}

void write_environment_profile(void*) {
  if (state.heap != nullptr) write_heap_profile();
  if (state.summary != nullptr) {
    state.summary->write(state.summary_to_stderr ? nullptr : &state.summary_path,
                         state.summary_rate);
  }
}

// Runs inside _dl_fini, among the destructors of every loaded object: the
// handler it registers runs once they have all run (see the header). A
// process that never allocated starts here, so that it too writes its
// summary.
__attribute__((destructor)) void schedule_environment_profile() {
  start_environment_profile();
  if (state.heap == nullptr && state.summary == nullptr) return;
  // No DSO handle: __cxa_finalize of this library must not run it early.
  if (__cxa_atexit(&write_environment_profile, nullptr, nullptr) != 0) {
    write_environment_profile(nullptr);
  }
}

}  // namespace

void memlimits::core::on_process_start() noexcept { start_environment_profile(); }
