"""A checkpointed pipeline over JSON-lines files, for the kill -9 tests:
``python files_pipeline.py GLOB OUT STATE_DIR``: per-key tumbling-window sums of the files'
rows (read 300 rows a batch, so each file is several source items) into a to_files sink, and
each key's latest row per sliding window (a reduce) into OUT-reduce,
checkpointing every 1 ms (a checkpoint between most items)."""

from __future__ import annotations

import sys

import pyarrow.compute as pc
from sabot import stream as st


def latest(batch):
    """The row with the largest t (a reduce: associative)."""
    i = pc.index(batch.column("t"), pc.max(batch.column("t"))).as_py()
    return batch.slice(i, 1).to_pylist()[0]


def main() -> None:
    pattern, out, state_dir = sys.argv[1:4]
    env = st.StreamEnv(checkpoint_interval="1ms", state_dir=state_dir)
    rows = env.from_files(pattern, format="jsonl", timestamp="t", batch_size=300,
                          watermark=st.bounded_out_of_orderness("1s"))
    (rows.key_by("k").window(st.tumbling("1s")).agg(n=st.count(), total=st.sum("v"))
         .to_files(out, format="jsonl", roll_every=50))
    (rows.key_by("k").window(st.sliding("2s", slide="1s")).reduce(latest)
         .to_files(out + "-reduce", format="jsonl", roll_every=50))
    env.execute("files-pipeline")


if __name__ == "__main__":
    main()
