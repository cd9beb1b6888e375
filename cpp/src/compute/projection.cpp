#include "sabot/compute/projection.hpp"

#include "sabot/compute/batch_morsel.hpp"
#include "sabot/compute/bit_util.hpp"
#include "sabot/compute/compiled_expr.hpp"
#include "sabot/compute/fused_array.hpp"
#include "sabot/compute/row_selection.hpp"
#include "sabot/compute/worker_scratch.hpp"
#include "sabot/status_error.hpp"
#include "sabot/task_scheduler.hpp"

#include <arrow/array/concatenate.h>
#include <arrow/array/util.h>
#include <arrow/buffer.h>

#include <algorithm>
#include <atomic>
#include <cstring>

namespace sabot {
namespace compute {

namespace ac = arrow::compute;

namespace {

std::shared_ptr<arrow::Array> ConcatPieces(const std::vector<std::shared_ptr<arrow::Array>> &pieces,
                                           const std::shared_ptr<arrow::DataType> &type) {
	arrow::ArrayVector nonempty;
	for (const auto &p : pieces) {
		if (p && p->length() > 0) {
			nonempty.push_back(p);
		}
	}
	if (nonempty.empty()) {
		return ValueOrThrow(arrow::MakeEmptyArray(type));
	}
	if (nonempty.size() == 1) {
		return nonempty[0];
	}
	return ValueOrThrow(arrow::Concatenate(nonempty));
}

//! The output buffers of one fused column over one batch, written in place by every morsel.
struct DirectOut {
	//! Values (bit-packed for booleans).
	std::shared_ptr<arrow::ResizableBuffer> values;
	//! Validity bits.
	std::shared_ptr<arrow::ResizableBuffer> validity;
	//! Nulls written so far.
	std::atomic<int64_t> nulls {0};
};

//! One Project call: compiled columns, per-worker scratch and the outputs of every morsel.
class Projection {
public:
	Projection(const ColumnarInput &input, const std::vector<std::string> &names,
	           const std::vector<ac::Expression> &exprs, const std::optional<ac::Expression> &where,
	           const ExecOptions &options);
	//! Run every morsel, then assemble one output batch per input batch.
	std::shared_ptr<arrow::Table> Run(const ExecOptions &options);

private:
	//! Allocate the in-place outputs of fused columns (no predicate only).
	void AllocateDirect();
	//! Without a predicate: fused columns in place, others per morsel.
	void SinkAll(size_t mi, const BatchMorsel &m, WorkerScratch &scratch);
	//! Fused column `c` of morsel `m` into its batch's output buffers.
	void WriteDirect(size_t c, const BatchMorsel &m, WorkerScratch &scratch);
	//! With a predicate: the selected rows of every column, per morsel.
	void SinkSelected(size_t mi, const BatchMorsel &m, WorkerScratch &scratch);
	//! Fused column `c` over the selected rows of a morsel, compacted.
	std::shared_ptr<arrow::Array> CompactFused(size_t c, SelectedMorsel &selected, WorkerScratch &scratch);
	//! Column `c` of batch `b` from morsels [first, last).
	std::shared_ptr<arrow::Array> AssembleColumn(size_t c, size_t b, size_t first, size_t last);

	const ColumnarInput &input_;
	std::vector<CompiledExpr> cols_;
	std::shared_ptr<arrow::Schema> out_schema_;
	std::optional<CompiledExpr> pred_;
	std::vector<BatchMorsel> morsels_;
	//! direct_[c * batches + b]: in-place outputs of fused column c over batch b (no predicate).
	std::vector<std::unique_ptr<DirectOut>> direct_;
	//! pieces_[c][morsel]: outputs built per morsel, concatenated per batch.
	std::vector<std::vector<std::shared_ptr<arrow::Array>>> pieces_;
	std::vector<WorkerScratch> scratch_;
};

Projection::Projection(const ColumnarInput &input, const std::vector<std::string> &names,
                       const std::vector<ac::Expression> &exprs, const std::optional<ac::Expression> &where,
                       const ExecOptions &options)
    : input_(input) {
	if (names.size() != exprs.size()) {
		throw StatusError(arrow::Status::Invalid("project: ", names.size(), " names for ", exprs.size(), " expressions"));
	}
	const arrow::Schema &schema = *input.schema;
	std::vector<int> read_columns;
	arrow::FieldVector fields;
	for (size_t i = 0; i < exprs.size(); ++i) {
		cols_.push_back(CompileExpr(exprs[i], schema));
		CollectColumns(exprs[i], schema, read_columns);
		fields.push_back(arrow::field(names[i], cols_.back().type));
	}
	out_schema_ = arrow::schema(fields);
	if (where) {
		pred_ = CompilePredicate(*where, schema);
		CollectColumns(*where, schema, read_columns);
	}
	input.WarmNullCounts();
	morsels_ = PlanBatchMorsels(input, read_columns, options.morsel_bytes);
	if (!pred_) {
		AllocateDirect();
	}
	pieces_.assign(cols_.size(), std::vector<std::shared_ptr<arrow::Array>>(morsels_.size()));
}

void Projection::AllocateDirect() {
	const size_t nbatches = input_.batches.size();
	direct_.resize(cols_.size() * nbatches);
	for (size_t c = 0; c < cols_.size(); ++c) {
		if (!cols_[c].fused || cols_[c].passthrough >= 0) {
			continue;
		}
		const ValueType t = cols_[c].fused->result_type();
		for (size_t b = 0; b < nbatches; ++b) {
			const int64_t rows = input_.batches[b]->num_rows();
			auto d = std::make_unique<DirectOut>();
			const int64_t value_bytes = t == ValueType::kBool ? (rows + 7) / 8 : rows * RegisterWidth(t);
			d->values = ValueOrThrow(arrow::AllocateResizableBuffer(value_bytes));
			d->validity = ValueOrThrow(arrow::AllocateResizableBuffer((rows + 7) / 8));
			direct_[c * nbatches + b] = std::move(d);
		}
	}
}

void Projection::WriteDirect(size_t c, const BatchMorsel &m, WorkerScratch &ws) {
	static const std::vector<uint8_t> kOnes(kChunkRows, 1);
	const CompiledExpr &col = cols_[c];
	const arrow::RecordBatch &batch = *input_.batches[m.batch];
	DirectOut &out = *direct_[c * input_.batches.size() + m.batch];
	FusedFrame &frame = ws.Frame(c, *col.fused);
	const ValueType t = col.fused->result_type();
	const int width = RegisterWidth(t);
	int64_t nulls = 0;
	for (int64_t r = 0; r < m.length; r += kChunkRows) {
		const int64_t n = std::min(kChunkRows, m.length - r);
		const int64_t row = m.offset + r;
		ChunkView v = col.fused->Evaluate(frame, batch, row, n, nullptr);
		if (t == ValueType::kBool) {
			PackBits(static_cast<const uint8_t *>(v.data), n, out.values->mutable_data(), row);
		} else {
			std::memcpy(out.values->mutable_data() + row * width, v.data, n * width);
		}
		if (v.valid) {
			PackBits(v.valid, n, out.validity->mutable_data(), row);
			nulls += n - CountNonZero(v.valid, n);
		} else {
			PackBits(kOnes.data(), n, out.validity->mutable_data(), row);
		}
	}
	if (nulls) {
		out.nulls.fetch_add(nulls, std::memory_order_relaxed);
	}
}

void Projection::SinkAll(size_t mi, const BatchMorsel &m, WorkerScratch &ws) {
	std::shared_ptr<arrow::RecordBatch> slice;
	for (size_t c = 0; c < cols_.size(); ++c) {
		const CompiledExpr &col = cols_[c];
		if (col.passthrough >= 0) {
			continue;
		}
		if (col.fused) {
			WriteDirect(c, m, ws);
			continue;
		}
		if (!slice) {
			slice = input_.batches[m.batch]->Slice(m.offset, m.length);
		}
		pieces_[c][mi] = EvaluateGeneric(col, *slice);
	}
}

std::shared_ptr<arrow::Array> Projection::CompactFused(size_t c, SelectedMorsel &selected, WorkerScratch &ws) {
	const CompiledExpr &col = cols_[c];
	const BatchMorsel &m = selected.Morsel();
	const int64_t nsel = selected.NumSelected();
	FusedFrame &frame = ws.Frame(c, *col.fused);
	const ValueType t = col.fused->result_type();
	const int width = RegisterWidth(t);
	std::vector<uint8_t> values(nsel * width);
	std::vector<uint8_t> valid(nsel);
	bool any_null = false;
	int64_t k = 0;
	for (int64_t r = 0; r < m.length; r += kChunkRows) {
		const int64_t n = std::min(kChunkRows, m.length - r);
		const uint8_t *sel = selected.Mask() + r;
		if (CountNonZero(sel, n) == 0) {
			continue;
		}
		ChunkView v = col.fused->Evaluate(frame, selected.Batch(), m.offset + r, n, sel);
		any_null |= v.valid != nullptr;
		k += CompactSelected(static_cast<const uint8_t *>(v.data), v.valid, sel, n, width, values.data() + k * width,
		                     valid.data() + k);
	}
	return ArrayFromBytes(t, values.data(), any_null ? valid.data() : nullptr, nsel);
}

void Projection::SinkSelected(size_t mi, const BatchMorsel &m, WorkerScratch &ws) {
	SelectedMorsel selected(*input_.batches[m.batch], m, &*pred_, cols_.size(), ws);
	if (selected.NumSelected() == 0) {
		return;
	}
	for (size_t c = 0; c < cols_.size(); ++c) {
		const CompiledExpr &col = cols_[c];
		if (col.fused && col.passthrough < 0) {
			pieces_[c][mi] = CompactFused(c, selected, ws);
		} else if (col.passthrough >= 0) {
			pieces_[c][mi] = selected.Rows().column(col.passthrough);
		} else {
			pieces_[c][mi] = EvaluateGeneric(col, selected.Rows());
		}
	}
}

std::shared_ptr<arrow::Array> Projection::AssembleColumn(size_t c, size_t b, size_t first, size_t last) {
	const auto &batch = input_.batches[b];
	if (!pred_ && cols_[c].passthrough >= 0) {
		return batch->column(cols_[c].passthrough);
	}
	if (!pred_ && cols_[c].fused) {
		DirectOut &out = *direct_[c * input_.batches.size() + b];
		const int64_t nulls = out.nulls.load();
		return arrow::MakeArray(
		    arrow::ArrayData::Make(cols_[c].type, batch->num_rows(), {nulls ? out.validity : nullptr, out.values}, nulls));
	}
	std::vector<std::shared_ptr<arrow::Array>> parts(pieces_[c].begin() + first, pieces_[c].begin() + last);
	return ConcatPieces(parts, cols_[c].type);
}

std::shared_ptr<arrow::Table> Projection::Run(const ExecOptions &options) {
	TaskScheduler &scheduler = SchedulerFor(options.threads);
	scratch_.resize(scheduler.NumThreads());
	scheduler.ParallelFor(
	    morsels_.size(),
	    [&](size_t mi, int worker) {
		    if (pred_) {
			    SinkSelected(mi, morsels_[mi], scratch_[worker]);
		    } else {
			    SinkAll(mi, morsels_[mi], scratch_[worker]);
		    }
	    },
	    options.cancel);
	// One output batch per input batch, in input order.
	std::vector<std::shared_ptr<arrow::RecordBatch>> out_batches;
	size_t mi = 0;
	for (size_t b = 0; b < input_.batches.size(); ++b) {
		const size_t first = mi;
		while (mi < morsels_.size() && morsels_[mi].batch == static_cast<int>(b)) {
			++mi;
		}
		arrow::ArrayVector columns;
		int64_t length = cols_.empty() ? (pred_ ? 0 : input_.batches[b]->num_rows()) : -1;
		for (size_t c = 0; c < cols_.size(); ++c) {
			columns.push_back(AssembleColumn(c, b, first, mi));
			length = columns.back()->length();
		}
		if (length > 0) {
			out_batches.push_back(arrow::RecordBatch::Make(out_schema_, length, std::move(columns)));
		}
	}
	return ValueOrThrow(arrow::Table::FromRecordBatches(out_schema_, out_batches));
}

} // namespace

std::shared_ptr<arrow::Table> Project(const ColumnarInput &input, const std::vector<std::string> &names,
                                      const std::vector<ac::Expression> &exprs,
                                      const std::optional<ac::Expression> &where, const ExecOptions &options) {
	return Projection(input, names, exprs, where, options).Run(options);
}

std::shared_ptr<arrow::Table> Filter(const ColumnarInput &input, const ac::Expression &predicate,
                                     const ExecOptions &options) {
	std::vector<std::string> names;
	std::vector<ac::Expression> exprs;
	for (const auto &f : input.schema->fields()) {
		names.push_back(f->name());
		exprs.push_back(ac::field_ref(f->name()));
	}
	// Duplicate column names cannot be referenced by name; fall back to positional refs.
	for (int i = 0; i < input.schema->num_fields(); ++i) {
		if (input.schema->GetFieldIndex(names[i]) != i) {
			exprs[i] = ac::field_ref(arrow::FieldRef(i));
		}
	}
	return Project(input, names, exprs, predicate, options);
}

} // namespace compute
} // namespace sabot
