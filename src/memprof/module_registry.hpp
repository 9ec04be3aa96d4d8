// memprof/module_registry.hpp — the objects (the program, its shared
// libraries) that held the frames of a heap profile's stacks, recorded when
// a stack is first seen: path, load bias, mapped range, executable segment
// and build ID. A profile written after an object was unloaded (dlclose),
// or moved, names that object's frames from this record and the object's
// file, never from what is loaded at their addresses by then. Also the
// reader of a loaded object's build-ID note, which the symbolizer and pprof
// use too.
// Layer 6 (memprof); uses platform/ (pages). module_registry::intern runs
// on the allocation path: it does not allocate through malloc, does not
// lock (glibc's _dl_find_object is lock-free), and stores in pages of its
// own; everything else here runs when a profile is written.
#pragma once

#include <link.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace memlimits::memprof::detail {

// An object's record in a registry: its index + 1, so that 0 is "none".
using module_index = std::uint16_t;
inline constexpr module_index no_module = 0;

// What a registry recorded of an object.
struct recorded_module {
  std::string path;             // as the loader names it (link_map::l_name); "" for the
                                // main program, which is never unloaded
  std::uintptr_t bias = 0;      // load bias (l_addr): address - bias is the address in the file
  std::uintptr_t start = 0;     // the object's mapped range [start, end)
  std::uintptr_t end = 0;
  std::uintptr_t code_start = 0;  // its first executable segment [code_start, code_end), at
  std::uintptr_t code_end = 0;    // code_offset in the file (as /proc/self/maps would show
  std::uint64_t code_offset = 0;  // it); all 0 when its program headers were not found
  std::string build_id;         // NT_GNU_BUILD_ID bytes as loaded; "" if none
  bool operator==(const recorded_module&) const = default;
};

// An append-only table of objects, in pages of its own. Lock-free: threads
// that meet a new object at once may each add a record of it (identical
// records, which the writers treat as one); a record is published whole
// (written, then marked ready with a release store), so a reader sees it
// whole or not at all, and a fork() in the middle of an addition leaves a
// record that is never published.
class module_registry {
 public:
  // Whether this build records objects: glibc 2.35 or later
  // (_dl_find_object). Without, intern() records nothing and every frame is
  // named from what is loaded at its address when the profile is written.
  static const bool supported;
  static constexpr std::size_t max_modules = 8191;
  static constexpr std::size_t max_path_bytes = std::size_t{1} << 20;  // all paths, with NULs

  // Reserves the pages (committed as they fill: 1 MiB of records and 1 MiB
  // of paths at most). Throws std::bad_alloc when they cannot be mapped.
  module_registry();
  ~module_registry();
  module_registry(const module_registry&) = delete;
  module_registry& operator=(const module_registry&) = delete;

  // For each return address of frames[0..n), the record of the object that
  // holds its call (the address - 1), added if new: out[i], or no_module
  // when no object holds it (unsupported, code outside any object) or the
  // registry is full. The frames must be those of the calling thread's
  // stack (their objects cannot be unloaded meanwhile). Allocation-path
  // safe; any thread.
  void intern(void* const* frames, std::size_t n, module_index* out) noexcept;

  // The records published so far: element i is index i + 1; a record still
  // being written is left empty (path "", as the main program: its frames
  // are named from what is loaded).
  std::vector<recorded_module> records() const;

 private:
  struct slot;
  // The record of the object that holds pc, added if new; start and end
  // get that object's mapped range.
  module_index find_or_add(const void* pc, std::uintptr_t& start, std::uintptr_t& end) noexcept;
  slot* slots() const noexcept;
  char* text() const noexcept;

  void* pages_ = nullptr;  // null when unsupported
  std::size_t bytes_ = 0;
  std::size_t page_ = 0;
  std::atomic<std::uint32_t> claimed_{0};     // slots claimed (may pass max_modules)
  std::atomic<std::uint32_t> text_used_{0};  // bytes of paths claimed (may pass the capacity)
};

// The writers' view of a registry's records: for each index, the record
// when its object is no longer loaded where it was recorded (no loaded
// object has its path, load bias and build ID now; a record without build
// ID: its path and bias), identical records sharing one; null when its
// frames are named from what is loaded at their addresses (the object is
// still there, the main program, or no_module).
class unloaded_modules {
 public:
  unloaded_modules() = default;
  // Reads the records and lists the loaded objects (dl_iterate_phdr).
  explicit unloaded_modules(const module_registry& registry);
  // Moves keep the records where they are: the pointers handed out stay valid.
  unloaded_modules(unloaded_modules&&) noexcept = default;
  unloaded_modules& operator=(unloaded_modules&&) noexcept = default;

  const recorded_module* operator[](module_index index) const noexcept {
    return index < unloaded_.size() ? unloaded_[index] : nullptr;
  }

 private:
  std::vector<recorded_module> records_;
  std::vector<const recorded_module*> unloaded_;  // by index; [0] is null
};

// Per frame of a stack being written: the record of the object that held it
// when the stack was recorded, when that object is no longer loaded there
// (unloaded_modules); null: the frame is named from what is loaded at its
// address. Empty: every frame is.
using frame_origins = std::vector<const recorded_module*>;

// The bytes of the NT_GNU_BUILD_ID note of a loaded object, read from its
// notes in memory (program headers phdr[0..phnum), load bias `bias`), so
// that it is the one of the code that runs; empty if it has none. Does not
// allocate.
std::span<const unsigned char> loaded_build_id_note(std::uintptr_t bias, const ElfW(Phdr) * phdr,
                                                    std::size_t phnum) noexcept;

}  // namespace memlimits::memprof::detail
