#include "sabot/compute/value_type.hpp"

#include <arrow/type.h>

namespace sabot {
namespace compute {

std::optional<ValueType> ToValueType(const arrow::DataType &type) {
	switch (type.id()) {
	case arrow::Type::BOOL:
		return ValueType::kBool;
	case arrow::Type::INT32:
		return ValueType::kInt32;
	case arrow::Type::INT64:
		return ValueType::kInt64;
	case arrow::Type::FLOAT:
		return ValueType::kFloat32;
	case arrow::Type::DOUBLE:
		return ValueType::kFloat64;
	default:
		return std::nullopt;
	}
}

std::shared_ptr<arrow::DataType> ToArrowType(ValueType type) {
	switch (type) {
	case ValueType::kBool:
		return arrow::boolean();
	case ValueType::kInt32:
		return arrow::int32();
	case ValueType::kInt64:
		return arrow::int64();
	case ValueType::kFloat32:
		return arrow::float32();
	case ValueType::kFloat64:
		return arrow::float64();
	}
	return nullptr;
}

int RegisterWidth(ValueType type) {
	switch (type) {
	case ValueType::kBool:
		return 1;
	case ValueType::kInt32:
	case ValueType::kFloat32:
		return 4;
	case ValueType::kInt64:
	case ValueType::kFloat64:
		return 8;
	}
	return 8;
}

} // namespace compute
} // namespace sabot
