#include "sabot/parallel_for_task.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

namespace sabot {

namespace {

using Clock = std::chrono::steady_clock;

// How often a waiting ParallelFor caller runs its interrupt check.
constexpr auto INTERRUPT_POLL = std::chrono::milliseconds(100);

inline uint64_t Pack(uint32_t begin, uint32_t end) {
	return (static_cast<uint64_t>(end) << 32) | begin;
}
inline uint32_t Begin(uint64_t word) {
	return static_cast<uint32_t>(word);
}
inline uint32_t End(uint64_t word) {
	return static_cast<uint32_t>(word >> 32);
}

// Claim the next morsel of `slot` (the owner's side): begin += 1.
bool ClaimOwn(RangeSlot &slot, uint32_t &morsel) {
	uint64_t word = slot.range.load(std::memory_order_acquire);
	while (true) {
		const uint32_t b = Begin(word), e = End(word);
		if (b >= e) {
			return false;
		}
		if (slot.range.compare_exchange_weak(word, Pack(b + 1, e), std::memory_order_acq_rel,
		                                     std::memory_order_acquire)) {
			morsel = b;
			return true;
		}
	}
}

// Take the upper half of `victim` (all of it when one morsel is left).
bool StealHalf(RangeSlot &victim, uint32_t &begin, uint32_t &end) {
	uint64_t word = victim.range.load(std::memory_order_acquire);
	while (true) {
		const uint32_t b = Begin(word), e = End(word);
		if (b >= e) {
			return false;
		}
		const uint32_t mid = b + (e - b) / 2;
		if (victim.range.compare_exchange_weak(word, Pack(b, mid), std::memory_order_acq_rel,
		                                       std::memory_order_acquire)) {
			begin = mid;
			end = e;
			return true;
		}
	}
}

} // namespace

//===--------------------------------------------------------------------===//
// ParallelForJob
//===--------------------------------------------------------------------===//
ParallelForJob::ParallelForJob(WorkerPool &pool, size_t base, size_t count, const MorselFunction &body,
                               const CancellationToken *cancel)
    : pool_(pool), base_(base), body_(body), cancel_(cancel),
      num_slots_(static_cast<int>(std::min<size_t>(static_cast<size_t>(pool.NumThreads()), count))),
      slots_(std::make_unique<RangeSlot[]>(static_cast<size_t>(num_slots_))), pending_(num_slots_) {
	const auto slots = static_cast<size_t>(num_slots_);
	for (size_t s = 0; s < slots; s++) {
		const auto begin = static_cast<uint32_t>(count * s / slots);
		const auto end = static_cast<uint32_t>(count * (s + 1) / slots);
		slots_[s].range.store(Pack(begin, end), std::memory_order_relaxed);
	}
}

bool ParallelForJob::Run(const std::function<bool()> *check) {
	std::vector<std::unique_ptr<Task>> tasks;
	tasks.reserve(static_cast<size_t>(num_slots_));
	for (int s = 0; s < num_slots_; s++) {
		tasks.push_back(std::make_unique<ParallelForTask>(*this, s));
	}
	pool_.PushEach(tasks);
	std::unique_lock<std::mutex> lock(mutex_);
	const auto done = [&] {
		return pending_ == 0;
	};
	if (!check) {
		done_cv_.wait(lock, done);
		return false;
	}
	while (!done_cv_.wait_for(lock, INTERRUPT_POLL, done)) {
		lock.unlock();
		const bool stop = (*check)();
		lock.lock();
		if (stop) {
			stop_.store(true, std::memory_order_relaxed);
			done_cv_.wait(lock, done);
			return true;
		}
	}
	return false;
}

void ParallelForJob::Fail(std::exception_ptr error) {
	std::lock_guard<std::mutex> guard(mutex_);
	if (!error_) {
		error_ = std::move(error);
	}
	stop_.store(true, std::memory_order_relaxed);
}

void ParallelForJob::TaskDone(uint64_t morsels) {
	executed_.fetch_add(morsels, std::memory_order_relaxed);
	std::lock_guard<std::mutex> guard(mutex_);
	if (--pending_ == 0) {
		done_cv_.notify_all();
	}
}

//===--------------------------------------------------------------------===//
// ParallelForTask
//===--------------------------------------------------------------------===//
TaskResult ParallelForTask::Execute(int worker_id) {
	const auto start = Clock::now();
	Tally tally;
	try {
		Run(worker_id, tally);
	} catch (...) {
		job_.Fail(std::current_exception());
	}
	auto &counters = job_.Pool().GetWorker(worker_id).counters;
	counters.morsels_executed.fetch_add(tally.executed, std::memory_order_relaxed);
	counters.morsels_stolen.fetch_add(tally.stolen, std::memory_order_relaxed);
	counters.steals_local.fetch_add(tally.steals_local, std::memory_order_relaxed);
	counters.steals_remote.fetch_add(tally.steals_remote, std::memory_order_relaxed);
	// Accounted here rather than by the worker loop so that the counters are complete when
	// ParallelFor returns.
	const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
	counters.busy_ns.fetch_add(static_cast<uint64_t>(elapsed), std::memory_order_relaxed);
	counters.tasks_executed.fetch_add(1, std::memory_order_relaxed);
	// Last access to job_: after this the caller may return and destroy it.
	job_.TaskDone(tally.executed);
	return TaskResult::FINISHED;
}

int ParallelForTask::StealFromOthers(int worker_id, uint32_t &begin, uint32_t &end) {
	// The executing worker's own slot first (when this task was itself stolen from another
	// worker's queue), then victims in NUMA order.
	if (worker_id != slot_ && worker_id < job_.NumSlots() && StealHalf(job_.Slot(worker_id), begin, end)) {
		return worker_id;
	}
	for (int v : job_.Pool().GetWorker(worker_id).victims) {
		if (v != slot_ && v < job_.NumSlots() && StealHalf(job_.Slot(v), begin, end)) {
			return v;
		}
	}
	return -1;
}

void ParallelForTask::Run(int worker_id, Tally &tally) {
	const MorselFunction &body = job_.Body();
	const size_t base = job_.Base();
	RangeSlot &own = job_.Slot(slot_);
	const int my_node = job_.Pool().GetWorker(worker_id).numa_node;
	while (true) {
		uint32_t morsel;
		// Morsels in our own slot count as stolen when they came from a steal (stolen_left_ > 0).
		while (!job_.ShouldStop() && ClaimOwn(own, morsel)) {
			body(base + morsel, worker_id);
			tally.executed++;
			if (stolen_left_ > 0) {
				tally.stolen++;
				stolen_left_--;
			}
		}
		if (job_.ShouldStop()) {
			return;
		}
		uint32_t b = 0, e = 0;
		const int victim = StealFromOthers(worker_id, b, e);
		if (victim < 0) {
			return;
		}
		// Slot i starts on worker i, so the victim slot names the victim worker.
		if (job_.Pool().GetWorker(victim).numa_node == my_node) {
			tally.steals_local++;
		} else {
			tally.steals_remote++;
		}
		// Publish the stolen range in our (empty) slot so others can split it further. Only this
		// task writes its slot while non-empty values are absent, so a plain store is safe.
		own.range.store(Pack(b, e), std::memory_order_release);
		stolen_left_ = e - b;
	}
}

} // namespace sabot
