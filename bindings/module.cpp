// sabot._core: the compiled core. A table of contents only: each concept registers itself.
#include "error_translation.hpp"

#include <arrow/compute/initialize.h>
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_scheduler(py::module_ &m);
void register_compute(py::module_ &m);

PYBIND11_MODULE(_core, m) {
	m.doc() = "Sabot's native core: the morsel scheduler and Arrow compute (private; use sabot.*)";
	// The pyarrow wheel's libarrow_compute registers its kernels only when asked to.
	sabot::bindings::CheckStatus(arrow::compute::Initialize());
	sabot::bindings::RegisterErrorTranslation(m);
	register_scheduler(m);
	register_compute(m);
}
