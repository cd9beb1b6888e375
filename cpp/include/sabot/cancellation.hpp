//===----------------------------------------------------------------------===//
// sabot/cancellation.hpp
//
// Cooperative cancellation of running jobs.
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <stdexcept>
#include <string>

namespace sabot {

//! Shared flag a caller sets to stop a running job. Workers check it before every morsel, so a
//! cancelled job stops after the morsels already running finish. Thread-safe; cheap to poll.
class CancellationToken {
public:
	//! Request cancellation (idempotent, callable from any thread).
	void Cancel() noexcept {
		cancelled_.store(true, std::memory_order_release);
	}
	//! True once Cancel() was called (and Reset() was not called since).
	bool IsCancelled() const noexcept {
		return cancelled_.load(std::memory_order_relaxed);
	}
	//! Clear the flag so the token can be reused for another job.
	void Reset() noexcept {
		cancelled_.store(false, std::memory_order_release);
	}

private:
	//! The flag itself.
	std::atomic<bool> cancelled_ {false};
};

//! Thrown by TaskScheduler::ParallelFor when its CancellationToken was cancelled before every
//! morsel ran. The bindings map it to sabot.errors.CancelledError.
class CancelledError : public std::runtime_error {
public:
	//! Build with a message saying what was cancelled.
	explicit CancelledError(const std::string &message) : std::runtime_error(message) {
	}
};

} // namespace sabot
