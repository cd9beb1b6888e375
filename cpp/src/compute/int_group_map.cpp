#include "sabot/compute/int_group_map.hpp"

namespace sabot {
namespace compute {

void IntGroupMap::Rehash(size_t capacity) {
	slots_.assign(capacity, kEmpty);
	shift_ = 64 - __builtin_ctzll(capacity);
	for (uint32_t id = 0; id < keys_.size(); ++id) {
		if (id == null_id_ || static_cast<uint64_t>(keys_[id]) < kDirect) {
			continue;
		}
		uint64_t h = Slot(keys_[id]);
		while (slots_[h] != kEmpty) {
			h = (h + 1) & (capacity - 1);
		}
		slots_[h] = id;
	}
}

} // namespace compute
} // namespace sabot
