"""Per-call overhead of the Python client over the Rust client it wraps.

Reads the same keys, one at a time, in alternating batches: from Python with
``chorus.Client.get``, from asyncio with ``await chorus.AsyncClient.get`` (one in flight),
and from a loop in Rust on the sync client's connections (``Client._rust_get_latencies``, a
diagnostic that only this script uses). Alternating in one process keeps them on the same
runtime and machine load. Prints the p50 latency of each and the differences: what the
Python layer adds to a read.

    python3 python/bench/overhead.py --config cluster/client.toml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import List

import chorus

BUCKET = "overhead"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="client.toml of a running cluster")
    p.add_argument("--ops", type=int, default=2000, help="reads from each side")
    p.add_argument("--batch", type=int, default=100, help="reads per batch before switching")
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--r", default="quorum")
    args = p.parse_args()

    client = chorus.Client.connect(args.config)
    keys = [f"k{i:08d}".encode() for i in range(args.records)]
    value = b"x" * args.value_size
    for k in keys:
        client.put(BUCKET, k, value)
    order = [keys[(i * 7919) % len(keys)] for i in range(args.ops)]
    client._rust_get_latencies(BUCKET, order[: args.batch], r=args.r)  # warm-up

    async def timed_async(aclient: chorus.AsyncClient, batch: List[bytes], out: List[int]) -> None:
        for k in batch:
            t = time.perf_counter_ns()
            await aclient.get(BUCKET, k, r=args.r)
            out.append(time.perf_counter_ns() - t)

    loop = asyncio.new_event_loop()
    aclient = loop.run_until_complete(chorus.AsyncClient.connect(args.config))
    loop.run_until_complete(timed_async(aclient, order[: args.batch], []))  # warm-up

    py_ns: List[int] = []
    async_ns: List[int] = []
    rust_ns: List[int] = []
    for start in range(0, args.ops, args.batch):
        batch = order[start : start + args.batch]
        for k in batch:
            t = time.perf_counter_ns()
            client.get(BUCKET, k, r=args.r)
            py_ns.append(time.perf_counter_ns() - t)
        loop.run_until_complete(timed_async(aclient, batch, async_ns))
        rust_ns += client._rust_get_latencies(BUCKET, batch, r=args.r)
    loop.close()
    py_p50 = statistics.median(py_ns) / 1000
    async_p50 = statistics.median(async_ns) / 1000
    rust_p50 = statistics.median(rust_ns) / 1000
    print(
        json.dumps(
            {
                "reads_each": args.ops,
                "r": args.r,
                "value_size": args.value_size,
                "rust_p50_us": round(rust_p50, 1),
                "python_p50_us": round(py_p50, 1),
                "overhead_p50_us": round(py_p50 - rust_p50, 1),
                "async_python_p50_us": round(async_p50, 1),
                "async_overhead_p50_us": round(async_p50 - rust_p50, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
