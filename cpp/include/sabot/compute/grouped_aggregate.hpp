//===----------------------------------------------------------------------===//
// sabot/compute/grouped_aggregate.hpp
//
// An aggregation grouped by any keys Arrow's Grouper accepts: each morsel's key arrays (of the
// selected rows) are consumed by a per-worker Grouper; the groupers are merged at the end.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_strategy.hpp"
#include "sabot/compute/grouped_states.hpp"
#include "sabot/compute/row_selection.hpp"
#include "sabot/compute/worker_scratch.hpp"

#include <arrow/compute/row/grouper.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace sabot {
namespace compute {

//! AggregateStrategyKind::kGrouped.
class GroupedAggregate : public AggregateStrategy {
public:
	//! A run of the grouped `plan` over `input` with `num_workers` workers.
	GroupedAggregate(const BoundAggregate &plan, const ColumnarInput &input, int num_workers);
	//! Select the morsel's rows, group them by their keys, then fold every aggregate.
	void Sink(const BatchMorsel &morsel, int worker_id) override;
	//! Merge the workers' groupers and build the result, groups in order of first appearance.
	std::shared_ptr<arrow::Table> Finalize() override;

private:
	//! One worker's grouper and its groups' states.
	struct Partial {
		//! Keys -> local group id (created on first use).
		std::unique_ptr<arrow::compute::Grouper> grouper;
		//! States of the local groups.
		GroupedStates states;
	};
	//! The key arrays of the selected rows of `selected`.
	std::vector<arrow::Datum> KeyValues(SelectedMorsel &selected, WorkerScratch &scratch) const;

	//! Groups per worker.
	std::vector<Partial> partial_;
};

} // namespace compute
} // namespace sabot
