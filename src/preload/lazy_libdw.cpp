// preload/lazy_libdw.cpp — libdw (elfutils), loaded by the preload library
// only when a heap profile is symbolized, not at every exec: definitions of
// exactly the libdw functions that memprof/symbolizer.cpp calls, each a
// trampoline that opens libdw.so.1 (dlopen, RTLD_NOW | RTLD_LOCAL) and looks
// the function up (dlvsym, at the symbol version the static library links)
// at its first call, once and thread-safely (a function-local static).
// When libdw cannot be loaded or lacks the function, each returns its
// documented failure value (nullptr, -1, (Dwarf_Off) -1, DW_TAG_invalid):
// the symbolizer's dwfl_begin fails, and frames are named from the dynamic
// symbols (dladdr) or as object+offset, never with file:line; the profile
// is still written.
// Compiled into libmemlimits_preload.so only, which then needs libdw's
// headers but not its library; the static library `memlimits` links libdw.
// Hidden (the target's default visibility, and local in preload/exports.map):
// libdw's own references never bind to these, nor do the program's.
// Layer 8: depends on libdw's headers and the dynamic loader only.
#include <dlfcn.h>

#include <cstddef>

#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

namespace {

// libdw.so.1, opened at the first call of any function below; nullptr when
// it cannot be loaded (not installed, or a dependency missing). Never
// closed: libdwfl's sessions and strings live as long as the process.
void* libdw() noexcept {
  static void* const handle = ::dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
  return handle;
}

template <class Function>
Function libdw_function(const char* name, const char* version) noexcept {
  void* handle = libdw();
  return handle == nullptr ? nullptr : reinterpret_cast<Function>(::dlvsym(handle, name, version));
}

}  // namespace

// Defines `name` with the header's signature: forwards to libdw's, or
// returns `failure` (nothing, for a void function).
#define MEMLIMITS_LAZY_LIBDW(version, failure, type, name, parameters, arguments) \
  type name parameters {                                                          \
    static const auto real = libdw_function<decltype(&::name)>(#name, version);   \
    if (real == nullptr) return failure;                                          \
    return real arguments;                                                        \
  }

extern "C" {

// ---- libdwfl: sessions, modules, symbol tables ----

MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, Dwfl*, dwfl_begin,
                     (const Dwfl_Callbacks* callbacks), (callbacks))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", , void, dwfl_end, (Dwfl* dwfl), (dwfl))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", , void, dwfl_report_begin, (Dwfl* dwfl), (dwfl))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.156", nullptr, Dwfl_Module*, dwfl_report_elf,
                     (Dwfl* dwfl, const char* name, const char* file_name, int fd, GElf_Addr base,
                      bool add_p_vaddr),
                     (dwfl, name, file_name, fd, base, add_p_vaddr))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", -1, int, dwfl_report_end,
                     (Dwfl* dwfl,
                      int (*removed)(Dwfl_Module*, void*, const char*, Dwarf_Addr, void* arg),
                      void* arg),
                     (dwfl, removed, arg))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.138", -1, int, dwfl_module_build_id,
                     (Dwfl_Module* module, const unsigned char** bits, GElf_Addr* vaddr),
                     (module, bits, vaddr))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, Dwarf*, dwfl_module_getdwarf,
                     (Dwfl_Module* module, Dwarf_Addr* bias), (module, bias))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", -1, int, dwfl_module_getsymtab, (Dwfl_Module* module),
                     (module))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.158", nullptr, const char*, dwfl_module_getsym_info,
                     (Dwfl_Module* module, int index, GElf_Sym* symbol, GElf_Addr* address,
                      GElf_Word* section, Elf** elf, Dwarf_Addr* bias),
                     (module, index, symbol, address, section, elf, bias))
// Callbacks of Dwfl_Callbacks, called by libdwfl itself (hence loaded).
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.130", -1, int, dwfl_build_id_find_debuginfo,
                     (Dwfl_Module* module, void** user_data, const char* module_name,
                      Dwarf_Addr base, const char* file_name, const char* debuglink_file,
                      GElf_Word debuglink_crc, char** debuginfo_file_name),
                     (module, user_data, module_name, base, file_name, debuglink_file,
                      debuglink_crc, debuginfo_file_name))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", -1, int, dwfl_offline_section_address,
                     (Dwfl_Module* module, void** user_data, const char* module_name,
                      Dwarf_Addr base, const char* section_name, GElf_Word section_index,
                      const GElf_Shdr* section_header, Dwarf_Addr* address),
                     (module, user_data, module_name, base, section_name, section_index,
                      section_header, address))

// ---- libdw: units, DIEs, attributes, lines ----

MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.171", -1, int, dwarf_get_units,
                     (Dwarf* dwarf, Dwarf_CU* unit, Dwarf_CU** next, Dwarf_Half* version,
                      uint8_t* unit_type, Dwarf_Die* unit_die, Dwarf_Die* sub_die),
                     (dwarf, unit, next, version, unit_type, unit_die, sub_die))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.160", nullptr, Dwarf*, dwarf_cu_getdwarf, (Dwarf_CU* unit),
                     (unit))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, Dwarf_Die*, dwarf_offdie,
                     (Dwarf* dwarf, Dwarf_Off offset, Dwarf_Die* result), (dwarf, offset, result))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", static_cast<Dwarf_Off>(-1), Dwarf_Off, dwarf_dieoffset,
                     (Dwarf_Die* die), (die))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", -1, int, dwarf_child, (Dwarf_Die* die, Dwarf_Die* result),
                     (die, result))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", -1, int, dwarf_siblingof,
                     (Dwarf_Die* die, Dwarf_Die* result), (die, result))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", DW_TAG_invalid, int, dwarf_tag, (Dwarf_Die* die), (die))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, const char*, dwarf_diename, (Dwarf_Die* die), (die))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", -1, ptrdiff_t, dwarf_ranges,
                     (Dwarf_Die* die, ptrdiff_t offset, Dwarf_Addr* base, Dwarf_Addr* start,
                      Dwarf_Addr* end),
                     (die, offset, base, start, end))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, Dwarf_Attribute*, dwarf_attr,
                     (Dwarf_Die* die, unsigned int name, Dwarf_Attribute* result),
                     (die, name, result))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, Dwarf_Attribute*, dwarf_attr_integrate,
                     (Dwarf_Die* die, unsigned int name, Dwarf_Attribute* result),
                     (die, name, result))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, const char*, dwarf_formstring,
                     (Dwarf_Attribute* attribute), (attribute))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", -1, int, dwarf_formudata,
                     (Dwarf_Attribute* attribute, Dwarf_Word* value), (attribute, value))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, Dwarf_Die*, dwarf_formref_die,
                     (Dwarf_Attribute* attribute, Dwarf_Die* result), (attribute, result))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, Dwarf_Line*, dwarf_getsrc_die,
                     (Dwarf_Die* unit_die, Dwarf_Addr address), (unit_die, address))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, const char*, dwarf_linesrc,
                     (Dwarf_Line* line, Dwarf_Word* mtime, Dwarf_Word* length),
                     (line, mtime, length))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", -1, int, dwarf_lineno, (Dwarf_Line* line, int* number),
                     (line, number))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", -1, int, dwarf_getsrcfiles,
                     (Dwarf_Die* unit_die, Dwarf_Files** files, size_t* count),
                     (unit_die, files, count))
MEMLIMITS_LAZY_LIBDW("ELFUTILS_0.122", nullptr, const char*, dwarf_filesrc,
                     (Dwarf_Files* files, size_t index, Dwarf_Word* mtime, Dwarf_Word* length),
                     (files, index, mtime, length))

}  // extern "C"
