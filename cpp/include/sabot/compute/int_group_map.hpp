//===----------------------------------------------------------------------===//
// sabot/compute/int_group_map.hpp
//
// Group ids of one integer (or boolean) key: much lighter than Arrow's generic Grouper for the
// common "group by an integer expression" case.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace sabot {
namespace compute {

//! Dense group ids (0, 1, ... in order of first insertion) of int64 keys: a direct table for small
//! non-negative keys, open addressing with linear probing over a power-of-two table for the
//! others; null keys share one group.
class IntGroupMap {
public:
	//! An empty map.
	IntGroupMap() {
		Rehash(64);
	}
	//! The group of `key`, created when new.
	uint32_t FindOrInsert(int64_t key) {
		// Small non-negative keys (remainders, codes, booleans) index a direct table: no hashing.
		if (static_cast<uint64_t>(key) < kDirect) {
			uint32_t &id = direct_[key];
			if (id == kEmpty) {
				id = static_cast<uint32_t>(keys_.size());
				keys_.push_back(key);
			}
			return id;
		}
		uint64_t h = Slot(key);
		while (true) {
			const uint32_t id = slots_[h];
			if (id == kEmpty) {
				const auto fresh = static_cast<uint32_t>(keys_.size());
				keys_.push_back(key);
				slots_[h] = fresh;
				if (++hashed_ * 2 > slots_.size()) {
					Rehash(slots_.size() * 2);
				}
				return fresh;
			}
			if (keys_[id] == key && id != null_id_) {
				return id;
			}
			h = (h + 1) & (slots_.size() - 1);
		}
	}
	//! The group of the null key, created when new.
	uint32_t NullGroup() {
		if (null_id_ == kEmpty) {
			null_id_ = static_cast<uint32_t>(keys_.size());
			keys_.push_back(0);
		}
		return null_id_;
	}
	//! Number of groups.
	uint32_t NumGroups() const {
		return static_cast<uint32_t>(keys_.size());
	}
	//! The key of group `id` (0 for the null group).
	int64_t Key(uint32_t id) const {
		return keys_[id];
	}
	//! Whether group `id` is the null key's.
	bool IsNull(uint32_t id) const {
		return id == null_id_;
	}

private:
	//! An unused slot.
	static constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();
	//! Keys in [0, kDirect) use the direct table.
	static constexpr uint64_t kDirect = 1024;
	//! Fibonacci hash of `key` to a slot.
	uint64_t Slot(int64_t key) const {
		return (static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ULL) >> shift_;
	}
	//! Rebuild the hashed table with `capacity` (a power of two) slots.
	void Rehash(size_t capacity);

	//! Group of each direct key.
	std::vector<uint32_t> direct_ = std::vector<uint32_t>(kDirect, kEmpty);
	//! Open-addressing slots holding group ids.
	std::vector<uint32_t> slots_;
	//! Key of each group.
	std::vector<int64_t> keys_;
	//! Groups in the hashed table.
	size_t hashed_ = 0;
	//! The null key's group, or kEmpty.
	uint32_t null_id_ = kEmpty;
	//! 64 - log2(slots).
	int shift_ = 58;
};

} // namespace compute
} // namespace sabot
