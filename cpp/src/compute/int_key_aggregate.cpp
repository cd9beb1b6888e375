#include "sabot/compute/int_key_aggregate.hpp"

#include "sabot/compute/aggregate_finalize.hpp"
#include "sabot/compute/array_chunks.hpp"
#include "sabot/compute/bit_util.hpp"
#include "sabot/compute/row_selection.hpp"
#include "sabot/status_error.hpp"

#include <arrow/builder.h>
#include <arrow/compute/cast.h>

#include <algorithm>

namespace sabot {
namespace compute {

IntKeyAggregate::IntKeyAggregate(const BoundAggregate &plan, const ColumnarInput &input, int num_workers)
    : AggregateStrategy(plan, input, num_workers) {
	partial_.reserve(num_workers);
	for (int w = 0; w < num_workers; ++w) {
		partial_.push_back(Partial {IntGroupMap(), GroupedStates(plan.aggs.size())});
	}
}

void IntKeyAggregate::AssignGroups(const ChunkView &k, const int32_t *rows, int64_t count, int64_t first_row,
                                   Partial &partial, uint32_t *ids) const {
	IntGroupMap &map = partial.groups;
	auto assign = [&](auto *keys) {
		for (int64_t j = 0; j < count; ++j) {
			const int32_t i = rows[j];
			const uint32_t g =
			    (k.valid && !k.valid[i]) ? map.NullGroup() : map.FindOrInsert(static_cast<int64_t>(keys[i]));
			ids[i] = g;
			partial.states.SeenAt(g, first_row + i);
		}
	};
	const ValueType key_type = plan_.keys[0].fused->result_type();
	if (key_type == ValueType::kInt64) {
		assign(static_cast<const int64_t *>(k.data));
	} else if (key_type == ValueType::kInt32) {
		assign(static_cast<const int32_t *>(k.data));
	} else {
		assign(static_cast<const uint8_t *>(k.data));
	}
	partial.states.Resize(map.NumGroups());
}

void IntKeyAggregate::UpdateChunk(size_t a, const arrow::RecordBatch &batch, int64_t row, int64_t n,
                                  const uint8_t *sel, const int32_t *rows, int64_t count, WorkerScratch &ws,
                                  Partial &partial) const {
	const AggColumn &agg = plan_.aggs[a];
	const AggKind kind = agg.spec.kind;
	AggState *states = partial.states.States(a);
	const uint32_t *ids = ws.ids.data();
	if (kind == AggKind::kCountAll) {
		UpdateGroupedRows(states, kind, agg.input, nullptr, rows, count, ids);
		return;
	}
	const CompiledExpr &value = *agg.value;
	if (value.fused) {
		ChunkView v = value.fused->Evaluate(ws.Frame(a, *value.fused), batch, row, n, sel);
		if (v.valid == nullptr) {
			// Every value is valid: the selected rows gathered by Sink are the live rows.
			UpdateGroupedRows(states, kind, agg.input, kind == AggKind::kCount ? nullptr : v.data, rows, count, ids);
			return;
		}
		const uint8_t *live = CombineLive(v.valid, sel, n, ws.live.data());
		UpdateGroupedStates(states, kind, agg.input, kind == AggKind::kCount ? nullptr : v.data, live, ids, n);
		return;
	}
	// A generic value in a fused-key plan: Arrow evaluates this chunk's rows.
	auto slice = batch.Slice(row, n);
	auto arr = value.passthrough >= 0 ? slice->column(value.passthrough) : EvaluateGeneric(value, *slice);
	ArrayChunks chunks(arr, kind == AggKind::kCount ? nullptr : agg.cast_to);
	auto [data, valid] = chunks.Get(0, n);
	const uint8_t *live = CombineLive(valid, sel, n, ws.live.data());
	UpdateGroupedStates(states, kind, agg.input, kind == AggKind::kCount ? nullptr : data, live, ids, n);
}

void IntKeyAggregate::Sink(const BatchMorsel &m, int worker_id) {
	const arrow::RecordBatch &batch = *input_.batches[m.batch];
	WorkerScratch &ws = scratch_[worker_id];
	Partial &partial = partial_[worker_id];
	SelectedMorsel selected(batch, m, plan_.pred ? &*plan_.pred : nullptr, plan_.PredicateFrame(), ws);
	if (selected.NumSelected() == 0) {
		return;
	}
	const uint8_t *mask = selected.Mask();
	const FusedProgram &key_program = *plan_.keys[0].fused;
	FusedFrame &key_frame = ws.Frame(plan_.KeyFrame(0), key_program);
	ws.ids.resize(kChunkRows);
	ws.live.resize(kChunkRows);
	const int64_t base = batch_start_[m.batch] + m.offset;
	for (int64_t r = 0; r < m.length; r += kChunkRows) {
		const int64_t n = std::min(kChunkRows, m.length - r);
		const uint8_t *sel = mask ? mask + r : nullptr;
		if (sel && CountNonZero(sel, n) == 0) {
			continue;
		}
		ChunkView k = key_program.Evaluate(key_frame, batch, m.offset + r, n, sel);
		// The selected rows, gathered branch-free (a sparse filter would mispredict a branch).
		int32_t rows[kChunkRows];
		int64_t count = 0;
		for (int64_t i = 0; i < n; ++i) {
			rows[count] = static_cast<int32_t>(i);
			count += sel == nullptr || sel[i];
		}
		AssignGroups(k, rows, count, base + r, partial, ws.ids.data());
		for (size_t a = 0; a < plan_.aggs.size(); ++a) {
			UpdateChunk(a, batch, m.offset + r, n, sel, rows, count, ws, partial);
		}
	}
}

std::shared_ptr<arrow::Table> IntKeyAggregate::Finalize() {
	IntGroupMap global;
	GroupedStates merged(plan_.aggs.size());
	std::vector<uint32_t> map;
	for (const auto &w : partial_) {
		const IntGroupMap &local = w.groups;
		map.resize(local.NumGroups());
		for (uint32_t g = 0; g < local.NumGroups(); ++g) {
			map[g] = local.IsNull(g) ? global.NullGroup() : global.FindOrInsert(local.Key(g));
		}
		merged.Resize(global.NumGroups());
		merged.MergeFrom(w.states, map.data());
	}
	const std::vector<uint32_t> order = merged.FirstAppearanceOrder();
	arrow::Int64Builder keys;
	ThrowIfNotOk(keys.Reserve(static_cast<int64_t>(order.size())));
	for (uint32_t g : order) {
		if (global.IsNull(g)) {
			keys.UnsafeAppendNull();
		} else {
			keys.UnsafeAppend(global.Key(g));
		}
	}
	std::shared_ptr<arrow::Array> key_array;
	ThrowIfNotOk(keys.Finish(&key_array));
	const auto &key_type = plan_.keys[0].type;
	if (!key_type->Equals(*key_array->type())) {
		key_array = ValueOrThrow(
		    arrow::compute::Cast(*key_array, key_type, arrow::compute::CastOptions::Unsafe(key_type)));
	}
	return FinalizeAggregate(plan_, {std::move(key_array)}, merged, order);
}

} // namespace compute
} // namespace sabot
