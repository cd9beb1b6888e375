#include "sabot/fork_registry.hpp"

#include "sabot/task_scheduler.hpp"

#include <algorithm>
#include <mutex>
#include <vector>

#include <pthread.h>

namespace sabot {

namespace {

// The prepare/parent handlers hold the mutex across fork() so the child never sees the list
// half-updated.
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

} // namespace

void ForkRegistry::Register(TaskScheduler *scheduler) {
	static std::once_flag once;
	std::call_once(once, [] { pthread_atfork(ForkPrepare, ForkParent, ForkChild); });
	std::lock_guard<std::mutex> guard(g_registry_mutex);
	if (!g_registry) {
		g_registry = new std::vector<TaskScheduler *>(); // never freed: used by fork handlers
	}
	g_registry->push_back(scheduler);
}

void ForkRegistry::Unregister(TaskScheduler *scheduler) {
	std::lock_guard<std::mutex> guard(g_registry_mutex);
	if (g_registry) {
		g_registry->erase(std::remove(g_registry->begin(), g_registry->end(), scheduler), g_registry->end());
	}
}

} // namespace sabot
