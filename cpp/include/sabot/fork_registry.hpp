//===----------------------------------------------------------------------===//
// sabot/fork_registry.hpp
//
// Every live TaskScheduler, so that a forked child can abandon the parent's worker pools: fork()
// copies only the calling thread, so the pools' threads do not exist in the child.
//===----------------------------------------------------------------------===//
#pragma once

namespace sabot {

class TaskScheduler;

//! The process-wide set of live schedulers and the pthread_atfork handlers that use it.
class ForkRegistry {
public:
	//! Add `scheduler` (installs the fork handlers on first use). Called by its constructor.
	static void Register(TaskScheduler *scheduler);
	//! Remove `scheduler`. Called by its destructor.
	static void Unregister(TaskScheduler *scheduler);
};

} // namespace sabot
