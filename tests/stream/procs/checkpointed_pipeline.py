"""A pipeline with every kind of state, for the kill -9 tests: run as
``python checkpointed_pipeline.py OUT [STATE_DIR] [EVENTS] [INTERVAL]``; with STATE_DIR it
checkpoints every INTERVAL (500ms) and, started again on the same STATE_DIR, goes on from the newest checkpoint. Every
output is a to_files sink under OUT (exactly-once with checkpoints)."""

from __future__ import annotations

import os
import sys

import pyarrow.compute as pc
from sabot import stream as st


def count_bids(bidder, batch, ctx):
    n = ctx.state("n")
    n.update((n.value() or 0) + batch.num_rows)
    t = pc.max(batch.column("date_time").cast("int64")).as_py()
    last = ctx.state("last")
    if last.value() is not None:
        ctx.timers.delete_event_time_timer(last.value() + 2000)
    last.update(t)
    ctx.timers.register_event_time_timer(t + 2000)


def quiet_bidder(bidder, ts, ctx):
    return [{"bidder": bidder, "quiet_from": ts - 2000, "bids": ctx.state("n").value()}]


def main() -> None:
    out = sys.argv[1]
    state_dir = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
    events = int(sys.argv[3]) if len(sys.argv) > 3 else 300_000
    interval = sys.argv[4] if len(sys.argv) > 4 else "500ms"
    env = st.StreamEnv(checkpoint_interval=interval if state_dir else None, state_dir=state_dir)
    nx = env.nexmark(events=events, seed=3, batch_size=2_000)
    bids, auctions = nx.bids, nx.auctions
    (bids.key_by("auction").window(st.sliding("10s", slide="2s"))
         .agg(bids=st.count(), top=st.max("price"), avg=st.mean("price"))
         .to_files(os.path.join(out, "sliding"), format="parquet", roll_every="100ms"))
    (bids.key_by("bidder").window(st.session("500ms"))
         .agg(bids=st.count(), first=st.first("price"))
         .to_files(os.path.join(out, "session"), format="parquet"))
    (bids.key_by("bidder")
         .process(count_bids, on_timer=quiet_bidder,
                  state={"n": st.ValueState(), "last": st.ValueState()})
         .to_files(os.path.join(out, "process"), format="jsonl"))
    (auctions.select(id=pc.field("id"), seller=pc.field("seller"), date_time=pc.field("date_time"))
         .interval_join(bids.select(auction=pc.field("auction"), price=pc.field("price")),
                        on=("id", "auction"), lower="0s", upper="2s")
         .to_files(os.path.join(out, "join"), format="parquet", roll_every=3_000))
    env.execute("checkpointed")


if __name__ == "__main__":
    main()
