//===----------------------------------------------------------------------===//
// sabot/compute/batch_morsel.hpp
//
// Morsels of columnar input: row ranges of one record batch, sized from the bytes of the columns
// a call really reads.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/columnar_input.hpp"

#include <cstdint>
#include <vector>

namespace sabot {
namespace compute {

//! Rows [offset, offset + length) of batch `batch`.
struct BatchMorsel {
	//! Index of the batch in the input.
	int batch;
	//! First row within the batch.
	int64_t offset;
	//! Number of rows.
	int64_t length;
};

//! Bytes the given columns of `batch` really reference (every column when `columns` is empty).
int64_t BatchBytes(const arrow::RecordBatch &batch, std::vector<int> columns);
//! Split every batch into morsels of about `morsel_bytes` of the columns `columns` (every column
//! when empty). Offsets stay multiples of 8 rows so output bitmaps of different morsels never
//! share a byte.
std::vector<BatchMorsel> PlanBatchMorsels(const ColumnarInput &input, const std::vector<int> &columns,
                                          int64_t morsel_bytes);

} // namespace compute
} // namespace sabot
