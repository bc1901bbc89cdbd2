"""The asyncio client: many requests in flight from one event loop.

python3 examples/python/asyncio_example.py --config cluster/client.toml
"""

import argparse
import asyncio
import os
import time
import uuid

import chorus


async def main(config: str) -> None:
    bucket, prefix = "examples", uuid.uuid4().hex[:8]
    async with await chorus.AsyncClient.connect(config) as client:
        keys = [f"{prefix}-{i}" for i in range(200)]
        start = time.perf_counter()
        # gather: every put is in flight at once; the client's own threads carry them.
        await asyncio.gather(*(client.put(bucket, k, k.encode()) for k in keys))
        reads = await asyncio.gather(*(client.get(bucket, k) for k in keys))
        ms = (time.perf_counter() - start) * 1000
        assert [r.values for r in reads] == [[k.encode()] for k in keys]
        print(f"{len(keys)} puts and {len(keys)} gets with asyncio.gather in {ms:.0f} ms")

        # A batch read is a coroutine too; several batches can overlap.
        halves = await asyncio.gather(
            client.get_many(bucket, keys[:100]), client.get_many(bucket, keys[100:])
        )
        print(
            "get_many in two overlapping batches:", sum(r.found for h in halves for r in h), "found"
        )

        # Errors are raised by the await, with the same classes as the blocking client.
        try:
            await client.get(bucket, keys[0], r=99)
        except chorus.InvalidArgument as e:
            print("a bad level is refused:", type(e).__name__)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config", default=os.environ.get("CHORUS_CLIENT_CONFIG", "cluster/client.toml")
    )
    asyncio.run(main(p.parse_args().config))
