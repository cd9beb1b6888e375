#include "sabot/compute/array_chunks.hpp"

#include "sabot/compute/bit_util.hpp"
#include "sabot/status_error.hpp"

#include <arrow/compute/cast.h>

namespace sabot {
namespace compute {

ArrayChunks::ArrayChunks(std::shared_ptr<arrow::Array> array, const std::shared_ptr<arrow::DataType> &cast_to) {
	if (cast_to) {
		array = ValueOrThrow(arrow::compute::Cast(*array, cast_to, arrow::compute::CastOptions::Safe(cast_to)));
	}
	array_ = std::move(array);
}

std::pair<const void *, const uint8_t *> ArrayChunks::Get(int64_t r, int64_t n) {
	const auto &d = *array_->data();
	const void *values = nullptr;
	if (d.type->id() == arrow::Type::BOOL) {
		vals_.resize(n);
		UnpackBits(d.buffers[1]->data(), d.offset + r, n, vals_.data());
		values = vals_.data();
	} else if (d.type->bit_width() > 0 && d.buffers.size() > 1 && d.buffers[1]) {
		values = d.buffers[1]->data() + (d.offset + r) * (d.type->bit_width() / 8);
	}
	const uint8_t *valid = nullptr;
	if (d.type->id() == arrow::Type::NA) {
		valid_.assign(n, 0);
		valid = valid_.data();
	} else if (d.MayHaveNulls() && d.buffers[0]) {
		valid_.resize(n);
		UnpackBits(d.buffers[0]->data(), d.offset + r, n, valid_.data());
		valid = valid_.data();
	}
	return {values, valid};
}

} // namespace compute
} // namespace sabot
