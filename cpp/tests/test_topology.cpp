#include "sabot/topology.hpp"

#include <gtest/gtest.h>

#include <set>

#include <sched.h>

using namespace sabot;

TEST(Topology, DetectListsOnlyAllowedCpus) {
	auto topo = Topology::Detect();
	ASSERT_GE(topo->NumCores(), 1);
	cpu_set_t set;
	CPU_ZERO(&set);
	ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
	EXPECT_EQ(topo->NumCores(), CPU_COUNT(&set));
	std::set<int> seen;
	for (int i = 0; i < topo->NumCores(); i++) {
		EXPECT_TRUE(CPU_ISSET(topo->Core(i).os_index, &set));
		EXPECT_TRUE(seen.insert(topo->Core(i).os_index).second);
		EXPECT_GE(topo->NumaNodeOf(i), 0);
		EXPECT_LT(topo->NumaNodeOf(i), topo->NumNumaNodes());
	}
	EXPECT_EQ(topo->UsesHwloc(), HwlocCompiledIn());
}

TEST(Topology, UsableCoresWithinAffinity) {
	cpu_set_t set;
	CPU_ZERO(&set);
	ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
	EXPECT_GE(Topology::UsableCores(), 1);
	EXPECT_LE(Topology::UsableCores(), CPU_COUNT(&set));
}

TEST(Topology, SyntheticNodesAreDense) {
	auto topo = Topology::Synthetic({5, 5, 9, 9});
	EXPECT_EQ(topo->NumCores(), 4);
	EXPECT_EQ(topo->NumNumaNodes(), 2);
	EXPECT_EQ(topo->NumaNodeOf(0), 0);
	EXPECT_EQ(topo->NumaNodeOf(3), 1);
	EXPECT_FALSE(topo->BindCurrentThread(0));
	EXPECT_EQ(topo->Source(), "synthetic");
}

TEST(Topology, BindPinsTheCallingThread) {
	auto topo = Topology::Detect();
	cpu_set_t before;
	CPU_ZERO(&before);
	ASSERT_EQ(sched_getaffinity(0, sizeof(before), &before), 0);
	const int last = topo->NumCores() - 1;
	ASSERT_TRUE(topo->BindCurrentThread(last));
	cpu_set_t after;
	CPU_ZERO(&after);
	ASSERT_EQ(sched_getaffinity(0, sizeof(after), &after), 0);
	EXPECT_EQ(CPU_COUNT(&after), 1);
	EXPECT_TRUE(CPU_ISSET(topo->Core(last).os_index, &after));
	// Restore so later tests see the full mask.
	ASSERT_EQ(sched_setaffinity(0, sizeof(before), &before), 0);
}
