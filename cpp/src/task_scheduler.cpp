#include "sabot/task_scheduler.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <latch>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SABOT_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define SABOT_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define SABOT_CPU_RELAX() std::this_thread::yield()
#endif

namespace sabot {

namespace {

using Clock = std::chrono::steady_clock;

// Which scheduler (and worker id) the current thread works for; lets a nested ParallelFor run
// inline instead of waiting on workers that include itself.
thread_local const TaskScheduler *tl_scheduler = nullptr;
thread_local int tl_worker_id = -1;

// How long an idle worker polls for new work before sleeping on the condition variable: long
// enough to catch the next ParallelFor of a tight loop, short enough not to burn a shared CPU.
constexpr auto IDLE_SPIN = std::chrono::microseconds(50);

int64_t CurrentTid() {
	return static_cast<int64_t>(::syscall(SYS_gettid));
}

// A [begin, end) morsel range packed in one 64-bit word so that the owner's claim of the next
// morsel and a thief's split are both a single compare-and-swap.
inline uint64_t Pack(uint32_t begin, uint32_t end) {
	return (static_cast<uint64_t>(end) << 32) | begin;
}
inline uint32_t Begin(uint64_t word) {
	return static_cast<uint32_t>(word);
}
inline uint32_t End(uint64_t word) {
	return static_cast<uint32_t>(word >> 32);
}

// One range per participating task, each on its own cache line.
struct alignas(64) RangeSlot {
	std::atomic<uint64_t> range {0};
};

} // namespace

//! Counters one worker updates (relaxed atomics on its own cache line; read by GetStats).
struct alignas(64) WorkerCounters {
	std::atomic<uint64_t> morsels_executed {0};
	std::atomic<uint64_t> morsels_stolen {0};
	std::atomic<uint64_t> steals_local {0};
	std::atomic<uint64_t> steals_remote {0};
	std::atomic<uint64_t> tasks_executed {0};
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

//! The threads of one pool generation (replaced as a whole by SetThreads and after fork).
class WorkerPool {
public:
	WorkerPool(const TaskScheduler &owner, const Topology &topology, int threads, bool pin);
	~WorkerPool();

	//! Queue `task` on worker `worker`'s queue and wake sleepers.
	void Push(int worker, std::unique_ptr<Task> task);
	//! Queue tasks[i] on worker i, then wake sleepers once.
	void PushEach(std::vector<std::unique_ptr<Task>> &tasks);
	//! Stop after the running tasks, drop queued ones, join.
	void Shutdown();

	int NumThreads() const {
		return static_cast<int>(workers_.size());
	}
	Worker &GetWorker(int i) {
		return *workers_[i];
	}
	const Worker &GetWorker(int i) const {
		return *workers_[i];
	}
	bool AllPinned() const {
		return all_pinned_;
	}
	//! Next worker for round-robin Schedule().
	int NextWorker() {
		return static_cast<int>(round_robin_.fetch_add(1, std::memory_order_relaxed) % workers_.size());
	}
	//! Tasks that threw or returned ERROR.
	std::atomic<uint64_t> task_errors {0};

private:
	void WorkerMain(int id, const Topology &topology, bool pin, std::latch &started);
	std::unique_ptr<Task> PopOwn(int id);
	std::unique_ptr<Task> StealTask(int id);
	void RunTask(int id, std::unique_ptr<Task> task);
	void WakeSleepers();

	const TaskScheduler &owner_;
	std::vector<std::unique_ptr<Worker>> workers_;
	std::atomic<int64_t> queued_ {0};
	std::atomic<int> sleepers_ {0};
	std::atomic<bool> shutdown_ {false};
	std::mutex sleep_mutex_;
	std::condition_variable sleep_cv_;
	std::atomic<uint64_t> round_robin_ {0};
	bool all_pinned_ = false;
	bool joined_ = false;
};

namespace {

std::vector<int> ComputeVictimOrder(const Topology &topology, int threads, int worker) {
	auto node_of = [&](int w) {
		return topology.NumaNodeOf(w % topology.NumCores());
	};
	const int mine = node_of(worker);
	std::vector<int> local, remote;
	for (int step = 1; step < threads; step++) {
		// Next ids first (w+1, w+2, ... wrapping around), so neighbours spread their steals.
		const int v = (worker + step) % threads;
		(node_of(v) == mine ? local : remote).push_back(v);
	}
	local.insert(local.end(), remote.begin(), remote.end());
	return local;
}

//! Shared state of one ParallelFor call; lives on the caller's stack until every task reported.
struct ParallelForJob {
	size_t base = 0;
	const MorselFunction *body = nullptr;
	const CancellationToken *cancel = nullptr;
	WorkerPool *pool = nullptr;
	int num_slots = 0;
	std::unique_ptr<RangeSlot[]> slots;
	std::atomic<bool> stop {false};
	std::atomic<uint64_t> executed {0};
	std::mutex mutex;
	std::condition_variable done_cv;
	int pending = 0;
	std::exception_ptr error;

	void Fail(std::exception_ptr e) {
		std::lock_guard<std::mutex> guard(mutex);
		if (!error) {
			error = std::move(e);
		}
		stop.store(true, std::memory_order_relaxed);
	}
	void TaskDone(uint64_t morsels) {
		executed.fetch_add(morsels, std::memory_order_relaxed);
		std::lock_guard<std::mutex> guard(mutex);
		if (--pending == 0) {
			done_cv.notify_all();
		}
	}
};

//! The share of one ParallelFor that starts in slot `slot`: drain it, then steal.
class ParallelForTask : public Task {
public:
	ParallelForTask(ParallelForJob &job, int slot) : job_(job), slot_(slot) {
	}

	TaskResult Execute(int worker_id) override {
		const auto start = Clock::now();
		uint64_t executed = 0, stolen = 0, steals_local = 0, steals_remote = 0;
		try {
			Run(worker_id, executed, stolen, steals_local, steals_remote);
		} catch (...) {
			job_.Fail(std::current_exception());
		}
		auto &counters = job_.pool->GetWorker(worker_id).counters;
		counters.morsels_executed.fetch_add(executed, std::memory_order_relaxed);
		counters.morsels_stolen.fetch_add(stolen, std::memory_order_relaxed);
		counters.steals_local.fetch_add(steals_local, std::memory_order_relaxed);
		counters.steals_remote.fetch_add(steals_remote, std::memory_order_relaxed);
		// Accounted here rather than by the worker loop so that the counters are complete when
		// ParallelFor returns.
		const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
		counters.busy_ns.fetch_add(static_cast<uint64_t>(elapsed), std::memory_order_relaxed);
		counters.tasks_executed.fetch_add(1, std::memory_order_relaxed);
		// Last access to job_: after this the caller may return and destroy it.
		job_.TaskDone(executed);
		return TaskResult::FINISHED;
	}

private:
	bool ShouldStop() const {
		if (job_.stop.load(std::memory_order_relaxed)) {
			return true;
		}
		if (job_.cancel && job_.cancel->IsCancelled()) {
			job_.stop.store(true, std::memory_order_relaxed);
			return true;
		}
		return false;
	}

	// Claim the next morsel of `slot` (the owner's side): begin += 1.
	static bool ClaimOwn(RangeSlot &slot, uint32_t &morsel) {
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
	static bool StealHalf(RangeSlot &victim, uint32_t &begin, uint32_t &end) {
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

	void Run(int worker_id, uint64_t &executed, uint64_t &stolen, uint64_t &steals_local, uint64_t &steals_remote) {
		const MorselFunction &body = *job_.body;
		const size_t base = job_.base;
		RangeSlot &own = job_.slots[slot_];
		const Worker &me = job_.pool->GetWorker(worker_id);
		while (true) {
			uint32_t morsel;
			// Morsels in our own slot count as stolen when they came from a steal (stolen_left > 0).
			while (!ShouldStop() && ClaimOwn(own, morsel)) {
				body(base + morsel, worker_id);
				executed++;
				if (stolen_left_ > 0) {
					stolen++;
					stolen_left_--;
				}
			}
			if (ShouldStop()) {
				return;
			}
			// Own slot is empty: steal. The executing worker's own slot first (when this task was
			// itself stolen from another worker's queue), then victims in NUMA order.
			bool got = false;
			uint32_t b = 0, e = 0;
			int victim_slot = -1;
			if (worker_id != slot_ && worker_id < job_.num_slots && StealHalf(job_.slots[worker_id], b, e)) {
				got = true;
				victim_slot = worker_id;
			}
			for (size_t i = 0; !got && i < me.victims.size(); i++) {
				const int v = me.victims[i];
				if (v == slot_ || v >= job_.num_slots) {
					continue;
				}
				if (StealHalf(job_.slots[v], b, e)) {
					got = true;
					victim_slot = v;
				}
			}
			if (!got) {
				return;
			}
			const int victim_worker = victim_slot;
			if (job_.pool->GetWorker(victim_worker).numa_node == me.numa_node) {
				steals_local++;
			} else {
				steals_remote++;
			}
			// Publish the stolen range in our (empty) slot so others can split it further. Only this
			// task writes its slot while non-empty values are absent, so a plain store is safe.
			own.range.store(Pack(b, e), std::memory_order_release);
			stolen_left_ = e - b;
		}
	}

	ParallelForJob &job_;
	int slot_;
	uint32_t stolen_left_ = 0;
};

} // namespace

//===--------------------------------------------------------------------===//
// ScopedInterruptCheck
//===--------------------------------------------------------------------===//
namespace {
thread_local const ScopedInterruptCheck *tl_interrupt_check = nullptr;
// How often a waiting ParallelFor caller runs its interrupt check.
constexpr auto INTERRUPT_POLL = std::chrono::milliseconds(100);
} // namespace

ScopedInterruptCheck::ScopedInterruptCheck(std::function<bool()> check)
    : check_(std::move(check)), previous_(tl_interrupt_check) {
	tl_interrupt_check = this;
}

ScopedInterruptCheck::~ScopedInterruptCheck() {
	tl_interrupt_check = previous_;
}

const std::function<bool()> *ScopedInterruptCheck::Current() {
	return tl_interrupt_check && tl_interrupt_check->check_ ? &tl_interrupt_check->check_ : nullptr;
}

//===--------------------------------------------------------------------===//
// WorkerPool
//===--------------------------------------------------------------------===//
WorkerPool::WorkerPool(const TaskScheduler &owner, const Topology &topology, int threads, bool pin) : owner_(owner) {
	const bool do_pin = pin && threads >= topology.NumCores();
	for (int i = 0; i < threads; i++) {
		auto worker = std::make_unique<Worker>();
		worker->numa_node = topology.NumaNodeOf(i % topology.NumCores());
		worker->victims = ComputeVictimOrder(topology, threads, i);
		workers_.push_back(std::move(worker));
	}
	std::latch started(threads);
	for (int i = 0; i < threads; i++) {
		workers_[i]->thread = std::thread([this, i, &topology, do_pin, &started] { WorkerMain(i, topology, do_pin, started); });
	}
	started.wait();
	all_pinned_ = do_pin;
	for (auto &w : workers_) {
		all_pinned_ = all_pinned_ && w->cpu.load() >= 0;
	}
}

WorkerPool::~WorkerPool() {
	Shutdown();
}

void WorkerPool::Shutdown() {
	if (joined_) {
		return;
	}
	{
		std::lock_guard<std::mutex> guard(sleep_mutex_);
		shutdown_.store(true);
	}
	sleep_cv_.notify_all();
	for (auto &w : workers_) {
		if (w->thread.joinable()) {
			w->thread.join();
		}
	}
	for (auto &w : workers_) {
		std::lock_guard<std::mutex> guard(w->mutex);
		w->queue.clear();
	}
	joined_ = true;
}

void WorkerPool::WakeSleepers() {
	if (sleepers_.load() > 0) {
		// Taking the mutex orders this wake-up after a sleeper's predicate check.
		{ std::lock_guard<std::mutex> guard(sleep_mutex_); }
		sleep_cv_.notify_all();
	}
}

void WorkerPool::Push(int worker, std::unique_ptr<Task> task) {
	{
		std::lock_guard<std::mutex> guard(workers_[worker]->mutex);
		workers_[worker]->queue.push_back(std::move(task));
	}
	queued_.fetch_add(1);
	WakeSleepers();
}

void WorkerPool::PushEach(std::vector<std::unique_ptr<Task>> &tasks) {
	for (size_t i = 0; i < tasks.size(); i++) {
		std::lock_guard<std::mutex> guard(workers_[i]->mutex);
		workers_[i]->queue.push_back(std::move(tasks[i]));
	}
	queued_.fetch_add(static_cast<int64_t>(tasks.size()));
	WakeSleepers();
}

std::unique_ptr<Task> WorkerPool::PopOwn(int id) {
	Worker &w = *workers_[id];
	std::lock_guard<std::mutex> guard(w.mutex);
	if (w.queue.empty()) {
		return nullptr;
	}
	auto task = std::move(w.queue.front());
	w.queue.pop_front();
	queued_.fetch_sub(1);
	return task;
}

std::unique_ptr<Task> WorkerPool::StealTask(int id) {
	for (int v : workers_[id]->victims) {
		Worker &w = *workers_[v];
		std::lock_guard<std::mutex> guard(w.mutex);
		if (!w.queue.empty()) {
			auto task = std::move(w.queue.back());
			w.queue.pop_back();
			queued_.fetch_sub(1);
			return task;
		}
	}
	return nullptr;
}

void WorkerPool::RunTask(int id, std::unique_ptr<Task> task) {
	Worker &w = *workers_[id];
	// ParallelFor tasks account for themselves before signalling their caller.
	const bool self_accounting = dynamic_cast<ParallelForTask *>(task.get()) != nullptr;
	const auto start = Clock::now();
	TaskResult result;
	try {
		result = task->Execute(id);
	} catch (...) {
		result = TaskResult::ERROR;
	}
	if (!self_accounting) {
		const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
		w.counters.busy_ns.fetch_add(static_cast<uint64_t>(elapsed), std::memory_order_relaxed);
		w.counters.tasks_executed.fetch_add(1, std::memory_order_relaxed);
	}
	switch (result) {
	case TaskResult::FINISHED:
		break;
	case TaskResult::ERROR:
		task_errors.fetch_add(1, std::memory_order_relaxed);
		break;
	case TaskResult::BLOCKED:
		std::this_thread::yield();
		Push(id, std::move(task));
		break;
	case TaskResult::NOT_FINISHED:
		Push(id, std::move(task));
		break;
	}
}

void WorkerPool::WorkerMain(int id, const Topology &topology, bool pin, std::latch &started) {
	Worker &me = *workers_[id];
	tl_scheduler = &owner_;
	tl_worker_id = id;
	me.tid.store(CurrentTid());
	if (pin) {
		const int core = id % topology.NumCores();
		if (topology.BindCurrentThread(core)) {
			me.cpu.store(topology.Core(core).os_index);
		}
	}
	started.count_down();
	while (!shutdown_.load(std::memory_order_acquire)) {
		auto task = PopOwn(id);
		if (!task) {
			task = StealTask(id);
		}
		if (task) {
			RunTask(id, std::move(task));
			continue;
		}
		// Nothing to do: poll briefly, then sleep until work or shutdown arrives.
		const auto spin_until = Clock::now() + IDLE_SPIN;
		bool work = false;
		while (!work && Clock::now() < spin_until) {
			for (int i = 0; i < 64; i++) {
				if (queued_.load(std::memory_order_relaxed) > 0 || shutdown_.load(std::memory_order_relaxed)) {
					work = true;
					break;
				}
				SABOT_CPU_RELAX();
			}
		}
		if (work) {
			continue;
		}
		std::unique_lock<std::mutex> lock(sleep_mutex_);
		sleepers_.fetch_add(1);
		sleep_cv_.wait(lock, [&] { return queued_.load() > 0 || shutdown_.load(); });
		sleepers_.fetch_sub(1);
	}
	tl_scheduler = nullptr;
	tl_worker_id = -1;
}

namespace {
// Every live scheduler, so that a forked child can abandon the parent's pools (fork() copies
// only the calling thread). The prepare/parent handlers hold the mutex across fork() so the
// child never sees it half-updated.
std::mutex g_registry_mutex;
std::vector<TaskScheduler *> *g_registry = nullptr;

void ForkPrepare() {
	g_registry_mutex.lock();
}
void ForkParent() {
	g_registry_mutex.unlock();
}
void ForkChild() {
	g_registry_mutex.unlock();
	if (g_registry) {
		for (auto *scheduler : *g_registry) {
			scheduler->AbandonAfterFork();
		}
	}
}

void Register(TaskScheduler *scheduler) {
	static std::once_flag once;
	std::call_once(once, [] { pthread_atfork(ForkPrepare, ForkParent, ForkChild); });
	std::lock_guard<std::mutex> guard(g_registry_mutex);
	if (!g_registry) {
		g_registry = new std::vector<TaskScheduler *>(); // never freed: used by fork handlers
	}
	g_registry->push_back(scheduler);
}

void Unregister(TaskScheduler *scheduler) {
	std::lock_guard<std::mutex> guard(g_registry_mutex);
	if (g_registry) {
		g_registry->erase(std::remove(g_registry->begin(), g_registry->end(), scheduler), g_registry->end());
	}
}
} // namespace

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
	Register(this);
	try {
		StartPool(threads);
	} catch (...) {
		Unregister(this);
		throw;
	}
}

TaskScheduler::~TaskScheduler() {
	Unregister(this);
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
	if (tl_scheduler == this) {
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
	return tl_scheduler == this ? tl_worker_id : -1;
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
	stats.task_errors += pool_->task_errors.load(std::memory_order_relaxed);
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
	const int worker_id = tl_worker_id;
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
	if (tl_scheduler == this) {
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
	for (size_t base = 0; base < num_morsels && !error && !interrupted; base += CHUNK) {
		const size_t n = std::min(CHUNK, num_morsels - base);
		ParallelForJob job;
		job.base = base;
		job.body = &body;
		job.cancel = cancel;
		job.pool = &pool;
		job.num_slots = static_cast<int>(std::min<size_t>(static_cast<size_t>(pool.NumThreads()), n));
		job.slots = std::make_unique<RangeSlot[]>(static_cast<size_t>(job.num_slots));
		job.pending = job.num_slots;
		std::vector<std::unique_ptr<Task>> tasks;
		tasks.reserve(static_cast<size_t>(job.num_slots));
		for (int s = 0; s < job.num_slots; s++) {
			const auto begin = static_cast<uint32_t>(n * static_cast<size_t>(s) / static_cast<size_t>(job.num_slots));
			const auto end = static_cast<uint32_t>(n * static_cast<size_t>(s + 1) / static_cast<size_t>(job.num_slots));
			job.slots[s].range.store(Pack(begin, end), std::memory_order_relaxed);
			tasks.push_back(std::make_unique<ParallelForTask>(job, s));
		}
		pool.PushEach(tasks);
		{
			std::unique_lock<std::mutex> wait_lock(job.mutex);
			const auto done = [&] {
				return job.pending == 0;
			};
			const auto *check = ScopedInterruptCheck::Current();
			if (!check) {
				job.done_cv.wait(wait_lock, done);
			} else {
				while (!job.done_cv.wait_for(wait_lock, INTERRUPT_POLL, done)) {
					wait_lock.unlock();
					const bool stop = (*check)();
					wait_lock.lock();
					if (stop) {
						interrupted = true;
						job.stop.store(true, std::memory_order_relaxed);
						job.done_cv.wait(wait_lock, done);
						break;
					}
				}
			}
			error = job.error;
		}
		executed_total += job.executed.load();
		if (!error && job.executed.load() < n) {
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
