#include "sabot/worker_pool.hpp"

#include <chrono>

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
thread_local const TaskScheduler *tl_owner = nullptr;
thread_local int tl_worker_id = -1;

// How long an idle worker polls for new work before sleeping on the condition variable: long
// enough to catch the next ParallelFor of a tight loop, short enough not to burn a shared CPU.
constexpr auto IDLE_SPIN = std::chrono::microseconds(50);

int64_t CurrentTid() {
	return static_cast<int64_t>(::syscall(SYS_gettid));
}

} // namespace

std::vector<int> ComputeVictimOrder(const Topology &topology, int threads, int worker) {
	auto node_of = [&](int w) {
		return topology.NumaNodeOf(w % topology.NumCores());
	};
	const int mine = node_of(worker);
	std::vector<int> local, remote;
	for (int step = 1; step < threads; step++) {
		const int v = (worker + step) % threads;
		(node_of(v) == mine ? local : remote).push_back(v);
	}
	local.insert(local.end(), remote.begin(), remote.end());
	return local;
}

const TaskScheduler *WorkerPool::CurrentOwner() {
	return tl_owner;
}

int WorkerPool::CurrentWorkerId() {
	return tl_worker_id;
}

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
	const bool self_accounting = dynamic_cast<SelfAccountingTask *>(task.get()) != nullptr;
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
		task_errors_.fetch_add(1, std::memory_order_relaxed);
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
	tl_owner = &owner_;
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
	tl_owner = nullptr;
	tl_worker_id = -1;
}

} // namespace sabot
