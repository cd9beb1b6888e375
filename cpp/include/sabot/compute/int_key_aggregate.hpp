//===----------------------------------------------------------------------===//
// sabot/compute/int_key_aggregate.hpp
//
// An aggregation grouped by one fused integer or boolean key: the key is evaluated chunk by
// chunk and mapped to group ids with an IntGroupMap, nothing is materialised.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_strategy.hpp"
#include "sabot/compute/grouped_states.hpp"
#include "sabot/compute/int_group_map.hpp"
#include "sabot/compute/worker_scratch.hpp"

#include <cstdint>
#include <vector>

namespace sabot {
namespace compute {

//! AggregateStrategyKind::kIntKey.
class IntKeyAggregate : public AggregateStrategy {
public:
	//! A run of `plan` (one fused bool/int32/int64 key) over `input` with `num_workers` workers.
	IntKeyAggregate(const BoundAggregate &plan, const ColumnarInput &input, int num_workers);
	//! Select the morsel's rows, then per chunk: key -> group ids, then fold every aggregate.
	void Sink(const BatchMorsel &morsel, int worker_id) override;
	//! Merge the workers' groups by key and build the result, groups in order of first appearance.
	std::shared_ptr<arrow::Table> Finalize() override;

private:
	//! One worker's groups and their states.
	struct Partial {
		//! Key -> local group id.
		IntGroupMap groups;
		//! States of the local groups.
		GroupedStates states;
	};
	//! Map the `count` selected rows `rows` of a chunk (its first row is input row `first_row`) to
	//! group ids by their `keys`, written to ids[row]; grow the states to the new groups.
	void AssignGroups(const ChunkView &keys, const int32_t *rows, int64_t count, int64_t first_row, Partial &partial,
	                  uint32_t *ids) const;
	//! Fold aggregate `a` over one chunk of rows [row, row + n) of `batch`.
	void UpdateChunk(size_t a, const arrow::RecordBatch &batch, int64_t row, int64_t n, const uint8_t *sel,
	                 const int32_t *rows, int64_t count, WorkerScratch &scratch, Partial &partial) const;

	//! Groups per worker.
	std::vector<Partial> partial_;
};

} // namespace compute
} // namespace sabot
