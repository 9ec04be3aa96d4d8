// platform/valgrind.cpp — whether the process runs under valgrind, and which
// tool (platform/platform.hpp: running_under_valgrind).
// Valgrind starts the program with its preload libraries in LD_PRELOAD:
// vgpreload_core-<arch>-<os>.so always, and vgpreload_<tool>-<arch>-<os>.so
// for the tools that have one (memcheck, massif, helgrind, drd, dhat: those
// that replace the allocator; callgrind, cachegrind and none have none).
// When <valgrind/valgrind.h> was found at build time, the client request
// RUNNING_ON_VALGRIND (a no-op sequence of instructions natively) is asked
// too, in case the environment was changed.
// Layer 1: the C library (and valgrind's header) only; nothing allocates.
#include <cstring>

#include "platform/platform.hpp"

#if __has_include(<valgrind/valgrind.h>)
#  include <valgrind/valgrind.h>
#  define MEMLIMITS_HAVE_VALGRIND_H 1
#endif

namespace memlimits::platform {

namespace {

constexpr char preload_prefix[] = "vgpreload_";
constexpr std::size_t preload_prefix_length = sizeof preload_prefix - 1;

}  // namespace

bool running_under_valgrind(char* tool, std::size_t capacity) noexcept {
  if (capacity > 0) tool[0] = '\0';
  bool found = false;
#if defined(MEMLIMITS_HAVE_VALGRIND_H)
  found = RUNNING_ON_VALGRIND != 0;
#endif
  const char* preload = get_env("LD_PRELOAD");
  if (preload == nullptr) return found;
  // The loader separates entries with colons or spaces.
  for (const char* entry = preload; *entry != '\0';) {
    const std::size_t length = std::strcspn(entry, ": \t");
    // The entry's file name: what follows its last '/'.
    const char* name = entry;
    for (const char* c = entry; c != entry + length; ++c) {
      if (*c == '/') name = c + 1;
    }
    const auto name_length = static_cast<std::size_t>(entry + length - name);
    if (name_length > preload_prefix_length &&
        std::strncmp(name, preload_prefix, preload_prefix_length) == 0) {
      found = true;
      // vgpreload_<tool>-<platform>.so; "core" is valgrind's own.
      const char* tool_name = name + preload_prefix_length;
      std::size_t tool_length = 0;
      while (tool_name + tool_length != entry + length && tool_name[tool_length] != '-') {
        ++tool_length;
      }
      const bool is_core = tool_length == 4 && std::strncmp(tool_name, "core", 4) == 0;
      if (!is_core && tool_length > 0 && tool_length < capacity && tool[0] == '\0') {
        std::memcpy(tool, tool_name, tool_length);
        tool[tool_length] = '\0';
      }
    }
    entry += length;
    if (*entry != '\0') ++entry;
  }
  return found;
}

}  // namespace memlimits::platform
