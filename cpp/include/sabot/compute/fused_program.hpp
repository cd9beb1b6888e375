//===----------------------------------------------------------------------===//
// sabot/compute/fused_program.hpp
//
// A bound Arrow expression compiled into a flat program of type-specialised vector kernels,
// evaluated over small cache-resident chunks of rows. Covers the numeric subset (bool, int32,
// int64, float, double; arithmetic incl. modulo, comparisons, boolean logic, null tests, numeric
// casts, if_else); anything else is left to Arrow's own ExecuteScalarExpression.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/value_type.hpp"

#include <arrow/compute/expression.h>
#include <arrow/record_batch.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace sabot {
namespace compute {

//! One chunk of values: `data` holds n values of the program's result type (booleans as bytes),
//! `valid` n bytes (1 = valid) or nullptr when every row is valid. Points into the frame or the input.
struct ChunkView {
	//! Typed values.
	const void *data = nullptr;
	//! Validity bytes, nullptr = all valid.
	const uint8_t *valid = nullptr;
};

struct Instruction;
class FusedProgram;

//! Which compiled copy of the kernels this CPU runs: "avx2" or "generic".
const char *FusedKernelIsa();

//! Per-worker scratch registers of a FusedProgram (one per worker thread; not shared).
class FusedFrame {
public:
	//! Allocate the registers of `program`.
	explicit FusedFrame(const FusedProgram &program);
	~FusedFrame();
	FusedFrame(const FusedFrame &) = delete;
	FusedFrame &operator=(const FusedFrame &) = delete;

private:
	friend class FusedProgram;
	//! Register values and validity, 64-byte aligned.
	uint8_t *storage_ = nullptr;
	//! Current view of every register.
	std::vector<ChunkView> slots_;
};

//! A compiled expression. Immutable after Compile, so one program is shared by all workers.
class FusedProgram {
public:
	//! Compile `bound` (already bound to `schema`); nullptr when any part is outside the subset.
	static std::unique_ptr<FusedProgram> Compile(const arrow::compute::Expression &bound, const arrow::Schema &schema);
	~FusedProgram();

	//! Type of the result.
	ValueType result_type() const {
		return result_type_;
	}
	//! Evaluate rows [row, row + n) of `batch` (n <= kChunkRows). `sel`, when not null, marks the
	//! rows (n bytes, 1 = kept) whose errors count: overflow or division by zero on a row a filter
	//! dropped is not an error, as in pyarrow where the filter runs first. Throws StatusError.
	ChunkView Evaluate(FusedFrame &frame, const arrow::RecordBatch &batch, int64_t row, int64_t n,
	                   const uint8_t *sel) const;

private:
	friend class FusedFrame;
	friend class ProgramCompiler;
	FusedProgram();

	//! The instructions in execution order.
	std::vector<Instruction> code_;
	//! Number of registers.
	int num_registers_ = 0;
	//! Register holding the result.
	int result_register_ = 0;
	//! Result type.
	ValueType result_type_ = ValueType::kBool;
	//! Registers bound to literals: register id and the broadcast buffers (owned here).
	std::vector<std::pair<int, ChunkView>> literal_slots_;
	//! Storage of literal broadcasts.
	std::vector<std::unique_ptr<uint8_t[]>> literal_storage_;
};

} // namespace compute
} // namespace sabot
