//===----------------------------------------------------------------------===//
// sabot/task.hpp
//
// The unit of work the TaskScheduler runs on its worker threads.
//===----------------------------------------------------------------------===//
#pragma once

namespace sabot {

//! What one call of Task::Execute achieved.
enum class TaskResult {
	FINISHED,     //!< the task is done; the scheduler destroys it
	NOT_FINISHED, //!< more to do; the scheduler queues it again on the same worker
	ERROR,        //!< the task failed and recorded its error where its owner will find it
	BLOCKED       //!< cannot progress now; queued again after the worker has looked for other work
};

//! A piece of work run by a worker thread. Execute must not throw: a task catches its own
//! exceptions and records them for whoever waits on it (the scheduler also catches as a last
//! resort, counts the error in its stats and drops the task, so nothing escapes a worker thread).
class Task {
public:
	//! Virtual destructor: tasks are owned through std::unique_ptr<Task>.
	virtual ~Task() = default;
	//! Run (part of) the task on the worker thread `worker_id` (in [0, NumThreads())).
	virtual TaskResult Execute(int worker_id) = 0;
};

} // namespace sabot
