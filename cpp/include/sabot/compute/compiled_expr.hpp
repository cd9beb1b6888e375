//===----------------------------------------------------------------------===//
// sabot/compute/compiled_expr.hpp
//
// An expression bound to a schema and ready to run per morsel: compiled for the fused evaluator
// when it is in its subset, otherwise evaluated by Arrow (ExecuteScalarExpression).
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/fused_program.hpp"

#include <arrow/compute/expression.h>
#include <arrow/datum.h>
#include <arrow/record_batch.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace sabot {
namespace compute {

//! One expression ready to run: bound, and compiled when it is in the fused subset.
struct CompiledExpr {
	//! The expression bound to the input schema.
	arrow::compute::Expression bound;
	//! Its result type.
	std::shared_ptr<arrow::DataType> type;
	//! The fused program, or nullptr when Arrow evaluates it.
	std::shared_ptr<FusedProgram> fused;
	//! A plain reference to a top-level column: its index (output is the input column itself).
	int passthrough = -1;
};

//! Bind `expr` to `schema` and compile it. Throws StatusError when it does not bind or is not
//! element-wise.
CompiledExpr CompileExpr(const arrow::compute::Expression &expr, const arrow::Schema &schema);
//! CompileExpr for a filter predicate; also throws StatusError when its type is not boolean.
CompiledExpr CompilePredicate(const arrow::compute::Expression &expr, const arrow::Schema &schema);
//! Whether `expr` bound to `schema` runs on the fused evaluator (throws StatusError if it does not bind).
bool IsFused(const arrow::compute::Expression &expr, const arrow::Schema &schema);
//! Append the top-level columns `expr` reads to `out`.
void CollectColumns(const arrow::compute::Expression &expr, const arrow::Schema &schema, std::vector<int> &out);

//! `d` as one array of `length` rows (scalars broadcast, chunks concatenated).
std::shared_ptr<arrow::Array> DatumToArray(const arrow::Datum &d, int64_t length);
//! Evaluate `e` with Arrow over a (sliced or filtered) batch.
std::shared_ptr<arrow::Array> EvaluateGeneric(const CompiledExpr &e, const arrow::RecordBatch &batch);

} // namespace compute
} // namespace sabot
