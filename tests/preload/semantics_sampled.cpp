// tests/preload/semantics_sampled.cpp — linked with semantics_probe.cpp and
// memlimits::hooks into semantics_probe_hooks_sampled: a profile at rate 1
// runs from before main to the end of the program, so that every block of
// at least one byte is sampled and every call takes the hooks' slow paths
// (the sampled blocks, their records, the moves of realloc), as
// MEMLIMITS_PROFILE_RATE=1 does for the preload library. Nothing is written
// to standard output: the probe's lines are compared with the plain run's.
//
// At exit it also checks the profile's side, on standard error, and ends
// the process with status 1 if it fails: some blocks were reported (the
// slow paths were taken), and no block's free was reported twice or for a
// block never reported. The blocks still live at exit (stdio's buffer, the
// C++ runtime's emergency pool) are only counted.
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "memlimits/memprof.hpp"

namespace {

constexpr std::size_t max_blocks = std::size_t{1} << 16;

// One state per reported block: 1 live, 2 freed. The cookie is its index + 1.
std::atomic<unsigned char> states[max_blocks];
std::atomic<std::size_t> reported{0};
std::atomic<std::size_t> freed{0};
std::atomic<std::size_t> errors{0};

class checking_tracker final : public memlimits::memprof::tracker {
 public:
  void* on_alloc(const memlimits::memprof::allocation&) override {
    const std::size_t i = reported.fetch_add(1);
    if (i >= max_blocks) return nullptr;
    states[i].store(1);
    return reinterpret_cast<void*>(i + 1);
  }
  void on_free(void* cookie) noexcept override {
    const std::size_t i = reinterpret_cast<std::uintptr_t>(cookie) - 1;
    unsigned char live = 1;
    if (i >= max_blocks || !states[i].compare_exchange_strong(live, 2)) {
      errors.fetch_add(1);
      return;
    }
    freed.fetch_add(1);
  }
};

struct sampled_run {
  checking_tracker tracker;
  memlimits::memprof::profile profile{tracker, 1.0};

  ~sampled_run() {
    profile.stop();
    char line[160];
    const int length = std::snprintf(
        line, sizeof line, "semantics_sampled: %zu blocks reported, %zu freed, %zu bad frees\n",
        reported.load(), freed.load(), errors.load());
    if (length > 0) (void)::write(STDERR_FILENO, line, static_cast<std::size_t>(length));
    if (reported.load() < 500 || errors.load() != 0) ::_exit(1);
  }
};

sampled_run run;

}  // namespace
