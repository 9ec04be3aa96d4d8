// profile_demo — what memlimits sees of a running program: a profile at
// rate 1e-3 with 8-frame callstacks watches a small workload (a word index,
// a table of rows, a large buffer), then prints where the live heap is, by
// allocation site, estimated from the samples alone, beside what the
// program itself knows it holds. Uses only the public API and the hooks.
#include <cxxabi.h>
#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "memlimits/memprof.hpp"

namespace {

// Live samples by allocation site (the innermost frames of the callstack).
// Fixed storage and a spin lock: the callbacks never allocate. The cookie of
// a block encodes its site and its sample count, so that its free takes
// back exactly what its allocation added.
class site_tracker final : public memlimits::memprof::tracker {
 public:
  static constexpr std::size_t max_sites = 4096;
  static constexpr std::size_t depth = 8;
  struct site {
    std::array<void*, depth> frames{};
    std::size_t frame_count = 0;
    std::int64_t live_samples = 0;
    bool used = false;
  };

  void* on_alloc(const memlimits::memprof::allocation& a) override {
    const std::size_t n = std::min(a.callstack.size(), depth);
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the frames
    for (std::size_t i = 0; i < n; ++i) {
      h = (h ^ reinterpret_cast<std::uintptr_t>(a.callstack[i])) * 1099511628211ull;
    }
    lock_guard guard(lock_);
    for (std::size_t probe = 0; probe < max_sites; ++probe) {
      const std::size_t index = (h + probe) % max_sites;
      site& s = sites_[index];
      if (!s.used) {
        s.used = true;
        s.frame_count = n;
        std::copy_n(a.callstack.begin(), n, s.frames.begin());
      } else if (s.frame_count != n ||
                 !std::equal(s.frames.begin(), s.frames.begin() + n, a.callstack.begin())) {
        continue;
      }
      s.live_samples += static_cast<std::int64_t>(a.n_samples);
      return reinterpret_cast<void*>((a.n_samples << 16) | (index + 1));
    }
    return nullptr;  // table full: not tracked
  }

  void on_free(void* cookie) noexcept override {
    const auto bits = reinterpret_cast<std::uintptr_t>(cookie);
    lock_guard guard(lock_);
    sites_[(bits & 0xffff) - 1].live_samples -= static_cast<std::int64_t>(bits >> 16);
  }

  std::vector<site> snapshot() {
    // Allocate before taking the lock: an allocation made under it can be
    // sampled, and on_alloc would then wait for the lock this thread holds.
    std::vector<site> used;
    used.reserve(max_sites);
    lock_guard guard(lock_);
    for (const site& s : sites_) {
      if (s.used && s.live_samples > 0) used.push_back(s);
    }
    return used;
  }

 private:
  struct lock_guard {
    explicit lock_guard(std::atomic_flag& f) : flag(f) {
      while (flag.test_and_set(std::memory_order_acquire)) {
      }
    }
    ~lock_guard() { flag.clear(std::memory_order_release); }
    std::atomic_flag& flag;
  };
  std::array<site, max_sites> sites_{};
  std::atomic_flag lock_;
};

std::string describe(void* frame) {
  Dl_info info{};
  if (dladdr(frame, &info) == 0 || info.dli_sname == nullptr) return "??";
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> name(
      abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), &std::free);
  std::string text = status == 0 ? name.get() : info.dli_sname;
  const std::size_t paren = text.find('(');  // drop the parameter list
  if (paren != std::string::npos && paren > 0) text.resize(paren);
  if (text.size() > 70) text = text.substr(0, 67) + "...";
  return text;
}

// The first frame that is the program's own code, not the library's
// templates: the site a reader wants to see.
std::string site_name(const site_tracker::site& s) {
  std::string innermost;
  for (std::size_t i = 0; i < s.frame_count; ++i) {
    std::string name = describe(s.frames[i]);
    if (innermost.empty()) innermost = name;
    if (name.rfind("std::", 0) != 0 && name.rfind("__gnu_cxx::", 0) != 0 && name != "??" &&
        name.find("operator new") == std::string::npos) {
      return name;
    }
  }
  return innermost;
}

}  // namespace

// ---- the workload: three structures the program can size itself ----
// External linkage, so that dladdr can name them in the report.

__attribute__((noinline)) std::unordered_map<std::string, int> build_word_index(int words) {
  std::mt19937 rng(1);
  std::unordered_map<std::string, int> index;
  for (int i = 0; i < words; ++i) {
    std::string word = "word-" + std::to_string(rng() % 200000) + "-with-a-long-tail";
    ++index[word];
  }
  return index;
}

__attribute__((noinline)) std::map<int, std::vector<double>> build_rows(int rows) {
  std::map<int, std::vector<double>> table;
  for (int i = 0; i < rows; ++i) table[i].assign(64, i * 0.5);
  return table;
}

__attribute__((noinline)) std::unique_ptr<char[]> build_buffer(std::size_t bytes) {
  auto buffer = std::make_unique<char[]>(bytes);
  std::fill_n(buffer.get(), bytes, 'x');
  return buffer;
}

int main() {
  constexpr double rate = 1e-3;
  site_tracker tracker;
  memlimits::memprof::profile profile(tracker, rate, site_tracker::depth);
  std::printf("memlimits profile_demo: sampling every 8-byte word with probability %g\n", rate);

  const auto start = std::chrono::steady_clock::now();
  auto index = build_word_index(300000);
  auto rows = build_rows(20000);
  constexpr std::size_t buffer_bytes = 24 << 20;
  auto buffer = build_buffer(buffer_bytes);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("workload: %zu distinct words, %zu rows, a %zu MiB buffer (%.2f s)\n\n",
              index.size(), rows.size(), buffer_bytes >> 20, seconds);

  auto sites = tracker.snapshot();
  profile.stop();
  std::sort(sites.begin(), sites.end(),
            [](const auto& a, const auto& b) { return a.live_samples > b.live_samples; });
  std::map<std::string, double> by_name;
  double total = 0;
  for (const auto& s : sites) {
    const double bytes = static_cast<double>(s.live_samples) * 8 / rate;
    by_name[site_name(s)] += bytes;
    total += bytes;
  }
  std::vector<std::pair<double, std::string>> ranked;
  for (const auto& [name, bytes] : by_name) ranked.emplace_back(bytes, name);
  std::sort(ranked.rbegin(), ranked.rend());

  std::printf("%-14s %6s  %s\n", "live (est.)", "share", "allocation site");
  for (std::size_t i = 0; i < ranked.size() && i < 6; ++i) {
    std::printf("%10.1f MiB %5.1f%%  %s\n", ranked[i].first / (1 << 20),
                100 * ranked[i].first / total, ranked[i].second.c_str());
  }
  // What the program knows: the rows hold 20000 * 64 doubles, the buffer
  // its bytes; the estimate of each is a sum of Binomial(words, rate)
  // samples, so its relative standard error is 1/sqrt(words * rate).
  const double row_payload = 20000.0 * 64 * sizeof(double);
  std::printf("\nknown: rows hold at least %.1f MiB of doubles, the buffer %.1f MiB; "
              "estimated live total %.1f MiB\n",
              row_payload / (1 << 20), static_cast<double>(buffer_bytes) / (1 << 20),
              total / (1 << 20));
  return 0;
}
