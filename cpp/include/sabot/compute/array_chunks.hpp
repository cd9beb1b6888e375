//===----------------------------------------------------------------------===//
// sabot/compute/array_chunks.hpp
//
// An Arrow array of aggregate input seen chunk by chunk as raw typed values and validity bytes,
// the form the kernels of aggregate_state.hpp take.
//===----------------------------------------------------------------------===//
#pragma once

#include <arrow/array.h>
#include <arrow/type_fwd.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace sabot {
namespace compute {

//! A value array in the accumulation domain, read in chunks.
//!
//! Typical use with the kernels of aggregate_state.hpp: `AccumInputOf(*array->type(), &cast_to)`
//! gives the domain and the cast; `ArrayChunks chunks(array, cast_to)`; then for each chunk
//! `auto [data, valid] = chunks.Get(r, n)` and `UpdateGroupedStates(states, kind, input, data,
//! valid, ids + r, n)` (pass data = nullptr for count, which reads validity only).
class ArrayChunks {
public:
	//! View `array`, cast first to `cast_to` when it is not null (throws StatusError if the cast fails).
	ArrayChunks(std::shared_ptr<arrow::Array> array, const std::shared_ptr<arrow::DataType> &cast_to);
	//! Values of rows [r, r + n) (nullptr when the type has no fixed-width values, e.g. strings) and
	//! validity bytes (nullptr = all valid). Booleans come as 0/1 bytes. Valid until the next Get.
	std::pair<const void *, const uint8_t *> Get(int64_t r, int64_t n);
	//! Rows of the array.
	int64_t Length() const {
		return array_->length();
	}

private:
	//! The (cast) array.
	std::shared_ptr<arrow::Array> array_;
	//! Unpacked boolean values of the last chunk.
	std::vector<uint8_t> vals_;
	//! Unpacked validity of the last chunk.
	std::vector<uint8_t> valid_;
};

} // namespace compute
} // namespace sabot
