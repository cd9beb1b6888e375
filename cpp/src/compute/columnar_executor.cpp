#include "sabot/compute/columnar_executor.hpp"

#include "sabot/compute/bit_util.hpp"
#include "sabot/compute/fused_program.hpp"
#include "sabot/status_error.hpp"
#include "sabot/task_scheduler.hpp"

#include <arrow/array.h>
#include <arrow/array/concatenate.h>
#include <arrow/array/util.h>
#include <arrow/buffer.h>
#include <arrow/builder.h>
#include <arrow/compute/api_vector.h>
#include <arrow/compute/cast.h>
#include <arrow/compute/exec.h>
#include <arrow/compute/row/grouper.h>
#include <arrow/util/byte_size.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>

namespace sabot {
namespace compute {

namespace ac = arrow::compute;

ColumnarInput ColumnarInput::FromReader(arrow::RecordBatchReader &reader) {
	ColumnarInput input;
	input.schema = reader.schema();
	while (true) {
		std::shared_ptr<arrow::RecordBatch> batch;
		ThrowIfNotOk(reader.ReadNext(&batch));
		if (!batch) {
			break;
		}
		if (batch->num_rows() > 0) {
			input.batches.push_back(std::move(batch));
		}
	}
	return input;
}

TaskScheduler &SchedulerFor(int threads) {
	TaskScheduler &global = TaskScheduler::Global();
	if (threads <= 0 || threads == global.NumThreads()) {
		return global;
	}
	static std::mutex lock;
	static std::map<int, std::unique_ptr<TaskScheduler>> pools;
	std::lock_guard<std::mutex> guard(lock);
	auto &pool = pools[threads];
	if (!pool) {
		TaskSchedulerOptions options;
		options.threads = threads;
		pool = std::make_unique<TaskScheduler>(std::move(options));
	}
	return *pool;
}

namespace {

//===--------------------------------------------------------------------===//
// Planning helpers
//===--------------------------------------------------------------------===//

//! One expression ready to run: bound, and compiled when it is in the fused subset.
struct CompiledExpr {
	ac::Expression bound;
	std::shared_ptr<arrow::DataType> type;
	std::shared_ptr<FusedProgram> fused;
	//! A plain reference to a top-level column: its index (output is the input column itself).
	int passthrough = -1;
};

CompiledExpr CompileExpr(const ac::Expression &expr, const arrow::Schema &schema) {
	CompiledExpr c;
	c.bound = ValueOrThrow(expr.Bind(schema));
	if (!c.bound.IsScalarExpression()) {
		throw StatusError(arrow::Status::Invalid("expression ", expr.ToString(),
		                                         " is not element-wise (only scalar functions are accepted)"));
	}
	c.type = c.bound.type()->GetSharedPtr();
	if (const arrow::FieldRef *ref = c.bound.field_ref()) {
		auto path = ref->FindOne(schema);
		if (path.ok() && path->indices().size() == 1) {
			c.passthrough = path->indices()[0];
		}
	}
	c.fused = FusedProgram::Compile(c.bound, schema);
	return c;
}

//! Columns an expression reads (all of them when it reads none, e.g. count_all).
void CollectColumns(const ac::Expression &expr, const arrow::Schema &schema, std::vector<int> &out) {
	for (const arrow::FieldRef &ref : ac::FieldsInExpression(expr)) {
		auto path = ref.FindOne(schema);
		if (path.ok() && !path->indices().empty()) {
			out.push_back(path->indices()[0]);
		}
	}
}

//! Bytes the given columns of `batch` really reference.
int64_t BatchBytes(const arrow::RecordBatch &batch, std::vector<int> columns) {
	if (columns.empty()) {
		columns.resize(batch.num_columns());
		std::iota(columns.begin(), columns.end(), 0);
	}
	std::sort(columns.begin(), columns.end());
	columns.erase(std::unique(columns.begin(), columns.end()), columns.end());
	int64_t total = 0;
	for (int i : columns) {
		const auto &data = batch.column_data(i);
		const int bits = data->type->bit_width();
		if (bits > 0 && data->type->id() != arrow::Type::DICTIONARY) {
			total += (data->length * bits + 7) / 8;
			if (data->buffers[0]) {
				total += (data->length + 7) / 8;
			}
		} else {
			total += ValueOrThrow(arrow::util::ReferencedBufferSize(*data));
		}
	}
	return total;
}

//! A row range of one batch.
struct MorselRef {
	int batch;
	int64_t offset;
	int64_t length;
};

//! Split every batch into morsels of about options.morsel_bytes of the referenced columns.
//! Offsets stay multiples of 8 rows so output bitmaps of different morsels never share a byte.
std::vector<MorselRef> PlanAll(const ColumnarInput &input, const std::vector<int> &columns, int64_t morsel_bytes) {
	std::vector<MorselRef> morsels;
	for (size_t b = 0; b < input.batches.size(); ++b) {
		const auto &batch = *input.batches[b];
		const int64_t rows = batch.num_rows();
		int64_t per = RowsPerMorsel(rows, BatchBytes(batch, columns), morsel_bytes);
		per = std::max<int64_t>(8, per - per % 8);
		for (int64_t off = 0; off < rows; off += per) {
			morsels.push_back(MorselRef {static_cast<int>(b), off, std::min(per, rows - off)});
		}
	}
	return morsels;
}

//! Make null counts known on the calling thread, so workers only read them.
void WarmNullCounts(const ColumnarInput &input) {
	for (const auto &batch : input.batches) {
		for (int i = 0; i < batch->num_columns(); ++i) {
			batch->column(i)->null_count();
		}
	}
}

std::shared_ptr<arrow::Array> DatumToArray(const arrow::Datum &d, int64_t length) {
	if (d.is_array()) {
		return d.make_array();
	}
	if (d.is_scalar()) {
		return ValueOrThrow(arrow::MakeArrayFromScalar(*d.scalar(), length));
	}
	if (d.is_chunked_array()) {
		return ValueOrThrow(arrow::Concatenate(d.chunked_array()->chunks()));
	}
	throw StatusError(arrow::Status::Invalid("expression produced ", d.ToString(), ", expected an array"));
}

//! Generic path: evaluate with Arrow over a (sliced or filtered) batch.
std::shared_ptr<arrow::Array> EvaluateGeneric(const CompiledExpr &e, const arrow::RecordBatch &batch) {
	ac::ExecBatch exec(batch);
	arrow::Datum d = ValueOrThrow(ac::ExecuteScalarExpression(e.bound, exec));
	return DatumToArray(d, batch.num_rows());
}

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

//! Per-worker scratch: fused frames (one per program) and byte buffers.
struct WorkerScratch {
	std::vector<std::unique_ptr<FusedFrame>> frames;
	std::vector<uint8_t> mask;
	std::vector<uint8_t> bytes;
	std::vector<uint8_t> live;
	std::vector<uint32_t> ids;

	FusedFrame &Frame(size_t i, const FusedProgram &program) {
		if (frames.size() <= i) {
			frames.resize(i + 1);
		}
		if (!frames[i]) {
			frames[i] = std::make_unique<FusedFrame>(program);
		}
		return *frames[i];
	}
};

//! live[i] = valid[i] & sel[i]; returns nullptr when both are absent (every row counts).
const uint8_t *CombineLive(const uint8_t *valid, const uint8_t *sel, int64_t n, uint8_t *buf) {
	if (valid == nullptr) {
		return sel;
	}
	if (sel == nullptr) {
		return valid;
	}
	for (int64_t i = 0; i < n; ++i) {
		buf[i] = valid[i] & sel[i];
	}
	return buf;
}

//! The selection of one morsel as bytes (1 = row kept), from a boolean predicate.
int64_t ComputeMask(const CompiledExpr &pred, size_t frame_index, const arrow::RecordBatch &batch, const MorselRef &m,
                    WorkerScratch &scratch) {
	scratch.mask.resize(m.length);
	uint8_t *mask = scratch.mask.data();
	if (pred.fused) {
		FusedFrame &frame = scratch.Frame(frame_index, *pred.fused);
		for (int64_t r = 0; r < m.length; r += kChunkRows) {
			const int64_t n = std::min(kChunkRows, m.length - r);
			ChunkView v = pred.fused->Evaluate(frame, batch, m.offset + r, n, nullptr);
			const uint8_t *val = static_cast<const uint8_t *>(v.data);
			if (v.valid) {
				for (int64_t i = 0; i < n; ++i) {
					mask[r + i] = val[i] & v.valid[i];
				}
			} else {
				std::memcpy(mask + r, val, n);
			}
		}
	} else {
		auto slice = batch.Slice(m.offset, m.length);
		auto arr = EvaluateGeneric(pred, *slice);
		const auto &d = *arr->data();
		UnpackBits(d.buffers[1]->data(), d.offset, m.length, mask);
		if (d.MayHaveNulls() && d.buffers[0]) {
			scratch.bytes.resize(m.length);
			UnpackBits(d.buffers[0]->data(), d.offset, m.length, scratch.bytes.data());
			for (int64_t i = 0; i < m.length; ++i) {
				mask[i] &= scratch.bytes[i];
			}
		}
	}
	return CountNonZero(mask, m.length);
}

std::shared_ptr<arrow::BooleanArray> MaskArray(const uint8_t *mask, int64_t n) {
	auto bits = ValueOrThrow(arrow::AllocateBuffer((n + 7) / 8));
	std::memset(bits->mutable_data(), 0, bits->size());
	PackBits(mask, n, bits->mutable_data(), 0);
	return std::make_shared<arrow::BooleanArray>(n, std::move(bits));
}

//! Copy the selected rows of one chunk (values of `width` bytes) to dst[k..], validity bytes to vdst.
template <int W>
int64_t CompactChunk(const uint8_t *src, const uint8_t *valid, const uint8_t *mask, int64_t n, uint8_t *dst,
                     uint8_t *vdst) {
	int64_t k = 0;
	for (int64_t i = 0; i < n; ++i) {
		if (mask[i]) {
			std::memcpy(dst + k * W, src + i * W, W);
			vdst[k] = valid ? valid[i] : 1;
			++k;
		}
	}
	return k;
}

//! Build an Arrow array from `n` register values (booleans as bytes) and validity bytes.
std::shared_ptr<arrow::Array> ArrayFromBytes(ValueType t, const uint8_t *values, const uint8_t *valid, int64_t n) {
	const int width = RegisterWidth(t);
	std::shared_ptr<arrow::Buffer> data;
	if (t == ValueType::kBool) {
		auto bits = ValueOrThrow(arrow::AllocateBuffer((n + 7) / 8));
		std::memset(bits->mutable_data(), 0, bits->size());
		PackBits(values, n, bits->mutable_data(), 0);
		data = std::move(bits);
	} else {
		auto buf = ValueOrThrow(arrow::AllocateBuffer(n * width));
		if (n > 0) {
			std::memcpy(buf->mutable_data(), values, n * width);
		}
		data = std::move(buf);
	}
	std::shared_ptr<arrow::Buffer> validity;
	int64_t nulls = valid ? n - CountNonZero(valid, n) : 0;
	if (nulls > 0) {
		auto bits = ValueOrThrow(arrow::AllocateBuffer((n + 7) / 8));
		std::memset(bits->mutable_data(), 0, bits->size());
		PackBits(valid, n, bits->mutable_data(), 0);
		validity = std::move(bits);
	}
	return arrow::MakeArray(arrow::ArrayData::Make(ToArrowType(t), n, {validity, data}, nulls));
}

//! Evaluate a fused expression over a whole morsel into a new array (keys of grouped aggregation).
std::shared_ptr<arrow::Array> EvaluateFusedArray(const FusedProgram &program, FusedFrame &frame,
                                                 const arrow::RecordBatch &batch, const MorselRef &m,
                                                 WorkerScratch &scratch) {
	const ValueType t = program.result_type();
	const int width = RegisterWidth(t);
	std::vector<uint8_t> values(m.length * width);
	scratch.bytes.resize(m.length);
	bool any_null = false;
	for (int64_t r = 0; r < m.length; r += kChunkRows) {
		const int64_t n = std::min(kChunkRows, m.length - r);
		ChunkView v = program.Evaluate(frame, batch, m.offset + r, n, nullptr);
		std::memcpy(values.data() + r * width, v.data, n * width);
		if (v.valid) {
			std::memcpy(scratch.bytes.data() + r, v.valid, n);
			any_null = true;
		} else {
			std::memset(scratch.bytes.data() + r, 1, n);
		}
	}
	return ArrayFromBytes(t, values.data(), any_null ? scratch.bytes.data() : nullptr, m.length);
}

//! A value array seen in chunks as (typed values, validity bytes), for aggregation.
class ArrayChunks {
public:
	ArrayChunks(std::shared_ptr<arrow::Array> array, AccumInput input, const std::shared_ptr<arrow::DataType> &cast_to)
	    : input_(input) {
		if (cast_to) {
			array = ValueOrThrow(ac::Cast(*array, cast_to, ac::CastOptions::Safe(cast_to)));
		}
		array_ = std::move(array);
	}
	//! Values of rows [r, r + n) (nullptr when the type has no values, e.g. count over strings) and
	//! validity bytes (nullptr = all valid).
	std::pair<const void *, const uint8_t *> Get(int64_t r, int64_t n) {
		const auto &d = *array_->data();
		const void *values = nullptr;
		if (d.type->id() == arrow::Type::BOOL) {
			vals_.resize(n);
			UnpackBits(d.buffers[1]->data(), d.offset + r, n, vals_.data());
			values = vals_.data();
		} else if (d.type->bit_width() > 0 && d.buffers.size() > 1 && d.buffers[1]) {
			values = d.buffers[1]->data() + (d.offset + r) * (d.type->bit_width() / 8);
		}
		const uint8_t *valid = nullptr;
		if (d.type->id() == arrow::Type::NA) {
			valid_.assign(n, 0);
			valid = valid_.data();
		} else if (d.MayHaveNulls() && d.buffers[0]) {
			valid_.resize(n);
			UnpackBits(d.buffers[0]->data(), d.offset + r, n, valid_.data());
			valid = valid_.data();
		}
		return {values, valid};
	}
	int64_t length() const {
		return array_->length();
	}

private:
	AccumInput input_;
	std::shared_ptr<arrow::Array> array_;
	std::vector<uint8_t> vals_;
	std::vector<uint8_t> valid_;
};

} // namespace

bool IsFused(const ac::Expression &expr, const arrow::Schema &schema) {
	return CompileExpr(expr, schema).fused != nullptr;
}

//===--------------------------------------------------------------------===//
// Project / Filter
//===--------------------------------------------------------------------===//

std::shared_ptr<arrow::Table> Project(const ColumnarInput &input, const std::vector<std::string> &names,
                                      const std::vector<ac::Expression> &exprs,
                                      const std::optional<ac::Expression> &where, const ExecOptions &options) {
	if (names.size() != exprs.size()) {
		throw StatusError(arrow::Status::Invalid("project: ", names.size(), " names for ", exprs.size(), " expressions"));
	}
	const arrow::Schema &schema = *input.schema;
	std::vector<CompiledExpr> cols;
	std::vector<int> read_columns;
	arrow::FieldVector fields;
	for (size_t i = 0; i < exprs.size(); ++i) {
		cols.push_back(CompileExpr(exprs[i], schema));
		CollectColumns(exprs[i], schema, read_columns);
		fields.push_back(arrow::field(names[i], cols.back().type));
	}
	auto out_schema = arrow::schema(fields);
	std::optional<CompiledExpr> pred;
	if (where) {
		pred = CompileExpr(*where, schema);
		if (pred->type->id() != arrow::Type::BOOL) {
			throw StatusError(arrow::Status::TypeError("filter predicate ", where->ToString(), " has type ",
			                                           pred->type->ToString(), "; a boolean expression is required"));
		}
		CollectColumns(*where, schema, read_columns);
	}
	WarmNullCounts(input);
	const auto morsels = PlanAll(input, read_columns, options.morsel_bytes);
	const size_t ncols = cols.size();
	const size_t nbatches = input.batches.size();
	const size_t pred_frame = ncols;

	// Fused columns without a filter write straight into per-batch output buffers.
	struct DirectOut {
		std::shared_ptr<arrow::ResizableBuffer> values;
		std::shared_ptr<arrow::ResizableBuffer> validity;
		std::atomic<int64_t> nulls {0};
	};
	std::vector<std::unique_ptr<DirectOut>> direct(ncols * nbatches);
	if (!pred) {
		for (size_t c = 0; c < ncols; ++c) {
			if (!cols[c].fused || cols[c].passthrough >= 0) {
				continue;
			}
			const ValueType t = cols[c].fused->result_type();
			for (size_t b = 0; b < nbatches; ++b) {
				const int64_t rows = input.batches[b]->num_rows();
				auto d = std::make_unique<DirectOut>();
				const int64_t value_bytes = t == ValueType::kBool ? (rows + 7) / 8 : rows * RegisterWidth(t);
				d->values = ValueOrThrow(arrow::AllocateResizableBuffer(value_bytes));
				d->validity = ValueOrThrow(arrow::AllocateResizableBuffer((rows + 7) / 8));
				direct[c * nbatches + b] = std::move(d);
			}
		}
	}
	// Other outputs are built per morsel and concatenated per batch.
	std::vector<std::vector<std::shared_ptr<arrow::Array>>> pieces(ncols,
	                                                               std::vector<std::shared_ptr<arrow::Array>>(morsels.size()));
	const int nworkers = SchedulerFor(options.threads).NumThreads();
	std::vector<WorkerScratch> scratch(nworkers);
	static const std::vector<uint8_t> kOnes(kChunkRows, 1);

	auto body = [&](size_t mi, int worker) {
		const MorselRef &m = morsels[mi];
		const arrow::RecordBatch &batch = *input.batches[m.batch];
		WorkerScratch &ws = scratch[worker];
		if (!pred) {
			std::shared_ptr<arrow::RecordBatch> slice;
			for (size_t c = 0; c < ncols; ++c) {
				const CompiledExpr &col = cols[c];
				if (col.passthrough >= 0) {
					continue;
				}
				if (col.fused) {
					DirectOut &out = *direct[c * nbatches + m.batch];
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
				} else {
					if (!slice) {
						slice = batch.Slice(m.offset, m.length);
					}
					pieces[c][mi] = EvaluateGeneric(col, *slice);
				}
			}
			return;
		}
		const int64_t nsel = ComputeMask(*pred, pred_frame, batch, m, ws);
		if (nsel == 0) {
			return;
		}
		const uint8_t *mask = ws.mask.data();
		std::shared_ptr<arrow::RecordBatch> filtered;
		for (size_t c = 0; c < ncols; ++c) {
			const CompiledExpr &col = cols[c];
			if (col.fused && col.passthrough < 0) {
				FusedFrame &frame = ws.Frame(c, *col.fused);
				const ValueType t = col.fused->result_type();
				const int width = RegisterWidth(t);
				std::vector<uint8_t> values(nsel * width);
				std::vector<uint8_t> valid(nsel);
				bool any_null = false;
				int64_t k = 0;
				for (int64_t r = 0; r < m.length; r += kChunkRows) {
					const int64_t n = std::min(kChunkRows, m.length - r);
					const uint8_t *sel = mask + r;
					if (CountNonZero(sel, n) == 0) {
						continue;
					}
					ChunkView v = col.fused->Evaluate(frame, batch, m.offset + r, n, sel);
					any_null |= v.valid != nullptr;
					const uint8_t *src = static_cast<const uint8_t *>(v.data);
					switch (width) {
					case 1:
						k += CompactChunk<1>(src, v.valid, sel, n, values.data() + k, valid.data() + k);
						break;
					case 4:
						k += CompactChunk<4>(src, v.valid, sel, n, values.data() + k * 4, valid.data() + k);
						break;
					default:
						k += CompactChunk<8>(src, v.valid, sel, n, values.data() + k * 8, valid.data() + k);
						break;
					}
				}
				pieces[c][mi] = ArrayFromBytes(t, values.data(), any_null ? valid.data() : nullptr, nsel);
				continue;
			}
			if (!filtered) {
				auto slice = batch.Slice(m.offset, m.length);
				if (nsel == m.length) {
					filtered = slice;
				} else {
					arrow::Datum f = ValueOrThrow(ac::Filter(slice, MaskArray(mask, m.length)));
					filtered = f.record_batch();
				}
			}
			pieces[c][mi] = col.passthrough >= 0 ? filtered->column(col.passthrough) : EvaluateGeneric(col, *filtered);
		}
	};
	TaskScheduler &scheduler = SchedulerFor(options.threads);
	scheduler.ParallelFor(morsels.size(), body, options.cancel);

	// Assemble one output batch per input batch, in input order.
	std::vector<std::shared_ptr<arrow::RecordBatch>> out_batches;
	size_t mi = 0;
	for (size_t b = 0; b < nbatches; ++b) {
		size_t first = mi;
		while (mi < morsels.size() && morsels[mi].batch == static_cast<int>(b)) {
			++mi;
		}
		const auto &batch = input.batches[b];
		arrow::ArrayVector columns;
		int64_t length = -1;
		for (size_t c = 0; c < ncols; ++c) {
			std::shared_ptr<arrow::Array> arr;
			if (!pred && cols[c].passthrough >= 0) {
				arr = batch->column(cols[c].passthrough);
			} else if (!pred && cols[c].fused) {
				DirectOut &out = *direct[c * nbatches + b];
				const int64_t nulls = out.nulls.load();
				arr = arrow::MakeArray(arrow::ArrayData::Make(cols[c].type, batch->num_rows(),
				                                              {nulls ? out.validity : nullptr, out.values}, nulls));
			} else {
				std::vector<std::shared_ptr<arrow::Array>> parts(pieces[c].begin() + first, pieces[c].begin() + mi);
				arr = ConcatPieces(parts, cols[c].type);
			}
			length = arr->length();
			columns.push_back(std::move(arr));
		}
		if (ncols == 0) {
			length = pred ? 0 : batch->num_rows();
		}
		if (length > 0) {
			out_batches.push_back(arrow::RecordBatch::Make(out_schema, length, std::move(columns)));
		}
	}
	return ValueOrThrow(arrow::Table::FromRecordBatches(out_schema, out_batches));
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

//===--------------------------------------------------------------------===//
// Aggregate
//===--------------------------------------------------------------------===//

namespace {

struct AggColumn {
	AggregateSpec spec;
	std::optional<CompiledExpr> value;
	AccumInput input = AccumInput::kInt64;
	std::shared_ptr<arrow::DataType> cast_to;
	std::shared_ptr<arrow::DataType> input_type;
};

//! Group ids of one integer (or boolean) key: open addressing with linear probing over a
//! power-of-two table; null keys share one group. Much lighter than Arrow's generic Grouper for
//! the common "group by an integer expression" case.
class IntGroupMap {
public:
	IntGroupMap() {
		Rehash(64);
	}
	uint32_t FindOrInsert(int64_t key) {
		// Small non-negative keys (remainders, codes, booleans) index a direct table: no hashing.
		if (static_cast<uint64_t>(key) < kDirect) {
			uint32_t &id = direct_[key];
			if (id == kEmpty) {
				id = static_cast<uint32_t>(keys_.size());
				keys_.push_back(key);
			}
			return id;
		}
		uint64_t h = Slot(key);
		while (true) {
			const uint32_t id = slots_[h];
			if (id == kEmpty) {
				const auto fresh = static_cast<uint32_t>(keys_.size());
				keys_.push_back(key);
				slots_[h] = fresh;
				if (++hashed_ * 2 > slots_.size()) {
					Rehash(slots_.size() * 2);
				}
				return fresh;
			}
			if (keys_[id] == key && id != null_id_) {
				return id;
			}
			h = (h + 1) & (slots_.size() - 1);
		}
	}
	uint32_t NullGroup() {
		if (null_id_ == kEmpty) {
			null_id_ = static_cast<uint32_t>(keys_.size());
			keys_.push_back(0);
		}
		return null_id_;
	}
	uint32_t size() const {
		return static_cast<uint32_t>(keys_.size());
	}
	int64_t key(uint32_t id) const {
		return keys_[id];
	}
	bool is_null(uint32_t id) const {
		return id == null_id_;
	}

private:
	static constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();
	static constexpr uint64_t kDirect = 1024;
	uint64_t Slot(int64_t key) const {
		return (static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ULL) >> shift_;
	}
	void Rehash(size_t capacity) {
		slots_.assign(capacity, kEmpty);
		shift_ = 64 - __builtin_ctzll(capacity);
		for (uint32_t id = 0; id < keys_.size(); ++id) {
			if (id == null_id_ || static_cast<uint64_t>(keys_[id]) < kDirect) {
				continue;
			}
			uint64_t h = Slot(keys_[id]);
			while (slots_[h] != kEmpty) {
				h = (h + 1) & (capacity - 1);
			}
			slots_[h] = id;
		}
	}
	std::vector<uint32_t> direct_ = std::vector<uint32_t>(kDirect, kEmpty);
	std::vector<uint32_t> slots_;
	std::vector<int64_t> keys_;
	size_t hashed_ = 0;
	uint32_t null_id_ = kEmpty;
	int shift_ = 58;
};

//! One worker's partial aggregation.
struct WorkerAgg {
	std::vector<AggState> global;
	std::unique_ptr<ac::Grouper> grouper;
	std::unique_ptr<IntGroupMap> int_groups;
	std::vector<std::vector<AggState>> groups;
	std::vector<int64_t> first_row;
};

} // namespace

class AggregatePlanImpl {
public:
	std::vector<AggColumn> aggs;
	std::vector<std::string> key_names;
	std::vector<CompiledExpr> keys;
	std::optional<CompiledExpr> pred;
	std::vector<int> read_columns;
	std::string unsupported;
	std::vector<arrow::TypeHolder> key_types;
};

AggregatePlan::AggregatePlan(const arrow::Schema &schema, std::vector<AggregateSpec> aggregates,
                             std::vector<std::string> key_names, const std::vector<ac::Expression> &keys,
                             const std::optional<ac::Expression> &where)
    : impl_(std::make_unique<AggregatePlanImpl>()) {
	auto &p = *impl_;
	if (key_names.size() != keys.size()) {
		throw StatusError(arrow::Status::Invalid("aggregate: ", key_names.size(), " key names for ", keys.size(), " keys"));
	}
	p.key_names = std::move(key_names);
	for (const auto &k : keys) {
		p.keys.push_back(CompileExpr(k, schema));
		CollectColumns(k, schema, p.read_columns);
		p.key_types.emplace_back(p.keys.back().type);
	}
	if (!p.keys.empty()) {
		auto probe = ac::Grouper::Make(p.key_types);
		if (!probe.ok()) {
			p.unsupported = "grouping by these key types: " + probe.status().ToString();
		}
	}
	if (where) {
		p.pred = CompileExpr(*where, schema);
		if (p.pred->type->id() != arrow::Type::BOOL) {
			throw StatusError(arrow::Status::TypeError("filter predicate ", where->ToString(), " has type ",
			                                           p.pred->type->ToString(), "; a boolean expression is required"));
		}
		CollectColumns(*where, schema, p.read_columns);
	}
	for (auto &spec : aggregates) {
		AggColumn col;
		if (spec.kind != AggKind::kCountAll) {
			if (!spec.value) {
				throw StatusError(arrow::Status::Invalid("aggregate ", spec.name, " needs a value expression"));
			}
			col.value = CompileExpr(*spec.value, schema);
			CollectColumns(*spec.value, schema, p.read_columns);
			col.input_type = col.value->type;
			auto input = AccumInputOf(*col.input_type, &col.cast_to);
			if (input) {
				col.input = *input;
			} else if (spec.kind != AggKind::kCount) {
				if (p.unsupported.empty()) {
					p.unsupported = std::string("aggregating values of type ") + col.input_type->ToString();
				}
			} else {
				col.input = AccumInput::kInt64; // count only reads validity
			}
		} else {
			col.input_type = arrow::int64();
		}
		col.spec = std::move(spec);
		p.aggs.push_back(std::move(col));
	}
}

AggregatePlan::~AggregatePlan() = default;

const std::string &AggregatePlan::Unsupported() const {
	return impl_->unsupported;
}

std::shared_ptr<arrow::Table> AggregatePlan::Execute(const ColumnarInput &input, const ExecOptions &options) const {
	const auto &p = *impl_;
	if (!p.unsupported.empty()) {
		throw StatusError(arrow::Status::NotImplemented("native aggregation does not support ", p.unsupported));
	}
	WarmNullCounts(input);
	const auto morsels = PlanAll(input, p.read_columns, options.morsel_bytes);
	const size_t naggs = p.aggs.size();
	const bool grouped = !p.keys.empty();
	const int nworkers = SchedulerFor(options.threads).NumThreads();
	std::vector<WorkerScratch> scratch(nworkers);
	std::vector<WorkerAgg> partial(nworkers);
	std::vector<int64_t> batch_start(input.batches.size() + 1, 0);
	for (size_t b = 0; b < input.batches.size(); ++b) {
		batch_start[b + 1] = batch_start[b] + input.batches[b]->num_rows();
	}
	// Frame slots: aggregates 0..naggs-1, predicate naggs, keys naggs+1...
	const size_t pred_frame = naggs;
	// A global aggregation whose predicate and values are all fused runs chunk-major.
	bool chunk_major = !grouped && (!p.pred || p.pred->fused);
	for (const auto &agg : p.aggs) {
		chunk_major = chunk_major && (agg.spec.kind == AggKind::kCountAll || (agg.value->fused && !agg.cast_to));
	}
	// One fused integer/boolean key: chunk-at-a-time grouping with IntGroupMap, nothing materialised.
	const bool int_key = grouped && p.keys.size() == 1 && p.keys[0].fused &&
	                     p.keys[0].fused->result_type() != ValueType::kFloat32 &&
	                     p.keys[0].fused->result_type() != ValueType::kFloat64;
	auto AggregateIntKeyed = [&](const MorselRef &m, const arrow::RecordBatch &batch, const uint8_t *mask,
	                             WorkerScratch &ws, WorkerAgg &wa) {
		if (!wa.int_groups) {
			wa.int_groups = std::make_unique<IntGroupMap>();
		}
		IntGroupMap &map = *wa.int_groups;
		const FusedProgram &key_program = *p.keys[0].fused;
		FusedFrame &key_frame = ws.Frame(naggs + 1, key_program);
		const ValueType key_type = key_program.result_type();
		ws.ids.resize(kChunkRows);
		ws.live.resize(kChunkRows);
		const int64_t base = batch_start[m.batch] + m.offset;
		for (int64_t r = 0; r < m.length; r += kChunkRows) {
			const int64_t n = std::min(kChunkRows, m.length - r);
			const uint8_t *sel = mask ? mask + r : nullptr;
			if (sel && CountNonZero(sel, n) == 0) {
				continue;
			}
			ChunkView k = key_program.Evaluate(key_frame, batch, m.offset + r, n, sel);
			uint32_t *ids = ws.ids.data();
			// The selected rows, gathered branch-free (a sparse filter would mispredict a branch).
			int32_t rows[kChunkRows];
			int64_t count = 0;
			for (int64_t i = 0; i < n; ++i) {
				rows[count] = static_cast<int32_t>(i);
				count += sel == nullptr || sel[i];
			}
			auto assign = [&](auto *keys) {
				for (int64_t j = 0; j < count; ++j) {
					const int32_t i = rows[j];
					const uint32_t g = (k.valid && !k.valid[i]) ? map.NullGroup()
					                                            : map.FindOrInsert(static_cast<int64_t>(keys[i]));
					ids[i] = g;
					if (g >= wa.first_row.size()) {
						wa.first_row.resize(g + 1, std::numeric_limits<int64_t>::max());
					}
					wa.first_row[g] = std::min(wa.first_row[g], base + r + i);
				}
			};
			if (key_type == ValueType::kInt64) {
				assign(static_cast<const int64_t *>(k.data));
			} else if (key_type == ValueType::kInt32) {
				assign(static_cast<const int32_t *>(k.data));
			} else {
				assign(static_cast<const uint8_t *>(k.data));
			}
			for (auto &g : wa.groups) {
				g.resize(map.size());
			}
			for (size_t a = 0; a < naggs; ++a) {
				const AggColumn &agg = p.aggs[a];
				const AggKind kind = agg.spec.kind;
				AggState *states = wa.groups[a].data();
				if (kind == AggKind::kCountAll) {
					UpdateGroupedRows(states, kind, agg.input, nullptr, rows, count, ids);
					continue;
				}
				const CompiledExpr &value = *agg.value;
				if (value.fused) {
					ChunkView v = value.fused->Evaluate(ws.Frame(a, *value.fused), batch, m.offset + r, n, sel);
					if (v.valid == nullptr) {
						// Every value is valid: the selected rows gathered above are the live rows.
						UpdateGroupedRows(states, kind, agg.input, kind == AggKind::kCount ? nullptr : v.data, rows, count,
						                  ids);
						continue;
					}
					const uint8_t *live = CombineLive(v.valid, sel, n, ws.live.data());
					UpdateGroupedStates(states, kind, agg.input, kind == AggKind::kCount ? nullptr : v.data, live, ids,
					                    n);
					continue;
				}
				// A generic value in a fused-key plan: Arrow evaluates this chunk's rows.
				auto slice = batch.Slice(m.offset + r, n);
				auto arr = value.passthrough >= 0 ? slice->column(value.passthrough) : EvaluateGeneric(value, *slice);
				ArrayChunks chunks(arr, agg.input, kind == AggKind::kCount ? nullptr : agg.cast_to);
				auto [data, valid] = chunks.Get(0, n);
				const uint8_t *live = CombineLive(valid, sel, n, ws.live.data());
				UpdateGroupedStates(states, kind, agg.input, kind == AggKind::kCount ? nullptr : data, live, ids, n);
			}
		}
	};

	auto body = [&](size_t mi, int worker) {
		const MorselRef &m = morsels[mi];
		const arrow::RecordBatch &batch = *input.batches[m.batch];
		WorkerScratch &ws = scratch[worker];
		WorkerAgg &wa = partial[worker];
		if (wa.global.empty()) {
			wa.global.resize(naggs);
			wa.groups.resize(naggs);
		}
		if (chunk_major) {
			// Everything fused: predicate and aggregates chunk by chunk, all data hot in L1.
			ws.live.resize(kChunkRows);
			ws.mask.resize(kChunkRows);
			for (int64_t r = 0; r < m.length; r += kChunkRows) {
				const int64_t n = std::min(kChunkRows, m.length - r);
				const uint8_t *sel = nullptr;
				if (p.pred) {
					ChunkView pv = p.pred->fused->Evaluate(ws.Frame(pred_frame, *p.pred->fused), batch, m.offset + r, n,
					                                       nullptr);
					const uint8_t *pval = static_cast<const uint8_t *>(pv.data);
					if (pv.valid) {
						for (int64_t i = 0; i < n; ++i) {
							ws.mask[i] = pval[i] & pv.valid[i];
						}
						sel = ws.mask.data();
					} else {
						sel = pval;
					}
				}
				for (size_t a = 0; a < naggs; ++a) {
					const AggColumn &agg = p.aggs[a];
					const AggKind kind = agg.spec.kind;
					if (kind == AggKind::kCountAll) {
						UpdateState(wa.global[a], kind, agg.input, nullptr, sel, n);
						continue;
					}
					const FusedProgram &program = *agg.value->fused;
					ChunkView v = program.Evaluate(ws.Frame(a, program), batch, m.offset + r, n, sel);
					const uint8_t *live = CombineLive(v.valid, sel, n, ws.live.data());
					UpdateState(wa.global[a], kind, agg.input, kind == AggKind::kCount ? nullptr : v.data, live, n);
				}
			}
			return;
		}
		const uint8_t *mask = nullptr;
		int64_t nsel = m.length;
		if (p.pred) {
			nsel = ComputeMask(*p.pred, pred_frame, batch, m, ws);
			if (nsel == 0) {
				return;
			}
			mask = ws.mask.data();
		}
		std::shared_ptr<arrow::RecordBatch> slice;
		std::shared_ptr<arrow::RecordBatch> filtered;
		auto get_filtered = [&]() -> const arrow::RecordBatch & {
			if (!filtered) {
				slice = slice ? slice : batch.Slice(m.offset, m.length);
				if (mask == nullptr || nsel == m.length) {
					filtered = slice;
				} else {
					arrow::Datum f = ValueOrThrow(ac::Filter(slice, MaskArray(mask, m.length)));
					filtered = f.record_batch();
				}
			}
			return *filtered;
		};

		if (int_key) {
			AggregateIntKeyed(m, batch, mask, ws, wa);
			return;
		}
		// Group ids: one per selected row (compact) and one per morsel row (row-aligned).
		const uint32_t *ids_compact = nullptr;
		std::shared_ptr<arrow::Array> ids_array;
		if (grouped) {
			if (!wa.grouper) {
				wa.grouper = ValueOrThrow(ac::Grouper::Make(p.key_types));
			}
			std::vector<arrow::Datum> key_values;
			for (size_t k = 0; k < p.keys.size(); ++k) {
				const CompiledExpr &key = p.keys[k];
				std::shared_ptr<arrow::Array> arr;
				if (key.fused && key.passthrough < 0) {
					arr = EvaluateFusedArray(*key.fused, ws.Frame(naggs + 1 + k, *key.fused), batch, m, ws);
					if (mask && nsel != m.length) {
						arr = ValueOrThrow(ac::Filter(arr, MaskArray(mask, m.length))).make_array();
					}
				} else if (key.passthrough >= 0) {
					arr = get_filtered().column(key.passthrough);
				} else {
					arr = EvaluateGeneric(key, get_filtered());
				}
				key_values.emplace_back(arr);
			}
			ac::ExecBatch keys_batch(std::move(key_values), nsel);
			arrow::Datum ids = ValueOrThrow(wa.grouper->Consume(ac::ExecSpan(keys_batch)));
			ids_array = ids.make_array();
			ids_compact = ids_array->data()->GetValues<uint32_t>(1);
			const uint32_t ngroups = wa.grouper->num_groups();
			for (auto &g : wa.groups) {
				g.resize(ngroups);
			}
			wa.first_row.resize(ngroups, std::numeric_limits<int64_t>::max());
			ws.ids.resize(m.length);
			const int64_t base = batch_start[m.batch] + m.offset;
			int64_t k = 0;
			for (int64_t i = 0; i < m.length; ++i) {
				if (mask == nullptr || mask[i]) {
					const uint32_t g = ids_compact[k++];
					ws.ids[i] = g;
					wa.first_row[g] = std::min(wa.first_row[g], base + i);
				} else {
					ws.ids[i] = 0;
				}
			}
		}

		ws.live.resize(kChunkRows);
		for (size_t a = 0; a < naggs; ++a) {
			const AggColumn &agg = p.aggs[a];
			const AggKind kind = agg.spec.kind;
			AggState *states = grouped ? wa.groups[a].data() : nullptr;
			if (kind == AggKind::kCountAll) {
				for (int64_t r = 0; r < m.length; r += kChunkRows) {
					const int64_t n = std::min(kChunkRows, m.length - r);
					const uint8_t *sel = mask ? mask + r : nullptr;
					if (grouped) {
						UpdateGroupedStates(states, kind, agg.input, nullptr, sel, ws.ids.data() + r, n);
					} else {
						UpdateState(wa.global[a], kind, agg.input, nullptr, sel, n);
					}
				}
				continue;
			}
			const CompiledExpr &value = *agg.value;
			if (value.fused && !agg.cast_to) {
				FusedFrame &frame = ws.Frame(a, *value.fused);
				for (int64_t r = 0; r < m.length; r += kChunkRows) {
					const int64_t n = std::min(kChunkRows, m.length - r);
					const uint8_t *sel = mask ? mask + r : nullptr;
					if (sel && CountNonZero(sel, n) == 0) {
						continue;
					}
					ChunkView v = value.fused->Evaluate(frame, batch, m.offset + r, n, sel);
					const uint8_t *live = CombineLive(v.valid, sel, n, ws.live.data());
					const void *data = kind == AggKind::kCount ? nullptr : v.data;
					if (grouped) {
						UpdateGroupedStates(states, kind, agg.input, data, live, ws.ids.data() + r, n);
					} else {
						UpdateState(wa.global[a], kind, agg.input, data, live, n);
					}
				}
				continue;
			}
			// Generic: Arrow evaluates over the selected rows; ids_compact is aligned with them.
			std::shared_ptr<arrow::Array> arr = value.passthrough >= 0 ? get_filtered().column(value.passthrough)
			                                                           : EvaluateGeneric(value, get_filtered());
			ArrayChunks chunks(arr, agg.input, kind == AggKind::kCount ? nullptr : agg.cast_to);
			const int64_t len = chunks.length();
			for (int64_t r = 0; r < len; r += kChunkRows) {
				const int64_t n = std::min(kChunkRows, len - r);
				auto [data, valid] = chunks.Get(r, n);
				if (kind == AggKind::kCount) {
					data = nullptr;
				}
				if (grouped) {
					UpdateGroupedStates(states, kind, agg.input, data, valid, ids_compact + r, n);
				} else {
					UpdateState(wa.global[a], kind, agg.input, data, valid, n);
				}
			}
		}
	};
	SchedulerFor(options.threads).ParallelFor(morsels.size(), body, options.cancel);

	arrow::FieldVector fields;
	arrow::ArrayVector columns;
	if (!grouped) {
		for (size_t a = 0; a < naggs; ++a) {
			AggState total;
			for (const auto &w : partial) {
				if (!w.global.empty()) {
					MergeState(total, w.global[a]);
				}
			}
			const AggColumn &agg = p.aggs[a];
			columns.push_back(ValueOrThrow(FinalizeStates(agg.spec.kind, agg.input, agg.input_type, {&total})));
			fields.push_back(arrow::field(agg.spec.name, columns.back()->type()));
		}
		return arrow::Table::Make(arrow::schema(fields), columns, 1);
	}

	std::vector<std::vector<AggState>> merged(naggs);
	std::vector<int64_t> first_row;
	if (int_key) {
		IntGroupMap global;
		for (const auto &w : partial) {
			if (!w.int_groups) {
				continue;
			}
			const IntGroupMap &local = *w.int_groups;
			for (uint32_t g = 0; g < local.size(); ++g) {
				const uint32_t gid = local.is_null(g) ? global.NullGroup() : global.FindOrInsert(local.key(g));
				if (gid >= first_row.size()) {
					first_row.resize(gid + 1, std::numeric_limits<int64_t>::max());
					for (auto &mg : merged) {
						mg.resize(gid + 1);
					}
				}
				first_row[gid] = std::min(first_row[gid], w.first_row[g]);
				for (size_t a = 0; a < naggs; ++a) {
					MergeState(merged[a][gid], w.groups[a][g]);
				}
			}
		}
		const uint32_t ngroups = global.size();
		std::vector<uint32_t> order(ngroups);
		std::iota(order.begin(), order.end(), 0);
		std::sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) { return first_row[x] < first_row[y]; });
		arrow::Int64Builder keys;
		ThrowIfNotOk(keys.Reserve(ngroups));
		for (uint32_t g : order) {
			if (global.is_null(g)) {
				keys.UnsafeAppendNull();
			} else {
				keys.UnsafeAppend(global.key(g));
			}
		}
		std::shared_ptr<arrow::Array> key_array;
		ThrowIfNotOk(keys.Finish(&key_array));
		const auto &key_type = p.keys[0].type;
		if (!key_type->Equals(*key_array->type())) {
			key_array = ValueOrThrow(ac::Cast(*key_array, key_type, ac::CastOptions::Unsafe(key_type)));
		}
		fields.push_back(arrow::field(p.key_names[0], key_type));
		columns.push_back(std::move(key_array));
		for (size_t a = 0; a < naggs; ++a) {
			std::vector<const AggState *> states;
			states.reserve(ngroups);
			for (uint32_t g : order) {
				states.push_back(&merged[a][g]);
			}
			const AggColumn &agg = p.aggs[a];
			columns.push_back(ValueOrThrow(FinalizeStates(agg.spec.kind, agg.input, agg.input_type, states)));
			fields.push_back(arrow::field(agg.spec.name, columns.back()->type()));
		}
		return arrow::Table::Make(arrow::schema(fields), columns, ngroups);
	}
	// Merge the workers' groups through one grouper: local id -> global id.
	auto global = ValueOrThrow(ac::Grouper::Make(p.key_types));
	for (const auto &w : partial) {
		if (!w.grouper || w.grouper->num_groups() == 0) {
			continue;
		}
		ac::ExecBatch uniques = ValueOrThrow(w.grouper->GetUniques());
		arrow::Datum ids = ValueOrThrow(global->Consume(ac::ExecSpan(uniques)));
		const uint32_t *map = ids.array()->GetValues<uint32_t>(1);
		const uint32_t ngroups = global->num_groups();
		first_row.resize(ngroups, std::numeric_limits<int64_t>::max());
		for (auto &g : merged) {
			g.resize(ngroups);
		}
		for (uint32_t g = 0; g < w.grouper->num_groups(); ++g) {
			first_row[map[g]] = std::min(first_row[map[g]], w.first_row[g]);
			for (size_t a = 0; a < naggs; ++a) {
				MergeState(merged[a][map[g]], w.groups[a][g]);
			}
		}
	}
	const uint32_t ngroups = global->num_groups();
	std::vector<uint32_t> order(ngroups);
	std::iota(order.begin(), order.end(), 0);
	std::sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) { return first_row[x] < first_row[y]; });
	ac::ExecBatch uniques = ValueOrThrow(global->GetUniques());
	arrow::UInt32Builder order_builder;
	ThrowIfNotOk(order_builder.AppendValues(order));
	std::shared_ptr<arrow::Array> order_array;
	ThrowIfNotOk(order_builder.Finish(&order_array));
	for (size_t k = 0; k < p.keys.size(); ++k) {
		std::shared_ptr<arrow::Array> key;
		if (ngroups == 0) {
			key = ValueOrThrow(arrow::MakeEmptyArray(p.keys[k].type));
		} else {
			key = ValueOrThrow(ac::Take(DatumToArray(uniques.values[k], ngroups), order_array)).make_array();
		}
		fields.push_back(arrow::field(p.key_names[k], p.keys[k].type));
		columns.push_back(std::move(key));
	}
	for (size_t a = 0; a < naggs; ++a) {
		std::vector<const AggState *> states;
		states.reserve(ngroups);
		for (uint32_t g : order) {
			states.push_back(&merged[a][g]);
		}
		const AggColumn &agg = p.aggs[a];
		columns.push_back(ValueOrThrow(FinalizeStates(agg.spec.kind, agg.input, agg.input_type, states)));
		fields.push_back(arrow::field(agg.spec.name, columns.back()->type()));
	}
	return arrow::Table::Make(arrow::schema(fields), columns, ngroups);
}

} // namespace compute
} // namespace sabot
