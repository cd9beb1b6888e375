//===----------------------------------------------------------------------===//
// sabot/compute/projection.hpp
//
// Projections and filters over columnar input, morsel by morsel on the scheduler, output in
// input order. Fused expressions write straight into the output buffers where they can.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/columnar_input.hpp"
#include "sabot/compute/exec_options.hpp"

#include <arrow/compute/expression.h>
#include <arrow/table.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sabot {
namespace compute {

//! Evaluate each expression over the input (rows where `where` is true when given), in input
//! order, as columns `names`.
std::shared_ptr<arrow::Table> Project(const ColumnarInput &input, const std::vector<std::string> &names,
                                      const std::vector<arrow::compute::Expression> &exprs,
                                      const std::optional<arrow::compute::Expression> &where,
                                      const ExecOptions &options);

//! The input rows where `predicate` is true, in input order.
std::shared_ptr<arrow::Table> Filter(const ColumnarInput &input, const arrow::compute::Expression &predicate,
                                     const ExecOptions &options);

} // namespace compute
} // namespace sabot
