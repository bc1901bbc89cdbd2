"""Read your own writes with causal contexts, and what happens without them.

A read returns the key's values and a context. Writing back with that context replaces
exactly what the read saw; two writes from the same old context both survive, as siblings,
until a later write (with the context of a read that saw both) settles them.

    python3 examples/python/read_your_writes.py --config cluster/client.toml
"""

import argparse
import os
import uuid

import chorus


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config", default=os.environ.get("CHORUS_CLIENT_CONFIG", "cluster/client.toml")
    )
    args = p.parse_args()

    bucket, key = "examples", "cart-" + uuid.uuid4().hex[:8]
    with chorus.Client.connect(args.config) as client:
        # w="quorum" and r="quorum" overlap (W + R > N): the read sees the write.
        client.put(bucket, key, b"apples", w="quorum")
        read = client.get(bucket, key, r="quorum")
        print("after the first write:", read.values)

        # Update with the read's context: replaces what the read saw.
        client.put(bucket, key, b"apples,pears", context=read.context)
        read = client.get(bucket, key)
        print("after an update with the context:", read.values)

        # Two clients update from the same read without seeing each other: siblings.
        client.put(bucket, key, b"apples,pears,plums", context=read.context)
        client.put(bucket, key, b"apples", context=read.context)
        both = client.get(bucket, key)
        print("two concurrent updates leave", both.siblings, "siblings:", sorted(both.values))

        # The application merges them (here: the union of the items) and writes the merge
        # with the context of the read that saw both.
        merged = sorted({item for v in both.values for item in v.decode().split(",")})
        client.put(bucket, key, ",".join(merged).encode(), context=both.context)
        final = client.get(bucket, key)
        print("after the merge:", final.values)
        assert final.values == [b"apples,pears,plums"]

        client.delete(bucket, key, final.context)
        print("after the delete, found =", client.get(bucket, key).found)


if __name__ == "__main__":
    main()
