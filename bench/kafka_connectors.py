"""The Kafka connectors' codecs: records/s of decoding JSON message values into Arrow and of
encoding Arrow rows into JSON message values, against the naive way in the same run.

    python -m bench.kafka_connectors [--rows N] [--repeat R]

Decode: ``sabot.connectors.kafka_decode.decode_json`` (values joined into one block of JSON lines,
read by pyarrow) against ``json.loads`` per value + ``pa.Table.from_pylist``. Encode:
``sabot.connectors.kafka_encode.json_values`` (column by column with Arrow compute) against
``json.dumps`` per row of ``batch.to_pylist()``; both end with one ``bytes`` per message, what the
producer takes. Both sides get the same values and must give the same answer (checked). No broker
is involved: this is the per-record cost the connectors add on top of the Kafka client. Not one
of ``python -m bench run``'s benchmarks (it is a module of its own); the figures go in
docs/kafka.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from sabot.connectors.kafka_decode import decode_json
from sabot.connectors.kafka_encode import json_values


def make_batch(rows: int) -> pa.RecordBatch:
    """Rows shaped like click events: ints, a short string, a float, a bool, a timestamp."""
    rng = np.random.default_rng(7)
    return pa.record_batch({
        "id": pa.array(np.arange(rows), pa.int64()),
        "user": pa.array([f"user-{i % 5000}" for i in range(rows)]),
        "page": pa.array([f"/p/{i % 97}?q=\"x\"" for i in range(rows)]),
        "price": pa.array(np.round(rng.random(rows) * 100, 2)),
        "clicked": pa.array(rng.random(rows) > 0.5),
        "at": pa.array(1_700_000_000_000 + np.arange(rows), pa.timestamp("ms", "UTC")),
    })


def naive_encode(batch: pa.RecordBatch) -> list[bytes]:
    return [json.dumps(row, default=_iso).encode() for row in batch.to_pylist()]


def _iso(value: Any) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sabot_encode(batch: pa.RecordBatch) -> list[bytes]:
    return json_values(batch).cast(pa.large_binary()).to_pylist()


def naive_decode(values: list[bytes], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([json.loads(v) for v in values], schema=schema)


def sabot_decode(values: list[bytes], schema: pa.Schema) -> pa.Table:
    decoded = decode_json(values, schema)
    assert not decoded.bad
    return decoded.table


def best_rate(fn: Callable[[], Any], rows: int, repeat: int) -> tuple[float, float, Any]:
    """(median records/s, best records/s, the last answer) over ``repeat`` runs."""
    rates, answer = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        answer = fn()
        rates.append(rows / (time.perf_counter() - t0))
    return statistics.median(rates), max(rates), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    batch = make_batch(args.rows)
    # Decoding reads strings back as strings: the schema the values decode to.
    schema = pa.schema([f if not pa.types.is_timestamp(f.type) else pa.field(f.name, pa.string())
                        for f in batch.schema])

    enc_naive, _, naive_values = best_rate(lambda: naive_encode(batch), args.rows, args.repeat)
    enc_sabot, _, sabot_values = best_rate(lambda: sabot_encode(batch), args.rows, args.repeat)
    assert [json.loads(v) for v in sabot_values[:2000]] == [json.loads(v) for v in naive_values[:2000]]
    dec_naive, _, naive_table = best_rate(lambda: naive_decode(sabot_values, schema), args.rows,
                                          args.repeat)
    dec_sabot, _, sabot_table = best_rate(lambda: sabot_decode(sabot_values, schema), args.rows,
                                          args.repeat)
    assert sabot_table.equals(naive_table)

    print(f"{args.rows} rows x {batch.num_columns} columns, median of {args.repeat} runs")
    print(f"{'':8} {'sabot rec/s':>14} {'naive rec/s':>14} {'ratio':>7}")
    for name, ours, theirs in (("encode", enc_sabot, enc_naive), ("decode", dec_sabot, dec_naive)):
        print(f"{name:8} {ours:14,.0f} {theirs:14,.0f} {ours / theirs:6.1f}x")


if __name__ == "__main__":
    main()
