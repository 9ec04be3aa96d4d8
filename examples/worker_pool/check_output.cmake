# check_output.cmake — the test of the worker_pool demo (ctest
# example.worker_pool): runs it, then checks that it exited 0 (every job
# ended as expected, by its own account) and, line by line, that each job's
# row shows the outcome it must have: the good jobs "ok", each runaway job
# "stopped: <the limit meant to stop it>".
#   cmake -DDEMO=path/to/worker_pool -P check_output.cmake
if(NOT DEMO)
  message(FATAL_ERROR "usage: cmake -DDEMO=path/to/worker_pool -P check_output.cmake")
endif()

execute_process(COMMAND ${DEMO} --no-color
                OUTPUT_VARIABLE output ERROR_VARIABLE errors RESULT_VARIABLE exit_code)
message("${output}")
if(errors)
  message("stderr:\n${errors}")
endif()

set(expected
    "csv-orders|ok"
    "csv-endless|stopped: allocations"
    "json-catalog|ok"
    "json-nested|stopped: memory"
    "sort-words|ok"
    "leaderboard|stopped: allocations"
    "word-index|ok"
    "session-cache|stopped: memory"
    "dedupe-urls|ok"
    "nonce-search|stopped: token"
    "join-explode|stopped: global_memory"
    "report-join|ok")

# One list element per line (semicolons would split lines further).
string(REPLACE ";" "," output_text "${output}")
string(REPLACE "\n" ";" lines "${output_text}")

set(failures "")
foreach(entry IN LISTS expected)
  string(REPLACE "|" ";" pair "${entry}")
  list(GET pair 0 job)
  list(GET pair 1 outcome)
  set(found "")
  foreach(line IN LISTS lines)
    # A row: the job's name first, its guard, then the outcome column.
    if(line MATCHES "^${job} +limit_[a-z_]+\\([^)]*\\) +(ok|stopped: [a-z_]+|failed)( |$)")
      set(found "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  if(NOT found STREQUAL outcome)
    list(APPEND failures "${job}: expected \"${outcome}\", got \"${found}\"")
  endif()
endforeach()

if(NOT output MATCHES "12 jobs: 6 ok, 6 stopped. all as expected")
  list(APPEND failures "no summary line \"12 jobs: 6 ok, 6 stopped, all as expected\"")
endif()
if(NOT exit_code EQUAL 0)
  list(APPEND failures "exit code ${exit_code}, expected 0")
endif()

if(failures)
  list(JOIN failures "\n  " report)
  message(FATAL_ERROR "worker_pool did not behave as expected:\n  ${report}")
endif()
message(STATUS "worker_pool: every job ended as expected")
