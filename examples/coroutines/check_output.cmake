# check_output.cmake — the test of the coroutines example (ctest
# example.coroutines): runs it, then checks that it exited 0 (every
# coroutine ended as expected, by its own account) and, line by line, that
# each coroutine's row shows the outcome it must have: the good ones "ok",
# each runaway "stopped: <the limit meant to stop it>"; and the summary.
#   cmake -DDEMO=path/to/coroutines -P check_output.cmake
if(NOT DEMO)
  message(FATAL_ERROR "usage: cmake -DDEMO=path/to/coroutines -P check_output.cmake")
endif()

execute_process(COMMAND ${DEMO}
                OUTPUT_VARIABLE output ERROR_VARIABLE errors RESULT_VARIABLE exit_code)
message("${output}")
if(errors)
  message("stderr:\n${errors}")
endif()

set(expected
    "orders-csv|ok"
    "catalog-json|ok"
    "word-index|ok"
    "prime-sieve|ok"
    "fibonacci|ok"
    "sort-merge|ok"
    "matrix|ok"
    "base64|ok"
    "log-stats|ok"
    "log-index|ok"
    "upload-endless|stopped: allocations"
    "session-cache|stopped: memory"
    "slow-report|stopped: token"
    "live-feed|stopped: token"
    "export|stopped: allocations"
    "export-rows|stopped: allocations")

# One list element per line (semicolons would split lines further).
string(REPLACE ";" "," output_text "${output}")
string(REPLACE "\n" ";" lines "${output_text}")

set(failures "")
foreach(entry IN LISTS expected)
  string(REPLACE "|" ";" pair "${entry}")
  list(GET pair 0 name)
  list(GET pair 1 outcome)
  set(found "")
  foreach(line IN LISTS lines)
    # A row: the name first, the guard, then the outcome column.
    if(line MATCHES "^${name} +(deadline [0-9]+ m?s|token \\(main\\)|inherits [a-z-]+) +(ok|stopped: [a-z_]+|failed) ")
      set(found "${CMAKE_MATCH_2}")
    endif()
  endforeach()
  if(NOT found STREQUAL outcome)
    list(APPEND failures "${name}: expected \"${outcome}\", got \"${found}\"")
  endif()
endforeach()

if(NOT output MATCHES "16 coroutines: 10 ok, 6 stopped. all as expected")
  list(APPEND failures "no summary line \"16 coroutines: 10 ok, 6 stopped; all as expected\"")
endif()
if(NOT exit_code EQUAL 0)
  list(APPEND failures "exit code ${exit_code}, expected 0")
endif()

if(failures)
  list(JOIN failures "\n  " report)
  message(FATAL_ERROR "coroutines did not behave as expected:\n  ${report}")
endif()
message(STATUS "coroutines: every coroutine ended as expected")
