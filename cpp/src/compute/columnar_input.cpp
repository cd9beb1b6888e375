#include "sabot/compute/columnar_input.hpp"

#include "sabot/status_error.hpp"

#include <arrow/array.h>

namespace sabot {
namespace compute {

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

void ColumnarInput::WarmNullCounts() const {
	for (const auto &batch : batches) {
		for (int i = 0; i < batch->num_columns(); ++i) {
			batch->column(i)->null_count();
		}
	}
}

std::vector<int64_t> ColumnarInput::BatchStarts() const {
	std::vector<int64_t> starts(batches.size() + 1, 0);
	for (size_t b = 0; b < batches.size(); ++b) {
		starts[b + 1] = starts[b] + batches[b]->num_rows();
	}
	return starts;
}

} // namespace compute
} // namespace sabot
