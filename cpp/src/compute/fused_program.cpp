#include "sabot/compute/fused_program.hpp"

#include "sabot/compute/bit_util.hpp"
#include "sabot/status_error.hpp"

#include <arrow/array/data.h>
#include <arrow/compute/api_scalar.h>
#include <arrow/compute/cast.h>
#include <arrow/scalar.h>
#include <arrow/type.h>

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

namespace {

//===--------------------------------------------------------------------===//
// Element operations. Call(a, b, err) returns the result and ORs an error code into err.
//===--------------------------------------------------------------------===//

template <typename T>
using Unsigned = std::make_unsigned_t<T>;

template <bool kChecked>
struct AddOp {
	template <typename T>
	static T Call(T a, T b, uint8_t &err) {
		if constexpr (std::is_integral_v<T>) {
			const T r = static_cast<T>(static_cast<Unsigned<T>>(a) + static_cast<Unsigned<T>>(b));
			if constexpr (kChecked) {
				err |= static_cast<uint8_t>(((a ^ r) & (b ^ r)) < 0);
			}
			return r;
		} else {
			(void)err;
			return a + b;
		}
	}
};

template <bool kChecked>
struct SubtractOp {
	template <typename T>
	static T Call(T a, T b, uint8_t &err) {
		if constexpr (std::is_integral_v<T>) {
			const T r = static_cast<T>(static_cast<Unsigned<T>>(a) - static_cast<Unsigned<T>>(b));
			if constexpr (kChecked) {
				err |= static_cast<uint8_t>(((a ^ b) & (a ^ r)) < 0);
			}
			return r;
		} else {
			(void)err;
			return a - b;
		}
	}
};

template <bool kChecked>
struct MultiplyOp {
	template <typename T>
	static T Call(T a, T b, uint8_t &err) {
		if constexpr (std::is_integral_v<T>) {
			if constexpr (kChecked) {
				T r;
				err |= static_cast<uint8_t>(__builtin_mul_overflow(a, b, &r));
				return r;
			} else {
				return static_cast<T>(static_cast<Unsigned<T>>(a) * static_cast<Unsigned<T>>(b));
			}
		} else {
			(void)err;
			return a * b;
		}
	}
};

// Arrow: integer division truncates; x / 0 is an error in both variants; MIN / -1 is 0 unchecked
// and an overflow checked. Floating division by zero is an error only when checked.
template <bool kChecked>
struct DivideOp {
	template <typename T>
	static T Call(T a, T b, uint8_t &err) {
		if constexpr (std::is_integral_v<T>) {
			if (b == 0) {
				err |= kDivideByZero;
				return 0;
			}
			if (b == -1 && a == std::numeric_limits<T>::min()) {
				if constexpr (kChecked) {
					err |= kOverflow;
				}
				return 0;
			}
			return a / b;
		} else {
			if constexpr (kChecked) {
				err |= static_cast<uint8_t>(b == 0) * kDivideByZero;
			}
			return a / b;
		}
	}
};

// Arrow's modulo is floored (the result has the divisor's sign), as Python's %.
template <bool kChecked>
struct ModuloOp {
	template <typename T>
	static T Call(T a, T b, uint8_t &err) {
		if constexpr (std::is_integral_v<T>) {
			if (b == 0) {
				err |= kDivideByZero;
				return 0;
			}
			if (b == -1) {
				if constexpr (kChecked) {
					if (a == std::numeric_limits<T>::min()) {
						err |= kOverflow;
					}
				}
				return 0;
			}
			T r = a % b;
			if (r != 0 && ((r ^ b) < 0)) {
				r += b;
			}
			return r;
		} else {
			if constexpr (kChecked) {
				err |= static_cast<uint8_t>(b == 0) * kDivideByZero;
			}
			T r = std::fmod(a, b);
			if (r != 0 && ((r < 0) != (b < 0))) {
				r += b;
			}
			return r;
		}
	}
};

template <bool kChecked>
struct NegateOp {
	template <typename T>
	static T Call(T a, uint8_t &err) {
		if constexpr (std::is_integral_v<T>) {
			if constexpr (kChecked) {
				err |= static_cast<uint8_t>(a == std::numeric_limits<T>::min());
			}
			return static_cast<T>(Unsigned<T>(0) - static_cast<Unsigned<T>>(a));
		} else {
			(void)err;
			return -a;
		}
	}
};

template <bool kChecked>
struct AbsOp {
	template <typename T>
	static T Call(T a, uint8_t &err) {
		if constexpr (std::is_integral_v<T>) {
			if constexpr (kChecked) {
				err |= static_cast<uint8_t>(a == std::numeric_limits<T>::min());
			}
			return a < 0 ? static_cast<T>(Unsigned<T>(0) - static_cast<Unsigned<T>>(a)) : a;
		} else {
			(void)err;
			return std::fabs(a);
		}
	}
};

struct EqualOp {
	template <typename T>
	static uint8_t Call(T a, T b) {
		return a == b;
	}
};
struct NotEqualOp {
	template <typename T>
	static uint8_t Call(T a, T b) {
		return a != b;
	}
};
struct LessOp {
	template <typename T>
	static uint8_t Call(T a, T b) {
		return a < b;
	}
};
struct LessEqualOp {
	template <typename T>
	static uint8_t Call(T a, T b) {
		return a <= b;
	}
};
struct GreaterOp {
	template <typename T>
	static uint8_t Call(T a, T b) {
		return a > b;
	}
};
struct GreaterEqualOp {
	template <typename T>
	static uint8_t Call(T a, T b) {
		return a >= b;
	}
};

struct AndOp {
	static uint8_t Call(uint8_t a, uint8_t b) {
		return a & b;
	}
};
struct OrOp {
	static uint8_t Call(uint8_t a, uint8_t b) {
		return a | b;
	}
};
struct XorOp {
	static uint8_t Call(uint8_t a, uint8_t b) {
		return a ^ b;
	}
};

//===--------------------------------------------------------------------===//
// Kernels
//===--------------------------------------------------------------------===//

template <typename T>
void LoadColumnKernel(const Instruction &ins, EvalContext &c) {
	const arrow::ArrayData &d = *c.batch->column_data(ins.column);
	const int64_t off = d.offset + c.row;
	if constexpr (std::is_same_v<T, uint8_t>) {
		UnpackBits(d.buffers[1]->data(), off, c.n, c.Out<uint8_t>(ins.out));
	} else {
		c.slots[ins.out].data = reinterpret_cast<const T *>(d.buffers[1]->data()) + off;
	}
	if (d.MayHaveNulls() && d.buffers[0] != nullptr) {
		UnpackBits(d.buffers[0]->data(), off, c.n, c.OutValid(ins.out));
	} else {
		c.slots[ins.out].valid = nullptr;
	}
}

template <typename Op, typename T>
void BinaryArithKernel(const Instruction &ins, EvalContext &c) {
	const T *__restrict a = c.In<T>(ins.a);
	const T *__restrict b = c.In<T>(ins.b);
	T *__restrict o = c.Out<T>(ins.out);
	const int64_t n = c.n;
	c.CombineValidity(ins.out, ins.a, ins.b);
	uint8_t bad = 0;
	for (int64_t i = 0; i < n; ++i) {
		uint8_t err = 0;
		o[i] = Op::template Call<T>(a[i], b[i], err);
		bad |= err;
	}
	if (bad) {
		const uint8_t *valid = c.Valid(ins.out);
		for (int64_t i = 0; i < n; ++i) {
			uint8_t err = 0;
			Op::template Call<T>(a[i], b[i], err);
			if (err && Live(valid, c.sel, i)) {
				ThrowCode(err);
			}
		}
	}
}

template <typename Op, typename T>
void UnaryArithKernel(const Instruction &ins, EvalContext &c) {
	const T *__restrict a = c.In<T>(ins.a);
	T *__restrict o = c.Out<T>(ins.out);
	const int64_t n = c.n;
	c.slots[ins.out].valid = c.Valid(ins.a);
	uint8_t bad = 0;
	for (int64_t i = 0; i < n; ++i) {
		uint8_t err = 0;
		o[i] = Op::template Call<T>(a[i], err);
		bad |= err;
	}
	if (bad) {
		const uint8_t *valid = c.Valid(ins.out);
		for (int64_t i = 0; i < n; ++i) {
			uint8_t err = 0;
			Op::template Call<T>(a[i], err);
			if (err && Live(valid, c.sel, i)) {
				ThrowCode(err);
			}
		}
	}
}

inline int64_t MulHi(int64_t a, int64_t b) {
	return static_cast<int64_t>((static_cast<__int128>(a) * b) >> 64);
}

// Division or floored modulo by a literal |d| >= 2 without a hardware divide: the quotient is a
// multiply-high by a precomputed magic number, a correction and a shift (Granlund-Montgomery).
template <typename T, bool kModulo>
void ConstDivKernel(const Instruction &ins, EvalContext &c) {
	const T *__restrict a = c.In<T>(ins.a);
	T *__restrict o = c.Out<T>(ins.out);
	const int64_t n = c.n;
	const int64_t d = ins.divisor;
	const int64_t magic = ins.magic;
	const int shift = ins.shift;
	const int64_t add_mask = ins.add_mask;
	const int64_t sub_mask = ins.sub_mask;
	c.slots[ins.out].valid = c.Valid(ins.a);
	for (int64_t i = 0; i < n; ++i) {
		const int64_t x = a[i];
		int64_t q = MulHi(magic, x) + (x & add_mask) - (x & sub_mask);
		q >>= shift;
		q += static_cast<int64_t>(static_cast<uint64_t>(q) >> 63);
		if constexpr (kModulo) {
			int64_t r = x - q * d;
			r += d & -static_cast<int64_t>((r != 0) & ((r ^ d) < 0));
			o[i] = static_cast<T>(r);
		} else {
			o[i] = static_cast<T>(q);
		}
	}
}

template <typename Op, typename T>
void CompareKernel(const Instruction &ins, EvalContext &c) {
	const T *__restrict a = c.In<T>(ins.a);
	const T *__restrict b = c.In<T>(ins.b);
	uint8_t *__restrict o = c.Out<uint8_t>(ins.out);
	const int64_t n = c.n;
	for (int64_t i = 0; i < n; ++i) {
		o[i] = Op::template Call<T>(a[i], b[i]);
	}
	c.CombineValidity(ins.out, ins.a, ins.b);
}

template <typename Op>
void LogicKernel(const Instruction &ins, EvalContext &c) {
	const uint8_t *__restrict a = c.In<uint8_t>(ins.a);
	const uint8_t *__restrict b = c.In<uint8_t>(ins.b);
	uint8_t *__restrict o = c.Out<uint8_t>(ins.out);
	for (int64_t i = 0; i < c.n; ++i) {
		o[i] = Op::Call(a[i], b[i]);
	}
	c.CombineValidity(ins.out, ins.a, ins.b);
}

// Kleene logic: a known false (and) or a known true (or) decides the result even when the other
// side is null. Values at null slots are still 0/1 bytes, so the value is plain a&b / a|b.
template <bool kAnd>
void KleeneKernel(const Instruction &ins, EvalContext &c) {
	const uint8_t *__restrict a = c.In<uint8_t>(ins.a);
	const uint8_t *__restrict b = c.In<uint8_t>(ins.b);
	uint8_t *__restrict o = c.Out<uint8_t>(ins.out);
	const uint8_t *va = c.Valid(ins.a);
	const uint8_t *vb = c.Valid(ins.b);
	const int64_t n = c.n;
	for (int64_t i = 0; i < n; ++i) {
		o[i] = kAnd ? (a[i] & b[i]) : (a[i] | b[i]);
	}
	if (va == nullptr && vb == nullptr) {
		c.slots[ins.out].valid = nullptr;
		return;
	}
	uint8_t *ov = c.OutValid(ins.out);
	for (int64_t i = 0; i < n; ++i) {
		const uint8_t x = va ? va[i] : 1;
		const uint8_t y = vb ? vb[i] : 1;
		const uint8_t decide_a = kAnd ? (x & (a[i] ^ 1)) : (x & a[i]);
		const uint8_t decide_b = kAnd ? (y & (b[i] ^ 1)) : (y & b[i]);
		ov[i] = (x & y) | decide_a | decide_b;
	}
}

void InvertKernel(const Instruction &ins, EvalContext &c) {
	const uint8_t *__restrict a = c.In<uint8_t>(ins.a);
	uint8_t *__restrict o = c.Out<uint8_t>(ins.out);
	for (int64_t i = 0; i < c.n; ++i) {
		o[i] = a[i] ^ 1;
	}
	c.slots[ins.out].valid = c.Valid(ins.a);
}

template <typename T, bool kIsNull>
void NullTestKernel(const Instruction &ins, EvalContext &c) {
	const uint8_t *va = c.Valid(ins.a);
	uint8_t *__restrict o = c.Out<uint8_t>(ins.out);
	const int64_t n = c.n;
	for (int64_t i = 0; i < n; ++i) {
		uint8_t valid = va ? va[i] : 1;
		if constexpr (std::is_floating_point_v<T> && kIsNull) {
			if (ins.flag) {
				const T v = c.In<T>(ins.a)[i];
				valid &= static_cast<uint8_t>(v == v);
			}
		}
		o[i] = kIsNull ? (valid ^ 1) : valid;
	}
	c.slots[ins.out].valid = nullptr;
}

template <typename T>
void IfElseKernel(const Instruction &ins, EvalContext &c) {
	const uint8_t *__restrict cond = c.In<uint8_t>(ins.a);
	const T *__restrict x = c.In<T>(ins.b);
	const T *__restrict y = c.In<T>(ins.c);
	T *__restrict o = c.Out<T>(ins.out);
	const int64_t n = c.n;
	for (int64_t i = 0; i < n; ++i) {
		o[i] = cond[i] ? x[i] : y[i];
	}
	const uint8_t *vc = c.Valid(ins.a);
	const uint8_t *vx = c.Valid(ins.b);
	const uint8_t *vy = c.Valid(ins.c);
	if (vc == nullptr && vx == nullptr && vy == nullptr) {
		c.slots[ins.out].valid = nullptr;
		return;
	}
	uint8_t *ov = c.OutValid(ins.out);
	for (int64_t i = 0; i < n; ++i) {
		const uint8_t a = vc ? vc[i] : 1;
		const uint8_t b = vx ? vx[i] : 1;
		const uint8_t d = vy ? vy[i] : 1;
		ov[i] = a & (cond[i] ? b : d);
	}
}

//===--------------------------------------------------------------------===//
// Casts (bool is uint8_t). Checks follow Arrow's safe cast: integer narrowing checks the range
// unless allow_int_overflow, int->float checks exactness unless allow_float_truncate, float->int
// checks integrality and range unless allow_float_truncate.
//===--------------------------------------------------------------------===//

template <typename F>
constexpr bool kIsBool = std::is_same_v<F, uint8_t>;

template <typename F, typename T>
T ConvertValue(F v, bool allow_int_overflow, bool allow_float_truncate, bool &bad) {
	if constexpr (kIsBool<T>) {
		return static_cast<T>(v != 0);
	} else if constexpr (kIsBool<F>) {
		return static_cast<T>(v);
	} else if constexpr (std::is_integral_v<F> && std::is_integral_v<T>) {
		if constexpr (sizeof(T) < sizeof(F)) {
			if (!allow_int_overflow) {
				bad |= v < static_cast<F>(std::numeric_limits<T>::min()) || v > static_cast<F>(std::numeric_limits<T>::max());
			}
			return static_cast<T>(static_cast<Unsigned<T>>(static_cast<Unsigned<F>>(v)));
		}
		return static_cast<T>(v);
	} else if constexpr (std::is_integral_v<F> && std::is_floating_point_v<T>) {
		constexpr int kDigits = std::numeric_limits<T>::digits;
		if constexpr (std::numeric_limits<F>::digits > kDigits) {
			if (!allow_float_truncate) {
				constexpr F kLimit = F(1) << kDigits;
				bad |= v > kLimit || v < -kLimit;
			}
		}
		return static_cast<T>(v);
	} else if constexpr (std::is_floating_point_v<F> && std::is_integral_v<T>) {
		// -min = 2^31 or 2^63 is exact in F; values outside [-2^k, 2^k) do not fit (NaN neither).
		constexpr F kHi = -static_cast<F>(std::numeric_limits<T>::min());
		const bool in_range = v >= -kHi && v < kHi;
		if (!allow_float_truncate) {
			bad |= !in_range || std::trunc(v) != v;
		} else if (!allow_int_overflow) {
			bad |= !in_range;
		}
		return in_range ? static_cast<T>(v) : std::numeric_limits<T>::min();
	} else {
		return static_cast<T>(v);
	}
}

template <typename T>
const char *IntName() {
	return sizeof(T) == 4 ? "int32" : "int64";
}

template <typename F, typename T>
[[noreturn]] void ThrowCastError(F v) {
	char buf[160];
	if constexpr (std::is_integral_v<F> && std::is_integral_v<T>) {
		std::snprintf(buf, sizeof(buf), "Integer value %lld not in range: %lld to %lld", static_cast<long long>(v),
		              static_cast<long long>(std::numeric_limits<T>::min()),
		              static_cast<long long>(std::numeric_limits<T>::max()));
	} else if constexpr (std::is_integral_v<F>) {
		const long long lim = 1LL << std::numeric_limits<T>::digits;
		std::snprintf(buf, sizeof(buf), "Integer value %lld not in range: %lld to %lld", static_cast<long long>(v), -lim,
		              lim);
	} else {
		std::snprintf(buf, sizeof(buf), "Float value %f was truncated converting to %s", static_cast<double>(v),
		              IntName<T>());
	}
	throw StatusError(arrow::Status::Invalid(buf));
}

template <typename F, typename T>
void CastKernel(const Instruction &ins, EvalContext &c) {
	const F *__restrict a = c.In<F>(ins.a);
	T *__restrict o = c.Out<T>(ins.out);
	const int64_t n = c.n;
	const bool allow_int_overflow = ins.flag;
	const bool allow_float_truncate = ins.flag2;
	c.slots[ins.out].valid = c.Valid(ins.a);
	bool bad = false;
	for (int64_t i = 0; i < n; ++i) {
		o[i] = ConvertValue<F, T>(a[i], allow_int_overflow, allow_float_truncate, bad);
	}
	if (bad) {
		const uint8_t *valid = c.Valid(ins.out);
		for (int64_t i = 0; i < n; ++i) {
			bool row_bad = false;
			ConvertValue<F, T>(a[i], allow_int_overflow, allow_float_truncate, row_bad);
			if (row_bad && Live(valid, c.sel, i)) {
				ThrowCastError<F, T>(a[i]);
			}
		}
	}
}

//===--------------------------------------------------------------------===//
// Kernel selection by type
//===--------------------------------------------------------------------===//

template <typename Op>
KernelFn ArithFor(ValueType t) {
	switch (t) {
	case ValueType::kInt32:
		return &BinaryArithKernel<Op, int32_t>;
	case ValueType::kInt64:
		return &BinaryArithKernel<Op, int64_t>;
	case ValueType::kFloat32:
		return &BinaryArithKernel<Op, float>;
	case ValueType::kFloat64:
		return &BinaryArithKernel<Op, double>;
	default:
		throw Unsupported {};
	}
}

template <typename Op>
KernelFn UnaryFor(ValueType t) {
	switch (t) {
	case ValueType::kInt32:
		return &UnaryArithKernel<Op, int32_t>;
	case ValueType::kInt64:
		return &UnaryArithKernel<Op, int64_t>;
	case ValueType::kFloat32:
		return &UnaryArithKernel<Op, float>;
	case ValueType::kFloat64:
		return &UnaryArithKernel<Op, double>;
	default:
		throw Unsupported {};
	}
}

template <typename Op>
KernelFn CompareFor(ValueType t) {
	switch (t) {
	case ValueType::kBool:
		return &CompareKernel<Op, uint8_t>;
	case ValueType::kInt32:
		return &CompareKernel<Op, int32_t>;
	case ValueType::kInt64:
		return &CompareKernel<Op, int64_t>;
	case ValueType::kFloat32:
		return &CompareKernel<Op, float>;
	case ValueType::kFloat64:
		return &CompareKernel<Op, double>;
	}
	throw Unsupported {};
}

template <bool kIsNull>
KernelFn NullTestFor(ValueType t) {
	switch (t) {
	case ValueType::kBool:
		return &NullTestKernel<uint8_t, kIsNull>;
	case ValueType::kInt32:
		return &NullTestKernel<int32_t, kIsNull>;
	case ValueType::kInt64:
		return &NullTestKernel<int64_t, kIsNull>;
	case ValueType::kFloat32:
		return &NullTestKernel<float, kIsNull>;
	case ValueType::kFloat64:
		return &NullTestKernel<double, kIsNull>;
	}
	throw Unsupported {};
}

KernelFn IfElseFor(ValueType t) {
	switch (t) {
	case ValueType::kBool:
		return &IfElseKernel<uint8_t>;
	case ValueType::kInt32:
		return &IfElseKernel<int32_t>;
	case ValueType::kInt64:
		return &IfElseKernel<int64_t>;
	case ValueType::kFloat32:
		return &IfElseKernel<float>;
	case ValueType::kFloat64:
		return &IfElseKernel<double>;
	}
	throw Unsupported {};
}

KernelFn LoadFor(ValueType t) {
	switch (t) {
	case ValueType::kBool:
		return &LoadColumnKernel<uint8_t>;
	case ValueType::kInt32:
		return &LoadColumnKernel<int32_t>;
	case ValueType::kInt64:
		return &LoadColumnKernel<int64_t>;
	case ValueType::kFloat32:
		return &LoadColumnKernel<float>;
	case ValueType::kFloat64:
		return &LoadColumnKernel<double>;
	}
	throw Unsupported {};
}

template <typename F>
KernelFn CastFrom(ValueType to) {
	switch (to) {
	case ValueType::kBool:
		return &CastKernel<F, uint8_t>;
	case ValueType::kInt32:
		return &CastKernel<F, int32_t>;
	case ValueType::kInt64:
		return &CastKernel<F, int64_t>;
	case ValueType::kFloat32:
		return &CastKernel<F, float>;
	case ValueType::kFloat64:
		return &CastKernel<F, double>;
	}
	throw Unsupported {};
}

KernelFn CastFor(ValueType from, ValueType to) {
	switch (from) {
	case ValueType::kBool:
		return CastFrom<uint8_t>(to);
	case ValueType::kInt32:
		return CastFrom<int32_t>(to);
	case ValueType::kInt64:
		return CastFrom<int64_t>(to);
	case ValueType::kFloat32:
		return CastFrom<float>(to);
	case ValueType::kFloat64:
		return CastFrom<double>(to);
	}
	throw Unsupported {};
}

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
			ins.fn = ArithKernelFor(name, out_type);
			ins.a = Emit(args[0]);
			ins.b = Emit(args[1]);
			return Push(ins);
		}
		if (args.size() == 1 && (name == "negate" || name == "negate_checked" || name == "abs" || name == "abs_checked")) {
			if (TypeOf(args[0].type()) != out_type) {
				throw Unsupported {};
			}
			if (name == "negate") {
				ins.fn = UnaryFor<NegateOp<false>>(out_type);
			} else if (name == "negate_checked") {
				ins.fn = UnaryFor<NegateOp<true>>(out_type);
			} else if (name == "abs") {
				ins.fn = UnaryFor<AbsOp<false>>(out_type);
			} else {
				ins.fn = UnaryFor<AbsOp<true>>(out_type);
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
			ins.fn = ComparisonKernelFor(name, t);
			ins.a = Emit(args[0]);
			ins.b = Emit(args[1]);
			return Push(ins);
		}
		if (args.size() == 2 && (name == "and" || name == "or" || name == "xor" || name == "and_kleene" ||
		                         name == "or_kleene")) {
			RequireBool(args[0]);
			RequireBool(args[1]);
			if (name == "and") {
				ins.fn = &LogicKernel<AndOp>;
			} else if (name == "or") {
				ins.fn = &LogicKernel<OrOp>;
			} else if (name == "xor") {
				ins.fn = &LogicKernel<XorOp>;
			} else if (name == "and_kleene") {
				ins.fn = &KleeneKernel<true>;
			} else {
				ins.fn = &KleeneKernel<false>;
			}
			ins.a = Emit(args[0]);
			ins.b = Emit(args[1]);
			return Push(ins);
		}
		if (args.size() == 1 && name == "invert") {
			RequireBool(args[0]);
			ins.fn = &InvertKernel;
			ins.a = Emit(args[0]);
			return Push(ins);
		}
		if (args.size() == 1 && (name == "is_null" || name == "is_valid")) {
			const ValueType t = TypeOf(args[0].type());
			if (name == "is_null") {
				ins.fn = NullTestFor<true>(t);
				if (call->options) {
					const auto *opts = dynamic_cast<const arrow::compute::NullOptions *>(call->options.get());
					if (opts == nullptr) {
						throw Unsupported {};
					}
					ins.flag = opts->nan_is_null;
				}
			} else {
				ins.fn = NullTestFor<false>(t);
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
			ins.fn = CastFor(from, out_type);
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
			ins.fn = IfElseFor(out_type);
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
	static KernelFn ArithKernelFor(const std::string &n, ValueType t) {
		if (n == "add") {
			return ArithFor<AddOp<false>>(t);
		}
		if (n == "add_checked") {
			return ArithFor<AddOp<true>>(t);
		}
		if (n == "subtract") {
			return ArithFor<SubtractOp<false>>(t);
		}
		if (n == "subtract_checked") {
			return ArithFor<SubtractOp<true>>(t);
		}
		if (n == "multiply") {
			return ArithFor<MultiplyOp<false>>(t);
		}
		if (n == "multiply_checked") {
			return ArithFor<MultiplyOp<true>>(t);
		}
		if (n == "divide") {
			return ArithFor<DivideOp<false>>(t);
		}
		if (n == "divide_checked") {
			return ArithFor<DivideOp<true>>(t);
		}
		if (n == "modulo") {
			return ArithFor<ModuloOp<false>>(t);
		}
		return ArithFor<ModuloOp<true>>(t);
	}
	static KernelFn ComparisonKernelFor(const std::string &n, ValueType t) {
		if (n == "equal") {
			return CompareFor<EqualOp>(t);
		}
		if (n == "not_equal") {
			return CompareFor<NotEqualOp>(t);
		}
		if (n == "less") {
			return CompareFor<LessOp>(t);
		}
		if (n == "less_equal") {
			return CompareFor<LessEqualOp>(t);
		}
		if (n == "greater") {
			return CompareFor<GreaterOp>(t);
		}
		return CompareFor<GreaterEqualOp>(t);
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
		if (t == ValueType::kInt32) {
			ins.fn = is_mod ? &ConstDivKernel<int32_t, true> : &ConstDivKernel<int32_t, false>;
		} else {
			ins.fn = is_mod ? &ConstDivKernel<int64_t, true> : &ConstDivKernel<int64_t, false>;
		}
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
		ins.fn = LoadFor(t);
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
