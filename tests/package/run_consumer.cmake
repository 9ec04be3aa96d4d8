# Packaging test driver, run by ctest as `cmake -D... -P run_consumer.cmake`
# (tests/package/CMakeLists.txt): builds and runs one consumer project.
#
#   MODE=find_package      installs BINARY_DIR into WORK_DIR/prefix, then builds
#                          find_package/ against it (CMAKE_PREFIX_PATH) with
#                          Boost hidden, with the fiber component (and checks
#                          that it is refused without Boost), and main.cpp
#                          with pkg-config's flags;
#   MODE=find_package_without_spdlog
#                          builds memlimits from SOURCE_DIR with
#                          MEMLIMITS_WITH_SPDLOG=OFF into WORK_DIR, then as
#                          find_package, with spdlog hidden too;
#   MODE=add_subdirectory  builds add_subdirectory/ with SOURCE_DIR inside it.
#
# Inputs: MODE, SOURCE_DIR (memlimits' sources), BINARY_DIR (its build tree),
# WORK_DIR (emptied first), GENERATOR, CXX_COMPILER, BUILD_TYPE (may be empty),
# CXX_FLAGS (the parent's flags, with -fsanitize= when it uses a sanitizer),
# SANITIZER (MEMLIMITS_SANITIZER), and optionally MAKE_PROGRAM, PARALLEL,
# VERSION (the version the consumer must find in the package and the headers)
# and WITH_SPDLOG (MEMLIMITS_WITH_SPDLOG of that build; default ON).
cmake_minimum_required(VERSION 3.25)

foreach(var MODE SOURCE_DIR BINARY_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT MODE MATCHES "^(find_package|find_package_without_spdlog|add_subdirectory)$")
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()
if(NOT PARALLEL)
  set(PARALLEL 2)
endif()
if(NOT DEFINED WITH_SPDLOG)
  set(WITH_SPDLOG ON)
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

if(MODE STREQUAL "find_package_without_spdlog")
  # memlimits itself built without spdlog (the library only, no fibers):
  # its package must configure with spdlog and Boost hidden.
  set(own_build "${WORK_DIR}/memlimits-build")
  run("configure memlimits with MEMLIMITS_WITH_SPDLOG=OFF"
      "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${own_build}" ${configure_args}
      "-DMEMLIMITS_SANITIZER=${SANITIZER}" -DMEMLIMITS_WITH_SPDLOG=OFF
      -DMEMLIMITS_BUILD_FIBER=OFF -DMEMLIMITS_BUILD_TESTS=OFF -DMEMLIMITS_BUILD_EXAMPLES=OFF
      -DMEMLIMITS_BUILD_BENCH=OFF -DMEMLIMITS_BUILD_STATS=OFF -DMEMLIMITS_INSTALL=ON
      -DCMAKE_DISABLE_FIND_PACKAGE_spdlog=ON -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON)
  run("build memlimits without spdlog"
      "${CMAKE_COMMAND}" --build "${own_build}" ${config_args} --parallel ${PARALLEL})
  set(BINARY_DIR "${own_build}")
  set(WITH_SPDLOG OFF)
  set(MODE find_package)
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
  set(find_args "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
      -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
  # A consumer that does not ask for fibers needs no Boost: configure it with
  # Boost hidden (and spdlog too when the library was built without it).
  set(hidden -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON)
  if(NOT WITH_SPDLOG)
    list(APPEND hidden -DCMAKE_DISABLE_FIND_PACKAGE_spdlog=ON)
  endif()
  run("configure the find_package consumer (${hidden})"
      "${CMAKE_COMMAND}" -S "${SOURCE_DIR}/tests/package/find_package" -B "${build_dir}"
      ${configure_args} ${find_args} ${hidden})
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

if(MODE STREQUAL "find_package")
  if(EXISTS "${prefix}/lib/cmake/memlimits/memlimitsFiberTargets.cmake")
    # The fiber component: found with Boost, refused (saying why) without.
    set(fiber_build "${WORK_DIR}/build-fiber")
    run("configure the find_package consumer with COMPONENTS fiber"
        "${CMAKE_COMMAND}" -S "${SOURCE_DIR}/tests/package/find_package" -B "${fiber_build}"
        ${configure_args} ${find_args} -DMEMLIMITS_CONSUMER_FIBER=ON)
    run("build the fiber consumer"
        "${CMAKE_COMMAND}" --build "${fiber_build}" ${config_args} --parallel ${PARALLEL})
    run("run the fiber consumer"
        "${CMAKE_CTEST_COMMAND}" --test-dir "${fiber_build}" ${ctest_config_args}
        --output-on-failure --no-tests=error)
    message(STATUS "[${MODE}] configure with COMPONENTS fiber and Boost hidden: must fail")
    execute_process(
      COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}/tests/package/find_package"
              -B "${WORK_DIR}/build-no-boost" ${configure_args} ${find_args}
              -DMEMLIMITS_CONSUMER_FIBER=ON -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON
      RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
    if(result EQUAL 0 OR NOT output MATCHES "fiber component needs Boost.Context")
      message(FATAL_ERROR "[${MODE}] COMPONENTS fiber without Boost: expected a failure naming "
                          "Boost.Context, got (${result}):\n${output}")
    endif()
  endif()

  # pkg-config, for builds without CMake: the same consumer, compiled and
  # linked by hand with the flags of memlimits-hooks.pc.
  find_program(PKG_CONFIG pkg-config)
  if(PKG_CONFIG)
    set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig")
    execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs memlimits-hooks
                    RESULT_VARIABLE result OUTPUT_VARIABLE pc_flags ERROR_VARIABLE pc_error
                    OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT result EQUAL 0)
      message(FATAL_ERROR "[${MODE}] pkg-config memlimits-hooks failed: ${pc_error}")
    endif()
    separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
    separate_arguments(flags UNIX_COMMAND "${CXX_FLAGS}")
    set(pc_program "${WORK_DIR}/pkg-config-consumer")
    run("compile the consumer with pkg-config's flags"
        "${CXX_COMPILER}" -std=c++20 ${flags} "-DMEMLIMITS_EXPECTED_VERSION=\"${VERSION}\""
        "${SOURCE_DIR}/tests/package/find_package/main.cpp" ${pc_flags} -o "${pc_program}")
    run("run the pkg-config consumer" "${pc_program}")
  else()
    message(STATUS "[${MODE}] no pkg-config: the pkg-config consumer is not checked")
  endif()
endif()
