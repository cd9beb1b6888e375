//===----------------------------------------------------------------------===//
// sabot/compute/columnar_input.hpp
//
// The input of a columnar call: record batches of one schema, held by reference.
//===----------------------------------------------------------------------===//
#pragma once

#include <arrow/record_batch.h>
#include <arrow/type_fwd.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace sabot {
namespace compute {

//! The input: record batches of one schema (held by reference, never copied).
struct ColumnarInput {
	//! Schema of every batch.
	std::shared_ptr<arrow::Schema> schema;
	//! The batches, in input order.
	std::vector<std::shared_ptr<arrow::RecordBatch>> batches;

	//! Drain `reader` (zero-copy: its batches are kept as they are; empty ones are dropped).
	static ColumnarInput FromReader(arrow::RecordBatchReader &reader);
	//! Make every column's null count known on the calling thread, so that workers only read it.
	void WarmNullCounts() const;
	//! The input row of every batch's first row, and the total row count last (size batches + 1).
	std::vector<int64_t> BatchStarts() const;
};

} // namespace compute
} // namespace sabot
