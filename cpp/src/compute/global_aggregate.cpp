#include "sabot/compute/global_aggregate.hpp"

#include "sabot/compute/aggregate_finalize.hpp"
#include "sabot/compute/aggregate_update.hpp"
#include "sabot/compute/row_selection.hpp"

namespace sabot {
namespace compute {

GlobalAggregate::GlobalAggregate(const BoundAggregate &plan, const ColumnarInput &input, int num_workers)
    : AggregateStrategy(plan, input, num_workers), partial_(num_workers, std::vector<AggState>(plan.aggs.size())) {
}

void GlobalAggregate::Sink(const BatchMorsel &m, int worker_id) {
	WorkerScratch &ws = scratch_[worker_id];
	SelectedMorsel selected(*input_.batches[m.batch], m, plan_.pred ? &*plan_.pred : nullptr, plan_.PredicateFrame(),
	                        ws);
	if (selected.NumSelected() == 0) {
		return;
	}
	for (size_t a = 0; a < plan_.aggs.size(); ++a) {
		UpdateAggregate(plan_.aggs[a], a, selected, ws, AggTarget {&partial_[worker_id][a], nullptr, nullptr});
	}
}

std::shared_ptr<arrow::Table> GlobalAggregate::Finalize() {
	return FinalizeGlobalAggregate(plan_, partial_);
}

} // namespace compute
} // namespace sabot
