"""sabot.columnar: projections, filters and aggregations equal pyarrow's, natively and in the
pure-pyarrow fallback; the native path copies no input and releases the GIL."""

from __future__ import annotations

import itertools
import math
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sabot import columnar
from sabot.errors import ArrowInputError

A7 = pc.equal(pc.modulo(pc.field("a"), 7), 3)
B21 = pc.field("b") * 2 + 1


def make_table(n: int, seed: int = 0, chunks: int = 3, null_rate: float = 0.1) -> pa.Table:
    """Random columns of every fused type (with nulls) plus a string column, in several chunks."""
    rng = np.random.default_rng(seed)

    def mask() -> np.ndarray:
        return rng.random(n) < null_rate

    cols = {
        "a": pa.array(rng.integers(-1000, 1000, n), pa.int64(), mask=mask()),
        "b": pa.array(rng.normal(size=n), pa.float64(), mask=mask()),
        "i": pa.array(rng.integers(-50, 50, n).astype(np.int32), pa.int32(), mask=mask()),
        "f": pa.array(rng.random(n).astype(np.float32), pa.float32(), mask=mask()),
        "t": pa.array(rng.random(n) < 0.5, pa.bool_(), mask=mask()),
        "s": pa.array([f"k{x}" for x in rng.integers(0, 20, n)], pa.string(), mask=mask()),
        "u": pa.array(rng.integers(0, 200, n).astype(np.uint8), pa.uint8()),
    }
    table = pa.table(cols)
    if chunks > 1 and n > 0:
        bounds = sorted(set(np.linspace(0, n, chunks + 1, dtype=int).tolist()))
        batches = [b for lo, hi in itertools.pairwise(bounds) for b in table.slice(lo, hi - lo).to_batches()]
        table = pa.Table.from_batches(batches, schema=table.schema)
    return table


def assert_columns_equal(actual: pa.ChunkedArray | pa.Array, expected: pa.ChunkedArray | pa.Array,
                         rel: float = 0.0) -> None:
    if isinstance(actual, pa.ChunkedArray):
        actual = actual.combine_chunks()
    if isinstance(expected, pa.ChunkedArray):
        expected = expected.combine_chunks()
    assert actual.type == expected.type
    assert len(actual) == len(expected)
    assert actual.is_null().to_pylist() == expected.is_null().to_pylist()
    for x, y in zip(actual.to_pylist(), expected.to_pylist()):
        if isinstance(x, float) and isinstance(y, float):
            if math.isnan(y):
                assert math.isnan(x)
            else:
                assert x == pytest.approx(y, rel=rel, abs=0 if rel == 0 else 1e-12)
        else:
            assert x == y


def assert_tables_equal(actual: pa.Table, expected: pa.Table, rel: float = 0.0) -> None:
    assert actual.column_names == expected.column_names
    for name in expected.column_names:
        assert_columns_equal(actual.column(name), expected.column(name), rel)


def pyarrow_project(table: pa.Table, columns: dict, where: pc.Expression | None = None) -> pa.Table:
    base = table.filter(where) if where is not None else table
    from pyarrow import acero

    decl = acero.Declaration.from_sequence([
        acero.Declaration("table_source", acero.TableSourceNodeOptions(base)),
        acero.Declaration("project", acero.ProjectNodeOptions(list(columns.values()), list(columns))),
    ])
    return decl.to_table(use_threads=False)


EXPRESSIONS = {
    "arith": B21,
    "mixed": pc.field("a") + pc.field("b") * pc.field("i"),
    "mod": pc.modulo(pc.field("a"), 7),
    "mod_neg": pc.modulo(pc.field("a"), pc.scalar(-3)),
    "div": pc.divide(pc.field("a"), 4),
    "div_cols": pc.divide(pc.field("b"), pc.field("f")),
    "fmod": pc.modulo(pc.field("b"), 0.75),
    "cmp": (pc.field("a") > 10) & ~(pc.field("b") <= 0.5) | pc.field("t"),
    "kleene": pc.and_kleene(pc.field("t"), pc.field("a") > 0),
    "or_null": pc.or_kleene(pc.field("t"), pc.field("b") > 0),
    "xor": pc.xor(pc.field("t"), pc.field("a") < 0),
    "isnull": pc.is_null(pc.field("b")) | pc.is_valid(pc.field("i")),
    "cast": pc.field("i").cast(pa.float64()) + pc.field("f").cast(pa.float64()),
    "cast_int": pc.field("a").cast(pa.int32()),
    "cast_bool": pc.field("a").cast(pa.bool_()),
    "if_else": pc.if_else(pc.field("a") > 0, pc.field("b"), pc.field("f").cast(pa.float64())),
    "negate_abs": pc.negate(pc.field("a")) - pc.abs(pc.field("i")).cast(pa.int64()),
    "int32_ops": pc.field("i") * pc.scalar(3).cast(pa.int32()) - pc.modulo(pc.field("i"), pc.scalar(4).cast(pa.int32())),
    "literal_only": pc.scalar(2.5) * pc.scalar(2.0),
    "null_literal": pc.field("a") + pc.scalar(pa.scalar(None, pa.int64())),
    # outside the fused subset: Arrow's kernels per morsel
    "string": pc.utf8_length(pc.field("s")),
    "uint8": pc.field("u") * 2,
    "is_in": pc.is_in(pc.field("a"), pa.array([1, 2, 3])),
}


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_evaluate_matches_pyarrow(native_mode: str, name: str) -> None:
    table = make_table(5000)
    expr = EXPRESSIONS[name]
    expected = pyarrow_project(table, {"v": expr}).column(0)
    for threads, kb in [(1, 64), (2, 1), (None, 7)]:
        got = columnar.evaluate(table, expr, threads=threads, morsel_size_kb=kb)
        assert_columns_equal(got, expected)


def test_fused_path_covers_the_numeric_subset(native_mode: str) -> None:
    schema = make_table(0).schema
    fused = {n for n, e in EXPRESSIONS.items() if columnar.is_fused(e, schema)}
    if native_mode == "fallback":
        assert fused == set()
        return
    assert {"arith", "mod", "cmp", "kleene", "cast", "if_else", "int32_ops", "mixed"} <= fused
    assert not fused & {"string", "uint8", "is_in"}
    assert columnar.is_fused(A7, schema)


@pytest.mark.parametrize("morsel_kb", [1, 3, 64, 1024])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_project_with_where_keeps_order(native_mode: str, threads: int, morsel_kb: int) -> None:
    table = make_table(20_000, seed=threads * 7 + morsel_kb, chunks=4)
    columns = {"x": B21, "a": pc.field("a"), "len": pc.utf8_length(pc.field("s")), "flag": pc.field("a") > 0}
    got = columnar.project(table, columns, where=A7, threads=threads, morsel_size_kb=morsel_kb)
    assert_tables_equal(got, pyarrow_project(table, columns, A7))
    got = columnar.project(table, {"row": "a", "x": B21}, threads=threads, morsel_size_kb=morsel_kb)
    assert_tables_equal(got, pyarrow_project(table, {"row": pc.field("a"), "x": B21}))


@pytest.mark.parametrize("predicate", [A7, pc.field("t"), pc.field("s") == "k3", pc.field("b") > 100.0],
                         ids=["mod", "bool_col", "string", "none_match"])
def test_filter_matches_pyarrow(native_mode: str, predicate: pc.Expression) -> None:
    table = make_table(12_345, seed=3, chunks=5)
    for threads, kb in [(1, 2), (2, 64)]:
        got = columnar.filter(table, predicate, threads=threads, morsel_size_kb=kb)
        assert got.schema == table.schema
        assert_tables_equal(got, table.filter(predicate))


def test_row_order_is_input_order(native_mode: str) -> None:
    n = 100_000
    table = pa.table({"a": np.arange(n, dtype=np.int64), "b": np.ones(n)})
    out = columnar.project(table, {"a": pc.field("a") * 1}, where=pc.modulo(pc.field("a"), 3) == 0,
                           threads=2, morsel_size_kb=1)
    assert out.column("a").to_pylist() == list(range(0, n, 3))


AGG_COLUMNS = ["a", "b", "i", "f", "t", "u"]


@pytest.mark.parametrize("where", [None, A7], ids=["all", "where"])
def test_global_aggregates_match_pyarrow(native_mode: str, where: pc.Expression | None) -> None:
    table = make_table(30_000, seed=11, chunks=4)
    aggs = {f"{c}_{f}": (f, c) for c in AGG_COLUMNS for f in ("sum", "count", "min", "max", "mean")}
    aggs["rows"] = ("count_all", None)
    aggs["expr_sum"] = ("sum", B21)
    aggs["smin"] = ("min", "s")
    base = table.filter(where) if where is not None else table
    for threads, kb in [(1, 64), (2, 1), (3, 5)]:
        got = columnar.aggregate(table, aggs, where=where, threads=threads, morsel_size_kb=kb)
        assert got.num_rows == 1
        for name, (func, col) in aggs.items():
            if func == "count_all":
                expected = pa.array([base.num_rows], pa.int64())
            else:
                values = base.column(col) if isinstance(col, str) else pyarrow_project(base, {"v": col}).column(0)
                s = getattr(pc, func)(values)
                expected = pa.array([s.as_py()], s.type)
            assert_columns_equal(got.column(name), expected, rel=1e-9)


@pytest.mark.parametrize("by", [["s"], ["t", "i"], ["t"], ["i"], ["a"], {"k": pc.modulo(pc.field("a"), 10)},
                                {"big": pc.field("a") * 1000003}],
                         ids=["string", "two", "bool", "int32", "int64", "expr", "large_keys"])
@pytest.mark.parametrize("where", [None, A7], ids=["all", "where"])
def test_grouped_aggregates_match_group_by(native_mode: str, by: object, where: pc.Expression | None) -> None:
    table = make_table(20_000, seed=5, chunks=3)
    aggs = {"sb": ("sum", "b"), "ca": ("count", "a"), "mi": ("min", "i"), "mx": ("max", "f"),
            "mt": ("mean", "a"), "n": ("count_all", None), "x": ("sum", B21)}
    got = columnar.aggregate(table, aggs, by=by, where=where, threads=2, morsel_size_kb=2)
    # reference: Table.group_by on the same (filtered, projected) rows
    key_exprs = {k: pc.field(k) for k in by} if isinstance(by, list) else dict(by)
    base = pyarrow_project(table, {**key_exprs, "b": pc.field("b"), "a": pc.field("a"), "i": pc.field("i"),
                                   "f": pc.field("f"), "x": B21}, where)
    ref = base.group_by(list(key_exprs), use_threads=False).aggregate(
        [("b", "sum"), ("a", "count"), ("i", "min"), ("f", "max"), ("a", "mean"), ([], "count_all"), ("x", "sum")])
    ref = ref.select(list(key_exprs) + ["b_sum", "a_count", "i_min", "f_max", "a_mean", "count_all", "x_sum"])
    ref = ref.rename_columns(list(key_exprs) + list(aggs))
    assert got.num_rows == ref.num_rows
    order = [(k, "ascending") for k in key_exprs]
    assert_tables_equal(got.sort_by(order), ref.sort_by(order), rel=1e-9)
    # groups come in order of first appearance in the (filtered) input
    keys_in_input = base.select(list(key_exprs)).to_pylist()
    first_seen = list(dict.fromkeys(tuple(row.values()) for row in keys_in_input))
    assert [tuple(row.values()) for row in got.select(list(key_exprs)).to_pylist()] == first_seen


def test_grouped_null_keys_form_a_group(native_mode: str) -> None:
    table = pa.table({"k": pa.array([1, None, 1, None, 2], pa.int64()), "v": pa.array([1.0, 2.0, None, 4.0, 5.0])})
    got = columnar.aggregate(table, {"s": ("sum", "v"), "n": "count_all"}, by="k")
    assert got.to_pylist() == [{"k": 1, "s": 1.0, "n": 2}, {"k": None, "s": 6.0, "n": 2}, {"k": 2, "s": 5.0, "n": 1}]


def test_empty_input(native_mode: str) -> None:
    empty = make_table(0)
    no_batches = pa.Table.from_batches([], schema=empty.schema)
    for table in (empty, no_batches):
        out = columnar.project(table, {"x": B21, "s": pc.utf8_length(pc.field("s"))})
        assert out.num_rows == 0 and out.schema.types == [pa.float64(), pa.int32()]
        assert columnar.filter(table, A7).schema == table.schema
        assert columnar.filter(table, A7).num_rows == 0
        glob = columnar.aggregate(table, {"s": ("sum", "a"), "c": ("count", "a"), "n": "count_all",
                                          "m": ("mean", "b"), "lo": ("min", "i")})
        assert glob.to_pylist() == [{"s": None, "c": 0, "n": 0, "m": None, "lo": None}]
        assert glob.schema.types == [pa.int64(), pa.int64(), pa.int64(), pa.float64(), pa.int32()]
        grouped = columnar.aggregate(table, {"s": ("sum", "b")}, by="a")
        assert grouped.num_rows == 0 and grouped.column_names == ["a", "s"]
    # a filter that keeps nothing
    table = make_table(1000)
    glob = columnar.aggregate(table, {"s": ("sum", "b"), "n": "count_all"}, where=pc.field("b") > 1e9)
    assert glob.to_pylist() == [{"s": None, "n": 0}]


def test_nan_min_max_and_all_null(native_mode: str) -> None:
    table = pa.table({"x": pa.array([1.0, float("nan"), -2.0]), "y": pa.array([float("nan")] * 3),
                      "z": pa.array([None, None, None], pa.float64())})
    got = columnar.aggregate(table, {"mn": ("min", "x"), "mx": ("max", "y"), "s": ("sum", "z"), "c": ("count", "z")})
    row = got.to_pylist()[0]
    assert row["mn"] == -2.0 and math.isnan(row["mx"]) and row["s"] is None and row["c"] == 0


def test_integer_overflow_raises_like_pyarrow(native_mode: str) -> None:
    big = 2**62
    table = pa.table({"a": pa.array([1, big, big], pa.int64()), "k": [0, 1, 1]})
    with pytest.raises(pa.ArrowInvalid, match="overflow"):
        pyarrow_project(table, {"x": pc.field("a") * 4})
    with pytest.raises(ValueError, match="overflow"):
        columnar.evaluate(table, pc.field("a") * 4)
    with pytest.raises(ValueError, match="overflow"):
        columnar.aggregate(table, {"s": ("sum", pc.field("a") + pc.field("a"))})
    with pytest.raises(ValueError, match="overflow"):
        columnar.evaluate(pa.table({"a": pa.array([-(2**63)], pa.int64())}), pc.negate_checked(pc.field("a")))
    # unchecked arithmetic wraps, as pyarrow's does
    got = columnar.evaluate(table, pc.multiply(pc.field("a"), 4))
    assert got.to_pylist() == pc.multiply(table["a"], 4).to_pylist()
    # rows the filter drops never overflow (pyarrow filters first)
    got = columnar.aggregate(table, {"s": ("sum", pc.field("a") * 4)}, where=pc.field("k") == 0)
    assert got.to_pylist() == [{"s": 4}]


def test_division_by_zero_and_cast_errors(native_mode: str) -> None:
    table = pa.table({"a": pa.array([4, 0, 7], pa.int64()), "b": pa.array([2.5, 1.0, 1e30])})
    with pytest.raises(ValueError, match="divide by zero"):
        columnar.evaluate(table, pc.divide(pc.field("a"), pc.field("a")))
    assert columnar.evaluate(table, pc.divide(pc.field("b"), 0.0)).to_pylist() == [math.inf] * 3
    with pytest.raises(ValueError, match="truncated"):
        columnar.evaluate(table, pc.field("b").cast(pa.int64()))
    unsafe = pc.field("b").cast(pa.int64(), safe=False)
    assert columnar.evaluate(table.slice(0, 2), unsafe).to_pylist() == [2, 1]
    with pytest.raises(ValueError, match="not in range"):
        columnar.evaluate(pa.table({"a": pa.array([2**40], pa.int64())}), pc.field("a").cast(pa.int32()))


@pytest.mark.parametrize("divisor", [2, 3, 7, -7, 10, 16, 1000003, -(2**31), 2**40 + 3, 2**62, -1, 1])
def test_modulo_and_divide_by_literals(native_mode: str, divisor: int) -> None:
    rng = np.random.default_rng(abs(divisor) % 1000)
    values = np.concatenate([
        rng.integers(-(2**63), 2**63 - 1, 2000, dtype=np.int64),
        rng.integers(-100000, 100000, 2000),
        np.array([0, 1, -1, 2**63 - 1, -(2**63), -(2**63) + 1, divisor, -divisor, 3 * divisor], dtype=np.int64)
        if abs(divisor) < 2**61 else np.array([0, 1, -1, 2**63 - 1, -(2**63) + 1], dtype=np.int64),
    ])
    table = pa.table({"a": values, "i": (values % 2**31).astype(np.int32)})
    for expr in (pc.modulo(pc.field("a"), divisor), pc.divide(pc.field("a"), divisor)):
        assert_columns_equal(columnar.evaluate(table, expr), pyarrow_project(table, {"v": expr}).column(0))
    if -(2**31) <= divisor < 2**31:
        d32 = pc.scalar(divisor).cast(pa.int32())
        for expr in (pc.modulo(pc.field("i"), d32), pc.divide(pc.field("i"), d32)):
            assert_columns_equal(columnar.evaluate(table, expr), pyarrow_project(table, {"v": expr}).column(0))


def test_accepts_every_arrow_input(native_mode: str) -> None:
    table = make_table(3000, chunks=2)
    expected = pyarrow_project(table, {"v": B21}).column(0).combine_chunks()
    batch = table.combine_chunks().to_batches()[0]
    out = columnar.evaluate(batch, B21)
    assert isinstance(out, pa.Array)
    assert_columns_equal(out, expected)
    assert_columns_equal(columnar.evaluate(pa.RecordBatchReader.from_batches(table.schema, table.to_batches()), B21),
                         expected)
    col = table.column("b")
    assert_columns_equal(columnar.evaluate(col, pc.field("value") * 2 + 1), expected)
    assert isinstance(columnar.evaluate(col.combine_chunks(), pc.field("value")), pa.Array)
    # pc.field(0) cannot be serialized; it still works (through pyarrow)
    assert_columns_equal(columnar.evaluate(col, pc.field(0) * 2 + 1), expected)


def test_bad_input_is_refused_clearly(native_mode: str) -> None:
    table = make_table(100)
    with pytest.raises(ArrowInputError, match=r"unknown column 'nope'; the input has: a \(int64\), b \(double\)"):
        columnar.evaluate(table, pc.field("nope") + 1)
    with pytest.raises(ArrowInputError, match="unknown column 'zz'"):
        columnar.aggregate(table, {"m": ("sum", "zz")}, by="a", where=A7)
    with pytest.raises(ArrowInputError, match="unknown function 'median'.*sum, count"):
        columnar.aggregate(table, {"m": ("median", "a")})
    with pytest.raises(ArrowInputError, match="bool"):
        columnar.filter(table, pc.field("a") + 1)
    with pytest.raises(ArrowInputError, match="expected a pyarrow Table"):
        columnar.evaluate([1, 2, 3], pc.field("a"))
    with pytest.raises(ArrowInputError, match="Expression"):
        columnar.project(table, {"x": 42})
    with pytest.raises(ArrowInputError):
        columnar.evaluate(table, pc.field("s") + 1)  # no add kernel for strings
    with pytest.raises(ArrowInputError, match="threads"):
        columnar.evaluate(table, B21, threads=0)
    with pytest.raises(ArrowInputError, match="morsel_size_kb"):
        columnar.evaluate(table, B21, morsel_size_kb=0)


# --- native only: no copy, GIL released ------------------------------------------------------


class Sampler(threading.Thread):
    """Samples pyarrow's allocated bytes and the time, as fast as the GIL lets it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), pa.total_allocated_bytes()))


def _run_sampled(fn):  # type: ignore[no-untyped-def]
    sampler = Sampler()
    sampler.start()
    time.sleep(0.02)
    start = time.perf_counter()
    result = fn()
    end = time.perf_counter()
    sampler.stop.set()
    sampler.join()
    during = [b for t, b in sampler.samples if start < t < end]
    return result, during


def test_native_copies_no_input_and_releases_the_gil(native_core: object) -> None:
    n = 4_000_000
    rng = np.random.default_rng(1)
    table = pa.table({"a": rng.integers(0, 1_000_000, n), "b": rng.random(n)})
    input_bytes = table.nbytes
    # a generic (non-fused) expression makes the call long enough to sample
    slow = pc.sqrt(pc.field("b")) * pc.ln(pc.field("b") + 1)
    baseline = pa.total_allocated_bytes()
    result, during = _run_sampled(lambda: columnar.aggregate(
        table, {"s": ("sum", B21), "m": ("max", slow)}, by={"k": pc.modulo(pc.field("a"), 10)},
        where=A7, native=True))
    assert result.num_rows == 10
    # The Python thread kept running inside the native call: the GIL was released.
    assert len(during) >= 5, f"only {len(during)} samples during the native call"
    # Nothing close to the input's size was allocated while it ran.
    assert max(during) - baseline < input_bytes / 4
    # A fused projection writes its output (one double column: half the input) in place: the
    # pool grows by the output only, never by a copy of the input.
    baseline = pa.total_allocated_bytes()
    out, during = _run_sampled(lambda: columnar.project(table, {"x": B21}, native=True))
    assert out.num_rows == n
    output_bytes = out.nbytes
    peak = max(during + [pa.total_allocated_bytes()])
    assert peak - baseline <= output_bytes + input_bytes / 8


def test_concurrent_calls_from_python_threads(native_mode: str) -> None:
    table = make_table(50_000, seed=9, chunks=4)
    expected = columnar.aggregate(table, {"s": ("sum", B21), "n": "count_all"}, by={"k": pc.modulo(pc.field("a"), 10)},
                                  where=A7, native=False)
    results: list[pa.Table] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for threads in (1, 2, None):
                results.append(columnar.aggregate(table, {"s": ("sum", B21), "n": "count_all"},
                                                  by={"k": pc.modulo(pc.field("a"), 10)}, where=A7,
                                                  threads=threads, morsel_size_kb=2))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert len(results) == 12
    for r in results:
        assert_tables_equal(r, expected, rel=1e-9)
