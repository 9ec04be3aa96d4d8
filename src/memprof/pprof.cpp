// memprof/pprof.cpp — the heap profile in pprof's format (memprof/pprof.hpp):
// the protobuf encoder, gzip through zlib, the mappings of /proc/self/maps
// with their build IDs and those of objects unloaded since their frames were
// recorded, and the write path that names frames with memprof/symbolizer.hpp.
// Layer 6.
#include "memprof/pprof.hpp"

#include <elf.h>
#include <link.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <new>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "memprof/symbolizer.hpp"

namespace memlimits::memprof::detail {
namespace {

// ---- protobuf wire format ----

enum wire_type : std::uint32_t { wire_varint = 0, wire_bytes = 2 };

// Appends fields to a string. proto3 leaves scalar fields at their default
// (0, false, "") out, and so does this writer; repeated scalars are packed.
class proto_writer {
 public:
  explicit proto_writer(std::string& out) : out_(out) {}

  void varint(std::uint64_t value) {
    while (value >= 0x80) {
      out_ += static_cast<char>((value & 0x7F) | 0x80);
      value >>= 7;
    }
    out_ += static_cast<char>(value);
  }
  void key(std::uint32_t field, wire_type type) {
    varint((static_cast<std::uint64_t>(field) << 3) | type);
  }
  void uint(std::uint32_t field, std::uint64_t value) {
    if (value == 0) return;
    key(field, wire_varint);
    varint(value);
  }
  // int64 (not sint64): two's complement, so a negative value takes 10 bytes.
  void sint(std::uint32_t field, std::int64_t value) {
    uint(field, static_cast<std::uint64_t>(value));
  }
  void boolean(std::uint32_t field, bool value) { uint(field, value ? 1 : 0); }
  // Always written, also when empty: string_table[0] is "".
  void bytes(std::uint32_t field, std::string_view data) {
    key(field, wire_bytes);
    varint(data.size());
    out_.append(data);
  }
  template <class Integer>
  void packed(std::uint32_t field, std::span<const Integer> values) {
    if (values.empty()) return;
    std::size_t length = 0;
    for (Integer v : values) length += varint_size(static_cast<std::uint64_t>(v));
    key(field, wire_bytes);
    varint(length);
    for (Integer v : values) varint(static_cast<std::uint64_t>(v));
  }

  static std::size_t varint_size(std::uint64_t value) {
    std::size_t n = 1;
    while (value >= 0x80) {
      value >>= 7;
      ++n;
    }
    return n;
  }

 private:
  std::string& out_;
};

// Field numbers of profile.proto.
namespace profile_field {
constexpr std::uint32_t sample_type = 1, sample = 2, mapping = 3, location = 4, function = 5,
                        string_table = 6, time_nanos = 9, period_type = 11, period = 12,
                        comment = 13, default_sample_type = 14;
}
namespace value_type_field {
constexpr std::uint32_t type = 1, unit = 2;
}
namespace sample_field {
constexpr std::uint32_t location_id = 1, value = 2;
}
namespace mapping_field {
constexpr std::uint32_t id = 1, memory_start = 2, memory_limit = 3, file_offset = 4, filename = 5,
                        build_id = 6, has_functions = 7, has_filenames = 8, has_line_numbers = 9,
                        has_inline_frames = 10;
}
namespace location_field {
constexpr std::uint32_t id = 1, mapping_id = 2, address = 3, line = 4;
}
namespace line_field {
constexpr std::uint32_t function_id = 1, line = 2;
}
namespace function_field {
constexpr std::uint32_t id = 1, name = 2, system_name = 3, filename = 4, start_line = 5;
}

// ---- the profile's tables ----

// Strings by index; index 0 is "".
class string_table {
 public:
  string_table() { index(""); }
  std::int64_t index(std::string_view s) {
    if (const auto it = indices_.find(s); it != indices_.end()) return it->second;
    const std::string& stored = strings_.emplace_back(s);  // a deque: stable references
    const auto i = static_cast<std::int64_t>(strings_.size() - 1);
    indices_.emplace(stored, i);
    return i;
  }
  const std::deque<std::string>& strings() const noexcept { return strings_; }

 private:
  std::deque<std::string> strings_;
  std::unordered_map<std::string_view, std::int64_t> indices_;
};

struct line_entry {
  std::uint64_t function_id;
  std::int64_t line;
};

struct location_entry {
  std::uint64_t mapping_id;  // 0: none
  std::uint64_t address;
  std::vector<line_entry> lines;
};

struct function_entry {
  std::int64_t name, system_name, filename, start_line;
};

struct mapping_flags {
  bool functions = false, filenames = false, line_numbers = false, inline_frames = false;
};

std::string hex(std::uint64_t value) {
  char text[2 + 16 + 1];
  std::snprintf(text, sizeof text, "0x%" PRIx64, value);
  return text;
}

std::string_view base_name(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Builds the tables from the stacks, then writes them in field order.
class profile_builder {
 public:
  profile_builder(std::span<const pprof_mapping> mappings, const pprof_pinned_symbolizer& symbolize)
      : mappings_(mappings), symbolize_(symbolize), flags_(mappings.size()) {
    by_start_.reserve(mappings.size());
    for (std::size_t i = 0; i < mappings.size(); ++i) by_start_.push_back(i);
    std::sort(by_start_.begin(), by_start_.end(), [&](std::size_t a, std::size_t b) {
      return mappings_[a].start < mappings_[b].start;
    });
  }

  // Sample.location_id of a stack, innermost first; pinned: per frame, as
  // encode_profile's (empty: all 0).
  std::vector<std::uint64_t> locations_of(const heap_stack& s,
                                          std::span<const std::uint32_t> pinned) {
    std::vector<std::uint64_t> ids;
    if (s.frames.empty()) {
      ids.push_back(unrecorded_location());
      return ids;
    }
    ids.reserve(s.frames.size());
    for (std::size_t i = 0; i < s.frames.size(); ++i) {
      const std::uint32_t pin = i < pinned.size() && pinned[i] <= mappings_.size() ? pinned[i] : 0;
      ids.push_back(location_of(reinterpret_cast<std::uintptr_t>(s.frames[i]), pin));
    }
    return ids;
  }

  string_table& strings() noexcept { return strings_; }

  void write_tables(proto_writer& out) {
    std::string message;
    std::string line;
    for (std::size_t i = 0; i < mappings_.size(); ++i) {
      const pprof_mapping& m = mappings_[i];
      message.clear();
      proto_writer w(message);
      w.uint(mapping_field::id, i + 1);
      w.uint(mapping_field::memory_start, m.start);
      w.uint(mapping_field::memory_limit, m.limit);
      w.uint(mapping_field::file_offset, m.file_offset);
      w.sint(mapping_field::filename, strings_.index(m.file));
      w.sint(mapping_field::build_id, strings_.index(m.build_id));
      w.boolean(mapping_field::has_functions, flags_[i].functions);
      w.boolean(mapping_field::has_filenames, flags_[i].filenames);
      w.boolean(mapping_field::has_line_numbers, flags_[i].line_numbers);
      w.boolean(mapping_field::has_inline_frames, flags_[i].inline_frames);
      out.bytes(profile_field::mapping, message);
    }
    for (std::size_t i = 0; i < locations_.size(); ++i) {
      const location_entry& l = locations_[i];
      message.clear();
      proto_writer w(message);
      w.uint(location_field::id, i + 1);
      w.uint(location_field::mapping_id, l.mapping_id);
      w.uint(location_field::address, l.address);
      for (const line_entry& e : l.lines) {
        line.clear();
        proto_writer lw(line);
        lw.uint(line_field::function_id, e.function_id);
        lw.sint(line_field::line, e.line);
        w.bytes(location_field::line, line);
      }
      out.bytes(profile_field::location, message);
    }
    for (std::size_t i = 0; i < functions_.size(); ++i) {
      const function_entry& f = functions_[i];
      message.clear();
      proto_writer w(message);
      w.uint(function_field::id, i + 1);
      w.sint(function_field::name, f.name);
      w.sint(function_field::system_name, f.system_name);
      w.sint(function_field::filename, f.filename);
      w.sint(function_field::start_line, f.start_line);
      out.bytes(profile_field::function, message);
    }
  }

 private:
  std::uint64_t unrecorded_location() {
    if (unrecorded_ == 0) {
      location_entry l{0, 0, {}};
      l.lines.push_back({function_id(pprof_unrecorded_function, "", "", 0), 0});
      locations_.push_back(std::move(l));
      unrecorded_ = locations_.size();
    }
    return unrecorded_;
  }

  std::uint64_t location_of(std::uintptr_t return_address, std::uint32_t pinned) {
    auto [it, inserted] = location_ids_.try_emplace({return_address, pinned}, 0);
    if (!inserted) return it->second;
    // The return address follows the call: address - 1 lies in the call
    // instruction, in the caller's function and at the line of the call
    // (also when the call is the last instruction of its function).
    const std::uintptr_t pc = return_address == 0 ? 0 : return_address - 1;
    const std::size_t mapping = pinned != 0 ? pinned - 1 : pc == 0 ? npos : mapping_of(pc);
    location_entry l{mapping == npos ? 0 : mapping + 1, pc, {}};
    if (pc != 0) {
      const pprof_symbols symbols = symbolize_(pc, pinned);
      mapping_flags found;
      for (const pprof_line& line : symbols.lines) {
        std::string_view name = line.function.empty() ? line.system_name : line.function;
        std::string fallback;
        if (name.empty()) {
          fallback = unknown_name(symbols, mapping, pc);
          name = fallback;
        } else {
          found.functions = true;
        }
        found.filenames |= !line.file.empty();
        found.line_numbers |= line.line > 0;
        l.lines.push_back(
            {function_id(name, line.system_name, line.file, line.start_line), line.line});
      }
      found.inline_frames = symbols.lines.size() > 1;
      if (symbols.lines.empty() && (!symbols.module.empty() || mapping != npos)) {
        l.lines.push_back({function_id(unknown_name(symbols, mapping, pc), "", "", 0), 0});
      }
      if (mapping != npos) {
        mapping_flags& f = flags_[mapping];
        f.functions |= found.functions;
        f.filenames |= found.filenames;
        f.line_numbers |= found.line_numbers;
        f.inline_frames |= found.inline_frames;
      }
    }
    locations_.push_back(std::move(l));
    it->second = locations_.size();
    return it->second;
  }

  // "module+0xoffset": the offset from the module's load bias, the address
  // that addr2line and the object's symbol table use; else from the
  // mapping's start, counted in the file.
  std::string unknown_name(const pprof_symbols& symbols, std::size_t mapping,
                           std::uintptr_t pc) const {
    if (!symbols.module.empty()) {
      return std::string(base_name(symbols.module)) + "+" + hex(pc - symbols.module_base);
    }
    if (mapping != npos) {
      const pprof_mapping& m = mappings_[mapping];
      return std::string(base_name(m.file)) + "+" + hex(pc - m.start + m.file_offset);
    }
    return hex(pc);
  }

  std::uint64_t function_id(std::string_view name, std::string_view system_name,
                            std::string_view file, std::int64_t start_line) {
    const function_entry f{strings_.index(name), strings_.index(system_name), strings_.index(file),
                           start_line};
    auto [it, inserted] =
        function_ids_.try_emplace(std::make_tuple(f.name, f.system_name, f.filename), 0);
    if (inserted) {
      functions_.push_back(f);
      it->second = functions_.size();
    }
    return it->second;
  }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::size_t mapping_of(std::uintptr_t pc) const {
    const auto after = std::upper_bound(
        by_start_.begin(), by_start_.end(), pc,
        [&](std::uintptr_t address, std::size_t i) { return address < mappings_[i].start; });
    if (after == by_start_.begin()) return npos;
    const std::size_t i = *std::prev(after);
    return pc < mappings_[i].limit ? i : npos;
  }

  // A Location per return address and pinned mapping.
  struct location_key {
    std::uintptr_t return_address;
    std::uint32_t pinned;
    bool operator==(const location_key&) const = default;
  };
  struct location_hash {
    std::size_t operator()(const location_key& k) const noexcept {
      return std::hash<std::uintptr_t>()(k.return_address ^
                                         (static_cast<std::uintptr_t>(k.pinned) << 47));
    }
  };

  std::span<const pprof_mapping> mappings_;
  const pprof_pinned_symbolizer& symbolize_;
  std::vector<mapping_flags> flags_;
  std::vector<std::size_t> by_start_;
  string_table strings_;
  std::vector<location_entry> locations_;
  std::unordered_map<location_key, std::uint64_t, location_hash> location_ids_;
  std::uint64_t unrecorded_ = 0;
  std::vector<function_entry> functions_;
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::uint64_t> function_ids_;
};

std::string rate_comment(double rate) {
  char text[64];
  std::snprintf(text, sizeof text, "memlimits heap profile, sampling rate %g", rate);
  return text;
}

}  // namespace

std::string encode_profile(std::span<const heap_stack> stacks, double rate,
                           const pprof_symbolizer& symbolize,
                           std::span<const pprof_mapping> mappings, std::int64_t time_nanos) {
  return encode_profile(
      stacks, {}, rate, [&symbolize](std::uintptr_t pc, std::uint32_t) { return symbolize(pc); },
      mappings, time_nanos);
}

std::string encode_profile(std::span<const heap_stack> stacks,
                           std::span<const std::vector<std::uint32_t>> pinned, double rate,
                           const pprof_pinned_symbolizer& symbolize,
                           std::span<const pprof_mapping> mappings, std::int64_t time_nanos) {
  profile_builder builder(mappings, symbolize);
  string_table& strings = builder.strings();
  // Sample types in the order of Go's and tcmalloc's heap profiles: objects
  // first, space last, so that pprof shows inuse_space when asked nothing.
  const std::int64_t inuse_objects = strings.index("inuse_objects");
  const std::int64_t count = strings.index("count");
  const std::int64_t inuse_space = strings.index("inuse_space");
  const std::int64_t bytes = strings.index("bytes");
  const std::int64_t space = strings.index("space");
  const std::int64_t comment = strings.index(rate_comment(rate));

  std::string out;
  out.reserve(64 + stacks.size() * 48);
  proto_writer w(out);
  std::string message;
  const auto value_type = [&](std::uint32_t field, std::int64_t type, std::int64_t unit) {
    message.clear();
    proto_writer m(message);
    m.sint(value_type_field::type, type);
    m.sint(value_type_field::unit, unit);
    w.bytes(field, message);
  };
  value_type(profile_field::sample_type, inuse_objects, count);
  value_type(profile_field::sample_type, inuse_space, bytes);

  for (std::size_t i = 0; i < stacks.size(); ++i) {
    const heap_stack& s = stacks[i];
    const std::vector<std::uint64_t> ids = builder.locations_of(
        s, i < pinned.size() ? std::span<const std::uint32_t>(pinned[i])
                             : std::span<const std::uint32_t>());
    const std::int64_t values[] = {s.live_objects, s.live_bytes};
    message.clear();
    proto_writer m(message);
    m.packed(sample_field::location_id, std::span<const std::uint64_t>(ids));
    m.packed(sample_field::value, std::span<const std::int64_t>(values));
    w.bytes(profile_field::sample, message);
  }
  builder.write_tables(w);  // interns the mappings' file names and build IDs
  for (const std::string& s : strings.strings()) w.bytes(profile_field::string_table, s);
  w.sint(profile_field::time_nanos, time_nanos);
  value_type(profile_field::period_type, space, bytes);
  w.sint(profile_field::period, std::llround(8.0 / rate));
  w.packed(profile_field::comment, std::span<const std::int64_t>(&comment, 1));
  w.sint(profile_field::default_sample_type, inuse_space);
  return out;
}

// ---- gzip ----

namespace {

class string_sink final : public output_sink {
 public:
  explicit string_sink(std::string& out) : out_(out) {}
  void put(std::string_view data) override { out_.append(data); }

 private:
  std::string& out_;
};

}  // namespace

void gzip_to(std::string_view data, output_sink& out) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer around the deflate stream.
  // Level 1, as Go's runtime/pprof: profiles are written by running
  // programs, and read rarely; it costs a few percent of size.
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::bad_alloc();
  }
  struct end_stream {
    z_stream& z;
    ~end_stream() { deflateEnd(&z); }
  } ender{z};
  constexpr std::size_t chunk = 64 * 1024;
  std::string buffer(chunk, '\0');
  const auto* next = reinterpret_cast<const Bytef*>(data.data());
  std::size_t left = data.size();
  int flush = Z_NO_FLUSH;
  do {
    // avail_in is 32 bits: feed at most 1 GiB at a time.
    if (z.avail_in == 0 && left > 0) {
      const std::size_t n = std::min<std::size_t>(left, std::size_t{1} << 30);
      z.next_in = const_cast<Bytef*>(next);
      z.avail_in = static_cast<uInt>(n);
      next += n;
      left -= n;
    }
    flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    z.next_out = reinterpret_cast<Bytef*>(buffer.data());
    z.avail_out = static_cast<uInt>(chunk);
    const int status = deflate(&z, flush);
    if (status == Z_STREAM_ERROR) throw std::bad_alloc();  // not reached with valid state
    const std::size_t produced = chunk - z.avail_out;
    if (produced > 0) out.put(std::string_view(buffer.data(), produced));
    if (status == Z_STREAM_END) break;
  } while (true);
}

std::string gzip(std::string_view data) {
  std::string out;
  string_sink sink(out);
  gzip_to(data, sink);
  return out;
}

// ---- mappings ----

namespace {

// A loaded object as dl_iterate_phdr reports it.
struct loaded_object {
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> segments;  // PT_LOAD [start, end)
  std::string build_id;
  bool main_program;
};

std::string hex_bytes(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string text;
  text.reserve(2 * bytes.size());
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    text += digits[byte >> 4];
    text += digits[byte & 0xF];
  }
  return text;
}

int collect_object(dl_phdr_info* info, std::size_t, void* data) {
  auto& objects = *static_cast<std::vector<loaded_object>*>(data);
  loaded_object object{{}, hex_bytes(loaded_build_id(*info)), objects.empty()};  // main first
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[i];
    const std::uintptr_t start = info->dlpi_addr + segment.p_vaddr;
    if (segment.p_type == PT_LOAD) object.segments.emplace_back(start, start + segment.p_memsz);
  }
  objects.push_back(std::move(object));
  return 0;
}

// The object one of whose loaded segments overlaps [start, limit).
const loaded_object* object_at(const std::vector<loaded_object>& objects, std::uintptr_t start,
                               std::uintptr_t limit) {
  for (const loaded_object& o : objects) {
    for (const auto& [low, high] : o.segments) {
      // Overlap rather than containment: a segment need not start on a page.
      if (start < high && low < limit) return &o;
    }
  }
  return nullptr;
}

}  // namespace

std::vector<pprof_mapping> read_mappings() {
  std::vector<pprof_mapping> mappings;
  std::FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return mappings;
  std::vector<bool> main_program;
  std::vector<loaded_object> objects;
  dl_iterate_phdr(&collect_object, &objects);

  char* line = nullptr;
  std::size_t capacity = 0;
  while (::getline(&line, &capacity, maps) > 0) {
    // start-limit perms offset dev inode path
    unsigned long long start = 0, limit = 0, offset = 0;
    char perms[8] = {};
    int path_at = 0;
    if (std::sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &start, &limit, perms, &offset,
                    &path_at) < 4 ||
        path_at == 0) {
      continue;
    }
    std::string_view path(line + path_at);
    while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.remove_suffix(1);
    if (std::strcmp(perms, "r-xp") != 0 || path.empty() || path.front() != '/') continue;
    const loaded_object* object =
        object_at(objects, static_cast<std::uintptr_t>(start), static_cast<std::uintptr_t>(limit));
    mappings.push_back({start, limit, offset, std::string(path),
                        object != nullptr ? object->build_id : std::string()});
    main_program.push_back(object != nullptr && object->main_program);
  }
  std::free(line);
  std::fclose(maps);
  // The main program's first (pprof takes mapping 1 for it), then by
  // address (the order of the file already).
  std::vector<pprof_mapping> ordered;
  ordered.reserve(mappings.size());
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t i = 0; i < mappings.size(); ++i) {
      if (main_program[i] == (pass == 0)) ordered.push_back(std::move(mappings[i]));
    }
  }
  return ordered;
}

// ---- the write path ----

namespace {

// The symbolizer's answer in the encoder's terms.
pprof_symbols symbols_of(const symbolized& s) {
  pprof_symbols out;
  out.module = s.module;
  out.module_base = s.module_base;
  out.lines.reserve(s.frames.size());
  for (const source_location& frame : s.frames) {
    out.lines.push_back(
        {frame.function, frame.linkage_name, frame.file, static_cast<std::int64_t>(frame.line), 0});
  }
  return out;
}

}  // namespace

pprof_mapping unloaded_mapping(const recorded_module& m) {
  if (m.code_start < m.code_end) {
    return {m.code_start, m.code_end, m.code_offset, m.path, hex_bytes(m.build_id)};
  }
  return {m.start, m.end, 0, m.path, hex_bytes(m.build_id)};
}

void write_pprof_to(const std::vector<heap_stack>& stacks,
                    const std::vector<frame_origins>& origins, double rate,
                    symbol_cache::session& names, output_sink& out) {
  std::vector<pprof_mapping> mappings = read_mappings();
  // The unloaded objects' mappings, after the loaded ones, each once.
  std::vector<const recorded_module*> pinned_modules;  // by pinned - 1 - loaded
  std::unordered_map<const recorded_module*, std::uint32_t> pins;
  std::vector<std::vector<std::uint32_t>> pinned(std::min(stacks.size(), origins.size()));
  const std::size_t loaded = mappings.size();
  for (std::size_t i = 0; i < pinned.size(); ++i) {
    const frame_origins& frames = origins[i];
    if (std::none_of(frames.begin(), frames.end(), [](const auto* m) { return m != nullptr; })) {
      continue;
    }
    pinned[i].assign(frames.size(), 0);
    for (std::size_t j = 0; j < frames.size(); ++j) {
      if (frames[j] == nullptr) continue;
      auto [it, inserted] = pins.try_emplace(frames[j], 0);
      if (inserted) {
        mappings.push_back(unloaded_mapping(*frames[j]));
        pinned_modules.push_back(frames[j]);
        it->second = static_cast<std::uint32_t>(mappings.size());
      }
      pinned[i][j] = it->second;
    }
  }
  const pprof_pinned_symbolizer symbolize = [&](std::uintptr_t pc, std::uint32_t pin) {
    if (pin > loaded) return symbols_of(names.symbolize_in(pc, *pinned_modules[pin - 1 - loaded]));
    return symbols_of(names.symbolize(pc));
  };
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  const std::string encoded =
      encode_profile(stacks, pinned, rate, symbolize, mappings, now.count());
  gzip_to(encoded, out);
}

}  // namespace memlimits::memprof::detail
