# hwloc is optional: without it the core falls back to Linux sysfs topology and reports
# numa_binding=false in its stats.
find_package(PkgConfig QUIET)
set(SABOT_HAVE_HWLOC OFF)
if(PkgConfig_FOUND)
  pkg_check_modules(HWLOC IMPORTED_TARGET hwloc)
  if(HWLOC_FOUND)
    set(SABOT_HAVE_HWLOC ON)
    message(STATUS "sabot: hwloc ${HWLOC_VERSION} found, NUMA binding enabled")
  endif()
endif()
if(NOT SABOT_HAVE_HWLOC)
  message(STATUS "sabot: hwloc not found (apt-get install libhwloc-dev), building without NUMA binding")
endif()
