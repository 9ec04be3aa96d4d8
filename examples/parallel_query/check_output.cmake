# check_output.cmake — the test of the parallel_query example (ctest
# example.parallel_query): runs it, then checks that it exited 0 (every
# query ended as expected, by its own account), that each query's row shows
# the outcome it must have (the good queries "ok" with a checked answer,
# each runaway one "stopped: <the limit meant to stop it>" with every part
# of its runaway phase stopped), and the summary lines.
#   cmake -DDEMO=path/to/parallel_query -P check_output.cmake
if(NOT DEMO)
  message(FATAL_ERROR "usage: cmake -DDEMO=path/to/parallel_query -P check_output.cmake")
endif()

execute_process(COMMAND ${DEMO}
                OUTPUT_VARIABLE output ERROR_VARIABLE errors RESULT_VARIABLE exit_code)
message("${output}")
if(errors)
  message("stderr:\n${errors}")
endif()

# query|outcome|parts|end of the row
set(expected
    "revenue-by-region|ok|build 4 done, probe 4 done|\\(checked\\)"
    "top-customers|ok|aggregate 4 done, sort 4 done|\\(checked\\)"
    "count-filtered|ok|scan 4 done|\\(checked\\)"
    "segment-by-month|ok|build 4 done, probe 4 done|\\(checked\\)"
    "largest-orders|ok|scan\\+sort 4 done|\\(checked\\)"
    "join-on-region|stopped: allocations|build 4 done, probe 4 stopped|\\(as expected\\)"
    "group-by-invoice|stopped: memory|aggregate 4 stopped|\\(as expected\\)"
    "near-duplicates|stopped: token|nested-loop 4 stopped|\\(as expected\\)")

# One list element per line (semicolons would split lines further).
string(REPLACE ";" "," output_text "${output}")
string(REPLACE "\n" ";" lines "${output_text}")

set(failures "")
foreach(entry IN LISTS expected)
  string(REPLACE "|" ";" fields "${entry}")
  list(GET fields 0 query)
  list(GET fields 1 outcome)
  list(GET fields 2 parts)
  list(GET fields 3 ending)
  set(found "")
  foreach(line IN LISTS lines)
    # A result row: the name, the outcome, allocated, live at exit, time, parts, answer.
    if(line MATCHES "^${query} +(ok|stopped: [a-z_]+|failed) +[0-9.]+ MiB +-?[0-9.]+ MiB +[0-9]+ m?s  (.*)$")
      set(found "${CMAKE_MATCH_1}")
      set(rest "${CMAKE_MATCH_2}")
    endif()
  endforeach()
  if(NOT found STREQUAL outcome)
    list(APPEND failures "${query}: expected \"${outcome}\", got \"${found}\"")
  elseif(NOT rest MATCHES "^${parts} +.*${ending}$")
    list(APPEND failures "${query}: expected parts \"${parts}\" and an answer ending \"${ending}\", got \"${rest}\"")
  endif()
endforeach()

if(NOT output MATCHES "\n8 queries: 5 ok, 3 stopped. all as expected\n")
  list(APPEND failures "no summary line \"8 queries: 5 ok, 3 stopped, all as expected\"")
endif()
if(NOT output MATCHES "\npool: 48 parts run, 12 stopped by their query's limit. 4 of 4 workers serving after them")
  list(APPEND failures "no pool line \"pool: 48 parts run, 12 stopped by their query's limit, 4 of 4 workers serving after them\"")
endif()
if(NOT exit_code EQUAL 0)
  list(APPEND failures "exit code ${exit_code}, expected 0")
endif()

if(failures)
  list(JOIN failures "\n  " report)
  message(FATAL_ERROR "parallel_query did not behave as expected:\n  ${report}")
endif()
message(STATUS "parallel_query: every query ended as expected")
