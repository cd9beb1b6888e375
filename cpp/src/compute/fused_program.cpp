#include "sabot/compute/fused_program.hpp"

#include "sabot/compute/bit_util.hpp"
#include "sabot/status_error.hpp"

#include <arrow/array/data.h>
#include <arrow/compute/api_scalar.h>
#include <arrow/compute/cast.h>
#include <arrow/scalar.h>
#include <arrow/type.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <type_traits>

namespace sabot {
namespace compute {

namespace {

//! Bytes of one register's values (kChunkRows values of at most 8 bytes).
constexpr int64_t kRegisterBytes = kChunkRows * 8;

//! Thrown by the compiler when a node is outside the fused subset (never escapes Compile).
struct Unsupported {};

//! Error codes a kernel reports per row.
enum : uint8_t { kNoError = 0, kOverflow = 1, kDivideByZero = 2 };

[[noreturn]] void ThrowCode(uint8_t code) {
	if (code == kDivideByZero) {
		throw StatusError(arrow::Status::Invalid("divide by zero"));
	}
	throw StatusError(arrow::Status::Invalid("overflow"));
}

//! Whether row i counts for errors: valid and selected.
inline bool Live(const uint8_t *valid, const uint8_t *sel, int64_t i) {
	return (valid == nullptr || valid[i]) && (sel == nullptr || sel[i]);
}

} // namespace

struct EvalContext;
using KernelFn = void (*)(const Instruction &, EvalContext &);

//! One step of a program: a kernel and its operands.
struct Instruction {
	//! The type-specialised kernel.
	KernelFn fn = nullptr;
	//! Output register and input registers (-1 = unused).
	int out = -1, a = -1, b = -1, c = -1;
	//! Column index for loads.
	int column = -1;
	//! Constant divisor and its multiply-shift parameters (division/modulo by a literal).
	int64_t divisor = 0;
	int64_t magic = 0;
	int shift = 0;
	int64_t add_mask = 0;
	int64_t sub_mask = 0;
	//! Options: nan_is_null (is_null), allow_int_overflow (cast).
	bool flag = false;
	//! Options: allow_float_truncate (cast).
	bool flag2 = false;
};

//! The state one Evaluate call threads through the kernels.
struct EvalContext {
	ChunkView *slots;
	uint8_t *storage;
	int num_registers;
	int64_t n;
	const uint8_t *sel;
	const arrow::RecordBatch *batch;
	int64_t row;

	template <typename T>
	const T *In(int r) const {
		return static_cast<const T *>(slots[r].data);
	}
	const uint8_t *Valid(int r) const {
		return slots[r].valid;
	}
	template <typename T>
	T *Out(int r) {
		T *p = reinterpret_cast<T *>(storage + static_cast<int64_t>(r) * kRegisterBytes);
		slots[r].data = p;
		return p;
	}
	uint8_t *ValidBuffer(int r) {
		return storage + static_cast<int64_t>(num_registers) * kRegisterBytes + static_cast<int64_t>(r) * kChunkRows;
	}
	uint8_t *OutValid(int r) {
		uint8_t *p = ValidBuffer(r);
		slots[r].valid = p;
		return p;
	}
	//! out validity = a AND b, sharing an input's bytes when the other is all valid.
	void CombineValidity(int out, int a, int b) {
		const uint8_t *va = Valid(a);
		const uint8_t *vb = Valid(b);
		if (va == nullptr || vb == nullptr) {
			slots[out].valid = va == nullptr ? vb : va;
			return;
		}
		uint8_t *o = OutValid(out);
		for (int64_t i = 0; i < n; ++i) {
			o[i] = va[i] & vb[i];
		}
	}
};

//! What an instruction computes; an ISA's SelectKernel maps it and its types to a kernel.
enum class OpCode : uint8_t {
	kLoad,
	kAdd,
	kAddChecked,
	kSubtract,
	kSubtractChecked,
	kMultiply,
	kMultiplyChecked,
	kDivide,
	kDivideChecked,
	kModulo,
	kModuloChecked,
	kNegate,
	kNegateChecked,
	kAbs,
	kAbsChecked,
	kEqual,
	kNotEqual,
	kLess,
	kLessEqual,
	kGreater,
	kGreaterEqual,
	kAnd,
	kOr,
	kXor,
	kAndKleene,
	kOrKleene,
	kInvert,
	kIsNull,
	kIsValid,
	kCast,
	kIfElse,
	kConstDivide,
	kConstModulo
};

using KernelSelector = KernelFn (*)(OpCode, ValueType, ValueType);

// The kernels are compiled twice: for the baseline ISA, and (GCC on x86-64) for AVX2/FMA, where
// the vectoriser gets 256-bit registers. The choice is made once, from the CPU, at run time. Both
// copies live in anonymous namespaces, so no symbol of one can stand in for the other.
namespace {
namespace generic_isa {
#include "fused_kernels.inc"
} // namespace generic_isa
} // namespace

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SABOT_AVX2_KERNELS 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2,popcnt,lzcnt,f16c")
namespace {
namespace avx2_isa {
#include "fused_kernels.inc"
} // namespace avx2_isa
} // namespace
#pragma GCC pop_options
#endif

namespace {

KernelSelector ChooseSelector() {
#ifdef SABOT_AVX2_KERNELS
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2")) {
		return &avx2_isa::SelectKernel;
	}
#endif
	return &generic_isa::SelectKernel;
}

//! The selector for this CPU (decided once).
KernelSelector Selector() {
	static const KernelSelector selector = ChooseSelector();
	return selector;
}

} // namespace

const char *FusedKernelIsa() {
#ifdef SABOT_AVX2_KERNELS
	if (Selector() == &avx2_isa::SelectKernel) {
		return "avx2";
	}
#endif
	return "generic";
}

namespace {

//! Signed division magic (Hacker's Delight, 10-1) for |d| >= 2: q = mulhi(M, n) (+/- n) >> s,
//! then +1 when negative.
void SignedMagic(int64_t d, int64_t &magic, int &shift) {
	const uint64_t two63 = 1ULL << 63;
	const uint64_t ad = d < 0 ? (0 - static_cast<uint64_t>(d)) : static_cast<uint64_t>(d);
	const uint64_t t = two63 + (static_cast<uint64_t>(d) >> 63);
	const uint64_t anc = t - 1 - t % ad;
	int p = 63;
	uint64_t q1 = two63 / anc, r1 = two63 - q1 * anc;
	uint64_t q2 = two63 / ad, r2 = two63 - q2 * ad;
	uint64_t delta;
	do {
		++p;
		q1 <<= 1;
		r1 <<= 1;
		if (r1 >= anc) {
			++q1;
			r1 -= anc;
		}
		q2 <<= 1;
		r2 <<= 1;
		if (r2 >= ad) {
			++q2;
			r2 -= ad;
		}
		delta = ad - r2;
	} while (q1 < delta || (q1 == delta && r1 == 0));
	uint64_t m = q2 + 1;
	if (d < 0) {
		m = 0 - m;
	}
	magic = static_cast<int64_t>(m);
	shift = p - 64;
}

ValueType TypeOf(const arrow::DataType *type) {
	if (type == nullptr) {
		throw Unsupported {};
	}
	auto vt = ToValueType(*type);
	if (!vt) {
		throw Unsupported {};
	}
	return *vt;
}

} // namespace

//===--------------------------------------------------------------------===//
// Compiler
//===--------------------------------------------------------------------===//

class ProgramCompiler {
public:
	ProgramCompiler(FusedProgram &program, const arrow::Schema &schema) : program_(program), schema_(schema) {
	}

	int Emit(const arrow::compute::Expression &e) {
		if (const arrow::Datum *lit = e.literal()) {
			return EmitLiteral(*lit);
		}
		if (const arrow::FieldRef *ref = e.field_ref()) {
			return EmitField(*ref);
		}
		const auto *call = e.call();
		if (call == nullptr) {
			throw Unsupported {};
		}
		const std::string &name = call->function_name;
		const ValueType out_type = TypeOf(e.type());
		const auto &args = call->arguments;
		for (const auto &arg : args) {
			TypeOf(arg.type());
		}
		Instruction ins;
		if (args.size() == 2 && IsArithmetic(name)) {
			if (TypeOf(args[0].type()) != out_type || TypeOf(args[1].type()) != out_type) {
				throw Unsupported {};
			}
			if (TryConstDiv(name, args, out_type, ins)) {
				return Push(ins);
			}
			ins.fn = Select(ArithOp(name), out_type);
			ins.a = Emit(args[0]);
			ins.b = Emit(args[1]);
			return Push(ins);
		}
		if (args.size() == 1 && (name == "negate" || name == "negate_checked" || name == "abs" || name == "abs_checked")) {
			if (TypeOf(args[0].type()) != out_type) {
				throw Unsupported {};
			}
			if (name == "negate") {
				ins.fn = Select(OpCode::kNegate, out_type);
			} else if (name == "negate_checked") {
				ins.fn = Select(OpCode::kNegateChecked, out_type);
			} else if (name == "abs") {
				ins.fn = Select(OpCode::kAbs, out_type);
			} else {
				ins.fn = Select(OpCode::kAbsChecked, out_type);
			}
			ins.a = Emit(args[0]);
			return Push(ins);
		}
		if (args.size() == 2 && IsComparison(name)) {
			const ValueType t = TypeOf(args[0].type());
			if (TypeOf(args[1].type()) != t || out_type != ValueType::kBool) {
				throw Unsupported {};
			}
			if (t == ValueType::kBool && name != "equal" && name != "not_equal") {
				throw Unsupported {};
			}
			ins.fn = Select(CompareOp(name), t);
			ins.a = Emit(args[0]);
			ins.b = Emit(args[1]);
			return Push(ins);
		}
		if (args.size() == 2 && (name == "and" || name == "or" || name == "xor" || name == "and_kleene" ||
		                         name == "or_kleene")) {
			RequireBool(args[0]);
			RequireBool(args[1]);
			if (name == "and") {
				ins.fn = Select(OpCode::kAnd, ValueType::kBool);
			} else if (name == "or") {
				ins.fn = Select(OpCode::kOr, ValueType::kBool);
			} else if (name == "xor") {
				ins.fn = Select(OpCode::kXor, ValueType::kBool);
			} else if (name == "and_kleene") {
				ins.fn = Select(OpCode::kAndKleene, ValueType::kBool);
			} else {
				ins.fn = Select(OpCode::kOrKleene, ValueType::kBool);
			}
			ins.a = Emit(args[0]);
			ins.b = Emit(args[1]);
			return Push(ins);
		}
		if (args.size() == 1 && name == "invert") {
			RequireBool(args[0]);
			ins.fn = Select(OpCode::kInvert, ValueType::kBool);
			ins.a = Emit(args[0]);
			return Push(ins);
		}
		if (args.size() == 1 && (name == "is_null" || name == "is_valid")) {
			const ValueType t = TypeOf(args[0].type());
			if (name == "is_null") {
				ins.fn = Select(OpCode::kIsNull, t);
				if (call->options) {
					const auto *opts = dynamic_cast<const arrow::compute::NullOptions *>(call->options.get());
					if (opts == nullptr) {
						throw Unsupported {};
					}
					ins.flag = opts->nan_is_null;
				}
			} else {
				ins.fn = Select(OpCode::kIsValid, t);
			}
			ins.a = Emit(args[0]);
			return Push(ins);
		}
		if (args.size() == 1 && name == "cast") {
			const auto *opts = dynamic_cast<const arrow::compute::CastOptions *>(call->options.get());
			if (opts == nullptr) {
				throw Unsupported {};
			}
			const ValueType from = TypeOf(args[0].type());
			if (from == out_type) {
				return Emit(args[0]);
			}
			ins.fn = Select(OpCode::kCast, from, out_type);
			ins.flag = opts->allow_int_overflow;
			ins.flag2 = opts->allow_float_truncate;
			ins.a = Emit(args[0]);
			return Push(ins);
		}
		if (args.size() == 3 && name == "if_else") {
			RequireBool(args[0]);
			if (TypeOf(args[1].type()) != out_type || TypeOf(args[2].type()) != out_type) {
				throw Unsupported {};
			}
			ins.fn = Select(OpCode::kIfElse, out_type);
			ins.a = Emit(args[0]);
			ins.b = Emit(args[1]);
			ins.c = Emit(args[2]);
			return Push(ins);
		}
		throw Unsupported {};
	}

private:
	static bool IsArithmetic(const std::string &n) {
		return n == "add" || n == "add_checked" || n == "subtract" || n == "subtract_checked" || n == "multiply" ||
		       n == "multiply_checked" || n == "divide" || n == "divide_checked" || n == "modulo" ||
		       n == "modulo_checked";
	}
	static bool IsComparison(const std::string &n) {
		return n == "equal" || n == "not_equal" || n == "less" || n == "less_equal" || n == "greater" ||
		       n == "greater_equal";
	}
	static OpCode ArithOp(const std::string &n) {
		static const std::pair<const char *, OpCode> kOps[] = {
		    {"add", OpCode::kAdd},           {"add_checked", OpCode::kAddChecked},
		    {"subtract", OpCode::kSubtract}, {"subtract_checked", OpCode::kSubtractChecked},
		    {"multiply", OpCode::kMultiply}, {"multiply_checked", OpCode::kMultiplyChecked},
		    {"divide", OpCode::kDivide},     {"divide_checked", OpCode::kDivideChecked},
		    {"modulo", OpCode::kModulo},     {"modulo_checked", OpCode::kModuloChecked}};
		for (const auto &[name, op] : kOps) {
			if (n == name) {
				return op;
			}
		}
		throw Unsupported {};
	}
	static OpCode CompareOp(const std::string &n) {
		static const std::pair<const char *, OpCode> kOps[] = {
		    {"equal", OpCode::kEqual}, {"not_equal", OpCode::kNotEqual},       {"less", OpCode::kLess},
		    {"less_equal", OpCode::kLessEqual}, {"greater", OpCode::kGreater}, {"greater_equal", OpCode::kGreaterEqual}};
		for (const auto &[name, op] : kOps) {
			if (n == name) {
				return op;
			}
		}
		throw Unsupported {};
	}
	KernelFn Select(OpCode op, ValueType t, ValueType t2 = ValueType::kBool) const {
		return select_(op, t, t2);
	}
	static void RequireBool(const arrow::compute::Expression &e) {
		if (TypeOf(e.type()) != ValueType::kBool) {
			throw Unsupported {};
		}
	}

	//! Integer division/modulo by a non-null literal with |d| >= 2: the multiply-shift kernel.
	bool TryConstDiv(const std::string &name, const std::vector<arrow::compute::Expression> &args, ValueType t,
	                 Instruction &ins) {
		const bool is_mod = name == "modulo" || name == "modulo_checked";
		const bool is_div = name == "divide" || name == "divide_checked";
		if ((!is_mod && !is_div) || (t != ValueType::kInt32 && t != ValueType::kInt64)) {
			return false;
		}
		const arrow::Datum *lit = args[1].literal();
		if (lit == nullptr || !lit->is_scalar() || !lit->scalar()->is_valid) {
			return false;
		}
		int64_t d;
		if (t == ValueType::kInt32) {
			d = static_cast<const arrow::Int32Scalar &>(*lit->scalar()).value;
		} else {
			d = static_cast<const arrow::Int64Scalar &>(*lit->scalar()).value;
		}
		if (d == 0 || d == 1 || d == -1 || d == std::numeric_limits<int64_t>::min()) {
			return false;
		}
		SignedMagic(d, ins.magic, ins.shift);
		ins.divisor = d;
		ins.add_mask = (d > 0 && ins.magic < 0) ? -1 : 0;
		ins.sub_mask = (d < 0 && ins.magic > 0) ? -1 : 0;
		ins.fn = Select(is_mod ? OpCode::kConstModulo : OpCode::kConstDivide, t);
		ins.a = Emit(args[0]);
		return true;
	}

	int EmitField(const arrow::FieldRef &ref) {
		auto path = ref.FindOne(schema_);
		if (!path.ok() || path->indices().size() != 1) {
			throw Unsupported {};
		}
		const int column = path->indices()[0];
		const ValueType t = TypeOf(schema_.field(column)->type().get());
		Instruction ins;
		ins.fn = Select(OpCode::kLoad, t);
		ins.column = column;
		return Push(ins);
	}

	int EmitLiteral(const arrow::Datum &lit) {
		if (!lit.is_scalar()) {
			throw Unsupported {};
		}
		const arrow::Scalar &s = *lit.scalar();
		const ValueType t = TypeOf(s.type.get());
		auto values = std::make_unique<uint8_t[]>(kRegisterBytes);
		ChunkView view;
		view.data = values.get();
		if (s.is_valid) {
			switch (t) {
			case ValueType::kBool:
				Fill<uint8_t>(values.get(), static_cast<const arrow::BooleanScalar &>(s).value ? 1 : 0);
				break;
			case ValueType::kInt32:
				Fill<int32_t>(values.get(), static_cast<const arrow::Int32Scalar &>(s).value);
				break;
			case ValueType::kInt64:
				Fill<int64_t>(values.get(), static_cast<const arrow::Int64Scalar &>(s).value);
				break;
			case ValueType::kFloat32:
				Fill<float>(values.get(), static_cast<const arrow::FloatScalar &>(s).value);
				break;
			case ValueType::kFloat64:
				Fill<double>(values.get(), static_cast<const arrow::DoubleScalar &>(s).value);
				break;
			}
		} else {
			// A null literal: every row invalid (zeroed validity bytes).
			auto invalid = std::make_unique<uint8_t[]>(kChunkRows);
			view.valid = invalid.get();
			program_.literal_storage_.push_back(std::move(invalid));
		}
		program_.literal_storage_.push_back(std::move(values));
		const int reg = program_.num_registers_++;
		program_.literal_slots_.emplace_back(reg, view);
		return reg;
	}

	template <typename T>
	static void Fill(uint8_t *buf, T v) {
		T *p = reinterpret_cast<T *>(buf);
		for (int64_t i = 0; i < kChunkRows; ++i) {
			p[i] = v;
		}
	}

	int Push(Instruction ins) {
		ins.out = program_.num_registers_++;
		program_.code_.push_back(ins);
		return ins.out;
	}

	FusedProgram &program_;
	const arrow::Schema &schema_;
	KernelSelector select_ = Selector();
};

FusedProgram::FusedProgram() = default;
FusedProgram::~FusedProgram() = default;

std::unique_ptr<FusedProgram> FusedProgram::Compile(const arrow::compute::Expression &bound,
                                                    const arrow::Schema &schema) {
	if (!bound.IsBound()) {
		return nullptr;
	}
	std::unique_ptr<FusedProgram> program(new FusedProgram());
	try {
		ProgramCompiler compiler(*program, schema);
		program->result_register_ = compiler.Emit(bound);
		program->result_type_ = TypeOf(bound.type());
	} catch (const Unsupported &) {
		return nullptr;
	}
	return program;
}

ChunkView FusedProgram::Evaluate(FusedFrame &frame, const arrow::RecordBatch &batch, int64_t row, int64_t n,
                                 const uint8_t *sel) const {
	EvalContext c {frame.slots_.data(), frame.storage_, num_registers_, n, sel, &batch, row};
	for (const Instruction &ins : code_) {
		ins.fn(ins, c);
	}
	return frame.slots_[result_register_];
}

FusedFrame::FusedFrame(const FusedProgram &program) {
	const int64_t bytes = static_cast<int64_t>(program.num_registers_) * (kRegisterBytes + kChunkRows) + 64;
	storage_ = static_cast<uint8_t *>(std::aligned_alloc(64, static_cast<size_t>((bytes + 63) / 64 * 64)));
	if (storage_ == nullptr) {
		throw std::bad_alloc();
	}
	slots_.resize(program.num_registers_);
	for (const auto &[reg, view] : program.literal_slots_) {
		slots_[reg] = view;
	}
}

FusedFrame::~FusedFrame() {
	std::free(storage_);
}

} // namespace compute
} // namespace sabot
