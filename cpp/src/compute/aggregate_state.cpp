#include "sabot/compute/aggregate_state.hpp"

#include "sabot/compute/bit_util.hpp"

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

namespace {

template <typename T>
constexpr bool kFloating = std::is_floating_point_v<T>;

// Masked reductions over one chunk. `live` == nullptr means every row counts; both branches are
// written as straight loops the compiler vectorises (blends instead of branches).
template <typename T>
void UpdateTyped(AggState &s, AggKind kind, const T *__restrict v, const uint8_t *__restrict live, int64_t n) {
	const int64_t counted = live ? CountNonZero(live, n) : n;
	switch (kind) {
	case AggKind::kCount:
	case AggKind::kCountAll:
		s.count += counted;
		return;
	case AggKind::kSum:
	case AggKind::kMean:
		s.count += counted;
		if (kind == AggKind::kMean || kFloating<T>) {
			double acc = 0;
			if (live) {
#pragma omp simd reduction(+ : acc)
				for (int64_t i = 0; i < n; ++i) {
					acc += live[i] ? static_cast<double>(v[i]) : 0.0;
				}
			} else {
#pragma omp simd reduction(+ : acc)
				for (int64_t i = 0; i < n; ++i) {
					acc += static_cast<double>(v[i]);
				}
			}
			s.dsum += acc;
		} else {
			uint64_t acc = 0;
			using Wide = std::conditional_t<std::is_same_v<T, uint64_t>, uint64_t, int64_t>;
			if (live) {
				for (int64_t i = 0; i < n; ++i) {
					acc += live[i] ? static_cast<uint64_t>(static_cast<Wide>(v[i])) : 0;
				}
			} else {
				for (int64_t i = 0; i < n; ++i) {
					acc += static_cast<uint64_t>(static_cast<Wide>(v[i]));
				}
			}
			s.isum += acc;
		}
		return;
	case AggKind::kMin:
	case AggKind::kMax: {
		s.count += counted;
		const bool is_min = kind == AggKind::kMin;
		if constexpr (kFloating<T>) {
			// NaN never wins a comparison, so it is skipped unless every value is NaN.
			double lo = s.dmin, hi = s.dmax;
			int64_t nonnan = 0;
			for (int64_t i = 0; i < n; ++i) {
				const double x = static_cast<double>(v[i]);
				const bool use = live == nullptr || live[i];
				nonnan += use && x == x;
				if (is_min) {
					lo = (use && x < lo) ? x : lo;
				} else {
					hi = (use && x > hi) ? x : hi;
				}
			}
			s.dmin = lo;
			s.dmax = hi;
			s.nonnan += nonnan;
		} else if constexpr (std::is_same_v<T, uint64_t>) {
			uint64_t lo = s.umin, hi = s.umax;
			for (int64_t i = 0; i < n; ++i) {
				const bool use = live == nullptr || live[i];
				lo = (use && v[i] < lo) ? v[i] : lo;
				hi = (use && v[i] > hi) ? v[i] : hi;
			}
			s.umin = lo;
			s.umax = hi;
		} else {
			int64_t lo = s.imin, hi = s.imax;
			for (int64_t i = 0; i < n; ++i) {
				const bool use = live == nullptr || live[i];
				const int64_t x = static_cast<int64_t>(v[i]);
				lo = (use && x < lo) ? x : lo;
				hi = (use && x > hi) ? x : hi;
			}
			s.imin = lo;
			s.imax = hi;
		}
		return;
	}
	}
}

template <typename T>
void UpdateGroupedTyped(AggState *states, AggKind kind, const T *v, const uint8_t *live, const uint32_t *ids,
                        int64_t n) {
	for (int64_t i = 0; i < n; ++i) {
		if (live != nullptr && !live[i]) {
			continue;
		}
		AggState &s = states[ids[i]];
		++s.count;
		if (kind == AggKind::kCount || kind == AggKind::kCountAll) {
			continue;
		}
		if (kind == AggKind::kSum || kind == AggKind::kMean) {
			if (kind == AggKind::kMean || kFloating<T>) {
				s.dsum += static_cast<double>(v[i]);
			} else {
				using Wide = std::conditional_t<std::is_same_v<T, uint64_t>, uint64_t, int64_t>;
				s.isum += static_cast<uint64_t>(static_cast<Wide>(v[i]));
			}
			continue;
		}
		if constexpr (kFloating<T>) {
			const double x = static_cast<double>(v[i]);
			s.nonnan += x == x;
			if (kind == AggKind::kMin) {
				s.dmin = x < s.dmin ? x : s.dmin;
			} else {
				s.dmax = x > s.dmax ? x : s.dmax;
			}
		} else if constexpr (std::is_same_v<T, uint64_t>) {
			s.umin = std::min(s.umin, v[i]);
			s.umax = std::max(s.umax, v[i]);
		} else {
			const int64_t x = static_cast<int64_t>(v[i]);
			s.imin = std::min(s.imin, x);
			s.imax = std::max(s.imax, x);
		}
	}
}

} // namespace

void UpdateState(AggState &state, AggKind kind, AccumInput input, const void *data, const uint8_t *live, int64_t n) {
	if (kind == AggKind::kCountAll || data == nullptr) {
		state.count += live ? CountNonZero(live, n) : n;
		return;
	}
	switch (input) {
	case AccumInput::kBool:
		return UpdateTyped(state, kind, static_cast<const uint8_t *>(data), live, n);
	case AccumInput::kInt32:
		return UpdateTyped(state, kind, static_cast<const int32_t *>(data), live, n);
	case AccumInput::kInt64:
		return UpdateTyped(state, kind, static_cast<const int64_t *>(data), live, n);
	case AccumInput::kUInt64:
		return UpdateTyped(state, kind, static_cast<const uint64_t *>(data), live, n);
	case AccumInput::kFloat32:
		return UpdateTyped(state, kind, static_cast<const float *>(data), live, n);
	case AccumInput::kFloat64:
		return UpdateTyped(state, kind, static_cast<const double *>(data), live, n);
	}
}

void UpdateGroupedStates(AggState *states, AggKind kind, AccumInput input, const void *data, const uint8_t *live,
                         const uint32_t *ids, int64_t n) {
	if (kind == AggKind::kCountAll || data == nullptr) {
		for (int64_t i = 0; i < n; ++i) {
			states[ids[i]].count += live == nullptr || live[i];
		}
		return;
	}
	switch (input) {
	case AccumInput::kBool:
		return UpdateGroupedTyped(states, kind, static_cast<const uint8_t *>(data), live, ids, n);
	case AccumInput::kInt32:
		return UpdateGroupedTyped(states, kind, static_cast<const int32_t *>(data), live, ids, n);
	case AccumInput::kInt64:
		return UpdateGroupedTyped(states, kind, static_cast<const int64_t *>(data), live, ids, n);
	case AccumInput::kUInt64:
		return UpdateGroupedTyped(states, kind, static_cast<const uint64_t *>(data), live, ids, n);
	case AccumInput::kFloat32:
		return UpdateGroupedTyped(states, kind, static_cast<const float *>(data), live, ids, n);
	case AccumInput::kFloat64:
		return UpdateGroupedTyped(states, kind, static_cast<const double *>(data), live, ids, n);
	}
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
