"""A checkpointed pipeline over JSON-lines files, for the kill -9 tests:
``python files_pipeline.py GLOB OUT STATE_DIR``: per-key tumbling-window sums of the files'
rows (read 300 rows a batch, so each file is several source items) into a to_files sink,
checkpointing every 1 ms (a checkpoint between most items)."""

from __future__ import annotations

import sys

from sabot import stream as st


def main() -> None:
    pattern, out, state_dir = sys.argv[1:4]
    env = st.StreamEnv(checkpoint_interval="1ms", state_dir=state_dir)
    (env.from_files(pattern, format="jsonl", timestamp="t", batch_size=300,
                    watermark=st.bounded_out_of_orderness("1s"))
        .key_by("k").window(st.tumbling("1s")).agg(n=st.count(), total=st.sum("v"))
        .to_files(out, format="jsonl", roll_every=50))
    env.execute("files-pipeline")


if __name__ == "__main__":
    main()
