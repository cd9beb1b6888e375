//===----------------------------------------------------------------------===//
// sabot/compute/bit_util.hpp
//
// Conversions between Arrow bitmaps and the byte-per-row masks the fused kernels use.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <cstring>

namespace sabot {
namespace compute {

//! 256 entries: byte b spread into 8 bytes of 0/1 (little-endian bit order, as Arrow's).
struct ByteSpreadTable {
	//! Spread values.
	uint64_t spread[256];
	constexpr ByteSpreadTable() : spread {} {
		for (int b = 0; b < 256; ++b) {
			uint64_t v = 0;
			for (int i = 0; i < 8; ++i) {
				v |= static_cast<uint64_t>((b >> i) & 1) << (8 * i);
			}
			spread[b] = v;
		}
	}
};

//! The shared spread table.
inline constexpr ByteSpreadTable kByteSpread {};

//! out[i] = bit (bit_offset + i) of `bits`, as 0/1 bytes, for i in [0, n).
inline void UnpackBits(const uint8_t *bits, int64_t bit_offset, int64_t n, uint8_t *out) {
	int64_t i = 0;
	if ((bit_offset & 7) == 0) {
		const uint8_t *src = bits + (bit_offset >> 3);
		for (; i + 8 <= n; i += 8) {
			std::memcpy(out + i, &kByteSpread.spread[src[i >> 3]], 8);
		}
	}
	for (; i < n; ++i) {
		const int64_t b = bit_offset + i;
		out[i] = (bits[b >> 3] >> (b & 7)) & 1;
	}
}

//! Write n 0/1 bytes as bits at bit position `bit_offset` of `bits` (bits outside the range are
//! kept). Byte-aligned starts take the fast path.
inline void PackBits(const uint8_t *bytes, int64_t n, uint8_t *bits, int64_t bit_offset) {
	int64_t i = 0;
	if ((bit_offset & 7) == 0) {
		uint8_t *dst = bits + (bit_offset >> 3);
		for (; i + 8 <= n; i += 8) {
			uint64_t v;
			std::memcpy(&v, bytes + i, 8);
			// Gather the low bit of every byte into one byte (bytes are 0 or 1).
			dst[i >> 3] = static_cast<uint8_t>(((v & 0x0101010101010101ULL) * 0x0102040810204080ULL) >> 56);
		}
	}
	for (; i < n; ++i) {
		const int64_t b = bit_offset + i;
		const uint8_t mask = static_cast<uint8_t>(1u << (b & 7));
		if (bytes[i]) {
			bits[b >> 3] |= mask;
		} else {
			bits[b >> 3] &= static_cast<uint8_t>(~mask);
		}
	}
}

//! Number of non-zero bytes among n.
inline int64_t CountNonZero(const uint8_t *bytes, int64_t n) {
	int64_t c = 0;
	for (int64_t i = 0; i < n; ++i) {
		c += bytes[i] != 0;
	}
	return c;
}

} // namespace compute
} // namespace sabot
