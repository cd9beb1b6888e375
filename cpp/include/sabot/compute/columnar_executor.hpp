//===----------------------------------------------------------------------===//
// sabot/compute/columnar_executor.hpp
//
// Projections, filters and (grouped) aggregations over Arrow record batches, run morsel by
// morsel on the TaskScheduler. Expressions take the fused path (FusedProgram) where they can and
// Arrow's ExecuteScalarExpression per morsel otherwise. Errors are thrown as StatusError.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/cancellation.hpp"
#include "sabot/compute/aggregate_state.hpp"
#include "sabot/morsel.hpp"

#include <arrow/compute/expression.h>
#include <arrow/record_batch.h>
#include <arrow/table.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sabot {

class TaskScheduler;

namespace compute {

//! How one columnar call runs.
struct ExecOptions {
	//! Worker threads; 0 = the global scheduler's.
	int threads = 0;
	//! Bytes of input per morsel (MORSEL_SIZE_KB * 1024).
	int64_t morsel_bytes = DEFAULT_MORSEL_BYTES;
	//! Optional cancellation.
	const CancellationToken *cancel = nullptr;
};

//! The input: record batches of one schema (held by reference, never copied).
struct ColumnarInput {
	//! Schema of every batch.
	std::shared_ptr<arrow::Schema> schema;
	//! The batches, in input order.
	std::vector<std::shared_ptr<arrow::RecordBatch>> batches;

	//! Drain `reader` (zero-copy: its batches are kept as they are).
	static ColumnarInput FromReader(arrow::RecordBatchReader &reader);
};

//! One output aggregate: `kind` over `value` (absent for count_all), named `name`.
struct AggregateSpec {
	//! Output column name.
	std::string name;
	//! The function.
	AggKind kind = AggKind::kCount;
	//! The aggregated expression (not used by count_all).
	std::optional<arrow::compute::Expression> value;
};

//! Whether `expr` bound to `schema` runs on the fused evaluator (throws StatusError if it does not bind).
bool IsFused(const arrow::compute::Expression &expr, const arrow::Schema &schema);

//! Evaluate each expression over the input (rows where `where` is true when given), in input
//! order, as columns `names`.
std::shared_ptr<arrow::Table> Project(const ColumnarInput &input, const std::vector<std::string> &names,
                                      const std::vector<arrow::compute::Expression> &exprs,
                                      const std::optional<arrow::compute::Expression> &where,
                                      const ExecOptions &options);

//! The input rows where `predicate` is true, in input order.
std::shared_ptr<arrow::Table> Filter(const ColumnarInput &input, const arrow::compute::Expression &predicate,
                                     const ExecOptions &options);

class AggregatePlanImpl;

//! A validated aggregation: keys and aggregates bound to a schema.
class AggregatePlan {
public:
	//! Bind everything to `schema`. Throws StatusError for bad input (unknown column, bad types).
	AggregatePlan(const arrow::Schema &schema, std::vector<AggregateSpec> aggregates, std::vector<std::string> key_names,
	              const std::vector<arrow::compute::Expression> &keys,
	              const std::optional<arrow::compute::Expression> &where);
	~AggregatePlan();
	//! Empty when the native engine can run the plan; otherwise why not (e.g. min over strings),
	//! and the caller should use another engine.
	const std::string &Unsupported() const;
	//! Run it: one row for a global aggregation, one row per group (ordered by the group's first
	//! appearance in the input) with the key columns first otherwise.
	std::shared_ptr<arrow::Table> Execute(const ColumnarInput &input, const ExecOptions &options) const;

private:
	//! The bound plan.
	std::unique_ptr<AggregatePlanImpl> impl_;
};

//! The scheduler a call with `threads` workers runs on: the global one for 0 (or its thread
//! count), otherwise a cached pool of that size.
TaskScheduler &SchedulerFor(int threads);

} // namespace compute
} // namespace sabot
