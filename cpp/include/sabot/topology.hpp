//===----------------------------------------------------------------------===//
// sabot/topology.hpp
//
// The CPUs this process may use, their NUMA nodes, and binding a thread to one of them.
//===----------------------------------------------------------------------===//
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace sabot {

//! One logical CPU the process may run on.
struct CpuCore {
	//! Operating-system CPU number (as in /proc/cpuinfo and Cpus_allowed_list).
	int os_index = 0;
	//! NUMA node of this CPU (dense, 0-based).
	int numa_node = 0;
};

//! The usable CPUs of this process (its affinity mask, ordered so that distinct physical cores
//! come before hyper-thread siblings) grouped into NUMA nodes, and the ability to pin a thread.
//! Detect() uses hwloc when Sabot was built with it, else Linux sysfs; Synthetic() builds a fake
//! layout for tests (it never binds anything).
class Topology {
public:
	//! Virtual destructor: topologies are owned through std::unique_ptr<Topology>.
	virtual ~Topology() = default;

	//! The machine's topology, restricted to the CPUs in this process's affinity mask.
	static std::unique_ptr<Topology> Detect();
	//! A fake topology: CPU i lies on NUMA node numa_of_cpu[i]. BindThread() always fails.
	static std::unique_ptr<Topology> Synthetic(const std::vector<int> &numa_of_cpu);
	//! Cores this process may really use: the affinity mask size capped by the cgroup CPU quota
	//! (cgroup v2 cpu.max or v1 cfs_quota_us / cfs_period_us, rounded up), at least 1.
	static int UsableCores();

	//! Number of usable logical CPUs.
	int NumCores() const {
		return static_cast<int>(cores_.size());
	}
	//! Number of NUMA nodes among the usable CPUs (at least 1).
	int NumNumaNodes() const {
		return num_numa_nodes_;
	}
	//! The i-th usable CPU, 0 <= i < NumCores().
	const CpuCore &Core(int i) const {
		return cores_[i];
	}
	//! NUMA node of the i-th usable CPU.
	int NumaNodeOf(int i) const {
		return cores_[i].numa_node;
	}
	//! Pin the calling thread to the i-th usable CPU; false if binding is unsupported or failed.
	virtual bool BindCurrentThread(int core_index) const = 0;
	//! True when this topology came from hwloc (so binding is NUMA-aware hwloc binding).
	virtual bool UsesHwloc() const = 0;
	//! "hwloc", "sysfs" or "synthetic".
	virtual std::string Source() const = 0;

protected:
	//! Usable CPUs in pinning order.
	std::vector<CpuCore> cores_;
	//! Distinct NUMA nodes among cores_.
	int num_numa_nodes_ = 1;
	//! Renumber numa_node fields densely from 0 and set num_numa_nodes_.
	void NormalizeNumaNodes();
};

//! True when Sabot was compiled with hwloc support.
bool HwlocCompiledIn();
//! The hwloc library version compiled in ("" without hwloc).
std::string HwlocVersion();

} // namespace sabot
