// memprof/pprof.hpp — the heap profile in pprof's format: profile.proto
// (github.com/google/pprof, proto/profile.proto) encoded by hand (varints,
// length-delimited and packed fields: the few messages a heap profile needs
// do not justify a protobuf library), then gzip-compressed with zlib.
// heap_profile::write_pprof (pprof.cpp) feeds it a snapshot, the loaded
// objects of /proc/self/maps and those unloaded since their frames were
// recorded (memprof/module_registry.hpp), and the DWARF symbolizer
// (memprof/symbolizer.hpp);
// the encoder itself takes neutral inputs, so that tests can give it fake
// symbols and mappings and decode every field. Layer 6.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "memlimits/memprof.hpp"
#include "memprof/module_registry.hpp"
#include "memprof/output.hpp"
#include "memprof/symbolizer.hpp"

namespace memlimits::memprof::detail {

// One function at an address: a Location's Line and its Function.
struct pprof_line {
  std::string function;         // Function.name: full demangled name; empty if unknown
  std::string system_name;      // Function.system_name: linkage (mangled) name; may be empty
  std::string file;             // Function.filename; empty if unknown
  std::int64_t line = 0;        // Line.line; 0 if unknown
  std::int64_t start_line = 0;  // Function.start_line; 0 if unknown
};

// What a symbolizer knows of one address.
struct pprof_symbols {
  std::string module;              // path of the loaded object that holds it; "" if none
  std::uintptr_t module_base = 0;  // that object's load bias
  std::vector<pprof_line> lines;   // innermost (inlined) first, the containing function
                                   // last; empty if unknown
};

// Symbolizes pc, an address inside an instruction (a return address - 1).
using pprof_symbolizer = std::function<pprof_symbols(std::uintptr_t pc)>;

// An executable mapping of a loaded object (a Mapping of profile.proto).
struct pprof_mapping {
  std::uint64_t start = 0;        // first address
  std::uint64_t limit = 0;        // one past the last
  std::uint64_t file_offset = 0;  // offset in the file of `start`
  std::string file;               // path of the object
  std::string build_id;           // lowercase hex of its NT_GNU_BUILD_ID note; "" if none
};

// The name pprof shows for the stack whose frames were not recorded, as in
// the folded output.
inline constexpr std::string_view pprof_unrecorded_function = "[memlimits:unrecorded_stack]";

// The Profile message, uncompressed. Sample types [inuse_objects/count,
// inuse_space/bytes] with the values {live_objects, live_bytes} of each
// stack; period_type space/bytes, period round(8 / rate); default sample
// type inuse_space; a comment naming the rate; time_nanos unless 0.
// Location ids follow the first appearance of each return address in
// `stacks` (innermost frame first, as Sample.location_id wants), mapping ids
// the order of `mappings` (pprof takes mapping 1 for the main program), and
// symbolize is called once per distinct return address with that address - 1.
// An address whose symbols name no function but a module is named
// "module+0xoffset" (the module's file name, offset from its load bias) so
// that pprof shows something. A mapping's has_functions, has_filenames,
// has_line_numbers and has_inline_frames are true when at least one of its
// locations got a function name (a made-up one does not count: pprof may
// then symbolize the mapping itself), a file, a line, more than one function.
std::string encode_profile(std::span<const heap_stack> stacks, double rate,
                           const pprof_symbolizer& symbolize,
                           std::span<const pprof_mapping> mappings, std::int64_t time_nanos);

// Symbolizes pc (a return address - 1); `pinned`: 0, or the mapping (1 +
// its index in the profile's mappings) of the object that held pc when its
// stack was recorded, an object unloaded since (see below).
using pprof_pinned_symbolizer =
    std::function<pprof_symbols(std::uintptr_t pc, std::uint32_t pinned)>;

// encode_profile for stacks some of whose frames were in objects unloaded
// (or moved) since their stacks were recorded, whose addresses may hold
// other code by now. pinned[i][j] (when pinned[i] is not empty) is 0, or 1 +
// the index in `mappings` of the mapping of the object that held frame j of
// stacks[i]: that frame's Location points at that mapping whatever its
// address falls in, there is one Location per return address and mapping,
// and symbolize gets it. pinned may be shorter than stacks (the rest: 0).
std::string encode_profile(std::span<const heap_stack> stacks,
                           std::span<const std::vector<std::uint32_t>> pinned, double rate,
                           const pprof_pinned_symbolizer& symbolize,
                           std::span<const pprof_mapping> mappings, std::int64_t time_nanos);

// gzip (RFC 1952) of data. Throws std::bad_alloc when zlib lacks memory.
std::string gzip(std::string_view data);
// The same, into a sink, a chunk at a time.
void gzip_to(std::string_view data, output_sink& out);

// The executable mappings of files in /proc/self/maps with the build IDs of
// their objects (found through dl_iterate_phdr by address), the main
// program's first, then by address. Empty if /proc/self/maps is unreadable.
std::vector<pprof_mapping> read_mappings();

// The Mapping of an object unloaded since its frames were recorded: its
// executable segment at its file offset when recorded, else its whole range
// from offset 0; its path and build ID (lowercase hex).
pprof_mapping unloaded_mapping(const recorded_module& m);

// heap_profile::write_pprof's work: `stacks` (a snapshot at `rate`) encoded
// with the frames named through `names` and the process's mappings, gzipped
// into `out`. origins[i] (when given) says which frames of stacks[i] were in
// objects unloaded since: those get the mapping of their object, appended
// after the loaded ones, and are named from its file (symbolize_in).
void write_pprof_to(const std::vector<heap_stack>& stacks,
                    const std::vector<frame_origins>& origins, double rate,
                    symbol_cache::session& names, output_sink& out);

}  // namespace memlimits::memprof::detail
