"""A batch read of many keys against the same keys read one at a time.

Per round, reads the same ``--keys`` keys three ways, in rotating order: one
``Client.get_many`` call, ``Client.get`` in a loop (sequential), and ``AsyncClient.get``
for every key at once under ``asyncio.gather`` (concurrent). Prints the median time of
each way per round and how many times faster the batch is than the other two.

    python3 python/bench/batch.py --config cluster/client.toml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Callable, Dict, List

import chorus

BUCKET = "batch-bench"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="client.toml of a running cluster")
    p.add_argument("--keys", type=int, default=100, help="keys read per round, each way")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--r", default="quorum")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()

    client = chorus.Client.connect(args.config)
    keys = [f"k{i:08d}".encode() for i in range(args.records)]
    value = b"x" * args.value_size
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        failed = [o for o in client.put_many(BUCKET, [(k, value) for k in chunk]) if not isinstance(o, bytes)]
        if failed:
            raise SystemExit(f"load failed: {failed[0]}")

    loop = asyncio.new_event_loop()
    aclient = loop.run_until_complete(chorus.AsyncClient.connect(args.config))

    def batch(ks: List[bytes]) -> None:
        reads = client.get_many(BUCKET, ks, r=args.r)
        if not all(isinstance(r, chorus.GetResult) and r.found for r in reads):
            raise SystemExit("a batch read failed")

    def sequential(ks: List[bytes]) -> None:
        for k in ks:
            client.get(BUCKET, k, r=args.r)

    async def gather(ks: List[bytes]) -> None:
        await asyncio.gather(*(aclient.get(BUCKET, k, r=args.r) for k in ks))

    def concurrent(ks: List[bytes]) -> None:
        loop.run_until_complete(gather(ks))

    ways: Dict[str, Callable[[List[bytes]], None]] = {
        "get_many": batch,
        "sequential": sequential,
        "concurrent": concurrent,
    }
    rng = random.Random(7)
    for f in ways.values():  # warm-up: connections, caches
        f(rng.sample(keys, args.keys))
    times: Dict[str, List[float]] = {name: [] for name in ways}
    names = list(ways)
    for rnd in range(args.rounds):
        ks = rng.sample(keys, args.keys)
        for name in names[rnd % 3 :] + names[: rnd % 3]:
            t = time.perf_counter()
            ways[name](ks)
            times[name].append((time.perf_counter() - t) * 1000)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    out = {
        "keys": args.keys,
        "rounds": args.rounds,
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "speedup_vs_sequential": round(med["sequential"] / med["get_many"], 1),
        "speedup_vs_concurrent": round(med["concurrent"] / med["get_many"], 1),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for name, m in med.items():
            print(f"{name:>11}: median {m:8.2f} ms per {args.keys} keys")
        print(f"get_many is {out['speedup_vs_sequential']}x faster than sequential gets, "
              f"{out['speedup_vs_concurrent']}x faster than concurrent gets")
    aclient.close()
    client.close()


if __name__ == "__main__":
    main()
