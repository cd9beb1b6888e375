//===----------------------------------------------------------------------===//
// sabot/compute/fused_array.hpp
//
// Arrow arrays built from the fused evaluator's registers (values one register width each,
// booleans and validity as one byte per row).
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/batch_morsel.hpp"
#include "sabot/compute/fused_program.hpp"
#include "sabot/compute/value_type.hpp"
#include "sabot/compute/worker_scratch.hpp"

#include <arrow/array.h>
#include <arrow/record_batch.h>

#include <cstdint>
#include <memory>

namespace sabot {
namespace compute {

//! An array of `type` from `n` register values and validity bytes (nullptr = all valid).
std::shared_ptr<arrow::Array> ArrayFromBytes(ValueType type, const uint8_t *values, const uint8_t *valid, int64_t n);
//! Evaluate `program` over a whole morsel into a new array (keys of grouped aggregation).
std::shared_ptr<arrow::Array> EvaluateFusedArray(const FusedProgram &program, FusedFrame &frame,
                                                 const arrow::RecordBatch &batch, const BatchMorsel &morsel,
                                                 WorkerScratch &scratch);
//! Copy the rows of one chunk where mask[i] is set (values `width` bytes: 1, 4 or 8) to dst and
//! their validity bytes (1 when `valid` is null) to vdst; returns how many were copied.
int64_t CompactSelected(const uint8_t *src, const uint8_t *valid, const uint8_t *mask, int64_t n, int width,
                        uint8_t *dst, uint8_t *vdst);

} // namespace compute
} // namespace sabot
