//===----------------------------------------------------------------------===//
// sabot/compute/columnar_executor.hpp
//
// The columnar executor: projections, filters and (grouped) aggregations over Arrow record
// batches, run morsel by morsel on the TaskScheduler. Expressions take the fused path
// (FusedProgram) where they can and Arrow's ExecuteScalarExpression per morsel otherwise. Errors
// are thrown as StatusError. This header gathers the public parts; each lives in its own header.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_plan.hpp"
#include "sabot/compute/aggregate_spec.hpp"
#include "sabot/compute/columnar_input.hpp"
#include "sabot/compute/compiled_expr.hpp"
#include "sabot/compute/exec_options.hpp"
#include "sabot/compute/projection.hpp"
