// hooks/preload.cpp — what the LD_PRELOAD library adds to the hooks: a
// profile driven by environment variables, for unmodified programs.
//   MEMLIMITS_PROFILE_RATE    sampling rate in (0, 1]; no profile when unset
//   MEMLIMITS_PROFILE_OUTPUT  file the summary is appended to at exit
//                             (default: standard error)
// The summary is one JSON object per process on one line: pid, rate,
// samples, sampled_blocks, estimated_bytes (samples * 8 / rate: an unbiased
// estimate of the bytes allocated), live_samples (not yet freed at exit).
// Written with write(2) from a stack buffer: nothing allocates at exit.
// Layer 4 (the preload library's glue; uses memprof/ through its API).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "memlimits/memprof.hpp"
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

__attribute__((constructor)) void start_environment_profile() {
  const char* text = memlimits::platform::get_env("MEMLIMITS_PROFILE_RATE");
  if (text == nullptr || *text == '\0') return;
  char* end = nullptr;
  const double rate = std::strtod(text, &end);
  if (end == text || !(rate > 0.0 && rate <= 1.0)) {
    static constexpr char message[] =
        "memlimits: MEMLIMITS_PROFILE_RATE must be a number in (0, 1]; no profile\n";
    memlimits::platform::write_stderr(message, sizeof message - 1);
    return;
  }
  summary = new (tracker_storage) summary_tracker;
  running = new (profile_storage) memlimits::memprof::profile(*summary, rate);
  profile_rate = rate;
  if (const int fd = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3); fd >= 0) error_fd = fd;
}

__attribute__((destructor)) void write_environment_profile() {
  if (summary == nullptr) return;
  summary->write(memlimits::platform::get_env("MEMLIMITS_PROFILE_OUTPUT"), profile_rate,
                 error_fd);
}

}  // namespace
