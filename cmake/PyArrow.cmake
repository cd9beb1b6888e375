# Arrow C++ comes from the installed pyarrow wheel, which ships headers and the versioned
# shared libraries but no ArrowConfig.cmake: locate them through pyarrow itself.
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import pyarrow as pa; print(pa.get_include()); print(pa.get_library_dirs()[0]); print(pa.__version__)"
  OUTPUT_VARIABLE _pa_out OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _pa_rc)
if(NOT _pa_rc EQUAL 0)
  message(FATAL_ERROR "sabot: pyarrow is needed to build the native core (pip install 'pyarrow>=26,<27')")
endif()
string(REPLACE "\n" ";" _pa_lines "${_pa_out}")
list(GET _pa_lines 0 PYARROW_INCLUDE_DIR)
list(GET _pa_lines 1 PYARROW_LIB_DIR)
list(GET _pa_lines 2 PYARROW_VERSION)
string(REGEX MATCH "^[0-9]+" PYARROW_MAJOR "${PYARROW_VERSION}")
set(_so "${PYARROW_MAJOR}00")

find_library(ARROW_LIB NAMES libarrow.so.${_so} PATHS "${PYARROW_LIB_DIR}" NO_DEFAULT_PATH REQUIRED)
find_library(ARROW_COMPUTE_LIB NAMES libarrow_compute.so.${_so} PATHS "${PYARROW_LIB_DIR}" NO_DEFAULT_PATH REQUIRED)
message(STATUS "sabot: Arrow ${PYARROW_VERSION} from ${PYARROW_LIB_DIR}")

add_library(sabot_arrow INTERFACE)
target_include_directories(sabot_arrow SYSTEM INTERFACE "${PYARROW_INCLUDE_DIR}")
target_link_libraries(sabot_arrow INTERFACE "${ARROW_LIB}" "${ARROW_COMPUTE_LIB}")
# pyarrow wheels are built with the new libstdc++ ABI.
target_compile_definitions(sabot_arrow INTERFACE _GLIBCXX_USE_CXX11_ABI=1
  SABOT_ARROW_VERSION="${PYARROW_VERSION}")
