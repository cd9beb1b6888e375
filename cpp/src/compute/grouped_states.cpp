#include "sabot/compute/grouped_states.hpp"

#include <numeric>

namespace sabot {
namespace compute {

void GroupedStates::Resize(uint32_t num_groups) {
	if (num_groups <= num_groups_) {
		return;
	}
	for (auto &states : states_) {
		states.resize(num_groups);
	}
	if (first_row_.size() < num_groups) {
		first_row_.resize(num_groups, kNever);
	}
	num_groups_ = num_groups;
}

void GroupedStates::MergeFrom(const GroupedStates &other, const uint32_t *map) {
	for (uint32_t g = 0; g < other.NumGroups(); ++g) {
		const uint32_t into = map[g];
		first_row_[into] = std::min(first_row_[into], other.FirstRow(g));
		for (size_t a = 0; a < states_.size(); ++a) {
			MergeState(states_[a][into], other.states_[a][g]);
		}
	}
}

std::vector<uint32_t> GroupedStates::FirstAppearanceOrder() const {
	std::vector<uint32_t> order(num_groups_);
	std::iota(order.begin(), order.end(), 0);
	std::sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) { return FirstRow(x) < FirstRow(y); });
	return order;
}

} // namespace compute
} // namespace sabot
