//===----------------------------------------------------------------------===//
// sabot/compute/row_selection.hpp
//
// Which rows of a morsel count: a filter predicate evaluated into a byte mask, that mask
// combined with validity, and the selected rows as a record batch when Arrow needs them.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/batch_morsel.hpp"
#include "sabot/compute/compiled_expr.hpp"
#include "sabot/compute/worker_scratch.hpp"

#include <arrow/array.h>
#include <arrow/record_batch.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace sabot {
namespace compute {

//! live[i] = valid[i] & sel[i] into `buf`; returns nullptr when both are absent (every row counts).
const uint8_t *CombineLive(const uint8_t *valid, const uint8_t *sel, int64_t n, uint8_t *buf);
//! A boolean array of n rows from n 0/1 bytes.
std::shared_ptr<arrow::BooleanArray> MaskArray(const uint8_t *mask, int64_t n);
//! Evaluate the boolean `predicate` over `morsel` into scratch.mask (1 = row kept; null = dropped),
//! using frame slot `frame_index` when it is fused. Returns the number of kept rows.
int64_t ComputeSelection(const CompiledExpr &predicate, size_t frame_index, const arrow::RecordBatch &batch,
                         const BatchMorsel &morsel, WorkerScratch &scratch);

//! One morsel and the rows of it a predicate selected (every row without one).
class SelectedMorsel {
public:
	//! Select the rows of `morsel` of `batch` where `predicate` (may be null) is true; the mask
	//! lives in scratch.mask until the next selection on this worker.
	SelectedMorsel(const arrow::RecordBatch &batch, const BatchMorsel &morsel, const CompiledExpr *predicate,
	               size_t frame_index, WorkerScratch &scratch);
	//! The batch the morsel belongs to.
	const arrow::RecordBatch &Batch() const {
		return batch_;
	}
	//! The morsel.
	const BatchMorsel &Morsel() const {
		return morsel_;
	}
	//! One byte per morsel row (1 = selected), or nullptr when every row is.
	const uint8_t *Mask() const {
		return mask_;
	}
	//! Number of selected rows.
	int64_t NumSelected() const {
		return num_selected_;
	}
	//! The selected rows as a batch (built on first use; the unfiltered slice when all are selected).
	const arrow::RecordBatch &Rows();

private:
	//! The input batch.
	const arrow::RecordBatch &batch_;
	//! The morsel.
	BatchMorsel morsel_;
	//! The selection, or nullptr.
	const uint8_t *mask_ = nullptr;
	//! Selected rows.
	int64_t num_selected_;
	//! Rows(), once built.
	std::shared_ptr<arrow::RecordBatch> rows_;
};

} // namespace compute
} // namespace sabot
