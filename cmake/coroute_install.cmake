include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS coroute coroute_testing EXPORT coroute-targets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/coroute DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/include/coroute/version.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/coroute)
install(TARGETS coroute-server RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT coroute-targets NAMESPACE coroute:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/coroute)

configure_package_config_file(cmake/coroute-config.cmake.in
  ${PROJECT_BINARY_DIR}/coroute-config.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/coroute)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/coroute-config-version.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/coroute-config.cmake ${PROJECT_BINARY_DIR}/coroute-config-version.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/coroute)
