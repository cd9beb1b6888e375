//===----------------------------------------------------------------------===//
// sabot/compute/aggregate_plan.hpp
//
// A validated (grouped) aggregation over columnar input, run morsel by morsel on the scheduler
// with per-worker partial states merged at the end. Errors are thrown as StatusError.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_spec.hpp"
#include "sabot/compute/aggregate_strategy.hpp"
#include "sabot/compute/columnar_input.hpp"
#include "sabot/compute/exec_options.hpp"

#include <arrow/compute/expression.h>
#include <arrow/table.h>
#include <arrow/type_fwd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sabot {
namespace compute {

struct BoundAggregate;

//! A validated aggregation: keys and aggregates bound to a schema.
class AggregatePlan {
public:
	//! Bind everything to `schema`. Throws StatusError for bad input (unknown column, bad types).
	AggregatePlan(const arrow::Schema &schema, std::vector<AggregateSpec> aggregates, std::vector<std::string> key_names,
	              const std::vector<arrow::compute::Expression> &keys,
	              const std::optional<arrow::compute::Expression> &where);
	//! Defined where BoundAggregate is complete.
	~AggregatePlan();
	//! Empty when the native engine can run the plan; otherwise why not (e.g. min over strings),
	//! and the caller should use another engine.
	const std::string &Unsupported() const;
	//! The strategy Execute runs.
	AggregateStrategyKind Strategy() const;
	//! Run it: one row for a global aggregation, one row per group (ordered by the group's first
	//! appearance in the input) with the key columns first otherwise.
	std::shared_ptr<arrow::Table> Execute(const ColumnarInput &input, const ExecOptions &options) const;

private:
	//! The bound plan.
	std::unique_ptr<BoundAggregate> bound_;
};

} // namespace compute
} // namespace sabot
