#include "sabot/compute/fused_array.hpp"

#include "sabot/compute/bit_util.hpp"
#include "sabot/status_error.hpp"

#include <arrow/buffer.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace sabot {
namespace compute {

namespace {

template <int W>
int64_t CompactChunk(const uint8_t *src, const uint8_t *valid, const uint8_t *mask, int64_t n, uint8_t *dst,
                     uint8_t *vdst) {
	int64_t k = 0;
	for (int64_t i = 0; i < n; ++i) {
		if (mask[i]) {
			std::memcpy(dst + k * W, src + i * W, W);
			vdst[k] = valid ? valid[i] : 1;
			++k;
		}
	}
	return k;
}

} // namespace

int64_t CompactSelected(const uint8_t *src, const uint8_t *valid, const uint8_t *mask, int64_t n, int width,
                        uint8_t *dst, uint8_t *vdst) {
	switch (width) {
	case 1:
		return CompactChunk<1>(src, valid, mask, n, dst, vdst);
	case 4:
		return CompactChunk<4>(src, valid, mask, n, dst, vdst);
	default:
		return CompactChunk<8>(src, valid, mask, n, dst, vdst);
	}
}

std::shared_ptr<arrow::Array> ArrayFromBytes(ValueType t, const uint8_t *values, const uint8_t *valid, int64_t n) {
	const int width = RegisterWidth(t);
	std::shared_ptr<arrow::Buffer> data;
	if (t == ValueType::kBool) {
		auto bits = ValueOrThrow(arrow::AllocateBuffer((n + 7) / 8));
		std::memset(bits->mutable_data(), 0, bits->size());
		PackBits(values, n, bits->mutable_data(), 0);
		data = std::move(bits);
	} else {
		auto buf = ValueOrThrow(arrow::AllocateBuffer(n * width));
		if (n > 0) {
			std::memcpy(buf->mutable_data(), values, n * width);
		}
		data = std::move(buf);
	}
	std::shared_ptr<arrow::Buffer> validity;
	int64_t nulls = valid ? n - CountNonZero(valid, n) : 0;
	if (nulls > 0) {
		auto bits = ValueOrThrow(arrow::AllocateBuffer((n + 7) / 8));
		std::memset(bits->mutable_data(), 0, bits->size());
		PackBits(valid, n, bits->mutable_data(), 0);
		validity = std::move(bits);
	}
	return arrow::MakeArray(arrow::ArrayData::Make(ToArrowType(t), n, {validity, data}, nulls));
}

std::shared_ptr<arrow::Array> EvaluateFusedArray(const FusedProgram &program, FusedFrame &frame,
                                                 const arrow::RecordBatch &batch, const BatchMorsel &m,
                                                 WorkerScratch &scratch) {
	const ValueType t = program.result_type();
	const int width = RegisterWidth(t);
	std::vector<uint8_t> values(m.length * width);
	scratch.bytes.resize(m.length);
	bool any_null = false;
	for (int64_t r = 0; r < m.length; r += kChunkRows) {
		const int64_t n = std::min(kChunkRows, m.length - r);
		ChunkView v = program.Evaluate(frame, batch, m.offset + r, n, nullptr);
		std::memcpy(values.data() + r * width, v.data, n * width);
		if (v.valid) {
			std::memcpy(scratch.bytes.data() + r, v.valid, n);
			any_null = true;
		} else {
			std::memset(scratch.bytes.data() + r, 1, n);
		}
	}
	return ArrayFromBytes(t, values.data(), any_null ? scratch.bytes.data() : nullptr, m.length);
}

} // namespace compute
} // namespace sabot
