#include "sabot/compute/aggregate_update.hpp"

#include "sabot/compute/array_chunks.hpp"
#include "sabot/compute/bit_util.hpp"

#include <algorithm>

namespace sabot {
namespace compute {

namespace {

//! Fold n values into the target; ids[offset..offset + n) are their group ids (grouped only).
inline void Fold(const AggTarget &target, AggKind kind, AccumInput input, const void *data, const uint8_t *live,
                 const uint32_t *ids, int64_t offset, int64_t n) {
	if (target.row_ids) {
		UpdateGroupedStates(target.states, kind, input, data, live, ids + offset, n);
	} else {
		UpdateState(*target.states, kind, input, data, live, n);
	}
}

} // namespace

void UpdateAggregate(const AggColumn &agg, size_t frame_index, SelectedMorsel &morsel, WorkerScratch &scratch,
                     const AggTarget &target) {
	const AggKind kind = agg.spec.kind;
	const BatchMorsel &m = morsel.Morsel();
	const uint8_t *mask = morsel.Mask();
	scratch.live.resize(kChunkRows);
	if (kind == AggKind::kCountAll) {
		for (int64_t r = 0; r < m.length; r += kChunkRows) {
			const int64_t n = std::min(kChunkRows, m.length - r);
			Fold(target, kind, agg.input, nullptr, mask ? mask + r : nullptr, target.row_ids, r, n);
		}
		return;
	}
	const CompiledExpr &value = *agg.value;
	if (value.fused && !agg.cast_to) {
		FusedFrame &frame = scratch.Frame(frame_index, *value.fused);
		for (int64_t r = 0; r < m.length; r += kChunkRows) {
			const int64_t n = std::min(kChunkRows, m.length - r);
			const uint8_t *sel = mask ? mask + r : nullptr;
			if (sel && CountNonZero(sel, n) == 0) {
				continue;
			}
			ChunkView v = value.fused->Evaluate(frame, morsel.Batch(), m.offset + r, n, sel);
			const uint8_t *live = CombineLive(v.valid, sel, n, scratch.live.data());
			Fold(target, kind, agg.input, kind == AggKind::kCount ? nullptr : v.data, live, target.row_ids, r, n);
		}
		return;
	}
	// Arrow evaluates over the selected rows; selected_ids is aligned with them.
	const arrow::RecordBatch &rows = morsel.Rows();
	auto arr = value.passthrough >= 0 ? rows.column(value.passthrough) : EvaluateGeneric(value, rows);
	ArrayChunks chunks(arr, kind == AggKind::kCount ? nullptr : agg.cast_to);
	const int64_t len = chunks.Length();
	for (int64_t r = 0; r < len; r += kChunkRows) {
		const int64_t n = std::min(kChunkRows, len - r);
		auto [data, valid] = chunks.Get(r, n);
		Fold(target, kind, agg.input, kind == AggKind::kCount ? nullptr : data, valid, target.selected_ids, r, n);
	}
}

} // namespace compute
} // namespace sabot
