#include "sabot/compute/aggregate_plan.hpp"

#include "sabot/compute/batch_morsel.hpp"
#include "sabot/compute/bound_aggregate.hpp"
#include "sabot/status_error.hpp"
#include "sabot/task_scheduler.hpp"

namespace sabot {
namespace compute {

AggregatePlan::AggregatePlan(const arrow::Schema &schema, std::vector<AggregateSpec> aggregates,
                             std::vector<std::string> key_names, const std::vector<arrow::compute::Expression> &keys,
                             const std::optional<arrow::compute::Expression> &where)
    : bound_(BoundAggregate::Bind(schema, std::move(aggregates), std::move(key_names), keys, where)) {
}

AggregatePlan::~AggregatePlan() = default;

const std::string &AggregatePlan::Unsupported() const {
	return bound_->unsupported;
}

AggregateStrategyKind AggregatePlan::Strategy() const {
	return ChooseAggregateStrategy(*bound_);
}

std::shared_ptr<arrow::Table> AggregatePlan::Execute(const ColumnarInput &input, const ExecOptions &options) const {
	if (!bound_->unsupported.empty()) {
		throw StatusError(arrow::Status::NotImplemented("native aggregation does not support ", bound_->unsupported));
	}
	input.WarmNullCounts();
	const auto morsels = PlanBatchMorsels(input, bound_->read_columns, options.morsel_bytes);
	TaskScheduler &scheduler = SchedulerFor(options.threads);
	auto strategy = AggregateStrategy::Make(Strategy(), *bound_, input, scheduler.NumThreads());
	scheduler.ParallelFor(
	    morsels.size(), [&](size_t mi, int worker) { strategy->Sink(morsels[mi], worker); }, options.cancel);
	return strategy->Finalize();
}

} // namespace compute
} // namespace sabot
