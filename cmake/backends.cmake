# cmake/backends.cmake — allocator backends: the allocator that memlimits
# forwards unsampled blocks to (src/platform/system_allocator.hpp).
#
# memlimits forwards every function of the malloc family to the definition
# that follows its own in the lookup order (dlsym(RTLD_NEXT)): glibc's by
# default. A program that wants another allocator links its shared library
# after memlimits, through one of the targets defined here:
#
#   target_link_libraries(app PRIVATE memlimits::memlimits memlimits::hooks
#                                     memlimits::jemalloc)
#
#   memlimits::jemalloc   libjemalloc.so    (jemalloc; Debian: libjemalloc-dev)
#   memlimits::mimalloc   libmimalloc.so    (mimalloc; Debian: libmimalloc-dev)
#   memlimits::tcmalloc   libtcmalloc_minimal.so (gperftools' tcmalloc without
#                         its own heap profiler and checker; Debian:
#                         libgoogle-perftools-dev). Set
#                         MEMLIMITS_TCMALLOC_LIBRARY to libtcmalloc.so for the
#                         full one.
#
# Each is an INTERFACE IMPORTED target (GLOBAL), defined only when the
# library is found: MEMLIMITS_<NAME>_LIBRARY, a cache variable (set it to a
# path to choose another build). MEMLIMITS_BACKENDS (cache) lists the
# backends to look for, all three by default; MEMLIMITS_BACKENDS_FOUND (a
# variable of the including scope, and a global property of that name) those
# found. The include directory of the backend's header is added when found,
# for programs that call its own API (mallctl, mi_*, MallocExtension).
#
# The library is linked with --no-as-needed: the program references none of
# its symbols (memlimits' hooks define malloc and operator new themselves),
# so a linker that drops unneeded libraries (--as-needed, the default of some
# distributions) would leave it out. The backend must come before the C
# library in the program's NEEDED list, which it does (the compiler driver
# adds -lc last).
#
# Only shared libraries: a static backend (libjemalloc.a, ...) defines
# malloc in the program, as memlimits::hooks does, and the link fails with
# duplicate definitions (or, with archive members pulled in on demand, the
# backend's are never used). For the preload library, no target: preload the
# backend after it,
#   LD_PRELOAD="libmemlimits_preload.so libjemalloc.so.2" program
# (a backend preloaded before memlimits takes the program's calls itself).
#
# Under a sanitizer with its own allocator (MEMLIMITS_SANITIZER address or
# thread) memlimits forwards to the sanitizer's allocator, never to a
# backend: the targets are not defined then.
include_guard(GLOBAL)

set(MEMLIMITS_BACKENDS "jemalloc;mimalloc;tcmalloc" CACHE STRING
    "Allocator backends to look for (memlimits::<name> targets): jemalloc, mimalloc, tcmalloc")
set(MEMLIMITS_BACKENDS_FOUND "")
set_property(GLOBAL PROPERTY MEMLIMITS_BACKENDS_FOUND "")

if(MEMLIMITS_SANITIZER MATCHES "address|thread")
  return()
endif()

find_package(PkgConfig QUIET)

# memlimits_find_backend(<name> LIBRARY_NAMES ... [PKG_CONFIG ...] [HEADER ...])
function(memlimits_find_backend name)
  cmake_parse_arguments(arg "" "" "LIBRARY_NAMES;PKG_CONFIG;HEADER" ${ARGN})
  if(NOT name IN_LIST MEMLIMITS_BACKENDS)
    return()
  endif()
  if(TARGET memlimits::${name})  # defined by another copy of this file
    set(MEMLIMITS_BACKENDS_FOUND ${MEMLIMITS_BACKENDS_FOUND} ${name} PARENT_SCOPE)
    set_property(GLOBAL APPEND PROPERTY MEMLIMITS_BACKENDS_FOUND ${name})
    return()
  endif()
  string(TOUPPER ${name} upper)
  set(hints "")
  set(include_hints "")
  if(PKG_CONFIG_FOUND AND arg_PKG_CONFIG)
    pkg_search_module(memlimits_pc_${name} QUIET ${arg_PKG_CONFIG})
    if(memlimits_pc_${name}_FOUND)
      set(hints ${memlimits_pc_${name}_LIBRARY_DIRS})
      set(include_hints ${memlimits_pc_${name}_INCLUDE_DIRS})
    endif()
  endif()
  # Shared libraries only (see above).
  set(CMAKE_FIND_LIBRARY_SUFFIXES .so)
  find_library(MEMLIMITS_${upper}_LIBRARY NAMES ${arg_LIBRARY_NAMES} HINTS ${hints}
               DOC "The shared library of the ${name} allocator backend (memlimits::${name})")
  set(library "${MEMLIMITS_${upper}_LIBRARY}")
  if(NOT library OR NOT EXISTS "${library}")
    return()
  endif()
  if(library MATCHES "[.]a$")
    message(WARNING "memlimits::${name}: ${library} is a static archive; a backend must be "
                    "a shared library (it defines malloc, as memlimits::hooks does)")
    return()
  endif()
  add_library(memlimits::${name} INTERFACE IMPORTED GLOBAL)
  set_target_properties(memlimits::${name} PROPERTIES
    INTERFACE_LINK_LIBRARIES "-Wl,--push-state,--no-as-needed;${library};-Wl,--pop-state")
  if(arg_HEADER)
    find_path(MEMLIMITS_${upper}_INCLUDE_DIR NAMES ${arg_HEADER} HINTS ${include_hints}
              DOC "The include directory of the ${name} allocator backend's header")
    if(MEMLIMITS_${upper}_INCLUDE_DIR)
      set_target_properties(memlimits::${name} PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${MEMLIMITS_${upper}_INCLUDE_DIR}")
    endif()
  endif()
  set(MEMLIMITS_BACKENDS_FOUND ${MEMLIMITS_BACKENDS_FOUND} ${name} PARENT_SCOPE)
  set_property(GLOBAL APPEND PROPERTY MEMLIMITS_BACKENDS_FOUND ${name})
endfunction()

memlimits_find_backend(jemalloc LIBRARY_NAMES jemalloc PKG_CONFIG jemalloc
                       HEADER jemalloc/jemalloc.h)
memlimits_find_backend(mimalloc LIBRARY_NAMES mimalloc PKG_CONFIG mimalloc HEADER mimalloc.h)
memlimits_find_backend(tcmalloc LIBRARY_NAMES tcmalloc_minimal tcmalloc
                       PKG_CONFIG libtcmalloc_minimal libtcmalloc
                       HEADER gperftools/tcmalloc.h)

if(MEMLIMITS_BACKENDS_FOUND)
  list(JOIN MEMLIMITS_BACKENDS_FOUND ", " memlimits_backends_text)
  message(STATUS "memlimits allocator backends: glibc (default), ${memlimits_backends_text}")
else()
  message(STATUS "memlimits allocator backends: glibc only")
endif()
