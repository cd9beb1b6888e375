#include "sabot/compute/aggregate_state.hpp"

#include "sabot/compute/bit_util.hpp"
#include "sabot/compute/value_type.hpp"

#include <arrow/array.h>
#include <arrow/buffer.h>
#include <arrow/builder.h>
#include <arrow/compute/cast.h>
#include <arrow/type.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace sabot {
namespace compute {

std::optional<AggKind> ParseAggKind(const std::string &name) {
	if (name == "sum") {
		return AggKind::kSum;
	}
	if (name == "count") {
		return AggKind::kCount;
	}
	if (name == "count_all") {
		return AggKind::kCountAll;
	}
	if (name == "min") {
		return AggKind::kMin;
	}
	if (name == "max") {
		return AggKind::kMax;
	}
	if (name == "mean") {
		return AggKind::kMean;
	}
	return std::nullopt;
}

const char *AggKindNames() {
	return "sum, count, count_all, min, max, mean";
}

std::optional<AccumInput> AccumInputOf(const arrow::DataType &type, std::shared_ptr<arrow::DataType> *cast_to) {
	*cast_to = nullptr;
	switch (type.id()) {
	case arrow::Type::BOOL:
		return AccumInput::kBool;
	case arrow::Type::INT8:
	case arrow::Type::INT16:
	case arrow::Type::UINT8:
	case arrow::Type::UINT16:
		*cast_to = arrow::int32();
		return AccumInput::kInt32;
	case arrow::Type::INT32:
		return AccumInput::kInt32;
	case arrow::Type::UINT32:
		*cast_to = arrow::int64();
		return AccumInput::kInt64;
	case arrow::Type::INT64:
		return AccumInput::kInt64;
	case arrow::Type::UINT64:
		return AccumInput::kUInt64;
	case arrow::Type::FLOAT:
		return AccumInput::kFloat32;
	case arrow::Type::DOUBLE:
		return AccumInput::kFloat64;
	default:
		return std::nullopt;
	}
}

std::shared_ptr<arrow::DataType> AggResultType(AggKind kind, const arrow::DataType &input_type) {
	switch (kind) {
	case AggKind::kCount:
	case AggKind::kCountAll:
		return arrow::int64();
	case AggKind::kMean:
		return arrow::float64();
	case AggKind::kSum:
		switch (input_type.id()) {
		case arrow::Type::BOOL:
		case arrow::Type::UINT8:
		case arrow::Type::UINT16:
		case arrow::Type::UINT32:
		case arrow::Type::UINT64:
			return arrow::uint64();
		case arrow::Type::FLOAT:
		case arrow::Type::DOUBLE:
			return arrow::float64();
		default:
			return arrow::int64();
		}
	case AggKind::kMin:
	case AggKind::kMax:
		break;
	}
	return input_type.GetSharedPtr();
}

// The update loops are compiled twice: for the baseline ISA and (GCC on x86-64) for AVX2/FMA;
// the CPU decides once at run time. Both copies have internal linkage.
namespace {
namespace generic_isa {
#include "aggregate_kernels.inc"
} // namespace generic_isa
} // namespace

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SABOT_AVX2_AGGREGATES 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2,popcnt,lzcnt,f16c")
namespace {
namespace avx2_isa {
#include "aggregate_kernels.inc"
} // namespace avx2_isa
} // namespace
#pragma GCC pop_options
#endif

namespace {

using UpdateFn = void (*)(AggState &, AggKind, AccumInput, const void *, const uint8_t *, int64_t);
using GroupedFn = void (*)(AggState *, AggKind, AccumInput, const void *, const uint8_t *, const uint32_t *,
                           int64_t);

bool UseAvx2() {
#ifdef SABOT_AVX2_AGGREGATES
	static const bool avx2 = [] {
		__builtin_cpu_init();
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
	}();
	return avx2;
#else
	return false;
#endif
}

} // namespace

void UpdateState(AggState &state, AggKind kind, AccumInput input, const void *data, const uint8_t *live, int64_t n) {
#ifdef SABOT_AVX2_AGGREGATES
	if (UseAvx2()) {
		return avx2_isa::UpdateStateImpl(state, kind, input, data, live, n);
	}
#endif
	generic_isa::UpdateStateImpl(state, kind, input, data, live, n);
}

void UpdateGroupedRows(AggState *states, AggKind kind, AccumInput input, const void *data, const int32_t *rows,
                       int64_t count, const uint32_t *ids) {
#ifdef SABOT_AVX2_AGGREGATES
	if (UseAvx2()) {
		return avx2_isa::UpdateGroupedRowsImpl(states, kind, input, data, rows, count, ids);
	}
#endif
	generic_isa::UpdateGroupedRowsImpl(states, kind, input, data, rows, count, ids);
}

void UpdateGroupedStates(AggState *states, AggKind kind, AccumInput input, const void *data, const uint8_t *live,
                         const uint32_t *ids, int64_t n) {
#ifdef SABOT_AVX2_AGGREGATES
	if (UseAvx2()) {
		return avx2_isa::UpdateGroupedImpl(states, kind, input, data, live, ids, n);
	}
#endif
	generic_isa::UpdateGroupedImpl(states, kind, input, data, live, ids, n);
}

void MergeState(AggState &into, const AggState &from) {
	into.isum += from.isum;
	into.dsum += from.dsum;
	into.count += from.count;
	into.nonnan += from.nonnan;
	into.imin = std::min(into.imin, from.imin);
	into.imax = std::max(into.imax, from.imax);
	into.umin = std::min(into.umin, from.umin);
	into.umax = std::max(into.umax, from.umax);
	into.dmin = from.dmin < into.dmin ? from.dmin : into.dmin;
	into.dmax = from.dmax > into.dmax ? from.dmax : into.dmax;
}

namespace {

//! Build an array of `type` from per-state values and validity via a typed builder.
template <typename BuilderT, typename Fn>
arrow::Result<std::shared_ptr<arrow::Array>> BuildWith(std::shared_ptr<arrow::DataType> type,
                                                       const std::vector<const AggState *> &states, Fn value) {
	BuilderT builder(type, arrow::default_memory_pool());
	ARROW_RETURN_NOT_OK(builder.Reserve(static_cast<int64_t>(states.size())));
	for (const AggState *s : states) {
		bool valid = true;
		auto v = value(*s, valid);
		if (valid) {
			builder.UnsafeAppend(v);
		} else {
			builder.UnsafeAppendNull();
		}
	}
	std::shared_ptr<arrow::Array> out;
	ARROW_RETURN_NOT_OK(builder.Finish(&out));
	return out;
}

} // namespace

arrow::Result<std::shared_ptr<arrow::Array>> FinalizeStates(AggKind kind, AccumInput input,
                                                            const std::shared_ptr<arrow::DataType> &input_type,
                                                            const std::vector<const AggState *> &states) {
	const auto result_type = AggResultType(kind, *input_type);
	switch (kind) {
	case AggKind::kCount:
	case AggKind::kCountAll:
		return BuildWith<arrow::Int64Builder>(arrow::int64(), states,
		                                      [](const AggState &s, bool &) { return s.count; });
	case AggKind::kMean:
		return BuildWith<arrow::DoubleBuilder>(arrow::float64(), states, [](const AggState &s, bool &valid) {
			valid = s.count > 0;
			return valid ? s.dsum / static_cast<double>(s.count) : 0.0;
		});
	case AggKind::kSum:
		if (result_type->id() == arrow::Type::DOUBLE) {
			return BuildWith<arrow::DoubleBuilder>(arrow::float64(), states, [](const AggState &s, bool &valid) {
				valid = s.count > 0;
				return s.dsum;
			});
		}
		if (result_type->id() == arrow::Type::UINT64) {
			return BuildWith<arrow::UInt64Builder>(arrow::uint64(), states, [](const AggState &s, bool &valid) {
				valid = s.count > 0;
				return s.isum;
			});
		}
		return BuildWith<arrow::Int64Builder>(arrow::int64(), states, [](const AggState &s, bool &valid) {
			valid = s.count > 0;
			return static_cast<int64_t>(s.isum);
		});
	case AggKind::kMin:
	case AggKind::kMax:
		break;
	}
	const bool is_min = kind == AggKind::kMin;
	std::shared_ptr<arrow::Array> wide;
	switch (input) {
	case AccumInput::kBool: {
		ARROW_ASSIGN_OR_RAISE(wide, BuildWith<arrow::BooleanBuilder>(arrow::boolean(), states,
		                                                             [is_min](const AggState &s, bool &valid) {
			                                                             valid = s.count > 0;
			                                                             return (is_min ? s.imin : s.imax) != 0;
		                                                             }));
		break;
	}
	case AccumInput::kInt32:
	case AccumInput::kInt64: {
		ARROW_ASSIGN_OR_RAISE(wide, BuildWith<arrow::Int64Builder>(arrow::int64(), states,
		                                                           [is_min](const AggState &s, bool &valid) {
			                                                           valid = s.count > 0;
			                                                           return is_min ? s.imin : s.imax;
		                                                           }));
		break;
	}
	case AccumInput::kUInt64: {
		ARROW_ASSIGN_OR_RAISE(wide, BuildWith<arrow::UInt64Builder>(arrow::uint64(), states,
		                                                            [is_min](const AggState &s, bool &valid) {
			                                                            valid = s.count > 0;
			                                                            return is_min ? s.umin : s.umax;
		                                                            }));
		break;
	}
	case AccumInput::kFloat32:
	case AccumInput::kFloat64: {
		ARROW_ASSIGN_OR_RAISE(wide, BuildWith<arrow::DoubleBuilder>(arrow::float64(), states,
		                                                            [is_min](const AggState &s, bool &valid) {
			                                                            valid = s.count > 0;
			                                                            if (s.nonnan == 0) {
				                                                            return std::nan("");
			                                                            }
			                                                            return is_min ? s.dmin : s.dmax;
		                                                            }));
		break;
	}
	}
	if (wide->type()->Equals(*result_type)) {
		return wide;
	}
	// The extreme is a value of the input type, so narrowing back is exact.
	ARROW_ASSIGN_OR_RAISE(arrow::Datum narrowed,
	                      arrow::compute::Cast(wide, result_type, arrow::compute::CastOptions::Unsafe(result_type)));
	return narrowed.make_array();
}

} // namespace compute
} // namespace sabot
