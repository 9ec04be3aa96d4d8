// platform/handler_search.cpp — the search phase of C++ unwinding, without
// the unwinding (platform/handler_search.hpp). The LSDA, FDE and CIE formats
// are read here as libsupc++'s eh_personality.cc and libgcc's unwind-pe.h
// define them; the reasoning behind each rule is in README.md here.
// Linux, the Itanium C++ ABI and libgcc's unwinder (also under clang, which
// uses them with libstdc++). Layer 1.
#include "platform/handler_search.hpp"

#include <dlfcn.h>
#include <link.h>
#include <unwind.h>

#include <atomic>
#include <cstddef>
#include <cstring>

#include "platform/x86_64_decode.hpp"

// Exported by libgcc_s (GCC_3.0) and libgcc_eh, though not declared in
// <unwind.h>: the FDE that covers `pc`, and the bases it is relative to.
struct dwarf_eh_bases {
  void* tbase;
  void* dbase;
  void* func;
};
extern "C" const void* _Unwind_Find_FDE(void* pc, dwarf_eh_bases* bases);
// C's personality routine (-fexceptions with cleanups): its frames are told
// from C++'s by it, and pass the call sites their table leaves out.
extern "C" _Unwind_Reason_Code __gcc_personality_v0(int, _Unwind_Action, _Unwind_Exception_Class,
                                                     _Unwind_Exception*, _Unwind_Context*);

namespace memlimits::platform {
namespace {

// DWARF exception-header pointer encodings (LSB Core, "DWARF Extensions").
constexpr unsigned char pe_absptr = 0x00;
constexpr unsigned char pe_uleb128 = 0x01;
constexpr unsigned char pe_udata2 = 0x02;
constexpr unsigned char pe_udata4 = 0x03;
constexpr unsigned char pe_udata8 = 0x04;
constexpr unsigned char pe_sleb128 = 0x09;
constexpr unsigned char pe_sdata2 = 0x0a;
constexpr unsigned char pe_sdata4 = 0x0b;
constexpr unsigned char pe_sdata8 = 0x0c;
constexpr unsigned char pe_pcrel = 0x10;
constexpr unsigned char pe_textrel = 0x20;
constexpr unsigned char pe_datarel = 0x30;
constexpr unsigned char pe_funcrel = 0x40;
constexpr unsigned char pe_aligned = 0x50;
constexpr unsigned char pe_indirect = 0x80;
constexpr unsigned char pe_omit = 0xff;

// LEB128: 7 bits a byte, low first, the high bit set on all but the last.
// `shift` receives the bits read, `last` the last byte (its 0x40 is the sign).
const unsigned char* read_leb128(const unsigned char* p, std::uint64_t* out, unsigned* shift,
                                 unsigned char* last) noexcept {
  std::uint64_t result = 0;
  unsigned bits = 0;
  unsigned char byte;
  do {
    byte = *p++;
    if (bits < 64) result |= static_cast<std::uint64_t>(byte & 0x7f) << bits;
    bits += 7;
  } while ((byte & 0x80) != 0);
  *out = result;
  *shift = bits;
  *last = byte;
  return p;
}

const unsigned char* read_uleb128(const unsigned char* p, std::uint64_t* out) noexcept {
  unsigned shift;
  unsigned char last;
  return read_leb128(p, out, &shift, &last);
}

const unsigned char* read_sleb128(const unsigned char* p, std::int64_t* out) noexcept {
  std::uint64_t result;
  unsigned shift;
  unsigned char last;
  p = read_leb128(p, &result, &shift, &last);
  if (shift < 64 && (last & 0x40) != 0) result |= ~std::uint64_t{0} << shift;
  *out = static_cast<std::int64_t>(result);
  return p;
}

template <class T>
T load(const unsigned char* p) noexcept {
  T value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

// Size of a fixed-size encoded value; 0 for the variable-length ones.
std::size_t encoded_size(unsigned char encoding) noexcept {
  if (encoding == pe_omit) return 0;
  switch (encoding & 0x0f) {
    case pe_absptr: return sizeof(void*);
    case pe_udata2: case pe_sdata2: return 2;
    case pe_udata4: case pe_sdata4: return 4;
    case pe_udata8: case pe_sdata8: return 8;
    default: return 0;
  }
}

// Reads one encoded value at p, applies `base` (or p itself, pc-relative)
// and the indirection; returns the byte after it, or nullptr if the
// encoding is unknown.
const unsigned char* read_encoded(unsigned char encoding, std::uintptr_t base,
                                  const unsigned char* p, std::uintptr_t* out) noexcept {
  if (encoding == pe_aligned) {
    auto a = (reinterpret_cast<std::uintptr_t>(p) + sizeof(void*) - 1) & ~(sizeof(void*) - 1);
    *out = *reinterpret_cast<const std::uintptr_t*>(a);
    return reinterpret_cast<const unsigned char*>(a + sizeof(void*));
  }
  const unsigned char* const start = p;
  std::uintptr_t result;
  switch (encoding & 0x0f) {
    case pe_absptr: result = load<std::uintptr_t>(p); p += sizeof(void*); break;
    case pe_uleb128: { std::uint64_t v; p = read_uleb128(p, &v); result = v; break; }
    case pe_sleb128: { std::int64_t v; p = read_sleb128(p, &v); result = static_cast<std::uintptr_t>(v); break; }
    case pe_udata2: result = load<std::uint16_t>(p); p += 2; break;
    case pe_udata4: result = load<std::uint32_t>(p); p += 4; break;
    case pe_udata8: result = load<std::uint64_t>(p); p += 8; break;
    case pe_sdata2: result = static_cast<std::uintptr_t>(load<std::int16_t>(p)); p += 2; break;
    case pe_sdata4: result = static_cast<std::uintptr_t>(load<std::int32_t>(p)); p += 4; break;
    case pe_sdata8: result = static_cast<std::uintptr_t>(load<std::int64_t>(p)); p += 8; break;
    default: return nullptr;
  }
  if (result != 0) {
    result += (encoding & 0x70) == pe_pcrel ? reinterpret_cast<std::uintptr_t>(start) : base;
    if ((encoding & pe_indirect) != 0) result = *reinterpret_cast<const std::uintptr_t*>(result);
  }
  *out = result;
  return p;
}

std::uintptr_t base_of(unsigned char encoding, _Unwind_Context* context) noexcept {
  if (encoding == pe_omit || context == nullptr) return 0;
  switch (encoding & 0x70) {
    case pe_textrel: return _Unwind_GetTextRelBase(context);
    case pe_datarel: return _Unwind_GetDataRelBase(context);
    case pe_funcrel: return _Unwind_GetRegionStart(context);
    default: return 0;  // absptr, pcrel, aligned
  }
}

// ---- FDE and CIE: a function's range and personality ----------------------

struct cie_info {
  unsigned char fde_encoding = pe_absptr;
  unsigned char lsda_encoding = pe_omit;
  std::uintptr_t personality = 0;
  bool has_augmentation_data = false;
  bool ok = false;
};

cie_info read_cie(const unsigned char* cie) noexcept {
  cie_info info;
  if (load<std::uint32_t>(cie) == 0xffffffffu) return info;  // 64-bit DWARF: not emitted here
  const unsigned char* p = cie + 8;  // length, CIE id
  const unsigned char version = *p++;
  const char* augmentation = reinterpret_cast<const char*>(p);
  p += std::strlen(augmentation) + 1;
  if (version >= 4) p += 2;  // address size, segment selector size
  std::uint64_t u;
  std::int64_t s;
  p = read_uleb128(p, &u);  // code alignment
  p = read_sleb128(p, &s);  // data alignment
  if (version == 1) {
    ++p;  // return address register
  } else {
    p = read_uleb128(p, &u);
  }
  if (augmentation[0] != 'z') {
    info.ok = augmentation[0] == '\0';
    return info;
  }
  p = read_uleb128(p, &u);  // augmentation data length
  info.has_augmentation_data = true;
  for (const char* a = augmentation + 1; *a != '\0'; ++a) {
    switch (*a) {
      case 'R': info.fde_encoding = *p++; break;
      case 'L': info.lsda_encoding = *p++; break;
      case 'P': {
        const unsigned char encoding = *p++;
        p = read_encoded(encoding, 0, p, &info.personality);
        if (p == nullptr) return info;
        break;
      }
      case 'S': case 'B': case 'G': break;
      default: return info;  // unknown augmentation: its data cannot be skipped
    }
  }
  info.ok = true;
  return info;
}

struct function_info {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  std::uintptr_t personality = 0;
  const unsigned char* lsda = nullptr;
};

// The function (or the part of one: GCC moves cold code, landing pads
// among it, to a part with its own FDE and LSDA) that contains `pc`.
bool find_function(std::uintptr_t pc, function_info* out) noexcept {
  dwarf_eh_bases bases{};
  const auto* fde =
      static_cast<const unsigned char*>(_Unwind_Find_FDE(reinterpret_cast<void*>(pc), &bases));
  if (fde == nullptr || load<std::uint32_t>(fde) == 0xffffffffu) return false;
  const unsigned char* cie = fde + 4 - load<std::int32_t>(fde + 4);
  const cie_info cie_data = read_cie(cie);
  const unsigned char range_encoding = cie_data.fde_encoding & 0x0f;
  const std::size_t field = encoded_size(range_encoding);
  if (!cie_data.ok || field == 0) return false;
  std::uintptr_t range = 0;
  const unsigned char* p = read_encoded(range_encoding, 0, fde + 8 + field, &range);
  if (p == nullptr) return false;
  out->begin = reinterpret_cast<std::uintptr_t>(bases.func);
  out->end = out->begin + range;
  out->personality = cie_data.personality;
  out->lsda = nullptr;
  if (cie_data.has_augmentation_data) {
    std::uint64_t length;
    p = read_uleb128(p, &length);
    if (cie_data.lsda_encoding != pe_omit && length != 0) {
      std::uintptr_t lsda = 0;
      if (read_encoded(cie_data.lsda_encoding, 0, p, &lsda) != nullptr) {
        out->lsda = reinterpret_cast<const unsigned char*>(lsda);
      }
    }
  }
  return true;
}

// ---- what a call instruction calls ----------------------------------------
// Some of the search's answers depend on what a frame's code does with the
// exception: whether a landing pad calls std::terminate, whether a handler
// rethrows from a call site that terminates. The code is read for direct
// calls (x86-64 `call rel32`); a call through the PLT is named by the
// dynamic relocation of its GOT slot.

enum class callee : std::uint8_t {
  other,
  begin_catch,      // __cxa_begin_catch: a handler's first call
  end_catch,        // __cxa_end_catch: a handler's last call
  throws,           // __cxa_throw, __cxa_rethrow: a handler throws
  resume,           // _Unwind_Resume: after cleanups, unwinding goes on
  terminate,        // std::terminate, __cxa_call_terminate
  no_return,        // abort, sanitizers' error reports, std::__throw_*: the path ends
  clang_terminate,  // clang's __clang_call_terminate
};

bool starts_with(const char* s, const char* prefix) noexcept {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}
bool ends_with(const char* s, const char* suffix) noexcept {
  const std::size_t n = std::strlen(s);
  const std::size_t m = std::strlen(suffix);
  return n >= m && std::strcmp(s + n - m, suffix) == 0;
}

callee callee_named(const char* name) noexcept {
  if (std::strcmp(name, "__cxa_begin_catch") == 0) return callee::begin_catch;
  if (std::strcmp(name, "__cxa_end_catch") == 0) return callee::end_catch;
  if (std::strcmp(name, "__cxa_rethrow") == 0 || std::strcmp(name, "__cxa_throw") == 0) {
    return callee::throws;
  }
  // The library's own error paths (std::__throw_length_error and the like,
  // in inlined code) throw exceptions of their own, not the one being
  // handled: for the search, paths that end.
  if (std::strcmp(name, "__cxa_bad_cast") == 0 || std::strcmp(name, "__cxa_bad_typeid") == 0 ||
      std::strcmp(name, "__cxa_throw_bad_array_new_length") == 0 ||
      (starts_with(name, "_ZSt") && std::strstr(name, "__throw_") != nullptr) ||
      std::strcmp(name, "abort") == 0 || std::strcmp(name, "__assert_fail") == 0 ||
      std::strcmp(name, "__stack_chk_fail") == 0 || std::strcmp(name, "exit") == 0 ||
      std::strcmp(name, "_exit") == 0 || starts_with(name, "__asan_report_") ||
      (starts_with(name, "__ubsan_handle_") && ends_with(name, "_abort"))) {
    return callee::no_return;
  }
  if (std::strcmp(name, "_Unwind_Resume") == 0) return callee::resume;
  if (std::strcmp(name, "_ZSt9terminatev") == 0 || std::strcmp(name, "__cxa_call_terminate") == 0) {
    return callee::terminate;
  }
  return callee::other;
}

// clang marks a noexcept function by a catch-all handler whose landing pad
// runs the call site's cleanups, then calls __clang_call_terminate:
//   [endbr64] push %rax; call __cxa_begin_catch; call std::terminate
// a hidden function that each object defines, so it has no dynamic symbol:
// it is recognised by its exact code and size.
bool is_clang_call_terminate(const function_info& f, std::uintptr_t target) noexcept {
  if (f.begin != target) return false;
  const auto* code = reinterpret_cast<const unsigned char*>(target);
  std::size_t prefix = 0;
  if (f.end - f.begin == 15 && std::memcmp(code, "\xf3\x0f\x1e\xfa", 4) == 0) prefix = 4;  // endbr64
  if (f.end - f.begin != 11 + prefix) return false;
  code += prefix;
  return code[0] == 0x50 && code[1] == 0xe8 && code[6] == 0xe8;
}

// The symbol whose GOT slot a PLT entry at `stub` jumps through, or nullptr.
const char* plt_symbol(std::uintptr_t stub) noexcept {
  const auto* code = reinterpret_cast<const unsigned char*>(stub);
  if (std::memcmp(code, "\xf3\x0f\x1e\xfa", 4) == 0) code += 4;  // endbr64 (IBT PLT)
  if (code[0] == 0xf2) ++code;                                     // bnd
  if (code[0] != 0xff || code[1] != 0x25) return nullptr;          // jmp *slot(%rip)
  const std::uintptr_t slot =
      reinterpret_cast<std::uintptr_t>(code) + 6 + static_cast<std::uintptr_t>(load<std::int32_t>(code + 2));
  Dl_info info;
  link_map* map = nullptr;
  if (::dladdr1(reinterpret_cast<void*>(stub), &info, reinterpret_cast<void**>(&map),
                RTLD_DL_LINKMAP) == 0 ||
      map == nullptr || map->l_ld == nullptr) {
    return nullptr;
  }
  std::uintptr_t tables[4] = {};  // DT_JMPREL, DT_PLTRELSZ, DT_RELA, DT_RELASZ
  const ElfW(Sym)* symbols = nullptr;
  const char* strings = nullptr;
  // ld.so relocates the dynamic section's addresses in place on this
  // platform; an unrelocated one is an offset from the load address.
  const auto address = [&](ElfW(Addr) a) { return a < map->l_addr ? a + map->l_addr : a; };
  for (const ElfW(Dyn)* d = map->l_ld; d->d_tag != DT_NULL; ++d) {
    switch (d->d_tag) {
      case DT_JMPREL: tables[0] = address(d->d_un.d_ptr); break;
      case DT_PLTRELSZ: tables[1] = d->d_un.d_val; break;
      case DT_RELA: tables[2] = address(d->d_un.d_ptr); break;
      case DT_RELASZ: tables[3] = d->d_un.d_val; break;
      case DT_SYMTAB: symbols = reinterpret_cast<const ElfW(Sym)*>(address(d->d_un.d_ptr)); break;
      case DT_STRTAB: strings = reinterpret_cast<const char*>(address(d->d_un.d_ptr)); break;
      default: break;
    }
  }
  if (symbols == nullptr || strings == nullptr) return nullptr;
  for (int t = 0; t < 4; t += 2) {
    const auto* relocation = reinterpret_cast<const ElfW(Rela)*>(tables[t]);
    const std::size_t count = tables[t + 1] / sizeof(ElfW(Rela));
    for (std::size_t i = 0; relocation != nullptr && i < count; ++i) {
      if (map->l_addr + relocation[i].r_offset == slot) {
        return strings + symbols[ELF64_R_SYM(relocation[i].r_info)].st_name;
      }
    }
  }
  return nullptr;
}

// Answers that depend only on code, kept for the life of the process:
// addresses up to 2^56 with an 8-bit value, in an insert-only open-addressing
// table (lock-free; a full neighbourhood just goes uncached). Libraries are
// not unloaded while their code is on a stack being searched; a library
// unloaded and another loaded at the same address could be answered from
// here, which the search accepts for code it only reads for hints.
class code_cache {
 public:
  // 0: not known.
  unsigned lookup(std::uintptr_t key) const noexcept {
    for (std::size_t i = 0, at = slot_of(key); i < probes; ++i, at = (at + 1) % slots) {
      const std::uint64_t entry = table_[at].load(std::memory_order_acquire);
      if (entry == 0) return 0;
      if ((entry >> 8) == key) return static_cast<unsigned>(entry & 0xff);
    }
    return 0;
  }
  // value: 1..255.
  void insert(std::uintptr_t key, unsigned value) noexcept {
    const std::uint64_t entry = (static_cast<std::uint64_t>(key) << 8) | value;
    for (std::size_t i = 0, at = slot_of(key); i < probes; ++i, at = (at + 1) % slots) {
      std::uint64_t expected = 0;
      if (table_[at].compare_exchange_strong(expected, entry, std::memory_order_acq_rel)) return;
      if ((expected >> 8) == key) return;
    }
  }

 private:
  static constexpr std::size_t slots = 4096;
  static constexpr std::size_t probes = 16;
  static std::size_t slot_of(std::uintptr_t key) noexcept {
    return static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ull) >> 52) % slots;
  }
  std::atomic<std::uint64_t> table_[slots] = {};
};

constinit code_cache callees;  // call target -> callee + 1

callee resolve_callee(std::uintptr_t target) noexcept {
  function_info f;
  // Only code the unwinder knows is read: a byte 0xe8 that is no call
  // points anywhere.
  if (!find_function(target, &f)) return callee::other;
  if (is_clang_call_terminate(f, target)) return callee::clang_terminate;
  if (f.begin == target) {
    // A direct call (a static link, or inside libstdc++): by address.
    Dl_info info;
    if (::dladdr(reinterpret_cast<void*>(target), &info) != 0 && info.dli_sname != nullptr &&
        reinterpret_cast<std::uintptr_t>(info.dli_saddr) == target) {
      return callee_named(info.dli_sname);
    }
    return callee::other;
  }
  const char* name = plt_symbol(target);
  return name != nullptr ? callee_named(name) : callee::other;
}

callee callee_at(std::uintptr_t target) noexcept {
  if (target >> 56 != 0) return callee::other;
  if (const unsigned known = callees.lookup(target); known != 0) {
    return static_cast<callee>(known - 1);
  }
  const callee kind = resolve_callee(target);
  callees.insert(target, static_cast<unsigned>(kind) + 1);
  return kind;
}

// Where a landing pad's code leads, over all its paths: the pad is
// followed instruction by instruction (platform/x86_64_decode.hpp) through
// cleanups (destructor calls), jumps and branches. This is how g++'s and
// clang's noexcept pads are told from ordinary ones (README.md here).
//  * A cleanup pad (follow::cleanup): each path ends at _Unwind_Resume
//    (unwinding goes on), __cxa_begin_catch (a handler of another clause),
//    __cxa_throw / __cxa_rethrow, or std::terminate / __clang_call_terminate.
//  * A handler's pad (follow::handler): the handler's code is followed to
//    __cxa_end_catch (the exception is swallowed) or to a call that throws
//    (a rethrow): `on_throw(call address)` says whether that one
//    terminates. Paths to std::terminate belong to other clauses of the
//    same pad (a selector dispatch) and end there.
enum class follow : std::uint8_t { cleanup, handler };

struct pad_paths {
  bool terminate = false;  // cleanup: a path to std::terminate; handler: a throw that terminates
  bool rethrow = false;    // handler: a throw that goes on unwinding
  bool unknown = false;    // a path that could not be followed
};

template <class OnThrow>
pad_paths follow_pad(std::uintptr_t landing_pad, follow mode, OnThrow&& on_throw) noexcept {
  pad_paths out;
#if defined(__x86_64__)
  constexpr int max_instructions = 8192;
  constexpr int max_paths = 512;  // sanitizers branch at every memory access
  std::uintptr_t pending[max_paths];
  std::uintptr_t started[max_paths];
  int pending_count = 0;
  int started_count = 0;
  const auto add_path = [&](std::uintptr_t at) {
    for (int i = 0; i < started_count; ++i) {
      if (started[i] == at) return;  // explored already (a loop, or paths that join)
    }
    if (started_count == max_paths) {
      out.unknown = true;
      return;
    }
    started[started_count++] = at;
    pending[pending_count++] = at;
  };
  // Whether the path goes on after a call to `kind` at `at`.
  const auto on_call = [&](callee kind, std::uintptr_t at) {
    switch (kind) {
      case callee::terminate:
      case callee::clang_terminate:
        if (mode == follow::cleanup) out.terminate = true;
        return false;
      case callee::throws:
        if (mode == follow::handler) {
          if (on_throw(at)) {
            out.terminate = true;
          } else {
            out.rethrow = true;
          }
        }
        return false;
      case callee::resume:
        // Cleanup: unwinding goes on. Handler: the path of an exception no
        // clause of the pad matched, not this one's.
        return false;
      case callee::no_return: return false;
      case callee::begin_catch: return mode == follow::handler;
      case callee::end_catch: return mode == follow::cleanup;
      case callee::other: return true;
    }
    return true;
  };
  add_path(landing_pad);
  int budget = max_instructions;
  while (pending_count > 0 && !out.terminate && !out.unknown) {
    std::uintptr_t at = pending[--pending_count];
    function_info f;
    if (!find_function(at, &f)) {
      out.unknown = true;
      break;
    }
    for (bool more = true; more;) {
      if (--budget < 0) {
        out.unknown = true;
        return out;
      }
      // Code does not fall through the end of a function (or of its cold
      // part): only after a call that does not return (a sanitizer's
      // report, say), where this path ends.
      if (at >= f.end) break;
      const x86_64::instruction i = x86_64::decode(at, f.end - at);
      switch (i.kind) {
        case x86_64::instruction::flow::next:
          at += i.length;
          break;
        case x86_64::instruction::flow::call:
          more = on_call(callee_at(i.target), at);
          if (more) at += i.length;
          break;
        case x86_64::instruction::flow::jump:
          // A tail call (jmp __cxa_end_catch) ends the path as its call would.
          if (const callee kind = callee_at(i.target); kind != callee::other) {
            on_call(kind, at);
          } else {
            add_path(i.target);
          }
          more = false;
          break;
        case x86_64::instruction::flow::branch:
          add_path(i.target);
          add_path(at + i.length);
          more = false;
          break;
        case x86_64::instruction::flow::end:
          more = false;
          break;
        case x86_64::instruction::flow::unknown:
          out.unknown = true;
          more = false;
          break;
      }
    }
  }
#else
  (void)landing_pad;
  (void)mode;
  (void)on_throw;
  out.unknown = true;  // the code is not read: every pad is taken for a boundary
#endif
  return out;
}

// A cleanup (or catch-all) pad through which the exception may reach
// std::terminate.
bool pad_may_terminate(std::uintptr_t landing_pad) noexcept {
  const pad_paths paths = follow_pad(landing_pad, follow::cleanup, [](std::uintptr_t) { return false; });
  return paths.terminate || paths.unknown;
}

// ---- the LSDA --------------------------------------------------------------

struct lsda_info {
  std::uintptr_t region;   // the start of the code the call sites are relative to
  std::uintptr_t lpstart;  // landing pads are relative to it
  unsigned char ttype_encoding;
  const unsigned char* ttype;  // end of the type table; nullptr if none
  unsigned char call_site_encoding;
  const unsigned char* call_sites;
  const unsigned char* action_table;
};

// `context` may be null (an LSDA found from an FDE, not from a frame):
// text- and data-relative encodings then read as 0; x86-64 uses neither.
bool read_lsda_header(_Unwind_Context* context, std::uintptr_t region, const unsigned char* p,
                      lsda_info* info) noexcept {
  info->region = region;
  const unsigned char lpstart_encoding = *p++;
  info->lpstart = region;
  if (lpstart_encoding != pe_omit) {
    p = read_encoded(lpstart_encoding, base_of(lpstart_encoding, context), p, &info->lpstart);
    if (p == nullptr) return false;
  }
  info->ttype_encoding = *p++;
  info->ttype = nullptr;
  std::uint64_t offset;
  if (info->ttype_encoding != pe_omit) {
    p = read_uleb128(p, &offset);
    info->ttype = p + offset;
  }
  info->call_site_encoding = *p++;
  p = read_uleb128(p, &offset);
  info->call_sites = p;
  info->action_table = p + offset;
  return true;
}

struct call_site {
  bool found = false;               // false: std::terminate (the C++ personality)
  std::uintptr_t landing_pad = 0;   // 0: nothing to do in this frame
  std::uint64_t action = 0;         // 0: cleanups only; else 1 + offset in the action table
};

bool find_call_site(const lsda_info& info, std::uintptr_t ip, call_site* out) noexcept {
  const unsigned char* p = info.call_sites;
  while (p < info.action_table) {
    std::uintptr_t start, length, pad;
    std::uint64_t action;
    p = read_encoded(info.call_site_encoding, 0, p, &start);
    if (p != nullptr) p = read_encoded(info.call_site_encoding, 0, p, &length);
    if (p != nullptr) p = read_encoded(info.call_site_encoding, 0, p, &pad);
    if (p == nullptr) return false;
    p = read_uleb128(p, &action);
    if (ip < info.region + start) break;  // the table is sorted: ip is in no entry
    if (ip < info.region + start + length) {
      out->found = true;
      out->landing_pad = pad != 0 ? info.lpstart + pad : 0;
      out->action = action;
      return true;
    }
  }
  *out = {};
  return true;
}

// Entry `index` (>= 1) of the type table: a type_info, or nullptr for
// catch (...). `ok` false when the table cannot be read.
const std::type_info* type_entry(const lsda_info& info, std::uint64_t index,
                                 _Unwind_Context* context, bool* ok) noexcept {
  const std::size_t size = encoded_size(info.ttype_encoding);
  *ok = info.ttype != nullptr && size != 0;
  if (!*ok) return nullptr;
  std::uintptr_t pointer = 0;
  *ok = read_encoded(info.ttype_encoding, base_of(info.ttype_encoding, context),
                     info.ttype - index * size, &pointer) != nullptr;
  return reinterpret_cast<const std::type_info*>(pointer);
}

bool catches(const std::type_info* handler, const handler_query& query) noexcept {
  // libsupc++'s rule (get_adjusted_ptr): the handler's type_info decides,
  // with the thrown object's address to adjust for a base class.
  void* object = query.object;
  return handler->__do_catch(query.type, &object, 1);
}

enum class chain_result : std::uint8_t {
  nothing,
  cleanup,
  handler,
  catch_all,            // the first catch clause of the chain
  catch_all_after_typed,  // after typed clauses that did not match
  terminates,
};

// The action chain of a call site, in order: the first filter that applies
// decides, as in the personality's search phase.
chain_result run_chain(const lsda_info& info, std::uint64_t action, _Unwind_Context* context,
                       const handler_query& query) noexcept {
  bool cleanup = false;
  bool typed = false;
  const unsigned char* record = info.action_table + action - 1;
  for (;;) {
    std::int64_t filter, displacement;
    const unsigned char* next = read_sleb128(record, &filter);
    read_sleb128(next, &displacement);
    if (filter > 0) {
      bool ok;
      const std::type_info* type = type_entry(info, static_cast<std::uint64_t>(filter), context, &ok);
      if (!ok) return chain_result::terminates;
      if (type == nullptr) return typed ? chain_result::catch_all_after_typed : chain_result::catch_all;
      if (catches(type, query)) return chain_result::handler;
      typed = true;
    } else if (filter < 0) {
      // An exception specification: the types it allows, 0-terminated.
      // One that does not allow the exception calls std::terminate (via
      // std::unexpected before C++17).
      if (info.ttype == nullptr) return chain_result::terminates;
      const unsigned char* list = info.ttype - filter - 1;
      bool allowed = false;
      for (;;) {
        std::uint64_t index;
        list = read_uleb128(list, &index);
        if (index == 0) break;
        bool ok;
        const std::type_info* type = type_entry(info, index, context, &ok);
        if (ok && type != nullptr && catches(type, query)) {
          allowed = true;
          break;
        }
      }
      if (!allowed) return chain_result::terminates;
    } else {
      cleanup = true;
    }
    if (displacement == 0) return cleanup ? chain_result::cleanup : chain_result::nothing;
    record = next + displacement;
  }
}

bool is_c_frame(const function_info& f) noexcept {
  return f.personality == reinterpret_cast<std::uintptr_t>(&__gcc_personality_v0);
}

// The call-site entry of `ip` in the LSDA of the code that starts at
// `region`; false if the LSDA cannot be read.
bool site_of(const unsigned char* lsda, std::uintptr_t region, std::uintptr_t ip,
             _Unwind_Context* context, lsda_info* info, call_site* site) noexcept {
  return read_lsda_header(context, region, lsda, info) && find_call_site(*info, ip, site);
}

// Whether a throw from the call instruction at `call` (a rethrow in a
// handler, say) would terminate in its own frame: a call site missing from
// the table (g++'s noexcept), or one caught by clang's terminate pad.
bool throw_site_terminates(std::uintptr_t call, const handler_query& query) noexcept {
  const std::uintptr_t ip = call + 4;  // inside the 5-byte call, as a return address - 1
  function_info f;
  if (!find_function(ip, &f) || f.lsda == nullptr || is_c_frame(f)) return false;
  lsda_info info;
  call_site site;
  if (!site_of(f.lsda, f.begin, ip, nullptr, &info, &site)) return true;
  if (!site.found) return true;
  if (site.landing_pad == 0) return false;
  if (site.action == 0) return pad_may_terminate(site.landing_pad);
  switch (run_chain(info, site.action, nullptr, query)) {
    case chain_result::terminates: return true;
    case chain_result::nothing: case chain_result::handler: return false;
    default: return pad_may_terminate(site.landing_pad);
  }
}

enum class frame_action : std::uint8_t {
  none,        // passed through
  handler,     // a handler that may rethrow: the search goes on above
  caught,      // a handler that ends the exception here
  terminates,
};

// What the exception meets in one frame. `trusted_handler`: a handler here
// is known to end the search (the guard's), its code need not be read.
frame_action classify(_Unwind_Context* context, const handler_query& query,
                      bool trusted_handler) noexcept {
  const auto* lsda = static_cast<const unsigned char*>(_Unwind_GetLanguageSpecificData(context));
  if (lsda == nullptr) return frame_action::none;  // no handlers, no cleanups: passed through
  int before_instruction = 0;
  std::uintptr_t ip = _Unwind_GetIPInfo(context, &before_instruction);
  if (before_instruction == 0) --ip;  // a return address: the call is the byte before

  function_info function;
  const bool known = find_function(ip, &function);
  // C frames with cleanups (__attribute__((cleanup)) under -fexceptions)
  // have an LSDA for __gcc_personality_v0, which passes call sites that are
  // not in its table, and has no handlers.
  const bool c_frame = known && is_c_frame(function);

  lsda_info info;
  call_site site;
  if (!site_of(lsda, _Unwind_GetRegionStart(context), ip, context, &info, &site)) {
    return frame_action::terminates;  // unreadable: never trusted
  }
  if (!site.found) return c_frame ? frame_action::none : frame_action::terminates;
  if (site.landing_pad == 0 || c_frame) return frame_action::none;
  if (site.action == 0) {
    // Cleanups only: they run, then unwinding resumes, unless the pad is a
    // noexcept region's (g++ runs the region's cleanups, then terminates).
    return pad_may_terminate(site.landing_pad) ? frame_action::terminates : frame_action::none;
  }

  switch (run_chain(info, site.action, context, query)) {
    case chain_result::nothing:
      return frame_action::none;
    case chain_result::terminates:
      return frame_action::terminates;
    case chain_result::catch_all_after_typed:
    case chain_result::catch_all:
      // clang's noexcept: a catch-all whose pad runs the cleanups, then
      // calls __clang_call_terminate. After typed clauses the pad dispatches
      // on the selector: any path to terminate is taken for the catch-all's.
      if (pad_may_terminate(site.landing_pad)) return frame_action::terminates;
      [[fallthrough]];
    case chain_result::handler: {
      // Caught here, the exception leaves this frame again only if the
      // handler throws: from a call site that may itself terminate (a
      // catch (...) { throw; } inlined into a noexcept function), or that
      // goes on unwinding. A handler none of whose paths throws ends it.
      // (The clauses of one call site share a landing pad that dispatches
      // on the selector: the paths of every clause are followed.)
      if (trusted_handler) return frame_action::handler;
      const pad_paths paths = follow_pad(site.landing_pad, follow::handler, [&](std::uintptr_t call) {
        return throw_site_terminates(call, query);
      });
      if (paths.terminate || paths.unknown) return frame_action::terminates;
      return paths.rethrow ? frame_action::handler : frame_action::caught;
    }
    case chain_result::cleanup:
      // The landing pad runs. g++ encodes a noexcept function's try block
      // whose handlers do not match as a cleanup whose pad terminates.
      return pad_may_terminate(site.landing_pad) ? frame_action::terminates : frame_action::none;
  }
  return frame_action::terminates;
}

struct walk {
  const handler_query* query;
  handler_answer* answer;
  bool started = false;
  bool handler_seen = false;
  bool decided = false;
  bool awaiting_caller = false;  // the next frame is the boundary's caller

  // The frame making its call at `sp` would terminate: the boundary, until
  // an outer one is found; its caller is the next frame.
  void mark_boundary(std::uintptr_t sp) noexcept {
    answer->boundary_sp = sp;
    answer->boundary_return = return_address_at(sp);
    answer->caller_sp = answer->caller_return = 0;
    awaiting_caller = true;
  }
};

_Unwind_Reason_Code visit(_Unwind_Context* context, void* arg) {
  walk& w = *static_cast<walk*>(arg);
  const std::uintptr_t ip = _Unwind_GetIP(context);
  if (ip == 0) return _URC_END_OF_STACK;
  if (!w.started) {
    if (ip != reinterpret_cast<std::uintptr_t>(w.query->from)) return _URC_NO_REASON;
    w.started = true;
    w.answer->from_found = true;
  }
  ++w.answer->frames;
  // In a backtrace callback, libgcc's CFA is the one of the frame below:
  // this frame's stack pointer at the call it is making.
  const std::uintptr_t sp = _Unwind_GetCFA(context);
  const bool past_stop = w.query->stop_above != 0 && sp >= w.query->stop_above;
  if (w.awaiting_caller) {
    w.answer->caller_sp = sp;
    w.answer->caller_return = return_address_at(sp);
    w.awaiting_caller = false;
  }
  if (w.decided) {
    // It terminates: the walk goes on only to find the outermost boundary
    // below the stop, which stays on the stack the longest (the root of a
    // recursive noexcept teardown, not the node being destroyed).
    if (past_stop) return _URC_END_OF_STACK;
    if (classify(context, *w.query, false) == frame_action::terminates) w.mark_boundary(sp);
    return _URC_NO_REASON;
  }
  switch (classify(context, *w.query, past_stop)) {
    case frame_action::terminates:
      w.answer->outcome = throw_outcome::terminates;
      w.mark_boundary(sp);
      w.decided = true;
      // Without a stop, the walk would go on to the end of the stack.
      return w.query->stop_above != 0 ? _URC_NO_REASON : _URC_END_OF_STACK;
    case frame_action::handler:
      w.handler_seen = true;
      if (past_stop) {
        w.answer->outcome = throw_outcome::caught;
        w.decided = true;
        return _URC_END_OF_STACK;
      }
      return _URC_NO_REASON;
    case frame_action::caught:
      w.answer->outcome = throw_outcome::caught;
      w.decided = true;
      return _URC_END_OF_STACK;
    case frame_action::none:
      return _URC_NO_REASON;
  }
  return _URC_NO_REASON;
}

}  // namespace

handler_answer search_handler(const handler_query& query) noexcept {
  handler_answer answer;
  walk w{&query, &answer};
  _Unwind_Backtrace(&visit, &w);
  if (!w.decided) {
    answer.outcome = w.started && w.handler_seen ? throw_outcome::caught : throw_outcome::terminates;
  }
  return answer;
}

__attribute__((no_sanitize("address", "hwaddress"))) std::uintptr_t return_address_at(
    std::uintptr_t sp) noexcept {
#if defined(__x86_64__)
  // `call` pushed it just below the caller's stack pointer.
  return *reinterpret_cast<const std::uintptr_t*>(sp - sizeof(std::uintptr_t));
#else
  (void)sp;
  return 0;
#endif
}

}  // namespace memlimits::platform
