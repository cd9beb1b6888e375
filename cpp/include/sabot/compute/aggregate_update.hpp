//===----------------------------------------------------------------------===//
// sabot/compute/aggregate_update.hpp
//
// Folding one aggregate over the selected rows of a morsel into a global state or per-group
// states: count_all from the selection, fused values chunk by chunk, other values by Arrow over
// the selected rows. Shared by the strategies that select rows before aggregating.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/aggregate_state.hpp"
#include "sabot/compute/bound_aggregate.hpp"
#include "sabot/compute/row_selection.hpp"
#include "sabot/compute/worker_scratch.hpp"

#include <cstddef>
#include <cstdint>

namespace sabot {
namespace compute {

//! Where the updates of one aggregate go.
struct AggTarget {
	//! The global state (row_ids == nullptr), or the states of every group.
	AggState *states = nullptr;
	//! Group id of every morsel row (rows not selected: any id), or nullptr for a global target.
	const uint32_t *row_ids = nullptr;
	//! Group id of every selected row, in row order (grouped only).
	const uint32_t *selected_ids = nullptr;
};

//! Fold aggregate `agg` (fused frame slot `frame_index`) over the selected rows of `morsel`.
void UpdateAggregate(const AggColumn &agg, size_t frame_index, SelectedMorsel &morsel, WorkerScratch &scratch,
                     const AggTarget &target);

} // namespace compute
} // namespace sabot
