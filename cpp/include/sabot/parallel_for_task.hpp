//===----------------------------------------------------------------------===//
// sabot/parallel_for_task.hpp
//
// One ParallelFor call on a WorkerPool: the job (shared morsel ranges, first error, completion)
// and its tasks, one per worker, each draining its own range and then stealing halves of others.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/cancellation.hpp"
#include "sabot/task_scheduler.hpp"
#include "sabot/worker_pool.hpp"

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>

namespace sabot {

//! A [begin, end) morsel range packed in one 64-bit word, so that the owner's claim of the next
//! morsel and a thief's split are both a single compare-and-swap; one per task, own cache line.
struct alignas(64) RangeSlot {
	//! end << 32 | begin.
	std::atomic<uint64_t> range {0};
};

//! Shared state of one ParallelFor over morsels [base, base + count) (count < 2^32); lives on the
//! caller's stack until every task reported.
class ParallelForJob {
public:
	//! A job of `count` morsels starting at `base`, split over min(pool threads, count) slots.
	ParallelForJob(WorkerPool &pool, size_t base, size_t count, const MorselFunction &body,
	               const CancellationToken *cancel);
	ParallelForJob(const ParallelForJob &) = delete;
	ParallelForJob &operator=(const ParallelForJob &) = delete;

	//! Queue one task per slot and block until all finished. While waiting, `check` (when not null)
	//! runs about every 100 ms; when it returns true the job stops and Run returns true.
	bool Run(const std::function<bool()> *check);
	//! The first exception a body threw, or null.
	std::exception_ptr Error() const {
		return error_;
	}
	//! Morsels that ran.
	uint64_t Executed() const {
		return executed_.load();
	}

	//! Record a body's exception (the first one wins) and stop the other tasks.
	void Fail(std::exception_ptr error);
	//! A task finished after running `morsels` morsels; the last one wakes the caller.
	void TaskDone(uint64_t morsels);
	//! True once the job failed, was interrupted or its token was cancelled. Checked before every
	//! morsel, so it is defined here to be inlined.
	bool ShouldStop() {
		if (stop_.load(std::memory_order_relaxed)) {
			return true;
		}
		if (cancel_ && cancel_->IsCancelled()) {
			stop_.store(true, std::memory_order_relaxed);
			return true;
		}
		return false;
	}
	//! The morsel range of slot `slot`.
	RangeSlot &Slot(int slot) {
		return slots_[slot];
	}
	//! Number of slots (tasks).
	int NumSlots() const {
		return num_slots_;
	}
	//! First morsel index of the job.
	size_t Base() const {
		return base_;
	}
	//! The loop body.
	const MorselFunction &Body() const {
		return body_;
	}
	//! The pool the tasks run on.
	WorkerPool &Pool() const {
		return pool_;
	}

private:
	//! The pool the tasks run on.
	WorkerPool &pool_;
	//! First morsel index.
	size_t base_;
	//! The loop body.
	const MorselFunction &body_;
	//! Optional cancellation.
	const CancellationToken *cancel_;
	//! Number of slots (tasks).
	int num_slots_;
	//! One morsel range per slot.
	std::unique_ptr<RangeSlot[]> slots_;
	//! Set to stop every task at its next morsel.
	std::atomic<bool> stop_ {false};
	//! Morsels run over all tasks.
	std::atomic<uint64_t> executed_ {0};
	//! Guards pending_ and error_.
	std::mutex mutex_;
	//! Signalled when pending_ drops to 0.
	std::condition_variable done_cv_;
	//! Tasks still running.
	int pending_ = 0;
	//! The first exception.
	std::exception_ptr error_;
};

//! The share of one ParallelFor that starts in slot `slot`: drain it, then steal.
class ParallelForTask : public SelfAccountingTask {
public:
	//! The task of slot `slot` of `job`.
	ParallelForTask(ParallelForJob &job, int slot) : job_(job), slot_(slot) {
	}
	//! Run morsels until none is left to claim or steal; accounts its counters, then reports to the job.
	TaskResult Execute(int worker_id) override;

private:
	//! Morsels run, and how many of them were stolen and from where.
	struct Tally {
		//! Morsels run.
		uint64_t executed = 0;
		//! Of those, morsels that came from a steal.
		uint64_t stolen = 0;
		//! Steals from the same NUMA node.
		uint64_t steals_local = 0;
		//! Steals from another NUMA node.
		uint64_t steals_remote = 0;
	};
	//! The claim/steal loop.
	void Run(int worker_id, Tally &tally);
	//! Steal half of a range for `worker_id` into [begin, end); returns the victim slot or -1.
	int StealFromOthers(int worker_id, uint32_t &begin, uint32_t &end);

	//! The job.
	ParallelForJob &job_;
	//! This task's slot.
	int slot_;
	//! Morsels left in our slot that came from a steal.
	uint32_t stolen_left_ = 0;
};

} // namespace sabot
