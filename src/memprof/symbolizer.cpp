// memprof/symbolizer.cpp — names code addresses for the heap profile's
// writers: object, function, file:line and inlined frames from DWARF, with
// the symbol tables, dladdr and object+offset as fallbacks; and short_name().
// Layer 6 (memprof). Runs only when a profile is written, never on the
// allocation path: it allocates, opens and maps files.
//
// Backend: elfutils' libdw (Debian libdw-dev), not GCC's libbacktrace.a. On a 4.4 MB -O2 -g
// program (libmemlimits.a, spdlog, fmt), 2,000 distinct return addresses, 2 busy cores: libdw
// 9 ms to the first name, 35 ms for all (17 us each), 0.1 ms cached, 18 MB peak RSS; libbacktrace
// 80 ms to the first (it reads every object up front), 17 ms for all, 35 MB, and a state that can
// never be freed nor see an object loaded after its first call. Its .a is PIC and clang links it,
// but its header sits in GCC 12's private include directory (clang would need -idirafter) and its
// global backtrace_* symbols would leak from libmemlimits_preload.so or clash with a program's
// own. libdw's price: libdw.so.1, libelf, libz, liblzma and libbz2 at run time.
//
// How an address is found. dl_iterate_phdr lists the loaded objects (path,
// load bias, PT_LOAD segments, build ID); it is read again when an address
// falls in no known object and the loader's counters say objects came or
// went. Each object gets its own libdwfl session on first use, reported
// with dwfl_report_elf at its bias, its separate debug file found by build
// ID only (dwfl_build_id_find_debuginfo: never debuginfod, which the
// standard callback would ask over the network when DEBUGINFOD_URLS is set).
// An object's file is used only if its build ID is the one in memory.
//
// An object unloaded since a stack was recorded (memprof/module_registry.hpp
// kept its path, bias, range and build ID): symbolize_in reports its file at
// the recorded bias in a libdwfl session of its own, with the same build-ID
// check and the same indexes, and never asks dladdr, which would describe
// whatever is loaded at the address now.
//
// Indexes of our own, because libdw 0.188 lacks them: the units of an
// object by address range (dwfl_module_addrdie needs .debug_aranges, which
// clang does not emit); per unit, built on its first address, the functions
// and inlined calls by address range (dwarf_getscopes walks the unit's whole
// DIE tree on every call: 1.7 ms per address in a unit of fmt's templates);
// and the function symbols by address (dwfl_module_addrinfo scans them all
// on every call). The range indexes paint ranges into non-overlapping
// segments, inner (inlined) ranges over outer ones, so that a lookup is one
// binary search and the chain of inlined calls is a walk up the parents.
#include "memprof/symbolizer.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <dwarf.h>
#include <elf.h>
#include <link.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

#include "memprof/module_registry.hpp"

namespace memlimits::memprof::detail {
namespace {

// A symbol table's name without its version ("__libc_start_main@@GLIBC_2.34"
// is __libc_start_main): no mangled name holds '@'.
std::string unversioned(const char* name) {
  const char* at = std::strchr(name, '@');
  return at == nullptr ? std::string(name) : std::string(name, at);
}

std::string demangle(const std::string& mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> demangled(
      abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status), &std::free);
  return status == 0 && demangled ? std::string(demangled.get()) : mangled;
}

std::string hex(std::uintptr_t value) {
  char text[2 + 16 + 1];
  std::snprintf(text, sizeof text, "0x%" PRIxPTR, value);
  return text;
}

// ---- address ranges ----

// Disjoint address ranges [low, high), each with a value. Built by painting
// ranges in order, a later range overwriting what it covers; then frozen
// into a sorted vector for lookups.
class interval_map {
 public:
  void paint(std::uint64_t low, std::uint64_t high, std::uint32_t value) {
    // Address 0 is never code in a loaded object: it is where linkers put
    // the debug ranges of functions they discarded.
    if (low == 0 || low >= high) return;
    split_at(low);
    split_at(high);
    building_.erase(building_.lower_bound(low), building_.lower_bound(high));
    building_.emplace(low, segment{high, value});
  }

  void freeze() {
    entries_.reserve(building_.size());
    for (const auto& [low, s] : building_) entries_.push_back({low, s.high, s.value});
    building_.clear();
  }

  const std::uint32_t* find(std::uint64_t address) const {
    auto it = std::upper_bound(entries_.begin(), entries_.end(), address,
                               [](std::uint64_t a, const entry& e) { return a < e.low; });
    if (it == entries_.begin()) return nullptr;
    --it;
    return address < it->high ? &it->value : nullptr;
  }

 private:
  struct segment {
    std::uint64_t high;
    std::uint32_t value;
  };
  struct entry {
    std::uint64_t low;
    std::uint64_t high;
    std::uint32_t value;
  };

  // Splits the segment that strictly contains `at` in two at `at`.
  void split_at(std::uint64_t at) {
    auto it = building_.upper_bound(at);
    if (it == building_.begin()) return;
    --it;
    if (it->first < at && at < it->second.high) {
      building_.emplace_hint(std::next(it), at, segment{it->second.high, it->second.value});
      it->second.high = at;
    }
  }

  std::map<std::uint64_t, segment> building_;
  std::vector<entry> entries_;
};

template <class Visit>
void for_each_range(Dwarf_Die* die, Visit&& visit) {
  Dwarf_Addr base = 0;
  Dwarf_Addr start = 0;
  Dwarf_Addr end = 0;
  ptrdiff_t offset = 0;
  while ((offset = dwarf_ranges(die, offset, &base, &start, &end)) > 0) visit(start, end);
}

// ---- one unit's functions ----

// A function with code in the unit (DW_TAG_subprogram) or a call inlined into
// one (DW_TAG_inlined_subroutine), with the node it is inlined into.
struct function_node {
  Dwarf_Die die{};
  std::int32_t parent = -1;  // -1 for a subprogram
  std::uint32_t depth = 0;   // 0 for a subprogram, parent's + 1 for an inlined call
  bool inlined = false;
  bool named = false;  // function and linkage_name are set (on first use)
  std::string function;
  std::string linkage_name;
};

struct unit_index {
  Dwarf_Die unit;
  std::vector<function_node> nodes;
  interval_map ranges;  // DWARF address -> innermost node
  bool files_read = false;
  Dwarf_Files* files = nullptr;  // for DW_AT_call_file
  // The enclosing scope (namespace, class, function) of each scope and
  // function DIE, by DIE offset; 0 at the top. Built on first use, for the
  // names that have no linkage name.
  bool scopes_mapped = false;
  std::unordered_map<Dwarf_Off, Dwarf_Off> scope_parents;
};

struct pending_range {
  std::uint32_t depth;
  std::uint64_t low;
  std::uint64_t high;
  std::uint32_t node;
};

// Deeper than any real DIE tree: a guard against malformed debug info.
constexpr int max_nesting = 256;

void collect_functions(Dwarf_Die* parent_die, std::int32_t parent, int nesting, unit_index& unit,
                       std::vector<pending_range>& ranges) {
  if (nesting > max_nesting) return;
  Dwarf_Die child;
  if (dwarf_child(parent_die, &child) != 0) return;
  do {
    switch (dwarf_tag(&child)) {
      case DW_TAG_subprogram:
      case DW_TAG_inlined_subroutine: {
        // A subprogram nested in another (a local function) is called, not
        // inlined: it starts a chain of its own.
        const bool inlined = dwarf_tag(&child) == DW_TAG_inlined_subroutine && parent >= 0;
        const auto index = static_cast<std::uint32_t>(unit.nodes.size());
        const std::uint32_t depth = inlined ? unit.nodes[parent].depth + 1 : 0;
        bool has_code = false;
        for_each_range(&child, [&](Dwarf_Addr low, Dwarf_Addr high) {
          if (low >= high) return;
          ranges.push_back({depth, low, high, index});
          has_code = true;
        });
        // Without code: a declaration, or an abstract instance whose
        // concrete ones are elsewhere.
        if (!has_code) break;
        function_node& node = unit.nodes.emplace_back();
        node.die = child;
        node.parent = inlined ? parent : -1;
        node.depth = depth;
        node.inlined = inlined;
        collect_functions(&child, static_cast<std::int32_t>(index), nesting + 1, unit, ranges);
        break;
      }
      case DW_TAG_lexical_block:
      case DW_TAG_try_block:
      case DW_TAG_catch_block:
      case DW_TAG_namespace:
      case DW_TAG_module:
      case DW_TAG_class_type:
      case DW_TAG_structure_type:
      case DW_TAG_union_type:
        collect_functions(&child, parent, nesting + 1, unit, ranges);
        break;
      default:  // types, variables, parameters, call sites: no code below
        break;
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

std::unique_ptr<unit_index> index_unit(const Dwarf_Die& unit_die) {
  auto unit = std::make_unique<unit_index>();
  unit->unit = unit_die;
  std::vector<pending_range> ranges;
  collect_functions(&unit->unit, -1, 0, *unit, ranges);
  // Outer ranges first, so that an inlined call's range covers its caller's.
  std::stable_sort(
      ranges.begin(), ranges.end(),
      [](const pending_range& a, const pending_range& b) { return a.depth < b.depth; });
  for (const pending_range& r : ranges) unit->ranges.paint(r.low, r.high, r.node);
  unit->ranges.freeze();
  return unit;
}

const char* string_attribute(Dwarf_Die* die, unsigned int name) {
  Dwarf_Attribute attribute;
  // Follows DW_AT_abstract_origin and DW_AT_specification: an inlined call
  // or an out-of-line member function has its names on its declaration.
  if (dwarf_attr_integrate(die, name, &attribute) == nullptr) return nullptr;
  return dwarf_formstring(&attribute);
}

const char* linkage_name_of(Dwarf_Die* die) {
  const char* mangled = string_attribute(die, DW_AT_linkage_name);
  if (mangled == nullptr) mangled = string_attribute(die, DW_AT_MIPS_linkage_name);
  return mangled != nullptr && *mangled != '\0' ? mangled : nullptr;
}

void map_scopes(Dwarf_Die* die, Dwarf_Off scope, int nesting,
                std::unordered_map<Dwarf_Off, Dwarf_Off>& parents) {
  if (nesting > max_nesting) return;
  Dwarf_Die child;
  if (dwarf_child(die, &child) != 0) return;
  do {
    switch (dwarf_tag(&child)) {
      case DW_TAG_namespace:
      case DW_TAG_class_type:
      case DW_TAG_structure_type:
      case DW_TAG_union_type:
      case DW_TAG_subprogram: {
        const Dwarf_Off offset = dwarf_dieoffset(&child);
        parents.emplace(offset, scope);
        map_scopes(&child, offset, nesting + 1, parents);
        break;
      }
      case DW_TAG_lexical_block:
      case DW_TAG_inlined_subroutine:
        map_scopes(&child, scope, nesting + 1, parents);
        break;
      default:
        break;
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

// The DIE that declares a function: a concrete or inlined instance points to
// its abstract origin, an out-of-line definition to its specification.
Dwarf_Die declaration_of(Dwarf_Die die) {
  for (int i = 0; i < 8; ++i) {
    Dwarf_Attribute attribute;
    Dwarf_Die target;
    if (dwarf_attr(&die, DW_AT_abstract_origin, &attribute) == nullptr &&
        dwarf_attr(&die, DW_AT_specification, &attribute) == nullptr) {
      break;
    }
    if (dwarf_formref_die(&attribute, &target) == nullptr) break;
    die = target;
  }
  return die;
}

// "ns::klass::" for a DIE of `unit`, from its enclosing scopes, each named
// through its declaration (an out-of-line definition's scope is its
// declaration's); a function scope with a linkage name by its demangled name,
// which is already qualified. `call_operator`: the DIE is an operator(),
// whose unnamed class is a lambda's.
std::string scope_prefix(unit_index& unit, Dwarf_Off offset, bool call_operator, int nesting = 0) {
  if (!unit.scopes_mapped) {
    unit.scopes_mapped = true;
    map_scopes(&unit.unit, 0, 0, unit.scope_parents);
  }
  const auto it = unit.scope_parents.find(offset);
  Dwarf* dwarf = dwarf_cu_getdwarf(unit.unit.cu);
  Dwarf_Die scope;
  if (it == unit.scope_parents.end() || it->second == 0 || nesting > 64 || dwarf == nullptr ||
      dwarf_offdie(dwarf, it->second, &scope) == nullptr) {
    return {};
  }
  const int tag = dwarf_tag(&scope);
  if (tag == DW_TAG_subprogram) {
    if (const char* mangled = linkage_name_of(&scope)) return demangle(mangled) + "::";
  }
  const char* name = dwarf_diename(&scope);  // follows the declaration
  std::string part = name != nullptr           ? std::string(name)
                     : tag == DW_TAG_namespace ? std::string("(anonymous namespace)")
                     : call_operator           ? std::string("{lambda}")
                                               : std::string("{unnamed type}");
  Dwarf_Die declaration = declaration_of(scope);
  const Dwarf_Off outer =
      declaration.cu == unit.unit.cu ? dwarf_dieoffset(&declaration) : it->second;
  return scope_prefix(unit, outer, false, nesting + 1) + part + "::";
}

void name_node(unit_index& unit, function_node& node) {
  if (node.named) return;
  node.named = true;
  if (const char* mangled = linkage_name_of(&node.die)) {
    node.linkage_name = mangled;
    node.function = demangle(mangled);
    return;
  }
  // No linkage name: C functions, main and extern "C" ones, and for GCC
  // functions of internal linkage (static ones, lambdas). Qualified by the
  // scopes of its declaration, when that is in this unit.
  const char* name = string_attribute(&node.die, DW_AT_name);
  if (name == nullptr) return;
  Dwarf_Die declaration = declaration_of(node.die);
  node.function = declaration.cu == unit.unit.cu
                      ? scope_prefix(unit, dwarf_dieoffset(&declaration),
                                     std::strcmp(name, "operator()") == 0) +
                            name
                      : std::string(name);
}

// ---- loaded objects ----

// No find_elf: every object is reported with its file. Separate debug files
// by build ID only, in the default path (/usr/lib/debug).
int find_no_elf(Dwfl_Module*, void**, const char*, Dwarf_Addr, char**, Elf**) { return -1; }
char* debuginfo_path = nullptr;
const Dwfl_Callbacks dwfl_callbacks = {find_no_elf, dwfl_build_id_find_debuginfo,
                                       dwfl_offline_section_address, &debuginfo_path};

struct module_state {
  std::string path;  // as the loader names it ("linux-vdso.so.1" has no file); the main
                     // program's from /proc/self/exe
  std::uintptr_t bias = 0;
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> segments;  // PT_LOAD, [low, high)
  std::string build_id;  // from the loaded notes; "" if none

  bool opened = false;
  Dwfl* dwfl = nullptr;
  Dwfl_Module* module = nullptr;  // null when the file cannot be used
  Dwarf* dwarf = nullptr;         // null without debug info
  Dwarf_Addr dwarf_bias = 0;

  // The functions of the symbol tables, sorted by address (libdwfl's own
  // lookup, dwfl_module_addrinfo, scans every symbol on every call).
  struct symbol {
    std::uintptr_t low;
    std::uintptr_t high;  // low + size; low + 1 for a symbol without size
    int rank;             // 0 global, 1 weak, 2 local: the best name of aliases first
    const char* name;     // in libelf's string table, alive with the session
  };
  bool symbols_indexed = false;
  std::vector<symbol> symbols;

  bool units_indexed = false;
  std::vector<Dwarf_Die> units;
  interval_map unit_ranges;  // DWARF address -> index in units
  std::unordered_map<std::uint32_t, std::unique_ptr<unit_index>> indexes;

  // The answers for an object that is no longer loaded (symbolize_in); a
  // loaded object's are in the symbolizer's cache.
  std::unordered_map<std::uintptr_t, symbolized> answers;

  module_state() = default;
  module_state(const module_state&) = delete;
  module_state& operator=(const module_state&) = delete;
  ~module_state() {
    indexes.clear();
    if (dwfl != nullptr) dwfl_end(dwfl);
  }

  bool contains(std::uintptr_t pc) const {
    for (const auto& [low, high] : segments) {
      if (low <= pc && pc < high) return true;
    }
    return false;
  }
};

}  // namespace

std::string loaded_build_id(const dl_phdr_info& info) {
  const std::span<const unsigned char> note =
      loaded_build_id_note(info.dlpi_addr, info.dlpi_phdr, info.dlpi_phnum);
  return std::string(reinterpret_cast<const char*>(note.data()), note.size());
}

namespace {

// The loader's counts of objects loaded and unloaded so far
// (dl_phdr_info::dlpi_adds and dlpi_subs).
struct loader_counts {
  unsigned long long adds = 0;
  unsigned long long subs = 0;
  bool operator==(const loader_counts&) const = default;
};

loader_counts read_loader_counts() {
  loader_counts counts;
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t size, void* data) {
        if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
          *static_cast<loader_counts*>(data) = {info->dlpi_adds, info->dlpi_subs};
        }
        return 1;
      },
      &counts);
  return counts;
}

std::string main_program_path() {
  char path[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n > 0) return std::string(path, static_cast<std::size_t>(n));
  // Without /proc: the path it was started as (relative to the directory it
  // was started in).
  const auto* started_as = reinterpret_cast<const char*>(::getauxval(AT_EXECFN));
  return started_as != nullptr ? std::string(started_as) : std::string();
}

void open_module(module_state& m) {
  m.opened = true;
  if (m.path.empty()) return;
  m.dwfl = dwfl_begin(&dwfl_callbacks);
  if (m.dwfl == nullptr) return;
  dwfl_report_begin(m.dwfl);
  // add_p_vaddr: `bias` is the load bias (dlpi_addr), also for objects whose
  // first segment does not start at 0.
  m.module = dwfl_report_elf(m.dwfl, m.path.c_str(), m.path.c_str(), -1, m.bias, true);
  dwfl_report_end(m.dwfl, nullptr, nullptr);
  if (m.module == nullptr) return;
  if (!m.build_id.empty()) {
    // The file at that path may have been replaced since it was loaded.
    const unsigned char* bits = nullptr;
    GElf_Addr vaddr = 0;
    const int length = dwfl_module_build_id(m.module, &bits, &vaddr);
    if (length > 0 && (static_cast<std::size_t>(length) != m.build_id.size() ||
                       std::memcmp(bits, m.build_id.data(), m.build_id.size()) != 0)) {
      m.module = nullptr;
      return;
    }
  }
  m.dwarf = dwfl_module_getdwarf(m.module, &m.dwarf_bias);
}

void index_units(module_state& m) {
  m.units_indexed = true;
  Dwarf_CU* unit = nullptr;
  Dwarf_CU* next = nullptr;
  Dwarf_Half version = 0;
  std::uint8_t type = 0;
  Dwarf_Die die;
  Dwarf_Die sub;
  while (dwarf_get_units(m.dwarf, unit, &next, &version, &type, &die, &sub) == 0) {
    unit = next;
    // Type and partial units hold no code of their own. A skeleton unit
    // (split DWARF) has the line table, not the functions.
    if (type != DW_UT_compile && type != DW_UT_skeleton) continue;
    const auto index = static_cast<std::uint32_t>(m.units.size());
    m.units.push_back(die);
    for_each_range(&m.units.back(),
                   [&](Dwarf_Addr low, Dwarf_Addr high) { m.unit_ranges.paint(low, high, index); });
  }
  m.unit_ranges.freeze();
}

unit_index* find_unit(module_state& m, Dwarf_Addr address) {
  if (!m.units_indexed) index_units(m);
  const std::uint32_t* index = m.unit_ranges.find(address);
  if (index == nullptr) return nullptr;
  auto [it, inserted] = m.indexes.try_emplace(*index);
  if (inserted) {
    try {
      it->second = index_unit(m.units[*index]);
    } catch (...) {
      m.indexes.erase(it);
      throw;
    }
  }
  return it->second.get();
}

void describe_from_dwarf(module_state& m, std::uintptr_t pc, symbolized& out) {
  const Dwarf_Addr address = pc - m.dwarf_bias;
  unit_index* unit = find_unit(m, address);
  if (unit == nullptr) return;
  std::string file;
  std::uint32_t line = 0;
  if (Dwarf_Line* row = dwarf_getsrc_die(&unit->unit, address)) {
    int number = 0;
    const char* source = dwarf_linesrc(row, nullptr, nullptr);
    if (dwarf_lineno(row, &number) == 0 && number > 0 && source != nullptr) {
      file = source;
      line = static_cast<std::uint32_t>(number);
    }
  }
  const std::uint32_t* innermost = unit->ranges.find(address);
  if (innermost == nullptr) {
    // Lines without a function DIE (assembler, or stripped-down debug info):
    // the caller names the function from the symbol table.
    if (line != 0) out.frames.push_back({{}, {}, std::move(file), line});
    return;
  }
  for (std::int32_t i = static_cast<std::int32_t>(*innermost); i >= 0;) {
    function_node& node = unit->nodes[static_cast<std::size_t>(i)];
    name_node(*unit, node);
    out.frames.push_back({node.function, node.linkage_name, std::move(file), line});
    if (!node.inlined) break;
    // The caller's frame is at the call: DW_AT_call_file and DW_AT_call_line.
    file.clear();
    line = 0;
    Dwarf_Attribute attribute;
    Dwarf_Word value = 0;
    if (dwarf_formudata(dwarf_attr(&node.die, DW_AT_call_line, &attribute), &value) == 0 &&
        value > 0 && value <= UINT32_MAX) {
      line = static_cast<std::uint32_t>(value);
    }
    if (!unit->files_read) {
      unit->files_read = true;
      std::size_t count = 0;
      if (dwarf_getsrcfiles(&unit->unit, &unit->files, &count) != 0) unit->files = nullptr;
    }
    if (unit->files != nullptr &&
        dwarf_formudata(dwarf_attr(&node.die, DW_AT_call_file, &attribute), &value) == 0) {
      if (const char* source = dwarf_filesrc(unit->files, value, nullptr, nullptr)) file = source;
    }
    if (line == 0) file.clear();
    i = node.parent;
  }
}

void index_symbols(module_state& m) {
  m.symbols_indexed = true;
  const int count = dwfl_module_getsymtab(m.module);
  for (int i = 1; i < count; ++i) {  // 0 is the null symbol
    GElf_Sym symbol;
    GElf_Addr address = 0;
    GElf_Word section = 0;
    const char* name =
        dwfl_module_getsym_info(m.module, i, &symbol, &address, &section, nullptr, nullptr);
    const int type = GELF_ST_TYPE(symbol.st_info);
    if (name == nullptr || *name == '\0' || section == SHN_UNDEF ||
        (type != STT_FUNC && type != STT_GNU_IFUNC)) {
      continue;
    }
    const int binding = GELF_ST_BIND(symbol.st_info);
    const int rank = binding == STB_GLOBAL ? 0 : binding == STB_WEAK ? 1 : 2;
    m.symbols.push_back({address, address + (symbol.st_size > 0 ? symbol.st_size : 1), rank, name});
  }
  std::sort(m.symbols.begin(), m.symbols.end(), [](const auto& a, const auto& b) {
    return a.low != b.low ? a.low < b.low : a.rank < b.rank;
  });
}

// The function symbol that holds `pc`; of aliases, a global one (qsort, not
// libc's local __GI_qsort).
const module_state::symbol* symbol_at(module_state& m, std::uintptr_t pc) {
  if (!m.symbols_indexed) index_symbols(m);
  auto it = std::upper_bound(m.symbols.begin(), m.symbols.end(), pc,
                             [](std::uintptr_t a, const auto& s) { return a < s.low; });
  // Symbols that start before pc, nearest first: the innermost one that
  // holds pc ("f.cold" inside nothing, a local label inside its function).
  for (int tries = 0; it != m.symbols.begin() && tries < 16; ++tries) {
    --it;
    const std::uintptr_t low = it->low;
    auto first = it;
    while (first != m.symbols.begin() && std::prev(first)->low == low) --first;
    for (auto s = first; s != m.symbols.end() && s->low == low; ++s) {
      if (pc < s->high) return &*s;  // sorted by rank within one address
    }
    it = first;
  }
  return nullptr;
}

// The function of `pc` from the object's symbol tables (.symtab, else
// .dynsym), for the outermost frame when the debug info gave it no linkage
// name: the symbol's is mangled, so qualified and with its parameters (a
// static function, a lambda).
void name_from_symbols(module_state& m, std::uintptr_t pc, symbolized& out) {
  const module_state::symbol* symbol = symbol_at(m, pc);
  if (symbol == nullptr) return;
  if (out.frames.empty()) out.frames.emplace_back();
  source_location& outermost = out.frames.back();
  outermost.linkage_name = unversioned(symbol->name);
  outermost.function = demangle(outermost.linkage_name);
}

// The symbol-table function that holds `pc`, for the offset of a call in its
// function.
void note_symbol(module_state& m, std::uintptr_t pc, symbolized& out) {
  const module_state::symbol* symbol = symbol_at(m, pc);
  if (symbol == nullptr) return;
  out.symbol_start = symbol->low;
  out.symbol = unversioned(symbol->name);
}

void name_from_dladdr(std::uintptr_t pc, symbolized& out) {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<const void*>(pc), &info) == 0) return;
  if (info.dli_sname == nullptr || *info.dli_sname == '\0') return;
  if (out.frames.empty()) out.frames.emplace_back();
  source_location& outermost = out.frames.back();
  outermost.linkage_name = unversioned(info.dli_sname);
  outermost.function = demangle(outermost.linkage_name);
}

// ---- short names ----

bool is_identifier_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$';
}

// Operator names that hold brackets, longest first: copied whole, so that
// their '<', '>', '(', ')', '[' and ']' are not taken for brackets.
constexpr std::string_view operator_symbols[] = {"<=>", "<<=", ">>=", "->*", "()", "[]", "<<",
                                                 ">>",  "<=",  ">=",  "->",  "<",  ">"};

class name_shortener {
 public:
  name_shortener(std::string_view text, std::size_t max_template, std::size_t max_parameters)
      : text_(text), max_template_(max_template), max_parameters_(max_parameters) {}

  // Empty optional-like: returns false when the brackets do not balance.
  bool run(std::string& out) { return sequence('\0', 0, out) && position_ == text_.size(); }

 private:
  // Renders text up to `close` (not consumed) or, when close is '\0', to the
  // end; false when a bracket closes nothing or stays open.
  bool sequence(char close, int depth, std::string& out) {
    while (position_ < text_.size()) {
      const char c = text_[position_];
      if (close != '\0' && c == close) return true;
      if (at_operator_keyword()) {
        out += "operator";
        position_ += 8;
        after_operator_ = false;
        for (std::string_view symbol : operator_symbols) {
          if (text_.substr(position_).starts_with(symbol)) {
            out += symbol;
            position_ += symbol.size();
            after_operator_ = true;
            break;
          }
        }
        continue;
      }
      switch (c) {
        case '<': {
          if (!opens_template(out)) break;
          const std::size_t start = ++position_;
          std::string inner;
          if (!sequence('>', depth + 1, inner) || position_ >= text_.size()) return false;
          const std::size_t length = position_ - start;
          ++position_;
          out += length > max_template_ ? std::string("<...>") : "<" + inner + ">";
          after_operator_ = false;
          continue;
        }
        case '(': {
          ++position_;
          std::string inner;
          if (!sequence(')', depth + 1, inner) || position_ >= text_.size()) return false;
          ++position_;
          // Only the outer name's parameter lists: those inside template
          // arguments are part of a type.
          const bool shorten =
              depth == 0 && inner.size() > max_parameters_ && inner != "anonymous namespace";
          out += shorten ? std::string("(...)") : "(" + inner + ")";
          after_operator_ = false;
          continue;
        }
        case '[': {
          ++position_;
          std::string inner;
          if (!sequence(']', depth + 1, inner) || position_ >= text_.size()) return false;
          ++position_;
          out += "[" + inner + "]";
          after_operator_ = false;
          continue;
        }
        case '{': {  // {lambda(int)#1}, {unnamed type#1}: verbatim
          const std::size_t start = position_;
          int open = 0;
          do {
            if (text_[position_] == '{') ++open;
            if (text_[position_] == '}') --open;
            ++position_;
          } while (open > 0 && position_ < text_.size());
          if (open != 0) return false;
          out += text_.substr(start, position_ - start);
          after_operator_ = false;
          continue;
        }
        case ')':
        case ']':
        case '}':
          return false;
        default:
          break;
      }
      // A plain character; '<' and '>' that are no brackets (comparisons in
      // template arguments, "->") too.
      out += c;
      if (c != ' ') after_operator_ = false;
      ++position_;
    }
    return close == '\0';
  }

  bool at_operator_keyword() const {
    if (text_.compare(position_, 8, "operator") != 0) return false;
    if (position_ > 0 && is_identifier_char(text_[position_ - 1])) return false;
    return position_ + 8 >= text_.size() || !is_identifier_char(text_[position_ + 8]);
  }

  // A template argument list follows a name ("vector<"), an ABI tag
  // ("f[abi:cxx11]<"), or an operator and a space ("operator< <int>").
  bool opens_template(const std::string& out) const {
    if (out.empty()) return false;
    const char last = out.back();
    return is_identifier_char(last) || last == ']' || (last == ' ' && after_operator_);
  }

  std::string_view text_;
  std::size_t max_template_;
  std::size_t max_parameters_;
  std::size_t position_ = 0;
  bool after_operator_ = false;
};

}  // namespace

// ---- symbolizer ----

struct symbolizer::impl {
  std::vector<std::unique_ptr<module_state>> modules;
  bool scanned = false;
  loader_counts loader;  // at the last scan
  std::string main_program = main_program_path();
  std::unordered_map<std::uintptr_t, symbolized> cache;

  // Lists the loaded objects again, keeping the state of those still loaded.
  void scan() {
    struct found {
      std::string path;
      std::uintptr_t bias;
      std::vector<std::pair<std::uintptr_t, std::uintptr_t>> segments;
      std::string build_id;
      bool main_program;
    };
    struct context {
      std::vector<found> objects;
      loader_counts counts;
      bool first = true;
    } c;
    ::dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t size, void* data) {
          auto& c = *static_cast<context*>(data);
          if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
            c.counts = {info->dlpi_adds, info->dlpi_subs};
          }
          found object;
          if (info->dlpi_name != nullptr && *info->dlpi_name != '\0') object.path = info->dlpi_name;
          // The main program comes first, with no name.
          object.main_program = c.first && object.path.empty();
          c.first = false;
          object.bias = info->dlpi_addr;
          for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
            const ElfW(Phdr)& ph = info->dlpi_phdr[i];
            if (ph.p_type != PT_LOAD) continue;
            const std::uintptr_t low = info->dlpi_addr + ph.p_vaddr;
            object.segments.emplace_back(low, low + ph.p_memsz);
          }
          object.build_id = loaded_build_id(*info);
          c.objects.push_back(std::move(object));
          return 0;
        },
        &c);
    std::vector<std::unique_ptr<module_state>> updated;
    updated.reserve(c.objects.size());
    for (found& object : c.objects) {
      // The vDSO keeps its loader name ("linux-vdso.so.1"), which no file
      // has: libdwfl fails to open it and dladdr names its functions.
      if (object.main_program) object.path = main_program;
      auto same = std::find_if(modules.begin(), modules.end(), [&](const auto& m) {
        return m && m->path == object.path && m->bias == object.bias &&
               m->build_id == object.build_id;
      });
      if (same != modules.end()) {
        updated.push_back(std::move(*same));
        continue;
      }
      auto m = std::make_unique<module_state>();
      m->path = std::move(object.path);
      m->bias = object.bias;
      m->segments = std::move(object.segments);
      m->build_id = std::move(object.build_id);
      updated.push_back(std::move(m));
    }
    modules = std::move(updated);
    loader = c.counts;
    scanned = true;
  }

  module_state* find_module(std::uintptr_t pc) {
    if (!scanned) scan();
    for (const auto& m : modules) {
      if (m->contains(pc)) return m.get();
    }
    // Objects loaded (or unloaded) since the last scan?
    if (read_loader_counts() == loader) return nullptr;
    scan();
    for (const auto& m : modules) {
      if (m->contains(pc)) return m.get();
    }
    return nullptr;
  }

  void resolve(std::uintptr_t pc, symbolized& out) {
    module_state* m = find_module(pc);
    if (m == nullptr) {
      name_from_dladdr(pc, out);
      return;
    }
    out.module = m->path;
    out.module_base = m->bias;
    if (!m->opened) open_module(*m);
    if (m->dwarf != nullptr) describe_from_dwarf(*m, pc, out);
    if (out.frames.empty() || out.frames.back().linkage_name.empty()) {
      if (m->module != nullptr) name_from_symbols(*m, pc, out);
    }
    if (m->module != nullptr) note_symbol(*m, pc, out);
    // An object whose file libdwfl could not use (the vDSO, a deleted or
    // replaced file): what the dynamic loader knows.
    if (m->module == nullptr && (out.frames.empty() || out.frames.back().function.empty())) {
      name_from_dladdr(pc, out);
    }
  }

  // The state of an object no longer loaded where `origin` says it was:
  // its file reported at the recorded bias, used only if its build ID is
  // the recorded one.
  std::vector<std::unique_ptr<module_state>> unloaded;

  module_state& unloaded_module(const recorded_module& origin) {
    for (const auto& m : unloaded) {
      if (m->path == origin.path && m->bias == origin.bias && m->build_id == origin.build_id &&
          m->segments.size() == 1 && m->segments[0].first == origin.start &&
          m->segments[0].second == origin.end) {
        return *m;
      }
    }
    auto m = std::make_unique<module_state>();
    m->path = origin.path;
    m->bias = origin.bias;
    m->segments.emplace_back(origin.start, origin.end);
    m->build_id = origin.build_id;
    unloaded.push_back(std::move(m));
    return *unloaded.back();
  }

  // As resolve, from the file only: never dladdr, which would describe what
  // is loaded at pc now.
  static void resolve_unloaded(module_state& m, std::uintptr_t pc, symbolized& out) {
    out.module = m.path;
    out.module_base = m.bias;
    if (!m.opened) open_module(m);
    if (m.dwarf != nullptr) describe_from_dwarf(m, pc, out);
    if (m.module == nullptr) return;
    if (out.frames.empty() || out.frames.back().linkage_name.empty()) name_from_symbols(m, pc, out);
    note_symbol(m, pc, out);
  }
};

symbolizer::symbolizer() : impl_(std::make_unique<impl>()) {}
symbolizer::~symbolizer() = default;

const symbolized& symbolizer::symbolize(std::uintptr_t pc) {
  auto [it, inserted] = impl_->cache.try_emplace(pc);
  if (inserted) {
    try {
      impl_->resolve(pc, it->second);
    } catch (...) {
      impl_->cache.erase(it);
      throw;
    }
  }
  return it->second;
}

const symbolized& symbolizer::symbolize_in(std::uintptr_t pc, const recorded_module& origin) {
  if (origin.path.empty()) return symbolize(pc);  // the main program: never unloaded
  module_state& m = impl_->unloaded_module(origin);
  auto [it, inserted] = m.answers.try_emplace(pc);
  if (inserted) {
    try {
      impl::resolve_unloaded(m, pc, it->second);
    } catch (...) {
      m.answers.erase(it);
      throw;
    }
  }
  return it->second;
}

// ---- symbol_cache ----

struct symbol_cache::impl {
  std::mutex lock;
  std::unique_ptr<symbolizer> symbols;  // opened at the first address not cached
  std::unordered_map<std::uintptr_t, symbolized> answers;  // node-based: references stay valid
  unsigned long long unloaded = 0;  // loader_counts::subs when `answers` were given
};

symbol_cache::symbol_cache() : impl_(std::make_unique<impl>()) {}
symbol_cache::~symbol_cache() = default;

symbol_cache::session::session(symbol_cache& cache) : cache_(cache) {
  cache_.impl_->lock.lock();
  const unsigned long long unloaded = read_loader_counts().subs;
  if (unloaded != cache_.impl_->unloaded) {
    cache_.impl_->answers.clear();
    cache_.impl_->symbols.reset();
    cache_.impl_->unloaded = unloaded;
  }
}

symbol_cache::session::~session() { cache_.impl_->lock.unlock(); }

const symbolized& symbol_cache::session::symbolize(std::uintptr_t pc) {
  impl& cache = *cache_.impl_;
  auto [it, inserted] = cache.answers.try_emplace(pc);
  if (inserted) {
    try {
      if (cache.symbols == nullptr) cache.symbols = std::make_unique<symbolizer>();
      it->second = cache.symbols->symbolize(pc);
    } catch (...) {
      cache.answers.erase(it);
      throw;
    }
  }
  return it->second;
}

const symbolized& symbol_cache::session::symbolize_in(std::uintptr_t pc,
                                                      const recorded_module& origin) {
  impl& cache = *cache_.impl_;
  if (cache.symbols == nullptr) cache.symbols = std::make_unique<symbolizer>();
  return cache.symbols->symbolize_in(pc, origin);
}

std::string module_offset_name(const symbolized& s, std::uintptr_t pc) {
  if (s.module.empty()) return hex(pc);
  const std::size_t slash = s.module.rfind('/');
  return (slash == std::string::npos ? s.module : s.module.substr(slash + 1)) + "+" +
         hex(pc - s.module_base);
}

std::string short_name(std::string_view demangled, std::size_t max_template,
                       std::size_t max_parameters) {
  std::string out;
  out.reserve(demangled.size());
  name_shortener shortener(demangled, max_template, max_parameters);
  if (!shortener.run(out)) return std::string(demangled);
  return out;
}

}  // namespace memlimits::memprof::detail
