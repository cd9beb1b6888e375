#include "sabot/topology.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <pthread.h>
#include <sched.h>

#ifdef SABOT_HAVE_HWLOC
#include <hwloc.h>
#endif

namespace sabot {

namespace {

// Parse a Linux CPU list such as "0-3,8,10-11".
std::vector<int> ParseCpuList(const std::string &text) {
	std::vector<int> cpus;
	std::stringstream ss(text);
	std::string part;
	while (std::getline(ss, part, ',')) {
		part.erase(std::remove_if(part.begin(), part.end(), ::isspace), part.end());
		if (part.empty()) {
			continue;
		}
		const auto dash = part.find('-');
		try {
			if (dash == std::string::npos) {
				cpus.push_back(std::stoi(part));
			} else {
				const int lo = std::stoi(part.substr(0, dash));
				const int hi = std::stoi(part.substr(dash + 1));
				for (int c = lo; c <= hi; c++) {
					cpus.push_back(c);
				}
			}
		} catch (const std::exception &) {
			// A malformed entry is ignored: sysfs is advisory here.
		}
	}
	return cpus;
}

std::string ReadFirstLine(const std::string &path) {
	std::ifstream in(path);
	std::string line;
	if (in) {
		std::getline(in, line);
	}
	return line;
}

std::vector<int> AffinityCpus() {
	std::vector<int> cpus;
	cpu_set_t set;
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int c = 0; c < CPU_SETSIZE; c++) {
			if (CPU_ISSET(c, &set)) {
				cpus.push_back(c);
			}
		}
	}
	if (cpus.empty()) {
		cpus.push_back(0);
	}
	return cpus;
}

// Cgroup CPU quota in cores, or a negative value when there is none. Looks at the process's own
// cgroup v2 directory first, then the root of the v2 and v1 hierarchies.
double CgroupCpuQuota() {
	std::vector<std::string> v2_files;
	std::ifstream cg("/proc/self/cgroup");
	std::string line;
	while (std::getline(cg, line)) {
		if (line.rfind("0::", 0) == 0) {
			v2_files.push_back("/sys/fs/cgroup" + line.substr(3) + "/cpu.max");
		}
	}
	v2_files.push_back("/sys/fs/cgroup/cpu.max");
	for (const auto &file : v2_files) {
		std::istringstream in(ReadFirstLine(file));
		std::string quota, period;
		if (in >> quota >> period && quota != "max") {
			try {
				const double q = std::stod(quota), p = std::stod(period);
				if (q > 0 && p > 0) {
					return q / p;
				}
			} catch (const std::exception &) {
			}
		}
	}
	for (const std::string dir : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
		try {
			const double q = std::stod(ReadFirstLine(dir + "/cpu.cfs_quota_us"));
			const double p = std::stod(ReadFirstLine(dir + "/cpu.cfs_period_us"));
			if (q > 0 && p > 0) {
				return q / p;
			}
		} catch (const std::exception &) {
		}
	}
	return -1.0;
}

bool PinToOsCpu(int os_index) {
	if (os_index < 0 || os_index >= CPU_SETSIZE) {
		return false;
	}
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(os_index, &set);
	return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

//! Linux sysfs topology: NUMA nodes from /sys/devices/system/node, binding with
//! pthread_setaffinity_np.
class SysfsTopology : public Topology {
public:
	SysfsTopology() {
		const auto allowed = AffinityCpus();
		std::map<int, int> node_of;
		for (int node = 0; node < 4096; node++) {
			const std::string list = ReadFirstLine("/sys/devices/system/node/node" + std::to_string(node) + "/cpulist");
			if (list.empty()) {
				if (node > 0 && node_of.empty()) {
					break;
				}
				if (node > 64 && !node_of.empty()) {
					break;
				}
				continue;
			}
			for (int c : ParseCpuList(list)) {
				node_of[c] = node;
			}
		}
		// Distinct physical cores first, hyper-thread siblings after them.
		std::vector<CpuCore> primary, secondary;
		for (int c : allowed) {
			CpuCore core;
			core.os_index = c;
			core.numa_node = node_of.count(c) ? node_of[c] : 0;
			const auto siblings =
			    ParseCpuList(ReadFirstLine("/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/thread_siblings_list"));
			const bool is_primary = siblings.empty() || *std::min_element(siblings.begin(), siblings.end()) == c;
			(is_primary ? primary : secondary).push_back(core);
		}
		cores_ = primary;
		cores_.insert(cores_.end(), secondary.begin(), secondary.end());
		NormalizeNumaNodes();
	}
	bool BindCurrentThread(int core_index) const override {
		if (core_index < 0 || core_index >= NumCores()) {
			return false;
		}
		return PinToOsCpu(cores_[core_index].os_index);
	}
	bool UsesHwloc() const override {
		return false;
	}
	std::string Source() const override {
		return "sysfs";
	}
};

//! A made-up layout for tests; never binds.
class SyntheticTopology : public Topology {
public:
	explicit SyntheticTopology(const std::vector<int> &numa_of_cpu) {
		for (size_t i = 0; i < numa_of_cpu.size(); i++) {
			cores_.push_back(CpuCore {static_cast<int>(i), numa_of_cpu[i]});
		}
		if (cores_.empty()) {
			cores_.push_back(CpuCore {0, 0});
		}
		NormalizeNumaNodes();
	}
	bool BindCurrentThread(int) const override {
		return false;
	}
	bool UsesHwloc() const override {
		return false;
	}
	std::string Source() const override {
		return "synthetic";
	}
};

#ifdef SABOT_HAVE_HWLOC
//! hwloc topology: PUs, cores and NUMA nodes from hwloc; binding with hwloc_set_cpubind.
class HwlocTopology : public Topology {
public:
	HwlocTopology() {
		if (hwloc_topology_init(&topo_) != 0) {
			topo_ = nullptr;
			return;
		}
		if (hwloc_topology_load(topo_) != 0) {
			hwloc_topology_destroy(topo_);
			topo_ = nullptr;
			return;
		}
		const auto allowed = AffinityCpus();
		const int num_nodes = hwloc_get_nbobjs_by_type(topo_, HWLOC_OBJ_NUMANODE);
		// Rank of each PU inside its core: 0 for the first hyper-thread, 1 for the second...
		std::vector<std::pair<int, CpuCore>> ranked;
		for (int c : allowed) {
			hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(topo_, static_cast<unsigned>(c));
			if (!pu) {
				continue;
			}
			int rank = 0;
			hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(topo_, HWLOC_OBJ_CORE, pu);
			if (core) {
				for (unsigned i = hwloc_bitmap_first(core->cpuset); i < static_cast<unsigned>(c) && i != static_cast<unsigned>(-1);
				     i = hwloc_bitmap_next(core->cpuset, i)) {
					rank++;
				}
			}
			CpuCore entry;
			entry.os_index = c;
			entry.numa_node = 0;
			for (int n = 0; n < num_nodes; n++) {
				hwloc_obj_t node = hwloc_get_obj_by_type(topo_, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(n));
				if (node && node->cpuset && hwloc_bitmap_isset(node->cpuset, static_cast<unsigned>(c))) {
					entry.numa_node = static_cast<int>(node->logical_index);
					break;
				}
			}
			ranked.emplace_back(rank, entry);
		}
		std::stable_sort(ranked.begin(), ranked.end(), [](const auto &a, const auto &b) { return a.first < b.first; });
		for (const auto &r : ranked) {
			cores_.push_back(r.second);
		}
		NormalizeNumaNodes();
	}
	~HwlocTopology() override {
		if (topo_) {
			hwloc_topology_destroy(topo_);
		}
	}
	bool Loaded() const {
		return topo_ != nullptr && !cores_.empty();
	}
	bool BindCurrentThread(int core_index) const override {
		if (!topo_ || core_index < 0 || core_index >= NumCores()) {
			return false;
		}
		hwloc_bitmap_t set = hwloc_bitmap_alloc();
		if (!set) {
			return false;
		}
		hwloc_bitmap_only(set, static_cast<unsigned>(cores_[core_index].os_index));
		const bool ok = hwloc_set_cpubind(topo_, set, HWLOC_CPUBIND_THREAD) == 0;
		hwloc_bitmap_free(set);
		return ok;
	}
	bool UsesHwloc() const override {
		return true;
	}
	std::string Source() const override {
		return "hwloc";
	}

private:
	hwloc_topology_t topo_ = nullptr;
};
#endif

} // namespace

void Topology::NormalizeNumaNodes() {
	std::map<int, int> dense;
	for (auto &core : cores_) {
		dense.emplace(core.numa_node, 0);
	}
	int next = 0;
	for (auto &entry : dense) {
		entry.second = next++;
	}
	for (auto &core : cores_) {
		core.numa_node = dense[core.numa_node];
	}
	num_numa_nodes_ = std::max(1, next);
}

std::unique_ptr<Topology> Topology::Detect() {
#ifdef SABOT_HAVE_HWLOC
	auto hw = std::make_unique<HwlocTopology>();
	if (hw->Loaded()) {
		return hw;
	}
#endif
	return std::make_unique<SysfsTopology>();
}

std::unique_ptr<Topology> Topology::Synthetic(const std::vector<int> &numa_of_cpu) {
	return std::make_unique<SyntheticTopology>(numa_of_cpu);
}

int Topology::UsableCores() {
	int n = static_cast<int>(AffinityCpus().size());
	const double quota = CgroupCpuQuota();
	if (quota > 0) {
		n = std::min(n, std::max(1, static_cast<int>(std::ceil(quota))));
	}
	return std::max(1, n);
}

bool HwlocCompiledIn() {
#ifdef SABOT_HAVE_HWLOC
	return true;
#else
	return false;
#endif
}

std::string HwlocVersion() {
#ifdef SABOT_HAVE_HWLOC
	const unsigned v = hwloc_get_api_version();
	return std::to_string(v >> 16) + "." + std::to_string((v >> 8) & 0xff) + "." + std::to_string(v & 0xff);
#else
	return "";
#endif
}

} // namespace sabot
