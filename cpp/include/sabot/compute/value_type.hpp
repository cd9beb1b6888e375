//===----------------------------------------------------------------------===//
// sabot/compute/value_type.hpp
//
// The value types the fused evaluator computes on, and the chunk size it works in.
//===----------------------------------------------------------------------===//
#pragma once

#include <arrow/type_fwd.h>

#include <cstdint>
#include <memory>
#include <optional>

namespace sabot {
namespace compute {

//! Rows per evaluation chunk: small enough that every register of a program stays in L1/L2.
constexpr int64_t kChunkRows = 1024;

//! A column type of the fused subset. Booleans are held as one byte per row (0 or 1).
enum class ValueType : uint8_t { kBool, kInt32, kInt64, kFloat32, kFloat64 };

//! The fused value type of an Arrow type, or nullopt when it is outside the subset.
std::optional<ValueType> ToValueType(const arrow::DataType &type);
//! The Arrow type of a fused value type.
std::shared_ptr<arrow::DataType> ToArrowType(ValueType type);
//! Bytes per value in a register (1 for booleans).
int RegisterWidth(ValueType type);

} // namespace compute
} // namespace sabot
