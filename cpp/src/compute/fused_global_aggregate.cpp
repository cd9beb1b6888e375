#include "sabot/compute/fused_global_aggregate.hpp"

#include "sabot/compute/row_selection.hpp"

#include <algorithm>

namespace sabot {
namespace compute {

FusedGlobalAggregate::FusedGlobalAggregate(const BoundAggregate &plan, const ColumnarInput &input, int num_workers)
    : GlobalAggregate(plan, input, num_workers) {
}

const uint8_t *FusedGlobalAggregate::SelectChunk(const arrow::RecordBatch &batch, int64_t row, int64_t n,
                                                 WorkerScratch &ws) const {
	if (!plan_.pred) {
		return nullptr;
	}
	const FusedProgram &program = *plan_.pred->fused;
	ChunkView pv = program.Evaluate(ws.Frame(plan_.PredicateFrame(), program), batch, row, n, nullptr);
	const uint8_t *pval = static_cast<const uint8_t *>(pv.data);
	if (!pv.valid) {
		return pval;
	}
	for (int64_t i = 0; i < n; ++i) {
		ws.mask[i] = pval[i] & pv.valid[i];
	}
	return ws.mask.data();
}

void FusedGlobalAggregate::Sink(const BatchMorsel &m, int worker_id) {
	const arrow::RecordBatch &batch = *input_.batches[m.batch];
	WorkerScratch &ws = scratch_[worker_id];
	std::vector<AggState> &states = partial_[worker_id];
	ws.live.resize(kChunkRows);
	ws.mask.resize(kChunkRows);
	for (int64_t r = 0; r < m.length; r += kChunkRows) {
		const int64_t n = std::min(kChunkRows, m.length - r);
		const uint8_t *sel = SelectChunk(batch, m.offset + r, n, ws);
		for (size_t a = 0; a < plan_.aggs.size(); ++a) {
			const AggColumn &agg = plan_.aggs[a];
			const AggKind kind = agg.spec.kind;
			if (kind == AggKind::kCountAll) {
				UpdateState(states[a], kind, agg.input, nullptr, sel, n);
				continue;
			}
			const FusedProgram &program = *agg.value->fused;
			ChunkView v = program.Evaluate(ws.Frame(a, program), batch, m.offset + r, n, sel);
			const uint8_t *live = CombineLive(v.valid, sel, n, ws.live.data());
			UpdateState(states[a], kind, agg.input, kind == AggKind::kCount ? nullptr : v.data, live, n);
		}
	}
}

} // namespace compute
} // namespace sabot
