"""Many keys in one request: put_many and get_many, against one read per key.

python3 examples/python/batch_reads.py --config cluster/client.toml [--keys 1000]
"""

import argparse
import os
import time
import uuid

import chorus


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config", default=os.environ.get("CHORUS_CLIENT_CONFIG", "cluster/client.toml")
    )
    p.add_argument("--keys", type=int, default=1000, help="at most limits.max_batch_keys (1,000)")
    args = p.parse_args()

    bucket, prefix = "examples", uuid.uuid4().hex[:8]
    keys = [f"{prefix}-{i}" for i in range(args.keys)]
    with chorus.Client.connect(args.config) as client:
        # One request writes them all; each key gets its own outcome, in order: the new
        # context, or the error for that key (returned, not raised).
        outcomes = client.put_many(bucket, [(k, f"value {i}".encode()) for i, k in enumerate(keys)])
        failed = [o for o in outcomes if isinstance(o, chorus.ChorusError)]
        print(f"put_many: {len(outcomes) - len(failed)} written, {len(failed)} failed")

        start = time.perf_counter()
        reads = client.get_many(bucket, keys + ["missing-" + prefix])
        batch_ms = (time.perf_counter() - start) * 1000
        found = [r for r in reads if isinstance(r, chorus.GetResult) and r.found]
        print(f"get_many: {len(found)} of {len(reads)} found in {batch_ms:.1f} ms")
        assert [r.values for r in found] == [[f"value {i}".encode()] for i in range(len(keys))]
        assert reads[-1].found is False

        start = time.perf_counter()
        for k in keys:
            client.get(bucket, k)
        single_ms = (time.perf_counter() - start) * 1000
        print(f"one get per key: {single_ms:.1f} ms ({single_ms / max(batch_ms, 1e-3):.0f}x)")

        # Delete them in one batch too: a None value deletes what the context saw.
        client.put_many(bucket, [(k, None, r.context) for k, r in zip(keys, found)])
        print("deleted; found now:", sum(r.found for r in client.get_many(bucket, keys)))


if __name__ == "__main__":
    main()
