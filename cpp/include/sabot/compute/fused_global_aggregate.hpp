//===----------------------------------------------------------------------===//
// sabot/compute/fused_global_aggregate.hpp
//
// A global aggregation whose predicate and values are all fused: each morsel is processed chunk
// by chunk (predicate, then every aggregate), so all the data of a chunk stays hot in L1.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/global_aggregate.hpp"

namespace sabot {
namespace compute {

//! AggregateStrategyKind::kFusedGlobal: the partial states and finalize step of GlobalAggregate,
//! with a chunk-major Sink.
class FusedGlobalAggregate : public GlobalAggregate {
public:
	//! A run of `plan` (global, everything fused) over `input` with `num_workers` workers.
	FusedGlobalAggregate(const BoundAggregate &plan, const ColumnarInput &input, int num_workers);
	//! Evaluate the predicate and fold every aggregate, one chunk at a time.
	void Sink(const BatchMorsel &morsel, int worker_id) override;

private:
	//! The selection of one chunk (nullptr: every row), in scratch.mask when it needs combining.
	const uint8_t *SelectChunk(const arrow::RecordBatch &batch, int64_t row, int64_t n, WorkerScratch &scratch) const;
};

} // namespace compute
} // namespace sabot
