#include "sabot/compute/exec_options.hpp"

#include "sabot/task_scheduler.hpp"

#include <map>
#include <memory>
#include <mutex>

namespace sabot {
namespace compute {

TaskScheduler &SchedulerFor(int threads) {
	TaskScheduler &global = TaskScheduler::Global();
	if (threads <= 0 || threads == global.NumThreads()) {
		return global;
	}
	static std::mutex lock;
	static std::map<int, std::unique_ptr<TaskScheduler>> pools;
	std::lock_guard<std::mutex> guard(lock);
	auto &pool = pools[threads];
	if (!pool) {
		TaskSchedulerOptions options;
		options.threads = threads;
		pool = std::make_unique<TaskScheduler>(std::move(options));
	}
	return *pool;
}

} // namespace compute
} // namespace sabot
