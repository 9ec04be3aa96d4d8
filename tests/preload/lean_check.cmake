# tests/preload/lean_check.cmake — what libmemlimits_preload.so shows the
# dynamic loader, read with readelf (cmake -P; no compiler):
#  * its exported dynamic symbols are exactly the functions the hooks
#    replace: the strong, default-visibility functions defined in the hooks'
#    object files (hooks/malloc.cpp, hooks/new_delete.cpp: MEMLIMITS_HOOK),
#    so that a hook missing from src/preload/exports.map fails here, and so
#    does anything else exported (std::, memlimits::, libdw's names);
#  * it needs no library but the C library's own (libc, libm, the loader,
#    and the libdl/libpthread/librt of older glibc): no libstdc++, libgcc_s,
#    libz, libdw, libelf, libspdlog or libfmt.
# Arguments: -DLIBRARY=<libmemlimits_preload.so> -DREADELF=<readelf>
#            -DHOOK_OBJECTS=<object>|<object>|... (the memlimits_hooks objects)
cmake_minimum_required(VERSION 3.25)

foreach(argument IN ITEMS LIBRARY READELF HOOK_OBJECTS)
  if(NOT DEFINED ${argument} OR "${${argument}}" STREQUAL "")
    message(FATAL_ERROR "lean_check.cmake: -D${argument}=... is required")
  endif()
endforeach()
if(NOT EXISTS "${LIBRARY}")
  message(FATAL_ERROR "lean_check.cmake: ${LIBRARY} does not exist (build memlimits_preload)")
endif()

# The lines of `readelf <options> <file>`.
function(readelf_lines out file)
  execute_process(COMMAND "${READELF}" ${ARGN} "${file}"
                  RESULT_VARIABLE status OUTPUT_VARIABLE text ERROR_VARIABLE errors)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${READELF} ${ARGN} ${file} failed (${status}): ${errors}")
  endif()
  string(REPLACE ";" "\\;" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")
  set(${out} "${lines}" PARENT_SCOPE)
endfunction()

# The rows of the symbol table that `readelf <option> -W <file>` prints
#   Num: Value Size Type Bind Vis Ndx Name
# each as "type|bind|visibility|section|name" (other lines, and rows without
# a name, left out).
function(symbol_rows out file option)
  readelf_lines(lines "${file}" ${option} -W)
  set(rows)
  foreach(line IN LISTS lines)
    string(STRIP "${line}" line)
    if(NOT line MATCHES "^[0-9]+:")
      continue()
    endif()
    string(REGEX REPLACE "[ \t]+" ";" fields "${line}")
    list(LENGTH fields count)
    if(count LESS 8)
      continue()
    endif()
    list(SUBLIST fields 3 5 row)
    list(JOIN row "|" row)
    list(APPEND rows "${row}")
  endforeach()
  set(${out} "${rows}" PARENT_SCOPE)
endfunction()

# ---- what the hooks define ----
string(REPLACE "|" ";" hook_objects "${HOOK_OBJECTS}")
set(expected)
foreach(object IN LISTS hook_objects)
  symbol_rows(rows "${object}" --syms)
  foreach(row IN LISTS rows)
    if(row MATCHES "^FUNC\\|GLOBAL\\|DEFAULT\\|([^|]+)\\|(.+)$" AND
       NOT CMAKE_MATCH_1 STREQUAL "UND")
      list(APPEND expected "${CMAKE_MATCH_2}")
    endif()
  endforeach()
endforeach()
list(REMOVE_DUPLICATES expected)
list(SORT expected)
# A floor, so that objects read wrong cannot make an empty list pass.
foreach(name IN ITEMS malloc free calloc realloc _Znwm _ZdlPv _ZnwmSt11align_val_t)
  if(NOT name IN_LIST expected)
    message(FATAL_ERROR "lean_check.cmake: the hooks' objects (${HOOK_OBJECTS}) do not define "
                        "${name}: wrong objects?")
  endif()
endforeach()

# ---- what the library exports ----
symbol_rows(rows "${LIBRARY}" --dyn-syms)
set(exported)
foreach(row IN LISTS rows)
  string(REPLACE "|" ";" fields "${row}")
  list(GET fields 1 bind)
  list(GET fields 3 section)
  list(GET fields 4 name)
  if(section STREQUAL "UND" OR bind STREQUAL "LOCAL")
    continue()
  endif()
  string(REGEX REPLACE "@.*$" "" name "${name}")  # a version, if any
  list(APPEND exported "${name}")
endforeach()
list(REMOVE_DUPLICATES exported)
list(SORT exported)

set(failures)
set(extra ${exported})
list(REMOVE_ITEM extra ${expected})
if(extra)
  list(LENGTH extra count)
  list(JOIN extra "\n    " text)
  string(APPEND failures "  ${count} exported symbol(s) that no hook defines (everything but the "
                         "replaced functions must be local: src/preload/exports.map):\n    ${text}\n")
endif()
set(missing ${expected})
list(REMOVE_ITEM missing ${exported})
if(missing)
  list(JOIN missing "\n    " text)
  string(APPEND failures "  hooks defined but not exported (add them to src/preload/exports.map):"
                         "\n    ${text}\n")
endif()

# ---- what the library needs ----
readelf_lines(lines "${LIBRARY}" -d -W)
set(needed)
set(forbidden)
foreach(line IN LISTS lines)
  if(line MATCHES "\\(NEEDED\\)[^[]*\\[([^]]+)\\]")
    set(library "${CMAKE_MATCH_1}")
    list(APPEND needed "${library}")
    if(NOT library MATCHES "^(libc\\.so\\.6|libm\\.so\\.6|ld-linux[-a-z0-9_.]*\\.so\\.[0-9]+|libdl\\.so\\.2|libpthread\\.so\\.0|librt\\.so\\.1)$")
      list(APPEND forbidden "${library}")
    endif()
  endif()
endforeach()
if(forbidden)
  list(JOIN forbidden ", " text)
  string(APPEND failures "  needs libraries beyond the C library's (each is loaded at every exec; "
                         "libstdc++ and libgcc belong inside, libdw and zlib are opened when a "
                         "profile is written): ${text}\n")
endif()

list(LENGTH exported exported_count)
list(JOIN needed ", " needed_text)
if(failures)
  message(FATAL_ERROR "${LIBRARY}:\n${failures}")
endif()
message(STATUS "${LIBRARY}: exports the ${exported_count} replaced functions only; needs ${needed_text}")
