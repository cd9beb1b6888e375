//===----------------------------------------------------------------------===//
// bindings/error_translation.hpp
//
// The one place that maps C++ exceptions and arrow::Status to sabot.errors classes:
//   sabot::CancelledError, StatusCode::Cancelled          -> sabot.errors.CancelledError
//   sabot::StatusError Invalid/TypeError/KeyError/
//     IndexError/NotImplemented/OutOfMemory(MemoryError)  -> sabot.errors.ArrowInputError
//   other sabot::StatusError                              -> sabot.errors.NativeError
//   any other std::exception escaping a scheduler run     -> sabot.errors.SchedulerError
//     (via RunScheduled: a task's own exception, its message kept)
// pybind11's own mappings (std::invalid_argument -> ValueError, ...) stay for argument checks.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/cancellation.hpp"
#include "sabot/status_error.hpp"

#include <pybind11/pybind11.h>

#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace sabot {
namespace bindings {

//! A task run by the scheduler threw an exception of a type the translator does not know
//! specifically; raised in Python as sabot.errors.SchedulerError with the task's message.
class SchedulerTaskError : public std::runtime_error {
public:
	//! Keep the task's message.
	explicit SchedulerTaskError(const std::string &message) : std::runtime_error(message) {
	}
};

//! Register the exception translator with pybind11 (call once, at module load).
void RegisterErrorTranslation(pybind11::module_ &m);

//! Raise the sabot.errors exception that matches `status` (which must not be OK).
[[noreturn]] void ThrowStatus(const arrow::Status &status);

//! Raise if `status` is not OK.
inline void CheckStatus(const arrow::Status &status) {
	if (!status.ok()) {
		ThrowStatus(status);
	}
}

//! Run `fn` with the GIL released (it must not touch Python objects). While it waits for the
//! scheduler, pending signals are checked about every 100 ms: a Ctrl-C (or any signal handler that
//! raises) cancels the running job and its exception (KeyboardInterrupt) is raised here.
//! Exceptions of unknown types thrown by scheduler tasks become SchedulerTaskError; known ones
//! pass through to the translator.
template <typename Fn>
decltype(auto) RunScheduled(Fn &&fn) {
	PyObject *pending_type = nullptr, *pending_value = nullptr, *pending_tb = nullptr;
	const auto raise_pending = [&] {
		pybind11::gil_scoped_acquire acquire;
		PyErr_Restore(pending_type, pending_value, pending_tb);
		throw pybind11::error_already_set();
	};
	pybind11::gil_scoped_release release;
	sabot::ScopedInterruptCheck interrupt_check([&] {
		pybind11::gil_scoped_acquire acquire;
		if (PyErr_CheckSignals() != 0) {
			PyErr_Fetch(&pending_type, &pending_value, &pending_tb);
			return true;
		}
		return false;
	});
	try {
		if constexpr (std::is_void_v<decltype(std::forward<Fn>(fn)())>) {
			std::forward<Fn>(fn)();
			if (pending_type) {
				raise_pending();
			}
		} else {
			auto result = std::forward<Fn>(fn)();
			if (pending_type) {
				raise_pending(); // the signal came as the job finished: still raise it
			}
			return result;
		}
	} catch (const sabot::CancelledError &) {
		if (pending_type) {
			raise_pending();
		}
		throw;
	} catch (const pybind11::error_already_set &) {
		throw;
	} catch (const sabot::StatusError &) {
		throw;
	} catch (const std::invalid_argument &) {
		throw;
	} catch (const std::bad_alloc &) {
		throw;
	} catch (const std::exception &e) {
		throw SchedulerTaskError(e.what());
	}
}

} // namespace bindings
} // namespace sabot
