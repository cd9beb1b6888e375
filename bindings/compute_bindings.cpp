// Columnar compute bindings: Arrow data in and out through the C Data Interface (PyCapsules), no
// copy and no libarrow_python; expressions arrive as Arrow's own expression serialization.
#include "error_translation.hpp"
#include "sabot/compute/columnar_executor.hpp"
#include "sabot/compute/fused_program.hpp"
#include "sabot/status_error.hpp"

#include <arrow/buffer.h>
#include <arrow/c/abi.h>
#include <arrow/c/bridge.h>
#include <arrow/compute/expression.h>
#include <arrow/table.h>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace py = pybind11;
namespace ac = arrow::compute;
namespace sc = sabot::compute;

namespace {

//! The ArrowArrayStream inside obj.__arrow_c_stream__(), imported as a reader (the stream moves).
std::shared_ptr<arrow::RecordBatchReader> ImportStream(const py::object &obj) {
	if (!py::hasattr(obj, "__arrow_c_stream__")) {
		throw std::invalid_argument("expected an object with __arrow_c_stream__ (pyarrow Table or RecordBatchReader)");
	}
	py::object capsule = obj.attr("__arrow_c_stream__")();
	auto *stream = static_cast<ArrowArrayStream *>(PyCapsule_GetPointer(capsule.ptr(), "arrow_array_stream"));
	if (stream == nullptr) {
		throw py::error_already_set();
	}
	return sabot::ValueOrThrow(arrow::ImportRecordBatchReader(stream));
}

std::shared_ptr<arrow::Schema> ImportSchemaOf(const py::object &obj) {
	py::object capsule = obj.attr("__arrow_c_schema__")();
	auto *schema = static_cast<ArrowSchema *>(PyCapsule_GetPointer(capsule.ptr(), "arrow_schema"));
	if (schema == nullptr) {
		throw py::error_already_set();
	}
	return sabot::ValueOrThrow(arrow::ImportSchema(schema));
}

void ReleaseStreamCapsule(PyObject *capsule) {
	auto *stream = static_cast<ArrowArrayStream *>(PyCapsule_GetPointer(capsule, "arrow_array_stream"));
	if (stream == nullptr) {
		PyErr_Clear();
		return;
	}
	if (stream->release != nullptr) {
		stream->release(stream);
	}
	delete stream;
}

//! A result table as an "arrow_array_stream" PyCapsule (pyarrow imports it without copying).
py::object ExportTable(const std::shared_ptr<arrow::Table> &table) {
	auto reader = std::make_shared<arrow::TableBatchReader>(table);
	auto *stream = new ArrowArrayStream();
	auto status = arrow::ExportRecordBatchReader(reader, stream);
	if (!status.ok()) {
		delete stream;
		sabot::bindings::ThrowStatus(status);
	}
	PyObject *capsule = PyCapsule_New(stream, "arrow_array_stream", &ReleaseStreamCapsule);
	if (capsule == nullptr) {
		stream->release(stream);
		delete stream;
		throw py::error_already_set();
	}
	return py::reinterpret_steal<py::object>(capsule);
}

//! Arrow's expression serialization (pyarrow's Expression.__reduce__ buffer) back to an Expression.
ac::Expression DecodeExpression(const py::bytes &serialized) {
	std::string bytes = serialized;
	auto buffer = arrow::Buffer::FromString(std::move(bytes));
	auto result = ac::Deserialize(buffer);
	if (!result.ok()) {
		sabot::bindings::ThrowStatus(result.status().WithMessage("cannot read expression: ", result.status().message()));
	}
	return *std::move(result);
}

std::optional<ac::Expression> DecodeOptional(const std::optional<py::bytes> &serialized) {
	if (!serialized) {
		return std::nullopt;
	}
	return DecodeExpression(*serialized);
}

sc::ExecOptions MakeOptions(int threads, int64_t morsel_bytes) {
	if (threads < 0) {
		throw std::invalid_argument("threads must be >= 0 (0 = the global pool), got " + std::to_string(threads));
	}
	if (morsel_bytes <= 0) {
		throw std::invalid_argument("morsel_bytes must be > 0, got " + std::to_string(morsel_bytes));
	}
	sc::ExecOptions options;
	options.threads = threads;
	options.morsel_bytes = morsel_bytes;
	return options;
}

py::object Project(const py::object &data, const std::vector<std::string> &names, const std::vector<py::bytes> &exprs,
                   const std::optional<py::bytes> &where, int threads, int64_t morsel_bytes) {
	std::vector<ac::Expression> decoded;
	for (const auto &e : exprs) {
		decoded.push_back(DecodeExpression(e));
	}
	auto predicate = DecodeOptional(where);
	auto options = MakeOptions(threads, morsel_bytes);
	auto reader = ImportStream(data);
	auto table = sabot::bindings::RunScheduled([&] {
		auto input = sc::ColumnarInput::FromReader(*reader);
		return sc::Project(input, names, decoded, predicate, options);
	});
	return ExportTable(table);
}

py::object Filter(const py::object &data, const py::bytes &predicate, int threads, int64_t morsel_bytes) {
	auto decoded = DecodeExpression(predicate);
	auto options = MakeOptions(threads, morsel_bytes);
	auto reader = ImportStream(data);
	auto table = sabot::bindings::RunScheduled([&] {
		auto input = sc::ColumnarInput::FromReader(*reader);
		return sc::Filter(input, decoded, options);
	});
	return ExportTable(table);
}

//! (result capsule, "") or (None, reason) when the native engine does not cover the request.
py::tuple Aggregate(const py::object &data,
                    const std::vector<std::tuple<std::string, std::string, std::optional<py::bytes>>> &aggregates,
                    const std::vector<std::string> &key_names, const std::vector<py::bytes> &keys,
                    const std::optional<py::bytes> &where, int threads, int64_t morsel_bytes) {
	std::vector<sc::AggregateSpec> specs;
	for (const auto &[name, func, value] : aggregates) {
		auto kind = sc::ParseAggKind(func);
		if (!kind) {
			throw std::invalid_argument("unknown aggregation " + func + " for " + name + "; accepted: " +
			                            sc::AggKindNames());
		}
		sc::AggregateSpec spec;
		spec.name = name;
		spec.kind = *kind;
		spec.value = DecodeOptional(value);
		specs.push_back(std::move(spec));
	}
	std::vector<ac::Expression> decoded_keys;
	for (const auto &k : keys) {
		decoded_keys.push_back(DecodeExpression(k));
	}
	auto predicate = DecodeOptional(where);
	auto options = MakeOptions(threads, morsel_bytes);
	auto reader = ImportStream(data);
	auto schema = reader->schema();
	sc::AggregatePlan plan(*schema, std::move(specs), key_names, decoded_keys, predicate);
	if (!plan.Unsupported().empty()) {
		return py::make_tuple(py::none(), plan.Unsupported());
	}
	auto table = sabot::bindings::RunScheduled([&] {
		auto input = sc::ColumnarInput::FromReader(*reader);
		return plan.Execute(input, options);
	});
	return py::make_tuple(ExportTable(table), std::string());
}

bool IsFused(const py::object &schema, const py::bytes &expr) {
	auto decoded = DecodeExpression(expr);
	return sc::IsFused(decoded, *ImportSchemaOf(schema));
}

} // namespace

void register_compute(py::module_ &m) {
	m.def("columnar_project", &Project, py::arg("data"), py::arg("names"), py::arg("exprs"), py::arg("where"),
	      py::arg("threads"), py::arg("morsel_bytes"),
	      "Evaluate serialized expressions over an Arrow stream (optionally filtered); returns an "
	      "arrow_array_stream capsule. Runs on the scheduler with the GIL released.");
	m.def("columnar_filter", &Filter, py::arg("data"), py::arg("predicate"), py::arg("threads"),
	      py::arg("morsel_bytes"), "Rows of an Arrow stream where the serialized predicate is true, as a stream capsule.");
	m.def("columnar_aggregate", &Aggregate, py::arg("data"), py::arg("aggregates"), py::arg("key_names"),
	      py::arg("keys"), py::arg("where"), py::arg("threads"), py::arg("morsel_bytes"),
	      "Global or grouped aggregation; returns (stream capsule, '') or (None, reason) when unsupported.");
	m.def("columnar_kernel_isa", [] { return std::string(sc::FusedKernelIsa()); },
	      "Which compiled copy of the fused kernels this CPU runs: avx2 or generic.");
	m.def("columnar_is_fused", &IsFused, py::arg("schema"), py::arg("expr"),
	      "Whether the serialized expression, bound to the schema, runs on the fused evaluator.");
}
