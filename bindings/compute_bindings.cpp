// Columnar compute bindings (owner: native compute). Filled in by the compute work.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_compute(py::module_& m) { (void)m; }
