//===----------------------------------------------------------------------===//
// sabot/compute/exec_options.hpp
//
// How one columnar call runs (threads, morsel size, cancellation), and the scheduler it runs on.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/cancellation.hpp"
#include "sabot/morsel.hpp"

#include <cstdint>

namespace sabot {

class TaskScheduler;

namespace compute {

//! How one columnar call runs.
struct ExecOptions {
	//! Worker threads; 0 = the global scheduler's.
	int threads = 0;
	//! Bytes of input per morsel (MORSEL_SIZE_KB * 1024).
	int64_t morsel_bytes = DEFAULT_MORSEL_BYTES;
	//! Optional cancellation.
	const CancellationToken *cancel = nullptr;
};

//! The scheduler a call with `threads` workers runs on: the global one for 0 (or its thread
//! count), otherwise a cached pool of that size.
TaskScheduler &SchedulerFor(int threads);

} // namespace compute
} // namespace sabot
