#include "sabot/compute/batch_morsel.hpp"

#include "sabot/morsel.hpp"
#include "sabot/status_error.hpp"

#include <arrow/array/data.h>
#include <arrow/util/byte_size.h>

#include <algorithm>
#include <numeric>

namespace sabot {
namespace compute {

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

std::vector<BatchMorsel> PlanBatchMorsels(const ColumnarInput &input, const std::vector<int> &columns,
                                          int64_t morsel_bytes) {
	std::vector<BatchMorsel> morsels;
	for (size_t b = 0; b < input.batches.size(); ++b) {
		const auto &batch = *input.batches[b];
		const int64_t rows = batch.num_rows();
		int64_t per = RowsPerMorsel(rows, BatchBytes(batch, columns), morsel_bytes);
		per = std::max<int64_t>(8, per - per % 8);
		for (int64_t off = 0; off < rows; off += per) {
			morsels.push_back(BatchMorsel {static_cast<int>(b), off, std::min(per, rows - off)});
		}
	}
	return morsels;
}

} // namespace compute
} // namespace sabot
