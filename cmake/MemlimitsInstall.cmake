# Install and export: find_package(memlimits CONFIG) gives memlimits::memlimits
# and memlimits::hooks; the preload library is installed beside them, the
# license text in the package's documentation directory.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MEMLIMITS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/memlimits)

install(TARGETS memlimits memlimits_hooks EXPORT memlimitsTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        OBJECTS DESTINATION ${CMAKE_INSTALL_LIBDIR}/memlimits/objects
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# memlimits::fiber in an export set of its own: the package configuration
# loads it (and looks for Boost) only for the component fiber.
if(TARGET memlimits_fiber)
  install(TARGETS memlimits_fiber EXPORT memlimitsFiberTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT memlimitsFiberTargets NAMESPACE memlimits:: DESTINATION ${MEMLIMITS_CMAKE_DIR})
endif()
install(TARGETS memlimits_preload LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
if(TARGET memlimits-stats)
  install(TARGETS memlimits-stats RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(DIRECTORY include/memlimits DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${MEMLIMITS_GENERATED_INCLUDE_DIR}/memlimits/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/memlimits)
install(EXPORT memlimitsTargets NAMESPACE memlimits:: DESTINATION ${MEMLIMITS_CMAKE_DIR})
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})

configure_package_config_file(cmake/memlimitsConfig.cmake.in
  ${PROJECT_BINARY_DIR}/memlimitsConfig.cmake INSTALL_DESTINATION ${MEMLIMITS_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/memlimitsConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/memlimitsConfig.cmake
              ${PROJECT_BINARY_DIR}/memlimitsConfigVersion.cmake
              cmake/backends.cmake
        DESTINATION ${MEMLIMITS_CMAKE_DIR})

# pkg-config files (cmake/memlimits.pc.in, cmake/memlimits-hooks.pc.in) in
# <libdir>/pkgconfig, with a prefix relative to their own directory, so that
# the install tree can move (cmake --install --prefix). The hooks' file names
# the installed objects of the build's configuration.
set(MEMLIMITS_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH MEMLIMITS_PC_TO_PREFIX /${MEMLIMITS_PC_DIR} /)
string(REGEX REPLACE "/$" "" MEMLIMITS_PC_TO_PREFIX "${MEMLIMITS_PC_TO_PREFIX}")
set(MEMLIMITS_PC_REQUIRES zlib libdw)
if(MEMLIMITS_WITH_SPDLOG)
  list(APPEND MEMLIMITS_PC_REQUIRES spdlog)
endif()
list(JOIN MEMLIMITS_PC_REQUIRES ", " MEMLIMITS_PC_REQUIRES)
get_target_property(memlimits_hook_sources memlimits_hooks SOURCES)
set(MEMLIMITS_PC_HOOK_OBJECTS)
foreach(source IN LISTS memlimits_hook_sources)
  file(RELATIVE_PATH source ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/src/${source})
  string(APPEND MEMLIMITS_PC_HOOK_OBJECTS " \${objectdir}/${source}.o")
endforeach()
string(STRIP "${MEMLIMITS_PC_HOOK_OBJECTS}" MEMLIMITS_PC_HOOK_OBJECTS)
configure_file(cmake/memlimits.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/memlimits.pc @ONLY)
configure_file(cmake/memlimits-hooks.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/memlimits-hooks.pc.in
               @ONLY)
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/pkgconfig/$<CONFIG>/memlimits-hooks.pc
     INPUT ${PROJECT_BINARY_DIR}/pkgconfig/memlimits-hooks.pc.in)
install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/memlimits.pc
              ${PROJECT_BINARY_DIR}/pkgconfig/$<CONFIG>/memlimits-hooks.pc
        DESTINATION ${MEMLIMITS_PC_DIR})
