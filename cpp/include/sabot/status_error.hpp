//===----------------------------------------------------------------------===//
// sabot/status_error.hpp
//
// An arrow::Status carried as a C++ exception, so that a failing Arrow call inside a
// ParallelFor body (or anywhere in the core) reaches the bindings with its status code intact.
//===----------------------------------------------------------------------===//
#pragma once

#include <arrow/result.h>
#include <arrow/status.h>

#include <stdexcept>
#include <utility>

namespace sabot {

//! A non-OK arrow::Status thrown as an exception. The bindings map it by status code to
//! sabot.errors classes (see bindings/error_translation.hpp).
class StatusError : public std::runtime_error {
public:
	//! Wrap a non-OK status; what() is status.ToString().
	explicit StatusError(arrow::Status status) : std::runtime_error(status.ToString()), status_(std::move(status)) {
	}
	//! The wrapped status.
	const arrow::Status &status() const noexcept {
		return status_;
	}

private:
	//! The status as Arrow returned it.
	arrow::Status status_;
};

//! Throw StatusError if `status` is not OK.
inline void ThrowIfNotOk(const arrow::Status &status) {
	if (!status.ok()) {
		throw StatusError(status);
	}
}

//! The value of `result`, or throw StatusError with its status.
template <typename T>
T ValueOrThrow(arrow::Result<T> result) {
	if (!result.ok()) {
		throw StatusError(result.status());
	}
	return std::move(result).ValueUnsafe();
}

} // namespace sabot
