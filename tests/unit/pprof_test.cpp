// heap_profile::write_pprof and its encoder (memprof/pprof.hpp): the
// protobuf that encode_profile writes, decoded field by field with a small
// reader of the wire format written here (no protobuf library), from fake
// stacks, symbols and mappings; gzip; the mappings of the running test; the
// three overloads' files and errors; the real write path decoded; and the
// end-to-end check with `go tool pprof` on known allocation sites
// (pprof_sites.cpp), skipped when Go is not installed; and a library closed
// before the profile is written (unloadable_lib.cpp).
#include "memprof/pprof.hpp"

#include <elf.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "core/sampler.hpp"
#include "memlimits/memprof.hpp"
#include "pprof_sites.hpp"
#include "support/scratch_dir.hpp"
#include "unloadable_library.hpp"

namespace {

namespace fs = std::filesystem;
namespace sites = memlimits::pprof_sites;
using memlimits::memprof::heap_profile;
using memlimits::memprof::heap_stack;
using memlimits::memprof::detail::encode_profile;
using memlimits::memprof::detail::pprof_line;
using memlimits::memprof::detail::pprof_mapping;
using memlimits::memprof::detail::pprof_symbols;
using memlimits::testing::scratch_dir;

// ---- a minimal reader of the protobuf wire format ----

struct pb_field {
  std::uint32_t number;
  std::uint32_t wire;      // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
  std::uint64_t value;     // varint and fixed
  std::string_view bytes;  // length-delimited
};

std::uint64_t read_varint(std::string_view data, std::size_t& at) {
  std::uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (at >= data.size()) throw std::runtime_error("truncated varint");
    const auto byte = static_cast<unsigned char>(data[at++]);
    value |= static_cast<std::uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return value;
  }
  throw std::runtime_error("varint longer than 10 bytes");
}

std::vector<pb_field> parse_message(std::string_view data) {
  std::vector<pb_field> fields;
  std::size_t at = 0;
  while (at < data.size()) {
    const std::uint64_t key = read_varint(data, at);
    pb_field f{static_cast<std::uint32_t>(key >> 3), static_cast<std::uint32_t>(key & 7), 0, {}};
    if (f.number == 0) throw std::runtime_error("field number 0");
    switch (f.wire) {
      case 0:
        f.value = read_varint(data, at);
        break;
      case 1:
      case 5: {
        const std::size_t n = f.wire == 1 ? 8 : 4;
        if (data.size() - at < n) throw std::runtime_error("truncated fixed field");
        for (std::size_t i = 0; i < n; ++i) {
          f.value |= static_cast<std::uint64_t>(static_cast<unsigned char>(data[at + i]))
                     << (8 * i);
        }
        at += n;
        break;
      }
      case 2: {
        const std::uint64_t n = read_varint(data, at);
        if (n > data.size() - at) throw std::runtime_error("truncated bytes");
        f.bytes = data.substr(at, n);
        at += n;
        break;
      }
      default:
        throw std::runtime_error("bad wire type " + std::to_string(f.wire));
    }
    fields.push_back(f);
  }
  return fields;
}

// A repeated integer field, packed (wire 2) or not (wire 0) as a reader must accept.
std::vector<std::uint64_t> repeated_varints(const std::vector<pb_field>& fields,
                                            std::uint32_t number) {
  std::vector<std::uint64_t> values;
  for (const pb_field& f : fields) {
    if (f.number != number) continue;
    if (f.wire == 0) {
      values.push_back(f.value);
    } else if (f.wire == 2) {
      for (std::size_t at = 0; at < f.bytes.size();) values.push_back(read_varint(f.bytes, at));
    } else {
      throw std::runtime_error("bad wire type for a repeated varint");
    }
  }
  return values;
}

// ---- profile.proto, decoded ----

struct pb_value_type {
  std::int64_t type = 0, unit = 0;
};
struct pb_sample {
  std::vector<std::uint64_t> location_ids;
  std::vector<std::int64_t> values;
};
struct pb_mapping {
  std::uint64_t id = 0, start = 0, limit = 0, offset = 0;
  std::int64_t filename = 0, build_id = 0;
  bool has_functions = false, has_filenames = false, has_line_numbers = false,
       has_inline_frames = false;
};
struct pb_line {
  std::uint64_t function_id = 0;
  std::int64_t line = 0;
};
struct pb_location {
  std::uint64_t id = 0, mapping_id = 0, address = 0;
  std::vector<pb_line> lines;
};
struct pb_function {
  std::uint64_t id = 0;
  std::int64_t name = 0, system_name = 0, filename = 0, start_line = 0;
};
struct pb_profile {
  std::vector<pb_value_type> sample_types;
  std::vector<pb_sample> samples;
  std::vector<pb_mapping> mappings;
  std::vector<pb_location> locations;
  std::vector<pb_function> functions;
  std::vector<std::string> strings;
  std::int64_t time_nanos = 0;
  pb_value_type period_type;
  std::int64_t period = 0;
  std::vector<std::int64_t> comments;
  std::int64_t default_sample_type = 0;
  std::set<std::uint32_t> unknown_fields;

  const std::string& str(std::int64_t index) const {
    return strings.at(static_cast<std::size_t>(index));
  }
  const pb_location& location(std::uint64_t id) const {
    for (const pb_location& l : locations) {
      if (l.id == id) return l;
    }
    throw std::out_of_range("no location " + std::to_string(id));
  }
  const pb_function& function(std::uint64_t id) const {
    for (const pb_function& f : functions) {
      if (f.id == id) return f;
    }
    throw std::out_of_range("no function " + std::to_string(id));
  }
  const pb_mapping& mapping(std::uint64_t id) const {
    for (const pb_mapping& m : mappings) {
      if (m.id == id) return m;
    }
    throw std::out_of_range("no mapping " + std::to_string(id));
  }
  std::string function_name(const pb_line& l) const { return str(function(l.function_id).name); }
};

std::int64_t as_int64(std::uint64_t v) { return static_cast<std::int64_t>(v); }

pb_value_type decode_value_type(std::string_view data) {
  pb_value_type v;
  for (const pb_field& f : parse_message(data)) {
    if (f.number == 1) v.type = as_int64(f.value);
    if (f.number == 2) v.unit = as_int64(f.value);
  }
  return v;
}

pb_profile decode_profile(std::string_view data) {
  pb_profile p;
  const std::vector<pb_field> fields = parse_message(data);
  for (const pb_field& f : fields) {
    switch (f.number) {
      case 1:
        p.sample_types.push_back(decode_value_type(f.bytes));
        break;
      case 2: {
        const auto inner = parse_message(f.bytes);
        pb_sample s;
        s.location_ids = repeated_varints(inner, 1);
        for (std::uint64_t v : repeated_varints(inner, 2)) s.values.push_back(as_int64(v));
        p.samples.push_back(s);
        break;
      }
      case 3: {
        pb_mapping m;
        for (const pb_field& g : parse_message(f.bytes)) {
          switch (g.number) {
            case 1:
              m.id = g.value;
              break;
            case 2:
              m.start = g.value;
              break;
            case 3:
              m.limit = g.value;
              break;
            case 4:
              m.offset = g.value;
              break;
            case 5:
              m.filename = as_int64(g.value);
              break;
            case 6:
              m.build_id = as_int64(g.value);
              break;
            case 7:
              m.has_functions = g.value != 0;
              break;
            case 8:
              m.has_filenames = g.value != 0;
              break;
            case 9:
              m.has_line_numbers = g.value != 0;
              break;
            case 10:
              m.has_inline_frames = g.value != 0;
              break;
            default:
              p.unknown_fields.insert(300 + g.number);
          }
        }
        p.mappings.push_back(m);
        break;
      }
      case 4: {
        pb_location l;
        for (const pb_field& g : parse_message(f.bytes)) {
          switch (g.number) {
            case 1:
              l.id = g.value;
              break;
            case 2:
              l.mapping_id = g.value;
              break;
            case 3:
              l.address = g.value;
              break;
            case 4: {
              pb_line line;
              for (const pb_field& h : parse_message(g.bytes)) {
                if (h.number == 1) line.function_id = h.value;
                if (h.number == 2) line.line = as_int64(h.value);
              }
              l.lines.push_back(line);
              break;
            }
            default:
              p.unknown_fields.insert(400 + g.number);
          }
        }
        p.locations.push_back(l);
        break;
      }
      case 5: {
        pb_function fn;
        for (const pb_field& g : parse_message(f.bytes)) {
          switch (g.number) {
            case 1:
              fn.id = g.value;
              break;
            case 2:
              fn.name = as_int64(g.value);
              break;
            case 3:
              fn.system_name = as_int64(g.value);
              break;
            case 4:
              fn.filename = as_int64(g.value);
              break;
            case 5:
              fn.start_line = as_int64(g.value);
              break;
            default:
              p.unknown_fields.insert(500 + g.number);
          }
        }
        p.functions.push_back(fn);
        break;
      }
      case 6:
        p.strings.emplace_back(f.bytes);
        break;
      case 9:
        p.time_nanos = as_int64(f.value);
        break;
      case 11:
        p.period_type = decode_value_type(f.bytes);
        break;
      case 12:
        p.period = as_int64(f.value);
        break;
      case 13:
        break;  // below: packed or not
      case 14:
        p.default_sample_type = as_int64(f.value);
        break;
      default:
        p.unknown_fields.insert(f.number);
    }
  }
  for (std::uint64_t v : repeated_varints(fields, 13)) p.comments.push_back(as_int64(v));
  return p;
}

std::string inflate_all(std::string_view compressed) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) throw std::runtime_error("inflateInit2");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  z.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  char buffer[16384];
  int status = Z_OK;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buffer);
    z.avail_out = sizeof buffer;
    status = inflate(&z, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END) {
      inflateEnd(&z);
      throw std::runtime_error("inflate failed: " + std::to_string(status));
    }
    out.append(buffer, sizeof buffer - z.avail_out);
  } while (status != Z_STREAM_END);
  const bool trailing = z.avail_in != 0;
  inflateEnd(&z);
  if (trailing) throw std::runtime_error("bytes after the gzip stream");
  return out;
}

std::string read_binary(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// ---- the encoder, on fake stacks, symbols and mappings ----

// Two mappings: the "main program" [0x1000, 0x2000) with full debug
// information, a library [0x10000, 0x20000) that only its module knows, and
// one [0x30000, 0x31000) with symbol names but no lines.
const std::vector<pprof_mapping> fake_mappings = {
    {0x1000, 0x2000, 0, "/opt/app/bin/app", "0123456789abcdef0123456789abcdef01234567"},
    {0x10000, 0x20000, 0x4000, "/usr/lib/libfake.so.1", "feedface"},
    {0x30000, 0x31000, 0x1000, "/usr/lib/libnames.so", ""},
};

// Return addresses (the frames of the stacks) and what the fake symbolizer
// answers for them minus 1.
constexpr std::uintptr_t ra_alloc = 0x1101;     // in an inlined helper of main_loop
constexpr std::uintptr_t ra_alloc_2 = 0x1181;   // elsewhere in main_loop, same function
constexpr std::uintptr_t ra_main = 0x1201;      // main
constexpr std::uintptr_t ra_library = 0x10501;  // libfake.so: module only
constexpr std::uintptr_t ra_named = 0x30101;    // libnames.so: a name, no file
constexpr std::uintptr_t ra_nowhere = 0x90001;  // in no mapping, unknown

struct fake_symbolizer {
  std::map<std::uintptr_t, int> calls;
  pprof_symbols operator()(std::uintptr_t pc) {
    ++calls[pc];
    pprof_symbols s;
    switch (pc + 1) {
      case ra_alloc:
        s.module = "/opt/app/bin/app";
        s.lines = {{"helper<int>(int)", "_Z6helperIiEvi", "/src/helper.hpp", 12, 10},
                   {"main_loop()", "_Z9main_loopv", "/src/app.cpp", 40, 0}};
        break;
      case ra_alloc_2:
        s.module = "/opt/app/bin/app";
        s.lines = {{"main_loop()", "_Z9main_loopv", "/src/app.cpp", 44, 0}};
        break;
      case ra_main:
        s.module = "/opt/app/bin/app";
        s.lines = {{"main", "main", "/src/app.cpp", 60, 55}};
        break;
      case ra_library:
        s.module = "/usr/lib/libfake.so.1";
        s.module_base = 0xc000;
        break;
      case ra_named:
        s.module = "/usr/lib/libnames.so";
        s.module_base = 0x2f000;
        s.lines = {{"", "named_only", "", 0, 0}};
        break;
      default:
        break;
    }
    return s;
  }
};

heap_stack make_stack(std::vector<std::uintptr_t> frames, std::int64_t bytes, std::int64_t objects,
                      std::uint64_t samples) {
  heap_stack s;
  for (std::uintptr_t f : frames) s.frames.push_back(reinterpret_cast<void*>(f));
  s.live_bytes = bytes;
  s.live_objects = objects;
  s.samples = samples;
  return s;
}

const std::vector<heap_stack> fake_stacks = {
    make_stack({ra_alloc, ra_library, ra_main}, 8000, 10, 100),
    make_stack({ra_alloc_2, ra_main}, 4000, 3, 50),
    make_stack({ra_named, ra_nowhere, ra_main}, 800, 1, 10),
    make_stack({}, 80, 7, 1),  // the unrecorded stack
};

struct encoded_fake {
  fake_symbolizer symbols;
  pb_profile profile;
};

encoded_fake encode_fake(double rate = 0.01, std::int64_t time_nanos = 1234567890123) {
  encoded_fake e;
  const std::string bytes = encode_profile(
      fake_stacks, rate, [&e](std::uintptr_t pc) { return e.symbols(pc); }, fake_mappings,
      time_nanos);
  e.profile = decode_profile(bytes);
  return e;
}

TEST(PprofEncoding, OnlyFieldsOfProfileProto) {
  const pb_profile p = encode_fake().profile;
  EXPECT_TRUE(p.unknown_fields.empty());
}

TEST(PprofEncoding, StringTableStartsEmptyAndHoldsEachStringOnce) {
  const pb_profile p = encode_fake().profile;
  ASSERT_FALSE(p.strings.empty());
  EXPECT_EQ(p.strings[0], "");
  EXPECT_EQ(std::set<std::string>(p.strings.begin(), p.strings.end()).size(), p.strings.size());
  // Every index the profile holds is in the table.
  const auto in_table = [&](std::int64_t i) {
    return i >= 0 && static_cast<std::size_t>(i) < p.strings.size();
  };
  for (const pb_function& f : p.functions) {
    EXPECT_TRUE(in_table(f.name) && in_table(f.system_name) && in_table(f.filename));
  }
  for (const pb_mapping& m : p.mappings) EXPECT_TRUE(in_table(m.filename) && in_table(m.build_id));
}

TEST(PprofEncoding, SampleTypesPeriodDefaultTypeCommentAndTime) {
  const pb_profile p = encode_fake(0.01, 1234567890123).profile;
  ASSERT_EQ(p.sample_types.size(), 2u);
  EXPECT_EQ(p.str(p.sample_types[0].type), "inuse_objects");
  EXPECT_EQ(p.str(p.sample_types[0].unit), "count");
  EXPECT_EQ(p.str(p.sample_types[1].type), "inuse_space");
  EXPECT_EQ(p.str(p.sample_types[1].unit), "bytes");
  EXPECT_EQ(p.str(p.period_type.type), "space");
  EXPECT_EQ(p.str(p.period_type.unit), "bytes");
  EXPECT_EQ(p.period, 800);
  EXPECT_EQ(p.str(p.default_sample_type), "inuse_space");
  ASSERT_EQ(p.comments.size(), 1u);
  EXPECT_EQ(p.str(p.comments[0]), "memlimits heap profile, sampling rate 0.01");
  EXPECT_EQ(p.time_nanos, 1234567890123);
  // period = round(8 / rate).
  EXPECT_EQ(encode_fake(1.0).profile.period, 8);
  EXPECT_EQ(encode_fake(0.3).profile.period, 27);  // 26.67
  EXPECT_EQ(encode_fake(1.0 / 1024).profile.period, 8192);
  EXPECT_EQ(encode_fake(0.5, 0).profile.time_nanos, 0);
}

TEST(PprofEncoding, SamplesHoldObjectsThenBytesAndTheirLocationsInnermostFirst) {
  const encoded_fake e = encode_fake();
  const pb_profile& p = e.profile;
  ASSERT_EQ(p.samples.size(), fake_stacks.size());
  for (std::size_t i = 0; i < fake_stacks.size(); ++i) {
    const heap_stack& s = fake_stacks[i];
    const pb_sample& sample = p.samples[i];
    EXPECT_EQ(sample.values, (std::vector<std::int64_t>{s.live_objects, s.live_bytes})) << i;
    if (s.frames.empty()) {
      ASSERT_EQ(sample.location_ids.size(), 1u);
      continue;
    }
    ASSERT_EQ(sample.location_ids.size(), s.frames.size()) << i;
    for (std::size_t j = 0; j < s.frames.size(); ++j) {
      // Each location's address is its return address - 1.
      EXPECT_EQ(p.location(sample.location_ids[j]).address,
                reinterpret_cast<std::uintptr_t>(s.frames[j]) - 1);
    }
  }
  // One location per distinct return address: `main` is shared by three stacks.
  EXPECT_EQ(p.samples[0].location_ids.back(), p.samples[1].location_ids.back());
  EXPECT_EQ(p.samples[0].location_ids.back(), p.samples[2].location_ids.back());
  EXPECT_EQ(p.locations.size(), 7u);  // six addresses and the unrecorded stack
  std::set<std::uint64_t> ids;
  for (const pb_location& l : p.locations) ids.insert(l.id);
  EXPECT_EQ(ids.size(), p.locations.size());
  EXPECT_EQ(ids.count(0), 0u);
  // The symbolizer is asked once per distinct address, with address - 1.
  EXPECT_EQ(e.symbols.calls.size(), 6u);
  for (const auto& [pc, calls] : e.symbols.calls) EXPECT_EQ(calls, 1) << std::hex << pc;
}

TEST(PprofEncoding, AnInlinedLocationListsTheInlinedFunctionFirstAndItsCallerLast) {
  const pb_profile p = encode_fake().profile;
  const pb_location& l = p.location(p.samples[0].location_ids[0]);
  EXPECT_EQ(l.address, ra_alloc - 1);
  EXPECT_EQ(l.mapping_id, 1u);
  ASSERT_EQ(l.lines.size(), 2u);
  const pb_function& inner = p.function(l.lines[0].function_id);
  const pb_function& outer = p.function(l.lines[1].function_id);
  EXPECT_EQ(p.str(inner.name), "helper<int>(int)");
  EXPECT_EQ(p.str(inner.system_name), "_Z6helperIiEvi");
  EXPECT_EQ(p.str(inner.filename), "/src/helper.hpp");
  EXPECT_EQ(inner.start_line, 10);
  EXPECT_EQ(l.lines[0].line, 12);
  EXPECT_EQ(p.str(outer.name), "main_loop()");
  EXPECT_EQ(p.str(outer.filename), "/src/app.cpp");
  EXPECT_EQ(outer.start_line, 0);
  EXPECT_EQ(l.lines[1].line, 40);
}

TEST(PprofEncoding, FunctionsAreSharedByTheirNameSystemNameAndFile) {
  const pb_profile p = encode_fake().profile;
  const pb_location& first = p.location(p.samples[0].location_ids[0]);
  const pb_location& second = p.location(p.samples[1].location_ids[0]);
  ASSERT_EQ(second.lines.size(), 1u);
  // main_loop() at lines 40 (under helper) and 44: one Function, two Lines.
  EXPECT_EQ(first.lines[1].function_id, second.lines[0].function_id);
  EXPECT_EQ(second.lines[0].line, 44);
  std::set<std::tuple<std::int64_t, std::int64_t, std::int64_t>> keys;
  std::set<std::uint64_t> ids;
  for (const pb_function& f : p.functions) {
    keys.insert({f.name, f.system_name, f.filename});
    ids.insert(f.id);
  }
  EXPECT_EQ(keys.size(), p.functions.size());
  EXPECT_EQ(ids.size(), p.functions.size());
  EXPECT_EQ(ids.count(0), 0u);
}

TEST(PprofEncoding, UnknownFunctionsAreNamedByModuleAndOffsetAndUnknownAddressesStayBare) {
  const pb_profile p = encode_fake().profile;
  // Only the module known: "file+0xoffset" from the load bias.
  const pb_location& library = p.location(p.samples[0].location_ids[1]);
  EXPECT_EQ(library.mapping_id, 2u);
  ASSERT_EQ(library.lines.size(), 1u);
  EXPECT_EQ(p.function_name(library.lines[0]), "libfake.so.1+0x4500");
  EXPECT_EQ(library.lines[0].line, 0);
  // A system name without a demangled one: the system name.
  const pb_location& named = p.location(p.samples[2].location_ids[0]);
  EXPECT_EQ(named.mapping_id, 3u);
  ASSERT_EQ(named.lines.size(), 1u);
  EXPECT_EQ(p.function_name(named.lines[0]), "named_only");
  EXPECT_EQ(p.str(p.function(named.lines[0].function_id).system_name), "named_only");
  // Nothing known, in no mapping: the address alone.
  const pb_location& nowhere = p.location(p.samples[2].location_ids[1]);
  EXPECT_EQ(nowhere.address, ra_nowhere - 1);
  EXPECT_EQ(nowhere.mapping_id, 0u);
  EXPECT_TRUE(nowhere.lines.empty());
}

TEST(PprofEncoding, TheUnrecordedStackHasOneLocationWithoutAddressOrMapping) {
  const pb_profile p = encode_fake().profile;
  const pb_sample& s = p.samples.back();
  ASSERT_EQ(s.location_ids.size(), 1u);
  const pb_location& l = p.location(s.location_ids[0]);
  EXPECT_EQ(l.address, 0u);
  EXPECT_EQ(l.mapping_id, 0u);
  ASSERT_EQ(l.lines.size(), 1u);
  EXPECT_EQ(p.function_name(l.lines[0]), "[memlimits:unrecorded_stack]");
}

TEST(PprofEncoding, MappingsKeepTheirOrderAndSayWhatTheirLocationsGot) {
  const pb_profile p = encode_fake().profile;
  ASSERT_EQ(p.mappings.size(), fake_mappings.size());
  for (std::size_t i = 0; i < fake_mappings.size(); ++i) {
    const pb_mapping& m = p.mappings[i];
    EXPECT_EQ(m.id, i + 1);
    EXPECT_EQ(m.start, fake_mappings[i].start);
    EXPECT_EQ(m.limit, fake_mappings[i].limit);
    EXPECT_EQ(m.offset, fake_mappings[i].file_offset);
    EXPECT_EQ(p.str(m.filename), fake_mappings[i].file);
    EXPECT_EQ(p.str(m.build_id), fake_mappings[i].build_id);
  }
  // The main program: names, files, lines and an inlined frame.
  EXPECT_TRUE(p.mappings[0].has_functions);
  EXPECT_TRUE(p.mappings[0].has_filenames);
  EXPECT_TRUE(p.mappings[0].has_line_numbers);
  EXPECT_TRUE(p.mappings[0].has_inline_frames);
  // libfake: a made-up name is no function (pprof may then symbolize it).
  EXPECT_FALSE(p.mappings[1].has_functions);
  EXPECT_FALSE(p.mappings[1].has_filenames);
  EXPECT_FALSE(p.mappings[1].has_line_numbers);
  EXPECT_FALSE(p.mappings[1].has_inline_frames);
  // libnames: names only.
  EXPECT_TRUE(p.mappings[2].has_functions);
  EXPECT_FALSE(p.mappings[2].has_filenames);
  EXPECT_FALSE(p.mappings[2].has_line_numbers);
  EXPECT_FALSE(p.mappings[2].has_inline_frames);
}

TEST(PprofEncoding, AnEmptyProfileStillDescribesItself) {
  const std::string bytes = encode_profile(
      {}, 0.5, [](std::uintptr_t) { return pprof_symbols{}; }, {}, 0);
  const pb_profile p = decode_profile(bytes);
  EXPECT_TRUE(p.samples.empty());
  EXPECT_TRUE(p.locations.empty());
  ASSERT_EQ(p.sample_types.size(), 2u);
  EXPECT_EQ(p.period, 16);
  EXPECT_EQ(p.strings[0], "");
}

// ---- gzip ----

TEST(PprofGzip, InflatesBackToTheSameBytes) {
  std::string varied;
  std::uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 300000; ++i) {  // incompressible, several output chunks
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    varied += static_cast<char>(x);
  }
  const std::string repetitive(1 << 20, 'a');
  for (const std::string& data :
       {std::string(), std::string("x"), varied, repetitive,
        encode_profile(fake_stacks, 0.01, fake_symbolizer{}, fake_mappings, 1)}) {
    const std::string compressed = memlimits::memprof::detail::gzip(data);
    ASSERT_GE(compressed.size(), 18u);  // header and trailer
    EXPECT_EQ(static_cast<unsigned char>(compressed[0]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>(compressed[1]), 0x8b);
    EXPECT_EQ(inflate_all(compressed), data) << data.size();
  }
  EXPECT_LT(memlimits::memprof::detail::gzip(repetitive).size(), 10000u);
}

// ---- the mappings of this process ----

// The build ID of an ELF file read from its section headers on disk (not
// from the loaded program headers, as read_mappings does).
std::string build_id_on_disk(const fs::path& file) {
  const std::string elf = read_binary(file);
  if (elf.size() < sizeof(Elf64_Ehdr)) return {};
  Elf64_Ehdr header;
  std::memcpy(&header, elf.data(), sizeof header);
  for (std::size_t i = 0; i < header.e_shnum; ++i) {
    Elf64_Shdr section;
    const std::size_t at = header.e_shoff + i * header.e_shentsize;
    if (at + sizeof section > elf.size()) return {};
    std::memcpy(&section, elf.data() + at, sizeof section);
    if (section.sh_type != SHT_NOTE) continue;
    const std::size_t align = section.sh_addralign == 8 ? 8 : 4;
    const auto round = [align](std::size_t n) { return (n + align - 1) / align * align; };
    for (std::size_t n = 0; n + sizeof(Elf64_Nhdr) <= section.sh_size;) {
      Elf64_Nhdr note;
      std::memcpy(&note, elf.data() + section.sh_offset + n, sizeof note);
      const char* name = elf.data() + section.sh_offset + n + sizeof note;
      const char* desc = name + round(note.n_namesz);
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
          std::memcmp(name, "GNU", 4) == 0) {
        std::string hex;
        for (std::size_t b = 0; b < note.n_descsz; ++b) {
          char digits[3];
          std::snprintf(digits, sizeof digits, "%02x", static_cast<unsigned char>(desc[b]));
          hex += digits;
        }
        return hex;
      }
      n += sizeof note + round(note.n_namesz) + round(note.n_descsz);
    }
  }
  return {};
}

TEST(PprofMappings, TheMainProgramComesFirstWithItsBuildId) {
  const std::vector<pprof_mapping> mappings = memlimits::memprof::detail::read_mappings();
  ASSERT_FALSE(mappings.empty());
  const auto code = reinterpret_cast<std::uintptr_t>(&sites::allocate_in_function);
  const pprof_mapping& main = mappings[0];
  EXPECT_LE(main.start, code);
  EXPECT_LT(code, main.limit);
  EXPECT_EQ(fs::path(main.file), fs::canonical("/proc/self/exe"));
  const std::string on_disk = build_id_on_disk("/proc/self/exe");
  EXPECT_FALSE(on_disk.empty()) << "the test binary has no GNU build ID note";
  EXPECT_EQ(main.build_id, on_disk);
  bool libc = false;
  for (const pprof_mapping& m : mappings) {
    EXPECT_LT(m.start, m.limit);
    EXPECT_EQ(m.file.front(), '/') << m.file;
    EXPECT_TRUE(std::all_of(m.build_id.begin(), m.build_id.end(), [](char c) {
      return std::isxdigit(c) && !std::isupper(c);
    })) << m.build_id;
    if (m.file.find("libc.so") != std::string::npos) {
      libc = true;
      EXPECT_EQ(m.build_id, build_id_on_disk(m.file)) << m.file;
    }
  }
  EXPECT_TRUE(libc);
}

// ---- the real write path ----

constexpr std::size_t exact_count = 100;
constexpr std::size_t exact_size = 800;

// A profile at rate 1 (exact counts) of exact_count blocks from the
// function site; the blocks are freed by the caller through free_blocks.
struct exact_profile {
  std::vector<void*> blocks = std::vector<void*>(exact_count);
  heap_profile profile{1.0, 32};
  int line = 0;
  exact_profile() {
    line = sites::allocate_in_function(blocks.data(), exact_count, exact_size);
    profile.stop();
  }
  ~exact_profile() { sites::free_function_blocks(blocks.data(), exact_count); }
};

// The locations of `p` with a line at file pprof_sites.cpp and `line`.
std::vector<const pb_location*> site_locations(const pb_profile& p, int line) {
  std::vector<const pb_location*> found;
  for (const pb_location& l : p.locations) {
    for (const pb_line& ln : l.lines) {
      if (ln.line == line &&
          ends_with(p.str(p.function(ln.function_id).filename), sites::source_file_name)) {
        found.push_back(&l);
        break;
      }
    }
  }
  return found;
}

TEST(PprofWrite, TheStreamOverloadWritesADecodableProfileOfTheSites) {
  const exact_profile e;
  std::ostringstream out;
  e.profile.write_pprof(out);
  ASSERT_TRUE(out.good());
  const pb_profile p = decode_profile(inflate_all(out.str()));
  EXPECT_TRUE(p.unknown_fields.empty());
  EXPECT_EQ(p.period, 8);
  EXPECT_NE(p.time_nanos, 0);
  // The site: one location at its line, in the main program's mapping, named.
  const std::vector<const pb_location*> found = site_locations(p, e.line);
  ASSERT_EQ(found.size(), 1u) << "no location at pprof_sites.cpp:" << e.line;
  const pb_location& site = *found[0];
  EXPECT_EQ(site.mapping_id, 1u);
  EXPECT_NE(p.function_name(site.lines[0]).find("allocate_in_function"), std::string::npos)
      << p.function_name(site.lines[0]);
  ASSERT_FALSE(p.mappings.empty());
  EXPECT_TRUE(p.mappings[0].has_functions);
  EXPECT_TRUE(p.mappings[0].has_filenames);
  EXPECT_TRUE(p.mappings[0].has_line_numbers);
  EXPECT_EQ(fs::path(p.str(p.mappings[0].filename)), fs::canonical("/proc/self/exe"));
  EXPECT_EQ(p.str(p.mappings[0].build_id), build_id_on_disk("/proc/self/exe"));
  // Its samples: exact at rate 1.
  std::int64_t objects = 0, bytes = 0;
  for (const pb_sample& s : p.samples) {
    if (!s.location_ids.empty() && s.location_ids[0] == site.id) {
      objects += s.values[0];
      bytes += s.values[1];
    }
  }
  EXPECT_EQ(objects, static_cast<std::int64_t>(exact_count));
  EXPECT_EQ(bytes, static_cast<std::int64_t>(exact_count * exact_size));
  // The samples are those of the snapshot, in its order.
  const std::vector<heap_stack> snapshot = e.profile.snapshot();
  ASSERT_EQ(p.samples.size(), snapshot.size());
  for (std::size_t i = 0; i < snapshot.size(); ++i) {
    EXPECT_EQ(p.samples[i].values,
              (std::vector<std::int64_t>{snapshot[i].live_objects, snapshot[i].live_bytes}));
  }
}

TEST(PprofWrite, ThePathOverloadReplacesTheFileWhole) {
  const exact_profile e;
  const scratch_dir dir("memlimits-pprof");
  const fs::path file = dir / "heap.pb.gz";
  { std::ofstream(file) << "an older profile"; }
  e.profile.write_pprof(file.string());
  const std::string bytes = read_binary(file);
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0x8b);
  const pb_profile p = decode_profile(inflate_all(bytes));
  EXPECT_EQ(site_locations(p, e.line).size(), 1u);
  // Nothing but the profile in the directory: the temporary file was renamed.
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"heap.pb.gz"});
}

TEST(PprofWrite, APathInAMissingDirectoryThrowsNamingIt) {
  const exact_profile e;
  const scratch_dir dir("memlimits-pprof");
  const std::string path = (dir / "missing" / "heap.pb.gz").string();
  try {
    e.profile.write_pprof(path);
    ADD_FAILURE() << "no exception";
  } catch (const std::system_error& error) {
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
    EXPECT_EQ(error.code().value(), ENOENT);
  }
  EXPECT_FALSE(fs::exists(dir / "missing"));
}

TEST(PprofWrite, TheFileOverloadReportsAFailedWrite) {
  const exact_profile e;
  std::FILE* full = std::fopen("/dev/full", "w");
  ASSERT_NE(full, nullptr);
  try {
    e.profile.write_pprof(full);
    ADD_FAILURE() << "no exception";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code().value(), ENOSPC) << error.what();
    EXPECT_NE(std::string(error.what()).find("write_pprof"), std::string::npos) << error.what();
  }
  std::fclose(full);
}

// ---- end to end: go tool pprof on known allocation sites ----

// The `go` command on PATH, or "".
std::string find_go() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / "go";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

// What `go tool pprof -raw` prints, parsed: samples (values, location ids)
// and each location's lines (function, file, line).
struct raw_line {
  std::string function, file;
  int line = 0;
};
struct raw_profile {
  std::vector<std::pair<std::vector<std::int64_t>, std::vector<std::uint64_t>>> samples;
  std::map<std::uint64_t, std::vector<raw_line>> locations;
};

// A line of a location: "<function> <file>:<line>[:<column>] s=<start>[(<system name>)]".
bool parse_raw_line(const std::string& text, raw_line& out) {
  static const std::regex pattern(R"((\S+):(\d+)(?::\d+)? s=-?\d+)");
  std::smatch m;
  if (!std::regex_search(text, m, pattern)) return false;
  out.function = text.substr(0, static_cast<std::size_t>(m.position(0)));
  while (!out.function.empty() && out.function.back() == ' ') out.function.pop_back();
  out.file = m[1];
  out.line = std::stoi(m[2]);
  return true;
}

raw_profile parse_raw(const std::string& text) {
  static const std::regex sample(R"(^\s*(-?\d+)\s+(-?\d+): ([\d ]*)$)");
  static const std::regex location_start(R"(^\s*(\d+): 0x[0-9a-f]+ (?:M=\d+ )?(?:\[F\] )?(.*)$)");
  static const std::regex location_more(R"(^\s{8,}(\S.*)$)");
  raw_profile raw;
  enum { other, samples, locations } section = other;
  std::uint64_t current = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (line.rfind("Samples:", 0) == 0) {
      section = samples;
    } else if (line.rfind("Locations", 0) == 0) {
      section = locations;
    } else if (line.rfind("Mappings", 0) == 0) {
      section = other;
    } else if (section == samples && std::regex_match(line, m, sample)) {
      std::vector<std::uint64_t> ids;
      std::istringstream id_text(m[3].str());
      for (std::uint64_t id; id_text >> id;) ids.push_back(id);
      raw.samples.push_back({{std::stoll(m[1]), std::stoll(m[2])}, ids});
    } else if (section == locations && std::regex_match(line, m, location_start)) {
      current = std::stoull(m[1]);
      raw_line l;
      raw.locations[current];
      if (parse_raw_line(m[2], l)) raw.locations[current].push_back(l);
    } else if (section == locations && current != 0 && std::regex_match(line, m, location_more)) {
      raw_line l;
      if (parse_raw_line(m[1], l)) raw.locations[current].push_back(l);
    }
  }
  return raw;
}

// Bernstein's inequality: for a sum S of independent variables, each within
// b of its mean, of total variance v, P(|S - E S| >= t) <= 2 exp(-t^2 / (2 (v
// + b t / 3))). The t at which that bound equals eps.
double bernstein_bound(double variance, double b, double eps) {
  const double l = std::log(2 / eps);
  return b * l / 3 + std::sqrt(b * b * l * l / 9 + 2 * variance * l);
}

struct site_case {
  const char* name;
  const char* function;  // part of the name of the function at the site's line
  int (*allocate)(void**, std::size_t, std::size_t);
  void (*free)(void**, std::size_t);
  std::size_t count, size;
  std::vector<void*> blocks = {};
  int line = 0;
};

// The acceptance test of the pprof output: pprof itself reads the file, and
// each site appears with its file and line and about its true live objects
// and bytes.
//
// The bounds. At rate p every 8-byte word is sampled independently with
// probability p, so a site's n live blocks of w words (W = n w words) carry
// N ~ Binomial(W, p) samples and live_bytes = 8/p * N, a sum of W independent
// terms (8/p) Bernoulli(p), each within b = 8/p of its mean, of variance
// v = W * 64 (1 - p) / p. A block is sampled with probability
// q = 1 - (1 - p)^w and then counts 1/q objects, so live_objects is a sum of
// n independent terms (1/q) Bernoulli(q), each within max(1, 1/q - 1) of its
// mean 1, of variance v = n (1 - q) / q. Bernstein's inequality (above) with
// eps = 1e-9 / 6 for each of the 6 checks (3 sites, objects and bytes) keeps
// the chance of any false failure below 1e-9 (union bound). On top, the
// deterministic roundings of heap_profile: a block's weight is rounded to
// 1/256 object (at most n/512 in all) and each stack's totals to the unit
// (0.5 each). The seed is fixed: the run is the same every time.
TEST(PprofEndToEnd, GoToolPprofShowsEachSiteAtItsLineWithItsLiveObjectsAndBytes) {
  const std::string go = find_go();
  if (go.empty()) {
    GTEST_SKIP() << "go is not installed: install golang-go (apt-get install golang-go) to run "
                    "`go tool pprof` on the profile";
  }
  constexpr double rate = 0.02;
  site_case cases[] = {
      {"static function", "static_site", &sites::allocate_in_static_function,
       &sites::free_static_function_blocks, 4000, 1000},
      // An inlined lambda may be named by its DW_AT_name alone, "operator()".
      {"lambda", "operator()", &sites::allocate_in_lambda, &sites::free_lambda_blocks, 3000, 2048},
      {"function", "allocate_in_function", &sites::allocate_in_function,
       &sites::free_function_blocks, 5000, 504},
  };
  for (site_case& c : cases) c.blocks.resize(c.count);  // before the profile
  const scratch_dir dir("memlimits-pprof");
  const fs::path file = dir / "heap.pb.gz";
  memlimits::core::reseed(20260214);
  {
    heap_profile profile(rate, 32);
    for (site_case& c : cases) c.line = c.allocate(c.blocks.data(), c.count, c.size);
    profile.stop();
    profile.write_pprof(file.string());
  }
  for (site_case& c : cases) c.free(c.blocks.data(), c.count);

  const fs::path output = dir / "raw.txt";
  const fs::path errors = dir / "errors.txt";
  // -symbolize=none: pprof shows the names, files and lines of the file
  // itself, not those of its own symbolization of the binaries.
  const std::string command = "cd '" + dir.path().string() + "' && HOME='" + dir.path().string() +
                              "' GOCACHE='" + (dir / "gocache").string() +
                              "' GOTOOLCHAIN=local PPROF_TMPDIR='" + dir.path().string() + "' '" +
                              go + "' tool pprof -symbolize=none -raw '" + file.string() + "' >'" +
                              output.string() + "' 2>'" + errors.string() + "'";
  ASSERT_EQ(std::system(command.c_str()), 0) << command << "\n"
                                             << memlimits::testing::read_file(errors);
  const std::string text = memlimits::testing::read_file(output);
  const raw_profile raw = parse_raw(text);
  ASSERT_FALSE(raw.samples.empty()) << text;
  EXPECT_NE(text.find("inuse_objects/count inuse_space/bytes[dflt]"), std::string::npos) << text;
  EXPECT_NE(text.find("PeriodType: space bytes"), std::string::npos);
  EXPECT_NE(text.find("Period: 400"), std::string::npos);

  const double eps = 1e-9 / 6;
  for (const site_case& c : cases) {
    SCOPED_TRACE(c.name);
    // The locations with a line at the site: file and line as recorded.
    std::set<std::uint64_t> at_site;
    for (const auto& [id, lines] : raw.locations) {
      for (const raw_line& l : lines) {
        if (l.line == c.line && ends_with(l.file, sites::source_file_name)) {
          at_site.insert(id);
          EXPECT_NE(l.function.find(c.function), std::string::npos)
              << l.function << " at " << l.file << ":" << l.line;
        }
      }
    }
    ASSERT_FALSE(at_site.empty()) << "no location at " << sites::source_file_name << ":" << c.line
                                  << "\n"
                                  << text;
    double objects = 0, bytes = 0;
    int stacks = 0;
    for (const auto& [values, ids] : raw.samples) {
      if (!ids.empty() && at_site.count(ids[0]) != 0) {
        objects += static_cast<double>(values[0]);
        bytes += static_cast<double>(values[1]);
        ++stacks;
      }
    }
    const double n = static_cast<double>(c.count);
    const double w = static_cast<double>((c.size + 7) / 8);
    const double q = -std::expm1(w * std::log1p(-rate));
    const double bytes_bound =
        bernstein_bound(n * w * 64 * (1 - rate) / rate, 8 / rate, eps) + stacks;
    const double objects_bound =
        bernstein_bound(n * (1 - q) / q, std::max(1.0, 1 / q - 1), eps) + n / 512 + stacks;
    std::printf(
        "%-16s line %d: %8.0f objects (true %6.0f, bound %5.0f), %10.0f bytes "
        "(true %8.0f, bound %7.0f)\n",
        c.name, c.line, objects, n, objects_bound, bytes, n * 8 * w, bytes_bound);
    EXPECT_NEAR(bytes, n * 8 * w, bytes_bound);
    EXPECT_NEAR(objects, n, objects_bound);
  }
  // The lambda's caller: in the lambda's location as the function it was
  // inlined into, or in the next location when the lambda was not inlined.
  bool caller_found = false;
  for (const auto& [values, ids] : raw.samples) {
    if (ids.size() < 2 || raw.locations.count(ids[0]) == 0) continue;
    const std::vector<raw_line>& lines = raw.locations.at(ids[0]);
    if (lines.empty() || lines[0].line != cases[1].line) continue;
    const std::vector<raw_line>& next = lines.size() > 1 ? lines : raw.locations.at(ids[1]);
    for (const raw_line& l : next) {
      caller_found |= l.function.find("allocate_in_lambda") != std::string::npos &&
                      l.function.find("operator()") == std::string::npos;
    }
  }
  EXPECT_TRUE(caller_found) << text;
}

// ---- a library closed before the profile is written ----

// Its frames get a mapping of their own (the library's path, build ID and
// code), their locations point at it and are named from the library's file,
// and each call site is one sample. pprof reads the file when Go is
// installed.
TEST(PprofUnloadedLibrary, ItsMappingHoldsItsLocationsNamedFromItsFile) {
  constexpr std::size_t count = 25, size = 800;
  std::vector<void*> blocks;
  blocks.reserve(2 * count);
  memlimits_unloadable_lines lines{};
  std::string path;
  std::uintptr_t bias = 0;
  heap_profile profile(1.0, 32);
  {
    memlimits::testing::unloadable_library library(MEMLIMITS_UNLOADABLE_LIB);
    lines = library.lines();
    path = library.path();
    bias = library.bias();
    library.allocate(1, blocks, count, size);
    library.allocate(2, blocks, count, size);
    profile.stop();
    ASSERT_TRUE(library.close()) << "dlclose left the library mapped";
  }
  const scratch_dir dir("memlimits-pprof");
  const fs::path file = dir / "heap.pb.gz";
  profile.write_pprof(file.string());
  const pb_profile p = decode_profile(inflate_all(read_binary(file)));
  EXPECT_TRUE(p.unknown_fields.empty());

  const pb_mapping* library_mapping = nullptr;
  for (const pb_mapping& m : p.mappings) {
    if (p.str(m.filename) != path) continue;
    EXPECT_EQ(library_mapping, nullptr) << "two mappings of " << path;
    library_mapping = &m;
  }
  ASSERT_NE(library_mapping, nullptr) << "no mapping of " << path;
  const pb_mapping& m = *library_mapping;
  EXPECT_FALSE(build_id_on_disk(path).empty());
  EXPECT_EQ(p.str(m.build_id), build_id_on_disk(path));
  // Its executable segment, at its offset in the file (the segment's
  // addresses and offsets in the file agree in this library).
  EXPECT_GT(m.start, bias);
  EXPECT_LT(m.start, m.limit);
  EXPECT_EQ(m.offset, m.start - bias);
  EXPECT_TRUE(m.has_functions);
  EXPECT_TRUE(m.has_filenames);
  EXPECT_TRUE(m.has_line_numbers);

  // name -> the lines of its locations in the mapping
  std::map<std::string, std::set<std::int64_t>> functions;
  std::map<std::uint64_t, std::string> location_function;
  for (const pb_location& l : p.locations) {
    if (l.mapping_id != m.id) continue;
    EXPECT_GE(l.address, m.start);
    EXPECT_LT(l.address, m.limit);
    ASSERT_EQ(l.lines.size(), 1u);
    const pb_function& f = p.function(l.lines[0].function_id);
    EXPECT_TRUE(ends_with(p.str(f.filename), "unloadable_lib.cpp")) << p.str(f.filename);
    functions[p.str(f.name)].insert(l.lines[0].line);
    location_function[l.id] = p.str(f.name);
  }
  using lines_set = std::set<std::int64_t>;
  EXPECT_EQ(functions["unloadable_first::make_block(unsigned long)"],
            lines_set{lines.malloc_line});
  EXPECT_EQ(functions["unloadable_first::first_site(unsigned long)"],
            lines_set{lines.first_site_line});
  EXPECT_EQ(functions["unloadable_first::second_site(unsigned long)"],
            lines_set{lines.second_site_line});
  EXPECT_EQ(functions["memlimits_unloadable_allocate"],
            (lines_set{lines.entry_first_line, lines.entry_second_line}));
  EXPECT_EQ(functions.size(), 4u);

  // One sample per call site, exact at rate 1.
  for (const char* site : {"unloadable_first::first_site(unsigned long)",
                           "unloadable_first::second_site(unsigned long)"}) {
    int samples = 0;
    for (const pb_sample& s : p.samples) {
      if (s.location_ids.size() < 2 || location_function[s.location_ids[1]] != site) continue;
      ++samples;
      EXPECT_EQ(location_function[s.location_ids[0]],
                "unloadable_first::make_block(unsigned long)");
      EXPECT_EQ(s.values, (std::vector<std::int64_t>{static_cast<std::int64_t>(count),
                                                     static_cast<std::int64_t>(count * size)}));
    }
    EXPECT_EQ(samples, 1) << site;
  }

  const std::string go = find_go();
  if (!go.empty()) {
    const fs::path output = dir / "raw.txt";
    const fs::path errors = dir / "errors.txt";
    const std::string command = "cd '" + dir.path().string() + "' && HOME='" +
                                dir.path().string() + "' GOCACHE='" + (dir / "gocache").string() +
                                "' GOTOOLCHAIN=local PPROF_TMPDIR='" + dir.path().string() + "' '" +
                                go + "' tool pprof -symbolize=none -raw '" + file.string() +
                                "' >'" + output.string() + "' 2>'" + errors.string() + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << command << "\n"
                                               << memlimits::testing::read_file(errors);
    const std::string text = memlimits::testing::read_file(output);
    EXPECT_NE(text.find("unloadable_first::first_site(unsigned long)"), std::string::npos)
        << text;
    EXPECT_NE(text.find(path), std::string::npos) << text;
  }
  for (void* b : blocks) std::free(b);
}

}  // namespace
