# check_layers_selftest.cmake — does check_layers.cmake catch what it should?
#
#   cmake -DWORK_DIR=<scratch directory> -P tests/structure/check_layers_selftest.cmake
#
# Writes a small repository that keeps the layer rules (src/ with three
# layers, include/memlimits/, tests/, bench/) and runs check_layers.cmake on
# it: it must pass. Then, for each rule, copies of that repository with one
# violation each: the check must fail, print the expected line (file, line
# number, offending include or name) and count exactly the expected number
# of violations, so that a case cannot pass by failing for another reason.
cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED WORK_DIR)
  message(FATAL_ERROR "usage: cmake -DWORK_DIR=<scratch directory> -P check_layers_selftest.cmake")
endif()
set(CHECK "${CMAKE_CURRENT_LIST_DIR}/check_layers.cmake")
file(REMOVE_RECURSE "${WORK_DIR}")

# ---------------------------------------------------------------------------
# Writing fixtures: each case is the directory ${WORK_DIR}/<case>.

function(put case path content)
  file(WRITE "${WORK_DIR}/${case}/${path}" "${content}")
endfunction()

function(drop case path)
  file(REMOVE "${WORK_DIR}/${case}/${path}")
endfunction()

# Replaces <old> by <new> in a file of the fixture; <old> must be there.
function(edit case path old new)
  file(READ "${WORK_DIR}/${case}/${path}" text)
  string(FIND "${text}" "${old}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "selftest bug: '${old}' is not in ${case}/${path}")
  endif()
  string(REPLACE "${old}" "${new}" text "${text}")
  file(WRITE "${WORK_DIR}/${case}/${path}" "${text}")
endfunction()

# A repository that keeps every rule. Line numbers matter: the cases below
# expect violations at given lines.
function(good_fixture case)
  put(${case} src/README.md [=[
# src/ — a fixture for check_layers_selftest.cmake

Each folder is a layer; a layer uses only the layers above it.

| # | folder | what it is for | files | public headers |
|---|---|---|---|---|
| 1 | `platform/` | the OS; the only place with `#if`s [and brackets] | `platform.hpp`, `linux.cpp` | — |
| 2 | `core/` | the sampling core: per-thread state (`thread_state`) | `sampler.hpp/.cpp`, `thread_state.hpp`, `detail/prng.hpp`, `table.inc` | `memlimits/config.hpp` |
| 3 | `limits/` | the limits engine | `task.hpp/.cpp`, `engine.hpp/.cpp/.inl` | `memlimits/limits.hpp`, `memlimits/task.hpp` |

Text after the table: `other/` | is not a row.
]=])
  put(${case} src/CMakeLists.txt "# thread_state: CMake files are not read\n")
  put(${case} src/platform/README.md "# platform/ (README.md files are neither listed nor read): thread_state\n")
  put(${case} src/platform/platform.hpp [=[
#pragma once
#include <cstddef>
]=])
  put(${case} src/platform/linux.cpp [=[
#include "platform/platform.hpp"

#include <unistd.h>
int fds[2]; int more[3]; // brackets; semicolons \
continued
#define X "a;b[c"
]=])
  put(${case} src/core/thread_state.hpp [=[
#pragma once
#include "platform/platform.hpp"
namespace core {
struct thread_state { long countdown_; };
extern thread_local thread_state tls_state;
inline thread_state& this_thread_state() { return tls_state; }
}
]=])
  put(${case} src/core/sampler.hpp [=[
#pragma once
#include "core/thread_state.hpp"
#include "memlimits/config.hpp"
]=])
  put(${case} src/core/sampler.cpp [=[
#include "core/sampler.hpp"
#  include "core/detail/prng.hpp"
static const int table[] = {
#include "core/table.inc"
};
]=])
  put(${case} src/core/detail/prng.hpp "#pragma once\n")
  put(${case} src/core/table.inc "1, 2,\n")
  put(${case} src/limits/task.hpp [=[
#pragma once
#include "core/sampler.hpp"
#include "memlimits/limits.hpp"
]=])
  put(${case} src/limits/task.cpp [=[
#include "limits/task.hpp"

#include "memlimits/task.hpp"
#include "platform/platform.hpp"
// Not the core's names: my_thread_state, thread_states, tls_state_2.
int f();
]=])
  put(${case} src/limits/engine.hpp "#pragma once\n#include \"limits/task.hpp\"\n")
  put(${case} src/limits/engine.cpp "#include \"limits/engine.hpp\"\n#include \"limits/engine.inl\"\n")
  put(${case} src/limits/engine.inl "// inline parts\n")
  put(${case} include/memlimits/config.hpp "#pragma once\n")
  put(${case} include/memlimits/limits.hpp [=[
#pragma once
#include "memlimits/config.hpp"
#include <vector>
]=])
  put(${case} include/memlimits/task.hpp [=[
#pragma once
#include "memlimits/limits.hpp"
]=])
  put(${case} include/memlimits/memlimits.hpp [=[
#pragma once
#include "memlimits/config.hpp"
#include "memlimits/limits.hpp"
#include "memlimits/task.hpp"
]=])
  put(${case} tests/unit/limits_test.cpp [=[
#include "limits/task.hpp"
int main() { return 0; }
]=])
  put(${case} tests/structure/check.cmake "# a checker may name thread_state\n")
  put(${case} bench/README.md "Markdown may name `thread_state`.\n")
  put(${case} examples/demo.cpp "#include <memlimits/memlimits.hpp>\n")
endfunction()

# ---------------------------------------------------------------------------
# Running the check.

function(run_check case out_rc out_text)
  execute_process(COMMAND "${CMAKE_COMMAND}" -DSOURCE_DIR=${WORK_DIR}/${case} -P "${CHECK}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE text ERROR_VARIABLE text)
  set(${out_rc} "${rc}" PARENT_SCOPE)
  set(${out_text} "${text}" PARENT_SCOPE)
endfunction()

function(failed case why text)
  message("FAIL ${case}: ${why}\n---- check_layers.cmake said:\n${text}----")
  set_property(GLOBAL APPEND PROPERTY selftest_failures ${case})
endfunction()

# The check passes on <case> and its summary contains <summary>.
function(expect_pass case summary)
  run_check(${case} rc text)
  string(FIND "${text}" "${summary}" at)
  if(NOT rc EQUAL 0)
    failed(${case} "expected success, got exit code ${rc}" "${text}")
  elseif(at EQUAL -1)
    failed(${case} "the summary does not say '${summary}'" "${text}")
  else()
    message("ok   ${case}")
  endif()
endfunction()

# The check fails on <case>, saying <line> and counting <violations>.
function(expect_fail case violations line)
  run_check(${case} rc text)
  if(violations EQUAL 1)
    set(total "layers: 1 violation of")
  else()
    set(total "layers: ${violations} violations of")
  endif()
  string(FIND "${text}" "${line}" at_line)
  string(FIND "${text}" "${total}" at_total)
  if(rc EQUAL 0)
    failed(${case} "expected failure, got success" "${text}")
  elseif(at_line EQUAL -1)
    failed(${case} "expected the line '${line}'" "${text}")
  elseif(at_total EQUAL -1)
    failed(${case} "expected '${total}'" "${text}")
  else()
    message("ok   ${case}: ${line}")
  endif()
endfunction()

# A new case: a copy of the good fixture, to break.
function(case name)
  good_fixture(${name})
endfunction()

# ---------------------------------------------------------------------------
# The good fixture passes.

case(good)
expect_pass(good "layers: ok: 3 layers, 12 files in src/ and 4 public headers (20 includes), 13 files outside src/core/")

# Rule 1: files and table.

case(file_not_listed)
put(file_not_listed src/core/extra.hpp "#pragma once\n")
expect_fail(file_not_listed 1 "src/core/extra.hpp: not listed in the files of layer 2 (core/) in src/README.md")

case(file_in_subfolder_not_listed)
put(file_in_subfolder_not_listed src/limits/detail/x.hpp "#pragma once\n")
expect_fail(file_in_subfolder_not_listed 1 "src/limits/detail/x.hpp: not listed in the files of layer 3 (limits/)")

case(listed_file_missing)
edit(listed_file_missing src/README.md "`table.inc`" "`table.inc`, `gone.hpp`")
expect_fail(listed_file_missing 1 "src/README.md:8: layer 2 (core/) lists gone.hpp, but src/core/gone.hpp does not exist")

case(shorthand_file_missing)
drop(shorthand_file_missing src/limits/engine.inl)
edit(shorthand_file_missing src/limits/engine.cpp "#include \"limits/engine.inl\"\n" "")
expect_fail(shorthand_file_missing 1 "src/README.md:9: layer 3 (limits/) lists engine.inl, but src/limits/engine.inl does not exist")

case(folder_not_in_table)
put(folder_not_in_table src/stats/bounds.cpp "int x;\n")
expect_fail(folder_not_in_table 1 "src/stats/: a folder of src/ that is not a layer of the table in src/README.md")

case(row_folder_missing)
edit(row_folder_missing src/README.md "\n\nText after"
     "\n| 4 | `fiber/` | fibers | | — |\n\nText after")
expect_fail(row_folder_missing 1 "src/README.md:10: layer 4 is src/fiber/, which does not exist")

case(no_table)
edit(no_table src/README.md "| files | public headers |" "| files |")
expect_fail(no_table 1 "src/README.md:1: no layer table")

case(rows_out_of_order)
edit(rows_out_of_order src/README.md "| 3 | `limits/`" "| 2 | `limits/`")
expect_fail(rows_out_of_order 1 "src/README.md:9: layer 2 comes after layer 2: rows go in increasing order")

case(row_without_public_headers)
edit(row_without_public_headers src/README.md "| `memlimits/limits.hpp`, `memlimits/task.hpp` |" "|")
# Then limits/ is no layer: its row, its folder and its two public headers
# are reported.
expect_fail(row_without_public_headers 4 "src/README.md:9: a layer row has 5 cells (#, folder, what it is for, files, public headers); this one has 4")

# Rule 2: includes only upwards.

case(include_down)
edit(include_down src/core/sampler.cpp "#include \"core/table.inc\"" "#include \"limits/task.hpp\"")
edit(include_down src/README.md ", `table.inc`" "")
drop(include_down src/core/table.inc)
expect_fail(include_down 1 "src/core/sampler.cpp:4: #include \"limits/task.hpp\": layer 2 (core/) includes layer 3 (limits/), which comes after it")

case(include_down_indented)
edit(include_down_indented src/platform/linux.cpp "\n\n#include <unistd.h>" "\n  #  include \"core/sampler.hpp\"\n#include <unistd.h>")
expect_fail(include_down_indented 1 "src/platform/linux.cpp:2: #include \"core/sampler.hpp\": layer 1 (platform/) includes layer 2 (core/), which comes after it")

case(include_missing_private_header)
edit(include_missing_private_header src/limits/task.cpp "\n\n#include \"memlimits/task.hpp\"" "\n#include \"core/nope.hpp\"\n#include \"memlimits/task.hpp\"")
expect_fail(include_missing_private_header 1 "src/limits/task.cpp:2: #include \"core/nope.hpp\": src/core/nope.hpp does not exist")

case(include_without_folder)
edit(include_without_folder src/core/sampler.cpp "#include \"core/sampler.hpp\"" "#include \"sampler.hpp\"")
expect_fail(include_without_folder 1 "src/core/sampler.cpp:1: #include \"sampler.hpp\": include a layer's header as folder/file")

case(include_of_no_layer)
edit(include_of_no_layer src/limits/task.cpp "\n\n#include \"memlimits/task.hpp\"" "\n#include \"stats/bounds.hpp\"\n#include \"memlimits/task.hpp\"")
expect_fail(include_of_no_layer 1 "src/limits/task.cpp:2: #include \"stats/bounds.hpp\": stats/ is not a layer of src/README.md")

case(include_with_dotdot)
edit(include_with_dotdot src/limits/engine.hpp "\"limits/task.hpp\"" "\"core/../limits/task.hpp\"")
expect_fail(include_with_dotdot 1 "src/limits/engine.hpp:2: #include \"core/../limits/task.hpp\": include paths start at src/ or include/, without . or ..")

case(public_header_of_lower_layer)
edit(public_header_of_lower_layer src/core/sampler.hpp "memlimits/config.hpp" "memlimits/limits.hpp")
expect_fail(public_header_of_lower_layer 1 "src/core/sampler.hpp:3: #include \"memlimits/limits.hpp\": layer 2 (core/) includes a public header of layer 3 (limits/), which comes after it")

case(public_header_of_no_layer)
edit(public_header_of_no_layer src/limits/task.cpp "memlimits/task.hpp" "memlimits/nope.hpp")
expect_fail(public_header_of_no_layer 1 "src/limits/task.cpp:3: #include \"memlimits/nope.hpp\": not a public header of any layer in src/README.md")

case(umbrella_from_src)
edit(umbrella_from_src src/limits/task.cpp "memlimits/task.hpp" "memlimits/memlimits.hpp")
expect_fail(umbrella_from_src 1 "src/limits/task.cpp:3: #include \"memlimits/memlimits.hpp\": the umbrella header is for users")

# Rule 3: public headers.

case(public_includes_private)
edit(public_includes_private include/memlimits/limits.hpp "#include <vector>" "#include \"core/sampler.hpp\"")
expect_fail(public_includes_private 1 "include/memlimits/limits.hpp:3: #include \"core/sampler.hpp\": a public header includes only public headers (memlimits/...), never src/")

case(public_includes_missing)
edit(public_includes_missing include/memlimits/task.hpp "memlimits/limits.hpp" "memlimits/gone.hpp")
expect_fail(public_includes_missing 1 "include/memlimits/task.hpp:2: #include \"memlimits/gone.hpp\": include/memlimits/gone.hpp does not exist")

case(public_header_not_listed)
put(public_header_not_listed include/memlimits/extra.hpp "#pragma once\n")
expect_fail(public_header_not_listed 1 "include/memlimits/extra.hpp: not listed in the public headers of any layer in src/README.md")

case(listed_public_header_missing)
edit(listed_public_header_missing src/README.md "`memlimits/task.hpp` |" "`memlimits/task.hpp`, `memlimits/gone.hpp` |")
expect_fail(listed_public_header_missing 1 "src/README.md:9: layer 3 (limits/) lists public header memlimits/gone.hpp, but include/memlimits/gone.hpp does not exist")

case(public_header_listed_twice)
edit(public_header_listed_twice src/README.md "`memlimits/task.hpp` |" "`memlimits/task.hpp`, `memlimits/config.hpp` |")
expect_fail(public_header_listed_twice 1 "src/README.md:9: layer 3 (limits/) lists memlimits/config.hpp, already a public header of core/")

# Rule 4: the core's per-thread state stays in core.

case(thread_state_in_limits)
edit(thread_state_in_limits src/limits/task.cpp "int f();" "core::thread_state& s = core::this_thread_state();")
expect_fail(thread_state_in_limits 1 "src/limits/task.cpp:6: names thread_state, this_thread_state, private to src/core/: core::thread_state& s = core::this_thread_state();")

case(tls_state_in_tests)
edit(tls_state_in_tests tests/unit/limits_test.cpp "return 0;" "return core::tls_state.countdown_ > 0;")
expect_fail(tls_state_in_tests 1 "tests/unit/limits_test.cpp:2: names tls_state, private to src/core/")

case(thread_state_in_public_header)
edit(thread_state_in_public_header include/memlimits/config.hpp "#pragma once" "#pragma once\n// see core::thread_state")
expect_fail(thread_state_in_public_header 1 "include/memlimits/config.hpp:2: names thread_state, private to src/core/")

case(thread_state_in_bench)
put(thread_state_in_bench bench/bench_alloc.cpp "// reads\n// this_thread_state().countdown_\n")
expect_fail(thread_state_in_bench 1 "bench/bench_alloc.cpp:2: names this_thread_state, private to src/core/")

# Generated public headers: one made by CMake from cmake/<name>.in exists.

case(generated_public_header)
put(generated_public_header cmake/version.hpp.in "#pragma once\n#define V @PROJECT_VERSION@\n")
edit(generated_public_header include/memlimits/config.hpp "#pragma once\n" "#pragma once\n#include \"memlimits/version.hpp\"\n")
edit(generated_public_header src/README.md "| `memlimits/config.hpp` |" "| `memlimits/config.hpp`, `memlimits/version.hpp` |")
expect_pass(generated_public_header "layers: ok: 3 layers, 12 files in src/ and 4 public headers (21 includes)")

case(generated_public_header_without_template)
edit(generated_public_header_without_template include/memlimits/config.hpp "#pragma once\n" "#pragma once\n#include \"memlimits/version.hpp\"\n")
expect_fail(generated_public_header_without_template 1 "include/memlimits/config.hpp:2: #include \"memlimits/version.hpp\": include/memlimits/version.hpp does not exist")

# ---------------------------------------------------------------------------

get_property(failures GLOBAL PROPERTY selftest_failures)
if(failures)
  list(LENGTH failures count)
  string(JOIN ", " failures ${failures})
  message(FATAL_ERROR "check_layers selftest: ${count} case(s) failed: ${failures}")
endif()
message("check_layers selftest: all cases behave")
