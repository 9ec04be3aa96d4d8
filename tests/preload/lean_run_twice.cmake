# tests/preload/lean_run_twice.cmake — runs an unmodified program plain and
# under libmemlimits_preload.so (LD_PRELOAD) and compares: both must exit 0
# and print the same standard output (the program checks itself and prints
# one line per check, lean_cxx_runtime.cpp). Standard error is shown, not
# compared. cmake -P; no compiler.
# Arguments: -DLIBRARY=<libmemlimits_preload.so>
#            -DCOMMAND=<program>|<argument>|... (the command line)
cmake_minimum_required(VERSION 3.25)

foreach(argument IN ITEMS LIBRARY COMMAND)
  if(NOT DEFINED ${argument} OR "${${argument}}" STREQUAL "")
    message(FATAL_ERROR "lean_run_twice.cmake: -D${argument}=... is required")
  endif()
endforeach()
string(REPLACE "|" ";" command "${COMMAND}")

# The environment variables of the preload library stay out of both runs:
# no summary, no profile, default seed.
foreach(name IN ITEMS MEMLIMITS_PROFILE_RATE MEMLIMITS_PROFILE_OUTPUT MEMLIMITS_HEAP_PROFILE
                      MEMLIMITS_HEAP_PROFILE_RATE MEMLIMITS_HEAP_PROFILE_TOP
                      MEMLIMITS_HEAP_PROFILE_DEPTH MEMLIMITS_SEED LD_PRELOAD)
  unset(ENV{${name}})
endforeach()

execute_process(COMMAND ${command} RESULT_VARIABLE plain_status OUTPUT_VARIABLE plain_output
                ERROR_VARIABLE plain_errors TIMEOUT 120)
set(ENV{LD_PRELOAD} "${LIBRARY}")
execute_process(COMMAND ${command} RESULT_VARIABLE preload_status OUTPUT_VARIABLE preload_output
                ERROR_VARIABLE preload_errors TIMEOUT 120)
unset(ENV{LD_PRELOAD})

set(failures)
if(NOT plain_status STREQUAL "0")
  string(APPEND failures "  plain run: exit status ${plain_status}\n")
endif()
if(NOT preload_status STREQUAL "0")
  string(APPEND failures "  preloaded run: exit status ${preload_status}\n")
endif()
if(NOT plain_output STREQUAL preload_output)
  string(APPEND failures "  the outputs differ\n")
endif()
if(failures)
  message(FATAL_ERROR "${COMMAND} plain and with LD_PRELOAD=${LIBRARY}:\n${failures}"
                      "--- plain output:\n${plain_output}--- plain errors:\n${plain_errors}"
                      "--- preloaded output:\n${preload_output}"
                      "--- preloaded errors:\n${preload_errors}")
endif()
message(STATUS "the same output plain and preloaded:\n${preload_output}")
