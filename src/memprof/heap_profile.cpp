// memprof/heap_profile.cpp — memprof::heap_profile, the ready heap profiler:
// live sampled blocks aggregated by callstack in a lock-free table, and its
// outputs (snapshots, folded stacks, a top-N table; pprof's format is
// memprof/pprof.cpp's), with frames named by memprof/symbolizer.hpp when a
// profile is written.
// Layer 6 (uses memprof::profile, core/distributions.hpp and platform/).
//
// The table. Each distinct callstack gets an entry in an open-addressing
// hash table (linear probing) with room for 4/3 of max_stacks, in pages
// mapped for it (platform::map_pages: zero-filled, committed as touched). An
// entry's key is 0 (empty), 1 (being written) or the hash of its frames (>= 2).
// A thread that inserts claims an empty entry by CAS 0 -> 1, writes the
// frames, then publishes the key with a release store; readers load the key
// with acquire before they read the frames. A reader that meets an entry
// being written skips it: two threads inserting the same new stack at once
// may then make two entries for it, which snapshot() merges. So the
// callbacks never wait for another thread, never lock and never allocate,
// and a fork() that happens in the middle of an insertion leaves the child
// with one entry that is skipped forever, not with a held lock.
//
// The cookie of a tracked block encodes its entry and its sample count, so
// that its free takes back exactly what its allocation added (the count of a
// stack never goes below zero: a block's free happens after its allocation).
#include <cxxabi.h>
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/distributions.hpp"
#include "core/sampler.hpp"
#include "memlimits/memprof.hpp"
#include "memprof/output.hpp"
#include "memprof/pprof.hpp"
#include "memprof/symbolizer.hpp"
#include "platform/platform.hpp"

namespace memlimits::memprof {
namespace {

constexpr std::uint64_t key_empty = 0;
constexpr std::uint64_t key_busy = 1;

// Cookie, one of two forms (bit 63 tells which):
//   small: (words << 33) | (samples << 25) | (entry + 1), for a block of
//          fewer than 2^30 words (8 GiB) with fewer than 256 samples;
//   large: (1 << 63) | (samples << 25) | (entry + 1), any other block.
// entry == capacity is the stack of the blocks whose stack is not recorded.
// The capacity is at most 2^24 (see the static_assert), so entry + 1 fits 25
// bits; a large block may carry up to 2^38 - 1 samples (2 TiB at rate 1), and
// a larger one is not tracked. The words let the free take back exactly the
// object weight that the allocation added (object_weight).
constexpr int index_bits = 25;
constexpr std::uint64_t index_mask = (std::uint64_t{1} << index_bits) - 1;
constexpr int small_sample_bits = 8;
constexpr int words_shift = index_bits + small_sample_bits;
constexpr std::uint64_t small_max_words = (std::uint64_t{1} << 30) - 1;
constexpr std::uint64_t small_max_samples = (std::uint64_t{1} << small_sample_bits) - 1;
constexpr std::uint64_t large_form = std::uint64_t{1} << 63;
constexpr std::uint64_t max_cookie_samples = (std::uint64_t{1} << (63 - index_bits)) - 1;

// Object weights are kept in fixed point, in 1/256 of an object.
constexpr double object_unit = 256.0;

// Implicit-lifetime, so that the zero-filled mapping already holds empty
// entries; accessed through std::atomic_ref.
struct stack_entry {
  std::uint64_t key;          // atomic: key_empty, key_busy or the frames' hash
  std::int64_t live_samples;  // atomic
  std::int64_t live_objects;  // atomic: the live blocks' object weights, in object_unit
  std::uint32_t depth;        // frames used; written before key is published
  std::uint32_t unused;
};

constexpr std::size_t round_up_power_of_two(std::size_t n) {
  std::size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Entries for max_stacks stacks: a load factor of at most 3/4, so that
// linear probing stays short (about 8 probes for a new stack at worst).
constexpr std::size_t table_capacity(std::size_t max_stacks) {
  return round_up_power_of_two(max_stacks + max_stacks / 3 + 1);
}
static_assert(table_capacity(heap_profile::max_stacks_limit) + 1 <= index_mask,
              "an entry index, and the unrecorded one, must fit the cookie's index bits");

std::uint64_t hash_frames(void* const* frames, std::size_t n) noexcept {
  std::uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= reinterpret_cast<std::uintptr_t>(frames[i]);
    h *= 0xBF58476D1CE4E5B9ull;  // splitmix64's finaliser, one round per frame
    h ^= h >> 31;
  }
  h ^= h >> 29;
  return h < 2 ? h + 2 : h;  // 0 and 1 are the empty and busy keys
}

// ---- names ----

std::string hex(std::uintptr_t value) {
  char text[2 + 16 + 1];
  std::snprintf(text, sizeof text, "0x%" PRIxPTR, value);
  return text;
}

// A frame of a folded line: no ';' (the frame separator) and no white space
// (the count follows the last space). A space after ',' or between '>' and
// '>' only separates tokens and is dropped; any other becomes '_'.
std::string folded_frame(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == ';') {
      out += ':';
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      const bool after_comma = !out.empty() && out.back() == ',';
      const bool between_angles =
          !out.empty() && out.back() == '>' && i + 1 < name.size() && name[i + 1] == '>';
      if (!after_comma && !between_angles) out += '_';
    } else {
      out += c;
    }
  }
  if (out.empty()) out = "?";
  return out;
}

constexpr std::string_view unrecorded_frame = "[memlimits:unrecorded_stack]";

// frame_name(), and with `call_site` the offset of the return address in its
// function ("f(int)+0x1c"), which tells apart two calls in one function.
std::string describe(const void* return_address, bool call_site) {
  const auto address = reinterpret_cast<std::uintptr_t>(return_address);
  if (address == 0) return "0x0";
  Dl_info info{};
  // address - 1 lies in the call instruction: the function that made the
  // call, also when the call is the last instruction of its function.
  if (::dladdr(reinterpret_cast<const void*>(address - 1), &info) != 0) {
    if (info.dli_sname != nullptr && *info.dli_sname != '\0') {
      int status = 0;
      std::unique_ptr<char, decltype(&std::free)> demangled(
          abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), &std::free);
      std::string name =
          status == 0 && demangled ? std::string(demangled.get()) : std::string(info.dli_sname);
      if (call_site && info.dli_saddr != nullptr) {
        name += "+" + hex(address - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
      }
      return name;
    }
    if (info.dli_fname != nullptr && *info.dli_fname != '\0') {
      const char* slash = std::strrchr(info.dli_fname, '/');
      return std::string(slash != nullptr ? slash + 1 : info.dli_fname) + "+" +
             hex(address - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
    }
  }
  return hex(address);
}

std::string_view base_name(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Names the frames of a write, once per return address (stacks share most
// of their frames), from the symbolizer: each function at the address, the
// inlined ones first, as "name" plus where in it, the way `style` asks.
class frame_namer {
 public:
  frame_namer(const frame_style& style, detail::symbol_cache& symbols)
      : style_(style), symbols_(symbols) {}

  // One entry per function at the return address, innermost (inlined)
  // first: for folded stacks "name@file:line", for the top table
  // "name at file:line", "[inlined]" after a function inlined into the
  // next; without a line, the call's offset in its function when the symbol
  // table has it ("f(int)+0x1c"), or the object and offset.
  const std::vector<std::string>& folded(void* frame) { return names(frame, folded_, true); }
  const std::vector<std::string>& lines(void* frame) { return names(frame, lines_, false); }

 private:
  using cache = std::unordered_map<void*, std::vector<std::string>>;

  const std::vector<std::string>& names(void* frame, cache& names, bool folded) {
    auto [it, inserted] = names.try_emplace(frame);
    if (inserted) it->second = describe_frames(frame, folded);
    return it->second;
  }

  std::vector<std::string> describe_frames(void* frame, bool folded) {
    const auto address = reinterpret_cast<std::uintptr_t>(frame);
    std::vector<std::string> out;
    if (address == 0) {
      out.emplace_back("0x0");
      return out;
    }
    // address - 1 lies in the call instruction: the function that made the
    // call, also when the call is the last instruction of its function.
    const detail::symbolized& s = symbols_.symbolize(address - 1);
    if (s.frames.empty()) {
      out.push_back(folded ? detail::module_offset_name(s, address - 1)
                           : describe(frame, /*call_site=*/true));
      return out;
    }
    for (std::size_t i = 0; i < s.frames.size(); ++i) {
      const detail::source_location& f = s.frames[i];
      const bool inlined = i + 1 < s.frames.size();
      std::string name = f.function.empty()
                             ? detail::module_offset_name(s, address - 1)
                             : (style_.full_names ? f.function : detail::short_name(f.function));
      if (style_.source_lines && !f.file.empty() && f.line != 0) {
        const std::string where =
            std::string(style_.full_names ? std::string_view(f.file) : base_name(f.file)) + ":" +
            std::to_string(f.line);
        name += (folded ? "@" : " at ") + where;
      } else if (!folded && !inlined) {
        // No line: tell two calls in one function apart by the offset.
        name = describe(frame, /*call_site=*/true);
      }
      if (!folded && inlined) name += " [inlined]";
      out.push_back(std::move(name));
    }
    return out;
  }

  frame_style style_;
  detail::symbol_cache::session symbols_;
  cache folded_;
  cache lines_;
};

std::string format(const char* pattern, auto... values) {
  char buffer[256];
  const int length = std::snprintf(buffer, sizeof buffer, pattern, values...);
  if (length < 0) return {};
  if (static_cast<std::size_t>(length) < sizeof buffer) return std::string(buffer, length);
  std::string text(static_cast<std::size_t>(length), '\0');
  std::snprintf(text.data(), text.size() + 1, pattern, values...);
  return text;
}

std::int64_t total_bytes(const std::vector<heap_stack>& stacks) {
  std::int64_t total = 0;
  for (const heap_stack& s : stacks) total += s.live_bytes;
  return total;
}

void write_folded_to(const std::vector<heap_stack>& stacks, const frame_style& style,
                     detail::symbol_cache& symbols, detail::output_sink& out) {
  // Stacks of distinct return addresses may have the same names (two calls
  // on one line): one line per distinct named stack.
  frame_namer name(style, symbols);
  std::map<std::string, std::int64_t> lines;
  for (const heap_stack& s : stacks) {
    std::string line;
    if (s.frames.empty()) {
      line = unrecorded_frame;
    } else {
      for (std::size_t i = s.frames.size(); i-- > 0;) {  // outermost first
        const std::vector<std::string>& functions = name.folded(s.frames[i]);
        for (std::size_t j = functions.size(); j-- > 0;) {  // the inlined ones last
          if (!line.empty()) line += ';';
          line += folded_frame(functions[j]);
        }
      }
    }
    lines[std::move(line)] += s.live_bytes;
  }
  std::vector<std::pair<std::int64_t, const std::string*>> order;
  order.reserve(lines.size());
  for (const auto& [line, bytes] : lines) order.emplace_back(bytes, &line);
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [bytes, line] : order) {
    out.put(*line);
    out.put(format(" %lld\n", static_cast<long long>(bytes)));
  }
}

std::string readable_bytes(double bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(units)) {
    bytes /= 1024;
    ++unit;
  }
  return unit == 0 ? format("%.0f %s", bytes, units[unit]) : format("%.1f %s", bytes, units[unit]);
}

void write_top_to(const std::vector<heap_stack>& stacks, double rate, std::size_t top,
                  const frame_style& style, detail::symbol_cache& symbols,
                  detail::output_sink& out) {
  const std::int64_t total = total_bytes(stacks);
  std::uint64_t samples = 0;
  for (const heap_stack& s : stacks) samples += s.samples;
  out.put(
      format("memlimits heap profile: %s live (%lld bytes, estimated from %llu samples at "
             "rate %g), %zu stacks\n",
             readable_bytes(static_cast<double>(total)).c_str(), static_cast<long long>(total),
             static_cast<unsigned long long>(samples), rate, stacks.size()));
  if (stacks.empty()) return;
  out.put(format("%5s %16s %7s %9s  %s\n", "rank", "live bytes", "share", "samples",
                 "callstack, innermost frame first"));
  static constexpr std::string_view indent = "                                         ";  // 41
  frame_namer name(style, symbols);
  const std::size_t rows = std::min(top, stacks.size());
  for (std::size_t rank = 0; rank < rows; ++rank) {
    const heap_stack& s = stacks[rank];
    const double share =
        total > 0 ? 100.0 * static_cast<double>(s.live_bytes) / static_cast<double>(total) : 0.0;
    out.put(format("%5zu %16lld %6.2f%% %9llu  ", rank + 1, static_cast<long long>(s.live_bytes),
                   share, static_cast<unsigned long long>(s.samples)));
    if (s.frames.empty()) {
      out.put(unrecorded_frame);
      out.put("\n");
    }
    bool first = true;
    for (void* frame : s.frames) {
      for (const std::string& function : name.lines(frame)) {
        if (!first) {
          out.put(indent);
          out.put("<- ");
        }
        first = false;
        out.put(function);
        out.put("\n");
      }
    }
  }
  if (rows < stacks.size()) {
    std::int64_t rest = 0;
    for (std::size_t i = rows; i < stacks.size(); ++i) rest += stacks[i].live_bytes;
    out.put(
        format("%zu more stacks hold %lld bytes (%.2f%%)\n", stacks.size() - rows,
               static_cast<long long>(rest),
               total > 0 ? 100.0 * static_cast<double>(rest) / static_cast<double>(total) : 0.0));
  }
}

}  // namespace

std::string frame_name(const void* return_address) { return describe(return_address, false); }

// The tracker and its table; the profile that feeds it is the last member,
// so that it stops (waiting for callbacks in flight) before the table goes.
class heap_profile::impl final : public tracker {
 public:
  impl(double rate, std::size_t depth, std::size_t max_stacks)
      : rate_(rate),
        log1m_rate_(std::log1p(-rate)),
        depth_(depth),
        limit_(max_stacks),
        capacity_(table_capacity(max_stacks)),
        table_(capacity_, depth),
        entries_(table_.entries()),
        frames_(table_.frames()),
        profile_(*this, rate, depth) {}

  void* on_alloc(const allocation& a) override {
    if (a.n_samples > max_cookie_samples) return nullptr;  // a block beyond 2 TiB at rate 1
    const std::size_t n = a.callstack.size() < depth_ ? a.callstack.size() : depth_;
    const std::size_t index = n == 0 ? capacity_ : find_or_insert(a.callstack.data(), n);
    const std::uint64_t words = a.size < 8 ? 1 : (a.size + 7) / 8;
    std::uint64_t bits = (a.n_samples << index_bits) | (index + 1);
    if (words <= small_max_words && a.n_samples <= small_max_samples) {
      bits |= words << words_shift;
    } else {
      bits |= large_form;
    }
    counters c = counters_of(index);
    c.samples.fetch_add(static_cast<std::int64_t>(a.n_samples), std::memory_order_relaxed);
    c.objects.fetch_add(object_weight(bits), std::memory_order_relaxed);
    return reinterpret_cast<void*>(static_cast<std::uintptr_t>(bits));
  }

  void on_free(void* cookie) noexcept override {
    const auto bits = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(cookie));
    const std::size_t index = static_cast<std::size_t>((bits & index_mask) - 1);
    const std::uint64_t samples = (bits & large_form) != 0
                                      ? (bits & ~large_form) >> index_bits
                                      : (bits >> index_bits) & small_max_samples;
    counters c = counters_of(index);
    c.samples.fetch_sub(static_cast<std::int64_t>(samples), std::memory_order_relaxed);
    c.objects.fetch_sub(object_weight(bits), std::memory_order_relaxed);
  }

  std::vector<heap_stack> snapshot() const {
    std::vector<heap_stack> stacks;
    const auto add = [&](std::vector<void*> frames, std::size_t index) {
      const counters c = counters_of(index);
      const std::int64_t live = c.samples.load(std::memory_order_relaxed);
      if (live <= 0) return;
      heap_stack s;
      s.frames = std::move(frames);
      s.samples = static_cast<std::uint64_t>(live);
      s.live_objects = c.objects.load(std::memory_order_relaxed);  // in object_unit until merged
      stacks.push_back(std::move(s));
    };
    for (std::size_t i = 0; i < capacity_; ++i) {
      stack_entry& e = entries_[i];
      if (std::atomic_ref<std::uint64_t>(e.key).load(std::memory_order_acquire) < 2) continue;
      void* const* frames = frames_ + i * depth_;
      add(std::vector<void*>(frames, frames + e.depth), i);
    }
    add({}, capacity_);
    // Merge the entries of one stack (see the file comment).
    std::sort(stacks.begin(), stacks.end(),
              [](const heap_stack& a, const heap_stack& b) { return a.frames < b.frames; });
    std::vector<heap_stack> merged;
    merged.reserve(stacks.size());
    for (heap_stack& s : stacks) {
      if (!merged.empty() && merged.back().frames == s.frames) {
        merged.back().samples += s.samples;
        merged.back().live_objects += s.live_objects;
      } else {
        merged.push_back(std::move(s));
      }
    }
    for (heap_stack& s : merged) {
      s.live_bytes = core::sample_weight_bytes(s.samples, rate_);
      s.live_objects = std::llround(static_cast<double>(s.live_objects) / object_unit);
    }
    std::stable_sort(merged.begin(), merged.end(), [](const heap_stack& a, const heap_stack& b) {
      if (a.live_bytes != b.live_bytes) return a.live_bytes > b.live_bytes;
      return a.samples > b.samples;
    });
    return merged;
  }

  profile& feed() noexcept { return profile_; }
  const profile& feed() const noexcept { return profile_; }
  double rate() const noexcept { return rate_; }
  std::size_t depth() const noexcept { return depth_; }
  detail::symbol_cache& symbols() const noexcept { return symbols_; }

 private:
  // The pages of the table: capacity entries, then capacity * depth frames.
  class mapping {
   public:
    mapping(std::size_t capacity, std::size_t depth)
        : frames_offset_(capacity * sizeof(stack_entry)),
          bytes_(frames_offset_ + capacity * depth * sizeof(void*)),
          pages_(platform::map_pages(bytes_)) {
      if (pages_ == nullptr) throw std::bad_alloc();
    }
    ~mapping() { platform::unmap_pages(pages_, bytes_); }
    mapping(const mapping&) = delete;
    mapping& operator=(const mapping&) = delete;
    stack_entry* entries() const noexcept { return static_cast<stack_entry*>(pages_); }
    void** frames() const noexcept {
      return reinterpret_cast<void**>(static_cast<char*>(pages_) + frames_offset_);
    }

   private:
    std::size_t frames_offset_;
    std::size_t bytes_;
    void* pages_;
  };

  // The live counters of an entry, or of the unrecorded stack.
  struct counters {
    std::atomic_ref<std::int64_t> samples;
    std::atomic_ref<std::int64_t> objects;
  };
  counters counters_of(std::size_t index) const noexcept {
    if (index == capacity_) return {std::atomic_ref(unrecorded_samples_),
                                    std::atomic_ref(unrecorded_objects_)};
    return {std::atomic_ref(entries_[index].live_samples),
            std::atomic_ref(entries_[index].live_objects)};
  }

  // How many blocks a sampled block stands for, in object_unit: 1 / q, where
  // q = 1 - (1 - rate)^words is the probability that a block of its size
  // holds a sample, so that the sum over the live sampled blocks of a stack
  // estimates its live blocks without bias (as pprof expects of a sampled
  // heap profile's inuse_objects). A function of the cookie alone, so that
  // the free takes back exactly what the allocation added; a large-form
  // block (256 samples or more: q = 1 to double precision; or 8 GiB or
  // more) counts as one.
  std::int64_t object_weight(std::uint64_t bits) const noexcept {
    if ((bits & large_form) != 0) return static_cast<std::int64_t>(object_unit);
    const auto words = static_cast<double>(bits >> words_shift);
    const double q = -std::expm1(words * log1m_rate_);
    return std::llround(object_unit / q);
  }

  // The entry of the stack frames[0..n), inserted if new; capacity_ when the
  // table holds max_stacks stacks already (or no free entry was found).
  std::size_t find_or_insert(void* const* frames, std::size_t n) noexcept {
    const std::uint64_t hash = hash_frames(frames, n);
    const std::size_t mask = capacity_ - 1;
    for (std::size_t probe = 0; probe < capacity_; ++probe) {
      const std::size_t index = (static_cast<std::size_t>(hash) + probe) & mask;
      stack_entry& e = entries_[index];
      std::atomic_ref<std::uint64_t> key(e.key);
      std::uint64_t seen = key.load(std::memory_order_acquire);
      if (seen == key_empty) {
        if (used_.load(std::memory_order_relaxed) >= limit_) return capacity_;
        if (key.compare_exchange_strong(seen, key_busy, std::memory_order_acquire)) {
          used_.fetch_add(1, std::memory_order_relaxed);
          std::copy_n(frames, n, frames_ + index * depth_);
          e.depth = static_cast<std::uint32_t>(n);
          key.store(hash, std::memory_order_release);
          return index;
        }
        // Another thread claimed it: `seen` is its key now.
      }
      if (seen == hash && e.depth == n &&
          std::equal(frames, frames + n, frames_ + index * depth_)) {
        return index;
      }
    }
    return capacity_;
  }

  double rate_;
  double log1m_rate_;  // log(1 - rate_): -inf at rate 1, where q = 1
  std::size_t depth_;
  std::size_t limit_;
  std::size_t capacity_;
  mapping table_;
  stack_entry* entries_;
  void** frames_;
  std::atomic<std::size_t> used_{0};
  // Live samples and objects of the blocks whose stack found no entry, or
  // had no frame (atomic_ref).
  mutable std::int64_t unrecorded_samples_ = 0;
  mutable std::int64_t unrecorded_objects_ = 0;
  // The names of frames, kept across writes (the writers' own lock).
  mutable detail::symbol_cache symbols_;
  profile profile_;
};

static_assert(std::atomic_ref<std::uint64_t>::required_alignment <= alignof(std::uint64_t));
static_assert(std::atomic_ref<std::int64_t>::required_alignment <= alignof(std::int64_t));

heap_profile::heap_profile(double sampling_rate, std::size_t callstack_size,
                           std::size_t max_stacks) {
  core::require_sampling_rate("memlimits::memprof::heap_profile", sampling_rate);
  if (callstack_size < 1 || callstack_size > profile::max_callstack_size) {
    throw std::invalid_argument("memlimits::memprof::heap_profile: callstack_size must be in [1, " +
                                std::to_string(profile::max_callstack_size) + "], got " +
                                std::to_string(callstack_size));
  }
  if (max_stacks < 1 || max_stacks > max_stacks_limit) {
    throw std::invalid_argument("memlimits::memprof::heap_profile: max_stacks must be in [1, " +
                                std::to_string(max_stacks_limit) + "], got " +
                                std::to_string(max_stacks));
  }
  impl_ = std::make_unique<impl>(sampling_rate, callstack_size, max_stacks);
}

heap_profile::~heap_profile() = default;

void heap_profile::stop() noexcept { impl_->feed().stop(); }
bool heap_profile::running() const noexcept { return impl_->feed().running(); }
double heap_profile::sampling_rate() const noexcept { return impl_->rate(); }
std::size_t heap_profile::callstack_size() const noexcept { return impl_->depth(); }

std::vector<heap_stack> heap_profile::snapshot() const { return impl_->snapshot(); }

std::int64_t heap_profile::live_bytes() const { return total_bytes(impl_->snapshot()); }

void heap_profile::write_folded(std::ostream& out, const frame_style& style) const {
  detail::ostream_sink sink(out);
  write_folded_to(impl_->snapshot(), style, impl_->symbols(), sink);
}

void heap_profile::write_folded(std::FILE* out, const frame_style& style) const {
  detail::file_sink sink(out);
  write_folded_to(impl_->snapshot(), style, impl_->symbols(), sink);
  sink.finish("memlimits::memprof::heap_profile::write_folded");
}

void heap_profile::write_folded(const std::string& path, const frame_style& style) const {
  detail::write_file_atomically(path, "memlimits::memprof::heap_profile::write_folded",
                                [this, &style](std::FILE* file) { write_folded(file, style); });
}

void heap_profile::write_top(std::ostream& out, std::size_t top, const frame_style& style) const {
  detail::ostream_sink sink(out);
  write_top_to(impl_->snapshot(), impl_->rate(), top, style, impl_->symbols(), sink);
}

void heap_profile::write_top(std::FILE* out, std::size_t top, const frame_style& style) const {
  detail::file_sink sink(out);
  write_top_to(impl_->snapshot(), impl_->rate(), top, style, impl_->symbols(), sink);
  sink.finish("memlimits::memprof::heap_profile::write_top");
}

void heap_profile::write_top(const std::string& path, std::size_t top,
                             const frame_style& style) const {
  detail::write_file_atomically(
      path, "memlimits::memprof::heap_profile::write_top",
      [this, top, &style](std::FILE* file) { write_top(file, top, style); });
}

void heap_profile::write_pprof(std::ostream& out) const {
  detail::ostream_sink sink(out);
  detail::symbol_cache::session names(impl_->symbols());
  detail::write_pprof_to(impl_->snapshot(), impl_->rate(), names, sink);
}

void heap_profile::write_pprof(std::FILE* out) const {
  detail::file_sink sink(out);
  detail::symbol_cache::session names(impl_->symbols());
  detail::write_pprof_to(impl_->snapshot(), impl_->rate(), names, sink);
  sink.finish("memlimits::memprof::heap_profile::write_pprof");
}

void heap_profile::write_pprof(const std::string& path) const {
  detail::write_file_atomically(path, "memlimits::memprof::heap_profile::write_pprof",
                                [this](std::FILE* file) { write_pprof(file); });
}

}  // namespace memlimits::memprof
