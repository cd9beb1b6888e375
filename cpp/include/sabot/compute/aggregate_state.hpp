//===----------------------------------------------------------------------===//
// sabot/compute/aggregate_state.hpp
//
// Partial states of sum, count, count_all, min, max and mean: updated per chunk (globally or per
// group id), merged across workers, and finalised into Arrow arrays with pyarrow's result types.
//===----------------------------------------------------------------------===//
#pragma once

#include <arrow/result.h>
#include <arrow/type_fwd.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sabot {
namespace compute {

//! The aggregate functions.
enum class AggKind : uint8_t { kSum, kCount, kCountAll, kMin, kMax, kMean };

//! Parse "sum", "count", "count_all", "min", "max", "mean".
std::optional<AggKind> ParseAggKind(const std::string &name);
//! The accepted names, comma separated (for error messages).
const char *AggKindNames();

//! The value domain an aggregate accumulates in (booleans as bytes).
enum class AccumInput : uint8_t { kBool, kInt32, kInt64, kUInt64, kFloat32, kFloat64 };

//! How values of `type` are accumulated: the domain, and (in *cast_to) the type an Arrow array of
//! `type` must be cast to first, or nullptr when it is used as is. nullopt: not aggregatable here.
std::optional<AccumInput> AccumInputOf(const arrow::DataType &type, std::shared_ptr<arrow::DataType> *cast_to);
//! The result type pyarrow gives `kind` over values of `input_type`.
std::shared_ptr<arrow::DataType> AggResultType(AggKind kind, const arrow::DataType &input_type);

//! One partial aggregate.
struct AggState {
	//! Integer sum (wrapping, as Arrow's).
	uint64_t isum = 0;
	//! Floating sum (also the sum behind mean).
	double dsum = 0;
	//! Valid (and selected) values seen.
	int64_t count = 0;
	//! Valid values that are not NaN (min/max of floats).
	int64_t nonnan = 0;
	//! Extremes per domain.
	int64_t imin = std::numeric_limits<int64_t>::max();
	int64_t imax = std::numeric_limits<int64_t>::min();
	uint64_t umin = std::numeric_limits<uint64_t>::max();
	uint64_t umax = 0;
	double dmin = std::numeric_limits<double>::infinity();
	double dmax = -std::numeric_limits<double>::infinity();
};

//! Fold n values into `state`. `live` (n bytes, 1 = counts) or nullptr when every row counts;
//! `data` may be null for kCountAll.
void UpdateState(AggState &state, AggKind kind, AccumInput input, const void *data, const uint8_t *live, int64_t n);
//! Fold n values into states[ids[i]] for every live row i.
void UpdateGroupedStates(AggState *states, AggKind kind, AccumInput input, const void *data, const uint8_t *live,
                         const uint32_t *ids, int64_t n);
//! Fold the rows rows[0..count) (already known to be live) into states[ids[row]].
void UpdateGroupedRows(AggState *states, AggKind kind, AccumInput input, const void *data, const int32_t *rows,
                       int64_t count, const uint32_t *ids);
//! Merge `from` into `into`.
void MergeState(AggState &into, const AggState &from);
//! The results of `states` (one row each) as an array of AggResultType(kind, input_type).
arrow::Result<std::shared_ptr<arrow::Array>> FinalizeStates(AggKind kind, AccumInput input,
                                                            const std::shared_ptr<arrow::DataType> &input_type,
                                                            const std::vector<const AggState *> &states);

} // namespace compute
} // namespace sabot
