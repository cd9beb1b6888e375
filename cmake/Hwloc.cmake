# hwloc is optional: without it the core falls back to Linux sysfs topology and
# sched_setaffinity pinning, and reports numa_binding=false in its stats.
# -DSABOT_WITH_HWLOC=OFF builds without it even where it is installed (tests use this).
option(SABOT_WITH_HWLOC "Use hwloc for topology and thread binding when it is found" ON)
find_package(PkgConfig QUIET)
set(SABOT_HAVE_HWLOC OFF)
if(SABOT_WITH_HWLOC AND PkgConfig_FOUND)
  pkg_check_modules(HWLOC IMPORTED_TARGET hwloc)
  if(HWLOC_FOUND)
    set(SABOT_HAVE_HWLOC ON)
    message(STATUS "sabot: hwloc ${HWLOC_VERSION} found, NUMA binding enabled")
  endif()
endif()
if(NOT SABOT_HAVE_HWLOC)
  message(STATUS "sabot: building without hwloc (apt-get install libhwloc-dev to enable NUMA binding)")
endif()
