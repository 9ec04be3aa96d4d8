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
//
// The objects of the frames. A thread that inserts a new stack first looks
// up the object of each frame in the profile's module registry
// (memprof/module_registry.hpp: lock-free, no allocation; adds the object's
// record if new), and stores the records' indices beside the frames, before
// it publishes the key; a stack already in the table costs nothing more.
// The writers name a frame whose object was unloaded (or moved) since from
// that record and the object's file; the others from what is loaded.
// What stays inexact: a stack is found by its return addresses alone, so if
// an object is unloaded and another file (or a rebuilt one) is later loaded
// over the same addresses, a stack of the newcomer whose every return
// address equals one of a stack recorded before counts in that older stack,
// and is named from the older object. The same file loaded again at the
// same place names the same functions, so its stacks merge rightly.
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
#include "memprof/module_registry.hpp"
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

std::string demangled(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> name(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

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
      std::string name = demangled(info.dli_sname);
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

// The frame of a stack being written: its return address, and the record of
// its object when that object was unloaded since (null: the frame is named
// from what is loaded at its address).
struct written_frame {
  void* address;
  const detail::recorded_module* origin;
  bool operator==(const written_frame&) const = default;
};

struct written_frame_hash {
  std::size_t operator()(const written_frame& f) const noexcept {
    return std::hash<const void*>()(f.address) ^ (std::hash<const void*>()(f.origin) << 1);
  }
};

// Frame j of stacks[i], as written.
written_frame frame_of(const std::vector<heap_stack>& stacks,
                       const std::vector<detail::frame_origins>& origins, std::size_t i,
                       std::size_t j) {
  const detail::recorded_module* origin =
      i < origins.size() && j < origins[i].size() ? origins[i][j] : nullptr;
  return {stacks[i].frames[j], origin};
}

// Names the frames of a write, once per return address (stacks share most
// of their frames), from the symbolizer: each function at the address, the
// inlined ones first, as "name" plus where in it, the way `style` asks. A
// frame whose object was unloaded since is named from that object's file.
class frame_namer {
 public:
  frame_namer(const frame_style& style, detail::symbol_cache& symbols)
      : style_(style), symbols_(symbols) {}

  // One entry per function at the return address, innermost (inlined)
  // first: for folded stacks "name@file:line", for the top table
  // "name at file:line", "[inlined]" after a function inlined into the
  // next; without a line, the call's offset in its function when the symbol
  // table has it ("f(int)+0x1c"), or the object and offset.
  const std::vector<std::string>& folded(written_frame frame) {
    return names(frame, folded_, true);
  }
  const std::vector<std::string>& lines(written_frame frame) { return names(frame, lines_, false); }

 private:
  using cache = std::unordered_map<written_frame, std::vector<std::string>, written_frame_hash>;

  const std::vector<std::string>& names(written_frame frame, cache& names, bool folded) {
    auto [it, inserted] = names.try_emplace(frame);
    if (inserted) it->second = describe_frames(frame, folded);
    return it->second;
  }

  // The top table's name of a call without a line: its function and its
  // offset in it ("f(int)+0x1c", which tells two calls in one function
  // apart), from the symbol table the symbolizer read, else from the
  // dynamic loader (dladdr) for an object still loaded, else the object and
  // offset.
  static std::string call_site(written_frame frame, const detail::symbolized& s) {
    const auto address = reinterpret_cast<std::uintptr_t>(frame.address);
    if (!s.symbol.empty() && s.symbol_start != 0 && s.symbol_start < address) {
      return demangled(s.symbol.c_str()) + "+" + hex(address - s.symbol_start);
    }
    if (frame.origin == nullptr) return describe(frame.address, /*call_site=*/true);
    return detail::module_offset_name(s, address);
  }

  std::vector<std::string> describe_frames(written_frame frame, bool folded) {
    const auto address = reinterpret_cast<std::uintptr_t>(frame.address);
    std::vector<std::string> out;
    if (address == 0) {
      out.emplace_back("0x0");
      return out;
    }
    // address - 1 lies in the call instruction: the function that made the
    // call, also when the call is the last instruction of its function.
    const detail::symbolized& s = frame.origin != nullptr
                                      ? symbols_.symbolize_in(address - 1, *frame.origin)
                                      : symbols_.symbolize(address - 1);
    if (s.frames.empty()) {
      out.push_back(folded ? detail::module_offset_name(s, address - 1) : call_site(frame, s));
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
        name = call_site(frame, s);
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

void write_folded_to(const std::vector<heap_stack>& stacks,
                     const std::vector<detail::frame_origins>& origins, const frame_style& style,
                     detail::symbol_cache& symbols, detail::output_sink& out) {
  // Stacks of distinct return addresses may have the same names (two calls
  // on one line, one call site of an object loaded at two places): one line
  // per distinct named stack.
  frame_namer name(style, symbols);
  std::map<std::string, std::int64_t> lines;
  for (std::size_t k = 0; k < stacks.size(); ++k) {
    const heap_stack& s = stacks[k];
    std::string line;
    if (s.frames.empty()) {
      line = unrecorded_frame;
    } else {
      for (std::size_t i = s.frames.size(); i-- > 0;) {  // outermost first
        const std::vector<std::string>& functions = name.folded(frame_of(stacks, origins, k, i));
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

void write_top_to(const std::vector<heap_stack>& stacks,
                  const std::vector<detail::frame_origins>& origins, double rate, std::size_t top,
                  const frame_style& style, detail::symbol_cache& symbols,
                  detail::output_sink& out) {
  const std::int64_t total = total_bytes(stacks);
  std::uint64_t samples = 0;
  for (const heap_stack& s : stacks) samples += s.samples;
  // Stacks of distinct return addresses whose frames have the same names
  // (two calls on one line, one call site of an object loaded at two
  // places) are one row.
  struct row {
    std::vector<std::string> lines;  // innermost first
    std::int64_t bytes = 0;
    std::uint64_t samples = 0;
  };
  std::vector<row> rows;
  {
    frame_namer name(style, symbols);
    std::unordered_map<std::string, std::size_t> row_of;
    for (std::size_t k = 0; k < stacks.size(); ++k) {
      const heap_stack& s = stacks[k];
      std::vector<std::string> lines;
      if (s.frames.empty()) lines.emplace_back(unrecorded_frame);
      for (std::size_t i = 0; i < s.frames.size(); ++i) {
        for (const std::string& function : name.lines(frame_of(stacks, origins, k, i))) {
          lines.push_back(function);
        }
      }
      std::string key;
      for (const std::string& l : lines) (key += l) += '\n';
      auto [it, inserted] = row_of.try_emplace(std::move(key), rows.size());
      if (inserted) rows.push_back({std::move(lines), 0, 0});
      rows[it->second].bytes += s.live_bytes;
      rows[it->second].samples += s.samples;
    }
  }
  std::stable_sort(rows.begin(), rows.end(), [](const row& a, const row& b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    return a.samples > b.samples;
  });
  out.put(
      format("memlimits heap profile: %s live (%lld bytes, estimated from %llu samples at "
             "rate %g), %zu stacks\n",
             readable_bytes(static_cast<double>(total)).c_str(), static_cast<long long>(total),
             static_cast<unsigned long long>(samples), rate, rows.size()));
  if (rows.empty()) return;
  out.put(format("%5s %16s %7s %9s  %s\n", "rank", "live bytes", "share", "samples",
                 "callstack, innermost frame first"));
  static constexpr std::string_view indent = "                                         ";  // 41
  const std::size_t shown = std::min(top, rows.size());
  for (std::size_t rank = 0; rank < shown; ++rank) {
    const row& r = rows[rank];
    const double share =
        total > 0 ? 100.0 * static_cast<double>(r.bytes) / static_cast<double>(total) : 0.0;
    out.put(format("%5zu %16lld %6.2f%% %9llu  ", rank + 1, static_cast<long long>(r.bytes), share,
                   static_cast<unsigned long long>(r.samples)));
    bool first = true;
    for (const std::string& function : r.lines) {
      if (!first) {
        out.put(indent);
        out.put("<- ");
      }
      first = false;
      out.put(function);
      out.put("\n");
    }
  }
  if (shown < rows.size()) {
    std::int64_t rest = 0;
    for (std::size_t i = shown; i < rows.size(); ++i) rest += rows[i].bytes;
    out.put(
        format("%zu more stacks hold %lld bytes (%.2f%%)\n", rows.size() - shown,
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
        table_(capacity_, depth, detail::module_registry::supported),
        entries_(table_.entries()),
        frames_(table_.frames()),
        modules_(table_.modules()),
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
    std::vector<recorded_stack> recorded = recorded_snapshot();
    std::vector<heap_stack> stacks;
    stacks.reserve(recorded.size());
    for (recorded_stack& r : recorded) stacks.push_back(std::move(r.stack));
    return stacks;
  }

  // What a write reads: a snapshot, and which of its frames were in objects
  // unloaded since (`unloaded` owns the records `origins` point at).
  struct write_input {
    std::vector<heap_stack> stacks;
    std::vector<detail::frame_origins> origins;  // per stack
    detail::unloaded_modules unloaded;
  };

  write_input for_write() const {
    write_input in;
    std::vector<recorded_stack> recorded = recorded_snapshot();
    // After the snapshot: the records of its entries were published before
    // the entries were.
    in.unloaded = detail::unloaded_modules(registry_);
    in.stacks.reserve(recorded.size());
    in.origins.resize(recorded.size());
    for (std::size_t i = 0; i < recorded.size(); ++i) {
      const recorded_stack& r = recorded[i];
      if (r.modules != nullptr) {
        for (std::size_t j = 0; j < r.stack.frames.size(); ++j) {
          const detail::recorded_module* origin = in.unloaded[r.modules[j]];
          if (origin == nullptr) continue;
          in.origins[i].resize(r.stack.frames.size(), nullptr);
          in.origins[i][j] = origin;
        }
      }
      in.stacks.push_back(std::move(recorded[i].stack));
    }
    return in;
  }

  profile& feed() noexcept { return profile_; }
  const profile& feed() const noexcept { return profile_; }
  double rate() const noexcept { return rate_; }
  std::size_t depth() const noexcept { return depth_; }
  detail::symbol_cache& symbols() const noexcept { return symbols_; }

 private:
  // A stack of a snapshot, and per frame the registry index of its object
  // (in the table: written before the entry was published, never after).
  struct recorded_stack {
    heap_stack stack;
    const detail::module_index* modules = nullptr;  // null: none recorded
  };

  std::vector<recorded_stack> recorded_snapshot() const {
    std::vector<recorded_stack> stacks;
    const auto add = [&](std::vector<void*> frames, const detail::module_index* modules,
                         std::size_t index) {
      const counters c = counters_of(index);
      const std::int64_t live = c.samples.load(std::memory_order_relaxed);
      if (live <= 0) return;
      recorded_stack& r = stacks.emplace_back();
      r.stack.frames = std::move(frames);
      r.stack.samples = static_cast<std::uint64_t>(live);
      // In object_unit until merged.
      r.stack.live_objects = c.objects.load(std::memory_order_relaxed);
      r.modules = modules;
    };
    for (std::size_t i = 0; i < capacity_; ++i) {
      stack_entry& e = entries_[i];
      if (std::atomic_ref<std::uint64_t>(e.key).load(std::memory_order_acquire) < 2) continue;
      void* const* frames = frames_ + i * depth_;
      add(std::vector<void*>(frames, frames + e.depth),
          modules_ != nullptr ? modules_ + i * depth_ : nullptr, i);
    }
    add({}, nullptr, capacity_);
    // Merge the entries of one stack (see the file comment); two threads
    // that inserted it at once found the same objects.
    std::sort(stacks.begin(), stacks.end(), [](const recorded_stack& a, const recorded_stack& b) {
      return a.stack.frames < b.stack.frames;
    });
    std::vector<recorded_stack> merged;
    merged.reserve(stacks.size());
    for (recorded_stack& r : stacks) {
      if (!merged.empty() && merged.back().stack.frames == r.stack.frames) {
        merged.back().stack.samples += r.stack.samples;
        merged.back().stack.live_objects += r.stack.live_objects;
      } else {
        merged.push_back(std::move(r));
      }
    }
    for (recorded_stack& r : merged) {
      r.stack.live_bytes = core::sample_weight_bytes(r.stack.samples, rate_);
      r.stack.live_objects = std::llround(static_cast<double>(r.stack.live_objects) / object_unit);
    }
    std::stable_sort(merged.begin(), merged.end(),
                     [](const recorded_stack& a, const recorded_stack& b) {
                       if (a.stack.live_bytes != b.stack.live_bytes) {
                         return a.stack.live_bytes > b.stack.live_bytes;
                       }
                       return a.stack.samples > b.stack.samples;
                     });
    return merged;
  }

  // The pages of the table: capacity entries, then capacity * depth frames,
  // then (with_modules) capacity * depth registry indices.
  class mapping {
   public:
    mapping(std::size_t capacity, std::size_t depth, bool with_modules)
        : frames_offset_(capacity * sizeof(stack_entry)),
          modules_offset_(frames_offset_ + capacity * depth * sizeof(void*)),
          bytes_(modules_offset_ +
                 (with_modules ? capacity * depth * sizeof(detail::module_index) : 0)),
          with_modules_(with_modules),
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
    detail::module_index* modules() const noexcept {
      if (!with_modules_) return nullptr;
      return reinterpret_cast<detail::module_index*>(static_cast<char*>(pages_) +
                                                     modules_offset_);
    }

   private:
    std::size_t frames_offset_;
    std::size_t modules_offset_;
    std::size_t bytes_;
    bool with_modules_;
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
    // The frames' objects: looked up once the stack is known to be new,
    // before an entry is claimed, so that an entry stays busy only while
    // it is copied.
    detail::module_index modules[profile::max_callstack_size];
    bool modules_found = false;
    for (std::size_t probe = 0; probe < capacity_; ++probe) {
      const std::size_t index = (static_cast<std::size_t>(hash) + probe) & mask;
      stack_entry& e = entries_[index];
      std::atomic_ref<std::uint64_t> key(e.key);
      std::uint64_t seen = key.load(std::memory_order_acquire);
      if (seen == key_empty) {
        if (used_.load(std::memory_order_relaxed) >= limit_) return capacity_;
        if (modules_ != nullptr && !modules_found) {
          registry_.intern(frames, n, modules);
          modules_found = true;
        }
        if (key.compare_exchange_strong(seen, key_busy, std::memory_order_acquire)) {
          used_.fetch_add(1, std::memory_order_relaxed);
          std::copy_n(frames, n, frames_ + index * depth_);
          if (modules_ != nullptr) std::copy_n(modules, n, modules_ + index * depth_);
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
  detail::module_registry registry_;  // the objects of the frames
  mapping table_;
  stack_entry* entries_;
  void** frames_;
  detail::module_index* modules_;  // null when the registry is not supported
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
  const impl::write_input in = impl_->for_write();
  write_folded_to(in.stacks, in.origins, style, impl_->symbols(), sink);
}

void heap_profile::write_folded(std::FILE* out, const frame_style& style) const {
  detail::file_sink sink(out);
  const impl::write_input in = impl_->for_write();
  write_folded_to(in.stacks, in.origins, style, impl_->symbols(), sink);
  sink.finish("memlimits::memprof::heap_profile::write_folded");
}

void heap_profile::write_folded(const std::string& path, const frame_style& style) const {
  detail::write_file_atomically(path, "memlimits::memprof::heap_profile::write_folded",
                                [this, &style](std::FILE* file) { write_folded(file, style); });
}

void heap_profile::write_top(std::ostream& out, std::size_t top, const frame_style& style) const {
  detail::ostream_sink sink(out);
  const impl::write_input in = impl_->for_write();
  write_top_to(in.stacks, in.origins, impl_->rate(), top, style, impl_->symbols(), sink);
}

void heap_profile::write_top(std::FILE* out, std::size_t top, const frame_style& style) const {
  detail::file_sink sink(out);
  const impl::write_input in = impl_->for_write();
  write_top_to(in.stacks, in.origins, impl_->rate(), top, style, impl_->symbols(), sink);
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
  const impl::write_input in = impl_->for_write();
  detail::write_pprof_to(in.stacks, in.origins, impl_->rate(), names, sink);
}

void heap_profile::write_pprof(std::FILE* out) const {
  detail::file_sink sink(out);
  detail::symbol_cache::session names(impl_->symbols());
  const impl::write_input in = impl_->for_write();
  detail::write_pprof_to(in.stacks, in.origins, impl_->rate(), names, sink);
  sink.finish("memlimits::memprof::heap_profile::write_pprof");
}

void heap_profile::write_pprof(const std::string& path) const {
  detail::write_file_atomically(path, "memlimits::memprof::heap_profile::write_pprof",
                                [this](std::FILE* file) { write_pprof(file); });
}

}  // namespace memlimits::memprof
