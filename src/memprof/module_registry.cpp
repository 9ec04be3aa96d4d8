// memprof/module_registry.cpp — the objects that held a heap profile's
// frames (memprof/module_registry.hpp): recorded on the allocation path when
// a stack is first seen, through glibc's _dl_find_object (lock-free,
// async-signal-safe, no allocation), in pages of their own; read back, and
// compared with what is loaded, when a profile is written. And the reader
// of a loaded object's build-ID note.
// Layer 6 (memprof); uses platform/ (pages).
//
// What _dl_find_object gives of the object that holds an address: its
// mapped range (l_map_start to l_map_end: the first PT_LOAD's page holds the
// ELF header, since that segment maps the file from offset 0) and its
// link_map (l_name, l_addr). The program headers are read from the header's
// page (every linker puts them right after the header), and only there: that
// page is mapped and readable, since the header was. An object whose
// headers are not found that way still gets a record (path, bias, range),
// without build ID or executable segment.
#include "memprof/module_registry.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "platform/platform.hpp"

namespace memlimits::memprof::detail {

#if defined(DLFO_EH_SEGMENT_TYPE)  // <dlfcn.h> of glibc 2.35 or later: _dl_find_object
const bool module_registry::supported = true;
#else
const bool module_registry::supported = false;
#endif

namespace {

constexpr std::size_t max_build_id = 64;  // bytes; SHA-1 IDs have 20, UUIDs 16

// Whether [vaddr, vaddr + size) of a loaded object is in one of its PT_LOAD
// segments, hence mapped.
bool is_loaded(const ElfW(Phdr) * phdr, std::size_t phnum, ElfW(Addr) vaddr, ElfW(Xword) size) {
  for (std::size_t i = 0; i < phnum; ++i) {
    const ElfW(Phdr)& ph = phdr[i];
    if (ph.p_type == PT_LOAD && ph.p_vaddr <= vaddr && size <= ph.p_memsz &&
        vaddr - ph.p_vaddr <= ph.p_memsz - size) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::span<const unsigned char> loaded_build_id_note(std::uintptr_t bias, const ElfW(Phdr) * phdr,
                                                    std::size_t phnum) noexcept {
  for (std::size_t i = 0; i < phnum; ++i) {
    const ElfW(Phdr)& ph = phdr[i];
    if (ph.p_type != PT_NOTE || !is_loaded(phdr, phnum, ph.p_vaddr, ph.p_memsz)) continue;
    const auto* p = reinterpret_cast<const unsigned char*>(bias + ph.p_vaddr);
    const unsigned char* const end = p + ph.p_memsz;
    const std::size_t align = ph.p_align > 4 ? ph.p_align : 4;
    const auto round = [align](std::size_t n) { return (n + align - 1) & ~(align - 1); };
    while (static_cast<std::size_t>(end - p) >= sizeof(ElfW(Nhdr))) {
      ElfW(Nhdr) note;
      std::memcpy(&note, p, sizeof note);
      const unsigned char* name = p + sizeof note;
      if (round(note.n_namesz) > static_cast<std::size_t>(end - name)) break;
      const unsigned char* desc = name + round(note.n_namesz);
      if (note.n_descsz > static_cast<std::size_t>(end - desc)) break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
          std::memcmp(name, "GNU", 4) == 0) {
        return {desc, note.n_descsz};
      }
      if (round(note.n_descsz) > static_cast<std::size_t>(end - desc)) break;
      p = desc + round(note.n_descsz);
    }
  }
  return {};
}

// ---- the registry ----

// A record in the pages: implicit-lifetime, zero-filled when mapped; `state`
// is accessed through std::atomic_ref, the rest written once by the thread
// that claimed the slot, before it publishes state = ready.
struct module_registry::slot {
  std::uint32_t state;  // 0: not (yet) published; ready
  std::uint32_t path_offset;
  std::uint32_t path_length;
  std::uint32_t build_id_length;
  std::uint64_t bias, start, end, code_start, code_end, code_offset;
  unsigned char build_id[max_build_id];
};

namespace {

constexpr std::uint32_t ready = 1;
constexpr std::size_t slots_bytes = module_registry::max_modules * 128;

// What the program headers of an object in memory tell.
struct object_facts {
  std::span<const unsigned char> build_id;
  std::uintptr_t code_start = 0, code_end = 0;
  std::uint64_t code_offset = 0;
};

object_facts read_facts(std::uintptr_t start, std::uintptr_t end, std::uintptr_t bias,
                        std::size_t page) noexcept {
  object_facts facts;
  if (end <= start || end - start < page) return facts;
  const auto* header = reinterpret_cast<const ElfW(Ehdr)*>(start);
  constexpr unsigned char elf_class = sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32;
  if (std::memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 || header->e_ident[EI_CLASS] != elf_class ||
      header->e_phentsize != sizeof(ElfW(Phdr)) || header->e_phnum == 0 ||
      header->e_phnum == PN_XNUM || header->e_phoff > page ||
      std::size_t{header->e_phnum} * sizeof(ElfW(Phdr)) > page - header->e_phoff) {
    return facts;
  }
  const auto* phdr = reinterpret_cast<const ElfW(Phdr)*>(start + header->e_phoff);
  const std::size_t phnum = header->e_phnum;
  const auto down = [page](std::uint64_t v) { return v & ~std::uint64_t{page - 1}; };
  const auto up = [page](std::uint64_t v) { return (v + page - 1) & ~std::uint64_t{page - 1}; };
  // They are this object's: one of its PT_LOADs maps the file's first page at `start`.
  bool mine = false;
  for (std::size_t i = 0; i < phnum; ++i) {
    mine |= phdr[i].p_type == PT_LOAD && down(phdr[i].p_offset) == 0 &&
            bias + down(phdr[i].p_vaddr) == start;
  }
  if (!mine) return facts;
  facts.build_id = loaded_build_id_note(bias, phdr, phnum);
  if (facts.build_id.size() > max_build_id) facts.build_id = {};
  for (std::size_t i = 0; i < phnum; ++i) {
    const ElfW(Phdr)& ph = phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
    facts.code_start = bias + down(ph.p_vaddr);
    facts.code_end = bias + up(ph.p_vaddr + ph.p_memsz);
    facts.code_offset = down(ph.p_offset);
    break;
  }
  return facts;
}

}  // namespace

module_registry::module_registry() {
  static_assert(sizeof(slot) <= 128);
  static_assert(max_modules < (std::size_t{1} << (8 * sizeof(module_index))));
  if (!supported) return;
  bytes_ = slots_bytes + max_path_bytes;
  pages_ = platform::map_pages(bytes_);
  if (pages_ == nullptr) throw std::bad_alloc();
  page_ = platform::page_size();
}

module_registry::~module_registry() {
  if (pages_ != nullptr) platform::unmap_pages(pages_, bytes_);
}

module_registry::slot* module_registry::slots() const noexcept {
  return static_cast<slot*>(pages_);
}

char* module_registry::text() const noexcept { return static_cast<char*>(pages_) + slots_bytes; }

void module_registry::intern(void* const* frames, std::size_t n, module_index* out) noexcept {
  // The frames of one stack fall in a few objects, mostly one after the
  // other: the last object found answers for the frames in its range (it
  // stays loaded while this thread's stack holds frames in it).
  std::uintptr_t last_start = 0, last_end = 0;
  module_index last = no_module;
  for (std::size_t i = 0; i < n; ++i) {
    const auto address = reinterpret_cast<std::uintptr_t>(frames[i]);
    if (pages_ == nullptr || address == 0) {
      out[i] = no_module;
      continue;
    }
    const std::uintptr_t pc = address - 1;  // in the call instruction
    if (last != no_module && last_start <= pc && pc < last_end) {
      out[i] = last;
      continue;
    }
    out[i] = find_or_add(reinterpret_cast<const void*>(pc), last_start, last_end);
    last = out[i];
  }
}

module_index module_registry::find_or_add(const void* pc, std::uintptr_t& start,
                                          std::uintptr_t& end) noexcept {
#if defined(DLFO_EH_SEGMENT_TYPE)
  dl_find_object found;
  if (::_dl_find_object(const_cast<void*>(pc), &found) != 0 || found.dlfo_link_map == nullptr) {
    return no_module;
  }
  const link_map& map = *found.dlfo_link_map;
  const char* const path = map.l_name != nullptr ? map.l_name : "";
  const std::size_t path_length = std::strlen(path);
  const std::uintptr_t bias = map.l_addr;
  start = reinterpret_cast<std::uintptr_t>(found.dlfo_map_start);
  end = reinterpret_cast<std::uintptr_t>(found.dlfo_map_end);
  const object_facts facts = read_facts(start, end, bias, page_);

  const std::uint32_t published =
      std::min<std::uint32_t>(claimed_.load(std::memory_order_acquire), max_modules);
  for (std::uint32_t i = 0; i < published; ++i) {
    slot& s = slots()[i];
    if (std::atomic_ref<std::uint32_t>(s.state).load(std::memory_order_acquire) != ready) continue;
    if (s.start == start && s.end == end && s.bias == bias && s.path_length == path_length &&
        s.build_id_length == facts.build_id.size() &&
        std::memcmp(s.build_id, facts.build_id.data(), facts.build_id.size()) == 0 &&
        std::memcmp(text() + s.path_offset, path, path_length) == 0) {
      return static_cast<module_index>(i + 1);
    }
  }

  // A new object. Full: checked before claiming, so that the counters stop
  // growing (they may pass their limits by what racing threads claim).
  const std::size_t text_bytes = path_length + 1;
  if (text_bytes > max_path_bytes ||
      text_used_.load(std::memory_order_relaxed) > max_path_bytes - text_bytes ||
      claimed_.load(std::memory_order_relaxed) >= max_modules) {
    return no_module;
  }
  const std::uint32_t at =
      text_used_.fetch_add(static_cast<std::uint32_t>(text_bytes), std::memory_order_relaxed);
  if (at > max_path_bytes - text_bytes) return no_module;
  const std::uint32_t index = claimed_.fetch_add(1, std::memory_order_relaxed);
  if (index >= max_modules) return no_module;
  std::memcpy(text() + at, path, text_bytes);
  slot& s = slots()[index];
  s.path_offset = at;
  s.path_length = static_cast<std::uint32_t>(path_length);
  s.build_id_length = static_cast<std::uint32_t>(facts.build_id.size());
  std::memcpy(s.build_id, facts.build_id.data(), facts.build_id.size());
  s.bias = bias;
  s.start = start;
  s.end = end;
  s.code_start = facts.code_start;
  s.code_end = facts.code_end;
  s.code_offset = facts.code_offset;
  std::atomic_ref<std::uint32_t>(s.state).store(ready, std::memory_order_release);
  return static_cast<module_index>(index + 1);
#else
  (void)pc;
  (void)start;
  (void)end;
  (void)page_;
  return no_module;
#endif
}

std::vector<recorded_module> module_registry::records() const {
  std::vector<recorded_module> out;
  if (pages_ == nullptr) return out;
  const std::uint32_t claimed =
      std::min<std::uint32_t>(claimed_.load(std::memory_order_acquire), max_modules);
  out.resize(claimed);
  for (std::uint32_t i = 0; i < claimed; ++i) {
    slot& s = slots()[i];
    if (std::atomic_ref<std::uint32_t>(s.state).load(std::memory_order_acquire) != ready) continue;
    recorded_module& m = out[i];
    m.path.assign(text() + s.path_offset, s.path_length);
    m.bias = s.bias;
    m.start = s.start;
    m.end = s.end;
    m.code_start = s.code_start;
    m.code_end = s.code_end;
    m.code_offset = s.code_offset;
    m.build_id.assign(reinterpret_cast<const char*>(s.build_id), s.build_id_length);
  }
  return out;
}

// ---- what is unloaded ----

unloaded_modules::unloaded_modules(const module_registry& registry)
    : records_(registry.records()), unloaded_(records_.size() + 1, nullptr) {
  if (records_.empty()) return;
  struct loaded {
    std::string path;
    std::uintptr_t bias;
    std::string build_id;
  };
  std::vector<loaded> objects;
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        const std::span<const unsigned char> id =
            loaded_build_id_note(info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum);
        static_cast<std::vector<loaded>*>(data)->push_back(
            {info->dlpi_name != nullptr ? info->dlpi_name : "", info->dlpi_addr,
             std::string(reinterpret_cast<const char*>(id.data()), id.size())});
        return 0;
      },
      &objects);
  std::vector<const recorded_module*> distinct;
  for (std::size_t i = 0; i < records_.size(); ++i) {
    const recorded_module& r = records_[i];
    if (r.path.empty()) continue;  // the main program, or a record not published
    // A record without build ID (its headers were not found where read_facts
    // looks) is taken for the loaded object of its path and bias.
    const bool still_there = std::any_of(objects.begin(), objects.end(), [&](const loaded& o) {
      return o.path == r.path && o.bias == r.bias &&
             (r.build_id.empty() || o.build_id == r.build_id);
    });
    if (still_there) continue;
    const auto same = std::find_if(distinct.begin(), distinct.end(),
                                   [&](const recorded_module* d) { return *d == r; });
    if (same == distinct.end()) {
      distinct.push_back(&r);
      unloaded_[i + 1] = &r;
    } else {
      unloaded_[i + 1] = *same;
    }
  }
}

}  // namespace memlimits::memprof::detail
