//===----------------------------------------------------------------------===//
// sabot/compute/bound_aggregate.hpp
//
// An aggregation bound to its input schema: keys, predicate and aggregates compiled, value
// domains chosen. It is what every aggregate strategy reads.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_spec.hpp"
#include "sabot/compute/aggregate_state.hpp"
#include "sabot/compute/compiled_expr.hpp"

#include <arrow/compute/expression.h>
#include <arrow/type.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sabot {
namespace compute {

//! One aggregate bound to the schema.
struct AggColumn {
	//! What was asked for.
	AggregateSpec spec;
	//! The compiled value (absent for count_all).
	std::optional<CompiledExpr> value;
	//! The domain the values accumulate in.
	AccumInput input = AccumInput::kInt64;
	//! The type the value array is cast to first, or nullptr.
	std::shared_ptr<arrow::DataType> cast_to;
	//! The value's type (int64 for count_all).
	std::shared_ptr<arrow::DataType> input_type;
};

//! A bound aggregation. Fused frame slots of one worker: aggregate a uses slot a, the predicate
//! PredicateFrame(), key k KeyFrame(k).
struct BoundAggregate {
	//! Bind everything to `schema`. Throws StatusError for bad input (unknown column, bad types);
	//! what binds but the native engine cannot run is recorded in `unsupported`.
	static std::unique_ptr<BoundAggregate> Bind(const arrow::Schema &schema, std::vector<AggregateSpec> aggregates,
	                                            std::vector<std::string> key_names,
	                                            const std::vector<arrow::compute::Expression> &keys,
	                                            const std::optional<arrow::compute::Expression> &where);

	//! The aggregates, in output order.
	std::vector<AggColumn> aggs;
	//! Names of the key columns.
	std::vector<std::string> key_names;
	//! The compiled keys (empty for a global aggregation).
	std::vector<CompiledExpr> keys;
	//! Types of the keys (for Arrow's Grouper).
	std::vector<arrow::TypeHolder> key_types;
	//! The compiled predicate, if any.
	std::optional<CompiledExpr> pred;
	//! Columns any expression reads (morsels are sized from them).
	std::vector<int> read_columns;
	//! Empty, or why the native engine cannot run this plan.
	std::string unsupported;

	//! True when there are keys.
	bool Grouped() const {
		return !keys.empty();
	}
	//! Frame slot of the predicate.
	size_t PredicateFrame() const {
		return aggs.size();
	}
	//! Frame slot of key `k`.
	size_t KeyFrame(size_t k) const {
		return aggs.size() + 1 + k;
	}
};

} // namespace compute
} // namespace sabot
