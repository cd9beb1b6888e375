#include "sabot/task_scheduler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace sabot;

namespace {

// A scheduler on a synthetic topology (never pinned), so tests behave the same on any machine.
std::unique_ptr<TaskScheduler> MakeScheduler(int threads, std::vector<int> numa = {}) {
	if (numa.empty()) {
		numa.assign(static_cast<size_t>(threads), 0);
	}
	TaskSchedulerOptions options;
	options.threads = threads;
	options.topology = Topology::Synthetic(numa);
	return std::make_unique<TaskScheduler>(std::move(options));
}

void SleepMicros(int us) {
	std::this_thread::sleep_for(std::chrono::microseconds(us));
}

class MyError : public std::runtime_error {
public:
	using std::runtime_error::runtime_error;
};

} // namespace

TEST(TaskScheduler, EveryMorselExactlyOnceRandomSizesAndThreads) {
	std::mt19937 rng(12345);
	for (int threads = 1; threads <= 8; threads++) {
		auto sched = MakeScheduler(threads);
		ASSERT_EQ(sched->NumThreads(), threads);
		for (int round = 0; round < 12; round++) {
			const size_t n = std::uniform_int_distribution<size_t>(0, round % 4 == 0 ? 200000 : 3000)(rng);
			std::vector<std::atomic<int>> hits(n);
			std::atomic<bool> bad_worker {false};
			sched->ParallelFor(n, [&](size_t i, int worker) {
				if (worker < 0 || worker >= threads) {
					bad_worker = true;
				}
				hits[i].fetch_add(1, std::memory_order_relaxed);
			});
			EXPECT_FALSE(bad_worker);
			size_t wrong = 0;
			for (auto &h : hits) {
				wrong += h.load() != 1;
			}
			EXPECT_EQ(wrong, 0u) << "threads=" << threads << " n=" << n;
		}
		const auto stats = sched->GetStats();
		uint64_t sum = 0;
		for (const auto &w : stats.workers) {
			sum += w.morsels_executed;
		}
		EXPECT_EQ(sum, stats.morsels_executed);
	}
}

TEST(TaskScheduler, SameWorkerIdNeverRunsConcurrently) {
	auto sched = MakeScheduler(4);
	std::vector<std::atomic<int>> in_use(4);
	std::atomic<int> overlaps {0};
	sched->ParallelFor(20000, [&](size_t, int worker) {
		if (in_use[worker].exchange(1) != 0) {
			overlaps++;
		}
		in_use[worker].store(0);
	});
	EXPECT_EQ(overlaps.load(), 0);
}

TEST(TaskScheduler, IdleWorkersStealUnderSkewedLoad) {
	auto sched = MakeScheduler(2);
	const size_t n = 64;
	std::vector<int> ran_on(n, -1);
	// Slot 0 gets [0, 32) and every one of those morsels is slow; slot 1's are instant, so worker
	// 1 runs out of work at once and must steal from worker 0's range.
	sched->ParallelFor(n, [&](size_t i, int worker) {
		if (i < n / 2) {
			SleepMicros(2000);
		}
		ran_on[i] = worker;
	});
	const int slow_half_on_1 = static_cast<int>(std::count(ran_on.begin(), ran_on.begin() + n / 2, 1));
	EXPECT_GT(slow_half_on_1, 0);
	const auto stats = sched->GetStats();
	EXPECT_GT(stats.morsels_stolen, 0u);
	EXPECT_GT(stats.workers[1].steals_local + stats.workers[1].steals_remote, 0u);
}

TEST(TaskScheduler, VictimOrderPrefersLocalNumaNode) {
	// CPUs interleaved over two nodes: workers 0,2 on node 0, workers 1,3 on node 1.
	auto sched = MakeScheduler(4, {0, 1, 0, 1});
	EXPECT_EQ(sched->GetTopology().NumNumaNodes(), 2);
	EXPECT_EQ(sched->VictimOrder(0), (std::vector<int> {2, 1, 3}));
	EXPECT_EQ(sched->VictimOrder(1), (std::vector<int> {3, 2, 0}));
	EXPECT_EQ(sched->VictimOrder(2), (std::vector<int> {0, 3, 1}));
	EXPECT_EQ(sched->VictimOrder(3), (std::vector<int> {1, 0, 2}));
	auto blocked = MakeScheduler(4, {0, 0, 1, 1});
	EXPECT_EQ(blocked->VictimOrder(0), (std::vector<int> {1, 2, 3}));
	EXPECT_EQ(blocked->VictimOrder(3), (std::vector<int> {2, 0, 1}));
}

TEST(TaskScheduler, FirstStealGoesToLocalNumaNode) {
	// Workers 0,2 on node 0 and 1,3 on node 1. Worker 0's own range is instant; everybody else's
	// morsels are slow. When worker 0 runs dry, all three others still have work, and the first
	// foreign morsel it runs must come from worker 2's range (same node), not 1 or 3.
	auto sched = MakeScheduler(4, {0, 1, 0, 1});
	const size_t n = 4 * 40;
	std::mutex mutex;
	std::vector<size_t> order_on_0;
	sched->ParallelFor(n, [&](size_t i, int worker) {
		if (worker == 0) {
			std::lock_guard<std::mutex> guard(mutex);
			order_on_0.push_back(i);
		}
		if (i >= n / 4) {
			SleepMicros(1500);
		}
	});
	size_t first_foreign = n;
	for (size_t i : order_on_0) {
		if (i >= n / 4) {
			first_foreign = i;
			break;
		}
	}
	ASSERT_LT(first_foreign, n) << "worker 0 never stole";
	EXPECT_GE(first_foreign, n / 2) << "first steal came from worker 1 (remote node)";
	EXPECT_LT(first_foreign, 3 * n / 4) << "first steal came from worker 3 (remote node)";
	const auto stats = sched->GetStats();
	EXPECT_GE(stats.workers[0].steals_local, 1u);
}

TEST(TaskScheduler, TaskErrorPropagatesWithTypeAndMessage) {
	auto sched = MakeScheduler(3);
	std::atomic<size_t> ran {0};
	try {
		sched->ParallelFor(100000, [&](size_t i, int) {
			ran++;
			if (i == 777) {
				throw MyError("morsel 777 failed: bad value");
			}
		});
		FAIL() << "no exception";
	} catch (const MyError &e) {
		EXPECT_STREQ(e.what(), "morsel 777 failed: bad value");
	}
	// The scheduler stays usable afterwards.
	std::atomic<size_t> count {0};
	sched->ParallelFor(1000, [&](size_t, int) { count++; });
	EXPECT_EQ(count.load(), 1000u);
}

TEST(TaskScheduler, ErrorStopsRemainingMorsels) {
	auto sched = MakeScheduler(2);
	std::atomic<size_t> ran {0};
	EXPECT_THROW(sched->ParallelFor(10000,
	                                [&](size_t i, int) {
		                                ran++;
		                                if (i == 0 || i == 5000) {
			                                throw std::runtime_error("stop");
		                                }
		                                SleepMicros(100);
	                                }),
	             std::runtime_error);
	EXPECT_LT(ran.load(), 10000u);
}

TEST(TaskScheduler, CancellationStopsTheJob) {
	auto sched = MakeScheduler(2);
	CancellationToken token;
	std::atomic<size_t> ran {0};
	EXPECT_THROW(sched->ParallelFor(
	                 100000,
	                 [&](size_t, int) {
		                 if (++ran == 50) {
			                 token.Cancel();
		                 }
		                 SleepMicros(50);
	                 },
	                 &token),
	             CancelledError);
	EXPECT_LT(ran.load(), 1000u);
	// Cancelled before start: nothing runs.
	std::atomic<size_t> after {0};
	EXPECT_THROW(sched->ParallelFor(10, [&](size_t, int) { after++; }, &token), CancelledError);
	EXPECT_EQ(after.load(), 0u);
	token.Reset();
	sched->ParallelFor(10, [&](size_t, int) { after++; }, &token);
	EXPECT_EQ(after.load(), 10u);
}

TEST(TaskScheduler, CancelFromAnotherThread) {
	auto sched = MakeScheduler(2);
	CancellationToken token;
	std::atomic<size_t> ran {0};
	std::thread canceller([&] {
		while (ran.load() < 10) {
			std::this_thread::yield();
		}
		token.Cancel();
	});
	EXPECT_THROW(sched->ParallelFor(
	                 1000000, [&](size_t, int) { ran++, SleepMicros(20); }, &token),
	             CancelledError);
	canceller.join();
	EXPECT_LT(ran.load(), 1000000u);
}

TEST(TaskScheduler, NestedParallelForRunsInline) {
	auto sched = MakeScheduler(2);
	std::atomic<size_t> inner {0};
	sched->ParallelFor(8, [&](size_t, int worker) {
		EXPECT_EQ(sched->CurrentWorkerId(), worker);
		sched->ParallelFor(100, [&](size_t, int inner_worker) {
			EXPECT_EQ(inner_worker, worker);
			inner++;
		});
	});
	EXPECT_EQ(inner.load(), 800u);
	EXPECT_EQ(sched->CurrentWorkerId(), -1);
}

TEST(TaskScheduler, ConcurrentCallersShareThePool) {
	auto sched = MakeScheduler(3);
	std::vector<std::thread> callers;
	std::atomic<size_t> total {0};
	for (int c = 0; c < 4; c++) {
		callers.emplace_back([&] {
			for (int r = 0; r < 20; r++) {
				sched->ParallelFor(500, [&](size_t, int) { total++; });
			}
		});
	}
	for (auto &t : callers) {
		t.join();
	}
	EXPECT_EQ(total.load(), 4u * 20u * 500u);
}

TEST(TaskScheduler, SetThreadsResizesThePool) {
	auto sched = MakeScheduler(2);
	for (int threads : {1, 3, 5, 2}) {
		sched->SetThreads(threads);
		EXPECT_EQ(sched->NumThreads(), threads);
		EXPECT_EQ(sched->WorkerThreadIds().size(), static_cast<size_t>(threads));
		std::atomic<int> max_worker {-1};
		sched->ParallelFor(5000, [&](size_t, int w) {
			int cur = max_worker.load();
			while (w > cur && !max_worker.compare_exchange_weak(cur, w)) {
			}
		});
		EXPECT_LT(max_worker.load(), threads);
	}
	EXPECT_THROW(sched->SetThreads(0), std::invalid_argument);
	EXPECT_THROW(sched->SetThreads(TaskScheduler::MaxThreads() + 1), std::invalid_argument);
	// Counters survive resizes.
	EXPECT_EQ(sched->GetStats().morsels_executed, 4u * 5000u);
}

namespace {
class CountdownTask : public Task {
public:
	CountdownTask(int steps, std::atomic<int> &done) : steps_(steps), done_(done) {
	}
	TaskResult Execute(int) override {
		if (--steps_ > 0) {
			return TaskResult::NOT_FINISHED;
		}
		done_++;
		return TaskResult::FINISHED;
	}

private:
	int steps_;
	std::atomic<int> &done_;
};

class ThrowingTask : public Task {
public:
	explicit ThrowingTask(std::atomic<int> &ran) : ran_(ran) {
	}
	TaskResult Execute(int) override {
		ran_++;
		throw std::runtime_error("escaped");
	}

private:
	std::atomic<int> &ran_;
};
} // namespace

TEST(TaskScheduler, ScheduledTasksRunUntilFinishedAndErrorsAreContained) {
	auto sched = MakeScheduler(2);
	std::atomic<int> done {0}, thrown {0};
	for (int i = 0; i < 10; i++) {
		sched->Schedule(std::make_unique<CountdownTask>(5, done));
	}
	sched->Schedule(std::make_unique<ThrowingTask>(thrown));
	for (int spin = 0; spin < 5000 && (done.load() < 10 || thrown.load() < 1); spin++) {
		SleepMicros(1000);
	}
	EXPECT_EQ(done.load(), 10);
	EXPECT_EQ(thrown.load(), 1);
	for (int spin = 0; spin < 1000 && sched->GetStats().task_errors < 1; spin++) {
		SleepMicros(1000);
	}
	EXPECT_EQ(sched->GetStats().task_errors, 1u);
}

TEST(TaskScheduler, NoDeadlockAtShutdown) {
	for (int i = 0; i < 60; i++) {
		auto sched = MakeScheduler(1 + i % 5);
		if (i % 3 == 0) {
			std::atomic<int> n {0};
			sched->ParallelFor(100, [&](size_t, int) { n++; });
			EXPECT_EQ(n.load(), 100);
		}
		if (i % 3 == 1) {
			// Destroyed with a task possibly still queued: it is dropped, not run half-way.
			std::atomic<int> done {0};
			sched->Schedule(std::make_unique<CountdownTask>(1000, done));
		}
	}
}

TEST(TaskScheduler, DefaultPoolUsesUsableCoresAndPins) {
	TaskScheduler sched;
	EXPECT_EQ(sched.NumThreads(), Topology::UsableCores());
	const auto stats = sched.GetStats();
	EXPECT_EQ(stats.threads, sched.NumThreads());
	const auto tids = sched.WorkerThreadIds();
	ASSERT_EQ(tids.size(), static_cast<size_t>(sched.NumThreads()));
	for (auto tid : tids) {
		EXPECT_GT(tid, 0);
	}
	if (stats.pinned) {
		for (const auto &w : stats.workers) {
			EXPECT_EQ(w.cpu, sched.GetTopology().Core(w.worker_id % sched.GetTopology().NumCores()).os_index);
		}
	}
	EXPECT_EQ(stats.numa_binding, stats.pinned && HwlocCompiledIn());
}

TEST(TaskScheduler, ForkedChildGetsAFreshPool) {
#if defined(__SANITIZE_THREAD__)
	GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multi-threaded fork";
#endif
	auto sched = MakeScheduler(3);
	std::atomic<int> warm {0};
	sched->ParallelFor(100, [&](size_t, int) { warm++; });
	const pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		// The parent's three workers do not exist here; without a fresh pool this would hang.
		std::atomic<int> n {0};
		sched->ParallelFor(1000, [&](size_t, int) { n++; });
		_exit(n.load() == 1000 && sched->NumThreads() == 3 ? 0 : 1);
	}
	int status = 0;
	for (int i = 0; i < 3000; i++) { // up to 30 s
		if (waitpid(pid, &status, WNOHANG) == pid) {
			break;
		}
		SleepMicros(10000);
		if (i == 2999) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			FAIL() << "child hung after fork";
		}
	}
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(WEXITSTATUS(status), 0);
	// The parent's pool is untouched.
	sched->ParallelFor(100, [&](size_t, int) { warm++; });
	EXPECT_EQ(warm.load(), 200);
}

TEST(TaskScheduler, InterruptCheckStopsAWaitingCaller) {
	auto sched = MakeScheduler(2);
	std::atomic<int> polls {0};
	std::atomic<size_t> ran {0};
	{
		ScopedInterruptCheck check([&] { return ++polls >= 2; });
		EXPECT_THROW(sched->ParallelFor(100000, [&](size_t, int) { ran++, SleepMicros(1000); }), InterruptedError);
	}
	EXPECT_GE(polls.load(), 2);
	EXPECT_LT(ran.load(), 100000u);
	// Outside the scope nothing polls: a job runs to the end.
	const int before = polls.load();
	std::atomic<size_t> all {0};
	sched->ParallelFor(300, [&](size_t, int) { all++, SleepMicros(1000); });
	EXPECT_EQ(all.load(), 300u);
	EXPECT_EQ(polls.load(), before);
}
