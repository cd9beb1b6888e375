//===----------------------------------------------------------------------===//
// sabot/compute/grouped_states.hpp
//
// The partial states of a grouped aggregation: for every aggregate one AggState per group, and
// for every group the first input row it was seen at (groups are output in that order).
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_state.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace sabot {
namespace compute {

//! Per-group partial states of `num_aggregates` aggregates.
//!
//! Life cycle: Resize to the number of groups a grouper has handed out so far; fold values into
//! States(a) with UpdateGroupedStates / UpdateGroupedRows (aggregate_state.hpp), passing the
//! group id of every row; record SeenAt(group, row) for the output order; combine two partials
//! with MergeFrom (a map from the other's group ids to this one's); finally turn each
//! aggregate's states into an array with FinalizeStates, in FirstAppearanceOrder().
class GroupedStates {
public:
	//! No groups yet.
	explicit GroupedStates(size_t num_aggregates) : states_(num_aggregates) {
	}
	//! Number of aggregates.
	size_t NumAggregates() const {
		return states_.size();
	}
	//! Number of groups.
	uint32_t NumGroups() const {
		return num_groups_;
	}
	//! Grow to `num_groups` groups (new groups have empty states and no first row); never shrinks.
	void Resize(uint32_t num_groups);
	//! The states of aggregate `agg`, indexed by group id (valid until the next Resize).
	AggState *States(size_t agg) {
		return states_[agg].data();
	}
	//! The states of aggregate `agg` (read-only).
	const AggState *States(size_t agg) const {
		return states_[agg].data();
	}
	//! Note that group `group` occurs at input row `row` (keeps the smallest row).
	void SeenAt(uint32_t group, int64_t row) {
		if (group >= first_row_.size()) {
			first_row_.resize(group + 1, kNever);
		}
		first_row_[group] = std::min(first_row_[group], row);
	}
	//! The first input row of `group` (INT64_MAX when never seen).
	int64_t FirstRow(uint32_t group) const {
		return group < first_row_.size() ? first_row_[group] : kNever;
	}
	//! Merge `other` into this: other's group g goes to group map[g] (map has other.NumGroups()
	//! entries, each below NumGroups(); both have the same aggregates).
	void MergeFrom(const GroupedStates &other, const uint32_t *map);
	//! Group ids ordered by first row (the order groups appear in the input).
	std::vector<uint32_t> FirstAppearanceOrder() const;

private:
	//! First row of a group never seen.
	static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
	//! states_[agg][group].
	std::vector<std::vector<AggState>> states_;
	//! First input row of every group.
	std::vector<int64_t> first_row_;
	//! Number of groups.
	uint32_t num_groups_ = 0;
};

} // namespace compute
} // namespace sabot
