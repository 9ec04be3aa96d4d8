# Packaging test driver, run by ctest as `cmake -D... -P run_consumer.cmake`
# (tests/package/CMakeLists.txt): builds and runs one consumer project.
#
#   MODE=find_package      installs BINARY_DIR into WORK_DIR/prefix, then builds
#                          find_package/ against it (CMAKE_PREFIX_PATH);
#   MODE=add_subdirectory  builds add_subdirectory/ with SOURCE_DIR inside it.
#
# Inputs: MODE, SOURCE_DIR (memlimits' sources), BINARY_DIR (its build tree),
# WORK_DIR (emptied first), GENERATOR, CXX_COMPILER, BUILD_TYPE (may be empty),
# CXX_FLAGS (the parent's flags, with -fsanitize= when it uses a sanitizer),
# SANITIZER (MEMLIMITS_SANITIZER), and optionally MAKE_PROGRAM, PARALLEL and
# VERSION (the version the consumer must find in the package and the headers).
cmake_minimum_required(VERSION 3.25)

foreach(var MODE SOURCE_DIR BINARY_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT MODE MATCHES "^(find_package|add_subdirectory)$")
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()
if(NOT PARALLEL)
  set(PARALLEL 2)
endif()

# run(<step> <command>...): runs a command, echoing it; stops at the first failure.
function(run step)
  message(STATUS "[${MODE}] ${step}")
  execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "[${MODE}] ${step} failed (${result})")
  endif()
endfunction()

# An install into a prefix must not be redirected by the caller's DESTDIR.
unset(ENV{DESTDIR})
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(config_args)
set(ctest_config_args)
if(BUILD_TYPE)
  set(config_args --config "${BUILD_TYPE}")
  set(ctest_config_args -C "${BUILD_TYPE}")
endif()

set(configure_args -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}" "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}")
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(VERSION)
  list(APPEND configure_args "-DMEMLIMITS_EXPECTED_VERSION=${VERSION}")
endif()

set(build_dir "${WORK_DIR}/build")
if(MODE STREQUAL "find_package")
  set(prefix "${WORK_DIR}/prefix")
  run("install ${BINARY_DIR} into ${prefix}"
      "${CMAKE_COMMAND}" --install "${BINARY_DIR}" --prefix "${prefix}" ${config_args})
  # The license text is installed with the package (cmake/MemlimitsInstall.cmake).
  if(NOT EXISTS "${prefix}/share/doc/memlimits/LICENSE")
    message(FATAL_ERROR "[${MODE}] the install has no share/doc/memlimits/LICENSE")
  endif()
  run("configure the find_package consumer"
      "${CMAKE_COMMAND}" -S "${SOURCE_DIR}/tests/package/find_package" -B "${build_dir}"
      ${configure_args} "-DCMAKE_PREFIX_PATH=${prefix}"
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
  # The package must come from the prefix just installed, not from elsewhere.
  file(STRINGS "${build_dir}/CMakeCache.txt" found REGEX "^memlimits_DIR:")
  string(REGEX REPLACE "^memlimits_DIR:[A-Z]+=" "" found "${found}")
  file(REAL_PATH "${prefix}" real_prefix)
  file(REAL_PATH "${found}" real_found)
  string(FIND "${real_found}/" "${real_prefix}/" at)
  if(NOT at EQUAL 0)
    message(FATAL_ERROR "[${MODE}] memlimits was found in '${found}', not under '${prefix}'")
  endif()
else()
  run("configure the add_subdirectory consumer"
      "${CMAKE_COMMAND}" -S "${SOURCE_DIR}/tests/package/add_subdirectory" -B "${build_dir}"
      ${configure_args} "-DMEMLIMITS_SOURCE_DIR=${SOURCE_DIR}"
      "-DMEMLIMITS_SANITIZER=${SANITIZER}")
endif()

run("build the consumer"
    "${CMAKE_COMMAND}" --build "${build_dir}" ${config_args} --parallel ${PARALLEL})
run("run the consumer"
    "${CMAKE_CTEST_COMMAND}" --test-dir "${build_dir}" ${ctest_config_args}
    --output-on-failure --no-tests=error)
