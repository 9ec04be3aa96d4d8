// limits/global_memory.cpp — see limits/global_memory.hpp. Layer 5.
#include "limits/global_memory.hpp"

#include <atomic>
#include <stdexcept>
#include <string>

#include "core/spinlock.hpp"
#include "core/subscribers.hpp"
#include "platform/platform.hpp"

namespace memlimits::detail {
namespace {

constinit std::atomic<std::int64_t> limit{-1};
constinit std::atomic<memory_source> source{memory_source::heap};

// The cgroup file chosen when the source was selected.
char cgroup_file[512];
constinit std::atomic<bool> cgroup_file_ready{false};

// Cache of the last rss or cgroup reading: readings older than this are
// refreshed. One reading is a few system calls (a few microseconds).
constexpr std::uint64_t cache_ns = 1000000;
constinit std::atomic<std::int64_t> cached_value{-1};
constinit std::atomic<std::uint64_t> cached_at{0};
constinit std::atomic<memory_source> cached_source{memory_source::heap};

std::int64_t read_source(memory_source from) noexcept {
  switch (from) {
    case memory_source::heap: {
      const std::int64_t estimate = core::live_heap_estimate();
      return estimate < 0 ? 0 : estimate;
    }
    case memory_source::rss:
      return platform::resident_bytes();
    case memory_source::cgroup:
      return cgroup_file_ready.load(std::memory_order_acquire)
                 ? platform::read_integer_file(cgroup_file)
                 : -1;
  }
  return -1;
}

// The usage now; -1 if the source cannot be read.
std::int64_t current_usage() noexcept {
  const memory_source from = source.load(std::memory_order_relaxed);
  if (from == memory_source::heap) return read_source(from);
  const std::uint64_t now = platform::monotonic_ns();
  const std::uint64_t at = cached_at.load(std::memory_order_acquire);
  if (cached_source.load(std::memory_order_relaxed) == from && at != 0 && now - at < cache_ns) {
    return cached_value.load(std::memory_order_relaxed);
  }
  const std::int64_t value = read_source(from);
  // Racing refreshers store readings of the same moment, give or take.
  cached_value.store(value, std::memory_order_relaxed);
  cached_source.store(from, std::memory_order_relaxed);
  cached_at.store(now == 0 ? 1 : now, std::memory_order_release);
  return value;
}

}  // namespace

bool global_limit_exceeded() noexcept {
  const std::int64_t max = limit.load(std::memory_order_relaxed);
  if (max < 0) return false;
  const std::int64_t used = current_usage();
  return used > max;
}

std::uint64_t global_usage_for_monitoring() noexcept {
  const std::int64_t used = current_usage();
  return used < 0 ? 0 : static_cast<std::uint64_t>(used);
}

void select_memory_source(memory_source from) {
  if (from == memory_source::cgroup) {
    static core::spinlock lock;
    core::spinlock_guard guard(lock);
    if (!cgroup_file_ready.load(std::memory_order_acquire)) {
      if (!platform::cgroup_memory_file(cgroup_file, sizeof cgroup_file)) {
        throw std::runtime_error(
            "memlimits::configure: global_source = cgroup, but this process has no readable "
            "cgroup memory file (cgroup v2 memory.current, or v1 memory.usage_in_bytes, "
            "under /sys/fs/cgroup, from /proc/self/cgroup)");
      }
      cgroup_file_ready.store(true, std::memory_order_release);
    }
  }
  source.store(from, std::memory_order_relaxed);
  cached_at.store(0, std::memory_order_relaxed);
}

}  // namespace memlimits::detail

namespace memlimits {

void set_global_memory_limit(std::int64_t value) {
  detail::limit.store(value < 0 ? -1 : value, std::memory_order_relaxed);
  // Tasks under limit_global_memory check it at their next sample.
}

std::int64_t global_memory_limit() noexcept { return detail::limit.load(std::memory_order_relaxed); }

std::uint64_t global_memory_usage() {
  const std::int64_t used = detail::current_usage();
  if (used < 0) {
    throw std::runtime_error(
        std::string("memlimits::global_memory_usage: cannot read the ") +
        (detail::source.load() == memory_source::rss ? "resident set (/proc/self/statm)"
                                                     : "cgroup memory file"));
  }
  return static_cast<std::uint64_t>(used);
}

}  // namespace memlimits
