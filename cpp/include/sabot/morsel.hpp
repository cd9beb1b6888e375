//===----------------------------------------------------------------------===//
// sabot/morsel.hpp
//
// Morsel planning: split a batch of rows into [offset, length) ranges of about
// MORSEL_SIZE_KB bytes each, using the real buffer sizes of the input.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <vector>

namespace sabot {

//! Default morsel size in bytes (MORSEL_SIZE_KB=64).
constexpr int64_t DEFAULT_MORSEL_BYTES = 64 * 1024;

//! A contiguous row range [offset, offset + length) of a batch.
struct Morsel {
	//! First row of the morsel.
	int64_t offset = 0;
	//! Number of rows (> 0 for every planned morsel).
	int64_t length = 0;
};

//! Rows per morsel so that one morsel covers about `morsel_bytes` of the input's buffers:
//! floor(morsel_bytes * num_rows / total_bytes), rounded down to a multiple of 64 rows when it is
//! at least 64 (validity bitmaps then slice on word boundaries), never below 1 and never above
//! num_rows. Zero-byte input (total_bytes == 0) gives one morsel. Throws std::invalid_argument for
//! negative sizes or morsel_bytes <= 0.
int64_t RowsPerMorsel(int64_t num_rows, int64_t total_bytes, int64_t morsel_bytes);

//! A computed morsel split of [0, num_rows): morsels are produced on demand, nothing is allocated.
class MorselPlan {
public:
	//! Plan num_rows rows whose buffers total total_bytes, with morsels of about morsel_bytes.
	MorselPlan(int64_t num_rows, int64_t total_bytes, int64_t morsel_bytes = DEFAULT_MORSEL_BYTES);

	//! Number of morsels (0 for empty input).
	int64_t NumMorsels() const {
		return num_morsels_;
	}
	//! Rows per morsel (every morsel but the last has exactly this many rows).
	int64_t RowsPerMorsel() const {
		return rows_per_morsel_;
	}
	//! Total rows planned.
	int64_t NumRows() const {
		return num_rows_;
	}
	//! The i-th morsel, 0 <= i < NumMorsels().
	Morsel Get(int64_t i) const {
		const int64_t offset = i * rows_per_morsel_;
		const int64_t rest = num_rows_ - offset;
		return Morsel {offset, rest < rows_per_morsel_ ? rest : rows_per_morsel_};
	}
	//! All morsels as a vector (tests, small inputs).
	std::vector<Morsel> ToVector() const;

private:
	//! Total rows.
	int64_t num_rows_;
	//! Rows in every full morsel.
	int64_t rows_per_morsel_;
	//! ceil(num_rows_ / rows_per_morsel_).
	int64_t num_morsels_;
};

//! Convenience: the morsels of MorselPlan(num_rows, total_bytes, morsel_bytes) as a vector.
std::vector<Morsel> PlanMorsels(int64_t num_rows, int64_t total_bytes, int64_t morsel_bytes = DEFAULT_MORSEL_BYTES);

} // namespace sabot
