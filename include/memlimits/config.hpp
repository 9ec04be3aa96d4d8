// memlimits/config.hpp — build configuration shared by every public header:
// the symbol-visibility macro and the library version. Depends only on the
// generated memlimits/version.hpp (MEMLIMITS_VERSION_MAJOR, _MINOR, _PATCH
// and the string MEMLIMITS_VERSION, from the project() version in CMake).
#pragma once

#include "memlimits/version.hpp"

// The library is built with hidden visibility; the public API is exported
// explicitly so that a shared build (and the preload library) exposes only it.
#if defined(__GNUC__)
#  define MEMLIMITS_API __attribute__((visibility("default")))
#else
#  define MEMLIMITS_API
#endif
