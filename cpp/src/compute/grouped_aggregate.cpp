#include "sabot/compute/grouped_aggregate.hpp"

#include "sabot/compute/aggregate_finalize.hpp"
#include "sabot/compute/aggregate_update.hpp"
#include "sabot/compute/fused_array.hpp"
#include "sabot/status_error.hpp"

#include <arrow/array/util.h>
#include <arrow/builder.h>
#include <arrow/compute/api_vector.h>
#include <arrow/compute/exec.h>

namespace sabot {
namespace compute {

namespace ac = arrow::compute;

GroupedAggregate::GroupedAggregate(const BoundAggregate &plan, const ColumnarInput &input, int num_workers)
    : AggregateStrategy(plan, input, num_workers) {
	partial_.reserve(num_workers);
	for (int w = 0; w < num_workers; ++w) {
		partial_.push_back(Partial {nullptr, GroupedStates(plan.aggs.size())});
	}
}

std::vector<arrow::Datum> GroupedAggregate::KeyValues(SelectedMorsel &selected, WorkerScratch &ws) const {
	const BatchMorsel &m = selected.Morsel();
	std::vector<arrow::Datum> values;
	for (size_t k = 0; k < plan_.keys.size(); ++k) {
		const CompiledExpr &key = plan_.keys[k];
		std::shared_ptr<arrow::Array> arr;
		if (key.fused && key.passthrough < 0) {
			arr = EvaluateFusedArray(*key.fused, ws.Frame(plan_.KeyFrame(k), *key.fused), selected.Batch(), m, ws);
			if (selected.Mask() && selected.NumSelected() != m.length) {
				arr = ValueOrThrow(ac::Filter(arr, MaskArray(selected.Mask(), m.length))).make_array();
			}
		} else if (key.passthrough >= 0) {
			arr = selected.Rows().column(key.passthrough);
		} else {
			arr = EvaluateGeneric(key, selected.Rows());
		}
		values.emplace_back(std::move(arr));
	}
	return values;
}

void GroupedAggregate::Sink(const BatchMorsel &m, int worker_id) {
	WorkerScratch &ws = scratch_[worker_id];
	Partial &partial = partial_[worker_id];
	SelectedMorsel selected(*input_.batches[m.batch], m, plan_.pred ? &*plan_.pred : nullptr, plan_.PredicateFrame(),
	                        ws);
	if (selected.NumSelected() == 0) {
		return;
	}
	if (!partial.grouper) {
		partial.grouper = ValueOrThrow(ac::Grouper::Make(plan_.key_types));
	}
	// Group ids: one per selected row (compact) and one per morsel row (row-aligned).
	ac::ExecBatch keys_batch(KeyValues(selected, ws), selected.NumSelected());
	arrow::Datum ids = ValueOrThrow(partial.grouper->Consume(ac::ExecSpan(keys_batch)));
	const std::shared_ptr<arrow::Array> ids_array = ids.make_array();
	const uint32_t *ids_compact = ids_array->data()->GetValues<uint32_t>(1);
	partial.states.Resize(partial.grouper->num_groups());
	ws.ids.resize(m.length);
	const uint8_t *mask = selected.Mask();
	const int64_t base = batch_start_[m.batch] + m.offset;
	int64_t k = 0;
	for (int64_t i = 0; i < m.length; ++i) {
		if (mask == nullptr || mask[i]) {
			const uint32_t g = ids_compact[k++];
			ws.ids[i] = g;
			partial.states.SeenAt(g, base + i);
		} else {
			ws.ids[i] = 0;
		}
	}
	for (size_t a = 0; a < plan_.aggs.size(); ++a) {
		UpdateAggregate(plan_.aggs[a], a, selected, ws, AggTarget {partial.states.States(a), ws.ids.data(), ids_compact});
	}
}

std::shared_ptr<arrow::Table> GroupedAggregate::Finalize() {
	// Merge the workers' groups through one grouper: local id -> global id.
	auto global = ValueOrThrow(ac::Grouper::Make(plan_.key_types));
	GroupedStates merged(plan_.aggs.size());
	for (const auto &w : partial_) {
		if (!w.grouper || w.grouper->num_groups() == 0) {
			continue;
		}
		ac::ExecBatch uniques = ValueOrThrow(w.grouper->GetUniques());
		arrow::Datum ids = ValueOrThrow(global->Consume(ac::ExecSpan(uniques)));
		merged.Resize(global->num_groups());
		merged.MergeFrom(w.states, ids.array()->GetValues<uint32_t>(1));
	}
	const uint32_t ngroups = global->num_groups();
	const std::vector<uint32_t> order = merged.FirstAppearanceOrder();
	ac::ExecBatch uniques = ValueOrThrow(global->GetUniques());
	arrow::UInt32Builder order_builder;
	ThrowIfNotOk(order_builder.AppendValues(order));
	std::shared_ptr<arrow::Array> order_array;
	ThrowIfNotOk(order_builder.Finish(&order_array));
	arrow::ArrayVector key_columns;
	for (size_t k = 0; k < plan_.keys.size(); ++k) {
		if (ngroups == 0) {
			key_columns.push_back(ValueOrThrow(arrow::MakeEmptyArray(plan_.keys[k].type)));
		} else {
			key_columns.push_back(
			    ValueOrThrow(ac::Take(DatumToArray(uniques.values[k], ngroups), order_array)).make_array());
		}
	}
	return FinalizeAggregate(plan_, std::move(key_columns), merged, order);
}

} // namespace compute
} // namespace sabot
