//===----------------------------------------------------------------------===//
// sabot/compute/aggregate_strategy.hpp
//
// How a bound aggregation runs over morsels: every worker sinks morsels into its own partial
// states, then the partials are merged and finalised into the result table. Which strategy runs
// depends on the plan (fused or not, global or grouped, and by what keys).
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/batch_morsel.hpp"
#include "sabot/compute/bound_aggregate.hpp"
#include "sabot/compute/columnar_input.hpp"
#include "sabot/compute/worker_scratch.hpp"

#include <arrow/table.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace sabot {
namespace compute {

//! The strategies.
enum class AggregateStrategyKind : uint8_t {
	kFusedGlobal, //!< global, predicate and values all fused: chunk-major, all data hot in L1
	kGlobal,      //!< global, some part evaluated by Arrow over the selected rows
	kIntKey,      //!< one fused integer/boolean key: IntGroupMap per chunk, keys never materialised
	kGrouped      //!< any other keys: Arrow's Grouper over the key arrays of each morsel
};

//! The strategy's name ("fused_global", "global", "int_key", "grouped").
const char *AggregateStrategyName(AggregateStrategyKind kind);
//! The strategy `plan` runs with.
AggregateStrategyKind ChooseAggregateStrategy(const BoundAggregate &plan);

//! One run of a bound aggregation over one input. Sink is called from worker threads (never
//! twice at once with the same worker id), Finalize once after every Sink returned.
class AggregateStrategy {
public:
	//! Virtual destructor: owned through std::unique_ptr.
	virtual ~AggregateStrategy() = default;
	//! Fold `morsel` into the partial states of worker `worker_id`.
	virtual void Sink(const BatchMorsel &morsel, int worker_id) = 0;
	//! Merge the workers' partials and build the result table (see AggregatePlan::Execute).
	virtual std::shared_ptr<arrow::Table> Finalize() = 0;

	//! A run of `kind` over `input` with `num_workers` workers; `plan` and `input` must outlive it.
	static std::unique_ptr<AggregateStrategy> Make(AggregateStrategyKind kind, const BoundAggregate &plan,
	                                               const ColumnarInput &input, int num_workers);

protected:
	//! What every strategy runs over and with.
	AggregateStrategy(const BoundAggregate &plan, const ColumnarInput &input, int num_workers);

	//! The plan.
	const BoundAggregate &plan_;
	//! The input.
	const ColumnarInput &input_;
	//! Input row of each batch's first row (group order is first appearance in the input).
	std::vector<int64_t> batch_start_;
	//! Scratch per worker.
	std::vector<WorkerScratch> scratch_;
};

} // namespace compute
} // namespace sabot
