//===----------------------------------------------------------------------===//
// sabot/worker_pool.hpp
//
// The worker threads of one TaskScheduler generation: one thread and one task queue per worker,
// idle workers steal queued tasks (NUMA-local victims first) and then sleep.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/task.hpp"
#include "sabot/topology.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <latch>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace sabot {

class TaskScheduler;

//! A task that updates its worker's counters (busy time, tasks executed) itself, before it signals
//! whoever waits on it, so that the pool does not count it a second time.
class SelfAccountingTask : public Task {};

//! Counters one worker updates (relaxed atomics on its own cache line; read by GetStats).
struct alignas(64) WorkerCounters {
	//! Morsels run (own and stolen).
	std::atomic<uint64_t> morsels_executed {0};
	//! Morsels run after stealing them.
	std::atomic<uint64_t> morsels_stolen {0};
	//! Steals from a worker on the same NUMA node.
	std::atomic<uint64_t> steals_local {0};
	//! Steals from a worker on another NUMA node.
	std::atomic<uint64_t> steals_remote {0};
	//! Tasks executed.
	std::atomic<uint64_t> tasks_executed {0};
	//! Nanoseconds spent executing tasks.
	std::atomic<uint64_t> busy_ns {0};
};

//! One worker thread with its queue.
struct Worker {
	//! The thread.
	std::thread thread;
	//! Guards queue.
	std::mutex mutex;
	//! Tasks queued on this worker (popped at the front, stolen from the back).
	std::deque<std::unique_ptr<Task>> queue;
	//! Statistics.
	WorkerCounters counters;
	//! Linux TID once started.
	std::atomic<int64_t> tid {-1};
	//! Pinned OS CPU or -1.
	std::atomic<int> cpu {-1};
	//! NUMA node of this worker's CPU slot.
	int numa_node = 0;
	//! Other workers in steal order (same NUMA node first).
	std::vector<int> victims;
};

//! The order in which worker `worker` of `threads` tries victims: same NUMA node first (next ids
//! first, wrapping around, so that neighbours spread their steals), then the other nodes.
std::vector<int> ComputeVictimOrder(const Topology &topology, int threads, int worker);

//! The threads of one pool generation (replaced as a whole by SetThreads and after fork).
class WorkerPool {
public:
	//! Start `threads` workers for `owner`, pinned to CPUs when `pin` and the pool covers every core.
	WorkerPool(const TaskScheduler &owner, const Topology &topology, int threads, bool pin);
	//! Shutdown() if not done yet.
	~WorkerPool();
	WorkerPool(const WorkerPool &) = delete;
	WorkerPool &operator=(const WorkerPool &) = delete;

	//! Queue `task` on worker `worker`'s queue and wake sleepers.
	void Push(int worker, std::unique_ptr<Task> task);
	//! Queue tasks[i] on worker i, then wake sleepers once.
	void PushEach(std::vector<std::unique_ptr<Task>> &tasks);
	//! Stop after the running tasks, drop queued ones, join.
	void Shutdown();

	//! Number of workers.
	int NumThreads() const {
		return static_cast<int>(workers_.size());
	}
	//! Worker `i`.
	Worker &GetWorker(int i) {
		return *workers_[i];
	}
	//! Worker `i` (read-only).
	const Worker &GetWorker(int i) const {
		return *workers_[i];
	}
	//! True when every worker is pinned to one CPU.
	bool AllPinned() const {
		return all_pinned_;
	}
	//! Next worker for round-robin Schedule().
	int NextWorker() {
		return static_cast<int>(round_robin_.fetch_add(1, std::memory_order_relaxed) % workers_.size());
	}
	//! Tasks that threw or returned ERROR.
	uint64_t TaskErrors() const {
		return task_errors_.load(std::memory_order_relaxed);
	}

	//! The scheduler the calling thread works for, or nullptr when it is not a pool worker.
	static const TaskScheduler *CurrentOwner();
	//! The calling worker's id, or -1 when it is not a pool worker.
	static int CurrentWorkerId();

private:
	//! Body of worker thread `id`: pin, then run own, stolen, then wait for new tasks.
	void WorkerMain(int id, const Topology &topology, bool pin, std::latch &started);
	//! Pop the front of worker `id`'s own queue.
	std::unique_ptr<Task> PopOwn(int id);
	//! Take the back of the first non-empty victim queue.
	std::unique_ptr<Task> StealTask(int id);
	//! Execute `task` on worker `id` and act on its TaskResult.
	void RunTask(int id, std::unique_ptr<Task> task);
	//! Wake sleeping workers (if any) after tasks were queued.
	void WakeSleepers();

	//! The scheduler the workers belong to (nested ParallelFor detection).
	const TaskScheduler &owner_;
	//! The workers.
	std::vector<std::unique_ptr<Worker>> workers_;
	//! Tasks queued over all workers.
	std::atomic<int64_t> queued_ {0};
	//! Workers sleeping on sleep_cv_.
	std::atomic<int> sleepers_ {0};
	//! Set by Shutdown().
	std::atomic<bool> shutdown_ {false};
	//! Guards sleeping.
	std::mutex sleep_mutex_;
	//! Idle workers wait here.
	std::condition_variable sleep_cv_;
	//! Round-robin cursor of NextWorker().
	std::atomic<uint64_t> round_robin_ {0};
	//! Tasks that threw or returned ERROR.
	std::atomic<uint64_t> task_errors_ {0};
	//! Every worker is pinned.
	bool all_pinned_ = false;
	//! Shutdown() completed.
	bool joined_ = false;
};

} // namespace sabot
