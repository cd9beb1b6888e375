#include "sabot/morsel.hpp"

#include <stdexcept>
#include <string>

namespace sabot {

int64_t RowsPerMorsel(int64_t num_rows, int64_t total_bytes, int64_t morsel_bytes) {
	if (num_rows < 0 || total_bytes < 0) {
		throw std::invalid_argument("morsel planning: num_rows and total_bytes must be >= 0, got " +
		                            std::to_string(num_rows) + " and " + std::to_string(total_bytes));
	}
	if (morsel_bytes <= 0) {
		throw std::invalid_argument("morsel planning: morsel size must be > 0 bytes, got " + std::to_string(morsel_bytes));
	}
	if (num_rows == 0) {
		return 1;
	}
	if (total_bytes == 0) {
		return num_rows;
	}
	// 128-bit product: 50M rows x 1 GB morsels would overflow 64 bits.
	const __int128 wide = static_cast<__int128>(morsel_bytes) * num_rows / total_bytes;
	int64_t rows = wide > num_rows ? num_rows : static_cast<int64_t>(wide);
	if (rows >= 64 && rows < num_rows) {
		rows -= rows % 64;
	}
	return rows < 1 ? 1 : rows;
}

MorselPlan::MorselPlan(int64_t num_rows, int64_t total_bytes, int64_t morsel_bytes)
    : num_rows_(num_rows), rows_per_morsel_(sabot::RowsPerMorsel(num_rows, total_bytes, morsel_bytes)),
      num_morsels_(num_rows == 0 ? 0 : (num_rows + rows_per_morsel_ - 1) / rows_per_morsel_) {
}

std::vector<Morsel> MorselPlan::ToVector() const {
	std::vector<Morsel> out;
	out.reserve(static_cast<size_t>(num_morsels_));
	for (int64_t i = 0; i < num_morsels_; i++) {
		out.push_back(Get(i));
	}
	return out;
}

std::vector<Morsel> PlanMorsels(int64_t num_rows, int64_t total_bytes, int64_t morsel_bytes) {
	return MorselPlan(num_rows, total_bytes, morsel_bytes).ToVector();
}

} // namespace sabot
