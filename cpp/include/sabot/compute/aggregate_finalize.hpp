//===----------------------------------------------------------------------===//
// sabot/compute/aggregate_finalize.hpp
//
// The step every aggregate strategy ends with: merged partial states to the result table.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_state.hpp"
#include "sabot/compute/bound_aggregate.hpp"
#include "sabot/compute/grouped_states.hpp"

#include <arrow/table.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace sabot {
namespace compute {

//! The result of `plan`: the key columns (one per key of the plan, rows already in output order)
//! first, then one column per aggregate from `states` of the groups in `order`.
std::shared_ptr<arrow::Table> FinalizeAggregate(const BoundAggregate &plan, arrow::ArrayVector key_columns,
                                                const GroupedStates &states, const std::vector<uint32_t> &order);
//! The one-row result of a global aggregation from the workers' partials (one AggState per
//! aggregate each; a worker that ran no morsel may have none).
std::shared_ptr<arrow::Table> FinalizeGlobalAggregate(const BoundAggregate &plan,
                                                      const std::vector<std::vector<AggState>> &partials);

} // namespace compute
} // namespace sabot
