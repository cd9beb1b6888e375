"""What Sabot's Python client adds to a small job, measured against a bare client in one run.

One cluster (a coordinator and 2 workers on loopback, as the cluster suite starts them) takes
10-item jobs of the built-in ``square`` from two clients in turn, in blocks: Sabot's client
(``submit_distributed_job`` + ``get_distributed_job_result`` on an asyncio loop) and a bare
blocking ZeroMQ DEALER that speaks the same protocol (hello, ``submit-job``, wait for the ack,
``fetch-results`` until done) with nothing around it. The difference of their p50s is the
client's own cost; the bare client's p50 is what the coordinator and a worker take.

    python -m bench.client_overhead [--blocks 4] [--jobs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import msgpack

from .cluster import LocalSabotCluster

WORKERS = 2
ITEMS = list(range(10))


def _p50_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def main() -> None:
    import sabot
    import zmq
    from sabot.cluster import transport
    from sabot.cluster.protocol import PROTOCOL_VERSION, Sender, decode
    from sabot.cluster.protocol import messages as m
    from sabot.cluster.security import ClusterKeys

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=200)
    args = ap.parse_args()
    for name in ("blocks", "jobs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")

    cluster = LocalSabotCluster(WORKERS)
    cluster.start()
    try:
        config = sabot.load_config(env=cluster.env)
        handle = sabot.create_distributed_coordinator("127.0.0.1", cluster.port, config=config)
        loop = asyncio.new_event_loop()

        async def sabot_jobs(n: int) -> list[float]:
            times = []
            for _ in range(n):
                t = time.perf_counter()
                job_id = await sabot.submit_distributed_job(handle, ITEMS, "square")
                result = await sabot.get_distributed_job_result(handle, job_id, timeout=60)
                times.append(time.perf_counter() - t)
                assert result == [x * x for x in ITEMS]
            return times

        info = transport.fetch_cluster_info("127.0.0.1", cluster.port, timeout=10,
                                            token=config.auth_token)
        ctx = zmq.Context()
        sock = transport.client_socket(ctx, ClusterKeys.from_config(config),
                                       transport.zmq_endpoint("127.0.0.1",
                                                              int(info["zmq_port"])))
        sender = Sender()

        def ask(msg: m.Message) -> m.Message:
            sock.send_multipart(sender.encode(msg))
            if not sock.poll(30_000):
                raise TimeoutError(f"no answer to {msg.OP}")
            return decode(sock.recv_multipart()).msg

        ask(m.Hello(PROTOCOL_VERSION, config.cluster_name, "client", f"bare-{os.getpid()}",
                    pid=os.getpid()))
        data = msgpack.packb(ITEMS)
        count = [0]

        def bare_jobs(n: int) -> list[float]:
            times = []
            for _ in range(n):
                count[0] += 1
                job_id = f"bare-{os.getpid()}-{count[0]}"
                t = time.perf_counter()
                ack = ask(m.SubmitJob(count[0], job_id, "square", None, "list",
                                      [["msgpack", len(ITEMS), data]], 0, ""))
                assert isinstance(ack, m.SubmitAck), ack
                batch = ask(m.FetchResults(count[0], job_id, 0, 1 << 24, 30_000, True, False))
                times.append(time.perf_counter() - t)
                assert isinstance(batch, m.ResultBatch) and batch.status == "completed", batch
            return times

        loop.run_until_complete(sabot_jobs(30))  # warm up both
        bare_jobs(30)
        diffs = []
        for block in range(args.blocks):
            ours = _p50_ms(loop.run_until_complete(sabot_jobs(args.jobs)))
            bare = _p50_ms(bare_jobs(args.jobs))
            diffs.append(ours - bare)
            print(f"block {block + 1}: sabot client p50 {ours:.3f} ms, bare client "
                  f"{bare:.3f} ms: the client adds {ours - bare:.3f} ms", flush=True)
        print(f"the client adds {statistics.mean(diffs):.3f} ms per small job (mean of "
              f"{args.blocks} blocks of {args.jobs} jobs)")
        sock.close(0)
        ctx.term()
        loop.run_until_complete(handle.stop())
        loop.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
