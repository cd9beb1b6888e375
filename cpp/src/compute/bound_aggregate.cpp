#include "sabot/compute/bound_aggregate.hpp"

#include "sabot/status_error.hpp"

#include <arrow/compute/row/grouper.h>

namespace sabot {
namespace compute {

namespace ac = arrow::compute;

namespace {

AggColumn BindColumn(AggregateSpec spec, const arrow::Schema &schema, BoundAggregate &plan) {
	AggColumn col;
	if (spec.kind == AggKind::kCountAll) {
		col.input_type = arrow::int64();
		col.spec = std::move(spec);
		return col;
	}
	if (!spec.value) {
		throw StatusError(arrow::Status::Invalid("aggregate ", spec.name, " needs a value expression"));
	}
	col.value = CompileExpr(*spec.value, schema);
	CollectColumns(*spec.value, schema, plan.read_columns);
	col.input_type = col.value->type;
	auto input = AccumInputOf(*col.input_type, &col.cast_to);
	if (input) {
		col.input = *input;
	} else if (spec.kind != AggKind::kCount) {
		if (plan.unsupported.empty()) {
			plan.unsupported = std::string("aggregating values of type ") + col.input_type->ToString();
		}
	} else {
		col.input = AccumInput::kInt64; // count only reads validity
	}
	col.spec = std::move(spec);
	return col;
}

} // namespace

std::unique_ptr<BoundAggregate> BoundAggregate::Bind(const arrow::Schema &schema, std::vector<AggregateSpec> aggregates,
                                                     std::vector<std::string> key_names,
                                                     const std::vector<ac::Expression> &keys,
                                                     const std::optional<ac::Expression> &where) {
	if (key_names.size() != keys.size()) {
		throw StatusError(arrow::Status::Invalid("aggregate: ", key_names.size(), " key names for ", keys.size(), " keys"));
	}
	auto plan = std::make_unique<BoundAggregate>();
	plan->key_names = std::move(key_names);
	for (const auto &k : keys) {
		plan->keys.push_back(CompileExpr(k, schema));
		CollectColumns(k, schema, plan->read_columns);
		plan->key_types.emplace_back(plan->keys.back().type);
	}
	if (!plan->keys.empty()) {
		auto probe = ac::Grouper::Make(plan->key_types);
		if (!probe.ok()) {
			plan->unsupported = "grouping by these key types: " + probe.status().ToString();
		}
	}
	if (where) {
		plan->pred = CompilePredicate(*where, schema);
		CollectColumns(*where, schema, plan->read_columns);
	}
	for (auto &spec : aggregates) {
		plan->aggs.push_back(BindColumn(std::move(spec), schema, *plan));
	}
	return plan;
}

} // namespace compute
} // namespace sabot
