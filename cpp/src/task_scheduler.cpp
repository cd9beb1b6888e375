#include "sabot/task_scheduler.hpp"

#include "sabot/fork_registry.hpp"
#include "sabot/parallel_for_task.hpp"
#include "sabot/worker_pool.hpp"

#include <algorithm>
#include <exception>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

namespace sabot {

//===--------------------------------------------------------------------===//
// TaskScheduler
//===--------------------------------------------------------------------===//
TaskScheduler::TaskScheduler(TaskSchedulerOptions options)
    : topology_(options.topology ? std::move(options.topology) : Topology::Detect()), pin_threads_(options.pin_threads) {
	int threads = options.threads;
	if (threads < 0 || threads > MaxThreads()) {
		throw std::invalid_argument("TaskScheduler: threads must be 0 (auto) or 1.." + std::to_string(MaxThreads()) +
		                            ", got " + std::to_string(threads));
	}
	if (threads == 0) {
		threads = topology_->Source() == "synthetic" ? topology_->NumCores()
		                                             : std::min(Topology::UsableCores(), std::max(1, topology_->NumCores()));
	}
	ForkRegistry::Register(this);
	try {
		StartPool(threads);
	} catch (...) {
		ForkRegistry::Unregister(this);
		throw;
	}
}

TaskScheduler::~TaskScheduler() {
	ForkRegistry::Unregister(this);
	std::unique_lock<std::shared_mutex> lock(pool_lock_);
	StopPool();
}

int TaskScheduler::MaxThreads() {
	return 4096;
}

TaskScheduler &TaskScheduler::Global() {
	// Deliberately never destroyed: worker threads must not be joined during static destruction
	// at interpreter exit, when other runtime parts are already gone.
	static TaskScheduler *global = new TaskScheduler();
	return *global;
}

void TaskScheduler::AbandonAfterFork() {
	// Runs in the child right after fork(), single-threaded. The parent's threads do not exist
	// here and any lock they held stays held forever: leak the pool and start over lazily.
	threads_before_fork_ = pool_ ? pool_->NumThreads() : 1;
	(void)pool_.release();
	new (&pool_lock_) std::shared_mutex();
	forked_.store(true);
}

void TaskScheduler::RestartAfterForkIfNeeded() {
	if (!forked_.load(std::memory_order_acquire)) {
		return;
	}
	std::unique_lock<std::shared_mutex> lock(pool_lock_);
	if (forked_.load()) {
		StartPool(threads_before_fork_);
		forked_.store(false, std::memory_order_release);
	}
}

void TaskScheduler::StartPool(int threads) {
	pool_ = std::make_unique<WorkerPool>(*this, *topology_, threads, pin_threads_);
}

void TaskScheduler::StopPool() {
	if (!pool_) {
		return;
	}
	pool_->Shutdown();
	const auto stats = GetStatsLocked();
	retired_.morsels_executed = stats.morsels_executed;
	retired_.morsels_stolen = stats.morsels_stolen;
	retired_.tasks_executed = stats.tasks_executed;
	retired_.task_errors = stats.task_errors;
	pool_.reset();
}

int TaskScheduler::NumThreads() const {
	const_cast<TaskScheduler *>(this)->RestartAfterForkIfNeeded();
	std::shared_lock<std::shared_mutex> lock(pool_lock_);
	return pool_->NumThreads();
}

void TaskScheduler::SetThreads(int threads) {
	if (threads < 1 || threads > MaxThreads()) {
		throw std::invalid_argument("set_threads: the thread count must be from 1 to " + std::to_string(MaxThreads()) +
		                            ", got " + std::to_string(threads));
	}
	if (WorkerPool::CurrentOwner() == this) {
		throw std::logic_error("set_threads cannot be called from one of the scheduler's own worker threads");
	}
	RestartAfterForkIfNeeded();
	std::unique_lock<std::shared_mutex> lock(pool_lock_);
	if (pool_ && pool_->NumThreads() == threads) {
		return;
	}
	StopPool();
	StartPool(threads);
}

int TaskScheduler::CurrentWorkerId() const {
	return WorkerPool::CurrentOwner() == this ? WorkerPool::CurrentWorkerId() : -1;
}

std::vector<int> TaskScheduler::VictimOrder(int worker_id) const {
	std::shared_lock<std::shared_mutex> lock(pool_lock_);
	if (!pool_ || worker_id < 0 || worker_id >= pool_->NumThreads()) {
		throw std::out_of_range("VictimOrder: no worker " + std::to_string(worker_id));
	}
	return pool_->GetWorker(worker_id).victims;
}

std::vector<int64_t> TaskScheduler::WorkerThreadIds() const {
	const_cast<TaskScheduler *>(this)->RestartAfterForkIfNeeded();
	std::shared_lock<std::shared_mutex> lock(pool_lock_);
	std::vector<int64_t> tids;
	for (int i = 0; i < pool_->NumThreads(); i++) {
		tids.push_back(pool_->GetWorker(i).tid.load());
	}
	return tids;
}

SchedulerStats TaskScheduler::GetStats() const {
	const_cast<TaskScheduler *>(this)->RestartAfterForkIfNeeded();
	std::shared_lock<std::shared_mutex> lock(pool_lock_);
	return GetStatsLocked();
}

SchedulerStats TaskScheduler::GetStatsLocked() const {
	SchedulerStats stats;
	stats.numa_nodes = topology_->NumNumaNodes();
	stats.topology_source = topology_->Source();
	stats.morsels_executed = retired_.morsels_executed;
	stats.morsels_stolen = retired_.morsels_stolen;
	stats.tasks_executed = retired_.tasks_executed;
	stats.task_errors = retired_.task_errors;
	stats.parallel_for_calls = parallel_for_calls_.load(std::memory_order_relaxed);
	if (!pool_) {
		return stats;
	}
	stats.threads = pool_->NumThreads();
	stats.pinned = pool_->AllPinned();
	stats.numa_binding = stats.pinned && topology_->UsesHwloc();
	stats.task_errors += pool_->TaskErrors();
	for (int i = 0; i < pool_->NumThreads(); i++) {
		const Worker &w = pool_->GetWorker(i);
		WorkerStats ws;
		ws.worker_id = i;
		ws.tid = w.tid.load();
		ws.cpu = w.cpu.load();
		ws.numa_node = w.numa_node;
		ws.morsels_executed = w.counters.morsels_executed.load(std::memory_order_relaxed);
		ws.morsels_stolen = w.counters.morsels_stolen.load(std::memory_order_relaxed);
		ws.steals_local = w.counters.steals_local.load(std::memory_order_relaxed);
		ws.steals_remote = w.counters.steals_remote.load(std::memory_order_relaxed);
		ws.tasks_executed = w.counters.tasks_executed.load(std::memory_order_relaxed);
		ws.busy_ns = w.counters.busy_ns.load(std::memory_order_relaxed);
		stats.morsels_executed += ws.morsels_executed;
		stats.morsels_stolen += ws.morsels_stolen;
		stats.tasks_executed += ws.tasks_executed;
		stats.workers.push_back(ws);
	}
	return stats;
}

void TaskScheduler::Schedule(std::unique_ptr<Task> task) {
	if (!task) {
		throw std::invalid_argument("Schedule: task must not be null");
	}
	RestartAfterForkIfNeeded();
	std::shared_lock<std::shared_mutex> lock(pool_lock_);
	pool_->Push(pool_->NextWorker(), std::move(task));
}

void TaskScheduler::RunInline(size_t num_morsels, const MorselFunction &body, const CancellationToken *cancel) {
	const int worker_id = WorkerPool::CurrentWorkerId();
	size_t done = 0;
	for (; done < num_morsels; done++) {
		if (cancel && cancel->IsCancelled()) {
			break;
		}
		body(done, worker_id);
	}
	if (done < num_morsels) {
		throw CancelledError("job cancelled after " + std::to_string(done) + " of " + std::to_string(num_morsels) +
		                     " morsels");
	}
}

void TaskScheduler::ParallelFor(size_t num_morsels, const MorselFunction &body, const CancellationToken *cancel) {
	if (num_morsels == 0) {
		return;
	}
	if (cancel && cancel->IsCancelled()) {
		throw CancelledError("job cancelled before it started (0 of " + std::to_string(num_morsels) + " morsels ran)");
	}
	if (WorkerPool::CurrentOwner() == this) {
		RunInline(num_morsels, body, cancel);
		return;
	}
	RestartAfterForkIfNeeded();
	std::shared_lock<std::shared_mutex> lock(pool_lock_);
	WorkerPool &pool = *pool_;
	// Ranges are 32-bit: larger loops run as consecutive chunks.
	constexpr size_t CHUNK = std::numeric_limits<uint32_t>::max();
	uint64_t executed_total = 0;
	std::exception_ptr error;
	bool interrupted = false;
	const auto *check = ScopedInterruptCheck::Current();
	for (size_t base = 0; base < num_morsels && !error && !interrupted; base += CHUNK) {
		const size_t n = std::min(CHUNK, num_morsels - base);
		ParallelForJob job(pool, base, n, body, cancel);
		interrupted = job.Run(check);
		error = job.Error();
		executed_total += job.Executed();
		if (!error && job.Executed() < n) {
			break; // cancelled
		}
	}
	parallel_for_calls_.fetch_add(1, std::memory_order_relaxed);
	if (error) {
		std::rethrow_exception(error);
	}
	if (interrupted && executed_total < num_morsels) {
		throw InterruptedError("job interrupted after " + std::to_string(executed_total) + " of " +
		                       std::to_string(num_morsels) + " morsels");
	}
	if (executed_total < num_morsels) {
		throw CancelledError("job cancelled after " + std::to_string(executed_total) + " of " +
		                     std::to_string(num_morsels) + " morsels");
	}
}

} // namespace sabot
