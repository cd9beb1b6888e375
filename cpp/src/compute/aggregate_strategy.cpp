#include "sabot/compute/aggregate_strategy.hpp"

#include "sabot/compute/fused_global_aggregate.hpp"
#include "sabot/compute/global_aggregate.hpp"
#include "sabot/compute/grouped_aggregate.hpp"
#include "sabot/compute/int_key_aggregate.hpp"

namespace sabot {
namespace compute {

const char *AggregateStrategyName(AggregateStrategyKind kind) {
	switch (kind) {
	case AggregateStrategyKind::kFusedGlobal:
		return "fused_global";
	case AggregateStrategyKind::kGlobal:
		return "global";
	case AggregateStrategyKind::kIntKey:
		return "int_key";
	case AggregateStrategyKind::kGrouped:
		return "grouped";
	}
	return "unknown";
}

AggregateStrategyKind ChooseAggregateStrategy(const BoundAggregate &plan) {
	if (!plan.Grouped()) {
		bool fused = !plan.pred || plan.pred->fused;
		for (const auto &agg : plan.aggs) {
			fused = fused && (agg.spec.kind == AggKind::kCountAll || (agg.value->fused && !agg.cast_to));
		}
		return fused ? AggregateStrategyKind::kFusedGlobal : AggregateStrategyKind::kGlobal;
	}
	if (plan.keys.size() == 1 && plan.keys[0].fused) {
		const ValueType t = plan.keys[0].fused->result_type();
		if (t != ValueType::kFloat32 && t != ValueType::kFloat64) {
			return AggregateStrategyKind::kIntKey;
		}
	}
	return AggregateStrategyKind::kGrouped;
}

AggregateStrategy::AggregateStrategy(const BoundAggregate &plan, const ColumnarInput &input, int num_workers)
    : plan_(plan), input_(input), batch_start_(input.BatchStarts()), scratch_(num_workers) {
}

std::unique_ptr<AggregateStrategy> AggregateStrategy::Make(AggregateStrategyKind kind, const BoundAggregate &plan,
                                                           const ColumnarInput &input, int num_workers) {
	switch (kind) {
	case AggregateStrategyKind::kFusedGlobal:
		return std::make_unique<FusedGlobalAggregate>(plan, input, num_workers);
	case AggregateStrategyKind::kGlobal:
		return std::make_unique<GlobalAggregate>(plan, input, num_workers);
	case AggregateStrategyKind::kIntKey:
		return std::make_unique<IntKeyAggregate>(plan, input, num_workers);
	case AggregateStrategyKind::kGrouped:
		return std::make_unique<GroupedAggregate>(plan, input, num_workers);
	}
	return nullptr;
}

} // namespace compute
} // namespace sabot
