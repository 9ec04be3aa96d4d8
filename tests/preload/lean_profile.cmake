# tests/preload/lean_profile.cmake — libmemlimits_preload.so opens libdw and
# zlib only when it writes a heap profile (preload/lazy_libdw.cpp,
# preload/lazy_zlib.cpp): an unmodified program (heap_profile_probe, which
# keeps blocks from hold_until_exit() live at exit) run under it with
#  1. MEMLIMITS_HEAP_PROFILE=<dir>/h.pb.gz writes a gzip stream (zlib was
#     loaded) whose profile.proto names hold_until_exit and its source file
#     (libdw was loaded: file names come from DWARF only), and a top table
#     beside it that says "hold_until_exit(long, long) at heap_profile_probe.cpp:";
#  2. MEMLIMITS_HEAP_PROFILE=<dir>/h.folded writes folded stacks whose frame
#     is "hold_until_exit(long,long)@heap_profile_probe.cpp:<line>";
#  3. with a libdw.so.1 that cannot be loaded first in LD_LIBRARY_PATH, still
#     writes the folded stacks and exits 0: the frame is named from the
#     dynamic symbols (the probe is linked with -rdynamic), without a line.
# cmake -P; no compiler. gzip decompresses the profile (Debian: essential).
# Arguments: -DLIBRARY=<libmemlimits_preload.so> -DPROBE=<heap_profile_probe>
#            -DWORK_DIR=<scratch directory, emptied first>
cmake_minimum_required(VERSION 3.25)

foreach(argument IN ITEMS LIBRARY PROBE WORK_DIR)
  if(NOT DEFINED ${argument} OR "${${argument}}" STREQUAL "")
    message(FATAL_ERROR "lean_profile.cmake: -D${argument}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
foreach(name IN ITEMS MEMLIMITS_PROFILE_RATE MEMLIMITS_PROFILE_OUTPUT MEMLIMITS_HEAP_PROFILE_TOP
                      MEMLIMITS_HEAP_PROFILE_DEPTH MEMLIMITS_SEED LD_LIBRARY_PATH)
  unset(ENV{${name}})
endforeach()

set(failures)

# Runs the probe under the library with MEMLIMITS_HEAP_PROFILE=<profile>;
# `library_path`: LD_LIBRARY_PATH, or "". Fails the test if it does not exit 0.
function(run_probe profile library_path)
  set(ENV{MEMLIMITS_HEAP_PROFILE} "${profile}")
  set(ENV{MEMLIMITS_HEAP_PROFILE_RATE} "0.01")
  if(library_path)
    set(ENV{LD_LIBRARY_PATH} "${library_path}")
  endif()
  set(ENV{LD_PRELOAD} "${LIBRARY}")
  execute_process(COMMAND "${PROBE}" 2000 1000 RESULT_VARIABLE status
                  OUTPUT_VARIABLE output ERROR_VARIABLE errors TIMEOUT 120)
  unset(ENV{LD_PRELOAD})
  unset(ENV{LD_LIBRARY_PATH})
  unset(ENV{MEMLIMITS_HEAP_PROFILE})
  unset(ENV{MEMLIMITS_HEAP_PROFILE_RATE})
  if(NOT status STREQUAL "0")
    message(FATAL_ERROR "${PROBE} with MEMLIMITS_HEAP_PROFILE=${profile}"
                        " LD_LIBRARY_PATH=${library_path}: exit status ${status}\n${errors}")
  endif()
  set(probe_errors "${errors}" PARENT_SCOPE)
endfunction()

# Whether the file exists and contains `text`; `what` names it in failures.
function(expect_in file text what)
  if(NOT EXISTS "${file}")
    set(failures "${failures}  ${what}: ${file} was not written\n${probe_errors}\n" PARENT_SCOPE)
    return()
  endif()
  file(STRINGS "${file}" lines)  # printable runs, also of a binary file
  string(JOIN "\n" content ${lines})
  string(FIND "${content}" "${text}" at)
  if(at LESS 0)
    set(failures "${failures}  ${what}: no \"${text}\" in ${file}:\n${content}\n" PARENT_SCOPE)
  endif()
endfunction()

# 1. pprof: zlib and libdw.
set(pprof "${WORK_DIR}/h.pb.gz")
run_probe("${pprof}" "")
if(EXISTS "${pprof}")
  file(READ "${pprof}" magic LIMIT 2 HEX)
  if(NOT magic STREQUAL "1f8b")
    string(APPEND failures "  ${pprof} does not start with gzip's magic number (${magic})\n")
  endif()
  find_program(GZIP gzip)
  if(GZIP)
    execute_process(COMMAND "${GZIP}" -dc "${pprof}" OUTPUT_FILE "${WORK_DIR}/h.pb"
                    RESULT_VARIABLE status ERROR_VARIABLE errors)
    if(NOT status STREQUAL "0")
      string(APPEND failures "  gzip -dc ${pprof}: ${status} ${errors}\n")
    endif()
    expect_in("${WORK_DIR}/h.pb" "hold_until_exit" "the pprof profile's functions")
    expect_in("${WORK_DIR}/h.pb" "heap_profile_probe.cpp" "the pprof profile's file names")
  endif()
else()
  string(APPEND failures "  ${pprof} was not written\n${probe_errors}\n")
endif()
expect_in("${pprof}.top" "hold_until_exit(long, long) at heap_profile_probe.cpp:"
          "the top table beside the pprof profile")

# 2. folded stacks: libdw.
set(folded "${WORK_DIR}/h.folded")
run_probe("${folded}" "")
expect_in("${folded}" "hold_until_exit(long,long)@heap_profile_probe.cpp:" "the folded stacks")

# 3. no libdw: a file of that name that is no ELF object, found first.
set(no_libdw "${WORK_DIR}/no_libdw")
file(WRITE "${no_libdw}/libdw.so.1" "not an ELF object\n")
set(degraded "${WORK_DIR}/degraded.folded")
run_probe("${degraded}" "${no_libdw}")
expect_in("${degraded}" "hold_until_exit(long,long)" "the folded stacks without libdw")
if(EXISTS "${degraded}")
  file(READ "${degraded}" content)
  string(FIND "${content}" "heap_profile_probe.cpp:" at)
  if(NOT at LESS 0)
    string(APPEND failures "  ${degraded} names source lines although libdw could not be "
                           "loaded: was the fake libdw.so.1 skipped?\n${content}\n")
  endif()
endif()

if(failures)
  message(FATAL_ERROR "heap profiles under ${LIBRARY}:\n${failures}")
endif()
message(STATUS "profiles written with libdw and zlib loaded on demand, and without libdw")
