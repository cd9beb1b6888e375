//===----------------------------------------------------------------------===//
// sabot/compute/worker_scratch.hpp
//
// Scratch memory of one worker thread during a columnar call: one fused frame per program and
// byte buffers, reused from morsel to morsel.
//===----------------------------------------------------------------------===//
#pragma once

#include "sabot/compute/fused_program.hpp"

#include <cstdint>
#include <memory>
#include <vector>

namespace sabot {
namespace compute {

//! Per-worker scratch: fused frames (one per program slot) and byte buffers.
struct WorkerScratch {
	//! Frames by slot, created on first use.
	std::vector<std::unique_ptr<FusedFrame>> frames;
	//! The selection of the current morsel (1 = row kept).
	std::vector<uint8_t> mask;
	//! Unpacked bits (validity, keys).
	std::vector<uint8_t> bytes;
	//! validity & selection of one chunk.
	std::vector<uint8_t> live;
	//! Group id per row of the current morsel.
	std::vector<uint32_t> ids;

	//! The frame of slot `i`, created for `program` on first use.
	FusedFrame &Frame(size_t i, const FusedProgram &program) {
		if (frames.size() <= i) {
			frames.resize(i + 1);
		}
		if (!frames[i]) {
			frames[i] = std::make_unique<FusedFrame>(program);
		}
		return *frames[i];
	}
};

} // namespace compute
} // namespace sabot
