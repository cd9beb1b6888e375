#include "sabot/morsel.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

using namespace sabot;

TEST(MorselPlan, SizedByBytesNotRows) {
	// 1M rows of 16 bytes (int64 + float64): 64 KiB holds 4096 rows.
	MorselPlan plan(1'000'000, 16'000'000, 64 * 1024);
	EXPECT_EQ(plan.RowsPerMorsel(), 4096);
	// Same rows but 4x wider: a quarter of the rows per morsel.
	MorselPlan wide(1'000'000, 64'000'000, 64 * 1024);
	EXPECT_EQ(wide.RowsPerMorsel(), 1024);
	// Bigger morsels, more rows.
	MorselPlan big(1'000'000, 16'000'000, 4 * 1024 * 1024);
	EXPECT_EQ(big.RowsPerMorsel(), 262144);
}

TEST(MorselPlan, CoversEveryRowOnceInOrder) {
	for (int64_t rows : {1, 7, 63, 64, 65, 1000, 4097, 123457}) {
		for (int64_t bytes_per_row : {1, 8, 24, 1000}) {
			for (int64_t morsel_bytes : {1, 100, 4096, 65536}) {
				const auto morsels = PlanMorsels(rows, rows * bytes_per_row, morsel_bytes);
				int64_t next = 0;
				for (const auto &m : morsels) {
					EXPECT_EQ(m.offset, next);
					EXPECT_GT(m.length, 0);
					next += m.length;
				}
				EXPECT_EQ(next, rows);
			}
		}
	}
}

TEST(MorselPlan, RowsAlignedTo64WhenLarge) {
	MorselPlan plan(100'000, 100'000 * 24, 65536); // 2730.67 rows -> 2688
	EXPECT_EQ(plan.RowsPerMorsel() % 64, 0);
	EXPECT_LE(plan.RowsPerMorsel() * 24, 65536);
}

TEST(MorselPlan, EdgeCases) {
	EXPECT_EQ(MorselPlan(0, 0, 65536).NumMorsels(), 0);
	EXPECT_EQ(MorselPlan(0, 100, 65536).NumMorsels(), 0);
	// Zero-byte rows (e.g. a null-type column) fit in one morsel.
	EXPECT_EQ(MorselPlan(1000, 0, 65536).NumMorsels(), 1);
	// A row larger than the morsel still makes progress: one row per morsel.
	EXPECT_EQ(MorselPlan(10, 10 * 1'000'000, 65536).NumMorsels(), 10);
	// Whole input smaller than one morsel.
	EXPECT_EQ(MorselPlan(100, 800, 65536).NumMorsels(), 1);
	// 64-bit overflow guard: huge morsel size times many rows.
	EXPECT_EQ(MorselPlan(50'000'000, 800'000'000, int64_t(1) << 40).NumMorsels(), 1);
}

TEST(MorselPlan, RejectsInvalidSizes) {
	EXPECT_THROW(MorselPlan(-1, 0, 65536), std::invalid_argument);
	EXPECT_THROW(MorselPlan(10, -5, 65536), std::invalid_argument);
	EXPECT_THROW(MorselPlan(10, 80, 0), std::invalid_argument);
}
