# Install and export: find_package(memlimits CONFIG) gives memlimits::memlimits
# and memlimits::hooks; the preload library is installed beside them, the
# license text in the package's documentation directory.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MEMLIMITS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/memlimits)

set(MEMLIMITS_INSTALLED_TARGETS memlimits memlimits_hooks)
if(TARGET memlimits_fiber)
  list(APPEND MEMLIMITS_INSTALLED_TARGETS memlimits_fiber)
endif()
install(TARGETS ${MEMLIMITS_INSTALLED_TARGETS} EXPORT memlimitsTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        OBJECTS DESTINATION ${CMAKE_INSTALL_LIBDIR}/memlimits/objects
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
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
        DESTINATION ${MEMLIMITS_CMAKE_DIR})
