#include "sabot/compute/aggregate_finalize.hpp"

#include "sabot/status_error.hpp"

namespace sabot {
namespace compute {

std::shared_ptr<arrow::Table> FinalizeAggregate(const BoundAggregate &plan, arrow::ArrayVector key_columns,
                                                const GroupedStates &states, const std::vector<uint32_t> &order) {
	arrow::FieldVector fields;
	for (size_t k = 0; k < plan.keys.size(); ++k) {
		fields.push_back(arrow::field(plan.key_names[k], plan.keys[k].type));
	}
	arrow::ArrayVector columns = std::move(key_columns);
	std::vector<const AggState *> ordered(order.size());
	for (size_t a = 0; a < plan.aggs.size(); ++a) {
		const AggState *column = states.States(a);
		for (size_t i = 0; i < order.size(); ++i) {
			ordered[i] = &column[order[i]];
		}
		const AggColumn &agg = plan.aggs[a];
		columns.push_back(ValueOrThrow(FinalizeStates(agg.spec.kind, agg.input, agg.input_type, ordered)));
		fields.push_back(arrow::field(agg.spec.name, columns.back()->type()));
	}
	return arrow::Table::Make(arrow::schema(fields), columns, static_cast<int64_t>(order.size()));
}

std::shared_ptr<arrow::Table> FinalizeGlobalAggregate(const BoundAggregate &plan,
                                                      const std::vector<std::vector<AggState>> &partials) {
	const size_t naggs = plan.aggs.size();
	GroupedStates total(naggs);
	total.Resize(1);
	for (const auto &partial : partials) {
		for (size_t a = 0; a < naggs && a < partial.size(); ++a) {
			MergeState(total.States(a)[0], partial[a]);
		}
	}
	return FinalizeAggregate(plan, {}, total, {0});
}

} // namespace compute
} // namespace sabot
