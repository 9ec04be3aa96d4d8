// memlimits/config.hpp — build configuration shared by every public header:
// the symbol-visibility macro and the library version. Depends on nothing.
#pragma once

#define MEMLIMITS_VERSION_MAJOR 0
#define MEMLIMITS_VERSION_MINOR 1
#define MEMLIMITS_VERSION_PATCH 0

// The library is built with hidden visibility; the public API is exported
// explicitly so that a shared build (and the preload library) exposes only it.
#if defined(__GNUC__)
#  define MEMLIMITS_API __attribute__((visibility("default")))
#else
#  define MEMLIMITS_API
#endif
