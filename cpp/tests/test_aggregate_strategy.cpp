// The aggregate strategies, each chosen by its plan and checked against a row-at-a-time
// reference over the same data (several batches, nulls, many small morsels, 1..4 workers).
#include "sabot/compute/aggregate_plan.hpp"
#include "sabot/compute/aggregate_strategy.hpp"
#include "sabot/status_error.hpp"

#include <arrow/api.h>
#include <arrow/compute/cast.h>
#include <arrow/compute/initialize.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ac = arrow::compute;
using namespace sabot::compute;

namespace {

class ArrowEnvironment : public ::testing::Environment {
public:
	void SetUp() override {
		ASSERT_TRUE(ac::Initialize().ok());
	}
};
[[maybe_unused]] const auto *const kArrowEnvironment = ::testing::AddGlobalTestEnvironment(new ArrowEnvironment);

//! One input row as the reference sees it.
struct Row {
	std::optional<int64_t> a; // int64, some null, up to ~1e6 (hashed group keys)
	std::optional<double> b;  // float64, some null
	std::optional<int16_t> c; // int16 (not fused: cast, Arrow-evaluated), some null
	std::optional<std::string> s; // string key, some null
};

//! Rows split into batches of uneven sizes, and the same data as Arrow input.
struct Data {
	std::vector<Row> rows;
	ColumnarInput input;
};

Data MakeData() {
	Data d;
	arrow::FieldVector fields = {arrow::field("a", arrow::int64()), arrow::field("b", arrow::float64()),
	                             arrow::field("c", arrow::int16()), arrow::field("s", arrow::utf8())};
	d.input.schema = arrow::schema(fields);
	const char *names[] = {"x", "y", "z", "w"};
	uint64_t state = 12345;
	auto next = [&] {
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		return state >> 33;
	};
	for (int64_t size : {7001, 9000, 1, 3999}) {
		arrow::Int64Builder a;
		arrow::DoubleBuilder b;
		arrow::Int16Builder c;
		arrow::StringBuilder s;
		for (int64_t i = 0; i < size; ++i) {
			Row r;
			if (next() % 29 != 0) {
				r.a = static_cast<int64_t>(next() % 1'000'000);
			}
			if (next() % 17 != 0) {
				r.b = static_cast<double>(next() % 10'000) / 64.0;
			}
			if (next() % 13 != 0) {
				r.c = static_cast<int16_t>(static_cast<int64_t>(next() % 2001) - 1000);
			}
			if (next() % 11 != 0) {
				r.s = names[next() % 4];
			}
			EXPECT_TRUE((r.a ? a.Append(*r.a) : a.AppendNull()).ok());
			EXPECT_TRUE((r.b ? b.Append(*r.b) : b.AppendNull()).ok());
			EXPECT_TRUE((r.c ? c.Append(*r.c) : c.AppendNull()).ok());
			EXPECT_TRUE((r.s ? s.Append(*r.s) : s.AppendNull()).ok());
			d.rows.push_back(r);
		}
		std::vector<std::shared_ptr<arrow::Array>> columns(4);
		EXPECT_TRUE(a.Finish(&columns[0]).ok());
		EXPECT_TRUE(b.Finish(&columns[1]).ok());
		EXPECT_TRUE(c.Finish(&columns[2]).ok());
		EXPECT_TRUE(s.Finish(&columns[3]).ok());
		d.input.batches.push_back(arrow::RecordBatch::Make(d.input.schema, size, columns));
	}
	return d;
}

const Data &TestData() {
	static const Data data = MakeData();
	return data;
}

ac::Expression Field(const char *name) {
	return ac::field_ref(name);
}
ac::Expression Call(const char *name, std::vector<ac::Expression> args) {
	return ac::call(name, std::move(args));
}
ac::Expression Int(int64_t v) {
	return ac::literal(v);
}

//! One aggregate for the reference: its function, and the value of a row (nullopt = null).
struct RefAgg {
	AggKind kind;
	std::function<std::optional<double>(const Row &)> value;
};

//! A key for the reference: its printed value, or nullopt for null.
using RefKey = std::function<std::optional<std::string>(const Row &)>;

//! The reference answer: per group (in order of first appearance) the printed keys and one value
//! per aggregate (nullopt = null).
struct RefResult {
	std::vector<std::vector<std::string>> keys;
	std::vector<std::vector<std::optional<double>>> values;
};

RefResult Reference(const std::vector<Row> &rows, const std::function<bool(const Row &)> &where,
                    const std::vector<RefKey> &keys, const std::vector<RefAgg> &aggs) {
	struct Acc {
		double sum = 0, min = INFINITY, max = -INFINITY;
		int64_t count = 0, rows = 0;
	};
	std::map<std::vector<std::string>, size_t> index;
	RefResult out;
	std::vector<std::vector<Acc>> accs;
	for (const Row &row : rows) {
		if (!where(row)) {
			continue;
		}
		std::vector<std::string> key;
		for (const auto &k : keys) {
			key.push_back(k(row).value_or("null"));
		}
		auto [it, fresh] = index.emplace(key, out.keys.size());
		if (fresh) {
			out.keys.push_back(key);
			accs.emplace_back(aggs.size());
		}
		for (size_t i = 0; i < aggs.size(); ++i) {
			Acc &acc = accs[it->second][i];
			acc.rows++;
			if (aggs[i].kind == AggKind::kCountAll) {
				continue;
			}
			const auto v = aggs[i].value(row);
			if (v) {
				acc.count++;
				acc.sum += *v;
				acc.min = std::min(acc.min, *v);
				acc.max = std::max(acc.max, *v);
			}
		}
	}
	if (keys.empty() && out.keys.empty()) {
		out.keys.emplace_back();
		accs.emplace_back(aggs.size());
	}
	for (const auto &group : accs) {
		std::vector<std::optional<double>> values;
		for (size_t i = 0; i < aggs.size(); ++i) {
			const Acc &acc = group[i];
			switch (aggs[i].kind) {
			case AggKind::kCountAll:
				values.emplace_back(static_cast<double>(acc.rows));
				break;
			case AggKind::kCount:
				values.emplace_back(static_cast<double>(acc.count));
				break;
			case AggKind::kSum:
				values.push_back(acc.count ? std::optional<double>(acc.sum) : std::nullopt);
				break;
			case AggKind::kMean:
				values.push_back(acc.count ? std::optional<double>(acc.sum / acc.count) : std::nullopt);
				break;
			case AggKind::kMin:
				values.push_back(acc.count ? std::optional<double>(acc.min) : std::nullopt);
				break;
			case AggKind::kMax:
				values.push_back(acc.count ? std::optional<double>(acc.max) : std::nullopt);
				break;
			}
		}
		out.values.push_back(std::move(values));
	}
	return out;
}

std::optional<double> CellAsDouble(const arrow::Table &table, int column, int64_t row) {
	auto scalar = table.column(column)->GetScalar(row).ValueOrDie();
	if (!scalar->is_valid) {
		return std::nullopt;
	}
	auto as_double = scalar->CastTo(arrow::float64()).ValueOrDie();
	return std::static_pointer_cast<arrow::DoubleScalar>(as_double)->value;
}

std::string CellAsString(const arrow::Table &table, int column, int64_t row) {
	auto scalar = table.column(column)->GetScalar(row).ValueOrDie();
	return scalar->is_valid ? scalar->ToString() : "null";
}

//! One case: the plan's parts, the strategy it must choose, and the reference's view of it.
struct Case {
	std::vector<std::pair<std::string, ac::Expression>> keys;
	std::optional<ac::Expression> where;
	std::vector<AggregateSpec> aggs;
	std::function<bool(const Row &)> ref_where;
	std::vector<RefKey> ref_keys;
	std::vector<RefAgg> ref_aggs;
};

AggregatePlan MakePlan(const Case &c) {
	std::vector<std::string> key_names;
	std::vector<ac::Expression> key_exprs;
	for (const auto &[name, expr] : c.keys) {
		key_names.push_back(name);
		key_exprs.push_back(expr);
	}
	return AggregatePlan(*TestData().input.schema, c.aggs, key_names, key_exprs, c.where);
}

void ExpectMatchesReference(const Case &c, AggregateStrategyKind expected) {
	const Data &data = TestData();
	AggregatePlan plan = MakePlan(c);
	ASSERT_EQ(plan.Unsupported(), "");
	ASSERT_EQ(AggregateStrategyName(plan.Strategy()), std::string(AggregateStrategyName(expected)));
	const RefResult ref = Reference(data.rows, c.ref_where, c.ref_keys, c.ref_aggs);
	for (int threads : {1, 2, 4}) {
		for (int64_t morsel_bytes : {int64_t {512}, int64_t {64 * 1024}}) {
			SCOPED_TRACE("threads=" + std::to_string(threads) + " morsel_bytes=" + std::to_string(morsel_bytes));
			ExecOptions options;
			options.threads = threads;
			options.morsel_bytes = morsel_bytes;
			auto table = plan.Execute(data.input, options);
			const int nkeys = static_cast<int>(c.keys.size());
			ASSERT_EQ(table->num_columns(), nkeys + static_cast<int>(c.aggs.size()));
			ASSERT_EQ(table->num_rows(), static_cast<int64_t>(ref.keys.size()));
			for (int k = 0; k < nkeys; ++k) {
				EXPECT_EQ(table->schema()->field(k)->name(), c.keys[k].first);
			}
			for (size_t a = 0; a < c.aggs.size(); ++a) {
				EXPECT_EQ(table->schema()->field(nkeys + static_cast<int>(a))->name(), c.aggs[a].name);
			}
			for (int64_t g = 0; g < table->num_rows(); ++g) {
				for (int k = 0; k < nkeys; ++k) {
					ASSERT_EQ(CellAsString(*table, k, g), ref.keys[g][k]) << "group " << g << " key " << k;
				}
				for (size_t a = 0; a < c.aggs.size(); ++a) {
					const auto got = CellAsDouble(*table, nkeys + static_cast<int>(a), g);
					const auto want = ref.values[g][a];
					ASSERT_EQ(got.has_value(), want.has_value()) << "group " << g << " " << c.aggs[a].name;
					if (want) {
						EXPECT_NEAR(*got, *want, 1e-9 * std::max(1.0, std::abs(*want)))
						    << "group " << g << " " << c.aggs[a].name;
					}
				}
			}
		}
	}
}

// Shared reference pieces.
std::optional<double> RefB2Plus1(const Row &r) {
	return r.b ? std::optional<double>(*r.b * 2 + 1) : std::nullopt;
}
std::optional<double> RefA(const Row &r) {
	return r.a ? std::optional<double>(static_cast<double>(*r.a)) : std::nullopt;
}
std::optional<double> RefB(const Row &r) {
	return r.b;
}
std::optional<double> RefC(const Row &r) {
	return r.c ? std::optional<double>(*r.c) : std::nullopt;
}
bool RefAMod7Is3(const Row &r) {
	return r.a && *r.a % 7 == 3;
}
ac::Expression AMod7Is3() {
	return Call("equal", {Call("modulo", {Field("a"), Int(7)}), Int(3)});
}
ac::Expression B2Plus1() {
	return Call("add", {Call("multiply", {Field("b"), ac::literal(2.0)}), ac::literal(1.0)});
}

} // namespace

TEST(AggregateStrategy, FusedGlobalMatchesReference) {
	Case c;
	c.where = AMod7Is3();
	c.aggs = {{"s", AggKind::kSum, B2Plus1()},   {"n", AggKind::kCount, Field("b")},
	          {"rows", AggKind::kCountAll, {}},   {"lo", AggKind::kMin, Field("a")},
	          {"hi", AggKind::kMax, Field("a")}, {"avg", AggKind::kMean, Field("b")}};
	c.ref_where = RefAMod7Is3;
	c.ref_aggs = {{AggKind::kSum, RefB2Plus1}, {AggKind::kCount, RefB},   {AggKind::kCountAll, nullptr},
	              {AggKind::kMin, RefA},       {AggKind::kMax, RefA},     {AggKind::kMean, RefB}};
	ExpectMatchesReference(c, AggregateStrategyKind::kFusedGlobal);
}

TEST(AggregateStrategy, FusedGlobalWithoutPredicate) {
	Case c;
	c.aggs = {{"s", AggKind::kSum, Field("a")}, {"rows", AggKind::kCountAll, {}}};
	c.ref_where = [](const Row &) { return true; };
	c.ref_aggs = {{AggKind::kSum, RefA}, {AggKind::kCountAll, nullptr}};
	ExpectMatchesReference(c, AggregateStrategyKind::kFusedGlobal);
}

TEST(AggregateStrategy, GlobalWithArrowPredicateAndCastValues) {
	// A string predicate and an int16 value (cast before accumulating) are not fused.
	Case c;
	c.where = Call("equal", {Field("s"), ac::literal("x")});
	c.aggs = {{"sc", AggKind::kSum, Field("c")},   {"lo", AggKind::kMin, Field("c")},
	          {"n", AggKind::kCount, Field("s")},  {"rows", AggKind::kCountAll, {}},
	          {"s", AggKind::kSum, B2Plus1()},     {"avg", AggKind::kMean, Field("c")}};
	c.ref_where = [](const Row &r) { return r.s && *r.s == "x"; };
	c.ref_aggs = {{AggKind::kSum, RefC},
	              {AggKind::kMin, RefC},
	              {AggKind::kCount, [](const Row &r) { return r.s ? std::optional<double>(1) : std::nullopt; }},
	              {AggKind::kCountAll, nullptr},
	              {AggKind::kSum, RefB2Plus1},
	              {AggKind::kMean, RefC}};
	ExpectMatchesReference(c, AggregateStrategyKind::kGlobal);
}

TEST(AggregateStrategy, IntKeyBySmallKeysMatchesReference) {
	// a % 10: small keys (the direct table), the null group for null a.
	Case c;
	c.keys = {{"k", Call("modulo", {Field("a"), Int(10)})}};
	c.where = Call("not_equal", {Call("modulo", {Field("a"), Int(7)}), Int(0)});
	c.aggs = {{"s", AggKind::kSum, B2Plus1()},  {"rows", AggKind::kCountAll, {}}, {"n", AggKind::kCount, Field("b")},
	          {"lo", AggKind::kMin, Field("c")}, {"hi", AggKind::kMax, Field("b")}};
	c.ref_where = [](const Row &r) { return r.a && *r.a % 7 != 0; };
	c.ref_keys = {[](const Row &r) { return r.a ? std::optional<std::string>(std::to_string(*r.a % 10)) : std::nullopt; }};
	c.ref_aggs = {{AggKind::kSum, RefB2Plus1},
	              {AggKind::kCountAll, nullptr},
	              {AggKind::kCount, RefB},
	              {AggKind::kMin, RefC},
	              {AggKind::kMax, RefB}};
	ExpectMatchesReference(c, AggregateStrategyKind::kIntKey);
}

TEST(AggregateStrategy, IntKeyByLargeNullableKeysMatchesReference) {
	// a itself: up to 1e6 distinct keys (the hashed table, rehashing), null keys form one group.
	Case c;
	c.keys = {{"a", Field("a")}};
	c.aggs = {{"rows", AggKind::kCountAll, {}}, {"s", AggKind::kSum, Field("b")}, {"sc", AggKind::kSum, Field("c")}};
	c.ref_where = [](const Row &) { return true; };
	c.ref_keys = {[](const Row &r) { return r.a ? std::optional<std::string>(std::to_string(*r.a)) : std::nullopt; }};
	c.ref_aggs = {{AggKind::kCountAll, nullptr}, {AggKind::kSum, RefB}, {AggKind::kSum, RefC}};
	ExpectMatchesReference(c, AggregateStrategyKind::kIntKey);
}

TEST(AggregateStrategy, GroupedByStringAndIntKeysMatchesReference) {
	// Two keys, one a string: Arrow's Grouper; a fused predicate, fused and Arrow-evaluated values.
	Case c;
	c.keys = {{"s", Field("s")}, {"m", Call("modulo", {Field("a"), Int(3)})}};
	c.where = AMod7Is3();
	c.aggs = {{"s2", AggKind::kSum, B2Plus1()}, {"rows", AggKind::kCountAll, {}}, {"lo", AggKind::kMin, Field("c")},
	          {"avg", AggKind::kMean, Field("b")}};
	c.ref_where = RefAMod7Is3;
	c.ref_keys = {[](const Row &r) { return r.s; },
	              [](const Row &r) { return r.a ? std::optional<std::string>(std::to_string(*r.a % 3)) : std::nullopt; }};
	c.ref_aggs = {{AggKind::kSum, RefB2Plus1}, {AggKind::kCountAll, nullptr}, {AggKind::kMin, RefC},
	              {AggKind::kMean, RefB}};
	ExpectMatchesReference(c, AggregateStrategyKind::kGrouped);
}

TEST(AggregateStrategy, GroupedByFloatKeyUsesTheGrouper) {
	// A fused but floating-point key is not an IntKey plan.
	Case c;
	c.keys = {{"b", Field("b")}};
	c.where = Call("less", {Field("b"), ac::literal(20.0)});
	c.aggs = {{"rows", AggKind::kCountAll, {}}, {"hi", AggKind::kMax, Field("a")}};
	c.ref_where = [](const Row &r) { return r.b && *r.b < 20.0; };
	c.ref_keys = {[](const Row &r) {
		return r.b ? std::optional<std::string>(arrow::DoubleScalar(*r.b).ToString()) : std::nullopt;
	}};
	c.ref_aggs = {{AggKind::kCountAll, nullptr}, {AggKind::kMax, RefA}};
	ExpectMatchesReference(c, AggregateStrategyKind::kGrouped);
}

TEST(AggregateStrategy, NothingSelected) {
	// No row passes: a global aggregation gives one row (count 0, sum null), a grouped one none.
	const auto never = Call("less", {Field("a"), Int(0)});
	const auto never_generic = Call("equal", {Field("s"), ac::literal("no such value")});
	struct Variant {
		std::vector<std::pair<std::string, ac::Expression>> keys;
		ac::Expression where;
		AggregateStrategyKind expected;
	};
	const std::vector<Variant> variants = {{{}, never, AggregateStrategyKind::kFusedGlobal},
	                                       {{}, never_generic, AggregateStrategyKind::kGlobal},
	                                       {{{"k", Call("modulo", {Field("a"), Int(10)})}}, never,
	                                        AggregateStrategyKind::kIntKey},
	                                       {{{"s", Field("s")}}, never, AggregateStrategyKind::kGrouped}};
	for (const auto &v : variants) {
		SCOPED_TRACE(AggregateStrategyName(v.expected));
		Case c;
		c.keys = v.keys;
		c.where = v.where;
		c.aggs = {{"rows", AggKind::kCountAll, {}}, {"s", AggKind::kSum, Field("a")}};
		c.ref_where = [](const Row &) { return false; };
		for (size_t k = 0; k < v.keys.size(); ++k) {
			c.ref_keys.push_back([](const Row &) { return std::nullopt; });
		}
		c.ref_aggs = {{AggKind::kCountAll, nullptr}, {AggKind::kSum, RefA}};
		ExpectMatchesReference(c, v.expected);
	}
}

TEST(AggregateStrategy, ResultTypesFollowPyarrow) {
	// Keys keep their type (a narrow int key is widened internally and cast back); sums of int16
	// are int64, min of int16 stays int16, mean is double.
	const Data &data = TestData();
	ac::CastOptions to_int32 = ac::CastOptions::Safe(arrow::int32());
	const std::vector<AggregateSpec> aggs = {
	    {"sc", AggKind::kSum, Field("c")}, {"lo", AggKind::kMin, Field("c")}, {"m", AggKind::kMean, Field("c")}};
	const std::vector<ac::Expression> keys = {ac::call("cast", {Call("modulo", {Field("a"), Int(5)})}, to_int32)};
	AggregatePlan plan(*data.input.schema, aggs, {"k"}, keys, std::nullopt);
	EXPECT_EQ(plan.Strategy(), AggregateStrategyKind::kIntKey);
	auto table = plan.Execute(data.input, ExecOptions());
	EXPECT_TRUE(table->schema()->field(0)->type()->Equals(arrow::int32()));
	EXPECT_TRUE(table->schema()->field(1)->type()->Equals(arrow::int64()));
	EXPECT_TRUE(table->schema()->field(2)->type()->Equals(arrow::int16()));
	EXPECT_TRUE(table->schema()->field(3)->type()->Equals(arrow::float64()));
}

TEST(AggregateStrategy, UnsupportedPlansSayWhyAndDoNotRun) {
	const Data &data = TestData();
	AggregatePlan plan(*data.input.schema, {{"lo", AggKind::kMin, Field("s")}}, {}, {}, std::nullopt);
	EXPECT_NE(plan.Unsupported().find("aggregating values of type string"), std::string::npos) << plan.Unsupported();
	EXPECT_THROW(plan.Execute(data.input, ExecOptions()), sabot::StatusError);
}
