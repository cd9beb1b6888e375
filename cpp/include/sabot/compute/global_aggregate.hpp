//===----------------------------------------------------------------------===//
// sabot/compute/global_aggregate.hpp
//
// A global aggregation where the predicate or some value is not fused (or needs a cast): the
// predicate selects the rows of a morsel, then every aggregate is folded over them.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_state.hpp"
#include "sabot/compute/aggregate_strategy.hpp"
#include "sabot/compute/worker_scratch.hpp"

#include <vector>

namespace sabot {
namespace compute {

//! AggregateStrategyKind::kGlobal.
class GlobalAggregate : public AggregateStrategy {
public:
	//! A run of the global `plan` over `input` with `num_workers` workers.
	GlobalAggregate(const BoundAggregate &plan, const ColumnarInput &input, int num_workers);
	//! Select the morsel's rows, then fold every aggregate over them.
	void Sink(const BatchMorsel &morsel, int worker_id) override;
	//! Merge the workers' states into the one-row result.
	std::shared_ptr<arrow::Table> Finalize() override;

protected:
	//! One state per aggregate per worker.
	std::vector<std::vector<AggState>> partial_;
};

} // namespace compute
} // namespace sabot
