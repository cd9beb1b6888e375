//===----------------------------------------------------------------------===//
// sabot/cancellation.hpp
//
// Cooperative cancellation of running jobs.
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <functional>
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

//! Thrown by ParallelFor when the calling thread's ScopedInterruptCheck asked to stop the job
//! (the bindings use it for Ctrl-C: the pending KeyboardInterrupt is raised instead).
class InterruptedError : public CancelledError {
public:
	//! Build with a message saying how far the job got.
	explicit InterruptedError(const std::string &message) : CancelledError(message) {
	}
};

//! While alive, ParallelFor calls made by this thread poll `check` about every 100 ms while they
//! wait for the workers; when it returns true the job is cancelled and ParallelFor throws
//! InterruptedError. Scopes nest (the innermost one is used). The core stays free of Python: the
//! bindings pass a check that looks for pending signals.
class ScopedInterruptCheck {
public:
	//! Install `check` for the calling thread.
	explicit ScopedInterruptCheck(std::function<bool()> check);
	//! Restore the previous check of this thread.
	~ScopedInterruptCheck();
	ScopedInterruptCheck(const ScopedInterruptCheck &) = delete;
	ScopedInterruptCheck &operator=(const ScopedInterruptCheck &) = delete;
	//! The calling thread's innermost check, or nullptr.
	static const std::function<bool()> *Current();

private:
	//! The check.
	std::function<bool()> check_;
	//! The scope this one replaced.
	const ScopedInterruptCheck *previous_;
};

} // namespace sabot
