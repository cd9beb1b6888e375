#include "sabot/compute/row_selection.hpp"

#include "sabot/compute/bit_util.hpp"
#include "sabot/status_error.hpp"

#include <arrow/buffer.h>
#include <arrow/compute/api_vector.h>

#include <algorithm>
#include <cstring>

namespace sabot {
namespace compute {

const uint8_t *CombineLive(const uint8_t *valid, const uint8_t *sel, int64_t n, uint8_t *buf) {
	if (valid == nullptr) {
		return sel;
	}
	if (sel == nullptr) {
		return valid;
	}
	for (int64_t i = 0; i < n; ++i) {
		buf[i] = valid[i] & sel[i];
	}
	return buf;
}

std::shared_ptr<arrow::BooleanArray> MaskArray(const uint8_t *mask, int64_t n) {
	auto bits = ValueOrThrow(arrow::AllocateBuffer((n + 7) / 8));
	std::memset(bits->mutable_data(), 0, bits->size());
	PackBits(mask, n, bits->mutable_data(), 0);
	return std::make_shared<arrow::BooleanArray>(n, std::move(bits));
}

int64_t ComputeSelection(const CompiledExpr &predicate, size_t frame_index, const arrow::RecordBatch &batch,
                         const BatchMorsel &m, WorkerScratch &scratch) {
	scratch.mask.resize(m.length);
	uint8_t *mask = scratch.mask.data();
	if (predicate.fused) {
		FusedFrame &frame = scratch.Frame(frame_index, *predicate.fused);
		for (int64_t r = 0; r < m.length; r += kChunkRows) {
			const int64_t n = std::min(kChunkRows, m.length - r);
			ChunkView v = predicate.fused->Evaluate(frame, batch, m.offset + r, n, nullptr);
			const uint8_t *val = static_cast<const uint8_t *>(v.data);
			if (v.valid) {
				for (int64_t i = 0; i < n; ++i) {
					mask[r + i] = val[i] & v.valid[i];
				}
			} else {
				std::memcpy(mask + r, val, n);
			}
		}
	} else {
		auto slice = batch.Slice(m.offset, m.length);
		auto arr = EvaluateGeneric(predicate, *slice);
		const auto &d = *arr->data();
		UnpackBits(d.buffers[1]->data(), d.offset, m.length, mask);
		if (d.MayHaveNulls() && d.buffers[0]) {
			scratch.bytes.resize(m.length);
			UnpackBits(d.buffers[0]->data(), d.offset, m.length, scratch.bytes.data());
			for (int64_t i = 0; i < m.length; ++i) {
				mask[i] &= scratch.bytes[i];
			}
		}
	}
	return CountNonZero(mask, m.length);
}

SelectedMorsel::SelectedMorsel(const arrow::RecordBatch &batch, const BatchMorsel &morsel,
                               const CompiledExpr *predicate, size_t frame_index, WorkerScratch &scratch)
    : batch_(batch), morsel_(morsel), num_selected_(morsel.length) {
	if (predicate) {
		num_selected_ = ComputeSelection(*predicate, frame_index, batch, morsel, scratch);
		mask_ = scratch.mask.data();
	}
}

const arrow::RecordBatch &SelectedMorsel::Rows() {
	if (!rows_) {
		auto slice = batch_.Slice(morsel_.offset, morsel_.length);
		if (mask_ == nullptr || num_selected_ == morsel_.length) {
			rows_ = std::move(slice);
		} else {
			arrow::Datum f = ValueOrThrow(arrow::compute::Filter(slice, MaskArray(mask_, morsel_.length)));
			rows_ = f.record_batch();
		}
	}
	return *rows_;
}

} // namespace compute
} // namespace sabot
