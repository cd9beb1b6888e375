#include "sabot/compute/compiled_expr.hpp"

#include "sabot/status_error.hpp"

#include <arrow/array/concatenate.h>
#include <arrow/array/util.h>
#include <arrow/chunked_array.h>
#include <arrow/compute/exec.h>

namespace sabot {
namespace compute {

namespace ac = arrow::compute;

CompiledExpr CompileExpr(const ac::Expression &expr, const arrow::Schema &schema) {
	CompiledExpr c;
	c.bound = ValueOrThrow(expr.Bind(schema));
	if (!c.bound.IsScalarExpression()) {
		throw StatusError(arrow::Status::Invalid("expression ", expr.ToString(),
		                                         " is not element-wise (only scalar functions are accepted)"));
	}
	c.type = c.bound.type()->GetSharedPtr();
	if (const arrow::FieldRef *ref = c.bound.field_ref()) {
		auto path = ref->FindOne(schema);
		if (path.ok() && path->indices().size() == 1) {
			c.passthrough = path->indices()[0];
		}
	}
	c.fused = FusedProgram::Compile(c.bound, schema);
	return c;
}

CompiledExpr CompilePredicate(const ac::Expression &expr, const arrow::Schema &schema) {
	CompiledExpr c = CompileExpr(expr, schema);
	if (c.type->id() != arrow::Type::BOOL) {
		throw StatusError(arrow::Status::TypeError("filter predicate ", expr.ToString(), " has type ", c.type->ToString(),
		                                           "; a boolean expression is required"));
	}
	return c;
}

bool IsFused(const ac::Expression &expr, const arrow::Schema &schema) {
	return CompileExpr(expr, schema).fused != nullptr;
}

void CollectColumns(const ac::Expression &expr, const arrow::Schema &schema, std::vector<int> &out) {
	for (const arrow::FieldRef &ref : ac::FieldsInExpression(expr)) {
		auto path = ref.FindOne(schema);
		if (path.ok() && !path->indices().empty()) {
			out.push_back(path->indices()[0]);
		}
	}
}

std::shared_ptr<arrow::Array> DatumToArray(const arrow::Datum &d, int64_t length) {
	if (d.is_array()) {
		return d.make_array();
	}
	if (d.is_scalar()) {
		return ValueOrThrow(arrow::MakeArrayFromScalar(*d.scalar(), length));
	}
	if (d.is_chunked_array()) {
		return ValueOrThrow(arrow::Concatenate(d.chunked_array()->chunks()));
	}
	throw StatusError(arrow::Status::Invalid("expression produced ", d.ToString(), ", expected an array"));
}

std::shared_ptr<arrow::Array> EvaluateGeneric(const CompiledExpr &e, const arrow::RecordBatch &batch) {
	ac::ExecBatch exec(batch);
	arrow::Datum d = ValueOrThrow(ac::ExecuteScalarExpression(e.bound, exec));
	return DatumToArray(d, batch.num_rows());
}

} // namespace compute
} // namespace sabot
