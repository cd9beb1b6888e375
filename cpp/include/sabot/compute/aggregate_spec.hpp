//===----------------------------------------------------------------------===//
// sabot/compute/aggregate_spec.hpp
//
// What one output aggregate of an aggregation is: name, function and value expression.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_state.hpp"

#include <arrow/compute/expression.h>

#include <optional>
#include <string>

namespace sabot {
namespace compute {

//! One output aggregate: `kind` over `value` (absent for count_all), named `name`.
struct AggregateSpec {
	//! Output column name.
	std::string name;
	//! The function.
	AggKind kind = AggKind::kCount;
	//! The aggregated expression (not used by count_all).
	std::optional<arrow::compute::Expression> value;
};

} // namespace compute
} // namespace sabot
