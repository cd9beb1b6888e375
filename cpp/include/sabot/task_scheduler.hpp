//===----------------------------------------------------------------------===//
// sabot/task_scheduler.hpp
//
// The morsel-driven work-stealing scheduler: one pinned worker thread per usable core,
// one queue per worker, idle workers steal (NUMA-local victims first, then remote).
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/cancellation.hpp"
#include "sabot/task.hpp"
#include "sabot/topology.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

namespace sabot {

//! How a TaskScheduler is built.
struct TaskSchedulerOptions {
	//! Worker threads; 0 = the usable cores (affinity mask capped by the cgroup CPU quota), or the
	//! injected topology's NumCores().
	int threads = 0;
	//! Pin worker i to usable CPU i. Pinning only happens when the pool has at least as many
	//! threads as usable CPUs: a smaller pool (a process that is one of many) is left to the OS so
	//! that several such processes do not pile onto the same CPUs.
	bool pin_threads = true;
	//! The topology to use (tests inject Topology::Synthetic); nullptr = Topology::Detect().
	std::unique_ptr<Topology> topology;
};

//! Counters of one worker thread.
struct WorkerStats {
	//! Worker id (index into per-worker state, in [0, NumThreads())).
	int worker_id = 0;
	//! Native thread id (Linux TID), -1 if not started.
	int64_t tid = -1;
	//! OS CPU number the worker is pinned to, -1 when not pinned.
	int cpu = -1;
	//! NUMA node of the worker's CPU slot.
	int numa_node = 0;
	//! Morsels this worker ran (own and stolen).
	uint64_t morsels_executed = 0;
	//! Morsels this worker ran after stealing them from another worker.
	uint64_t morsels_stolen = 0;
	//! Successful steals from a worker on the same NUMA node.
	uint64_t steals_local = 0;
	//! Successful steals from a worker on another NUMA node.
	uint64_t steals_remote = 0;
	//! Tasks this worker executed (each ParallelFor gives one task per worker).
	uint64_t tasks_executed = 0;
	//! Nanoseconds spent executing tasks.
	uint64_t busy_ns = 0;
};

//! A snapshot of scheduler state and counters (cumulative since construction, across SetThreads).
struct SchedulerStats {
	//! Current worker thread count.
	int threads = 0;
	//! NUMA nodes of the topology.
	int numa_nodes = 1;
	//! True when workers are bound to CPUs through hwloc (NUMA-aware binding).
	bool numa_binding = false;
	//! True when every worker is pinned to one CPU (hwloc or sched_setaffinity).
	bool pinned = false;
	//! Topology source: "hwloc", "sysfs" or "synthetic".
	std::string topology_source;
	//! Morsels run in total.
	uint64_t morsels_executed = 0;
	//! Morsels run by a worker that stole them.
	uint64_t morsels_stolen = 0;
	//! Tasks run in total.
	uint64_t tasks_executed = 0;
	//! Tasks whose Execute threw or returned ERROR.
	uint64_t task_errors = 0;
	//! ParallelFor calls completed (successfully or not).
	uint64_t parallel_for_calls = 0;
	//! Per-worker counters of the current workers.
	std::vector<WorkerStats> workers;
};

//! Body of a ParallelFor: run morsel `morsel` on worker `worker_id`.
using MorselFunction = std::function<void(size_t morsel, int worker_id)>;

//! The worker threads of one pool generation (sabot/worker_pool.hpp).
class WorkerPool;

//! Runs tasks and morsel loops on a pool of worker threads.
//!
//! ParallelFor(n, body) splits [0, n) into one contiguous range per worker; a worker claims the
//! morsels of its own range one at a time (one uncontended CAS each, no allocation) and, when its
//! range is empty, steals the upper half of another worker's range, trying workers on its own
//! NUMA node first. The calling thread does not run morsels: it waits. A ParallelFor called from
//! inside a worker of the same scheduler (nested) runs its morsels inline on that worker, with that
//! worker's id, so it cannot deadlock.
//!
//! worker_id guarantees: bodies with the same worker_id never run concurrently (the id belongs to
//! the thread), so per-worker partial states indexed by worker_id need no locking.
class TaskScheduler {
public:
	//! Start the worker threads described by `options`.
	explicit TaskScheduler(TaskSchedulerOptions options = TaskSchedulerOptions());
	//! Stop and join every worker; queued tasks that have not started are destroyed unexecuted.
	~TaskScheduler();
	TaskScheduler(const TaskScheduler &) = delete;
	TaskScheduler &operator=(const TaskScheduler &) = delete;

	//! The process-wide scheduler, created on first use with the usable cores. After fork() every
	//! scheduler gets a fresh pool in the child on first use (the parent's threads do not exist
	//! there).
	static TaskScheduler &Global();

	//! Run body(morsel, worker_id) for every morsel in [0, num_morsels) exactly once and block until
	//! all are done. If a body throws, the remaining morsels are skipped and the first exception is
	//! rethrown here (same type and message). If `cancel` is cancelled before every morsel ran,
	//! throws CancelledError. num_morsels == 0 returns at once.
	void ParallelFor(size_t num_morsels, const MorselFunction &body, const CancellationToken *cancel = nullptr);

	//! Queue a task on the next worker's queue (round robin); it runs until it returns FINISHED or
	//! ERROR. The caller tracks completion itself (the task signals whatever it owns).
	void Schedule(std::unique_ptr<Task> task);

	//! Number of worker threads; every worker_id is in [0, NumThreads()).
	int NumThreads() const;
	//! Replace the pool with `threads` workers (1..MaxThreads()). Waits for running ParallelFor
	//! calls to finish first. Throws std::invalid_argument outside that range.
	void SetThreads(int threads);
	//! Upper bound accepted by SetThreads (4096).
	static int MaxThreads();

	//! Counters and state (see SchedulerStats).
	SchedulerStats GetStats() const;
	//! Native thread ids (Linux TIDs) of the workers, in worker_id order.
	std::vector<int64_t> WorkerThreadIds() const;
	//! The order in which worker `worker_id` tries victims when stealing: same NUMA node first
	//! (nearest ids first), then the other nodes.
	std::vector<int> VictimOrder(int worker_id) const;
	//! The topology in use.
	const Topology &GetTopology() const {
		return *topology_;
	}
	//! The worker id of the calling thread if it is a worker of this scheduler, else -1.
	int CurrentWorkerId() const;

private:
	//! Build a pool of `threads` workers (caller holds pool_lock_ exclusively or is constructing).
	void StartPool(int threads);
	//! Stop and join the current pool, folding its counters into retired_.
	void StopPool();
	//! After fork(), start a fresh pool in the child on first use.
	void RestartAfterForkIfNeeded();
	//! Counters; the caller holds pool_lock_.
	SchedulerStats GetStatsLocked() const;
	//! A nested ParallelFor from one of our own workers: run the morsels on that worker.
	void RunInline(size_t num_morsels, const MorselFunction &body, const CancellationToken *cancel);

	//! Hardware layout (owned; outlives every pool).
	std::unique_ptr<Topology> topology_;
	//! Whether to pin workers.
	bool pin_threads_;
	//! The running pool; replaced by SetThreads and after fork.
	std::unique_ptr<WorkerPool> pool_;
	//! ParallelFor/Schedule hold it shared, SetThreads and the destructor exclusively.
	mutable std::shared_mutex pool_lock_;
	//! Counters of pools replaced by SetThreads.
	SchedulerStats retired_;
	//! ParallelFor calls completed.
	std::atomic<uint64_t> parallel_for_calls_ {0};
	//! Set in a forked child: the pool was abandoned and must be restarted before use.
	std::atomic<bool> forked_ {false};
	//! Thread count to restart with after fork.
	int threads_before_fork_ = 1;

public:
	//! Called in a forked child (pthread_atfork, every live scheduler): abandon the parent's pool, whose
	//! threads do not exist in the child, without touching its possibly held locks.
	void AbandonAfterFork();
};

} // namespace sabot
