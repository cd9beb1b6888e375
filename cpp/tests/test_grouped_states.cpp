// GroupedStates and IntGroupMap: the partial states of grouped aggregation as a caller outside
// the strategies (e.g. a windowed aggregation) uses them: update per batch, merge, finalise.
#include "sabot/compute/aggregate_state.hpp"
#include "sabot/compute/grouped_states.hpp"
#include "sabot/compute/int_group_map.hpp"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <vector>

using namespace sabot::compute;

TEST(IntGroupMap, DenseIdsInInsertionOrderWithOneNullGroup) {
	IntGroupMap map;
	EXPECT_EQ(map.FindOrInsert(5), 0u);
	EXPECT_EQ(map.FindOrInsert(-3), 1u);
	EXPECT_EQ(map.FindOrInsert(5), 0u);
	const uint32_t null_group = map.NullGroup();
	EXPECT_EQ(null_group, 2u);
	EXPECT_EQ(map.NullGroup(), null_group);
	// The null group is not key 0.
	EXPECT_EQ(map.FindOrInsert(0), 3u);
	EXPECT_TRUE(map.IsNull(null_group));
	EXPECT_FALSE(map.IsNull(3));
	EXPECT_EQ(map.Key(1), -3);
	EXPECT_EQ(map.NumGroups(), 4u);
}

TEST(IntGroupMap, ManyLargeKeysSurviveRehashing) {
	IntGroupMap map;
	std::vector<int64_t> keys;
	for (int64_t i = 0; i < 100'000; ++i) {
		keys.push_back(i * 1'000'003 - 50'000'000'000LL);
	}
	for (size_t i = 0; i < keys.size(); ++i) {
		ASSERT_EQ(map.FindOrInsert(keys[i]), i);
	}
	for (size_t i = 0; i < keys.size(); ++i) {
		ASSERT_EQ(map.FindOrInsert(keys[i]), i);
		ASSERT_EQ(map.Key(static_cast<uint32_t>(i)), keys[i]);
	}
}

TEST(GroupedStates, UpdateMergeAndFinalizeInFirstAppearanceOrder) {
	// Two partials over int64 values (e.g. two panes of a window), merged through an id map.
	GroupedStates left(2), right(2);
	const std::vector<int64_t> lv = {10, 20, 30};
	const std::vector<uint32_t> lids = {0, 1, 0};
	left.Resize(2);
	for (size_t a = 0; a < 2; ++a) {
		const AggKind kind = a == 0 ? AggKind::kSum : AggKind::kMax;
		UpdateGroupedStates(left.States(a), kind, AccumInput::kInt64, lv.data(), nullptr, lids.data(), 3);
	}
	left.SeenAt(0, 100);
	left.SeenAt(1, 101);

	const std::vector<int64_t> rv = {1, 2, 3, 4};
	const std::vector<uint8_t> live = {1, 1, 0, 1}; // row 2 is null
	const std::vector<uint32_t> rids = {0, 1, 1, 0};
	right.Resize(2);
	for (size_t a = 0; a < 2; ++a) {
		const AggKind kind = a == 0 ? AggKind::kSum : AggKind::kMax;
		UpdateGroupedStates(right.States(a), kind, AccumInput::kInt64, rv.data(), live.data(), rids.data(), 4);
	}
	right.SeenAt(0, 5); // right's group 0 appeared first in the input
	right.SeenAt(1, 200);

	// right's group 0 is left's group 1; right's group 1 is new (left's group 2).
	GroupedStates merged(2);
	const std::vector<uint32_t> identity = {0, 1};
	const std::vector<uint32_t> map = {1, 2};
	merged.Resize(2);
	merged.MergeFrom(left, identity.data());
	merged.Resize(3);
	merged.MergeFrom(right, map.data());
	ASSERT_EQ(merged.NumGroups(), 3u);
	EXPECT_EQ(merged.FirstRow(1), 5);

	const std::vector<uint32_t> order = merged.FirstAppearanceOrder();
	EXPECT_EQ(order, (std::vector<uint32_t> {1, 0, 2}));
	std::vector<const AggState *> ordered;
	for (uint32_t g : order) {
		ordered.push_back(&merged.States(0)[g]);
	}
	auto sums = FinalizeStates(AggKind::kSum, AccumInput::kInt64, arrow::int64(), ordered).ValueOrDie();
	// group 1: 20 + 1 + 4; group 0: 10 + 30; group 2: 2 (3 was null).
	const auto &values = static_cast<const arrow::Int64Array &>(*sums);
	ASSERT_EQ(values.length(), 3);
	EXPECT_EQ(values.Value(0), 25);
	EXPECT_EQ(values.Value(1), 40);
	EXPECT_EQ(values.Value(2), 2);
}
