// unloadable_library.hpp — for the tests of frames of unloaded objects: a
// library of unloadable_lib.hpp opened with dlopen, its entry points, where
// the loader put it, and its closing, checked to unmap it.
#pragma once

#include <dlfcn.h>
#include <link.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/call_sites.hpp"
#include "unit/unloadable_lib.hpp"

namespace memlimits::testing {

class unloadable_library {
 public:
  // Throws std::runtime_error when it cannot be opened.
  explicit unloadable_library(std::string path)
      : path_(std::move(path)), handle_(::dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL)) {
    if (handle_ == nullptr) throw std::runtime_error(::dlerror());
    allocate_ = reinterpret_cast<memlimits_unloadable_allocate_fn*>(
        ::dlsym(handle_, "memlimits_unloadable_allocate"));
    lines_ = reinterpret_cast<memlimits_unloadable_lines_fn*>(
        ::dlsym(handle_, "memlimits_unloadable_lines"));
    link_map* map = nullptr;
    if (allocate_ == nullptr || lines_ == nullptr ||
        ::dlinfo(handle_, RTLD_DI_LINKMAP, &map) != 0 || map == nullptr) {
      ::dlclose(handle_);
      throw std::runtime_error("not a library of unloadable_lib.hpp: " + path_);
    }
    bias_ = map->l_addr;
  }
  ~unloadable_library() { close(); }
  unloadable_library(const unloadable_library&) = delete;
  unloadable_library& operator=(const unloadable_library&) = delete;

  // `count` blocks of `bytes` from site 1 or 2, appended to `blocks`. Not
  // inlined: every call from a test goes through the same return address
  // here, whichever line of the test calls it.
  SITE_NOINLINE void allocate(int site, std::vector<void*>& blocks, std::size_t count,
                              std::size_t bytes) {
    const std::size_t at = blocks.size();
    blocks.resize(at + count);
    allocate_(site, blocks.data() + at, count, bytes);
    SITE_BARRIER();
  }

  memlimits_unloadable_lines lines() const {
    memlimits_unloadable_lines out{};
    lines_(&out);
    return out;
  }

  // The address of a function of the library (dlsym), while it is open.
  std::uintptr_t entry() const { return reinterpret_cast<std::uintptr_t>(allocate_); }
  const std::string& path() const noexcept { return path_; }
  std::uintptr_t bias() const noexcept { return bias_; }  // link_map::l_addr

  // dlclose; whether the library is then gone from the process (dlopen
  // with RTLD_NOLOAD does not find it).
  bool close() {
    if (handle_ != nullptr) {
      ::dlclose(handle_);
      handle_ = nullptr;
    }
    void* again = ::dlopen(path_.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (again == nullptr) return true;
    ::dlclose(again);
    return false;
  }

 private:
  std::string path_;
  void* handle_;
  memlimits_unloadable_allocate_fn* allocate_ = nullptr;
  memlimits_unloadable_lines_fn* lines_ = nullptr;
  std::uintptr_t bias_ = 0;
};

}  // namespace memlimits::testing
