// memprof/symbolizer.hpp — names the code addresses of a heap profile when it
// is written: the loaded object, the function, its source file and line, and
// the functions inlined at that address, from the objects' debug information
// (DWARF, through elfutils' libdw), with the symbol tables, dladdr or the
// object and offset as fallbacks. Also short_name(), the flame-graph form of
// a demangled C++ name.
// Layer 6 (memprof). Never used on the allocation path: it allocates, opens
// files and maps them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/sampler.hpp"

struct dl_phdr_info;  // <link.h>

namespace memlimits::memprof::detail {

struct recorded_module;  // memprof/module_registry.hpp

// One source-level function at a code address, and where in it.
struct source_location {
  std::string function;      // demangled name, full; empty if unknown
  std::string linkage_name;  // as in the symbol table / DW_AT_linkage_name (mangled); may be empty
  std::string file;          // source file path as recorded in the debug info; empty if unknown
  std::uint32_t line = 0;    // 0 if unknown
};

// What one code address is: the loaded object that holds it, and the functions
// at it, innermost (inlined) first; the last is the function whose code it is.
struct symbolized {
  std::string module;                   // path of the loaded object ("" if none); the main
                                        // program's real path, not ""
  std::uintptr_t module_base = 0;       // load bias: address - module_base is the address in
                                        // the object file
  std::vector<source_location> frames;  // empty if nothing at all is known
  std::uintptr_t symbol_start = 0;      // where the function of the object's symbol table that
                                        // holds the address starts (at its load address); 0
                                        // if none does, or the object's file is not used
  std::string symbol;                   // that function's name in the symbol table (mangled)
};

class symbolizer {
 public:
  symbolizer();
  ~symbolizer();
  symbolizer(const symbolizer&) = delete;
  symbolizer& operator=(const symbolizer&) = delete;
  // `pc` lies inside an instruction: for a return address pass return_address - 1.
  // Not thread-safe (one symbolizer per writer); caches per module and per address.
  // The reference stays valid as long as the symbolizer.
  const symbolized& symbolize(std::uintptr_t pc);
  // pc as an address of the object that `origin` records, loaded at its
  // recorded bias, whatever is loaded at pc now: for an object unloaded (or
  // moved) since a stack was recorded. Named from the object's file when
  // its build ID is the recorded one (or none was recorded), else by
  // module only ("module" and "module_base" set: module_offset_name); never
  // from dladdr. The main program's record (path "") is symbolize(pc).
  const symbolized& symbolize_in(std::uintptr_t pc, const recorded_module& origin);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// A symbolizer and its answers kept across the writes of one profile, so
// that a profile written again and again reads the debug information once.
// The symbolizer is opened at the first address a write names, and kept
// until the cache goes (it holds the debug information it has read: a few
// MB to tens of MB, depending on the program); it and the answers are
// dropped when an object was unloaded since the last write (its addresses
// may now hold other code). Thread-safe: a write names its frames under the
// cache's lock.
class symbol_cache {
 public:
  symbol_cache();
  ~symbol_cache();
  symbol_cache(const symbol_cache&) = delete;
  symbol_cache& operator=(const symbol_cache&) = delete;

  // One write's access: holds the lock while it lives, with sampling off
  // for the calling thread (the debug information it reads, and what the
  // write allocates meanwhile, stay out of the profiles and of the
  // thread's limits).
  class session {
   public:
    explicit session(symbol_cache& cache);
    ~session();
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    // As symbolizer::symbolize and symbolize_in; the reference stays valid
    // while the session lives.
    const symbolized& symbolize(std::uintptr_t pc);
    const symbolized& symbolize_in(std::uintptr_t pc, const recorded_module& origin);

   private:
    core::sampling_off off_;
    symbol_cache& cache_;
  };

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// The build ID (the NT_GNU_BUILD_ID note's bytes) of a loaded object, read
// from its notes in memory, so that it is the one of the code that runs;
// "" if it has none (memprof/module_registry.hpp: loaded_build_id_note).
std::string loaded_build_id(const dl_phdr_info& info);

// The name of an address of which no function is known: "object+0xoffset"
// (the object's file name, without its directory) when `s` has a module,
// else the address in hex ("0x1000").
std::string module_offset_name(const symbolized& s, std::uintptr_t pc);

// A demangled C++ name shortened the way flamegraph users expect: template
// argument lists (<...>) whose text is longer than `max_template` characters become
// "<...>", nested ones included; the function's parameter list "(...)" is kept
// unless longer than `max_parameters`, then "(...)". Operators such as operator<,
// operator<<, operator<=>, operator() and "(anonymous namespace)", "{lambda(int)#1}"
// survive intact, and text that is not a demangled name (or whose brackets do
// not balance) passes through unchanged.
std::string short_name(std::string_view demangled, std::size_t max_template = 32,
                       std::size_t max_parameters = 64);

}  // namespace memlimits::memprof::detail
