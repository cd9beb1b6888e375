#include "error_translation.hpp"

#include <pybind11/gil_safe_call_once.h>

namespace py = pybind11;

namespace sabot {
namespace bindings {

namespace {

//! The sabot.errors classes, imported once.
struct ErrorClasses {
	py::object cancelled;
	py::object scheduler;
	py::object arrow_input;
	py::object native;
};

const ErrorClasses &Classes() {
	PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<ErrorClasses> storage;
	return storage
	    .call_once_and_store_result([] {
		    auto errors = py::module_::import("sabot.errors");
		    return ErrorClasses {errors.attr("CancelledError"), errors.attr("SchedulerError"),
		                         errors.attr("ArrowInputError"), errors.attr("NativeError")};
	    })
	    .get_stored();
}

void SetStatusError(const arrow::Status &status) {
	const auto &classes = Classes();
	PyObject *type = classes.native.ptr();
	switch (status.code()) {
	case arrow::StatusCode::Invalid:
	case arrow::StatusCode::TypeError:
	case arrow::StatusCode::KeyError:
	case arrow::StatusCode::IndexError:
	case arrow::StatusCode::NotImplemented:
		type = classes.arrow_input.ptr();
		break;
	case arrow::StatusCode::Cancelled:
		type = classes.cancelled.ptr();
		break;
	case arrow::StatusCode::OutOfMemory:
		type = PyExc_MemoryError;
		break;
	default:
		break;
	}
	PyErr_SetString(type, status.ToString().c_str());
}

} // namespace

void RegisterErrorTranslation(py::module_ &m) {
	(void)m;
	Classes(); // import sabot.errors now, with the GIL held, so translation never imports
	py::register_exception_translator([](std::exception_ptr p) {
		try {
			if (p) {
				std::rethrow_exception(p);
			}
		} catch (const sabot::CancelledError &e) {
			PyErr_SetString(Classes().cancelled.ptr(), e.what());
		} catch (const sabot::StatusError &e) {
			SetStatusError(e.status());
		} catch (const SchedulerTaskError &e) {
			PyErr_SetString(Classes().scheduler.ptr(), e.what());
		}
		// Anything else falls through to pybind11's own translators.
	});
}

void ThrowStatus(const arrow::Status &status) {
	throw sabot::StatusError(status);
}

} // namespace bindings
} // namespace sabot
